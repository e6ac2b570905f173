package hooks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgxpool"

	"github.com/oceanhooks/oceanhooks/pgstore"
)

// pgOpTimeout bounds one call of the PostgreSQL backend (the Store's methods
// take no context): a database that stopped answering fails the call
// instead of holding the caller, and the write lock, for ever.
const pgOpTimeout = 30 * time.Second

// pgTxOptions: every transaction is READ COMMITTED, whatever the server's
// default, so that each statement sees what committed before it began; the
// limit check relies on it (a count after the owner's lock sees every create
// that held the lock before).
var pgTxOptions = pgx.TxOptions{IsoLevel: pgx.ReadCommitted}

// OpenPostgres returns the store in db's schema, which must be migrated
// (db.Migrate: pgstore/migrations/0001_hooks.sql), and builds the index from
// what it holds. Several Stores, in one process or many, may share the
// schema; each keeps its index current with the others' changes while Run
// runs.
func OpenPostgres(ctx context.Context, db *pgstore.DB, opts Options) (*Store, error) {
	var missing bool
	if err := db.Pool().QueryRow(ctx, `SELECT to_regclass('hooks') IS NULL`).Scan(&missing); err != nil {
		return nil, fmt.Errorf("open hooks: %w", err)
	}
	if missing {
		return nil, fmt.Errorf("open hooks: schema %s has no hooks table: migrate it first", db.Schema())
	}
	return open(&pgBackend{db: db, pool: db.Pool(), channel: db.Channel("hooks"),
		lockSpace: "oceanhooks.hooks." + db.Schema()}, opts)
}

// pgBackend keeps hooks in PostgreSQL. Every write is one transaction that
// also notifies the hook's id on channel, so that every Store on the schema
// reloads it (Run). Management writes commit with the server's
// synchronous_commit (on by default: durable at commit); stamp's bookkeeping
// commits without waiting for its WAL flush.
type pgBackend struct {
	db        *pgstore.DB
	pool      *pgxpool.Pool
	channel   string // db.Channel("hooks")
	lockSpace string // names the owners' advisory locks of this schema
}

var (
	_ backend  = (*pgBackend)(nil)
	_ follower = (*pgBackend)(nil)
)

func (b *pgBackend) ctx() (context.Context, context.CancelFunc) {
	return context.WithTimeout(context.Background(), pgOpTimeout)
}

// write runs fn in a transaction whose commit is durable
// (synchronous_commit on, whatever the server's default): a management
// write that returned survives a crash of the server.
func (b *pgBackend) write(ctx context.Context, fn func(tx pgx.Tx) error) error {
	return pgstore.InTx(ctx, b.pool, pgTxOptions, func(tx pgx.Tx) error {
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = on`); err != nil {
			return err
		}
		return fn(tx)
	})
}

// notify tells every Store on the schema, once tx commits, that hook id
// changed.
func (b *pgBackend) notify(ctx context.Context, tx pgx.Tx, id string) error {
	_, err := tx.Exec(ctx, `SELECT pg_notify($1, $2)`, b.channel, id)
	return err
}

// lockOwner holds userID's advisory lock until tx ends: the creates of one
// owner run one at a time across every Store on the schema.
func (b *pgBackend) lockOwner(ctx context.Context, tx pgx.Tx, userID string) error {
	_, err := tx.Exec(ctx, `SELECT pg_advisory_xact_lock(hashtext($1), hashtext($2))`, b.lockSpace, userID)
	return err
}

// hookColumns are the columns scanHook reads, in its order.
const hookColumns = `id, user_id, name, url, secret, "on", active, latest_sent_at, latest_status,
	coalesce(native_id, ''), failing_since, failures, disabled_at, succeeded_at`

func scanHook(row pgx.Row) (Hook, error) {
	var h Hook
	err := row.Scan(&h.ID, &h.UserID, &h.Name, &h.URL, &h.Secret, &h.On, &h.Active, &h.LatestSentAt,
		&h.LatestStatus, &h.NativeID, &h.FailingSince, &h.Failures, &h.DisabledAt, &h.succeededAt)
	if errors.Is(err, pgx.ErrNoRows) {
		return Hook{}, ErrNotFound
	}
	if err != nil {
		return Hook{}, err
	}
	h.On = cloneOn(h.On)
	for _, t := range []*time.Time{h.LatestSentAt, h.FailingSince, h.DisabledAt, h.succeededAt} {
		if t != nil {
			*t = t.UTC()
		}
	}
	return h, nil
}

func collectHooks(rows pgx.Rows) ([]Hook, error) {
	out, err := pgx.CollectRows(rows, func(row pgx.CollectableRow) (Hook, error) { return scanHook(row) })
	if out == nil {
		out = []Hook{}
	}
	return out, err
}

func insertHook(ctx context.Context, tx pgx.Tx, h Hook) error {
	_, err := tx.Exec(ctx, `INSERT INTO hooks (id, user_id, name, url, secret, "on", active, latest_sent_at,
		latest_status, native_id, failing_since, failures, disabled_at)
		VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, nullif($10, ''), $11, $12, $13)`,
		h.ID, h.UserID, h.Name, h.URL, h.Secret, cloneOn(h.On), h.Active, h.LatestSentAt,
		h.LatestStatus, h.NativeID, h.FailingSince, h.Failures, h.DisabledAt)
	return err
}

func (b *pgBackend) get(id string) (Hook, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	return scanHook(b.pool.QueryRow(ctx, `SELECT `+hookColumns+` FROM hooks WHERE id = $1`, id))
}

func (b *pgBackend) all() ([]Hook, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	rows, err := b.pool.Query(ctx, `SELECT `+hookColumns+` FROM hooks ORDER BY id`)
	if err != nil {
		return nil, err
	}
	return collectHooks(rows)
}

func (b *pgBackend) list(userID string) ([]Hook, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	rows, err := b.pool.Query(ctx, `SELECT `+hookColumns+` FROM hooks WHERE user_id = $1 ORDER BY id`, userID)
	if err != nil {
		return nil, err
	}
	return collectHooks(rows)
}

func (b *pgBackend) count(userID string) (int, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	var n int
	err := b.pool.QueryRow(ctx, `SELECT count(*) FROM hooks WHERE user_id = $1`, userID).Scan(&n)
	return n, err
}

func (b *pgBackend) create(h Hook, limit int) error {
	ctx, cancel := b.ctx()
	defer cancel()
	return b.write(ctx, func(tx pgx.Tx) error {
		if err := b.lockOwner(ctx, tx, h.UserID); err != nil {
			return err
		}
		var n int
		if err := tx.QueryRow(ctx, `SELECT count(*) FROM hooks WHERE user_id = $1`, h.UserID).Scan(&n); err != nil {
			return err
		}
		if n >= limit {
			return ErrLimit
		}
		if err := insertHook(ctx, tx, h); err != nil {
			return err
		}
		return b.notify(ctx, tx, h.ID)
	})
}

func (b *pgBackend) modify(id string, fn func(h *Hook) error) (old, h Hook, err error) {
	ctx, cancel := b.ctx()
	defer cancel()
	err = b.write(ctx, func(tx pgx.Tx) error {
		var err error
		if old, err = scanHook(tx.QueryRow(ctx, `SELECT `+hookColumns+` FROM hooks WHERE id = $1 FOR UPDATE`, id)); err != nil {
			return err
		}
		h = old
		h.On = cloneOn(old.On)
		if err := fn(&h); err != nil {
			return err
		}
		// The owner, the id and the import are never changed; the latest
		// success only by stamp.
		if _, err := tx.Exec(ctx, `UPDATE hooks SET name = $2, url = $3, secret = $4, "on" = $5, active = $6,
			latest_sent_at = $7, latest_status = $8, failing_since = $9, failures = $10, disabled_at = $11
			WHERE id = $1`, id, h.Name, h.URL, h.Secret, cloneOn(h.On), h.Active, h.LatestSentAt, h.LatestStatus,
			h.FailingSince, h.Failures, h.DisabledAt); err != nil {
			return err
		}
		return b.notify(ctx, tx, id)
	})
	return old, h, err
}

func (b *pgBackend) remove(userID, id string) (Hook, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	var old Hook
	err := b.write(ctx, func(tx pgx.Tx) error {
		var err error
		if old, err = scanHook(tx.QueryRow(ctx, `DELETE FROM hooks WHERE id = $1 AND user_id = $2
			RETURNING `+hookColumns, id, userID)); err != nil {
			return err
		}
		return b.notify(ctx, tx, id)
	})
	return old, err
}

// importNative records the import in hook_imports, whose primary key
// (user_id, native_id) lets one of two concurrent imports of a hook insert
// its row; the other waits for it to commit and reads its hook id.
func (b *pgBackend) importNative(h Hook, fresh func() string) (id string, imported bool, err error) {
	ctx, cancel := b.ctx()
	defer cancel()
	const earlier = `SELECT hook_id FROM hook_imports WHERE user_id = $1 AND native_id = $2`
	err = b.write(ctx, func(tx pgx.Tx) error {
		imported = false
		err := tx.QueryRow(ctx, earlier, h.UserID, h.NativeID).Scan(&id)
		if !errors.Is(err, pgx.ErrNoRows) {
			return err
		}
		h := h
		h.ID = h.NativeID
		var taken bool
		if err := tx.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM hooks WHERE id = $1)`, h.ID).Scan(&taken); err != nil {
			return err
		}
		if taken {
			h.ID = fresh()
		}
		tag, err := tx.Exec(ctx, `INSERT INTO hook_imports (user_id, native_id, hook_id) VALUES ($1, $2, $3)
			ON CONFLICT DO NOTHING`, h.UserID, h.NativeID, h.ID)
		if err != nil {
			return err
		}
		if tag.RowsAffected() == 0 {
			// A concurrent import of the same hook committed first.
			return tx.QueryRow(ctx, earlier, h.UserID, h.NativeID).Scan(&id)
		}
		if err := insertHook(ctx, tx, h); err != nil {
			return err
		}
		id, imported = h.ID, true
		return b.notify(ctx, tx, h.ID)
	})
	return id, imported, err
}

func (b *pgBackend) imported(userID, oceanID string) (id string, found bool, err error) {
	ctx, cancel := b.ctx()
	defer cancel()
	err = b.pool.QueryRow(ctx, `SELECT hook_id FROM hook_imports WHERE user_id = $1 AND native_id = $2`,
		userID, oceanID).Scan(&id)
	if errors.Is(err, pgx.ErrNoRows) {
		return "", false, nil
	}
	return id, err == nil, err
}

func (b *pgBackend) takenOver(userID string) (bool, error) {
	ctx, cancel := b.ctx()
	defer cancel()
	var done bool
	err := b.pool.QueryRow(ctx, `SELECT EXISTS (SELECT 1 FROM hook_takeovers WHERE user_id = $1)`, userID).Scan(&done)
	return done, err
}

func (b *pgBackend) markTakenOver(userID string, at time.Time) error {
	ctx, cancel := b.ctx()
	defer cancel()
	return b.write(ctx, func(tx pgx.Tx) error {
		_, err := tx.Exec(ctx, `INSERT INTO hook_takeovers (user_id, taken_over_at) VALUES ($1, $2)
			ON CONFLICT (user_id) DO UPDATE SET taken_over_at = excluded.taken_over_at`, userID, at.UTC())
		return err
	})
}

// pgRun is what the hooks table holds of a hook's run of failed attempts
// and its latest success.
type pgRun struct {
	failingSince *time.Time
	failures     int
	succeededAt  *time.Time
}

// merge returns what st leaves of old, on a hook that several Stores
// attempt, each counting the run of its own attempts. The latest success
// through any of them ends every run that began at or before it: st's run
// (ended: its Store forgets it) and the stored one (cleared: the other
// Stores are told), and no batch stores a run that it ended. Otherwise st's
// run replaces the stored one, as on Badger, and a stamp without a run
// keeps it.
func (st stamp) merge(old pgRun) (now pgRun, ended, cleared bool) {
	now = old
	if st.succeeded && (now.succeededAt == nil || now.succeededAt.Before(st.at)) {
		at := st.at
		now.succeededAt = &at
	}
	if st.withRun {
		now.failingSince, now.failures = st.failingSince, st.failures
	}
	endedBy := func(since *time.Time) bool {
		return since != nil && now.succeededAt != nil && ends(*now.succeededAt, *since)
	}
	if endedBy(now.failingSince) {
		now.failingSince, now.failures = nil, 0
	}
	ended = st.withRun && endedBy(st.failingSince)
	cleared = st.succeeded && old.failingSince != nil && ends(st.at, *old.failingSince)
	return now, ended, cleared
}

// stamp locks the batch's hooks in id order (so that two batches lock shared
// rows in the same order), merges each stamp with what the row holds (merge)
// and writes them all in one UPDATE, in a transaction that does not wait
// for its WAL flush: a crash may lose the last batches, as the queue's
// bookkeeping allows. It notifies only the hooks whose stored run a success
// of the batch ended, so that the other Stores end theirs (Run); the index
// holds no latest attempt.
func (b *pgBackend) stamp(latest map[string]stamp) (map[string]time.Time, error) {
	ids := slices.Sorted(maps.Keys(latest))
	ctx, cancel := b.ctx()
	defer cancel()
	var ended map[string]time.Time
	err := pgstore.InTx(ctx, b.pool, pgTxOptions, func(tx pgx.Tx) error {
		ended = nil
		if _, err := tx.Exec(ctx, `SET LOCAL synchronous_commit = off`); err != nil {
			return err
		}
		rows, err := tx.Query(ctx, `SELECT id, failing_since, failures, succeeded_at FROM hooks
			WHERE id = ANY($1) ORDER BY id FOR UPDATE`, ids)
		if err != nil {
			return err
		}
		var (
			upd, cleared        []string
			ats, since, success []*time.Time
			statuses, failures  []int32
		)
		var id string
		var old pgRun
		_, err = pgx.ForEachRow(rows, []any{&id, &old.failingSince, &old.failures, &old.succeededAt}, func() error {
			st := latest[id]
			now, endsMine, endsStored := st.merge(old)
			at := st.at
			upd, ats, statuses = append(upd, id), append(ats, &at), append(statuses, int32(st.status))
			since, failures, success = append(since, now.failingSince), append(failures, int32(now.failures)), append(success, now.succeededAt)
			if endsMine {
				if ended == nil {
					ended = map[string]time.Time{}
				}
				ended[id] = now.succeededAt.UTC()
			}
			if endsStored {
				cleared = append(cleared, id)
			}
			old = pgRun{} // the next row's times are scanned into new values, not into these
			return nil
		})
		if err != nil || len(upd) == 0 {
			return err
		}
		if _, err := tx.Exec(ctx, `UPDATE hooks AS h SET latest_sent_at = u.at, latest_status = u.status,
			failing_since = u.since, failures = u.failures, succeeded_at = u.success
			FROM unnest($1::text[], $2::timestamptz[], $3::int[], $4::timestamptz[], $5::int[], $6::timestamptz[])
				AS u(id, at, status, since, failures, success)
			WHERE h.id = u.id`, upd, ats, statuses, since, failures, success); err != nil {
			return err
		}
		if len(cleared) == 0 {
			return nil
		}
		_, err = tx.Exec(ctx, `SELECT pg_notify($1, id) FROM unnest($2::text[]) AS id`, b.channel, cleared)
		return err
	})
	if err != nil {
		return nil, err
	}
	return ended, nil
}

// sync has nothing to do: management writes are durable at commit.
func (b *pgBackend) sync() error { return nil }

func (b *pgBackend) follow(ctx context.Context, reloadAll func(ctx context.Context) error, changed func(id string)) error {
	return b.db.Listen(ctx, []string{b.channel}, reloadAll, func(_, payload string) { changed(payload) })
}
