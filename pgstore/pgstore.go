package pgstore

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"regexp"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgxpool"
)

// DefaultSchema is the schema of the store when none is configured.
const DefaultSchema = "oceanhooks"

// connectTimeout bounds establishing one connection (dial, TLS, startup).
const connectTimeout = 10 * time.Second

var schemaName = regexp.MustCompile(`^[a-z_][a-z0-9_]{0,62}$`)

// ValidSchema reports whether name can be the store's schema: a lower-case
// PostgreSQL identifier that needs no quoting, at most 63 bytes.
func ValidSchema(name string) bool { return schemaName.MatchString(name) }

// DB is an open PostgreSQL store: a pool of connections whose search_path is
// the store's schema. Its methods are safe for concurrent use.
type DB struct {
	pool   *pgxpool.Pool
	cfg    *pgxpool.Config
	schema string
	log    *slog.Logger

	// Listen's callers (the hook store, the queue): how many run and how
	// many of them are connected and listening.
	listeners, listening atomic.Int32

	leading sync.Map // Lead's name → whether this process holds it now
}

// Open connects to the PostgreSQL server at url (a libpq URL or key=value
// DSN) and returns the store in schema. It checks that the server answers
// but creates nothing: Migrate does. Errors never contain the URL's password.
func Open(ctx context.Context, url, schema string, log *slog.Logger) (*DB, error) {
	if schema == "" {
		schema = DefaultSchema
	}
	if !ValidSchema(schema) {
		return nil, fmt.Errorf("postgres: schema %q: want a lower-case identifier (letters, digits, _), at most 63 bytes", schema)
	}
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	cfg, err := pgxpool.ParseConfig(url)
	if err != nil {
		// pgx's parse errors may quote the string they could not parse.
		return nil, errors.New("postgres: the URL does not parse (want postgres://user:password@host:port/database?sslmode=... or a key=value DSN)")
	}
	if cfg.ConnConfig.ConnectTimeout == 0 {
		cfg.ConnConfig.ConnectTimeout = connectTimeout
	}
	cfg.ConnConfig.RuntimeParams["search_path"] = schema
	cfg.ConnConfig.RuntimeParams["application_name"] = "oceanhooks"
	pool, err := pgxpool.NewWithConfig(ctx, cfg)
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", redact(err, cfg))
	}
	db := &DB{pool: pool, cfg: cfg, schema: schema, log: log}
	if err := db.Ping(ctx); err != nil {
		pool.Close()
		return nil, err
	}
	return db, nil
}

// Pool is the connection pool; every connection's search_path is Schema.
func (db *DB) Pool() *pgxpool.Pool { return db.pool }

// Schema is the store's schema.
func (db *DB) Schema() string { return db.schema }

// Server names the server without credentials (host:port/database), for logs.
func (db *DB) Server() string {
	c := db.cfg.ConnConfig
	return fmt.Sprintf("%s:%d/%s", c.Host, c.Port, c.Database)
}

// Ping checks that the server answers a query.
func (db *DB) Ping(ctx context.Context) error {
	if _, err := db.pool.Exec(ctx, "SELECT 1"); err != nil {
		return fmt.Errorf("postgres %s: %w", db.Server(), redact(err, db.cfg))
	}
	return nil
}

// Close closes every connection of the pool; Listen returns once its context
// ends.
func (db *DB) Close() { db.pool.Close() }

// Channel is the LISTEN/NOTIFY channel called name of this store's schema.
// Send on it with `SELECT pg_notify($1, $2)` (payload at most 8000 bytes).
func (db *DB) Channel(name string) string { return db.schema + "_" + name }

// InTx runs fn in a transaction with opts and commits it, starting over (up
// to a few times) when PostgreSQL aborted it for a serialization failure or a
// deadlock, which SERIALIZABLE transactions must expect.
func InTx(ctx context.Context, pool *pgxpool.Pool, opts pgx.TxOptions, fn func(tx pgx.Tx) error) error {
	const tries = 20
	var err error
	for try := range tries {
		err = pgx.BeginTxFunc(ctx, pool, opts, fn)
		if !retryable(err) || ctx.Err() != nil {
			return err
		}
		// A short, growing, jittered pause lets the transaction that won
		// finish and keeps the losers from colliding again in step.
		pause := time.Duration(min(try+1, 10)) * time.Millisecond
		pause += rand.N(pause)
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(pause):
		}
	}
	return err
}

func retryable(err error) bool {
	var pe *pgconn.PgError
	// 40001 serialization_failure, 40P01 deadlock_detected.
	return errors.As(err, &pe) && (pe.Code == "40001" || pe.Code == "40P01")
}

// IsUniqueViolation reports whether err is PostgreSQL refusing a row that
// would break the unique constraint named constraint (any one when it is
// empty).
func IsUniqueViolation(err error, constraint string) bool {
	var pe *pgconn.PgError
	return errors.As(err, &pe) && pe.Code == "23505" && (constraint == "" || pe.ConstraintName == constraint)
}

// redact keeps the configured password out of an error's text: pgconn's
// connect errors name the host and user only, but a server's message could
// echo what it was sent.
func redact(err error, cfg *pgxpool.Config) error {
	if err == nil || cfg.ConnConfig.Password == "" {
		return err
	}
	return redacted{err, cfg.ConnConfig.Password}
}

type redacted struct {
	err      error
	password string
}

func (r redacted) Error() string {
	return strings.ReplaceAll(r.err.Error(), r.password, "xxxxx")
}

func (r redacted) Unwrap() error { return r.err }
