package queue

import (
	"context"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Held deliveries on PostgreSQL keep the meaning of hold.go. An event key
// is a row of queue_event_keys; Hold and Confirm lock the rows of the keys
// they decide about (creating them when missing) before they read them, so
// the calls of every sidecar that concern one key are decided one after the
// other: when several sidecars confirm the same event from Ocean's event
// stream, the first releases or stores its deliveries and marks the key
// confirmed, and the others find it confirmed (a repeat). A key's row
// counts as unknown once its expires (the queue's clock) has passed; the
// sweep removes it.

// Hold stores one held delivery per active subscribed hook of each event,
// each event by its Key, until until; an event whose key was confirmed less
// than remember ago is not stored at all. It returns once the deliveries
// are committed, in a transaction shared with the calls that came at the
// same time (as Enqueue's), or gives up when ctx ends (its write goes on).
func (q *PGQueue) Hold(ctx context.Context, events []webhook.Event, until time.Time, remember time.Duration) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	if err := needKeys("hold", events); err != nil {
		return 0, err
	}
	items, err := q.prepare(events)
	if err != nil || len(items) == 0 {
		return 0, err
	}
	now := q.opts.Now()
	ms := until.UnixMilli()
	expires := now.Add(max(until.Sub(now), 0) + remember).UnixMilli()
	keys := make([]string, len(items))
	for i, it := range items {
		keys[i] = hashKey(it.key)
	}
	var stored int
	w := &pgWrite{keys: keys, items: items}
	w.apply = func(r *pgRound) error {
		stored = 0
		skip := map[string]bool{} // by occurrence: its twin came first
		decided := map[string]bool{}
		for i, it := range w.items {
			h := keys[i]
			if !decided[it.occ] {
				decided[it.occ] = true
				st, skipped := r.states[h].held(it.recurs)
				skip[it.occ] = skipped
				if st.mode != keyConfirmed {
					r.set(h, st, expires)
				}
			}
			if skip[it.occ] {
				continue
			}
			it.rec.State, it.rec.Due, it.rec.Key, it.rec.Occ = StateHeld, ms, h, it.occ
			r.add(it)
			stored++
		}
		return nil
	}
	w.after = func() { q.m.enqueued.Add(float64(stored)) }
	if err := q.write(ctx, "hold", w, len(items)); err != nil {
		return 0, err
	}
	return stored, nil
}

// Confirm takes events from the confirming source, each by its Key, as
// Queue.Confirm does: the held deliveries of an event get its body and
// become ready at once, keeping their eventIds; an event with nothing held
// is stored as new deliveries; an event whose key was already confirmed (by
// this sidecar or another) is a repeat and is ignored. It returns once
// everything is committed, in a transaction shared with the calls that came
// at the same time (as Enqueue's), or gives up when ctx ends (its write
// goes on).
func (q *PGQueue) Confirm(ctx context.Context, events []webhook.Event, remember time.Duration) (ConfirmResult, error) {
	if err := ctx.Err(); err != nil {
		return ConfirmResult{}, err
	}
	if err := needKeys("confirm", events); err != nil {
		return ConfirmResult{}, err
	}
	now := q.opts.Now()
	ms := now.UnixMilli()
	expires := now.Add(remember).UnixMilli()
	keys := make([]string, len(events))
	for i, ev := range events {
		keys[i] = hashKey(ev.Key)
	}
	var res ConfirmResult
	w := &pgWrite{keys: keys}
	w.apply = func(r *pgRound) error {
		res = ConfirmResult{}
		seen := map[string]bool{}
		for i, ev := range events {
			h := keys[i]
			st := r.states[h]
			if !ev.Recurs && (st.mode == keyConfirmed || seen[h]) {
				res.Repeats++
				continue
			}
			seen[h] = true
			n := 0
			if st.mode == keyHeld {
				if r.heldBy[h] { // held earlier in this round: in the table first
					if err := r.flush(); err != nil {
						return err
					}
				}
				var err error
				if n, err = q.releaseHeld(r.ctx, r.tx, h, ev, ms); err != nil {
					return err
				}
			}
			r.set(h, st.confirmed(ev.Recurs, n), expires)
			if n > 0 {
				res.Released += n
				continue
			}
			items, err := q.prepare([]webhook.Event{ev})
			if err != nil {
				return err
			}
			r.add(items...)
			res.New += len(items)
		}
		if res.Released+res.New > 0 {
			r.ready = true
		}
		return nil
	}
	w.after = func() {
		q.m.enqueued.Add(float64(res.New))
		if res.Released+res.New > 0 {
			q.poke()
		}
	}
	if err := q.write(ctx, "confirm", w, 0); err != nil {
		return ConfirmResult{}, err
	}
	return res, nil
}

// Forget ends the confirmation of each event key in keys that is
// remembered as confirmed, as Queue.Forget does: the key's row is made
// undecided and expired (the sweep removes it), so it counts as unknown to
// every sidecar. A key that is held, has credits or is unknown is left as it is.
// It returns once the change is committed.
func (q *PGQueue) Forget(ctx context.Context, keys []string) error {
	if err := ctx.Err(); err != nil {
		return err
	}
	if len(keys) == 0 {
		return nil
	}
	hashed := make([]string, len(keys))
	for i, k := range keys {
		hashed[i] = hashKey(k)
	}
	w := &pgWrite{keys: hashed}
	w.apply = func(r *pgRound) error {
		for _, h := range hashed {
			if st := r.states[h]; st.mode == keyConfirmed {
				r.set(h, keyState{}, 0)
			}
		}
		return nil
	}
	return q.write(ctx, "forget", w, 0)
}

// releaseHeld makes the held deliveries of key h ready at ms with ev's
// body (a recurring event: those of the oldest held occurrence only), and
// returns how many.
func (q *PGQueue) releaseHeld(ctx context.Context, tx pgx.Tx, h string, ev webhook.Event, ms int64) (int, error) {
	rows, err := tx.Query(ctx, `SELECT id, hook, user_id, event, type, created, occ FROM queue_deliveries
		WHERE event_key = $1 AND state = 'held' ORDER BY event_key, id FOR UPDATE`, h)
	if err != nil {
		return 0, err
	}
	var (
		id     string
		rec    record
		occ    string
		ids    []string
		bodies [][]byte
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &rec.Hook, &rec.User, &rec.Event, &rec.Type, &rec.Created, &rec.Occ}, func() error {
		if ev.Recurs && occ != "" && rec.Occ != occ {
			return nil
		}
		if ev.Recurs && occ == "" {
			occ = rec.Occ
		}
		body, err := q.envelope(rec, ev.Body)
		if err != nil {
			return err
		}
		ids, bodies = append(ids, id), append(bodies, body)
		return nil
	})
	if err != nil || len(ids) == 0 {
		return 0, err
	}
	_, err = tx.Exec(ctx, `UPDATE queue_deliveries d SET state = 'ready', due = $3, body = o.body
		FROM unnest($1::text[], $2::bytea[]) AS o(id, body) WHERE d.id = o.id`, ids, bodies, ms)
	return len(ids), err
}

// Settle ends the holds due by now, oldest first, at most limit of them, as
// Queue.Settle does. Holds another sidecar is settling at the same time are
// passed over (SKIP LOCKED).
func (q *PGQueue) Settle(now time.Time, limit int, deliver func(heldAt time.Time) bool) (released, dropped int, err error) {
	ms := now.UnixMilli()
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	err = q.inTx(ctx, func(tx pgx.Tx) error {
		released, dropped = 0, 0
		rows, err := tx.Query(ctx, `SELECT id, created FROM queue_deliveries
			WHERE state = 'held' AND due <= $1 ORDER BY due, id LIMIT $2 FOR UPDATE SKIP LOCKED`, ms, limit)
		if err != nil {
			return err
		}
		var (
			id            string
			created       int64
			ready, remove []string
		)
		if _, err := pgx.ForEachRow(rows, []any{&id, &created}, func() error {
			if deliver(time.UnixMilli(created)) {
				ready = append(ready, id)
			} else {
				remove = append(remove, id)
			}
			return nil
		}); err != nil {
			return err
		}
		if len(remove) > 0 {
			if _, err := tx.Exec(ctx, `DELETE FROM queue_deliveries WHERE id = ANY($1)`, remove); err != nil {
				return err
			}
		}
		released, dropped = len(ready), len(remove)
		if len(ready) == 0 {
			return nil
		}
		if _, err := tx.Exec(ctx, `UPDATE queue_deliveries SET state = 'ready', due = $2 WHERE id = ANY($1)`, ready, ms); err != nil {
			return err
		}
		return q.notifyTx(ctx, tx)
	})
	if err != nil {
		return 0, 0, fmt.Errorf("settle holds: %w", err)
	}
	if released > 0 {
		q.poke()
	}
	return released, dropped, nil
}

// inTx runs fn in a transaction, again when PostgreSQL aborted it for a
// deadlock (two calls locking event keys in another order).
func (q *PGQueue) inTx(ctx context.Context, fn func(tx pgx.Tx) error) error {
	if err := q.inject("tx"); err != nil {
		return err
	}
	return pgstore.InTx(ctx, q.pool, pgx.TxOptions{}, fn)
}

// lockKeys locks the rows of the hashed event keys (made when missing), in
// key order, and returns their states; an expired one is unknown.
func lockKeys(ctx context.Context, tx pgx.Tx, keys []string, now int64) (map[string]keyState, error) {
	sorted := slices.Clone(keys)
	slices.Sort(sorted)
	sorted = slices.Compact(sorted)
	states := make(map[string]keyState, len(sorted))
	// A row the sweep deletes after the INSERT found it and before it is
	// locked is missing from the SELECT: it is made again, until every key
	// has its row locked (saveKeys writes only rows that exist).
	for missing := sorted; len(missing) > 0; {
		if _, err := tx.Exec(ctx, `INSERT INTO queue_event_keys (key, expires) SELECT unnest($1::text[]), 0
			ON CONFLICT (key) DO NOTHING`, missing); err != nil {
			return nil, err
		}
		rows, err := tx.Query(ctx, `SELECT key, mode, credits, expires FROM queue_event_keys
			WHERE key = ANY($1) ORDER BY key FOR UPDATE`, missing)
		if err != nil {
			return nil, err
		}
		var (
			key, mode string
			credits   int64
			expires   int64
		)
		if _, err := pgx.ForEachRow(rows, []any{&key, &mode, &credits, &expires}, func() error {
			st := keyState{}
			if expires > now && len(mode) == 1 {
				st = keyState{mode: mode[0], credits: uint32(max(credits, 0))}
			}
			states[key] = st
			return nil
		}); err != nil {
			return nil, err
		}
		missing = slices.DeleteFunc(missing, func(k string) bool { _, ok := states[k]; return ok })
	}
	return states, nil
}

// saveKeys writes the states of the changed keys, each kept until its
// expires (an unknown one as not decided).
func saveKeys(ctx context.Context, tx pgx.Tx, states map[string]keyState, expires map[string]int64) error {
	if len(expires) == 0 {
		return nil
	}
	var keys, modes []string
	var credits, until []int64
	for k, at := range expires {
		st, mode := states[k], "" // unknown: not decided
		if st.mode != 0 {
			mode = string(st.mode)
		}
		keys, modes = append(keys, k), append(modes, mode)
		credits, until = append(credits, int64(st.credits)), append(until, at)
	}
	_, err := tx.Exec(ctx, `UPDATE queue_event_keys k SET mode = o.mode, credits = o.credits, expires = o.expires
		FROM unnest($1::text[], $2::text[], $3::bigint[], $4::bigint[]) AS o(key, mode, credits, expires) WHERE k.key = o.key`,
		keys, modes, credits, until)
	return err
}
