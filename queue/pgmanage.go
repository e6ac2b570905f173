package queue

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"github.com/jackc/pgx/v5"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// List returns hookID's deliveries newest first, at most limit (default 10,
// at most 100) of them older than untilID, each with its latest attempts
// (oldest first) as the size bounds of Queue.List allow. An empty hookID
// lists every hook's deliveries.
func (q *PGQueue) List(ctx context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	limit = listLimit(limit)
	out := []webhook.Delivery{}
	if hookID != "" && !validHookID(hookID) {
		return out, nil
	}
	where, order := "true", "id DESC"
	args := []any{limit}
	if hookID != "" {
		args = append(args, hookID)
		where, order = "hook = $2", "hook DESC, id DESC" // the hook index's order
	}
	if untilID != "" {
		args = append(args, untilID)
		where += fmt.Sprintf(" AND id < $%d", len(args))
	}
	sql := `SELECT id, hook, user_id, event, type, created, state, due, logged, log, ` + isLeasedSQL + `
		FROM queue_deliveries WHERE ` + where + ` ORDER BY ` + order + ` LIMIT $1`
	rows, err := q.pool.Query(ctx, sql, args...)
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	budget := listAttemptBytes
	var (
		id     string
		rec    record
		log    []json.RawMessage
		leased bool
	)
	_, err = pgx.ForEachRow(rows, []any{&id, &rec.Hook, &rec.User, &rec.Event, &rec.Type, &rec.Created, &rec.State, &rec.Due, &rec.Logged, &log, &leased}, func() error {
		d := deliveryView(id, rec, leased)
		for i := len(log) - 1; i >= 0 && len(d.Attempts) < keepAttempts; i-- {
			a, fits, err := fitAttempt(log[i], &budget)
			if err != nil {
				return err
			}
			if !fits {
				break
			}
			d.Attempts = append(d.Attempts, a)
		}
		slices.Reverse(d.Attempts)
		d.Omitted = max(rec.Logged-len(d.Attempts), 0)
		out = append(out, d)
		log = nil
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list deliveries: %w", err)
	}
	return out, nil
}

// Redeliver puts deliveryID of hookID back to ready, due now, with its
// attempts reset and its eventId kept, as Queue.Redeliver does; an empty
// deliveryID redelivers every dead letter the hook has now, in the
// background.
func (q *PGQueue) Redeliver(ctx context.Context, hookID, deliveryID string) (int, error) {
	if err := ctx.Err(); err != nil {
		return 0, err
	}
	now := q.opts.Now()
	if deliveryID == "" {
		if !validHookID(hookID) {
			return 0, nil
		}
		r := redeliverJob{Upto: q.ids.Next(now)}
		_, err := q.pool.Exec(ctx, `INSERT INTO queue_jobs (hook, upto, after) VALUES ($1, $2, '')
			ON CONFLICT (hook) DO UPDATE SET upto = excluded.upto, after = ''`, hookID, r.Upto)
		if err != nil {
			return 0, fmt.Errorf("redeliver: %w", err)
		}
		q.jobs.add(hookID, jobRedeliver, r)
		return 0, nil
	}
	if !validID(deliveryID) || !validHookID(hookID) {
		return 0, webhook.ErrNoSuchDelivery
	}
	var moved, exists bool
	err := pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		// A leased one (being attempted) and a held one (it goes out when
		// its hold ends) are left alone.
		tag, err := tx.Exec(ctx, `UPDATE queue_deliveries SET state = 'ready', due = $3, expires = NULL,
				attempts = CASE WHEN state = 'ready' THEN attempts ELSE 0 END
			WHERE id = $1 AND hook = $2 AND state <> 'held' AND lease_owner IS NULL`, deliveryID, hookID, now.UnixMilli())
		if err != nil {
			return err
		}
		if moved = tag.RowsAffected() == 1; moved {
			exists = true
			return q.notifyTx(ctx, tx)
		}
		return tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM queue_deliveries WHERE id = $1 AND hook = $2)`, deliveryID, hookID).Scan(&exists)
	})
	switch {
	case err != nil:
		return 0, fmt.Errorf("redeliver: %w", err)
	case !exists:
		return 0, webhook.ErrNoSuchDelivery
	case moved:
		q.poke()
		return 1, nil
	}
	return 0, nil
}

// cancelBatch removes up to batch deliveries of hook, and its redeliver-all
// job; done once none is left.
func (q *PGQueue) cancelBatch(hook string) (removed int, done bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	err = pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `DELETE FROM queue_jobs WHERE hook = $1`, hook); err != nil {
			return err
		}
		tag, err := tx.Exec(ctx, `DELETE FROM queue_deliveries WHERE id IN (
			SELECT id FROM queue_deliveries WHERE hook = $1 ORDER BY hook, id LIMIT $2)`, hook, batch)
		removed = int(tag.RowsAffected())
		return err
	})
	if err != nil {
		return 0, false, fmt.Errorf("cancel deliveries of %s: %w", hook, err)
	}
	return removed, removed == 0, nil
}

// redeliverBatch requeues the dead letters among the next batch of hook's
// deliveries after r.After (up to r.Upto) and moves the stored cursor in
// the same transaction; the job is removed with its last batch. A job
// another call (on any sidecar) replaced or removed meanwhile is
// errJobChanged.
func (q *PGQueue) redeliverBatch(hook string, r redeliverJob) (after string, done bool, err error) {
	ctx, cancel := context.WithTimeout(context.Background(), dbTimeout)
	defer cancel()
	err = pgx.BeginFunc(ctx, q.pool, func(tx pgx.Tx) error {
		var stored redeliverJob
		err := tx.QueryRow(ctx, `SELECT upto, after FROM queue_jobs WHERE hook = $1 FOR UPDATE`, hook).Scan(&stored.Upto, &stored.After)
		if errors.Is(err, pgx.ErrNoRows) || (err == nil && stored != r) {
			return errJobChanged
		}
		if err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id FROM queue_deliveries WHERE hook = $1 AND id > $2 ORDER BY hook, id LIMIT $3`, hook, r.After, batch)
		if err != nil {
			return err
		}
		ids, err := pgx.CollectRows(rows, pgx.RowTo[string])
		if err != nil {
			return err
		}
		var covered []string
		covered, after, done = jobWindow(ids, r)
		tag, err := tx.Exec(ctx, `UPDATE queue_deliveries SET state = 'ready', due = $2, attempts = 0, expires = NULL
			WHERE id = ANY($1) AND state = 'dead'`, covered, q.opts.Now().UnixMilli())
		if err != nil {
			return err
		}
		if done {
			_, err = tx.Exec(ctx, `DELETE FROM queue_jobs WHERE hook = $1`, hook)
		} else {
			_, err = tx.Exec(ctx, `UPDATE queue_jobs SET after = $2 WHERE hook = $1`, hook, after)
		}
		if err != nil || tag.RowsAffected() == 0 {
			return err
		}
		return q.notifyTx(ctx, tx)
	})
	if err != nil {
		if errors.Is(err, errJobChanged) {
			return "", false, err
		}
		return "", false, fmt.Errorf("redeliver: %w", err)
	}
	q.poke()
	return after, done, nil
}

// resumeJobs finds the work a restart left: the stored redeliver-all jobs,
// and the deliveries of hooks that no longer exist, that is, that this
// sidecar does not know and whose newest delivery is older than
// unknownGrace (a hook made through another sidecar a moment ago may not
// be known here yet).
func (q *PGQueue) resumeJobs(ctx context.Context) error {
	rows, err := q.pool.Query(ctx, `SELECT hook, upto, after FROM queue_jobs`)
	if err != nil {
		return err
	}
	type stored struct {
		hook string
		job  redeliverJob
	}
	var found []stored
	var s stored
	if _, err := pgx.ForEachRow(rows, []any{&s.hook, &s.job.Upto, &s.job.After}, func() error {
		found = append(found, s)
		return nil
	}); err != nil {
		return err
	}
	// One probe of the hook index per hook that has deliveries.
	rows, err = q.pool.Query(ctx, `WITH RECURSIVE h AS (
			(SELECT hook, created FROM queue_deliveries ORDER BY hook DESC, id DESC LIMIT 1)
		  UNION ALL
			SELECT n.hook, n.created FROM h CROSS JOIN LATERAL (
			  SELECT hook, created FROM queue_deliveries WHERE hook < h.hook ORDER BY hook DESC, id DESC LIMIT 1) n
		) SELECT hook, created FROM h`)
	if err != nil {
		return err
	}
	var (
		hook    string
		created int64
		gone    []string
	)
	old := q.opts.Now().Add(-unknownGrace).UnixMilli()
	if _, err := pgx.ForEachRow(rows, []any{&hook, &created}, func() error {
		if _, ok := q.hooks.Target(hook); !ok && created < old {
			gone = append(gone, hook)
		}
		return nil
	}); err != nil {
		return err
	}
	for _, hook := range gone {
		q.opts.Logger.Info("removing the deliveries of a hook deleted before the restart", "hook", hook)
		q.jobs.add(hook, jobCancel, redeliverJob{})
	}
	for _, s := range found {
		if _, ok := q.hooks.Target(s.hook); !ok {
			continue // removed with the hook's deliveries, if it is gone
		}
		q.jobs.add(s.hook, jobRedeliver, s.job)
	}
	q.opts.Logger.Debug("looked for the work a restart left", "redeliver_all_jobs", len(found), "deleted_hooks", len(gone))
	return nil
}
