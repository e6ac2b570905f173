package pgstore_test

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/pgstore"
)

func TestMigrationsAreNumberedAndKnown(t *testing.T) {
	ms, err := pgstore.Migrations()
	require.NoError(t, err)
	for i, m := range ms {
		assert.Equal(t, i+1, m.Version, "migrations are numbered 1, 2, 3… without gaps")
		assert.NotEmpty(t, m.Name)
	}
}

// Several sidecars starting at once on an empty schema: each migration is
// applied exactly once, and every sidecar finds the schema current.
func TestConcurrentMigrateAppliesEachOnce(t *testing.T) {
	url := pgtest.ServerURL(t)
	schema := pgtest.NewSchema(t, url)
	const sidecars = 4
	dbs := make([]*pgstore.DB, sidecars)
	for i := range dbs {
		dbs[i] = pgtest.OpenSchema(t, url, schema)
	}
	applied := make([][]pgstore.Migration, sidecars)
	errs := make([]error, sidecars)
	var wg sync.WaitGroup
	for i, db := range dbs {
		wg.Go(func() { applied[i], errs[i] = db.Migrate(context.Background()) })
	}
	wg.Wait()
	ms, err := pgstore.Migrations()
	require.NoError(t, err)
	total := 0
	for i := range dbs {
		require.NoError(t, errs[i])
		total += len(applied[i])
	}
	assert.Equal(t, len(ms), total, "each migration applied by exactly one sidecar")

	var rows int
	require.NoError(t, dbs[0].Pool().QueryRow(context.Background(), "SELECT count(*) FROM schema_migrations").Scan(&rows))
	assert.Equal(t, len(ms), rows)
	v, err := dbs[1].Version(context.Background())
	require.NoError(t, err)
	assert.Equal(t, len(ms), v)

	again, err := dbs[2].Migrate(context.Background())
	require.NoError(t, err)
	assert.Empty(t, again, "a current schema gets nothing")
}

func TestMigrateRefusesANewerSchema(t *testing.T) {
	db := pgtest.Open(t)
	ctx := context.Background()
	_, err := db.Pool().Exec(ctx, "INSERT INTO schema_migrations (version, name) VALUES (9999, 'from_the_future')")
	require.NoError(t, err)
	_, err = db.Migrate(ctx)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "newer than this oceanhooks knows")
}

func TestVersionOfAnEmptySchema(t *testing.T) {
	url := pgtest.ServerURL(t)
	db := pgtest.OpenSchema(t, url, pgtest.NewSchema(t, url))
	v, err := db.Version(context.Background())
	require.NoError(t, err)
	assert.Zero(t, v)
}

func TestOpenRejectsBadInput(t *testing.T) {
	ctx := context.Background()
	for _, schema := range []string{"Oceanhooks", "1abc", "a-b", "public; drop table x", strings.Repeat("a", 64)} {
		_, err := pgstore.Open(ctx, "postgres://u@127.0.0.1:1/db", schema, nil)
		require.Error(t, err, schema)
		assert.Contains(t, err.Error(), "schema", schema)
	}
	_, err := pgstore.Open(ctx, "postgres://u:s3cret-pw@[::1/db", "", nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret-pw")
}

func TestOpenUnreachableKeepsThePasswordOut(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// Port 1 on loopback refuses at once.
	_, err := pgstore.Open(ctx, "postgres://oceanhooks:s3cret-pw@127.0.0.1:1/ocean?sslmode=disable&connect_timeout=2", "", nil)
	require.Error(t, err)
	assert.NotContains(t, err.Error(), "s3cret-pw")
}

func TestSearchPathIsTheSchema(t *testing.T) {
	db := pgtest.Open(t)
	var sp string
	require.NoError(t, db.Pool().QueryRow(context.Background(), "SHOW search_path").Scan(&sp))
	assert.Equal(t, db.Schema(), sp)
}

// A notification reaches the listener; after its connection is killed it
// reconnects, calls onConnect again (the reload that covers what it missed),
// and hears later notifications.
func TestListenReloadsAfterReconnect(t *testing.T) {
	db := pgtest.Open(t)
	ch := db.Channel("test")
	ctx, cancel := context.WithCancel(context.Background())
	var (
		mu       sync.Mutex
		connects int
		got      []string
	)
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx, []string{ch}, func(context.Context) error {
			mu.Lock()
			connects++
			mu.Unlock()
			return nil
		}, func(channel, payload string) {
			mu.Lock()
			got = append(got, channel+":"+payload)
			mu.Unlock()
		})
	}()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
		assert.False(t, db.Connected())
	})
	require.Eventually(t, db.Connected, 10*time.Second, 10*time.Millisecond)
	notify := func(payload string) {
		_, err := db.Pool().Exec(context.Background(), "SELECT pg_notify($1, $2)", ch, payload)
		require.NoError(t, err)
	}
	notify("one")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 1
	}, 10*time.Second, 10*time.Millisecond)

	// Kill the listening backend.
	// Only this test's listener: other tests may listen on the same server.
	var ended int
	require.NoError(t, db.Pool().QueryRow(context.Background(),
		"SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity WHERE query = $1",
		"LISTEN "+pgx.Identifier{ch}.Sanitize()).Scan(&ended))
	require.Equal(t, 1, ended)
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return connects >= 2
	}, 20*time.Second, 10*time.Millisecond, "reconnects and reloads")
	require.Eventually(t, db.Connected, 10*time.Second, 10*time.Millisecond)
	notify("two")
	require.Eventually(t, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == 2
	}, 10*time.Second, 10*time.Millisecond)
	mu.Lock()
	assert.Equal(t, []string{ch + ":one", ch + ":two"}, got)
	mu.Unlock()
}

// Connected is the state of every listener of the store: the hook store
// and the queue each run one, and one of them reconnecting is a store not
// fully connected.
func TestConnectedCountsEveryListener(t *testing.T) {
	db := pgtest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	block := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	wg.Go(func() { _ = db.Listen(ctx, []string{db.Channel("a")}, nil, func(string, string) {}) })
	require.Eventually(t, db.Connected, 10*time.Second, 10*time.Millisecond)
	// A second listener whose reload does not finish: not connected yet.
	wg.Go(func() {
		_ = db.Listen(ctx, []string{db.Channel("b")}, func(ctx context.Context) error {
			select {
			case <-block:
			case <-ctx.Done():
			}
			return nil
		}, func(string, string) {})
	})
	require.Eventually(t, func() bool { return !db.Connected() }, 10*time.Second, 10*time.Millisecond)
	close(block)
	require.Eventually(t, db.Connected, 10*time.Second, 10*time.Millisecond)
}

// Channels carry the schema: a store in another schema does not hear them.
func TestChannelsAreSchemaScoped(t *testing.T) {
	url := pgtest.ServerURL(t)
	a := pgtest.OpenSchema(t, url, pgtest.NewSchema(t, url))
	b := pgtest.OpenSchema(t, url, pgtest.NewSchema(t, url))
	assert.NotEqual(t, a.Channel("hooks"), b.Channel("hooks"))
	assert.True(t, strings.HasPrefix(a.Channel("hooks"), a.Schema()))
}

func TestInTxRetriesSerializationFailures(t *testing.T) {
	db := pgtest.Open(t)
	ctx := context.Background()
	_, err := db.Pool().Exec(ctx, "CREATE TABLE counter (n int)")
	require.NoError(t, err)
	_, err = db.Pool().Exec(ctx, "INSERT INTO counter VALUES (0)")
	require.NoError(t, err)
	const writers, each = 4, 10
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for range writers {
		wg.Go(func() {
			for range each {
				errs <- pgstore.InTx(ctx, db.Pool(), pgx.TxOptions{IsoLevel: pgx.Serializable}, func(tx pgx.Tx) error {
					var n int
					if err := tx.QueryRow(ctx, "SELECT n FROM counter").Scan(&n); err != nil {
						return err
					}
					_, err := tx.Exec(ctx, "UPDATE counter SET n = $1", n+1)
					return err
				})
			}
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		require.NoError(t, err)
	}
	var n int
	require.NoError(t, db.Pool().QueryRow(ctx, "SELECT n FROM counter").Scan(&n))
	assert.Equal(t, writers*each, n, "no increment lost: every aborted transaction ran again")
}
