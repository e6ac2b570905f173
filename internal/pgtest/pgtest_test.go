package pgtest

import (
	"context"
	"fmt"
	"runtime"
	"testing"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestStartGivesAWorkingClusterPerTest(t *testing.T) {
	a := Start(t)
	b := Start(t)
	assert.NotEqual(t, a.Port, b.Port)
	url := a.NewDatabase(t, "ocean")
	a.Exec(t, "ocean", `CREATE TABLE t (v text); INSERT INTO t VALUES ('x')`)

	ctx := context.Background()
	conn, err := pgx.Connect(ctx, url)
	require.NoError(t, err)
	defer conn.Close(ctx)
	var v string
	require.NoError(t, conn.QueryRow(ctx, `SELECT v FROM t`).Scan(&v))
	assert.Equal(t, "x", v)
	var addr string
	require.NoError(t, conn.QueryRow(ctx, `SELECT host(inet_server_addr())`).Scan(&addr))
	assert.Equal(t, "127.0.0.1", addr, "loopback only")

	b.Stop()
	_, err = pgx.Connect(ctx, b.URL("postgres"))
	assert.Error(t, err, "stopped")
}

// fatalTB records a test's Fatalf and stops its goroutine there, as
// testing.T does.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// A test that needs PostgreSQL fails, never skips, when
// $OCEANHOOKS_TEST_POSTGRES_URL names a server that does not answer.
func TestServerURLFailsWhenTheConfiguredServerIsDown(t *testing.T) {
	t.Setenv(EnvURL, "postgres://postgres@127.0.0.1:1/postgres?sslmode=disable&connect_timeout=2")
	tb := &fatalTB{TB: t}
	done := make(chan struct{})
	go func() {
		defer close(done)
		ServerURL(tb)
	}()
	<-done
	assert.Contains(t, tb.msg, EnvURL+" is set but the server does not answer")
}

// With the variable set, tests work in schemas of their own on that server,
// dropped when they end.
func TestOpenGivesEachTestItsOwnSchema(t *testing.T) {
	srv := Start(t)
	t.Setenv(EnvURL, srv.URL("postgres"))
	var schemas []string
	for _, name := range []string{"a", "b"} {
		t.Run(name, func(t *testing.T) {
			db := Open(t)
			var v int
			require.NoError(t, db.Pool().QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&v))
			assert.Positive(t, v, "migrated")
			schemas = append(schemas, db.Schema())
		})
	}
	require.Len(t, schemas, 2)
	assert.NotEqual(t, schemas[0], schemas[1])
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, srv.URL("postgres"))
	require.NoError(t, err)
	defer conn.Close(ctx)
	var left int
	require.NoError(t, conn.QueryRow(ctx, "SELECT count(*) FROM pg_namespace WHERE nspname = ANY($1)", schemas).Scan(&left))
	assert.Zero(t, left, "each schema dropped when its test ended")
}
