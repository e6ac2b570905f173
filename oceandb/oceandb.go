// Package oceandb moves the user webhooks that Ocean keeps in its
// PostgreSQL database into oceanhooks, all at once (`oceanhooks import`): it
// reads Ocean's webhook table, hands the hooks oceanhooks can send to the
// sidecar, and, when asked, switches them off in Ocean in the same
// transaction, committed only after the sidecar stored them.
package oceandb

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"

	"github.com/oceanhooks/oceanhooks/hooks"
)

// The columns read from Ocean's table "webhook", as MisskeyIO
// 2025.4.1-mhq.13 (commit 431e1c1d) defines it in
// packages/backend/src/models/Webhook.ts and its migrations
// 1648548247382-webhook.js and 1648816172177-webhook-2.js: id varchar(32),
// "userId" varchar(32), name varchar(128), "on" varchar(128)[], url
// varchar(1024), secret varchar(1024), active boolean, "latestSentAt"
// timestamptz null, "latestStatus" integer null ("createdAt", which this
// fork keeps and upstream dropped, is not read). Reading needs SELECT on the
// table only; --deactivate needs UPDATE too.
const (
	selectHooks = `SELECT id, "userId", name, "on", url, secret, active, "latestSentAt", "latestStatus" FROM webhook ORDER BY id`
	lockHooks   = ` FOR UPDATE`
	deactivate  = `UPDATE webhook SET active = false WHERE id = ANY($1) AND active`
)

// Hook is one row of Ocean's webhook table.
type Hook struct {
	ID, UserID, Name string
	On               []string
	URL, Secret      string
	Active           bool
	LatestSentAt     *time.Time
	LatestStatus     *int
}

// Sidecar stores hooks in oceanhooks: the running server's admin API (POST
// /hooks), which holds the store.
type Sidecar interface {
	// Import imports hooks (each once, whatever was imported before) and
	// says what became of each, in order; with dryRun it stores nothing and
	// says what would.
	Import(ctx context.Context, hooks []Hook, dryRun bool) ([]Result, error)
}

// Result is what became of one hook in the sidecar.
type Result struct {
	OceanID string
	HookID  string // empty for one that would be imported
	Outcome string // hooks.ImportImported, ImportAlready or ImportWould
}

// Outcome of a hook that stays in Ocean.
const StaysInOcean = "stays in Ocean"

// Options of Run.
type Options struct {
	// Apply imports for real; false is a dry run that changes nothing.
	Apply bool
	// Deactivate switches the importable hooks off in Ocean (active =
	// false), in the transaction that read them, committed after the
	// sidecar stored them.
	Deactivate bool
	// BatchSize is how many hooks go to the sidecar per request. Default 500.
	BatchSize int
}

// DefaultBatchSize is Options.BatchSize's default.
const DefaultBatchSize = 500

// Entry is one hook of Ocean's table and what became of it.
type Entry struct {
	Hook    Hook
	Outcome string // a Result outcome, or StaysInOcean
	HookID  string // the sidecar's hook, when there is one
	// Unsupported lists, for a hook that stays in Ocean, the event types
	// oceanhooks does not send (Ocean's admin-only report events).
	Unsupported []string
	// Deactivate says the hook is (or, in a dry run, would be) switched
	// off in Ocean by this run.
	Deactivate bool
}

// Summary is what Run did, or, in a dry run, would do.
type Summary struct {
	Entries []Entry // in Ocean's id order
}

// Count returns how many entries have outcome.
func (s Summary) Count(outcome string) int {
	n := 0
	for _, e := range s.Entries {
		if e.Outcome == outcome {
			n++
		}
	}
	return n
}

// Deactivated returns how many hooks are (or would be) switched off in Ocean.
func (s Summary) Deactivated() int {
	n := 0
	for _, e := range s.Entries {
		if e.Deactivate {
			n++
		}
	}
	return n
}

// Run reads every hook of Ocean's webhook table through db in one
// transaction (repeatable read; read-only unless it deactivates, when the
// rows are locked until the end), sends those oceanhooks can send to the
// sidecar (each once: re-running imports nothing twice), and with
// Deactivate switches them off in Ocean and commits only after the sidecar
// answered that it stored them. Hooks with event types oceanhooks does not
// send stay in Ocean, untouched. On any error nothing changes in Ocean (the
// transaction rolls back); hooks the sidecar stored before the error stay
// there and a new run does not import them again.
//
// Ocean keeps its active hooks in memory, per process: a hook switched off
// in its database keeps firing from Ocean until Ocean reloads it (see
// WebhookUpdated).
func Run(ctx context.Context, db *pgx.Conn, sc Sidecar, opts Options) (Summary, error) {
	if opts.BatchSize <= 0 {
		opts.BatchSize = DefaultBatchSize
	}
	txOpts := pgx.TxOptions{IsoLevel: pgx.RepeatableRead, AccessMode: pgx.ReadOnly}
	query := selectHooks
	write := opts.Apply && opts.Deactivate
	if write {
		txOpts.AccessMode = pgx.ReadWrite
		query += lockHooks
	}
	tx, err := db.BeginTx(ctx, txOpts)
	if err != nil {
		return Summary{}, fmt.Errorf("begin: %w", err)
	}
	defer func() { _ = tx.Rollback(context.WithoutCancel(ctx)) }()

	all, err := readHooks(ctx, tx, query)
	if err != nil {
		return Summary{}, err
	}
	sum := Summary{Entries: make([]Entry, len(all))}
	var send []int // indexes of the importable hooks
	for i, h := range all {
		sum.Entries[i] = Entry{Hook: h}
		if bad := hooks.UnsupportedTypes(h.On); len(bad) > 0 {
			sum.Entries[i].Outcome, sum.Entries[i].Unsupported = StaysInOcean, bad
			continue
		}
		send = append(send, i)
	}
	for batch := range slices.Chunk(send, opts.BatchSize) {
		hs := make([]Hook, len(batch))
		for j, i := range batch {
			hs[j] = all[i]
		}
		results, err := sc.Import(ctx, hs, !opts.Apply)
		if err != nil {
			return Summary{}, fmt.Errorf("sidecar: %w", err)
		}
		if len(results) != len(hs) {
			return Summary{}, fmt.Errorf("sidecar: %d results for %d hooks", len(results), len(hs))
		}
		for j, i := range batch {
			if results[j].OceanID != hs[j].ID {
				return Summary{}, fmt.Errorf("sidecar: result %d is for hook %q, not %q", j, results[j].OceanID, hs[j].ID)
			}
			sum.Entries[i].Outcome, sum.Entries[i].HookID = results[j].Outcome, results[j].HookID
		}
	}
	var off []string
	if opts.Deactivate {
		for _, i := range send {
			if all[i].Active {
				sum.Entries[i].Deactivate = true
				off = append(off, all[i].ID)
			}
		}
	}
	if write && len(off) > 0 {
		tag, err := tx.Exec(ctx, deactivate, off)
		if err != nil {
			return Summary{}, explain("deactivate in Ocean", err)
		}
		if int(tag.RowsAffected()) != len(off) {
			return Summary{}, fmt.Errorf("deactivate in Ocean: %d of %d rows changed", tag.RowsAffected(), len(off))
		}
	}
	if err := tx.Commit(ctx); err != nil {
		return Summary{}, fmt.Errorf("commit: %w", err)
	}
	return sum, nil
}

func readHooks(ctx context.Context, tx pgx.Tx, query string) ([]Hook, error) {
	rows, err := tx.Query(ctx, query)
	if err != nil {
		return nil, explain("read Ocean's webhook table", err)
	}
	var out []Hook
	for rows.Next() {
		var h Hook
		var status *int32
		if err := rows.Scan(&h.ID, &h.UserID, &h.Name, &h.On, &h.URL, &h.Secret, &h.Active, &h.LatestSentAt, &status); err != nil {
			rows.Close()
			return nil, fmt.Errorf("read Ocean's webhook table: %w", err)
		}
		if status != nil {
			s := int(*status)
			h.LatestStatus = &s
		}
		if h.On == nil {
			h.On = []string{}
		}
		out = append(out, h)
	}
	if err := rows.Err(); err != nil {
		return nil, explain("read Ocean's webhook table", err)
	}
	return out, nil
}

// explain adds what to do to the errors an operator can fix.
func explain(step string, err error) error {
	var pe *pgconn.PgError
	if errors.As(err, &pe) {
		switch pe.Code {
		case "42P01": // undefined_table
			return fmt.Errorf("%s: the database has no table webhook (is it Ocean's?): %w", step, err)
		case "42501": // insufficient_privilege
			return fmt.Errorf("%s: the database user may not (it needs SELECT on webhook, and UPDATE for --deactivate): %w", step, err)
		}
	}
	return fmt.Errorf("%s: %w", step, err)
}

// WebhookUpdated is the message Ocean publishes on its Redis (channel: its
// config.host) after a hook changes, here for h switched off: every Ocean
// process drops h from the active hooks it holds in memory when it reads
// it. Ocean itself publishes the changed row, secret included, on the same
// channel.
func WebhookUpdated(h Hook) []byte {
	var sent *string
	if h.LatestSentAt != nil {
		s := h.LatestSentAt.UTC().Format("2006-01-02T15:04:05.000Z")
		sent = &s
	}
	on := h.On
	if on == nil {
		on = []string{}
	}
	b, _ := json.Marshal(map[string]any{
		"channel": "internal",
		"message": map[string]any{"type": "webhookUpdated", "body": map[string]any{
			"id": h.ID, "userId": h.UserID, "name": h.Name, "on": on, "url": h.URL, "secret": h.Secret,
			"active": false, "latestSentAt": sent, "latestStatus": h.LatestStatus,
		}},
	})
	return b
}
