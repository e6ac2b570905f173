package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// List paging bounds.
const (
	DefaultListLimit = 10
	MaxListLimit     = 100
)

// Size bounds of one listing. A delivery's own fields (ids in Ocean's
// formats, an event type, two times) take under maxDeliveryJSON bytes of
// JSON. Its attempts, at most keepAttempts, are added latest first while all
// attempts of the answer take at most listAttemptBytes; the rest are counted
// in omittedAttempts. One attempt takes at most about 28 KiB (a 4 KiB
// response and a 512-byte error, each byte escaping to at most 6), so one
// delivery's whole log always fits: a listing of that delivery alone
// (limit 1, untilId the id listed before it) shows every attempt kept. An
// answer is thus at most MaxListBytes of JSON.
const (
	maxDeliveryJSON  = 1 << 10
	listAttemptBytes = 1 << 20
	MaxListBytes     = MaxListLimit*maxDeliveryJSON + listAttemptBytes
)

// batch is how many deliveries one management transaction touches.
const batch = 256

// CancelHook removes every delivery of hookID (pending, leased, dead and
// delivered) and its attempt log, in the background (see jobs.go): it
// returns at once. An attempt in flight may still reach the receiver, but
// its outcome is discarded; a delivery claimed before its removal is dropped
// when its hook is found gone.
func (q *core) CancelHook(_ context.Context, hookID string) error {
	if !validHookID(hookID) {
		return nil
	}
	q.jobs.add(hookID, jobCancel, redeliverJob{})
	return nil
}

// cancelBatch removes up to batch deliveries of hook (and its redeliver-all
// job); done once none is left. Each batch reads the hook's index from past
// the last delivery the batch before removed (q.cancelAt), not over the
// deletion markers of all it removed; when that finds none, one read from
// the start finds a delivery stored below that point meanwhile (an enqueue
// that made its id before the hook went and committed after).
func (q *Queue) cancelBatch(hook string) (removed int, done bool, err error) {
	q.mu.Lock()
	at := q.cancelAt[hook]
	q.mu.Unlock()
	ids, err := q.hookIDs(hook, at, batch)
	if err == nil && len(ids) == 0 && at != "" {
		ids, err = q.hookIDs(hook, "", batch)
	}
	if err != nil {
		return 0, false, err
	}
	var ready, dead, held int64
	var gone []string
	err = q.commits.wait(func(txn *badger.Txn) error {
		ready, dead, held, gone = 0, 0, 0, gone[:0]
		if err := txn.Delete(keyJob(hook)); err != nil {
			return err
		}
		for _, id := range ids {
			rec, err := getRecord(txn, id)
			if errors.Is(err, badger.ErrKeyNotFound) {
				if err := txn.Delete(keyHook(hook, id)); err != nil {
					return err
				}
				continue
			}
			if err != nil {
				return err
			}
			switch rec.State {
			case webhook.StateReady:
				ready++ // whether or not an attempt holds it: its ready key goes
			case webhook.StateDead:
				dead++
			case StateHeld:
				held++
			}
			if err := deleteDelivery(txn, id, rec); err != nil {
				return err
			}
			gone = append(gone, id)
		}
		return nil
	}, func() {
		q.readyKeys.Add(-ready)
		q.dead.Add(-dead)
		q.deadOf.add(hook, -int(dead))
		q.held.Add(-held)
		q.mu.Lock()
		for _, id := range gone {
			if l := q.leases[id]; l != nil && !l.gone {
				l.gone = true // its outcome writes nothing
				q.leased.Add(-1)
			}
		}
		if len(ids) == 0 {
			q.forgetLocked(hook)
			delete(q.cancelAt, hook)
		} else {
			if q.cancelAt == nil {
				q.cancelAt = map[string]string{}
			}
			q.cancelAt[hook] = ids[len(ids)-1]
		}
		q.mu.Unlock()
	})
	if err != nil {
		return 0, false, fmt.Errorf("cancel deliveries of %s: %w", hook, err)
	}
	return len(ids), len(ids) == 0, nil
}

// hookIDs lists up to n delivery ids of hook after the id after (oldest first).
func (q *Queue) hookIDs(hook, after string, n int) ([]string, error) {
	var ids []string
	prefix := hookPrefix(hook)
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		it.Seek(append(bytes.Clone(prefix), after...))
		for ; it.Valid() && len(ids) < n; it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			if id != after {
				ids = append(ids, id)
			}
		}
		return nil
	})
	return ids, err
}

// List returns hookID's deliveries newest first, at most limit (default 10,
// at most 100) of them older than untilID, each with its latest attempts
// (oldest first) as the size bounds above allow. An empty hookID lists every
// hook's deliveries.
func (q *Queue) List(ctx context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit = listLimit(limit)
	out := []webhook.Delivery{}
	if hookID != "" && !validHookID(hookID) {
		return out, nil
	}
	prefix := []byte(pRecord)
	if hookID != "" {
		prefix = hookPrefix(hookID)
	}
	budget := listAttemptBytes
	err := q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
		defer it.Close()
		start := append(bytes.Clone(prefix), 0xff)
		if untilID != "" {
			start = append(bytes.Clone(prefix), untilID...)
		}
		for it.Seek(start); it.Valid() && len(out) < limit; it.Next() {
			id := string(it.Item().Key()[len(prefix):])
			if id == untilID {
				continue
			}
			d, err := q.view(txn, id, &budget)
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			out = append(out, d)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// view is the user-facing form of a delivery and of its latest attempts,
// as many as fit in budget (bytes of JSON, reduced by what is taken).
func (q *Queue) view(txn *badger.Txn, id string, budget *int) (webhook.Delivery, error) {
	rec, err := getRecord(txn, id)
	if err != nil {
		return webhook.Delivery{}, err
	}
	d := deliveryView(id, rec, q.isLeased(id)) // leases live in memory only
	prefix := attemptPrefix(id)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	defer it.Close()
	for it.Seek(append(bytes.Clone(prefix), 0xff, 0xff, 0xff, 0xff, 0xff)); it.Valid() && len(d.Attempts) < keepAttempts; it.Next() {
		var a webhook.Attempt
		fits := true
		err := it.Item().Value(func(v []byte) (err error) {
			a, fits, err = fitAttempt(v, budget)
			return err
		})
		if err != nil {
			return d, err
		}
		if !fits {
			break
		}
		d.Attempts = append(d.Attempts, a)
	}
	slices.Reverse(d.Attempts)
	d.Omitted = max(rec.Logged-len(d.Attempts), 0)
	return d, nil
}

// deliveryView is the user-facing form of rec without its attempts; leased
// says an attempt holds it now.
func deliveryView(id string, rec record, leased bool) webhook.Delivery {
	d := webhook.Delivery{ID: id, HookID: rec.Hook, UserID: rec.User, EventID: rec.Event, Type: rec.Type,
		CreatedAt: time.UnixMilli(rec.Created).UTC(), State: rec.State, Attempts: []webhook.Attempt{}}
	switch {
	case rec.State == webhook.StateReady && leased:
		d.State = webhook.StateLeased
	case rec.State == webhook.StateReady:
		next := time.UnixMilli(rec.Due).UTC()
		d.NextAt = &next
	}
	return d
}

// fitAttempt decodes the stored attempt log entry v when it fits in budget
// (bytes of a listing's JSON, reduced by what it takes); fits is false when
// it does not, and the listing takes no more attempts.
func fitAttempt(v []byte, budget *int) (a webhook.Attempt, fits bool, err error) {
	// The stored JSON is what json.Marshal makes of the entry; it encodes
	// again to at most its length (plus a comma).
	if len(v)+1 > *budget {
		return a, false, nil
	}
	*budget -= len(v) + 1
	return a, true, json.Unmarshal(v, &a)
}

// listLimit is a listing's limit: the default for none, at most MaxListLimit.
func listLimit(limit int) int {
	if limit <= 0 {
		return DefaultListLimit
	}
	return min(limit, MaxListLimit)
}

// Redeliver puts deliveryID of hookID back to ready, due now, with its
// attempts reset and its eventId kept: a dead letter or a delivered one is
// sent again, a ready one is brought forward, a leased one is left alone. It
// returns how many deliveries it queued (0 or 1); an id that names no
// delivery of the hook is webhook.ErrNoSuchDelivery.
//
// An empty deliveryID redelivers every dead letter the hook has now, in the
// background (see jobs.go): Redeliver stores the job and returns 0 at once.
func (q *Queue) Redeliver(ctx context.Context, hookID, deliveryID string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := q.opts.Now()
	if deliveryID == "" {
		if !validHookID(hookID) {
			return 0, nil
		}
		if err := q.startRedeliverAll(hookID, now); err != nil {
			return 0, fmt.Errorf("redeliver: %w", err)
		}
		return 0, nil
	}
	if !validID(deliveryID) || !validHookID(hookID) {
		return 0, webhook.ErrNoSuchDelivery
	}
	return q.requeue([]string{deliveryID}, hookID, now.UnixMilli(), true, nil)
}

// requeue makes ids of hook ready at now, in one transaction that also runs
// also (when not nil) first, and returns once that is on disk. With one (an
// explicit id), any state but leased (being attempted) qualifies; otherwise
// only dead letters do.
func (q *Queue) requeue(ids []string, hook string, now int64, one bool, also func(txn *badger.Txn) error) (int, error) {
	var fromDead, fromDone int
	var moved []string
	err := q.commits.wait(func(txn *badger.Txn) error {
		fromDead, fromDone, moved = 0, 0, moved[:0]
		if also != nil {
			if err := also(txn); err != nil {
				return err
			}
		}
		for _, id := range ids {
			rec, err := getRecord(txn, id)
			if errors.Is(err, badger.ErrKeyNotFound) || (err == nil && rec.Hook != hook) {
				if one {
					return webhook.ErrNoSuchDelivery
				}
				continue
			}
			if err != nil {
				return err
			}
			if !one && rec.State != webhook.StateDead {
				continue
			}
			switch rec.State {
			case webhook.StateLeased, StateHeld: // a held one goes out when its hold ends
				continue
			case webhook.StateReady:
				if q.isLeased(id) {
					continue
				}
				if err := txn.Delete(keyReady(hook, rec.Due, id)); err != nil {
					return err
				}
			case webhook.StateDead, webhook.StateDelivered:
				if err := txn.Delete(keyExpiry(rec.Expires, id)); err != nil {
					return err
				}
				if rec.State == webhook.StateDead {
					fromDead++
				} else {
					fromDone++
				}
				rec.Attempts, rec.Expires = 0, 0
			}
			rec.State, rec.Due = webhook.StateReady, now
			if err := putRecord(txn, id, rec); err != nil {
				return err
			}
			if err := txn.Set(keyReady(hook, now, id), nil); err != nil {
				return err
			}
			moved = append(moved, id)
		}
		return nil
	}, func() {
		q.dead.Add(-int64(fromDead))
		q.deadOf.add(hook, -fromDead)
		q.readyKeys.Add(int64(fromDead + fromDone))
		refs := map[string][]readyRef{}
		for _, id := range moved {
			refs[hook] = append(refs[hook], readyRef{now, id})
		}
		q.notify(refs)
	})
	if err != nil {
		if errors.Is(err, webhook.ErrNoSuchDelivery) || errors.Is(err, errJobChanged) {
			return 0, err
		}
		return 0, fmt.Errorf("redeliver: %w", err)
	}
	return len(moved), nil
}

// SendTest makes one attempt (no retries) of a test delivery to t.URL with
// t.Secret, with the same envelope, headers, signature and SSRF guard as a
// queued delivery, and records it on the hook like any attempt. The status is
// the receiver's, or 1 with the error when none answered.
func (q *core) SendTest(ctx context.Context, t webhook.TestSend) (int, error) {
	now := q.opts.Now()
	rec := record{Hook: t.HookID, User: t.UserID, Event: uuid.NewString(), Type: t.Type, Created: now.UnixMilli()}
	body, err := q.envelope(rec, t.Body)
	if err != nil {
		return 0, fmt.Errorf("test delivery: %w", err)
	}
	res := q.sender.send(ctx, q.sender.single, t.URL, t.HookID, t.Secret, rec.Event, body, now)
	if t.HookID != "" {
		q.hooks.RecordAttempt(t.HookID, now, res.Status)
	}
	q.m.latency.Observe(res.Duration.Seconds())
	if res.Err != nil {
		return res.Status, fmt.Errorf("test delivery: %w", res.Err)
	}
	return res.Status, nil
}
