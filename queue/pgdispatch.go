package queue

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
)

// Run delivers until ctx ends: it claims due deliveries (new ones at once,
// on this sidecar's NOTIFY or another's; retries within PollInterval),
// sweeps expired deliveries and event keys, does the background jobs of the
// management calls, writes the hooks' latest attempts, and writes again the
// outcomes whose write failed. After ctx ends it claims nothing more and
// waits for in-flight attempts up to ShutdownGrace; attempts still running
// then are cancelled. Before it returns, every outcome recorded so far is
// written and every lease this queue still holds is given back, so its
// deliveries are ready for the other sidecars at once.
func (q *PGQueue) Run(ctx context.Context) error {
	err := q.run(ctx, q, func(ctx context.Context) {
		_ = q.db.Listen(ctx, []string{q.channel},
			func(context.Context) error { q.poke(); return nil },
			func(string, string) { q.poke() })
	})
	if err != nil {
		return err
	}
	q.books.drain()
	q.releaseLeases()
	q.flushLatest()
	return nil
}

// polled frees the leases that ran out.
func (q *PGQueue) polled() { q.freeExpiredLeases(context.Background()) }

// retryOutcomes hands the outcomes whose write failed to the writer again.
func (q *PGQueue) retryOutcomes() { q.retryParked() }

// claimMax is the most deliveries one claim takes.
const claimMax = 256

// dispatch claims due deliveries while workers are free and starts an
// attempt for each.
func (q *PGQueue) dispatch(ctx context.Context, attempts *sync.WaitGroup) {
	for ctx.Err() == nil {
		want := min(q.opts.Workers-int(q.busy.Load()), claimMax)
		if want <= 0 {
			return
		}
		got, err := q.claim(ctx, want)
		if err != nil {
			q.opts.Logger.Error("claim due deliveries", "err", err)
			return // tried again at the next poll
		}
		q.busy.Add(int64(len(got)))
		for _, l := range got {
			attempts.Go(func() { q.attempt(ctx, l) })
		}
		if len(got) < want {
			return
		}
	}
}

// pgLease is a delivery this queue claimed: its lease (owner, until) is in
// the store, and an outcome is written only where the lease is still the
// one it took.
type pgLease struct {
	id, hook string
	until    time.Time // lease_until as stored: with the owner, the lease's identity
	ends     time.Time // this sidecar's clock: the lease is no longer ours after it
	created  int64
	event    string
	typ      string
	attempts int
	body     []byte
}

// claimSQL takes up to $2 due deliveries ($1: now in unix ms), hooks with
// the earliest due first, never more per hook than $3 counting every
// sidecar's leases, and leases them to $4 for $5 ms of the database's
// clock. It runs under the claim lock (claim), so the leases it counts
// cannot change while it runs; SKIP LOCKED passes over a delivery a
// management call is changing. heads walks the hooks that have unleased
// ready deliveries (a loose index scan: one probe per hook, not per
// delivery), so a hook with a large backlog at its limit costs the others
// one probe.
const claimSQL = `
WITH RECURSIVE heads AS (
    (SELECT hook, due FROM queue_deliveries
      WHERE state = 'ready' AND lease_owner IS NULL
      ORDER BY hook, due, id LIMIT 1)
  UNION ALL
    SELECT n.hook, n.due FROM heads h CROSS JOIN LATERAL (
      SELECT hook, due FROM queue_deliveries
       WHERE state = 'ready' AND lease_owner IS NULL AND hook > h.hook
       ORDER BY hook, due, id LIMIT 1) n
), live AS (
  SELECT hook, count(*) AS n FROM queue_deliveries
   WHERE lease_owner IS NOT NULL GROUP BY hook
), open AS (
  SELECT h.hook, h.due, $3 - coalesce(l.n, 0) AS free
    FROM heads h LEFT JOIN live l ON l.hook = h.hook
   WHERE h.due <= $1 AND $3 - coalesce(l.n, 0) > 0
   ORDER BY h.due LIMIT $2
), picked AS (
  SELECT c.id FROM open o CROSS JOIN LATERAL (
    SELECT d.id, d.due FROM queue_deliveries d
     WHERE d.hook = o.hook AND d.state = 'ready' AND d.lease_owner IS NULL AND d.due <= $1
     ORDER BY d.due, d.id LIMIT o.free
     FOR UPDATE SKIP LOCKED) c
  ORDER BY c.due, c.id LIMIT $2
)
UPDATE queue_deliveries d
   SET lease_owner = $4, lease_until = clock_timestamp() + $5 * interval '1 millisecond'
  FROM picked p WHERE d.id = p.id
RETURNING d.id, d.hook, d.created, d.event, d.type, d.attempts, d.body, d.lease_until`

// claim leases up to n due deliveries to this queue. Claims of all
// sidecars take turns (a transaction-level advisory lock of the schema), so
// that the per-hook limit they count holds across sidecars. Leases that ran
// out are freed by freeExpiredLeases, every PollInterval.
func (q *PGQueue) claim(ctx context.Context, n int) ([]*pgLease, error) {
	if err := q.inject("claim"); err != nil {
		return nil, err
	}
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	var got []*pgLease
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		got = got[:0]
		// A lease is bookkeeping: visible to every sidecar once committed,
		// it need not survive a crash of the database (its delivery is
		// then ready again, at least once), so its commit waits for no
		// sync.
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		if _, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext(current_schema() || '/queue/claim'))`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, claimSQL, q.opts.Now().UnixMilli(), n, q.opts.PerHookConcurrency, q.owner, q.leaseFor().Milliseconds())
		if err != nil {
			return err
		}
		ends := time.Now().Add(q.leaseFor())
		for rows.Next() {
			l := &pgLease{ends: ends}
			if err := rows.Scan(&l.id, &l.hook, &l.created, &l.event, &l.typ, &l.attempts, &l.body, &l.until); err != nil {
				rows.Close()
				return err
			}
			got = append(got, l)
		}
		return rows.Err()
	})
	if err != nil {
		return nil, err
	}
	return got, nil
}

// freeExpiredLeases makes the deliveries whose lease outlived
// AttemptTimeout + ShutdownGrace (their sidecar died, or could not write
// their outcome) ready again. It runs every PollInterval, not with each
// claim: a lease that ran out waits at most that much longer, and claims do
// not walk the lease index's dead entries, which pile up between vacuums.
func (q *PGQueue) freeExpiredLeases(ctx context.Context) {
	ctx, cancel := context.WithTimeout(ctx, dbTimeout)
	defer cancel()
	tag, err := q.pool.Exec(ctx, `UPDATE queue_deliveries SET lease_owner = NULL, lease_until = NULL
		WHERE lease_owner IS NOT NULL AND lease_until < now()`)
	if err != nil {
		q.opts.Logger.Error("free expired leases", "err", err)
		return
	}
	if n := tag.RowsAffected(); n > 0 {
		q.opts.Logger.Warn("leases outlived the attempt timeout; their deliveries are ready again", "count", n)
		q.poke()
	}
}

// leaseFor is how long a lease may last: an attempt (quick retries
// included) plus the shutdown grace that lets its outcome be recorded.
func (q *PGQueue) leaseFor() time.Duration { return q.opts.AttemptTimeout + q.opts.ShutdownGrace }

// outcomeKind is what an outcome does to its delivery.
type outcomeKind int

const (
	outcomeSettle  outcomeKind = iota // record the attempt and its verdict
	outcomeDrop                       // remove the delivery: its hook is gone
	outcomeRelease                    // give the lease back, nothing else (shutdown, a hook not known yet)
)

// pgOutcome is the write an attempt leaves, made only where the lease is
// still the one the attempt held.
type pgOutcome struct {
	l      *pgLease
	kind   outcomeKind
	v      verdict
	entry  []byte       // the attempt log entry (logEntry)
	due    int64        // with outcomeRelease and due > 0: the delivery's new due time
	logged func(string) // once written, with the state it left
}

// attempt delivers l's delivery once and hands its outcome to the
// bookkeeping writer.
func (q *PGQueue) attempt(ctx context.Context, l *pgLease) {
	defer func() {
		q.busy.Add(-1)
		q.poke()
	}()
	log := q.opts.Logger.With("delivery", l.id, "hook", l.hook, "type", l.typ)
	target, ok := q.hooks.Target(l.hook)
	if !ok {
		if q.opts.Now().Sub(time.UnixMilli(l.created)) < unknownGrace || !q.db.Connected() {
			// Made through another sidecar, whose hook may not have
			// reached this one's index yet (or cannot while this
			// sidecar does not hear the others' changes): tried again
			// shortly.
			log.Debug("hook not known here yet; delivery tried again shortly")
			q.books.submit(&pgOutcome{l: l, kind: outcomeRelease, due: q.opts.Now().Add(q.opts.PollInterval).UnixMilli()})
			return
		}
		log.Info("hook is gone; delivery dropped")
		q.m.attempts.WithLabelValues("dropped").Inc()
		q.books.submit(&pgOutcome{l: l, kind: outcomeDrop})
		return
	}
	entry, out, wait, end, ok := q.try(ctx, l.hook, target, l.event, l.body)
	if !ok {
		log.Info("attempt cancelled by shutdown; returned to ready")
		q.books.submit(&pgOutcome{l: l, kind: outcomeRelease})
		return
	}
	v := q.verdictOf(l.attempts, out, wait, end)
	// The attempt log is jsonb, which holds no NUL (\u0000): a NUL in the
	// answer is stored as U+FFFD, or the batch of outcomes written with it
	// would fail every time.
	entry.Response = strings.ReplaceAll(entry.Response, "\x00", "\uFFFD")
	entry.Error = strings.ReplaceAll(entry.Error, "\x00", "\uFFFD")
	enc, err := logEntry(entry)
	if err != nil {
		enc = []byte(`{}`)
		log.Error("encode the attempt log entry", "err", err)
	}
	q.books.submit(&pgOutcome{l: l, kind: outcomeSettle, v: v, entry: enc, logged: func(string) { logOutcome(log, v, entry, out) }})
}

// settleSQL writes the outcomes of attempts: each delivery's verdict, its
// attempt log entry appended (the oldest dropped beyond $9 entries), its
// lease ended; only where the lease ($8, the row's until) is still the
// attempt's.
const settleSQL = `
UPDATE queue_deliveries d SET
       state = o.state, attempts = o.attempts, due = o.due, expires = nullif(o.expires, 0),
       logged = d.logged + 1,
       log = (CASE WHEN jsonb_array_length(d.log) >= $9 THEN d.log - 0 ELSE d.log END) || jsonb_build_array(o.entry),
       lease_owner = NULL, lease_until = NULL
  FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::int[], $5::bigint[], $6::bigint[], $7::jsonb[])
       AS o(id, until, state, attempts, due, expires, entry)
 WHERE d.id = o.id AND d.lease_owner = $8 AND d.lease_until = o.until
RETURNING d.id`

// writeOutcomes writes a round of outcomes in one transaction, with
// synchronous_commit off: no caller waits for them, and a crash that loses
// them leaves their deliveries leased until the lease expires, then ready
// (at least once; see the package doc). When PostgreSQL refuses the round
// (an error of the server's, not a lost connection), each outcome is
// written in a transaction of its own, so that one it refuses does not hold
// up the others. Outcomes whose write failed are tried again by Run while
// their leases last.
func (q *PGQueue) writeOutcomes(os []*pgOutcome) {
	err := q.writeOutcomeRound(os)
	var refused *pgconn.PgError
	if err != nil && len(os) > 1 && errors.As(err, &refused) {
		for _, o := range os {
			q.writeOutcomes([]*pgOutcome{o})
		}
		return
	}
	if err != nil {
		q.opts.Logger.Error("record delivery outcomes; will try again", "outcomes", len(os), "err", err)
		q.parkMu.Lock()
		q.parked = append(q.parked, os...)
		q.parkMu.Unlock()
	}
}

// writeOutcomeRound writes os in one transaction (writeOutcomes).
func (q *PGQueue) writeOutcomeRound(os []*pgOutcome) error {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	var (
		s                     []*pgOutcome
		ids, states           []string
		untils                []time.Time
		attempts              []int
		dues, expires         []int64
		entries               [][]byte
		dropIDs, relIDs       []string
		dropUntils, relUntils []time.Time
		relDues               []int64
		applied               = map[string]bool{}
	)
	for _, o := range os {
		switch o.kind {
		case outcomeSettle:
			s = append(s, o)
			ids, untils, states = append(ids, o.l.id), append(untils, o.l.until), append(states, o.v.state)
			attempts, dues, expires = append(attempts, o.v.attempts), append(dues, o.v.due), append(expires, o.v.expires)
			entries = append(entries, o.entry)
		case outcomeDrop:
			dropIDs, dropUntils = append(dropIDs, o.l.id), append(dropUntils, o.l.until)
		case outcomeRelease:
			relIDs, relUntils, relDues = append(relIDs, o.l.id), append(relUntils, o.l.until), append(relDues, o.due)
		}
	}
	err := q.inject("settle")
	if err == nil {
		err = pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
			clear(applied)
			if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
				return err
			}
			if len(ids) > 0 {
				rows, err := tx.Query(ctx, settleSQL, ids, untils, states, attempts, dues, expires, entries, q.owner, keepAttempts)
				if err != nil {
					return err
				}
				var id string
				if _, err := pgx.ForEachRow(rows, []any{&id}, func() error { applied[id] = true; return nil }); err != nil {
					return err
				}
			}
			if len(dropIDs) > 0 {
				if _, err := tx.Exec(ctx, `DELETE FROM queue_deliveries d USING unnest($1::text[], $2::timestamptz[]) AS o(id, until)
					WHERE d.id = o.id AND d.lease_owner = $3 AND d.lease_until = o.until`, dropIDs, dropUntils, q.owner); err != nil {
					return err
				}
			}
			if len(relIDs) > 0 {
				if _, err := tx.Exec(ctx, `UPDATE queue_deliveries d SET lease_owner = NULL, lease_until = NULL,
						due = CASE WHEN o.due > 0 THEN o.due ELSE d.due END
					FROM unnest($1::text[], $2::timestamptz[], $3::bigint[]) AS o(id, until, due)
					WHERE d.id = o.id AND d.lease_owner = $4 AND d.lease_until = o.until`, relIDs, relUntils, relDues, q.owner); err != nil {
					return err
				}
			}
			return nil
		})
	}
	if err != nil {
		return err
	}
	for _, o := range s {
		if applied[o.l.id] && o.logged != nil {
			o.logged(o.v.state)
		}
	}
	q.poke() // the hooks' slots are free
	return nil
}

// retryParked hands the outcomes whose write failed to the writer again,
// while their leases last; an outcome whose lease has ended is given up
// (its delivery is attempted again: at least once).
func (q *PGQueue) retryParked() {
	q.parkMu.Lock()
	parked := q.parked
	q.parked = nil
	q.parkMu.Unlock()
	now := time.Now()
	lost := 0
	for _, o := range parked {
		if now.After(o.l.ends) {
			lost++
			continue
		}
		q.books.submit(o)
	}
	if lost > 0 {
		q.opts.Logger.Warn("delivery outcomes not recorded before their leases ended; those deliveries are attempted again", "count", lost)
	}
}

// releaseLeases gives back every lease this queue still holds (at the end
// of Run: the attempts are over, their outcomes written or lost).
func (q *PGQueue) releaseLeases() {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if _, err := q.pool.Exec(ctx, `UPDATE queue_deliveries SET lease_owner = NULL, lease_until = NULL WHERE lease_owner = $1`, q.owner); err != nil {
		q.opts.Logger.Error("give back leases; their deliveries are ready again when the leases expire", "err", err)
	}
}

// sweepBatch is how many expired deliveries one sweep statement removes.
const sweepBatch = 1000

// sweep removes delivered deliveries and dead letters whose time is up, and
// event keys past their time, and returns how many deliveries it removed.
func (q *PGQueue) sweep(now time.Time) (int, error) {
	ms := now.UnixMilli()
	removed := 0
	for {
		ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
		tag, err := q.pool.Exec(ctx, `DELETE FROM queue_deliveries WHERE id IN (
			SELECT id FROM queue_deliveries WHERE expires <= $1 ORDER BY expires LIMIT $2)
			AND state IN ('delivered', 'dead')`, ms, sweepBatch)
		cancel()
		if err != nil {
			return removed, fmt.Errorf("sweep: %w", err)
		}
		removed += int(tag.RowsAffected())
		if tag.RowsAffected() < sweepBatch {
			break
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	if _, err := q.pool.Exec(ctx, `DELETE FROM queue_event_keys WHERE expires <= $1`, ms); err != nil {
		return removed, fmt.Errorf("sweep event keys: %w", err)
	}
	return removed, nil
}

// isLeasedSQL is a listing's test of whether an attempt holds a delivery.
const isLeasedSQL = `(lease_owner IS NOT NULL AND lease_until > clock_timestamp())`
