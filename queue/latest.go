package queue

import (
	"sync"
	"time"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// latestAttempts are the hooks' latest attempts (their latestSentAt and
// latestStatus) not yet handed to the hook store. Attempts only record them
// here; Run hands them over every PollInterval and when it returns, in one
// batch (one write when the store is an attemptBatcher), so a burst of
// deliveries costs the hook store one write per interval, not one per
// attempt. Only the latest of each hook is kept: memory grows with the
// hooks that had an attempt in the interval. A crash loses at most one
// interval of them, which the next attempt of each hook sets again.
type latestAttempts struct {
	mu sync.Mutex
	m  map[string]webhook.LatestAttempt
}

// record notes an attempt of hook that started at at and ended with status.
func (la *latestAttempts) record(hook string, at time.Time, status int) {
	la.mu.Lock()
	defer la.mu.Unlock()
	if la.m == nil {
		la.m = map[string]webhook.LatestAttempt{}
	}
	la.m[hook] = webhook.LatestAttempt{At: at, Status: status}
}

// take empties la and returns what it held.
func (la *latestAttempts) take() map[string]webhook.LatestAttempt {
	la.mu.Lock()
	defer la.mu.Unlock()
	m := la.m
	la.m = nil
	return m
}

// putBack returns the attempts of a batch the hook store did not take,
// except where a later attempt of the same hook came meanwhile.
func (la *latestAttempts) putBack(m map[string]webhook.LatestAttempt) {
	la.mu.Lock()
	defer la.mu.Unlock()
	if la.m == nil {
		la.m = map[string]webhook.LatestAttempt{}
	}
	for hook, a := range m {
		if _, newer := la.m[hook]; !newer {
			la.m[hook] = a
		}
	}
}

// flushLatest hands the recorded attempts to the hook store.
func (q *core) flushLatest() {
	m := q.latest.take()
	if len(m) == 0 {
		return
	}
	if b, ok := q.hooks.(attemptBatcher); ok {
		if err := b.RecordAttempts(m); err != nil {
			q.opts.Logger.Error("record the hooks' latest attempts; trying again", "hooks", len(m), "err", err)
			q.latest.putBack(m)
		}
		return
	}
	for hook, a := range m {
		q.hooks.RecordAttempt(hook, a.At, a.Status)
	}
}
