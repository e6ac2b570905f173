package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/google/uuid"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Hooks is what the queue needs of the hook store.
type Hooks interface {
	// ActiveHooks are the active hooks of userID subscribed to eventType.
	ActiveHooks(userID, eventType string) []webhook.Target
	// Target is the hook's current URL and secret; false once it is deleted.
	Target(hookID string) (webhook.Target, bool)
	// RecordAttempt sets the hook's latestSentAt/latestStatus.
	RecordAttempt(hookID string, at time.Time, status int)
	// Deactivate turns the hook off (its receiver answered 410 Gone).
	Deactivate(hookID string)
}

// attemptBatcher is a hook store that records the latest attempts of many
// hooks in one write (hooks.Store does); the queue then hands it its batches
// instead of calling RecordAttempt once per hook, and hands a batch that
// failed again with the next.
type attemptBatcher interface {
	RecordAttempts(latest map[string]webhook.LatestAttempt) error
}

// failureTracker is a hook store that follows each hook's run of failed
// attempts and deactivates a hook whose attempts have all failed for too
// long (hooks.Store does: delivery.disableAfter). The queue reports every
// attempt of a queued delivery to it; the reason it returns, when it
// deactivated the hook, goes into that attempt's log entry.
type failureTracker interface {
	Attempted(hookID string, at time.Time, failed bool) (deactivated string)
}

// core is what the Badger queue (Queue) and the PostgreSQL queue (PGQueue)
// share: the options, the hook store, the sender, the id generator, the
// metrics and the hooks' latest attempts; and, as its methods, everything
// about a delivery that does not depend on where it is stored (its envelope,
// one attempt and what the attempt means for it, a test send).
type core struct {
	hooks  Hooks
	opts   Options
	server string
	sender *sender
	ids    *ocean.IDGen
	m      *metrics
	latest latestAttempts // hooks' latest attempts, written in batches
	rndMu  sync.Mutex     // opts.Rand is used under it
	jobs   jobs           // background work of the management calls (jobs.go)

	wake    chan struct{} // new due work or a freed slot: the dispatcher looks again
	running atomic.Bool
}

// newCore applies opts' defaults and makes the parts both queues share.
func newCore(hooks Hooks, opts Options) (*core, error) {
	server, host, err := opts.withDefaults()
	if err != nil {
		return nil, err
	}
	return &core{hooks: hooks, opts: opts, server: server, sender: newSender(&opts, host), ids: ocean.NewIDGen(opts.Rand),
		wake: make(chan struct{}, 1)}, nil
}

// initMetrics makes the metrics, their depth gauges read from src, and
// registers them when the options name a registerer.
func (q *core) initMetrics(src depthSource) error {
	q.m = newMetrics(src)
	if q.opts.Registerer != nil {
		if err := q.m.register(q.opts.Registerer); err != nil {
			return fmt.Errorf("queue: metrics: %w", err)
		}
	}
	return nil
}

// Queue is the durable delivery queue. Its methods are safe for concurrent use.
type Queue struct {
	*core
	db      *badger.DB
	commits *committer

	mu       sync.Mutex
	sched    map[string]*hookState  // hooks with ready or in-flight work
	due      dueHeap                // those with a due delivery and a free slot
	leases   map[string]*lease      // by delivery id
	leasesOf map[string]int         // leases per hook
	resume   map[string]resumePoint // where idle hooks' next reads start
	busy     int                    // attempts in flight, all hooks
	buffered int                    // read-ahead refs held by all hooks
	heldFrom []byte                 // Settle's next scan of the hold index starts here
	sweptTo  []byte                 // the sweep's next scan of the expiry index starts here (maintain.go)
	cancelAt map[string]string      // per hook being removed: the last delivery id a batch removed (cancelBatch)

	readyKeys, leased, dead atomic.Int64 // ready keys on disk, valid leases, dead letters
	held                    atomic.Int64 // deliveries waiting for confirmation (see Hold)
	gcRuns                  atomic.Int64 // value-log GC rounds, for tests
	reads                   atomic.Int64 // reads of a ready index, for tests
	trims                   atomic.Int64 // times the store's pages were dropped (trim.go)

	fault  func(op string) error // test seam: an injected store error for op (see inject)
	parked parkedOutcomes        // outcomes whose commit failed, retried by Run
	deadOf deadCounts            // dead letters per hook (dead.go)
}

// record is a delivery record (q/d/<id>).
type record struct {
	Hook     string `json:"hook"`
	User     string `json:"user"`
	Event    string `json:"event"`
	Type     string `json:"type"`
	Created  int64  `json:"created"` // unix ms at enqueue
	State    string `json:"state"`
	Attempts int    `json:"attempts"` // failed attempts since enqueue or the last redelivery
	Logged   int    `json:"logged"`   // attempt log entries ever written
	Due      int64  `json:"due,omitempty"`
	Expires  int64  `json:"expires,omitempty"`
	Key      string `json:"key,omitempty"` // hashed event key of a held delivery (see Hold)
	Occ      string `json:"occ,omitempty"` // a held delivery's occurrence: the first delivery id of its event
}

const noDue = math.MaxInt64

// Open prepares the queue on db, which must be opened with SyncWrites
// (BadgerOptions): the leases an older version stored are returned to
// ready, and the depth gauges and the schedule are rebuilt from the keys (a
// key-only scan; the backlog itself is not loaded).
func Open(db *badger.DB, hooks Hooks, opts Options) (*Queue, error) {
	if db == nil || hooks == nil {
		return nil, errors.New("queue: nil database or hooks")
	}
	if !db.Opts().SyncWrites {
		return nil, errors.New("queue: the database must be opened with SyncWrites (queue.BadgerOptions): an enqueue is durable when its commit returns")
	}
	c, err := newCore(hooks, opts)
	if err != nil {
		return nil, err
	}
	q := &Queue{
		core:     c,
		db:       db,
		commits:  newCommitter(db),
		sched:    make(map[string]*hookState),
		leases:   make(map[string]*lease),
		leasesOf: make(map[string]int),
		resume:   make(map[string]resumePoint),
	}
	if err := q.returnLeases(); err != nil {
		return nil, fmt.Errorf("queue: return leases: %w", err)
	}
	if err := q.load(); err != nil {
		return nil, fmt.Errorf("queue: load: %w", err)
	}
	if err := q.initMetrics(q); err != nil {
		return nil, err
	}
	return q, nil
}

// returnLeases puts every stored lease back into the ready index at the due
// time it had when it was claimed. This version keeps leases in memory
// only; stored ones (q/l/) come from an older version's data directory.
func (q *Queue) returnLeases() error {
	for {
		var ids []string
		err := q.db.View(func(txn *badger.Txn) error {
			it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pLease)})
			defer it.Close()
			for it.Rewind(); it.Valid() && len(ids) < 256; it.Next() {
				ids = append(ids, string(it.Item().Key()[len(pLease):]))
			}
			return nil
		})
		if err != nil || len(ids) == 0 {
			return err
		}
		err = q.update(func(txn *badger.Txn) error {
			for _, id := range ids {
				if err := txn.Delete(keyLease(id)); err != nil {
					return err
				}
				rec, err := getRecord(txn, id)
				if errors.Is(err, badger.ErrKeyNotFound) {
					continue
				}
				if err != nil {
					return err
				}
				rec.State = webhook.StateReady
				if err := putRecord(txn, id, rec); err != nil {
					return err
				}
				if err := txn.Set(keyReady(rec.Hook, rec.Due, id), nil); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		q.opts.Logger.Info("returned leases to ready", "count", len(ids))
	}
}

// load counts ready, held and dead deliveries and finds each hook's
// earliest due.
func (q *Queue) load() error {
	return q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pReady)})
		for it.Rewind(); it.Valid(); it.Next() {
			hook, due, id, ok := parseReady(it.Item().Key())
			if !ok {
				continue
			}
			q.readyKeys.Add(1)
			if st := q.sched[hook]; st == nil || st.next() == noDue {
				q.notifyLocked(hook, due, id) // the first key of each hook is enough
			}
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pHeld)})
		for it.Rewind(); it.Valid(); it.Next() {
			q.held.Add(1)
		}
		it.Close()
		it = txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pExpiry), PrefetchValues: true, PrefetchSize: 256})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			dead := false
			err := it.Item().Value(func(v []byte) error {
				dead = len(v) == 1 && v[0] == expDead
				return nil
			})
			if err != nil {
				return err
			}
			if !dead {
				continue
			}
			q.dead.Add(1)
			if _, id, ok := splitTimed(it.Item().Key(), len(pExpiry)); ok {
				if rec, err := getRecord(txn, id); err == nil {
					q.deadOf.add(rec.Hook, 1)
				}
			}
		}
		return nil
	})
}

// Enqueue stores one delivery per active subscribed hook of each event and
// returns, once they are synced to disk, how many it stored. All deliveries of
// one call are written in one transaction, shared with the concurrent calls
// that arrived while the previous one was being written (group commit: one
// sync covers them all).
//
// Enqueue gives up when ctx ends before the write is on disk, so a stalled
// disk cannot hold the caller past its own deadline. The write it started
// goes on: if it completes, its deliveries are scheduled as usual; the caller
// gets ctx's error and must count the events as possibly lost.
func (q *Queue) Enqueue(ctx context.Context, events []webhook.Event) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	items, err := q.prepare(events)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	done := make(chan error, 1)
	q.commits.submit(&op{
		urgent: true,
		apply:  func(txn *badger.Txn) error { return putAll(txn, items) },
		solo:   func() error { return q.writeChunked(items) },
		done: func(err error) {
			if err == nil {
				q.stored(items)
			}
			done <- err
		},
	})
	select {
	case err := <-done:
		if err != nil {
			return 0, fmt.Errorf("enqueue: %w", err)
		}
		return len(items), nil
	case <-ctx.Done():
		q.m.abandoned.Add(float64(len(items)))
		return 0, fmt.Errorf("enqueue: gave up waiting for the disk: %w", ctx.Err())
	}
}

// pending is one delivery on its way into the store.
type pending struct {
	id     string
	rec    record
	body   []byte
	key    string // the event's Key
	occ    string // the id of the first delivery of the same event
	recurs bool   // the event's Recurs
}

// prepare builds the deliveries of events, one per active subscribed hook.
func (q *core) prepare(events []webhook.Event) ([]pending, error) {
	now := q.opts.Now()
	ms := now.UnixMilli()
	var items []pending
	for _, ev := range events {
		first := len(items)
		for _, t := range q.hooks.ActiveHooks(ev.UserID, ev.Type) {
			if !validHookID(t.HookID) {
				q.opts.Logger.Error("hook id unusable as a key; event not queued", "hook", t.HookID, "type", ev.Type)
				continue
			}
			owner := t.UserID
			if owner == "" {
				owner = ev.UserID
			}
			rec := record{Hook: t.HookID, User: owner, Event: uuid.NewString(), Type: ev.Type,
				Created: ms, State: webhook.StateReady, Due: ms}
			body, err := q.envelope(rec, ev.Body)
			if err != nil {
				return nil, fmt.Errorf("enqueue %s: %w", ev.Type, err)
			}
			id := q.ids.Next(now)
			occ := id
			if len(items) > first {
				occ = items[first].id
			}
			items = append(items, pending{id: id, rec: rec, body: body, key: ev.Key, occ: occ, recurs: ev.Recurs})
		}
	}
	return items, nil
}

// putAll writes items as new ready deliveries.
func putAll(txn *badger.Txn, items []pending) error {
	for _, it := range items {
		if err := putPending(txn, it); err != nil {
			return err
		}
	}
	return nil
}

// writeChunked writes items too many for one transaction in as many as it
// takes: such a call cannot be atomic, but it is still durable (each commit
// synced) before Enqueue returns.
func (q *Queue) writeChunked(items []pending) error {
	txn := q.db.NewTransaction(true)
	defer func() { txn.Discard() }()
	for _, it := range items {
		err := putPending(txn, it)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = txn.Commit(); err != nil {
				return fmt.Errorf("commit: %w", err)
			}
			txn = q.db.NewTransaction(true)
			err = putPending(txn, it)
		}
		if err != nil {
			return err
		}
	}
	return txn.Commit()
}

// stored counts and schedules items once their commit is on disk.
func (q *Queue) stored(items []pending) {
	q.readyKeys.Add(int64(len(items)))
	q.m.enqueued.Add(float64(len(items)))
	refs := map[string][]readyRef{}
	for _, it := range items {
		refs[it.rec.Hook] = append(refs[it.rec.Hook], readyRef{it.rec.Due, it.id})
	}
	q.notify(refs)
}

// envelope is Ocean's delivery body, keys in Ocean's order, with HTML
// characters left unescaped as JSON.stringify leaves them.
func (q *core) envelope(rec record, body json.RawMessage) ([]byte, error) {
	if len(body) == 0 {
		body = json.RawMessage("{}")
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	err := enc.Encode(struct {
		Server    string          `json:"server"`
		HookID    string          `json:"hookId"`
		UserID    string          `json:"userId"`
		EventID   string          `json:"eventId"`
		CreatedAt int64           `json:"createdAt"`
		Type      string          `json:"type"`
		Body      json.RawMessage `json:"body"`
	}{q.server, rec.Hook, rec.User, rec.Event, rec.Created, rec.Type, body})
	if err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(buf.Bytes(), []byte("\n")), nil
}

// update runs fn in a read-write transaction, retrying on conflict.
func (q *Queue) update(fn func(txn *badger.Txn) error) error {
	for {
		err := q.db.Update(fn)
		if !errors.Is(err, badger.ErrConflict) {
			return err
		}
	}
}

// poke wakes the dispatcher without blocking.
func (q *core) poke() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// expiresAt is now plus d in unix ms.
func expiresAt(now time.Time, d time.Duration) int64 { return now.Add(d).UnixMilli() }
