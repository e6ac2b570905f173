package main

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"
	"github.com/redis/go-redis/v9"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/internal/redistest"
)

// Ocean's hooks in the test database.
const (
	pgAliceHook = "au1lb5cz9jzs0007" // active, note, a secret and a URL that is a credential
	pgBobHook   = "au1lb5cr9jzs0006" // inactive, follow
	pgAdminHook = "au1lb5d59jzs0008" // active, note and reportCreated: stays in Ocean
	pgCarolHook = "au1lcbjm9jzs0010" // added later, active
)

// activeInOcean reads Ocean's active flags.
func activeInOcean(t *testing.T, dbURL string) map[string]bool {
	t.Helper()
	ctx := context.Background()
	conn, err := pgx.Connect(ctx, dbURL)
	require.NoError(t, err)
	defer conn.Close(ctx)
	rows, err := conn.Query(ctx, `SELECT id, active FROM webhook`)
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

// TestImportFromOceansDatabase runs `oceanhooks import` against a real
// PostgreSQL holding Ocean's webhook table and a running server: the dry
// run, the real run, runs again, a hook with an admin-only event, and
// --deactivate with Ocean's processes told on its Redis.
func TestImportFromOceansDatabase(t *testing.T) {
	pg := pgtest.Start(t)
	dbURL := pg.NewDatabase(t, "misskey")
	pg.Exec(t, "misskey", oceantest.WebhookTable)
	pg.Exec(t, "misskey", `INSERT INTO webhook (id, "userId", name, "on", url, secret, active, "latestSentAt", "latestStatus") VALUES
		($1, $2, 'alice-notes', '{note,reply}', 'https://discord.example/api/webhooks/1/t0ken', 'hush-alice', true, '2026-11-26T20:49:48.202Z', 200),
		($3, $4, 'bob-follows', '{follow}', 'https://b.example/hook', '', false, NULL, NULL),
		($5, $6, 'admin-all', '{note,reportCreated,reportResolved}', 'https://a.example/hook', 'hush-admin', true, NULL, NULL)`,
		pgAliceHook, oceantest.AliceID, pgBobHook, oceantest.BobID, pgAdminHook, oceantest.AdminID)
	untouched := map[string]bool{pgAliceHook: true, pgBobHook: false, pgAdminHook: true}

	oc := oceantest.New(t)
	s, cfg := startServer(t, oc.URL, nil)
	admin := "http://" + s.AdminAddr().String()
	env := []string{"OCEANHOOKS_DATA_DIR=" + cfg.DataDir, EnvOceanDatabase + "=" + dbURL}
	sidecarHooks := func() []map[string]any {
		t.Helper()
		out, _, err := runCLI(t, env, "hooks", "list", "--admin", admin, "--json")
		require.NoError(t, err)
		var hs []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &hs))
		return hs
	}
	noSecrets := func(t *testing.T, out string) {
		t.Helper()
		for _, secret := range []string{"hush-alice", "hush-admin", "t0ken"} {
			assert.NotContains(t, out, secret)
		}
	}

	t.Run("dry run", func(t *testing.T) {
		out, _, err := runCLI(t, env, "import", "--admin", admin, "--deactivate")
		require.NoError(t, err)
		assert.Regexp(t, pgAliceHook+`.*alice-notes.*https://discord.example/….*would import, would be switched off in Ocean`, out)
		assert.Regexp(t, pgBobHook+`.*bob-follows.*would import\n`, out)
		assert.Regexp(t, pgAdminHook+`.*admin-all.*stays in Ocean \(events oceanhooks does not send: reportCreated, reportResolved\)`, out)
		assert.Contains(t, out, "dry run, nothing changed: 2 to import, 0 already in oceanhooks, 1 stay in Ocean, 1 to switch off in Ocean; run again with --apply")
		noSecrets(t, out)
		assert.Empty(t, sidecarHooks())
		assert.Equal(t, untouched, activeInOcean(t, dbURL))
	})

	t.Run("real run", func(t *testing.T) {
		out, _, err := runCLI(t, env, "import", "--admin", admin, "--apply")
		require.NoError(t, err)
		assert.Contains(t, out, "imported 2, 0 already in oceanhooks, 1 stay in Ocean\n")
		assert.Contains(t, out, "hooks that stay in Ocean keep firing from Ocean")
		assert.Contains(t, out, "1 imported hooks are still active in Ocean, so their events go out twice")
		noSecrets(t, out)
		assert.Equal(t, untouched, activeInOcean(t, dbURL), "without --deactivate Ocean is not changed")

		hs := sidecarHooks()
		require.Len(t, hs, 2)
		byID := map[string]map[string]any{}
		for _, h := range hs {
			byID[h["id"].(string)] = h
		}
		alice := byID[pgAliceHook]
		require.NotNil(t, alice, "Ocean's id kept")
		assert.Equal(t, oceantest.AliceID, alice["userId"])
		assert.Equal(t, "alice-notes", alice["name"])
		assert.Equal(t, []any{"note", "reply"}, alice["on"])
		assert.Equal(t, true, alice["active"])
		assert.Equal(t, "****", alice["secret"], "a secret came along")
		assert.EqualValues(t, 200, alice["latestStatus"])
		assert.Equal(t, false, byID[pgBobHook]["active"])

		// The secret and URL themselves, as alice sees them.
		status, body := post(t, "http://"+s.Addr().String()+"/api/i/webhooks/show", oceantest.TokenAlice, `{"webhookId":"`+pgAliceHook+`"}`)
		require.Equal(t, http.StatusOK, status, body)
		assert.Equal(t, "hush-alice", gjson.Get(body, "secret").Str)
		assert.Equal(t, "https://discord.example/api/webhooks/1/t0ken", gjson.Get(body, "url").Str)
	})

	t.Run("again, with --deactivate: nothing imported twice, switched off, Ocean told", func(t *testing.T) {
		rs := redistest.Start(t)
		rdb := redis.NewClient(&redis.Options{Addr: rs.Addr})
		t.Cleanup(func() { _ = rdb.Close() })
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer cancel()
		sub := rdb.Subscribe(ctx, "ocean.example")
		t.Cleanup(func() { _ = sub.Close() })
		_, err := sub.Receive(ctx) // subscribed
		require.NoError(t, err)

		out, _, err := runCLI(t, env, "import", "--admin", admin, "--apply", "--deactivate",
			"--ocean-redis", rs.URL(), "--channel", "ocean.example")
		require.NoError(t, err)
		assert.Regexp(t, pgAliceHook+`.*already imported, switched off in Ocean`, out)
		assert.Contains(t, out, "imported 0, 2 already in oceanhooks, 1 stay in Ocean, switched off 1 in Ocean")
		assert.Contains(t, out, "told Ocean's processes on Redis channel ocean.example that 1 hooks were switched off")
		assert.Equal(t, map[string]bool{pgAliceHook: false, pgBobHook: false, pgAdminHook: true}, activeInOcean(t, dbURL),
			"the admin-only hook stays in Ocean, untouched")
		assert.Len(t, sidecarHooks(), 2)

		msg, err := sub.ReceiveMessage(ctx)
		require.NoError(t, err)
		assert.Equal(t, "internal", gjson.Get(msg.Payload, "channel").Str)
		assert.Equal(t, "webhookUpdated", gjson.Get(msg.Payload, "message.type").Str)
		assert.Equal(t, pgAliceHook, gjson.Get(msg.Payload, "message.body.id").Str)
		assert.False(t, gjson.Get(msg.Payload, "message.body.active").Bool())
	})

	t.Run("a new hook, without a Redis to tell: restart Ocean", func(t *testing.T) {
		pg.Exec(t, "misskey", `INSERT INTO webhook (id, "userId", name, "on", url, secret, active) VALUES ($1, $2, 'carol', '{mention}', 'https://c.example', '', true)`,
			pgCarolHook, oceantest.CarolID)
		out, _, err := runCLI(t, env, "import", "--admin", admin, "--apply", "--deactivate")
		require.NoError(t, err)
		assert.Contains(t, out, "imported 1, 2 already in oceanhooks, 1 stay in Ocean, switched off 1 in Ocean")
		assert.Contains(t, out, "restart Ocean's processes")
		assert.Len(t, sidecarHooks(), 3)
		assert.False(t, activeInOcean(t, dbURL)[pgCarolHook])
	})

	t.Run("without the server: an error, Ocean unchanged", func(t *testing.T) {
		pg.Exec(t, "misskey", `UPDATE webhook SET active = true WHERE id = $1`, pgCarolHook)
		_, _, err := runCLI(t, env, "import", "--admin", "http://127.0.0.1:1", "--apply", "--deactivate")
		require.Error(t, err)
		assert.Contains(t, err.Error(), "is `oceanhooks serve` running")
		assert.Contains(t, err.Error(), "nothing changed in Ocean")
		assert.True(t, activeInOcean(t, dbURL)[pgCarolHook])
	})

	t.Run("no database given", func(t *testing.T) {
		_, _, err := runCLI(t, []string{"OCEANHOOKS_DATA_DIR=" + cfg.DataDir}, "import", "--admin", admin)
		require.Error(t, err)
		assert.Contains(t, err.Error(), "--database or $"+EnvOceanDatabase)
	})

	t.Run("output lists every hook", func(t *testing.T) {
		out, _, err := runCLI(t, env, "import", "--admin", admin)
		require.NoError(t, err)
		assert.Equal(t, 1+4+1, strings.Count(out, "\n"), "a header, four hooks, the totals:\n%s", out)
	})
}
