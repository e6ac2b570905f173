package server

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/front"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// testConfig is a valid config on loopback ephemeral ports and a fresh data dir.
func testConfig(t *testing.T, upstream string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminListen = "127.0.0.1:0"
	cfg.DataDir = t.TempDir()
	cfg.Upstream = upstream
	cfg.ShutdownGrace = config.Duration(10 * time.Second)
	return cfg
}

type syncBuffer = testlog.Buffer

type running struct {
	*Server
	logs   *syncBuffer
	cancel context.CancelFunc
	done   chan error // Run's result, once

	waitOnce sync.Once
	err      error
	returned bool
}

// wait returns Run's result, waiting up to a minute for it.
func (r *running) wait() (error, bool) {
	r.waitOnce.Do(func() {
		select {
		case r.err = <-r.done:
			r.returned = true
		case <-time.After(time.Minute):
		}
	})
	return r.err, r.returned
}

func (r *running) proxyURL() string { return "http://" + r.Addr().String() }
func (r *running) adminURL() string { return "http://" + r.AdminAddr().String() }

// stop cancels Run and returns its result.
func (r *running) stop(t *testing.T) error {
	t.Helper()
	r.cancel()
	err, ok := r.wait()
	require.True(t, ok, "Run did not return after its context ended")
	return err
}

// start builds and runs a Server; it is stopped by t.Cleanup if the test did
// not stop it.
func start(t *testing.T, cfg config.Config) *running {
	t.Helper()
	return startWith(t, cfg, nil)
}

// startWith is start with a setup step between New and Run (nil: none).
func startWith(t *testing.T, cfg config.Config, setup func(*Server)) *running {
	t.Helper()
	logs := &syncBuffer{}
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := New(cfg, logger)
	require.NoError(t, err)
	if setup != nil {
		setup(s)
	}
	ctx, cancel := context.WithCancel(context.Background())
	r := &running{Server: s, logs: logs, cancel: cancel, done: make(chan error, 1)}
	go func() { r.done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if _, ok := r.wait(); !ok {
			t.Error("Run did not return")
		}
	})
	return r
}

// adminGet sends GET path to r's admin listener with its token.
func (r *running) adminGet(t *testing.T, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, r.adminURL()+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+r.adminToken(t))
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

// adminToken is the token r's admin listener requires.
func (r *running) adminToken(t *testing.T) string {
	t.Helper()
	token, err := ReadAdminToken(r.cfg.AdminTokenPath())
	require.NoError(t, err)
	return token
}

func get(t *testing.T, url string) (int, string) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, string(body)
}

func post(t *testing.T, url, token string, body any) (int, []byte) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

func TestAdminHealthAndReadiness(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	t.Cleanup(upstream.Close)
	r := start(t, testConfig(t, upstream.URL))

	status, body := get(t, r.adminURL()+"/healthz")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"status":"ok"}`, body)

	status, body = get(t, r.adminURL()+"/readyz")
	assert.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `{"status":"ready"}`, body)

	upstream.Close()
	status, body = get(t, r.adminURL()+"/readyz")
	assert.Equal(t, http.StatusServiceUnavailable, status)
	var reason struct{ Status, Reason string }
	require.NoError(t, json.Unmarshal([]byte(body), &reason))
	assert.Equal(t, "not ready", reason.Status)
	assert.Contains(t, reason.Reason, "upstream unreachable")

	status, _ = get(t, r.adminURL()+"/healthz")
	assert.Equal(t, http.StatusOK, status, "the process is still up")
	require.NoError(t, r.stop(t))
}

func TestReadinessProbesTheUpstreamWithoutAnHTTPRequest(t *testing.T) {
	hits := 0
	var mu sync.Mutex
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		hits++
		mu.Unlock()
	}))
	t.Cleanup(upstream.Close)
	r := start(t, testConfig(t, upstream.URL))
	for range 3 {
		status, _ := get(t, r.adminURL()+"/readyz")
		assert.Equal(t, http.StatusOK, status)
	}
	mu.Lock()
	defer mu.Unlock()
	assert.Zero(t, hits, "/readyz must not load Ocean with requests")
}

func TestMetricsHaveEveryPart(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{}`)
	}))
	t.Cleanup(upstream.Close)
	r := start(t, testConfig(t, upstream.URL))
	status, _ := post(t, r.proxyURL()+"/api/meta", "", map[string]any{})
	require.Equal(t, http.StatusOK, status)

	status, body := r.adminGet(t, "/metrics")
	require.Equal(t, http.StatusOK, status)
	for _, name := range []string{
		"oceanhooks_proxy_requests_total", // proxy
		"oceanhooks_queue_ready",          // queue
		"go_goroutines",                   // Go runtime
		"process_start_time_seconds",      // process
		"go_build_info",                   // build
	} {
		assert.Contains(t, body, "\n"+name, "metric %s", name)
	}
}

// proxyServers are the values of proxy.server: the listener's behaviour
// below holds on both.
var proxyServers = []string{"lean", "stdlib"}

// onServer runs test once per proxy.server value.
func onServer(t *testing.T, test func(t *testing.T, server string)) {
	for _, srv := range proxyServers {
		t.Run(srv, func(t *testing.T) { test(t, srv) })
	}
}

func TestProxyForwardsAndStopsCleanly(t *testing.T) { onServer(t, proxyForwardsAndStopsCleanly) }

func proxyForwardsAndStopsCleanly(t *testing.T, server string) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Upstream", "ocean")
		w.WriteHeader(http.StatusTeapot)
		_, _ = io.WriteString(w, "from ocean "+r.URL.Path)
	}))
	t.Cleanup(upstream.Close)
	cfg := testConfig(t, upstream.URL)
	cfg.Proxy.Server = server
	r := start(t, cfg)
	if server == "stdlib" {
		assert.IsType(t, &http.Server{}, r.main, "proxy.server: stdlib serves on net/http's server")
	} else {
		assert.IsType(t, &front.Server{}, r.main, "proxy.server: lean serves on front's")
	}

	resp, err := http.Get(r.proxyURL() + "/about")
	require.NoError(t, err)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	assert.Equal(t, http.StatusTeapot, resp.StatusCode)
	assert.Equal(t, "ocean", resp.Header.Get("X-Upstream"))
	assert.Equal(t, "from ocean /about", string(body))

	require.NoError(t, r.stop(t))
	assert.Contains(t, r.logs.String(), "proxy listening")
	assert.Contains(t, r.logs.String(), "admin listening")
	assert.Contains(t, r.logs.String(), "stopped")
	_, err = net.Dial("tcp", r.Addr().String())
	assert.Error(t, err, "the listener is closed after Run")
	assert.True(t, r.store.(*badgerStore).db.IsClosed(), "the store is closed after Run")
}

// TestShutdownLetsInFlightRequestsFinish: a request in flight when the
// context ends completes with the upstream's answer; meanwhile /readyz says
// the server is shutting down; then Run returns nil.
func TestShutdownLetsInFlightRequestsFinish(t *testing.T) {
	onServer(t, shutdownLetsInFlightRequestsFinish)
}

func shutdownLetsInFlightRequestsFinish(t *testing.T, server string) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		<-release
		_, _ = io.WriteString(w, "slow answer")
	}))
	t.Cleanup(upstream.Close)
	cfg := testConfig(t, upstream.URL)
	cfg.Proxy.Server = server
	r := start(t, cfg)

	type result struct {
		status int
		body   string
		err    error
	}
	got := make(chan result, 1)
	go func() {
		resp, err := http.Get(r.proxyURL() + "/slow")
		if err != nil {
			got <- result{err: err}
			return
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		got <- result{status: resp.StatusCode, body: string(b), err: err}
	}()
	<-arrived
	r.cancel()

	require.Eventually(t, func() bool {
		status, body := get(t, r.adminURL()+"/readyz")
		return status == http.StatusServiceUnavailable && strings.Contains(body, "shutting down")
	}, 10*time.Second, 10*time.Millisecond)
	// Draining is reported first; the listener closes right after.
	require.Eventually(t, func() bool {
		c, err := net.Dial("tcp", r.Addr().String())
		if err == nil {
			_ = c.Close()
		}
		return err != nil
	}, 10*time.Second, 10*time.Millisecond, "no new connections while draining")

	close(release)
	res := <-got
	require.NoError(t, res.err)
	assert.Equal(t, http.StatusOK, res.status)
	assert.Equal(t, "slow answer", res.body)
	err, ok := r.wait()
	require.True(t, ok, "Run returned")
	require.NoError(t, err)
}

// TestShutdownGraceEnds: a request that outlasts the grace period does not
// hold the process: its connection is closed and Run returns.
func TestShutdownGraceEnds(t *testing.T) { onServer(t, shutdownGraceEnds) }

func shutdownGraceEnds(t *testing.T, server string) {
	arrived := make(chan struct{})
	release := make(chan struct{})
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(arrived)
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release); upstream.Close() })
	cfg := testConfig(t, upstream.URL)
	cfg.ShutdownGrace = config.Duration(100 * time.Millisecond)
	cfg.Proxy.Server = server
	r := start(t, cfg)

	clientErr := make(chan error, 1)
	go func() {
		resp, err := http.Get(r.proxyURL() + "/hang")
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		clientErr <- err
	}()
	<-arrived
	require.NoError(t, r.stop(t))
	assert.Error(t, <-clientErr, "the hanging request was cut off")
	assert.Contains(t, r.logs.String(), "grace period over")
}

func TestNewReleasesEverythingOnFailure(t *testing.T) {
	busy, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	t.Cleanup(func() { busy.Close() })

	cfg := testConfig(t, "http://127.0.0.1:1")
	cfg.AdminListen = busy.Addr().String()
	_, err = New(cfg, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "admin listen")

	// The store of the failed attempt was closed: the data dir opens again.
	cfg.AdminListen = "127.0.0.1:0"
	s, err := New(cfg, nil)
	require.NoError(t, err)
	require.NoError(t, s.Close())
}

func TestDataDirIsExclusive(t *testing.T) {
	cfg := testConfig(t, "http://127.0.0.1:1")
	first, err := New(cfg, nil)
	require.NoError(t, err)
	t.Cleanup(func() { first.Close() })
	_, err = New(cfg, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "open store in "+cfg.DataDir)
}

func TestNewRejectsAnInvalidConfig(t *testing.T) {
	cfg := testConfig(t, "ftp://ocean")
	cfg.Delivery.Workers = 0
	_, err := New(cfg, nil)
	var ce *config.Error
	require.True(t, errors.As(err, &ce), "%v", err)
	assert.Len(t, ce.Problems, 2)
}

// TestEndToEnd drives every wired part through the proxy against the fake
// Ocean: a hook created with Ocean's API (answered locally), a note that
// fires an event (tap → matchers → queue), its delivery to a receiver, and
// the operator listings of hooks and deliveries on the admin listener.
func TestEndToEnd(t *testing.T) {
	oc := oceantest.New(t)
	type delivery struct {
		header http.Header
		body   []byte
	}
	received := make(chan delivery, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- delivery{r.Header.Clone(), b}
	}))
	t.Cleanup(receiver.Close)

	cfg := testConfig(t, oc.URL)
	cfg.PublicURL = "https://ocean.example"
	cfg.Delivery.AllowedPrivateNetworks = []string{"127.0.0.1"}
	r := start(t, cfg)

	status, body := post(t, r.proxyURL()+"/api/i/webhooks/create", oceantest.TokenAlice, map[string]any{
		"name": "e2e", "url": receiver.URL + "/hook", "secret": "s3cret", "on": []string{"note"},
	})
	require.Equal(t, http.StatusOK, status, "%s", body)
	var hook struct{ ID string }
	require.NoError(t, json.Unmarshal(body, &hook))
	require.NotEmpty(t, hook.ID)
	assert.Zero(t, oc.Calls("i/webhooks/create"), "hook management is answered locally")

	status, body = post(t, r.proxyURL()+"/api/notes/create", oceantest.TokenAlice, map[string]any{"text": "hello hooks"})
	require.Equal(t, http.StatusOK, status, "%s", body)

	var d delivery
	select {
	case d = <-received:
	case <-time.After(30 * time.Second):
		t.Fatal("no delivery arrived")
	}
	assert.Equal(t, hook.ID, d.header.Get("X-Ocean-Hook-Id"))
	assert.Equal(t, "s3cret", d.header.Get("X-Ocean-Hook-Secret"))
	assert.NotEmpty(t, d.header.Get("Webhook-Signature"))
	var env struct {
		Server, HookID, UserID, Type string
		Body                         struct {
			Note struct{ Text string }
		}
	}
	require.NoError(t, json.Unmarshal(d.body, &env))
	assert.Equal(t, "https://ocean.example", env.Server)
	assert.Equal(t, hook.ID, env.HookID)
	assert.Equal(t, oceantest.AliceID, env.UserID)
	assert.Equal(t, "note", env.Type)
	assert.Equal(t, "hello hooks", env.Body.Note.Text)

	status, hooksBody := r.adminGet(t, "/hooks")
	require.Equal(t, http.StatusOK, status)
	assert.Contains(t, hooksBody, hook.ID)
	assert.NotContains(t, hooksBody, "s3cret", "secrets are masked for operators")
	assert.NotContains(t, hooksBody, "/hook", "hook URLs are shown without their path")
	assert.Contains(t, hooksBody, receiver.URL+"/…")

	require.Eventually(t, func() bool {
		status, body := r.adminGet(t, "/deliveries?webhookId="+hook.ID)
		return status == http.StatusOK && strings.Contains(body, `"state":"delivered"`)
	}, 10*time.Second, 20*time.Millisecond)

	// The README names every metric of ours that this traffic produced.
	readme, err := os.ReadFile("../README.md")
	require.NoError(t, err)
	families, err := r.reg.Gather()
	require.NoError(t, err)
	ours := 0
	for _, f := range families {
		if strings.HasPrefix(f.GetName(), "oceanhooks_") {
			ours++
			assert.Contains(t, string(readme), "`"+f.GetName()+"`", "README lists metric %s", f.GetName())
		}
	}
	assert.Greater(t, ours, 5)

	require.NoError(t, r.stop(t))
}

// TestShutdownClosesWebSockets: a WebSocket on /streaming through the server
// keeps working until shutdown, and after the grace period the client is told
// the server is going away and Run returns.
func TestShutdownClosesWebSockets(t *testing.T) {
	upstream := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := websocket.Accept(w, r, nil)
		if err != nil {
			return
		}
		defer c.CloseNow()
		for {
			typ, msg, err := c.Read(r.Context())
			if err != nil {
				return
			}
			if err := c.Write(r.Context(), typ, msg); err != nil {
				return
			}
		}
	}))
	t.Cleanup(upstream.Close)
	cfg := testConfig(t, upstream.URL)
	cfg.ShutdownGrace = config.Duration(200 * time.Millisecond)
	r := start(t, cfg)

	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c, _, err := websocket.Dial(ctx, "ws://"+r.Addr().String()+"/streaming", nil)
	require.NoError(t, err)
	defer c.CloseNow()
	require.NoError(t, c.Write(ctx, websocket.MessageText, []byte("ping")))
	_, msg, err := c.Read(ctx)
	require.NoError(t, err)
	assert.Equal(t, "ping", string(msg))

	r.cancel()
	_, _, err = c.Read(ctx)
	require.Error(t, err)
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "%v", err)
	err, ok := r.wait()
	require.True(t, ok, "Run returned")
	assert.NoError(t, err)
}
