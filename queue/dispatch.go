package queue

import (
	"cmp"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// claimed is a delivery a worker holds the lease of.
type claimed struct {
	id  string
	rec record
}

// Run delivers until ctx ends: it claims due deliveries (a new one at once,
// retries within PollInterval), runs value-log GC and the expiry sweep, does
// the background jobs of the management calls (jobs.go), and commits again
// the outcomes whose commit failed. After ctx ends it claims
// nothing more and waits for in-flight attempts up to ShutdownGrace;
// attempts still running then are cancelled and their leases return to
// ready. It does not close the database.
func (q *Queue) Run(ctx context.Context) error {
	if !q.running.CompareAndSwap(false, true) {
		return errors.New("queue: already running")
	}
	defer q.running.Store(false)
	attemptCtx, cancelAttempts := context.WithCancel(context.WithoutCancel(ctx))
	defer cancelAttempts()
	var attempts, loops sync.WaitGroup
	loops.Go(func() { q.every(ctx, q.opts.GCInterval, q.collectGarbage) })
	loops.Go(func() { q.every(ctx, q.opts.PollInterval, q.settleParked) })
	loops.Go(func() { q.runJobs(ctx) })
	loops.Go(func() {
		q.every(ctx, q.opts.SweepInterval, func() {
			if _, err := q.sweep(q.opts.Now()); err != nil {
				q.opts.Logger.Error("sweep expired deliveries", "err", err)
			}
		})
	})
	poll := time.NewTicker(q.opts.PollInterval)
	defer poll.Stop()
	for ctx.Err() == nil {
		q.dispatch(attemptCtx, &attempts)
		select {
		case <-ctx.Done():
		case <-q.wake:
		case <-poll.C:
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
	loops.Wait()
	return nil
}

// every runs fn each period until ctx ends.
func (q *Queue) every(ctx context.Context, period time.Duration, fn func()) {
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

// dispatch claims due deliveries while workers are free, hooks earliest due
// first, never more per hook than PerHookConcurrency, and starts an attempt
// for each. A hook at its limit is not scanned at all, so its backlog costs
// the others nothing.
func (q *Queue) dispatch(ctx context.Context, attempts *sync.WaitGroup) {
	now := q.opts.Now().UnixMilli()
	for {
		hooks := q.dueHooks(now)
		progress := false
		for _, hook := range hooks {
			q.mu.Lock()
			st := q.sched[hook]
			n := min(q.opts.Workers-q.busy, q.opts.PerHookConcurrency-st.inflight)
			if n <= 0 {
				q.mu.Unlock()
				continue
			}
			st.seen = noDue
			q.mu.Unlock()

			got, next, err := q.claim(hook, now, n)

			q.mu.Lock()
			if err != nil {
				q.mu.Unlock()
				q.opts.Logger.Error("claim deliveries", "hook", hook, "err", err)
				continue
			}
			st.next = min(next, st.seen)
			st.inflight += len(got)
			q.busy += len(got)
			q.mu.Unlock()
			q.ready.Add(-int64(len(got)))
			q.leased.Add(int64(len(got)))
			for _, c := range got {
				attempts.Go(func() { q.attempt(ctx, c) })
			}
			progress = progress || len(got) > 0
		}
		if !progress {
			return
		}
	}
}

// dueHooks are the hooks with a delivery due by now and a free slot, earliest
// first; idle hooks are forgotten.
func (q *Queue) dueHooks(now int64) []string {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.busy >= q.opts.Workers {
		return nil
	}
	type due struct {
		hook string
		at   int64
	}
	var ds []due
	for hook, st := range q.sched {
		switch {
		case st.next == noDue && st.inflight == 0:
			delete(q.sched, hook)
		case st.next <= now && st.inflight < q.opts.PerHookConcurrency:
			ds = append(ds, due{hook, st.next})
		}
	}
	slices.SortFunc(ds, func(a, b due) int { return cmp.Compare(a.at, b.at) })
	hooks := make([]string, len(ds))
	for i, d := range ds {
		hooks[i] = d.hook
	}
	return hooks
}

// claim moves up to n of hook's deliveries due by now from ready to leased in
// one transaction. next is the due time of the first ready delivery left.
func (q *Queue) claim(hook string, now int64, n int) (got []claimed, next int64, err error) {
	leaseUntil := now + (q.opts.AttemptTimeout + q.opts.ShutdownGrace).Milliseconds()
	err = q.update(func(txn *badger.Txn) error {
		got, next = got[:0], noDue
		it := txn.NewIterator(badger.IteratorOptions{Prefix: readyPrefix(hook)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			key := it.Item().KeyCopy(nil)
			_, due, id, ok := parseReady(key)
			if !ok {
				continue
			}
			if due > now || len(got) == n {
				next = due
				break
			}
			if err := txn.Delete(key); err != nil {
				return err
			}
			rec, err := getRecord(txn, id)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // an index entry without its record: drop it
			}
			if err != nil {
				return err
			}
			rec.State = webhook.StateLeased
			if err := putRecord(txn, id, rec); err != nil {
				return err
			}
			if err := txn.Set(keyLease(id), leaseValue(leaseUntil, hook)); err != nil {
				return err
			}
			got = append(got, claimed{id: id, rec: rec})
		}
		return nil
	})
	return got, next, err
}

// release frees the worker slot of an attempt of hook.
func (q *Queue) release(hook string) {
	q.mu.Lock()
	q.sched[hook].inflight--
	q.busy--
	q.mu.Unlock()
	q.poke()
}

// attempt delivers c once and records the outcome.
func (q *Queue) attempt(ctx context.Context, c claimed) {
	defer q.release(c.rec.Hook)
	log := q.opts.Logger.With("delivery", c.id, "hook", c.rec.Hook, "type", c.rec.Type)
	target, ok := q.hooks.Target(c.rec.Hook)
	if !ok {
		log.Info("hook is gone; delivery dropped")
		q.m.attempts.WithLabelValues("dropped").Inc()
		drop := func(txn *badger.Txn, rec *record) (string, error) {
			return "", deleteDelivery(txn, c.id, *rec)
		}
		if _, err := q.settle(c, drop); err != nil {
			log.Error("drop delivery; will try again", "err", err)
			q.park(c, drop)
		}
		return
	}
	body, err := q.readBody(c.id)
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
		q.conclude(log, c, webhook.Attempt{At: now, Error: "stored delivery could not be read: " + err.Error()}, out, 0, now)
		return
	}
	start := q.opts.Now()
	res := q.sender.send(ctx, q.sender.quick, target.URL, c.rec.Hook, target.Secret, c.rec.Event, body, start)
	if ctx.Err() != nil {
		log.Info("attempt cancelled by shutdown; returned to ready")
		q.putBack(c)
		return
	}
	end := q.opts.Now()
	out, wait := classify(res.Status, res.Err, res.Header, end)
	q.hooks.RecordAttempt(c.rec.Hook, start, res.Status)
	if out == outGone {
		q.hooks.Deactivate(c.rec.Hook)
	}
	q.m.attempts.WithLabelValues(out.String()).Inc()
	q.m.latency.Observe(res.Duration.Seconds())

	entry := webhook.Attempt{At: start, Status: res.Status, Duration: res.Duration.Milliseconds(), Response: res.Response}
	if res.Err != nil {
		entry.Error = res.Err.Error()
	} else if out != outSuccess {
		entry.Error = fmt.Sprintf("HTTP %d %s", res.Status, http.StatusText(res.Status))
	}
	q.conclude(log, c, entry, out, wait, end)
}

// readBody reads c's stored envelope.
func (q *Queue) readBody(id string) ([]byte, error) {
	var body []byte
	err := q.db.View(func(txn *badger.Txn) error {
		if err := q.inject("body"); err != nil {
			return err
		}
		item, err := txn.Get(keyBody(id))
		if err != nil {
			return err
		}
		body, err = item.ValueCopy(nil)
		return err
	})
	return body, err
}

// settlement is what one attempt leaves: the update of its delivery (for
// settle) and, for the log, when it is tried again (0: not) and how many
// attempts it has failed.
type settlement struct {
	update func(txn *badger.Txn, rec *record) (string, error)
	due    int64
	failed int
}

// settlementOf logs entry in c's attempt log and moves c on by out: delivered,
// due again after a backoff (wait, when the receiver asked for one), or dead
// when it is out of attempts or failed for good.
func (q *Queue) settlementOf(c claimed, entry webhook.Attempt, out outcome, wait time.Duration, end time.Time) settlement {
	failed := c.rec.Attempts + 1
	var due int64
	if out == outRetry && failed < q.opts.MaxAttempts {
		q.mu.Lock()
		due = nextDue(failed, end, q.opts.BackoffBase, q.opts.BackoffCap, q.rnd, wait).UnixMilli()
		q.mu.Unlock()
	}
	update := func(txn *badger.Txn, rec *record) (string, error) {
		if err := appendAttempt(txn, c.id, rec, entry); err != nil {
			return "", err
		}
		switch {
		case out == outSuccess:
			return webhook.StateDelivered, retire(txn, c.id, rec, webhook.StateDelivered, expiresAt(end, q.opts.Retention))
		case due != 0:
			rec.Attempts = failed
			rec.State, rec.Due = webhook.StateReady, due
			return webhook.StateReady, txn.Set(keyReady(rec.Hook, due, c.id), nil)
		default:
			rec.Attempts = failed
			return webhook.StateDead, retire(txn, c.id, rec, webhook.StateDead, expiresAt(end, q.opts.DeadLetterTTL))
		}
	}
	return settlement{update: update, due: due, failed: failed}
}

// conclude records the outcome of an attempt of c. When that commit fails,
// it records a failed attempt instead, with the reason in the attempt log
// (a success is then sent again: at least once), so the delivery is retried
// after a backoff or ends dead rather than staying leased; when that fails
// too, Run tries it again until the store takes it.
func (q *Queue) conclude(log *slog.Logger, c claimed, entry webhook.Attempt, out outcome, wait time.Duration, end time.Time) {
	st := q.settlementOf(c, entry, out, wait, end)
	state, err := q.settle(c, st.update)
	if err != nil {
		log.Error("record delivery outcome; recording a failed attempt instead", "err", err)
		if out == outSuccess {
			out = outRetry
		}
		entry.Error = strings.TrimPrefix(entry.Error+"; ", "; ") + "outcome not recorded: " + err.Error()
		st = q.settlementOf(c, entry, out, 0, end)
		if state, err = q.settle(c, st.update); err != nil {
			log.Error("record delivery outcome; will try again", "err", err)
			q.park(c, st.update)
			return
		}
	}
	attrs := []any{"status", entry.Status, "outcome", out.String()}
	if entry.Error != "" {
		attrs = append(attrs, "err", entry.Error)
	}
	switch state {
	case webhook.StateDelivered:
		log.Debug("delivered", attrs...)
	case webhook.StateReady:
		log.Info("attempt failed; will retry", append(attrs, "attempt", st.failed, "next", time.UnixMilli(st.due))...)
	case webhook.StateDead:
		log.Warn("delivery failed; kept as dead letter", append(attrs, "attempts", st.failed)...)
	}
}

// settle ends c's lease in one transaction: fn updates the record (which
// settle then writes, unless fn returned state "") and says the state it
// leaves. If the lease is gone (the hook's deliveries were cancelled) nothing
// is written: the outcome must not resurrect the delivery. Returns the state,
// "" when nothing is left; on an error nothing was written and the lease
// stays.
func (q *Queue) settle(c claimed, fn func(txn *badger.Txn, rec *record) (string, error)) (string, error) {
	var (
		state string
		held  bool
		final record
	)
	err := q.update(func(txn *badger.Txn) error {
		state, held = "", false
		if err := q.inject("settle"); err != nil {
			return err
		}
		if _, err := txn.Get(keyLease(c.id)); errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		} else if err != nil {
			return err
		}
		held = true
		if err := txn.Delete(keyLease(c.id)); err != nil {
			return err
		}
		rec, err := getRecord(txn, c.id)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		st, err := fn(txn, &rec)
		if err != nil || st == "" {
			return err
		}
		state, final = st, rec
		rec.State = st
		return putRecord(txn, c.id, rec)
	})
	if err != nil {
		return "", fmt.Errorf("settle delivery: %w", err)
	}
	if !held {
		return "", nil
	}
	q.leased.Add(-1)
	switch state {
	case webhook.StateReady:
		q.ready.Add(1)
		q.mu.Lock()
		q.notifyLocked(final.Hook, final.Due)
		q.mu.Unlock()
	case webhook.StateDead:
		q.dead.Add(1)
	}
	return state, nil
}

// putBack returns c's lease to ready at its old due time, uncounted (an
// attempt cut short by shutdown). If that fails, Open returns the lease at
// the next start.
func (q *Queue) putBack(c claimed) {
	_, err := q.settle(c, func(txn *badger.Txn, rec *record) (string, error) {
		return webhook.StateReady, txn.Set(keyReady(rec.Hook, rec.Due, c.id), nil)
	})
	if err != nil {
		q.opts.Logger.Error("return delivery to ready; it returns at the next start", "delivery", c.id, "err", err)
	}
}

// inject returns the error the fault seam injects for op, if any.
func (q *Queue) inject(op string) error {
	if q.fault == nil {
		return nil
	}
	return q.fault(op)
}

// parkedOutcomes are settlements whose commit failed: their deliveries stay
// leased (and counted as leased) until Run commits them.
type parkedOutcomes struct {
	mu    sync.Mutex
	items map[string]*parkedOutcome // by delivery id
}

type parkedOutcome struct {
	c      claimed
	update func(txn *badger.Txn, rec *record) (string, error)
	tries  int
	next   time.Time // wall clock
}

// park keeps update to be committed by Run.
func (q *Queue) park(c claimed, update func(txn *badger.Txn, rec *record) (string, error)) {
	q.parked.mu.Lock()
	defer q.parked.mu.Unlock()
	if q.parked.items == nil {
		q.parked.items = map[string]*parkedOutcome{}
	}
	q.parked.items[c.id] = &parkedOutcome{c: c, update: update, next: time.Now().Add(q.opts.PollInterval)}
}

// settleParked tries again the parked settlements that are due, each after
// a wait that doubles from PollInterval up to a minute.
func (q *Queue) settleParked() {
	now := time.Now()
	q.parked.mu.Lock()
	var due []*parkedOutcome
	for _, p := range q.parked.items {
		if !p.next.After(now) {
			due = append(due, p)
		}
	}
	q.parked.mu.Unlock()
	for _, p := range due {
		state, err := q.settle(p.c, p.update)
		q.parked.mu.Lock()
		if err != nil {
			p.tries++
			p.next = now.Add(min(q.opts.PollInterval<<min(p.tries, 16), time.Minute))
		} else {
			delete(q.parked.items, p.c.id)
		}
		q.parked.mu.Unlock()
		if err != nil {
			q.opts.Logger.Error("record delivery outcome; will try again", "delivery", p.c.id, "tries", p.tries, "err", err)
		} else {
			q.opts.Logger.Info("recorded delivery outcome after retrying", "delivery", p.c.id, "state", state)
		}
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
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return trimAttempts(txn, id, math.MaxInt)
}

// appendAttempt adds entry to the attempt log of delivery id and drops the
// entries beyond the latest keepAttempts. The error is cut at errorLogCap
// bytes, so that every entry is bounded (see List).
func appendAttempt(txn *badger.Txn, id string, rec *record, entry webhook.Attempt) error {
	entry.Error = cutUTF8(entry.Error, errorLogCap)
	enc, err := json.Marshal(entry)
	if err != nil {
		return err
	}
	rec.Logged++
	if err := txn.Set(keyAttempt(id, rec.Logged), enc); err != nil {
		return err
	}
	return trimAttempts(txn, id, rec.Logged-keepAttempts+1)
}

// trimAttempts deletes the attempt log entries of id numbered below from
// (all of them for math.MaxInt), whatever was kept when they were written.
func trimAttempts(txn *badger.Txn, id string, from int) error {
	prefix := attemptPrefix(id)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	var old [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if len(k) == len(prefix)+4 && int64(binary.BigEndian.Uint32(k[len(prefix):])) >= int64(from) {
			break
		}
		old = append(old, it.Item().KeyCopy(nil))
	}
	it.Close()
	for _, k := range old {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
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
