package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// Run delivers until ctx ends: it claims due deliveries (a new one at once,
// retries within PollInterval), returns leases that outlived the attempt
// timeout, runs value-log GC and the expiry sweep, does the background jobs
// of the management calls (jobs.go), writes the hooks' latest attempts, and
// commits again the outcomes whose commit failed. After ctx ends it claims
// nothing more and waits for in-flight attempts up to ShutdownGrace;
// attempts still running then are cancelled and their deliveries stay
// ready. Before it returns, every outcome recorded so far is committed. It
// does not close the database.
func (q *Queue) Run(ctx context.Context) error {
	err := q.run(ctx, q, func(ctx context.Context) {
		every(ctx, q.opts.GCInterval, q.collectGarbage)
	}, q.keepWithinBudget)
	if err != nil {
		return err
	}
	if err := q.commits.sync(); err != nil {
		q.opts.Logger.Error("record the last delivery outcomes; their deliveries are sent again after the restart", "err", err)
	}
	q.flushLatest()
	return nil
}

// store is what the delivery loop (core.run) needs of a queue's store.
type deliveryStore interface {
	jobWorker
	// dispatch claims due deliveries while workers are free and starts an
	// attempt for each, counted in attempts.
	dispatch(ctx context.Context, attempts *sync.WaitGroup)
	// polled runs each PollInterval in the dispatcher's loop.
	polled()
	// retryOutcomes tries again the outcomes whose write failed.
	retryOutcomes()
	// sweep removes what expired by now.
	sweep(now time.Time) (int, error)
}

// every runs fn each period until ctx ends.
func every(ctx context.Context, period time.Duration, fn func()) {
	t := time.NewTicker(period)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			fn()
		}
	}
}

// run is the delivery loop of both queues' Run, with loops running beside
// it until ctx ends: it dispatches at every wake-up and PollInterval, tries
// failed outcome writes again and hands the hooks' latest attempts over
// each PollInterval, runs the jobs and the expiry sweep. After ctx ends it
// dispatches nothing more and waits for in-flight attempts up to
// ShutdownGrace; attempts still running then are cancelled. It returns
// once the attempts and the loops are over.
func (q *core) run(ctx context.Context, s deliveryStore, loops ...func(ctx context.Context)) error {
	if !q.running.CompareAndSwap(false, true) {
		return errors.New("queue: already running")
	}
	defer q.running.Store(false)
	attemptCtx, cancelAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAttempts()
	var attempts, running sync.WaitGroup
	for _, loop := range loops {
		running.Go(func() { loop(ctx) })
	}
	running.Go(func() {
		every(ctx, q.opts.PollInterval, func() {
			s.retryOutcomes()
			q.flushLatest()
		})
	})
	running.Go(func() { q.jobs.run(ctx, s, q.opts.Logger, q.opts.PollInterval) })
	running.Go(func() {
		every(ctx, q.opts.SweepInterval, func() {
			if _, err := s.sweep(q.opts.Now()); err != nil {
				q.opts.Logger.Error("sweep expired deliveries", "err", err)
			}
		})
	})
	poll := time.NewTicker(q.opts.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		s.dispatch(attemptCtx, &attempts)
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-poll.C:
			s.polled()
		}
	}
	done := make(chan struct{})
	go func() { attempts.Wait(); close(done) }()
	grace := time.NewTimer(q.opts.ShutdownGrace)
	defer grace.Stop()
	select {
	case <-done:
	case <-grace.C:
		q.opts.Logger.Warn("shutdown grace passed; returning in-flight deliveries to ready")
		cancelAttempts()
		<-done
	}
	running.Wait()
	return nil
}

// polled returns to ready the leases that outlived the attempt timeout.
func (q *Queue) polled() { q.expireLeases(time.Now()) }

// retryOutcomes commits again the outcomes whose commit failed.
func (q *Queue) retryOutcomes() { q.settleParked() }

// dispatch leases due deliveries while workers are free, hooks earliest due
// first, never more per hook than PerHookConcurrency, and starts an attempt
// for each. A hook at its limit is out of the due heap, so its backlog costs
// the others nothing; a hook's ready index is read ahead readAhead keys at
// a time from where the last read ended, never again from its start.
func (q *Queue) dispatch(ctx context.Context, attempts *sync.WaitGroup) {
	now := q.opts.Now().UnixMilli()
	for {
		q.mu.Lock()
		if q.busy >= q.opts.Workers || len(q.due) == 0 || q.due[0].next() > now {
			q.mu.Unlock()
			return
		}
		st := q.due[0]
		n := min(q.opts.Workers-q.busy, q.opts.PerHookConcurrency-st.inflight)
		got := q.takeLocked(st, now, n)
		if len(got) == 0 {
			st.reading = true
			from, want := st.from, readAhead-len(st.buf)
			if q.buffered >= maxReadAhead {
				want = n
			}
			q.mu.Unlock()
			refs, next, after, err := q.readReady(st.hook, from, now, want)
			q.mu.Lock()
			q.mergeReadLocked(st, refs, next, after, err, now)
			q.mu.Unlock()
			continue
		}
		st.inflight += len(got)
		q.busy += len(got)
		q.placeLocked(st)
		q.mu.Unlock()
		for _, l := range got {
			attempts.Go(func() { q.attempt(ctx, l) })
		}
	}
}

// takeLocked leases up to n of st's read-ahead keys due by now.
func (q *Queue) takeLocked(st *hookState, now int64, n int) []*lease {
	var got []*lease
	until := time.Now().Add(q.leaseFor())
	for len(got) < n && len(st.buf) > 0 && st.buf[0].due <= now {
		r := st.buf[0]
		st.buf = st.buf[1:]
		q.buffered--
		if _, leased := q.leases[r.id]; leased {
			continue
		}
		l := &lease{id: r.id, hook: st.hook, due: r.due, until: until}
		q.leases[r.id] = l
		q.leasesOf[st.hook]++
		q.leased.Add(1)
		got = append(got, l)
	}
	if len(st.buf) == 0 {
		st.buf = nil // let the backing array go
	}
	return got
}

// mergeReadLocked takes the result of a read of st's ready index.
func (q *Queue) mergeReadLocked(st *hookState, refs []readyRef, next int64, after []byte, err error, now int64) {
	st.reading = false
	missed := st.missed
	st.missed = nil
	if err != nil {
		q.opts.Logger.Error("read ready deliveries", "hook", st.hook, "err", err)
		st.diskNext = now + max(q.opts.PollInterval.Milliseconds(), 1) // try again at the next poll
	} else {
		for _, r := range refs {
			if _, leased := q.leases[r.id]; !leased {
				st.buf = append(st.buf, r)
				q.buffered++
			}
		}
		st.from, st.diskNext = after, next
		st.caughtUp = next == noDue
	}
	for _, r := range missed {
		q.notifyLocked(st.hook, r.due, r.id)
	}
	q.placeLocked(st)
}

// release frees the worker slot of an attempt of hook.
func (q *Queue) release(hook string) {
	q.mu.Lock()
	st := q.stateLocked(hook)
	st.inflight--
	q.busy--
	q.placeLocked(st)
	q.mu.Unlock()
	q.poke()
}

// errStale says a lease's delivery is not the one its ready key named any
// more: removed, redelivered or already settled meanwhile.
var errStale = errors.New("delivery changed since it was read ahead")

// attempt delivers l's delivery once and hands its outcome to the committer.
func (q *Queue) attempt(ctx context.Context, l *lease) {
	defer q.release(l.hook)
	log := lazyLogger(q.opts.Logger, slog.String("delivery", l.id), slog.String("hook", l.hook))
	target, ok := q.hooks.Target(l.hook)
	if !ok {
		log.Info("hook is gone; delivery dropped")
		q.m.attempts.WithLabelValues("dropped").Inc()
		drop := func(txn *badger.Txn, rec *record) (string, error) {
			return "", deleteDelivery(txn, l.id, *rec)
		}
		q.submitOutcome(log, l, drop, nil, nil)
		return
	}
	rec, body, err := q.readDelivery(l)
	switch {
	case errors.Is(err, errStale):
		q.mu.Lock()
		q.dropLeaseLocked(l, false)
		q.mu.Unlock()
		return
	case errors.Is(err, errNoRecord):
		q.dropOrphan(l)
		return
	case err != nil && rec.Hook == "":
		// The record could not be read: the lease stays until it
		// expires, and the delivery is tried again then.
		log.Error("read stored delivery; tried again when its lease expires", "err", err)
		return
	}
	l.rec = rec
	log = log.With("type", rec.Type)
	if err != nil {
		// Nothing was sent. It counts as a failed attempt, with the reason
		// in the attempt log, so the delivery is retried after a backoff
		// and ends dead like any other; a body that is gone for good ends
		// it at once.
		out := outRetry
		if errors.Is(err, badger.ErrKeyNotFound) {
			out = outFinal
		}
		now := q.opts.Now()
		log.Error("read stored delivery", "err", err)
		q.m.attempts.WithLabelValues(out.String()).Inc()
		q.conclude(log, l, webhook.Attempt{At: now, Error: "stored delivery could not be read: " + err.Error()}, out, 0, now)
		return
	}
	entry, out, wait, end, ok := q.try(ctx, l.hook, target, rec.Event, body)
	if !ok {
		log.Info("attempt cancelled by shutdown; returned to ready")
		q.returnLease(l)
		return
	}
	q.conclude(log, l, entry, out, wait, end)
}

// try makes one attempt of a delivery of hook (its eventId and stored
// envelope) to target and reports it: the hook's latest attempt, the
// metrics, a 410's deactivation, and the failure tracker, whose reason (when
// it deactivated the hook) heads the attempt log entry. ok is false when ctx
// ended during the attempt (shutdown): nothing is reported, and the delivery
// stays as it was.
func (q *core) try(ctx context.Context, hook string, target webhook.Target, eventID string, body []byte) (entry webhook.Attempt, out outcome, wait time.Duration, end time.Time, ok bool) {
	start := q.opts.Now()
	res := q.sender.send(ctx, q.sender.quick, target.URL, hook, target.Secret, eventID, body, start)
	if ctx.Err() != nil {
		return entry, out, 0, end, false
	}
	end = q.opts.Now()
	out, wait = classify(res.Status, res.Err, res.Header, end)
	q.latest.record(hook, start, res.Status)
	if out == outGone {
		q.hooks.Deactivate(hook)
	}
	q.m.attempts.WithLabelValues(out.String()).Inc()
	q.m.latency.Observe(res.Duration.Seconds())

	entry = webhook.Attempt{At: start, Status: res.Status, Duration: res.Duration.Milliseconds(), Response: res.Response}
	if res.Err != nil {
		entry.Error = res.Err.Error()
	} else if out != outSuccess {
		entry.Error = fmt.Sprintf("HTTP %d %s", res.Status, http.StatusText(res.Status))
	}
	if ft, ok := q.hooks.(failureTracker); ok {
		if why := ft.Attempted(hook, start, out != outSuccess); why != "" {
			entry.Error = why + "; this attempt: " + entry.Error // first, so that the log's size bound keeps it
		}
	}
	return entry, out, wait, end, true
}

// verdict is where one attempt leaves its delivery.
type verdict struct {
	state    string // delivered, ready (tried again at due) or dead
	attempts int    // failed attempts since enqueue or the last redelivery
	due      int64  // with ready: unix ms
	expires  int64  // with delivered or dead: unix ms, when the sweep removes it
}

// verdictOf is the verdict of an attempt that ended at end with out (wait:
// the receiver's Retry-After), on a delivery that had failed failed
// attempts before: delivered; due again after a backoff; or dead when it is
// out of attempts or failed for good.
func (q *core) verdictOf(failed int, out outcome, wait time.Duration, end time.Time) verdict {
	if out == outSuccess {
		return verdict{state: webhook.StateDelivered, attempts: failed, expires: expiresAt(end, q.opts.Retention)}
	}
	failed++
	if out == outRetry && failed < q.opts.MaxAttempts {
		q.rndMu.Lock()
		due := nextDue(failed, end, q.opts.BackoffBase, q.opts.BackoffCap, q.opts.Rand, wait).UnixMilli()
		q.rndMu.Unlock()
		return verdict{state: webhook.StateReady, attempts: failed, due: due}
	}
	return verdict{state: webhook.StateDead, attempts: failed, expires: expiresAt(end, q.opts.DeadLetterTTL)}
}

// logOutcome logs where an attempt (entry, out) left its delivery, once
// that is recorded.
func logOutcome(log *slog.Logger, v verdict, entry webhook.Attempt, out outcome) {
	attrs := []any{"status", entry.Status, "outcome", out.String()}
	if entry.Error != "" {
		attrs = append(attrs, "err", entry.Error)
	}
	switch v.state {
	case webhook.StateDelivered:
		log.Debug("delivered", attrs...)
	case webhook.StateReady:
		log.Info("attempt failed; will retry", append(attrs, "attempt", v.attempts, "next", time.UnixMilli(v.due))...)
	case webhook.StateDead:
		log.Warn("delivery failed; kept as dead letter", append(attrs, "attempts", v.attempts)...)
	}
}

// errNoRecord says a ready key has no delivery record.
var errNoRecord = errors.New("ready key without a delivery record")

// readDelivery reads l's record and stored envelope. errStale: the record
// moved on; errNoRecord: it is gone. An error reading the body comes with
// the record.
func (q *Queue) readDelivery(l *lease) (rec record, body []byte, err error) {
	err = q.db.View(func(txn *badger.Txn) error {
		rec, err = getRecord(txn, l.id)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return errNoRecord
		}
		if err != nil {
			return err
		}
		if rec.State != webhook.StateReady || rec.Due != l.due {
			return errStale
		}
		if err := q.inject("body"); err != nil {
			return err
		}
		item, err := txn.Get(keyBody(l.id))
		if err != nil {
			return err
		}
		body, err = item.ValueCopy(nil)
		return err
	})
	return rec, body, err
}

// dropOrphan removes l's ready key, which has no record (none are expected:
// every write of a delivery's keys is one transaction).
func (q *Queue) dropOrphan(l *lease) {
	deleted := false
	q.commits.submit(&op{
		apply: func(txn *badger.Txn) error {
			deleted = false
			if _, err := txn.Get(keyRecord(l.id)); !errors.Is(err, badger.ErrKeyNotFound) {
				return err // it came back meanwhile (or the read failed): leave it
			}
			if _, err := txn.Get(keyReady(l.hook, l.due, l.id)); errors.Is(err, badger.ErrKeyNotFound) {
				return nil
			} else if err != nil {
				return err
			}
			deleted = true
			return txn.Delete(keyReady(l.hook, l.due, l.id))
		},
		done: func(err error) {
			if err != nil {
				q.opts.Logger.Error("remove a ready key without its delivery", "delivery", l.id, "err", err)
			}
			q.mu.Lock()
			if err == nil && deleted {
				q.readyKeys.Add(-1)
			}
			q.dropLeaseLocked(l, false)
			q.mu.Unlock()
		},
	})
}

// settlement is what one attempt leaves: the update of its delivery and
// its verdict, for the log.
type settlement struct {
	update func(txn *badger.Txn, rec *record) (string, error)
	verdict
}

// settlementOf logs entry in l's attempt log and moves it on by its
// verdict (verdictOf).
func (q *Queue) settlementOf(l *lease, entry webhook.Attempt, out outcome, wait time.Duration, end time.Time) settlement {
	v := q.verdictOf(l.rec.Attempts, out, wait, end)
	update := func(txn *badger.Txn, rec *record) (string, error) {
		if err := appendAttempt(txn, l.id, rec, entry); err != nil {
			return "", err
		}
		switch v.state {
		case webhook.StateDelivered:
			return webhook.StateDelivered, retire(txn, l.id, rec, webhook.StateDelivered, v.expires)
		case webhook.StateReady:
			rec.Attempts = v.attempts
			rec.State, rec.Due = webhook.StateReady, v.due
			return webhook.StateReady, txn.Set(keyReady(rec.Hook, v.due, l.id), nil)
		default:
			rec.Attempts = v.attempts
			return webhook.StateDead, retire(txn, l.id, rec, webhook.StateDead, v.expires)
		}
	}
	return settlement{update: update, verdict: v}
}

// conclude hands the outcome of an attempt of l to the committer.
func (q *Queue) conclude(log *slog.Logger, l *lease, entry webhook.Attempt, out outcome, wait time.Duration, end time.Time) {
	st := q.settlementOf(l, entry, out, wait, end)
	q.submitOutcome(log, l, st.update, func(state string) {
		v := st.verdict
		v.state = state
		logOutcome(log, v, entry, out)
	}, func(err error) updateFunc {
		// The commit failed: record a failed attempt instead, with the
		// reason in the attempt log (a success is then sent again: at
		// least once), so the delivery is retried after a backoff or ends
		// dead rather than staying leased.
		log.Error("record delivery outcome; recording a failed attempt instead", "err", err)
		again, e := out, entry
		if again == outSuccess {
			again = outRetry
		}
		e.Error = strings.TrimPrefix(e.Error+"; ", "; ") + "outcome not recorded: " + err.Error()
		st = q.settlementOf(l, e, again, 0, end)
		out, entry = again, e
		return st.update
	})
}

// updateFunc updates a delivery's record (which the caller then writes,
// unless the state it returns is "": removed) and says the state it leaves.
type updateFunc = func(txn *badger.Txn, rec *record) (string, error)

// outcomeResult is what an outcome's commit did.
type outcomeResult struct {
	applied bool   // the delivery was still l's and was updated (or removed)
	state   string // the state it was left in; "" when removed
	rec     record
}

// submitOutcome hands the committer the update of l's delivery (bookkeeping:
// no caller waits for it, and it shares the next sync). Once committed, l
// ends and logged(state) runs. When the commit fails, fallback (if any)
// gives the update to try instead, once; when that fails too, Run tries it
// again later (park) and the delivery stays leased meanwhile.
func (q *Queue) submitOutcome(log *slog.Logger, l *lease, update updateFunc, logged func(state string), fallback func(error) updateFunc) {
	var res outcomeResult
	q.commits.submit(&op{
		apply: q.outcomeApply(l, update, &res),
		done: func(err error) {
			if err == nil {
				q.outcomeDone(l, res)
				if logged != nil && res.applied {
					logged(res.state)
				}
				return
			}
			err = fmt.Errorf("settle delivery: %w", err)
			if fallback != nil {
				q.submitOutcome(log, l, fallback(err), logged, nil)
				return
			}
			log.Error("record delivery outcome; will try again", "err", err)
			q.park(l, update, logged)
		},
	})
}

// outcomeApply is the op that updates l's delivery by update and ends its
// ready key, if the delivery is still what l leased: otherwise (the lease
// ended, the delivery was removed or redelivered meanwhile) it writes
// nothing, so an outcome never resurrects a delivery.
func (q *Queue) outcomeApply(l *lease, update func(txn *badger.Txn, rec *record) (string, error), res *outcomeResult) func(txn *badger.Txn) error {
	return func(txn *badger.Txn) error {
		*res = outcomeResult{}
		if err := q.inject("settle"); err != nil {
			return err
		}
		q.mu.Lock()
		held := q.holdsLocked(l)
		q.mu.Unlock()
		if !held {
			return nil
		}
		rec, err := getRecord(txn, l.id)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		if rec.State != webhook.StateReady || rec.Due != l.due {
			return nil
		}
		if err := txn.Delete(keyReady(l.hook, l.due, l.id)); err != nil {
			return err
		}
		state, err := update(txn, &rec)
		if err != nil {
			return err
		}
		res.applied, res.state = true, state
		if state == "" {
			return nil // update removed the delivery
		}
		rec.State = state
		res.rec = rec
		return putRecord(txn, l.id, rec)
	}
}

// outcomeDone counts a committed outcome and ends l.
func (q *Queue) outcomeDone(l *lease, res outcomeResult) {
	q.mu.Lock()
	if res.applied {
		switch res.state {
		case webhook.StateReady: // its ready key was replaced
		case webhook.StateDead:
			q.readyKeys.Add(-1)
			q.dead.Add(1)
			q.deadOf.add(l.hook, 1)
		default:
			q.readyKeys.Add(-1)
		}
	}
	q.dropLeaseLocked(l, false)
	if res.applied && res.state == webhook.StateReady {
		q.notifyLocked(l.hook, res.rec.Due, l.id)
	}
	q.mu.Unlock()
	q.poke()
}

// inject returns the error the fault seam injects for op, if any.
func (q *Queue) inject(op string) error {
	if q.fault == nil {
		return nil
	}
	return q.fault(op)
}

// parkedOutcomes are outcomes whose commit failed: their deliveries stay
// leased (and counted as leased) until Run commits them, or until the lease
// expires and the delivery is tried again.
type parkedOutcomes struct {
	mu    sync.Mutex
	items map[string]*parkedOutcome // by delivery id
}

type parkedOutcome struct {
	l      *lease
	update func(txn *badger.Txn, rec *record) (string, error)
	logged func(state string)
	tries  int
	next   time.Time // wall clock
	busy   bool      // a commit of it is under way
}

// park keeps update to be committed by Run.
func (q *Queue) park(l *lease, update func(txn *badger.Txn, rec *record) (string, error), logged func(string)) {
	q.parked.mu.Lock()
	defer q.parked.mu.Unlock()
	if q.parked.items == nil {
		q.parked.items = map[string]*parkedOutcome{}
	}
	q.parked.items[l.id] = &parkedOutcome{l: l, update: update, logged: logged, next: time.Now().Add(q.opts.PollInterval)}
}

// settleParked tries again the parked outcomes that are due, each after a
// wait that doubles from PollInterval up to a minute.
func (q *Queue) settleParked() {
	now := time.Now()
	q.parked.mu.Lock()
	var due []*parkedOutcome
	for _, p := range q.parked.items {
		if !p.busy && !p.next.After(now) {
			p.busy = true
			due = append(due, p)
		}
	}
	q.parked.mu.Unlock()
	for _, p := range due {
		var res outcomeResult
		q.commits.submit(&op{
			urgent: true,
			apply:  q.outcomeApply(p.l, p.update, &res),
			done: func(err error) {
				q.parked.mu.Lock()
				p.busy = false
				if err != nil {
					p.tries++
					p.next = now.Add(min(q.opts.PollInterval<<min(p.tries, 16), time.Minute))
				} else {
					delete(q.parked.items, p.l.id)
				}
				tries := p.tries
				q.parked.mu.Unlock()
				if err != nil {
					q.opts.Logger.Error("record delivery outcome; will try again", "delivery", p.l.id, "tries", tries, "err", err)
					return
				}
				q.outcomeDone(p.l, res)
				q.opts.Logger.Info("recorded delivery outcome after retrying", "delivery", p.l.id, "state", res.state)
				if p.logged != nil && res.applied {
					p.logged(res.state)
				}
			},
		})
	}
}

// retire makes rec delivered or dead until expiry.
func retire(txn *badger.Txn, id string, rec *record, state string, expiry int64) error {
	rec.Expires = expiry
	mark := byte(expDelivered)
	if state == webhook.StateDead {
		mark = expDead
	}
	return txn.Set(keyExpiry(expiry, id), []byte{mark})
}

// deleteDelivery removes a delivery and all its keys.
func deleteDelivery(txn *badger.Txn, id string, rec record) error {
	keys := [][]byte{keyRecord(id), keyBody(id), keyHook(rec.Hook, id)}
	switch rec.State {
	case webhook.StateReady:
		keys = append(keys, keyReady(rec.Hook, rec.Due, id))
	case webhook.StateLeased:
		keys = append(keys, keyLease(id))
	case webhook.StateDelivered, webhook.StateDead:
		keys = append(keys, keyExpiry(rec.Expires, id))
	case StateHeld:
		keys = append(keys, keyHeldAt(rec.Due, id), keyHeldByKey(rec.Key, id))
	}
	for n := max(rec.Logged-keepAttempts+1, 1); n <= rec.Logged; n++ {
		keys = append(keys, keyAttempt(id, n))
	}
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// appendAttempt adds entry to the attempt log of delivery id and drops the
// entry that falls out of the latest keepAttempts (each append drops one, so
// only the latest keepAttempts are ever stored; no scan, which in a
// transaction of many writes would cost a sort of all of them). The error
// is cut at errorLogCap bytes, so that every entry is bounded (see List).
func appendAttempt(txn *badger.Txn, id string, rec *record, entry webhook.Attempt) error {
	enc, err := logEntry(entry)
	if err != nil {
		return err
	}
	rec.Logged++
	if err := txn.Set(keyAttempt(id, rec.Logged), enc); err != nil {
		return err
	}
	if old := rec.Logged - keepAttempts; old >= 1 {
		return txn.Delete(keyAttempt(id, old))
	}
	return nil
}

// logEntry is entry as the attempt log stores it: JSON, its error cut at
// errorLogCap bytes.
func logEntry(entry webhook.Attempt) ([]byte, error) {
	entry.Error = cutUTF8(entry.Error, errorLogCap)
	return json.Marshal(entry)
}

// cutUTF8 is s cut to at most n bytes, on a character boundary when s is
// UTF-8 there.
func cutUTF8(s string, n int) string {
	if len(s) <= n {
		return s
	}
	for i := 1; i < utf8.UTFMax && n > 0 && !utf8.RuneStart(s[n]); i++ {
		n--
	}
	return s[:n]
}
