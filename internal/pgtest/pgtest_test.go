package pgtest

import (
	"context"
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
