package hooks

import (
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Auto-disable: a hook whose delivery attempts have all failed for
// Options.DisableAfter is deactivated, as an owner would switch it off, so
// that a receiver gone for good stops collecting retries and dead letters.
// The clock is the hook's run of failed attempts: it starts at the first
// failed attempt after a success (or after the hook was created or
// activated), and a successful attempt ends it. Activating the hook again,
// by its owner or an operator, starts it afresh.
//
// The run is kept in memory, one entry per hook whose latest attempt failed,
// and stored on the hook with the queue's batches of latest attempts
// (RecordAttempts), so that it survives a restart.
//
// Where several Stores (sidecars) share PostgreSQL, each counts the
// attempts its own queue makes, and a success through any of them ends
// every run that began at or before it: the database keeps the start of the
// latest success (succeededAt), a batch never stores a run that it ended,
// and a Store forgets such a run when its own batch, or a reload of the
// hook (Run), finds that success. Deactivation reads the stored success in
// its own transaction: a run another Store's success ended in the meantime
// deactivates nothing.

// failingRuns are the runs of failed attempts, by hook id.
type failingRuns struct {
	mu sync.Mutex
	m  map[string]failRun
}

// failRun is one hook's run of failed attempts.
type failRun struct {
	since time.Time // the first failed attempt of the run
	n     int       // its failed attempts
}

// load takes the runs stored on hooks.
func (f *failingRuns) load(hooks []Hook) {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, h := range hooks {
		if h.FailingSince != nil {
			if f.m == nil {
				f.m = map[string]failRun{}
			}
			f.m[h.ID] = failRun{since: h.FailingSince.UTC(), n: max(h.Failures, 1)}
		}
	}
}

// note adds one attempt at at to hook's run and returns the run.
func (f *failingRuns) note(hook string, at time.Time, failed bool) (failRun, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	run, ok := f.m[hook]
	if !failed {
		if ok && ends(at, run.since) {
			delete(f.m, hook)
		}
		return failRun{}, false
	}
	if f.m == nil {
		f.m = map[string]failRun{}
	}
	if !ok || at.Before(run.since) {
		run.since = at
	}
	run.n++
	f.m[hook] = run
	return run, true
}

// of returns hook's run as stored on the hook.
func (f *failingRuns) of(hook string) (*time.Time, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	run, ok := f.m[hook]
	if !ok {
		return nil, 0
	}
	since := run.since.UTC()
	return &since, run.n
}

// ends reports whether a successful attempt that began at success ends a
// run of failed attempts that began at since. Attempts of one hook may
// overlap: a success that began before the run's first failure does not.
func ends(success, since time.Time) bool { return !success.Before(since) }

// endBy ends hook's run if a successful attempt that began at success ends
// it (one made through another Store). failed, when it is after success, is
// a failed attempt of this Store known to have begun after it: the next run
// starts there.
func (f *failingRuns) endBy(hook string, success, failed time.Time) {
	f.mu.Lock()
	defer f.mu.Unlock()
	run, ok := f.m[hook]
	switch {
	case !ok || !ends(success, run.since):
	case failed.After(success):
		f.m[hook] = failRun{since: failed, n: 1}
	default:
		delete(f.m, hook)
	}
}

// forget ends hook's run (the hook was activated or deleted).
func (f *failingRuns) forget(hook string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.m, hook)
}

// errRunEnded, returned by auto-disable's modify function, ends it without
// a write: a success stored since ended the run.
var errRunEnded = errors.New("run of failed attempts ended by a success")

func newAutoDisabledCounter() prometheus.Counter {
	return prometheus.NewCounter(prometheus.CounterOpts{
		Name: "oceanhooks_hooks_auto_disabled_total",
		Help: "Hooks deactivated because all their delivery attempts failed for delivery.disableAfter.",
	})
}

// Attempted notes the outcome of one delivery attempt of hookID that began
// at at (the queue calls it after every attempt of a queued delivery; test
// sends do not count). When the hook is active and its attempts have all
// failed for DisableAfter, this one included, it deactivates the hook and
// returns why, for the attempt log; otherwise it returns "". Memory only,
// but for that deactivation, which does not happen when the stored hook
// shows a success (through another Store) that ended the run.
func (s *Store) Attempted(hookID string, at time.Time, failed bool) string {
	run, failing := s.failing.note(hookID, at.UTC(), failed)
	if !failing || s.disableAfter <= 0 || at.Sub(run.since) < s.disableAfter {
		return ""
	}
	if t, ok := s.Target(hookID); !ok || !t.Active {
		return ""
	}
	now := s.now().UTC()
	var success time.Time
	h, err := s.modify(hookID, func(h *Hook) error {
		if !h.Active {
			return errUnchanged
		}
		if h.succeededAt != nil && ends(*h.succeededAt, run.since) {
			success = *h.succeededAt
			return errRunEnded
		}
		since := run.since
		h.Active, h.DisabledAt = false, &now
		h.FailingSince, h.Failures = &since, run.n
		return nil
	})
	if errors.Is(err, errRunEnded) {
		s.failing.endBy(hookID, success, at)
		return ""
	}
	if errors.Is(err, errUnchanged) || errors.Is(err, ErrNotFound) {
		return ""
	}
	if err != nil {
		s.log.Error("hooks: auto-disable", "hook", hookID, "err", err)
		return ""
	}
	s.autoDisabled.Inc()
	s.log.Warn("hooks: deactivated a hook whose deliveries all failed for delivery.disableAfter",
		"hook", h.ID, "user", h.UserID, "failingSince", run.since.Format(time.RFC3339), "failures", run.n,
		"disableAfter", s.disableAfter.String())
	return fmt.Sprintf("hook deactivated: every delivery attempt since %s failed (%d attempts; delivery.disableAfter is %s); its owner or an operator can activate it again",
		run.since.Format(time.RFC3339), run.n, s.disableAfter)
}

// SetActive switches hook id on or off for an operator, whoever owns it.
// Activating it starts auto-disable's clock afresh. ErrNotFound if there is
// no such hook.
func (s *Store) SetActive(id string, active bool) (Hook, error) {
	h, err := s.modify(id, func(h *Hook) error {
		if h.Active == active {
			return errUnchanged
		}
		h.Active = active
		return nil
	})
	if errors.Is(err, errUnchanged) {
		return s.Get(id)
	}
	return h, err
}
