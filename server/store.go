package server

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"runtime/debug"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/queue"
)

// store is the backend under the hook store and the queue: it opens both on
// itself, says whether it can serve, and is closed last.
type store interface {
	openHooks(ctx context.Context, opts hooks.Options) (*hooks.Store, error)
	openQueue(ctx context.Context, h *hooks.Store, opts queue.Options) (deliveryQueue, error)
	// unavailable says why the store cannot serve now, or "" when it can.
	unavailable(ctx context.Context) string
	// leader chooses the one sidecar that runs a job among those sharing
	// the store; nil when the store has one process only (Badger's lock).
	leader() leader
	close() error
}

// leader runs a job in one sidecar at a time, with failover
// (pgstore.DB.Lead).
type leader interface {
	Lead(ctx context.Context, name string, run func(ctx context.Context) error) error
	Leading(name string) bool
}

var _ leader = (*pgstore.DB)(nil)

// openStore opens the configured backend: Badger in cfg.DataDir (sized by
// store.memoryBudget, which also sets Go's soft memory limit unless
// GOMEMLIMIT is set), or PostgreSQL, migrated before anything uses it (the
// migration lock lets several sidecars start at once). On PostgreSQL the
// data dir holds the admin token only.
func openStore(ctx context.Context, cfg config.Config, logger *slog.Logger) (store, error) {
	if cfg.Store.Backend == config.BackendPostgres {
		return openPostgres(ctx, cfg, logger)
	}
	budget := int64(cfg.Store.MemoryBudget)
	if os.Getenv("GOMEMLIMIT") == "" {
		debug.SetMemoryLimit(queue.GoMemoryLimit(budget))
	}
	opts := queue.BadgerOptionsWithin(cfg.DataDir, budget).WithLogger(badgerLogger{logger.With("component", "badger")})
	db, err := badger.Open(opts)
	if err != nil {
		return nil, fmt.Errorf("open store in %s: %w", cfg.DataDir, err)
	}
	return &badgerStore{db: db, gcInterval: cfg.Store.GCInterval.D(), budget: budget}, nil
}

// openPostgres connects to store.postgres.url, applies the migrations this
// build has and the schema lacks, and makes the data dir for the admin
// token.
func openPostgres(ctx context.Context, cfg config.Config, logger *slog.Logger) (store, error) {
	pg := cfg.Store.Postgres
	db, err := pgstore.Open(ctx, pg.URL, pg.Schema, logger.With("component", "postgres"))
	if err != nil {
		return nil, fmt.Errorf("open store: %w", err)
	}
	applied, err := db.Migrate(ctx)
	if err != nil {
		db.Close()
		return nil, fmt.Errorf("open store: %w", err)
	}
	logger.Info("store on PostgreSQL", "server", db.Server(), "schema", db.Schema(), "migrations_applied", len(applied))
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		db.Close()
		return nil, fmt.Errorf("data dir (for the admin token): %w", err)
	}
	return &postgresStore{db: db}, nil
}

// badgerStore is the embedded store in the data dir, which its lock keeps to
// one process.
type badgerStore struct {
	db         *badger.DB
	gcInterval time.Duration // store.gcInterval
	budget     int64         // bytes: store.memoryBudget
}

func (b *badgerStore) openHooks(_ context.Context, opts hooks.Options) (*hooks.Store, error) {
	return hooks.Open(b.db, opts)
}

func (b *badgerStore) openQueue(_ context.Context, h *hooks.Store, opts queue.Options) (deliveryQueue, error) {
	opts.GCInterval = b.gcInterval
	opts.MemoryBudget = b.budget
	return queue.Open(b.db, h, opts)
}

func (b *badgerStore) unavailable(context.Context) string {
	if b.db.IsClosed() {
		return "store closed"
	}
	return ""
}

func (b *badgerStore) leader() leader { return nil }

func (b *badgerStore) close() error { return b.db.Close() }

// postgresStore is a PostgreSQL schema shared by every sidecar configured
// with it.
type postgresStore struct {
	db *pgstore.DB
}

func (p *postgresStore) openHooks(ctx context.Context, opts hooks.Options) (*hooks.Store, error) {
	return hooks.OpenPostgres(ctx, p.db, opts)
}

func (p *postgresStore) openQueue(ctx context.Context, h *hooks.Store, opts queue.Options) (deliveryQueue, error) {
	return queue.OpenPostgres(ctx, p.db, h, opts)
}

// unavailable reports a database that does not answer a query within the
// probe's timeout, and a lost notification connection (this sidecar would
// miss hook changes made through the others until it reconnects).
func (p *postgresStore) unavailable(ctx context.Context) string {
	if err := p.db.Ping(ctx); err != nil {
		return "store unreachable: " + err.Error()
	}
	if !p.db.Connected() {
		return "store: not listening for other sidecars' changes (reconnecting)"
	}
	return ""
}

func (p *postgresStore) leader() leader { return p.db }

func (p *postgresStore) close() error {
	p.db.Close()
	return nil
}

// badgerLogger passes Badger's warnings and errors to slog and drops its
// informational chatter.
type badgerLogger struct{ log *slog.Logger }

func (l badgerLogger) Errorf(format string, args ...any) {
	l.log.Error(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (l badgerLogger) Warningf(format string, args ...any) {
	l.log.Warn(strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (badgerLogger) Infof(string, ...any)  {}
func (badgerLogger) Debugf(string, ...any) {}
