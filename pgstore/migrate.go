package pgstore

import (
	"context"
	"embed"
	"fmt"
	"io/fs"
	"path"
	"sort"
	"strconv"
	"strings"

	"github.com/jackc/pgx/v5"
)

//go:embed migrations
var migrationFiles embed.FS

// Migration is one versioned step of the schema.
type Migration struct {
	Version int
	Name    string
	sql     string
}

// Migrations are the schema's steps this build knows, in order.
func Migrations() ([]Migration, error) {
	return readMigrations(migrationFiles, "migrations")
}

func readMigrations(fsys fs.FS, dir string) ([]Migration, error) {
	entries, err := fs.ReadDir(fsys, dir)
	if err != nil {
		return nil, err
	}
	var ms []Migration
	seen := map[int]string{}
	for _, e := range entries {
		name := e.Name()
		if e.IsDir() || !strings.HasSuffix(name, ".sql") {
			continue
		}
		num, label, ok := strings.Cut(strings.TrimSuffix(name, ".sql"), "_")
		v, err := strconv.Atoi(num)
		if !ok || err != nil || v <= 0 || label == "" {
			return nil, fmt.Errorf("migration %s: want NNNN_name.sql", name)
		}
		if other, dup := seen[v]; dup {
			return nil, fmt.Errorf("migrations %s and %s share version %d", other, name, v)
		}
		seen[v] = name
		b, err := fs.ReadFile(fsys, path.Join(dir, name))
		if err != nil {
			return nil, err
		}
		ms = append(ms, Migration{Version: v, Name: label, sql: string(b)})
	}
	sort.Slice(ms, func(i, j int) bool { return ms[i].Version < ms[j].Version })
	return ms, nil
}

// Migrate creates the schema when it is missing and applies the migrations
// it has not had yet, in order, under an advisory lock held for the whole
// run. It returns the migrations it applied (none when the schema was
// current) and refuses a schema that a newer build migrated further.
func (db *DB) Migrate(ctx context.Context) ([]Migration, error) {
	ms, err := Migrations()
	if err != nil {
		return nil, fmt.Errorf("postgres: %w", err)
	}
	return db.migrate(ctx, ms)
}

func (db *DB) migrate(ctx context.Context, ms []Migration) (applied []Migration, err error) {
	conn, err := db.pool.Acquire(ctx)
	if err != nil {
		return nil, fmt.Errorf("postgres: migrate: %w", redact(err, db.cfg))
	}
	defer conn.Release()
	// One lock per schema: sidecars of other schemas migrate undisturbed.
	lockKey := "oceanhooks.migrate." + db.schema
	if _, err := conn.Exec(ctx, "SELECT pg_advisory_lock(hashtext($1))", lockKey); err != nil {
		return nil, fmt.Errorf("postgres: migrate: take the migration lock: %w", err)
	}
	defer func() {
		// A context that ended must not leave the session lock held on a
		// connection that goes back to the pool.
		if _, uerr := conn.Exec(context.WithoutCancel(ctx), "SELECT pg_advisory_unlock(hashtext($1))", lockKey); uerr != nil {
			conn.Conn().PgConn().Close(context.WithoutCancel(ctx))
		}
	}()
	ident := pgx.Identifier{db.schema}.Sanitize()
	if _, err := conn.Exec(ctx, "CREATE SCHEMA IF NOT EXISTS "+ident); err != nil {
		return nil, fmt.Errorf("postgres: create schema %s: %w", db.schema, err)
	}
	if _, err := conn.Exec(ctx, `CREATE TABLE IF NOT EXISTS `+ident+`.schema_migrations (
		version    integer PRIMARY KEY,
		name       text NOT NULL,
		applied_at timestamptz NOT NULL DEFAULT now())`); err != nil {
		return nil, fmt.Errorf("postgres: create schema_migrations: %w", err)
	}
	var current int
	if err := conn.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+ident+".schema_migrations").Scan(&current); err != nil {
		return nil, fmt.Errorf("postgres: read schema version: %w", err)
	}
	if n := len(ms); current > 0 && (n == 0 || current > ms[n-1].Version) {
		return nil, fmt.Errorf("postgres: schema %s is at version %d, newer than this oceanhooks knows (%d): upgrade oceanhooks",
			db.schema, current, lastVersion(ms))
	}
	for _, m := range ms {
		if m.Version <= current {
			continue
		}
		err := pgx.BeginFunc(ctx, conn, func(tx pgx.Tx) error {
			if _, err := tx.Exec(ctx, "SET LOCAL search_path TO "+ident); err != nil {
				return err
			}
			if _, err := tx.Exec(ctx, m.sql); err != nil {
				return err
			}
			_, err := tx.Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", m.Version, m.Name)
			return err
		})
		if err != nil {
			return applied, fmt.Errorf("postgres: migration %04d_%s: %w", m.Version, m.Name, err)
		}
		applied = append(applied, m)
		db.log.Info("applied a migration", "schema", db.schema, "version", m.Version, "name", m.Name)
	}
	return applied, nil
}

// Version is the schema's current migration version, 0 before the first.
func (db *DB) Version(ctx context.Context) (int, error) {
	var v int
	err := db.pool.QueryRow(ctx, "SELECT coalesce(max(version), 0) FROM "+pgx.Identifier{db.schema, "schema_migrations"}.Sanitize()).Scan(&v)
	if err != nil {
		var missing bool
		if perr := db.pool.QueryRow(ctx, "SELECT to_regclass($1) IS NULL", db.schema+".schema_migrations").Scan(&missing); perr == nil && missing {
			return 0, nil
		}
		return 0, fmt.Errorf("postgres: read schema version: %w", err)
	}
	return v, nil
}

func lastVersion(ms []Migration) int {
	if len(ms) == 0 {
		return 0
	}
	return ms[len(ms)-1].Version
}
