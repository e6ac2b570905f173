package queue

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/google/uuid"
	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// PGQueue is the delivery queue on PostgreSQL (see the package doc), shared
// by every sidecar that opens it on the same schema. It has the methods of
// Queue, with the same meaning. Its methods are safe for concurrent use.
type PGQueue struct {
	*core
	db      *pgstore.DB
	pool    *pgxpool.Pool
	owner   string // this queue's name in the leases it takes
	channel string // NOTIFY channel of new ready work

	busy atomic.Int64 // attempts in flight

	writes groupCommit[*pgWrite]   // Enqueue's, Hold's and Confirm's writes, committed together
	books  groupCommit[*pgOutcome] // outcomes, written together without a sync
	parkMu sync.Mutex
	parked []*pgOutcome // outcomes whose write failed, tried again by Run

	fault func(op string) error // test seam: an injected error for op
}

var (
	_ backend = (*PGQueue)(nil)
	_ backend = (*Queue)(nil)
)

// backend is the method set both queues share with the rest of the
// code (the API, the admin listener, the merger, the matchers' sink).
type backend interface {
	Run(ctx context.Context) error
	Enqueue(ctx context.Context, events []webhook.Event) (int, error)
	Hold(ctx context.Context, events []webhook.Event, until time.Time, remember time.Duration) (int, error)
	Confirm(ctx context.Context, events []webhook.Event, remember time.Duration) (ConfirmResult, error)
	Forget(ctx context.Context, keys []string) error
	Settle(now time.Time, limit int, deliver func(heldAt time.Time) bool) (released, dropped int, err error)
	List(ctx context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error)
	Redeliver(ctx context.Context, hookID, deliveryID string) (int, error)
	CancelHook(ctx context.Context, hookID string) error
	SendTest(ctx context.Context, t webhook.TestSend) (int, error)
	DeadLetters() map[string]int
}

// dbTimeout bounds one background round trip of the queue (a claim, a batch
// of outcomes, a sweep batch): a database that does not answer is logged
// and tried again, never waited for forever.
const dbTimeout = 30 * time.Second

// unknownGrace is how old a delivery of a hook this sidecar does not know
// must be before it is dropped as its hook's: a hook made through another
// sidecar reaches this one's index within a second, so a younger delivery
// of an unknown hook waits for it instead (see the package doc). While the
// store's listeners are not all connected (pgstore.DB.Connected), no
// delivery is dropped for an unknown hook: this sidecar may be missing the
// others' changes.
const unknownGrace = time.Minute

// OpenPostgres prepares the queue on db, whose schema must be migrated
// (db.Migrate). Deliveries already stored are the queue's from the start;
// nothing is loaded into memory.
func OpenPostgres(ctx context.Context, db *pgstore.DB, hooks Hooks, opts Options) (*PGQueue, error) {
	if db == nil || hooks == nil {
		return nil, errors.New("queue: nil database or hooks")
	}
	c, err := newCore(hooks, opts)
	if err != nil {
		return nil, err
	}
	q := &PGQueue{
		core:    c,
		db:      db,
		pool:    db.Pool(),
		owner:   uuid.NewString(),
		channel: db.Channel("queue"),
	}
	q.writes.commit = q.commitWrites
	q.books.commit = q.writeOutcomes
	if _, err := q.pool.Exec(ctx, `SELECT 1 FROM queue_deliveries LIMIT 0`); err != nil {
		return nil, fmt.Errorf("queue: the store's schema is not ready (migrate it first): %w", err)
	}
	if err := q.initMetrics(q); err != nil {
		return nil, err
	}
	return q, nil
}

// pgWrite is one Enqueue, Hold or Confirm call on its way into the store.
// keys are the hashed event keys its apply decides about (locked for its
// round); items are the deliveries it made before its round (Enqueue,
// Hold), given fresh ids when one collides with a stored delivery. apply
// may run more than once (after a deadlock or an id collision, or alone
// after its round failed), always on a fresh transaction, so it keeps its
// results in variables it resets first. after runs once, when its writes
// are committed.
type pgWrite struct {
	keys  []string
	items []pending
	apply func(r *pgRound) error
	after func()
	done  chan error
}

// pgRound is the transaction of one round of writes and what the writes
// add to it, in the order they came: the states of the round's event keys
// (their rows locked), the keys they changed with when each expires, and
// the deliveries to insert.
type pgRound struct {
	ctx     context.Context
	tx      pgx.Tx
	states  map[string]keyState
	expires map[string]int64 // the changed keys
	insert  []pending
	heldBy  map[string]bool // hashed keys of held deliveries in insert
	ready   bool            // new ready work: tell every sidecar
}

// set changes the state of event key h, kept until expires.
func (r *pgRound) set(h string, st keyState, expires int64) {
	r.states[h], r.expires[h] = st, expires
}

// add stores items with the round.
func (r *pgRound) add(items ...pending) {
	for _, it := range items {
		if it.rec.State == StateHeld {
			r.heldBy[it.rec.Key] = true
		}
	}
	r.insert = append(r.insert, items...)
}

// flush inserts the deliveries added so far.
func (r *pgRound) flush() error {
	if len(r.insert) == 0 {
		return nil
	}
	err := insertDeliveries(r.ctx, r.tx, r.insert)
	r.insert, r.heldBy = nil, map[string]bool{}
	return err
}

// idTries bounds how often a round is made again with fresh delivery ids
// when one collides with another sidecar's delivery.
const idTries = 5

// write hands w to the group commit and waits for its commit, or for ctx:
// a caller that stops waiting gets ctx's error (lost deliveries counted as
// abandoned) and its write goes on.
func (q *PGQueue) write(ctx context.Context, what string, w *pgWrite, lost int) error {
	w.done = make(chan error, 1)
	q.writes.submit(w)
	select {
	case err := <-w.done:
		if err != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		return nil
	case <-ctx.Done():
		q.m.abandoned.Add(float64(lost))
		return fmt.Errorf("%s: gave up waiting for the database: %w", what, ctx.Err())
	}
}

// Enqueue stores one delivery per active subscribed hook of each event and
// returns, once they are committed, how many it stored. The deliveries of
// one call are in one transaction, shared with the Enqueue, Hold and
// Confirm calls that arrived while the previous one was being committed
// (group commit).
//
// Enqueue gives up when ctx ends before the commit: the caller gets ctx's
// error and must count the events as possibly lost; the commit goes on, and
// its deliveries are delivered if it completes.
func (q *PGQueue) Enqueue(ctx context.Context, events []webhook.Event) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	items, err := q.prepare(events)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	w := &pgWrite{items: items}
	w.apply = func(r *pgRound) error {
		r.add(w.items...)
		r.ready = true
		return nil
	}
	w.after = func() {
		q.m.enqueued.Add(float64(len(items)))
		q.poke()
	}
	if err := q.write(ctx, "enqueue", w, len(items)); err != nil {
		return 0, err
	}
	return len(items), nil
}

// commitWrites commits the writes of a round in one transaction; when that
// fails, each write is tried in one of its own, so that one caller's bad
// write costs the others nothing.
func (q *PGQueue) commitWrites(ws []*pgWrite) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	err := q.writeRound(ctx, ws)
	if err != nil && len(ws) > 1 {
		for _, w := range ws {
			q.finishWrite(w, q.writeRound(ctx, []*pgWrite{w}))
		}
		return
	}
	for _, w := range ws {
		q.finishWrite(w, err)
	}
}

func (q *PGQueue) finishWrite(w *pgWrite, err error) {
	if err == nil && w.after != nil {
		w.after()
	}
	w.done <- err
}

// writeRound applies ws, in order, to one transaction and commits it. The
// event keys of all of them are locked first, in key order (lockKeys), so
// rounds of several sidecars that share keys are decided one after the
// other. A delivery id that another sidecar's delivery already has (their
// id generators drew the same node and millisecond) gets the round made
// again with fresh ids.
func (q *PGQueue) writeRound(ctx context.Context, ws []*pgWrite) error {
	if err := q.inject("write"); err != nil {
		return err
	}
	var keys []string
	for _, w := range ws {
		keys = append(keys, w.keys...)
	}
	for try := 1; ; try++ {
		err := q.inTx(ctx, func(tx pgx.Tx) error {
			r := &pgRound{ctx: ctx, tx: tx, expires: map[string]int64{}, heldBy: map[string]bool{}}
			if len(keys) > 0 {
				var err error
				if r.states, err = lockKeys(ctx, tx, keys, q.opts.Now().UnixMilli()); err != nil {
					return err
				}
			}
			for _, w := range ws {
				if err := w.apply(r); err != nil {
					return err
				}
			}
			if err := r.flush(); err != nil {
				return err
			}
			if err := saveKeys(ctx, tx, r.states, r.expires); err != nil {
				return err
			}
			if r.ready {
				return q.notifyTx(ctx, tx)
			}
			return nil
		})
		if !idTaken(err) || try == idTries {
			return err
		}
		q.opts.Logger.Warn("a delivery id was taken by another sidecar; storing again with fresh ids", "try", try)
		for _, w := range ws {
			q.renewIDs(w.items)
		}
	}
}

// idTaken reports whether err is the store refusing a delivery whose id a
// stored delivery has.
func idTaken(err error) bool { return pgstore.IsUniqueViolation(err, "queue_deliveries_pkey") }

// renewIDs gives items fresh delivery ids; an occurrence, named by the id
// of its first delivery, takes that delivery's new id.
func (q *core) renewIDs(items []pending) {
	now := q.opts.Now()
	fresh := make(map[string]string, len(items))
	for i := range items {
		id := q.ids.Next(now)
		fresh[items[i].id] = id
		items[i].id = id
	}
	for i := range items {
		if id, ok := fresh[items[i].occ]; ok {
			items[i].occ = id
		}
	}
}

// insertDeliveries stores items as they are (state, due; held ones with
// their event key and occurrence) in one statement.
func insertDeliveries(ctx context.Context, tx pgx.Tx, items []pending) error {
	n := len(items)
	ids, hooks, users, events, types, states, keys, occs := make([]string, n), make([]string, n), make([]string, n),
		make([]string, n), make([]string, n), make([]string, n), make([]*string, n), make([]*string, n)
	created, due := make([]int64, n), make([]int64, n)
	bodies := make([][]byte, n)
	for i, it := range items {
		ids[i], hooks[i], users[i], events[i], types[i], states[i] = it.id, it.rec.Hook, it.rec.User, it.rec.Event, it.rec.Type, it.rec.State
		created[i], due[i], bodies[i] = it.rec.Created, it.rec.Due, it.body
		if it.rec.State == StateHeld {
			keys[i], occs[i] = &items[i].rec.Key, &items[i].rec.Occ
		}
	}
	_, err := tx.Exec(ctx, `INSERT INTO queue_deliveries (id, hook, user_id, event, type, state, event_key, occ, created, due, body)
		SELECT * FROM unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[], $8::text[], $9::bigint[], $10::bigint[], $11::bytea[])`,
		ids, hooks, users, events, types, states, keys, occs, created, due, bodies)
	return err
}

// notifyTx tells every sidecar, when tx commits, that there is new ready
// work.
func (q *PGQueue) notifyTx(ctx context.Context, tx pgx.Tx) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, '')`, q.channel)
	return err
}

// inject returns the error the fault seam injects for op, if any.
func (q *PGQueue) inject(op string) error {
	if q.fault == nil {
		return nil
	}
	return q.fault(op)
}

// DeadLetters counts the dead letters of each hook that has any (every
// sidecar's: they are counted in the store).
func (q *PGQueue) DeadLetters() map[string]int {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	rows, err := q.pool.Query(ctx, `SELECT hook, count(*) FROM queue_deliveries WHERE state = 'dead' GROUP BY hook`)
	if err != nil {
		q.opts.Logger.Error("count dead letters", "err", err)
		return nil
	}
	var m map[string]int
	var hook string
	var n int
	_, err = pgx.ForEachRow(rows, []any{&hook, &n}, func() error {
		if m == nil {
			m = map[string]int{}
		}
		m[hook] = n
		return nil
	})
	if err != nil {
		q.opts.Logger.Error("count dead letters", "err", err)
		return nil
	}
	return m
}

// depth counts the store's deliveries by state (every sidecar's), each
// count an index-only scan of a partial index that holds just those rows.
func (q *PGQueue) depth() depth {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var d depth
	var oldest *int64
	err := q.pool.QueryRow(ctx, `SELECT
		(SELECT count(*) FROM queue_deliveries WHERE state = 'ready' AND lease_owner IS NULL),
		(SELECT count(*) FROM queue_deliveries WHERE lease_owner IS NOT NULL),
		(SELECT count(*) FROM queue_deliveries WHERE state = 'dead'),
		(SELECT count(*) FROM queue_deliveries WHERE state = 'held'),
		(SELECT min(due) FROM queue_deliveries WHERE state = 'ready' AND lease_owner IS NULL)`).
		Scan(&d.ready, &d.leased, &d.dead, &d.held, &oldest)
	if err != nil {
		q.opts.Logger.Error("read the queue's depth", "err", err)
		return depth{}
	}
	if now := q.opts.Now().UnixMilli(); oldest != nil && *oldest < now {
		d.oldest = time.Duration(now-*oldest) * time.Millisecond
	}
	return d
}

// groupCommit is a leader/follower group commit: a submit that finds no
// round in flight starts one, in a goroutine of its own (so that a caller
// can stop waiting while the database hangs, and the round still
// completes); the round hands commit everything waiting at that moment (at
// most maxRound), and what arrives meanwhile goes in the next round. commit
// reports to each item itself.
type groupCommit[T any] struct {
	commit func(items []T)

	mu      sync.Mutex
	pending []T
	leading bool
	wg      sync.WaitGroup // items submitted and not yet committed
	rounds  atomic.Int64   // rounds committed, for tests and benchmarks
}

func (g *groupCommit[T]) submit(item T) {
	g.wg.Add(1)
	g.mu.Lock()
	g.pending = append(g.pending, item)
	start := !g.leading
	g.leading = true
	g.mu.Unlock()
	if start {
		go g.lead()
	}
}

func (g *groupCommit[T]) lead() {
	for {
		g.mu.Lock()
		if len(g.pending) == 0 {
			g.leading = false
			g.mu.Unlock()
			return
		}
		n := min(len(g.pending), maxRound)
		round := g.pending[:n:n]
		g.pending = append([]T(nil), g.pending[n:]...)
		g.mu.Unlock()
		g.commit(round)
		g.rounds.Add(1)
		g.wg.Add(-n)
	}
}

// drain returns once everything submitted before it has been committed
// (or failed).
func (g *groupCommit[T]) drain() { g.wg.Wait() }
