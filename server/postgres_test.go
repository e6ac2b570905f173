package server

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/pgtest"
)

// postgresConfig is testConfig on the PostgreSQL store at url (a server of
// pgtest) in schema.
func postgresConfig(t *testing.T, upstream, url, schema string) config.Config {
	t.Helper()
	cfg := testConfig(t, upstream)
	cfg.Store.Backend = config.BackendPostgres
	cfg.Store.Postgres.URL = url
	cfg.Store.Postgres.Schema = schema
	return cfg
}

// TestOnPostgres: the real server on the PostgreSQL store, migrated at its
// start: a hook created through Ocean's API (answered locally), a note
// through the proxy, its delivery at a real receiver, the delivery and hook
// on the admin listener, and a data dir that holds the admin token but no
// Badger store.
func TestOnPostgres(t *testing.T) {
	oc := oceantest.New(t)
	received := make(chan []byte, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- b
	}))
	t.Cleanup(receiver.Close)
	pgURL := pgtest.ServerURL(t)
	cfg := postgresConfig(t, oc.URL, pgURL, pgtest.NewSchema(t, pgURL))
	cfg.Delivery.AllowedPrivateNetworks = []string{"127.0.0.1"}
	r := start(t, cfg)

	status, body := post(t, r.proxyURL()+"/api/i/webhooks/create", oceantest.TokenAlice, map[string]any{
		"name": "pg", "url": receiver.URL + "/hook", "on": []string{"note"},
	})
	require.Equal(t, http.StatusOK, status, "%s", body)
	var hook struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &hook))
	status, body = post(t, r.proxyURL()+"/api/notes/create", oceantest.TokenAlice, map[string]any{"text": "hello postgres"})
	require.Equal(t, http.StatusOK, status, "%s", body)

	var env struct {
		HookID, Type string
		Body         struct{ Note struct{ Text string } }
	}
	select {
	case b := <-received:
		require.NoError(t, json.Unmarshal(b, &env))
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery arrived")
	}
	assert.Equal(t, hook.ID, env.HookID)
	assert.Equal(t, "note", env.Type)
	assert.Equal(t, "hello postgres", env.Body.Note.Text)

	require.Eventually(t, func() bool {
		status, body := r.adminGet(t, "/deliveries?webhookId="+hook.ID)
		return status == http.StatusOK && json.Valid([]byte(body)) && containsState(body, "delivered")
	}, 10*time.Second, 20*time.Millisecond)
	status, hooksBody := r.adminGet(t, "/hooks")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, hooksBody, hook.ID)

	_, err := os.Stat(cfg.AdminTokenPath())
	assert.NoError(t, err, "the admin token is in the data dir")
	_, err = os.Stat(filepath.Join(cfg.DataDir, "MANIFEST"))
	assert.True(t, errors.Is(err, os.ErrNotExist), "no Badger store in the data dir: %v", err)
	require.NoError(t, r.stop(t))
}

func containsState(deliveries, state string) bool {
	var ds []struct{ State string }
	if json.Unmarshal([]byte(deliveries), &ds) != nil {
		return false
	}
	for _, d := range ds {
		if d.State == state {
			return true
		}
	}
	return false
}

// TestSidecarsStartAtOnceOnPostgres: three servers started at the same time
// on one fresh schema, sharing a data dir, all start (one of them migrates
// the schema; the migration lock keeps the others waiting) with one admin
// token.
func TestSidecarsStartAtOnceOnPostgres(t *testing.T) {
	upstream := okUpstream(t)
	pgURL := pgtest.ServerURL(t)
	cfg := postgresConfig(t, upstream, pgURL, pgtest.NewSchema(t, pgURL))
	const n = 3
	servers := make([]*Server, n)
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i := range n {
		wg.Go(func() { servers[i], errs[i] = New(cfg, nil) })
	}
	wg.Wait()
	for i := range n {
		require.NoError(t, errs[i], "server %d", i)
		require.NoError(t, servers[i].Close())
	}
}

// TestReadinessReportsALostDatabase: /readyz answers 503 with the reason
// while the PostgreSQL server cannot be reached (every connection to it cut
// and new ones refused), and 200 again once it can.
func TestReadinessReportsALostDatabase(t *testing.T) {
	pgURL := pgtest.ServerURL(t)
	schema := pgtest.NewSchema(t, pgURL)
	u, err := url.Parse(pgURL)
	require.NoError(t, err)
	link := newRelay(t, u.Host)
	u.Host = link.addr()
	r := start(t, postgresConfig(t, okUpstream(t), u.String(), schema))

	readyz := func() (int, string) {
		status, body := get(t, r.adminURL()+"/readyz")
		var v struct{ Reason string }
		_ = json.Unmarshal([]byte(body), &v)
		return status, v.Reason
	}
	require.Eventually(t, func() bool { status, _ := readyz(); return status == http.StatusOK }, 30*time.Second, 20*time.Millisecond,
		"ready once the store listens")

	link.cut()
	var reason string
	require.Eventually(t, func() bool {
		var status int
		status, reason = readyz()
		return status == http.StatusServiceUnavailable
	}, 30*time.Second, 20*time.Millisecond)
	assert.Contains(t, reason, "store")
	status, _ := get(t, r.adminURL()+"/healthz")
	assert.Equal(t, http.StatusOK, status, "the process is still up")

	link.restore()
	require.Eventually(t, func() bool { status, _ := readyz(); return status == http.StatusOK }, 30*time.Second, 20*time.Millisecond,
		"ready again once the database answers")
	require.NoError(t, r.stop(t))
}

// TestUnsubscribedCallsNeedNoDatabase: the hot path's promise on
// PostgreSQL. With every connection to the database cut, tapped calls that
// concern no subscribed hook are served and store nothing (no enqueue was
// tried), while a call that does concern one tries to store its event and
// fails, counted: the hooks' index is in memory, and only events go to the
// database.
func TestUnsubscribedCallsNeedNoDatabase(t *testing.T) {
	oc := oceantest.New(t)
	pgURL := pgtest.ServerURL(t)
	schema := pgtest.NewSchema(t, pgURL)
	u, err := url.Parse(pgURL)
	require.NoError(t, err)
	link := newRelay(t, u.Host)
	u.Host = link.addr()
	cfg := postgresConfig(t, oc.URL, u.String(), schema)
	r := start(t, cfg)

	status, body := post(t, r.proxyURL()+"/api/i/webhooks/create", oceantest.TokenAlice, map[string]any{
		"name": "alice's notes", "url": "https://receiver.example/hook", "on": []string{"note"},
	})
	require.Equal(t, http.StatusOK, status, "%s", body)
	skipped := func() string {
		status, metrics := r.adminGet(t, "/metrics")
		require.Equal(t, http.StatusOK, status)
		for line := range strings.Lines(metrics) {
			if strings.HasPrefix(line, `oceanhooks_derive_skipped_total{endpoint="notes/create",reason="enqueue"}`) {
				return strings.TrimSpace(line[strings.LastIndexByte(line, ' '):])
			}
		}
		return "0"
	}

	link.cut()
	for i := range 20 {
		status, body := post(t, r.proxyURL()+"/api/notes/create", oceantest.TokenBob, map[string]any{"text": fmt.Sprintf("bob %d", i)})
		require.Equal(t, http.StatusOK, status, "%s", body)
	}
	assert.Equal(t, "0", skipped(), "no call of an unsubscribed user touched the database")

	status, body = post(t, r.proxyURL()+"/api/notes/create", oceantest.TokenAlice, map[string]any{"text": "alice"})
	require.Equal(t, http.StatusOK, status, "%s", body)
	assert.Equal(t, "1", skipped(), "the subscribed call tried to store its event and could not")
	link.restore()
	require.NoError(t, r.stop(t))
}

// relay forwards loopback TCP connections to a target until cut: then it
// closes every connection it carries and refuses new ones, until restored.
type relay struct {
	ln     net.Listener
	target string

	mu    sync.Mutex
	down  bool
	conns map[net.Conn]struct{}
}

func newRelay(t *testing.T, target string) *relay {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	r := &relay{ln: ln, target: target, conns: map[net.Conn]struct{}{}}
	t.Cleanup(func() {
		_ = ln.Close()
		r.cut()
	})
	go r.serve()
	return r
}

func (r *relay) addr() string { return r.ln.Addr().String() }

func (r *relay) serve() {
	for {
		c, err := r.ln.Accept()
		if err != nil {
			return
		}
		go r.pipe(c)
	}
}

func (r *relay) pipe(c net.Conn) {
	if !r.track(c) {
		_ = c.Close()
		return
	}
	defer r.untrack(c)
	up, err := net.Dial("tcp", r.target)
	if err != nil {
		return
	}
	if !r.track(up) {
		_ = up.Close()
		return
	}
	defer r.untrack(up)
	done := make(chan struct{}, 2)
	go func() { _, _ = io.Copy(up, c); done <- struct{}{} }()
	go func() { _, _ = io.Copy(c, up); done <- struct{}{} }()
	<-done
}

func (r *relay) track(c net.Conn) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.down {
		return false
	}
	r.conns[c] = struct{}{}
	return true
}

func (r *relay) untrack(c net.Conn) {
	r.mu.Lock()
	defer r.mu.Unlock()
	_ = c.Close()
	delete(r.conns, c)
}

func (r *relay) cut() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = true
	for c := range r.conns {
		_ = c.Close()
	}
}

func (r *relay) restore() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.down = false
}
