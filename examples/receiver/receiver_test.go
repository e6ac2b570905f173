package main

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"flag"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/server"
)

// deliveriesOut, when set, receives the real deliveries of
// TestRealDeliveries as JSON lines {secret, headers, body}, for checking them
// with the official Standard Webhooks libraries (examples/node-verify).
var deliveriesOut = flag.String("deliveries-out", "", "write the captured deliveries to this file")

// captured is one delivery as it reached the receiver.
type captured struct {
	Secret  string            `json:"secret"`
	Headers map[string]string `json:"headers"`
	Body    string            `json:"body"`
	header  http.Header
}

func (c captured) request(t *testing.T, url string) *http.Request {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(c.Body)))
	require.NoError(t, err)
	req.Header = c.header.Clone()
	return req
}

// TestRealDeliveries runs the real sidecar in front of the fake Ocean with two
// hooks of alice (a plain secret and a whsec_ one) delivering to the example
// receiver, and checks that it takes the real deliveries, and refuses a
// tampered body, a wrong secret, an old timestamp, and handles a replayed
// eventId only once.
func TestRealDeliveries(t *testing.T) {
	oc := oceantest.New(t)
	secrets := map[string]string{
		"plain": "s3cret-plain",
		"whsec": "whsec_" + base64.StdEncoding.EncodeToString([]byte("0123456789abcdef0123456789abcdef")),
	}
	var mu sync.Mutex
	var got []captured
	handled := map[string]int{}
	receivers := map[string]*Receiver{}
	mux := http.NewServeMux()
	for name, secret := range secrets {
		rc := &Receiver{Secret: secret, Handle: func(e Envelope) error {
			mu.Lock()
			handled[name+" "+e.EventID]++
			mu.Unlock()
			return nil
		}}
		receivers[name] = rc
		mux.HandleFunc("/"+name, func(w http.ResponseWriter, r *http.Request) {
			b, _ := io.ReadAll(r.Body)
			c := captured{Secret: secret, Headers: map[string]string{}, Body: string(b), header: r.Header.Clone()}
			for k := range r.Header {
				c.Headers[k] = r.Header.Get(k)
			}
			mu.Lock()
			got = append(got, c)
			mu.Unlock()
			r.Body = io.NopCloser(bytes.NewReader(b))
			rc.ServeHTTP(w, r)
		})
	}
	front := httptest.NewServer(mux)
	t.Cleanup(front.Close)

	cfg := config.Default()
	cfg.Listen, cfg.AdminListen, cfg.DataDir, cfg.Upstream = "127.0.0.1:0", "127.0.0.1:0", t.TempDir(), oc.URL
	cfg.Delivery.AllowedPrivateNetworks = []string{"127.0.0.0/8"}
	s, err := server.New(cfg, slog.New(slog.DiscardHandler))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + s.Addr().String()
	for name, secret := range secrets {
		status, body := post(t, base+"/api/i/webhooks/create", map[string]any{
			"name": name, "url": front.URL + "/" + name, "on": []string{"note"}, "secret": secret})
		require.Equal(t, http.StatusOK, status, body)
	}
	status, body := post(t, base+"/api/notes/create", map[string]any{"text": "hello receivers"})
	require.Equal(t, http.StatusOK, status, body)
	require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return len(handled) == 2 }, 10*time.Second, 10*time.Millisecond)

	mu.Lock()
	deliveries := append([]captured(nil), got...)
	mu.Unlock()
	require.Len(t, deliveries, 2)
	for _, d := range deliveries {
		name := "plain"
		if d.Secret == secrets["whsec"] {
			name = "whsec"
		}
		rc := receivers[name]
		t.Run(name, func(t *testing.T) {
			res := httptest.NewRecorder()
			rc.ServeHTTP(res, d.request(t, "/"))
			assert.Equal(t, http.StatusOK, res.Code, "a replayed eventId is acknowledged")
			assert.Contains(t, res.Body.String(), "duplicate")

			tampered := d
			tampered.Body = string(bytes.Replace([]byte(d.Body), []byte("hello receivers"), []byte("hello attackers"), 1))
			res = httptest.NewRecorder()
			(&Receiver{Secret: d.Secret}).ServeHTTP(res, tampered.request(t, "/"))
			assert.Equal(t, http.StatusUnauthorized, res.Code)
			assert.Contains(t, res.Body.String(), ErrSignature.Error())

			res = httptest.NewRecorder()
			(&Receiver{Secret: d.Secret + "x"}).ServeHTTP(res, d.request(t, "/"))
			assert.Equal(t, http.StatusUnauthorized, res.Code)
			assert.Contains(t, res.Body.String(), ErrSecret.Error())

			late := &Receiver{Secret: d.Secret, Now: func() time.Time { return time.Now().Add(Tolerance + time.Minute) }}
			res = httptest.NewRecorder()
			late.ServeHTTP(res, d.request(t, "/"))
			assert.Equal(t, http.StatusUnauthorized, res.Code, "a replay of an old delivery is refused")
			assert.Contains(t, res.Body.String(), ErrStale.Error())
		})
	}
	mu.Lock()
	for k, n := range handled {
		assert.Equal(t, 1, n, "%s handled once", k)
	}
	mu.Unlock()

	if *deliveriesOut != "" {
		var b bytes.Buffer
		for _, d := range deliveries {
			line, err := json.Marshal(d)
			require.NoError(t, err)
			b.Write(append(line, '\n'))
		}
		require.NoError(t, os.WriteFile(*deliveriesOut, b.Bytes(), 0o600))
	}
}

func post(t *testing.T, url string, params map[string]any) (int, string) {
	t.Helper()
	raw, err := json.Marshal(params)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+oceantest.TokenAlice)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, _ := io.ReadAll(res.Body)
	return res.StatusCode, string(b)
}

// TestVerifyUnsigned: a delivery without the signature headers (a hook with
// no secret is never signed) is refused by a receiver that expects one.
func TestVerifyUnsigned(t *testing.T) {
	h := http.Header{"X-Ocean-Hook-Secret": {"s"}}
	assert.ErrorIs(t, Verify("s", "Ocean", h, []byte(`{}`), time.Now()), ErrUnsigned)
}
