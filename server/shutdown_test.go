package server

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// TestShutdownWaitsForATappedCallToStoreItsEvents: a tapped call whose
// events are still being derived (a slow extra read of Ocean) when the grace
// period ends keeps the store open for up to proxy.observeTimeout: the wait
// before the store closes covers it, the events are stored, and a restart
// delivers them.
func TestShutdownWaitsForATappedCallToStoreItsEvents(t *testing.T) {
	oc := oceantest.New(t)
	ocURL, err := url.Parse(oc.URL)
	require.NoError(t, err)
	toOcean := httputil.NewSingleHostReverseProxy(ocURL)
	var hold atomic.Bool
	arrived, release := make(chan struct{}), make(chan struct{})
	var once sync.Once
	slowOcean := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if hold.Load() && r.URL.Path == "/api/users/relation" {
			once.Do(func() { close(arrived) })
			select {
			case <-release:
			case <-r.Context().Done():
				return
			}
		}
		toOcean.ServeHTTP(w, r)
	}))
	t.Cleanup(slowOcean.Close)
	received := make(chan []byte, 4)
	receiver := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		received <- b
	}))
	t.Cleanup(receiver.Close)

	cfg := testConfig(t, slowOcean.URL)
	cfg.ShutdownGrace = config.Duration(100 * time.Millisecond)
	cfg.Auth.Timeout = config.Duration(time.Minute)
	cfg.Events.ReadTimeout = config.Duration(time.Minute)
	cfg.Proxy.ObserveTimeout = config.Duration(2 * time.Minute)
	cfg.Delivery.AllowedPrivateNetworks = []string{"127.0.0.1"}
	waits := make(chan time.Duration, 1)
	r := startWith(t, cfg, func(s *Server) {
		s.after = func(d time.Duration) <-chan time.Time {
			waits <- d
			return time.After(d)
		}
	})

	status, body := post(t, r.proxyURL()+"/api/i/webhooks/create", oceantest.TokenBob, map[string]any{
		"name": "followers", "url": receiver.URL + "/bob", "on": []string{"followed"},
	})
	require.Equal(t, http.StatusOK, status, "%s", body)
	hold.Store(true)
	clientErr := make(chan error, 1)
	go func() {
		raw, _ := json.Marshal(map[string]any{"userId": oceantest.BobID})
		req, _ := http.NewRequest(http.MethodPost, r.proxyURL()+"/api/following/create", bytes.NewReader(raw))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("Authorization", "Bearer "+oceantest.TokenAlice)
		resp, err := http.DefaultClient.Do(req)
		if err == nil {
			_, err = io.ReadAll(resp.Body)
			resp.Body.Close()
		}
		clientErr <- err
	}()
	select {
	case <-arrived:
	case <-time.After(30 * time.Second):
		t.Fatal("the tap did not read the relation")
	}

	r.cancel()
	var wait time.Duration
	select {
	case wait = <-waits:
	case <-time.After(time.Minute):
		t.Fatal("the store did not wait for handlers")
	}
	assert.GreaterOrEqual(t, wait, cfg.Proxy.ObserveTimeout.D(), "the wait before the store closes covers proxy.observeTimeout")
	close(release)
	err, ok := r.wait()
	require.True(t, ok, "Run returned")
	require.NoError(t, err)
	assert.Error(t, <-clientErr, "the grace period cut the client off")
	assert.Contains(t, r.logs.String(), "waited for handlers before closing the store")
	assert.NotContains(t, r.logs.String(), "closing the store while handlers are still running")
	assert.NotContains(t, r.logs.String(), "level=ERROR")

	// The events were stored before the store closed: a restart delivers them.
	cfg.Upstream = oc.URL
	start(t, cfg)
	select {
	case b := <-received:
		var env struct{ Type, UserID string }
		require.NoError(t, json.Unmarshal(b, &env))
		assert.Equal(t, "followed", env.Type)
		assert.Equal(t, oceantest.BobID, env.UserID)
	case <-time.After(30 * time.Second):
		t.Fatal("the event stored during shutdown was not delivered after the restart")
	}
}
