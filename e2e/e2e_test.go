// Package e2e runs the real sidecar (server.New) between a fake Ocean that
// answers from the recorded capture and a real HTTP receiver, and checks what
// arrives against what real Ocean sent.
package e2e

import (
	"bytes"
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/server"
)

// received is one delivery as the receiver saw it.
type received struct {
	Path   string
	Header http.Header
	Body   []byte
}

// receiver is a real HTTP webhook receiver on loopback that records every
// request and answers 200 like the capture's receiver (or what fail says).
type receiver struct {
	*httptest.Server
	mu   sync.Mutex
	got  []received
	fail func(r *http.Request) int // status to answer; 0 means record and answer 200
}

func newReceiver(t *testing.T) *receiver {
	t.Helper()
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		fail := rc.fail
		status := 0
		if fail != nil {
			status = fail(r)
		}
		if status == 0 {
			rc.got = append(rc.got, received{Path: r.URL.Path, Header: r.Header.Clone(), Body: body})
			status = http.StatusOK
		}
		rc.mu.Unlock()
		w.WriteHeader(status)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) deliveries() []received {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]received(nil), rc.got...)
}

func (rc *receiver) setFail(f func(r *http.Request) int) {
	rc.mu.Lock()
	rc.fail = f
	rc.mu.Unlock()
}

// sidecar is a running oceanhooks.
type sidecar struct {
	*server.Server
	cancel context.CancelFunc
	done   chan struct{} // closed when Run returned
	err    error         // Run's result, once done is closed
}

func (s *sidecar) url() string { return "http://" + s.Addr().String() }

// stop ends Run and waits for it.
func (s *sidecar) stop(t *testing.T) {
	t.Helper()
	s.cancel()
	select {
	case <-s.done:
		require.NoError(t, s.err)
	case <-time.After(time.Minute):
		t.Fatal("sidecar did not stop")
	}
}

// baseConfig is a config for a sidecar in front of upstream, with loopback
// receivers allowed (they are private addresses, refused by default).
func baseConfig(t *testing.T, upstream, dataDir string) config.Config {
	t.Helper()
	cfg := config.Default()
	cfg.Listen = "127.0.0.1:0"
	cfg.AdminListen = "127.0.0.1:0"
	cfg.DataDir = dataDir
	cfg.Upstream = upstream
	cfg.ShutdownGrace = config.Duration(10 * time.Second)
	cfg.Delivery.AllowedPrivateNetworks = []string{"127.0.0.0/8"}
	cfg.Log.Level = "warn"
	return cfg
}

func startSidecar(t *testing.T, cfg config.Config) *sidecar {
	t.Helper()
	return startSidecarWith(t, cfg, slog.New(slog.NewTextHandler(io.Discard, nil)))
}

// startSidecarWith runs the sidecar of cfg logging to logger until the test
// ends (then it must stop within a minute).
func startSidecarWith(t *testing.T, cfg config.Config, logger *slog.Logger) *sidecar {
	t.Helper()
	s, err := server.New(cfg, logger)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sc := &sidecar{Server: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		sc.err = s.Run(ctx)
		close(sc.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sc.done:
		case <-time.After(time.Minute):
			t.Error("sidecar did not stop")
		}
	})
	return sc
}

// call posts body to /api/<endpoint> through the sidecar; the token goes in
// the body as `i` (as the capture's client did) unless bearer is set.
func call(t *testing.T, base, endpoint, token string, body map[string]any, bearer bool) (int, []byte) {
	t.Helper()
	params := map[string]any{}
	for k, v := range body {
		params[k] = v
	}
	if token != "" && !bearer {
		params["i"] = token
	}
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, base+"/api/"+endpoint, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" && bearer {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out
}

// verifySignature checks the Standard Webhooks signature of a delivery with
// an implementation written from the scheme itself, independent of the queue.
func verifySignature(h http.Header, body []byte, secret string) bool {
	id, ts, sigs := h.Get("webhook-id"), h.Get("webhook-timestamp"), h.Get("webhook-signature")
	if id == "" || ts == "" || sigs == "" {
		return false
	}
	mac := hmac.New(sha256.New, []byte(secret))
	mac.Write([]byte(id + "." + ts + "."))
	mac.Write(body)
	want := base64.StdEncoding.EncodeToString(mac.Sum(nil))
	for _, s := range strings.Fields(sigs) {
		v, sig, ok := strings.Cut(s, ",")
		if ok && v == "v1" && hmac.Equal([]byte(sig), []byte(want)) {
			return true
		}
	}
	return false
}
