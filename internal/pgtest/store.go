package pgtest

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/oceanhooks/oceanhooks/pgstore"
)

// EnvURL names the environment variable holding the URL of a running
// PostgreSQL server for the store's tests (.ci/run starts one and sets it).
// Each test then works in a schema of its own on that server. When it is
// unset, each test that needs a server starts a throwaway cluster (Start).
const EnvURL = "OCEANHOOKS_TEST_POSTGRES_URL"

var (
	serversMu sync.Mutex
	servers   = map[testing.TB]string{} // throwaway cluster of a running test
	urls      sync.Map                  // *pgstore.DB → its server's URL
)

// ServerURL is the URL of a PostgreSQL server this test may create schemas
// on: $OCEANHOOKS_TEST_POSTGRES_URL when set (the test fails, never skips,
// when that server does not answer), else a cluster started for this test
// (once, however often the test asks).
func ServerURL(t testing.TB) string {
	t.Helper()
	if u := os.Getenv(EnvURL); u != "" {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, u)
		if err != nil {
			t.Fatalf("pgtest: $%s is set but the server does not answer: %v", EnvURL, err)
		}
		_ = conn.Close(ctx)
		return u
	}
	serversMu.Lock()
	defer serversMu.Unlock()
	if u, ok := servers[t]; ok {
		return u
	}
	u := Start(t).URL("postgres")
	servers[t] = u
	t.Cleanup(func() {
		serversMu.Lock()
		delete(servers, t)
		serversMu.Unlock()
	})
	return u
}

// NewSchema returns the name of a schema no other test uses on the server at
// url (created by the store's Migrate), dropped with everything in it when
// the test ends.
func NewSchema(t testing.TB, url string) string {
	t.Helper()
	var b [6]byte
	_, _ = rand.Read(b[:])
	schema := "t_" + hex.EncodeToString(b[:])
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		conn, err := pgx.Connect(ctx, url)
		if err != nil {
			return // the test stopped the server; nothing is left to drop
		}
		defer conn.Close(ctx)
		if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
			t.Errorf("pgtest: drop schema %s: %v", schema, err)
		}
	})
	return schema
}

// Open returns a store in a fresh, migrated schema of its own, closed when
// the test ends.
func Open(t testing.TB) *pgstore.DB {
	t.Helper()
	url := ServerURL(t)
	db := OpenSchema(t, url, NewSchema(t, url))
	if _, err := db.Migrate(context.Background()); err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	return db
}

// OpenSchema opens the store in schema on the server at url (what a second
// sidecar sharing the store does), closed when the test ends. It does not
// migrate.
func OpenSchema(t testing.TB, url, schema string) *pgstore.DB {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	db, err := pgstore.Open(ctx, url, schema, nil)
	if err != nil {
		t.Fatalf("pgtest: %v", err)
	}
	urls.Store(db, url)
	t.Cleanup(func() {
		urls.Delete(db)
		db.Close()
	})
	return db
}

// Again opens a second handle on db's schema and server: another sidecar
// sharing the store.
func Again(t testing.TB, db *pgstore.DB) *pgstore.DB {
	t.Helper()
	return OpenSchema(t, URLOf(t, db), db.Schema())
}

// URLOf is the URL of the server of a store opened by this package.
func URLOf(t testing.TB, db *pgstore.DB) string {
	t.Helper()
	u, ok := urls.Load(db)
	if !ok {
		t.Fatalf("pgtest: the store was not opened by pgtest")
	}
	return u.(string)
}
