package oceandb

import (
	"context"
	"encoding/json"
	"errors"
	"strconv"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/pgtest"
)

// Ocean's ids of the rows every test starts with.
const (
	aliceHook  = "au1lb5cz9jzs0007" // active, note
	bobHook    = "au1lb5cr9jzs0006" // inactive, follow
	adminHook  = "au1lb5d59jzs0008" // active, note and reportCreated: stays in Ocean
	aliceHook2 = "au1lb5cz9jzs0009" // active, mention
)

// storeSidecar is the sidecar's side of an import on a real hook store, as
// the admin listener's POST /hooks runs it; check runs first on each call.
type storeSidecar struct {
	store *hooks.Store
	calls int
	check func(hs []Hook) error
}

func (s *storeSidecar) Import(_ context.Context, hs []Hook, dryRun bool) ([]Result, error) {
	s.calls++
	if s.check != nil {
		if err := s.check(hs); err != nil {
			return nil, err
		}
	}
	out := make([]Result, len(hs))
	for i, h := range hs {
		r := Result{OceanID: h.ID}
		var err error
		if dryRun {
			var found bool
			r.HookID, found, err = s.store.Imported(h.UserID, h.ID)
			r.Outcome = hooks.ImportWould
			if found {
				r.Outcome = hooks.ImportAlready
			}
		} else {
			var imported bool
			r.HookID, imported, err = s.store.Import(hooks.Hook{UserID: h.UserID, Name: h.Name, On: h.On, URL: h.URL,
				Secret: h.Secret, Active: h.Active, LatestSentAt: h.LatestSentAt, LatestStatus: h.LatestStatus, NativeID: h.ID})
			r.Outcome = hooks.ImportAlready
			if imported {
				r.Outcome = hooks.ImportImported
			}
		}
		if err != nil {
			return nil, err
		}
		out[i] = r
	}
	return out, nil
}

func newSidecar(t *testing.T) *storeSidecar {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	s, err := hooks.Open(db, hooks.Options{})
	require.NoError(t, err)
	return &storeSidecar{store: s}
}

// oceanDB is a database with Ocean's webhook table and four hooks.
type oceanDB struct {
	pg   *pgtest.Server
	name string
	url  string
}

var sent = time.Date(2026, 11, 26, 20, 49, 48, 202_000_000, time.UTC)

func newOceanDB(t *testing.T, pg *pgtest.Server, name string) oceanDB {
	t.Helper()
	o := oceanDB{pg: pg, name: name, url: pg.NewDatabase(t, name)}
	pg.Exec(t, name, oceantest.WebhookTable)
	pg.Exec(t, name, `INSERT INTO webhook (id, "userId", name, "on", url, secret, active, "latestSentAt", "latestStatus") VALUES
		($1, $2, 'alice-notes', '{note}', 'https://discord.example/api/webhooks/1/t0ken', 'testsecret', true, $3, 200),
		($4, $5, 'bob-follows', '{follow,followed}', 'https://b.example/hook', '', false, NULL, NULL),
		($6, $7, 'admin-reports', '{note,reportCreated}', 'https://a.example/hook', 's', true, NULL, NULL),
		($8, $2, 'alice-mentions', '{mention}', 'https://a.example/m', '', true, NULL, 1)`,
		aliceHook, oceantest.AliceID, sent, bobHook, oceantest.BobID, adminHook, oceantest.AdminID, aliceHook2)
	return o
}

func (o oceanDB) conn(t *testing.T) *pgx.Conn {
	t.Helper()
	c, err := pgx.Connect(context.Background(), o.url)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close(context.Background()) })
	return c
}

// active returns Ocean's active flag of each hook, read on a connection of
// its own.
func (o oceanDB) active(t *testing.T) map[string]bool {
	t.Helper()
	rows, err := o.conn(t).Query(context.Background(), `SELECT id, active FROM webhook`)
	require.NoError(t, err)
	out := map[string]bool{}
	for rows.Next() {
		var id string
		var a bool
		require.NoError(t, rows.Scan(&id, &a))
		out[id] = a
	}
	require.NoError(t, rows.Err())
	return out
}

var untouched = map[string]bool{aliceHook: true, bobHook: false, adminHook: true, aliceHook2: true}

func outcomes(s Summary) map[string]string {
	out := map[string]string{}
	for _, e := range s.Entries {
		out[e.Hook.ID] = e.Outcome
	}
	return out
}

func TestRun(t *testing.T) {
	pg := pgtest.Start(t)
	ctx := context.Background()

	t.Run("dry run: says what would happen, changes nothing", func(t *testing.T) {
		db, sc := newOceanDB(t, pg, "dry"), newSidecar(t)
		sum, err := Run(ctx, db.conn(t), sc, Options{Deactivate: true})
		require.NoError(t, err)
		assert.Equal(t, map[string]string{aliceHook: hooks.ImportWould, bobHook: hooks.ImportWould,
			adminHook: StaysInOcean, aliceHook2: hooks.ImportWould}, outcomes(sum))
		assert.Equal(t, 2, sum.Deactivated(), "the two active importable ones would be switched off")
		for _, e := range sum.Entries {
			if e.Hook.ID == adminHook {
				assert.Equal(t, []string{"reportCreated"}, e.Unsupported, "and why it stays")
				assert.False(t, e.Deactivate)
			}
		}
		assert.Equal(t, untouched, db.active(t))
		all, err := sc.store.ListAll()
		require.NoError(t, err)
		assert.Empty(t, all)
	})

	t.Run("real run, then again: imported once, switched off after the sidecar stored them", func(t *testing.T) {
		db, sc := newOceanDB(t, pg, "real"), newSidecar(t)
		sc.check = func([]Hook) error {
			// The sidecar is asked before anything changes in Ocean.
			if !db.active(t)[aliceHook] {
				return errors.New("switched off before the sidecar stored it")
			}
			return nil
		}
		sum, err := Run(ctx, db.conn(t), sc, Options{Apply: true, Deactivate: true})
		require.NoError(t, err)
		assert.Equal(t, map[string]string{aliceHook: hooks.ImportImported, bobHook: hooks.ImportImported,
			adminHook: StaysInOcean, aliceHook2: hooks.ImportImported}, outcomes(sum))
		assert.Equal(t, map[string]bool{aliceHook: false, bobHook: false, adminHook: true, aliceHook2: false}, db.active(t),
			"the admin-only hook stays in Ocean, untouched")

		got, err := sc.store.Get(aliceHook)
		require.NoError(t, err)
		assert.Equal(t, hooks.Hook{ID: aliceHook, UserID: oceantest.AliceID, Name: "alice-notes", On: []string{"note"},
			URL: "https://discord.example/api/webhooks/1/t0ken", Secret: "testsecret", Active: true,
			LatestSentAt: &sent, LatestStatus: ptr(200), NativeID: aliceHook}, got, "as Ocean had it, active")
		got, err = sc.store.Get(bobHook)
		require.NoError(t, err)
		assert.False(t, got.Active)

		sc.check = nil
		sum, err = Run(ctx, db.conn(t), sc, Options{Apply: true, Deactivate: true})
		require.NoError(t, err)
		assert.Equal(t, map[string]string{aliceHook: hooks.ImportAlready, bobHook: hooks.ImportAlready,
			adminHook: StaysInOcean, aliceHook2: hooks.ImportAlready}, outcomes(sum))
		assert.Zero(t, sum.Deactivated(), "nothing left to switch off")
		all, err := sc.store.ListAll()
		require.NoError(t, err)
		assert.Len(t, all, 3, "nothing imported twice")
	})

	t.Run("without --deactivate: imported, Ocean unchanged, read-only transaction", func(t *testing.T) {
		db, sc := newOceanDB(t, pg, "readonly"), newSidecar(t)
		pg.Exec(t, "readonly", `CREATE ROLE reader LOGIN; GRANT SELECT ON webhook TO reader`)
		reader, err := pgx.Connect(ctx, "postgres://reader@127.0.0.1:"+strconv.Itoa(pg.Port)+"/readonly?sslmode=disable")
		require.NoError(t, err)
		t.Cleanup(func() { _ = reader.Close(ctx) })
		sum, err := Run(ctx, reader, sc, Options{Apply: true})
		require.NoError(t, err)
		assert.Equal(t, 3, sum.Count(hooks.ImportImported))
		assert.Zero(t, sum.Deactivated())
		assert.Equal(t, untouched, db.active(t))

		_, err = Run(ctx, reader, sc, Options{Apply: true, Deactivate: true})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "UPDATE for --deactivate")
	})

	t.Run("the sidecar fails: nothing changes in Ocean", func(t *testing.T) {
		db, sc := newOceanDB(t, pg, "sidecarfails"), newSidecar(t)
		sc.check = func([]Hook) error { return errors.New("admin listener: 503") }
		_, err := Run(ctx, db.conn(t), sc, Options{Apply: true, Deactivate: true})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "503")
		assert.Equal(t, untouched, db.active(t))
	})

	t.Run("a failure after some batches: stored ones stay, Ocean unchanged, the next run finishes", func(t *testing.T) {
		db, sc := newOceanDB(t, pg, "batches"), newSidecar(t)
		sc.check = func([]Hook) error {
			if sc.calls == 2 {
				return errors.New("cut")
			}
			return nil
		}
		_, err := Run(ctx, db.conn(t), sc, Options{Apply: true, Deactivate: true, BatchSize: 1})
		require.Error(t, err)
		assert.Equal(t, untouched, db.active(t))

		sc.check, sc.calls = nil, 0
		sum, err := Run(ctx, db.conn(t), sc, Options{Apply: true, Deactivate: true, BatchSize: 1})
		require.NoError(t, err)
		assert.Equal(t, 3, sc.calls, "one request per batch")
		assert.Equal(t, 1, sum.Count(hooks.ImportAlready), "stored by the cut run")
		assert.Equal(t, 2, sum.Count(hooks.ImportImported))
		assert.Equal(t, map[string]bool{aliceHook: false, bobHook: false, adminHook: true, aliceHook2: false}, db.active(t))
	})

	t.Run("not Ocean's database", func(t *testing.T) {
		pg.NewDatabase(t, "other")
		c, err := pgx.Connect(ctx, pg.URL("other"))
		require.NoError(t, err)
		t.Cleanup(func() { _ = c.Close(ctx) })
		_, err = Run(ctx, c, newSidecar(t), Options{})
		require.Error(t, err)
		assert.Contains(t, err.Error(), "no table webhook (is it Ocean's?)")
	})
}

func TestWebhookUpdated(t *testing.T) {
	msg := WebhookUpdated(Hook{ID: aliceHook, UserID: oceantest.AliceID, Name: "n", On: []string{"note"}, URL: "https://r.example",
		Secret: "s", Active: true, LatestSentAt: &sent, LatestStatus: ptr(200)})
	var m struct {
		Channel string
		Message struct {
			Type string
			Body map[string]any
		}
	}
	require.NoError(t, json.Unmarshal(msg, &m))
	assert.Equal(t, "internal", m.Channel)
	assert.Equal(t, "webhookUpdated", m.Message.Type)
	assert.Equal(t, aliceHook, m.Message.Body["id"])
	assert.Equal(t, false, m.Message.Body["active"], "Ocean drops a hook that is not active from its memory")
	assert.Equal(t, "2026-11-26T20:49:48.202Z", m.Message.Body["latestSentAt"])
}

func ptr[T any](v T) *T { return &v }
