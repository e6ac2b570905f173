package ocean

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"testing/synctest"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

const testToken = "tok-SECRET-0001x" // 16 characters, like a native token

// clock is a settable time source.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

func newClock() *clock { return &clock{t: time.Date(2026, 11, 26, 20, 49, 0, 0, time.UTC)} }

func (c *clock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// fakeOcean is a tiny Ocean for the client's tests: handler answers every
// request; calls counts them by path.
type fakeOcean struct {
	srv   *httptest.Server
	mu    sync.Mutex
	calls map[string]int
	auth  []string
}

func newFakeOcean(t *testing.T, handler http.HandlerFunc) *fakeOcean {
	t.Helper()
	f := &fakeOcean{calls: map[string]int{}}
	f.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		f.mu.Lock()
		f.calls[r.URL.Path]++
		f.auth = append(f.auth, r.Header.Get("Authorization"))
		f.mu.Unlock()
		handler(w, r)
	}))
	t.Cleanup(f.srv.Close)
	return f
}

func (f *fakeOcean) Calls(path string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[path]
}

func (f *fakeOcean) URL(t *testing.T) *url.URL {
	u, err := url.Parse(f.srv.URL)
	require.NoError(t, err)
	return u
}

const meAlice = `{"id":"au1lb55h9jzs0004","username":"alice","isAdmin":false,"isModerator":false,
	"policies":{"gtlAvailable":true,"webhookLimit":5,"clipLimit":10},"email":"alice@example.com"}`

const authFailed = `{"error":{"message":"Authentication failed. Please ensure your token is correct.",` +
	`"code":"AUTHENTICATION_FAILED","id":"b0a7f5f8-dc2f-4171-b91f-de88ad238e14","kind":"client"}}`

func answer(status int, body string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		if status == http.StatusUnauthorized {
			w.Header().Set("WWW-Authenticate", `Bearer realm="Misskey", error="invalid_token"`)
		}
		w.WriteHeader(status)
		_, _ = io.WriteString(w, body)
	}
}

func newTestClient(t *testing.T, base *url.URL, clk *clock, opts ClientOptions) *Client {
	t.Helper()
	if clk != nil {
		opts.Now = clk.Now
	}
	return NewClient(base, opts)
}

func TestMeParsesOnlyWhatIsKept(t *testing.T) {
	tests := []struct {
		name string
		body string
		want Me
	}{
		{"user with a policy limit", meAlice, Me{ID: "au1lb55h9jzs0004", WebhookLimit: 5}},
		{"admin", `{"id":"au1lb50u9jzs0003","isAdmin":true,"policies":{"webhookLimit":3}}`,
			Me{ID: "au1lb50u9jzs0003", IsAdmin: true, WebhookLimit: 3}},
		{"no policies: Ocean's default limit", `{"id":"x1","isAdmin":false}`, Me{ID: "x1", WebhookLimit: DefaultWebhookLimit}},
		{"limit zero is kept", `{"id":"x2","policies":{"webhookLimit":0}}`, Me{ID: "x2", WebhookLimit: 0}},
		{"limit of the wrong type: default", `{"id":"x3","policies":{"webhookLimit":"many"}}`, Me{ID: "x3", WebhookLimit: 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotMethod, gotAuth, gotCT, gotBody string
			f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotMethod, gotAuth, gotCT, gotBody = r.Method, r.Header.Get("Authorization"), r.Header.Get("Content-Type"), string(b)
				answer(http.StatusOK, tt.body)(w, r)
			})
			c := newTestClient(t, f.URL(t), nil, ClientOptions{})
			me, err := c.Me(context.Background(), testToken)
			require.NoError(t, err)
			assert.Equal(t, tt.want, me)
			assert.Equal(t, 1, f.Calls("/api/i"))
			assert.Equal(t, http.MethodPost, gotMethod)
			assert.Equal(t, "Bearer "+testToken, gotAuth)
			assert.Equal(t, "application/json", gotCT)
			assert.JSONEq(t, `{}`, gotBody, "the token travels only in the header")
		})
	}
}

func TestMeCachesPerTTL(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusOK, meAlice))
	clk := newClock()
	c := newTestClient(t, f.URL(t), clk, ClientOptions{TTL: 30 * time.Second})
	ctx := context.Background()

	for range 5 {
		me, err := c.Me(ctx, testToken)
		require.NoError(t, err)
		assert.Equal(t, "au1lb55h9jzs0004", me.ID)
	}
	assert.Equal(t, 1, f.Calls("/api/i"), "one request per TTL, not per lookup")

	clk.Advance(29 * time.Second)
	_, err := c.Me(ctx, testToken)
	require.NoError(t, err)
	assert.Equal(t, 1, f.Calls("/api/i"))

	clk.Advance(time.Second)
	_, err = c.Me(ctx, testToken)
	require.NoError(t, err)
	assert.Equal(t, 2, f.Calls("/api/i"), "asked again once the TTL is over")

	_, err = c.Me(ctx, "another-token-16")
	require.NoError(t, err)
	assert.Equal(t, 3, f.Calls("/api/i"), "each token has its own entry")
}

func TestMeKeysTheCacheByTheTokensHash(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusOK, meAlice))
	c := newTestClient(t, f.URL(t), nil, ClientOptions{})
	_, err := c.Me(context.Background(), testToken)
	require.NoError(t, err)
	sum := sha256.Sum256([]byte(testToken))
	c.mu.Lock()
	defer c.mu.Unlock()
	require.Len(t, c.cache, 1)
	for k := range c.cache {
		assert.Equal(t, hex.EncodeToString(sum[:]), k)
		assert.NotContains(t, k, testToken)
	}
}

func TestMeAuthFailureIsOceansAndCachedBriefly(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusUnauthorized, authFailed))
	clk := newClock()
	c := newTestClient(t, f.URL(t), clk, ClientOptions{TTL: time.Minute, FailureTTL: 5 * time.Second})
	ctx := context.Background()

	_, err := c.Me(ctx, testToken)
	var oe *Error
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, http.StatusUnauthorized, oe.HTTPStatus())
	assert.Equal(t, "AUTHENTICATION_FAILED", oe.Code)
	assert.Equal(t, ErrAuthenticationFailed.ID, oe.ID)
	assert.Equal(t, ErrAuthenticationFailed.Message, oe.Message)
	assert.Equal(t, "client", oe.Kind)
	assert.Equal(t, `Bearer realm="Misskey", error="invalid_token"`, oe.Header.Get("Www-Authenticate"),
		"Ocean's challenge is passed on")

	rec := httptest.NewRecorder()
	Write(rec, oe)
	assert.Equal(t, http.StatusUnauthorized, rec.Code)
	assert.JSONEq(t, authFailed, rec.Body.String(), "written back exactly as Ocean gave it")

	_, err = c.Me(ctx, testToken)
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, 1, f.Calls("/api/i"), "a refusal is remembered")

	clk.Advance(5 * time.Second)
	_, err = c.Me(ctx, testToken)
	require.Error(t, err)
	assert.Equal(t, 2, f.Calls("/api/i"), "only for FailureTTL")
}

func TestMeDoesNotCacheOtherFailures(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			answer(http.StatusInternalServerError, `{"error":{"message":"Internal error occurred. Please contact us if the error persists.","code":"INTERNAL_ERROR","id":"5d37dbcb-891e-41ca-a3d6-e690c97775ac","kind":"server"}}`)(w, r)
			return
		}
		answer(http.StatusOK, meAlice)(w, r)
	})
	c := newTestClient(t, f.URL(t), newClock(), ClientOptions{})
	_, err := c.Me(context.Background(), testToken)
	var oe *Error
	require.ErrorAs(t, err, &oe)
	assert.Equal(t, http.StatusInternalServerError, oe.HTTPStatus())
	assert.Equal(t, "INTERNAL_ERROR", oe.Code)

	fail.Store(false)
	me, err := c.Me(context.Background(), testToken)
	require.NoError(t, err)
	assert.Equal(t, "au1lb55h9jzs0004", me.ID)
	assert.Equal(t, 2, f.Calls("/api/i"))
}

func TestMeUnusableAnswers(t *testing.T) {
	tests := []struct {
		name string
		body string
	}{
		{"not JSON", `<html>maintenance</html>`},
		{"no id", `{"username":"alice"}`},
		{"id of the wrong type", `{"id":42}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOcean(t, answer(http.StatusOK, tt.body))
			c := newTestClient(t, f.URL(t), nil, ClientOptions{})
			_, err := c.Me(context.Background(), testToken)
			assert.ErrorIs(t, err, ErrUpstreamUnavailable)
		})
	}
}

func TestMeWithoutToken(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusOK, meAlice))
	c := newTestClient(t, f.URL(t), nil, ClientOptions{})
	_, err := c.Me(context.Background(), "")
	assert.ErrorIs(t, err, ErrCredentialRequired)
	assert.Zero(t, f.Calls("/api/i"))
}

func TestMeUnreachableOcean(t *testing.T) {
	// A listener that accepts and hangs up at once, then a working Ocean on
	// the same address would need a port dance; instead the handler
	// hijacks and closes the connection while fail is set.
	var fail atomic.Bool
	fail.Store(true)
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		if fail.Load() {
			conn, _, err := http.NewResponseController(w).Hijack()
			if err == nil {
				_ = conn.Close()
			}
			return
		}
		answer(http.StatusOK, meAlice)(w, r)
	})
	c := newTestClient(t, f.URL(t), newClock(), ClientOptions{})
	_, err := c.Me(context.Background(), testToken)
	assert.ErrorIs(t, err, ErrUpstreamUnavailable)
	assert.Equal(t, http.StatusBadGateway, ErrUpstreamUnavailable.HTTPStatus())

	fail.Store(false)
	me, err := c.Me(context.Background(), testToken)
	require.NoError(t, err, "a transport failure is not cached")
	assert.Equal(t, "au1lb55h9jzs0004", me.ID)
}

func TestMeClosedPort(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	addr := ln.Addr().String()
	require.NoError(t, ln.Close())
	c := newTestClient(t, &url.URL{Scheme: "http", Host: addr}, nil, ClientOptions{})
	_, err = c.Me(context.Background(), testToken)
	assert.ErrorIs(t, err, ErrUpstreamUnavailable)
}

func TestMeTimeout(t *testing.T) {
	release := make(chan struct{})
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	c := newTestClient(t, f.URL(t), nil, ClientOptions{Timeout: 20 * time.Millisecond})
	_, err := c.Me(context.Background(), testToken)
	assert.ErrorIs(t, err, ErrUpstreamTimeout)
}

// roundTripFunc is an in-memory transport, so that synctest can see when
// every goroutine is blocked.
type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func jsonResponse(status int, body string) *http.Response {
	return &http.Response{StatusCode: status, Header: http.Header{"Content-Type": {"application/json"}},
		Body: io.NopCloser(strings.NewReader(body))}
}

func TestMeConcurrentLookupsShareOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var requests atomic.Int32
		release := make(chan struct{})
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			<-release
			return jsonResponse(http.StatusOK, meAlice), nil
		})}
		c := NewClient(&url.URL{Scheme: "http", Host: "ocean.test"}, ClientOptions{HTTPClient: hc})

		const n = 20
		var wg sync.WaitGroup
		results := make([]Me, n)
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { results[i], errs[i] = c.Me(context.Background(), testToken) })
		}
		synctest.Wait() // every lookup is now waiting on the one request
		assert.Equal(t, int32(1), requests.Load())
		close(release)
		wg.Wait()
		for i := range n {
			require.NoError(t, errs[i])
			assert.Equal(t, "au1lb55h9jzs0004", results[i].ID)
		}
		assert.Equal(t, int32(1), requests.Load())
	})
}

func TestMeWaiterThatGivesUpDoesNotFailOthers(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		release := make(chan struct{})
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			<-release
			return jsonResponse(http.StatusOK, meAlice), nil
		})}
		c := NewClient(&url.URL{Scheme: "http", Host: "ocean.test"}, ClientOptions{HTTPClient: hc})

		ctx, cancel := context.WithCancel(context.Background())
		var first, second error
		var me Me
		var wg sync.WaitGroup
		wg.Go(func() { _, first = c.Me(ctx, testToken) })
		wg.Go(func() { me, second = c.Me(context.Background(), testToken) })
		synctest.Wait()
		cancel()
		synctest.Wait()
		close(release)
		wg.Wait()
		assert.ErrorIs(t, first, context.Canceled)
		require.NoError(t, second)
		assert.Equal(t, "au1lb55h9jzs0004", me.ID)
	})
}

func TestCacheIsBounded(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusOK, meAlice))
	clk := newClock()
	c := newTestClient(t, f.URL(t), clk, ClientOptions{TTL: time.Minute})
	c.maxEntries = 10
	ctx := context.Background()
	token := func(i int) string { return "token-" + strings.Repeat("x", i) }

	for i := range 25 {
		_, err := c.Me(ctx, token(i))
		require.NoError(t, err)
		c.mu.Lock()
		assert.LessOrEqual(t, len(c.cache), 10)
		c.mu.Unlock()
	}

	// Once every entry has expired, the next insertion sweeps them all.
	clk.Advance(time.Minute)
	for i := range 10 {
		c.remember(tokenKey(token(100+i)), Me{ID: "x"}, nil)
	}
	clk.Advance(time.Minute)
	c.remember(tokenKey("fresh"), Me{ID: "y"}, nil)
	c.mu.Lock()
	assert.Len(t, c.cache, 1)
	c.mu.Unlock()
}

func TestTokenNeverLogged(t *testing.T) {
	var buf bytes.Buffer
	var bufMu sync.Mutex
	logger := slog.New(slog.NewTextHandler(&lockedWriter{w: &buf, mu: &bufMu}, &slog.HandlerOptions{Level: slog.LevelDebug}))

	scenarios := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"success", answer(http.StatusOK, meAlice)},
		{"refused", answer(http.StatusUnauthorized, authFailed)},
		{"permission denied", answer(http.StatusForbidden, permissionDenied)},
		{"server error", answer(http.StatusInternalServerError, internalError)},
		{"not JSON", answer(http.StatusOK, "nope")},
		{"hang up", func(w http.ResponseWriter, r *http.Request) {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
		}},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte("a"), MaxResponseBytes+1))
		}},
	}
	for _, sc := range scenarios {
		t.Run(sc.name, func(t *testing.T) {
			f := newFakeOcean(t, sc.handler)
			c := newTestClient(t, f.URL(t), nil, ClientOptions{Logger: logger})
			_, _ = c.Me(context.Background(), testToken)
			_ = c.CheckWriteAccount(context.Background(), testToken)
			_, _ = c.Call(context.Background(), "users/show", testToken, map[string]string{"userId": "x"})
		})
	}
	bufMu.Lock()
	out := buf.String()
	bufMu.Unlock()
	require.NotEmpty(t, out, "the scenarios do log")
	assert.NotContains(t, out, testToken)
	assert.NotContains(t, out, "SECRET")
}

type lockedWriter struct {
	w  io.Writer
	mu *sync.Mutex
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}

func TestCall(t *testing.T) {
	tests := []struct {
		name       string
		endpoint   string
		params     any
		status     int
		body       string
		wantBody   string
		wantParams string
		wantErr    *Error
	}{
		{name: "struct params", endpoint: "users/show", params: map[string]any{"userId": "au1lb5al9jzs0005"},
			status: 200, body: `{"id":"au1lb5al9jzs0005"}`, wantBody: `{"id":"au1lb5al9jzs0005"}`,
			wantParams: `{"userId":"au1lb5al9jzs0005"}`},
		{name: "raw params sent as they are", endpoint: "users/relation", params: []byte(`{"userId":"a"}`),
			status: 200, body: `[]`, wantBody: `[]`, wantParams: `{"userId":"a"}`},
		{name: "nil params", endpoint: "i", status: 200, body: `{"id":"x"}`, wantBody: `{"id":"x"}`, wantParams: `{}`},
		{name: "204", endpoint: "notes/reactions/create", params: map[string]string{"noteId": "n"},
			status: 204, wantParams: `{"noteId":"n"}`},
		{name: "Ocean error", endpoint: "notes/show", params: map[string]string{"noteId": "zz"}, status: 400,
			body:       `{"error":{"message":"No such note.","code":"NO_SUCH_NOTE","id":"24fcbfc6-2e37-42b6-8388-c29b3861a08d","kind":"client"}}`,
			wantParams: `{"noteId":"zz"}`,
			wantErr: &Error{Message: "No such note.", Code: "NO_SUCH_NOTE", ID: "24fcbfc6-2e37-42b6-8388-c29b3861a08d",
				Kind: "client", Status: 400}},
		{name: "not Ocean's error shape", endpoint: "notes/show", params: nil, status: 413,
			body:       `{"statusCode":413,"code":"FST_ERR_CTP_BODY_TOO_LARGE","error":"Payload Too Large","message":"Request body is too large"}`,
			wantParams: `{}`,
			wantErr:    &Error{Message: "Ocean answered 413 Request Entity Too Large.", Code: "UPSTREAM_ERROR", Kind: "client", Status: 413}},
		{name: "bare 502", endpoint: "notes/show", status: 502, wantParams: `{}`,
			wantErr: &Error{Message: "Ocean answered 502 Bad Gateway.", Code: "UPSTREAM_ERROR", Kind: "server", Status: 502}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotPath, gotAuth, gotParams string
			f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotPath, gotAuth, gotParams = r.URL.Path, r.Header.Get("Authorization"), string(b)
				if tt.status == 204 {
					w.WriteHeader(204)
					return
				}
				answer(tt.status, tt.body)(w, r)
			})
			c := newTestClient(t, f.URL(t), nil, ClientOptions{})
			got, err := c.Call(context.Background(), tt.endpoint, testToken, tt.params)
			assert.Equal(t, "/api/"+tt.endpoint, gotPath)
			assert.Equal(t, "Bearer "+testToken, gotAuth)
			assert.JSONEq(t, tt.wantParams, gotParams)
			if tt.wantErr != nil {
				var oe *Error
				require.ErrorAs(t, err, &oe)
				assert.Equal(t, tt.wantErr, oe)
				return
			}
			require.NoError(t, err)
			if tt.wantBody == "" {
				assert.Nil(t, got)
			} else {
				assert.JSONEq(t, tt.wantBody, string(got))
			}
		})
	}
}

func TestCallWithoutToken(t *testing.T) {
	var auth []string
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		auth = r.Header.Values("Authorization")
		answer(200, `{}`)(w, r)
	})
	c := newTestClient(t, f.URL(t), nil, ClientOptions{})
	_, err := c.Call(context.Background(), "meta", "", nil)
	require.NoError(t, err)
	assert.Empty(t, auth)
}

func TestCallCapsTheBody(t *testing.T) {
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte(" "), MaxResponseBytes+1))
	})
	c := newTestClient(t, f.URL(t), nil, ClientOptions{})
	_, err := c.Call(context.Background(), "notes/show", testToken, nil)
	require.Error(t, err)
	assert.Contains(t, err.Error(), "larger than")

	f2 := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = w.Write(bytes.Repeat([]byte(" "), MaxResponseBytes))
	})
	c2 := newTestClient(t, f2.URL(t), nil, ClientOptions{})
	got, err := c2.Call(context.Background(), "notes/show", testToken, nil)
	require.NoError(t, err, "exactly the cap is fine")
	assert.Len(t, got, MaxResponseBytes)
}

func TestCallTimeoutAndCancel(t *testing.T) {
	release := make(chan struct{})
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	c := newTestClient(t, f.URL(t), nil, ClientOptions{Timeout: 20 * time.Millisecond})
	_, err := c.Call(context.Background(), "notes/show", testToken, nil)
	assert.ErrorIs(t, err, ErrUpstreamTimeout)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = c.Call(ctx, "notes/show", testToken, nil)
	assert.ErrorIs(t, err, context.Canceled)
	assert.False(t, errors.Is(err, ErrUpstreamUnavailable))
}

func TestBaseURLWithPathPrefix(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusOK, meAlice))
	base := f.URL(t).JoinPath("ocean")
	c := newTestClient(t, base, nil, ClientOptions{})
	_, _ = c.Me(context.Background(), testToken)
	assert.Equal(t, 1, f.Calls("/ocean/api/i"))
}

const (
	noSuchWebhookUpdate = `{"error":{"message":"No such webhook.","code":"NO_SUCH_WEBHOOK",` +
		`"id":"fb0fea69-da18-45b1-828d-bd4fd1612518","kind":"client"}}`
	permissionDenied = `{"error":{"message":"Your app does not have the necessary permissions to use this endpoint.",` +
		`"code":"PERMISSION_DENIED","id":"1370e5b7-d4eb-4566-bb1d-7748ee6a1838","kind":"permission"}}`
	internalError = `{"error":{"message":"Internal error occurred. Please contact us if the error persists.",` +
		`"code":"INTERNAL_ERROR","id":"5d37dbcb-891e-41ca-a3d6-e690c97775ac","kind":"server"}}`
)

const probePath = "/api/i/webhooks/update"

func TestCheckWriteAccountVerdicts(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr *Error // nil: allowed
		oceans  bool   // wantErr is Ocean's own answer, written back as it is
	}{
		{name: "write:account: the update finds no webhook", status: 400, body: noSuchWebhookUpdate},
		{name: "a success is past the permission check too", status: 204},
		{name: "write:account, but more hooks in Ocean than the limit: the handler refused the update", status: 400,
			body: `{"error":{"message":"You cannot update the webhook because you have exceeded the limit of webhooks.","code":"WEBHOOK_LIMIT_EXCEEDED","id":"a261cb2d-867d-47a8-a743-8bbd2c1438b1","kind":"client"}}`},
		{name: "no write:account", status: 403, body: permissionDenied, oceans: true,
			wantErr: &Error{Message: ErrPermissionDenied.Message, Code: "PERMISSION_DENIED", ID: ErrPermissionDenied.ID,
				Kind: "permission", Status: 403}},
		{name: "no write:account, older Ocean (kind client, 400)", status: 400, oceans: true,
			body: `{"error":{"message":"Your app does not have the necessary permissions to use this endpoint.","code":"PERMISSION_DENIED","id":"1370e5b7-d4eb-4566-bb1d-7748ee6a1838","kind":"client"}}`,
			wantErr: &Error{Message: ErrPermissionDenied.Message, Code: "PERMISSION_DENIED", ID: ErrPermissionDenied.ID,
				Kind: "client", Status: 400}},
		{name: "unknown token", status: 401, body: authFailed, oceans: true,
			wantErr: &Error{Message: ErrAuthenticationFailed.Message, Code: "AUTHENTICATION_FAILED", ID: ErrAuthenticationFailed.ID,
				Kind: "client", Status: 401, Header: http.Header{"Www-Authenticate": {`Bearer realm="Misskey", error="invalid_token"`}}}},
		{name: "Ocean failed", status: 500, body: internalError, wantErr: ErrUpstreamUnavailable},
		{name: "bare 502 of a proxy before Ocean", status: 502, wantErr: ErrUpstreamUnavailable},
		{name: "200 with a body is not what the update answers", status: 200, body: `{}`, wantErr: ErrUpstreamUnavailable},
		{name: "neither verdict", status: 400, wantErr: ErrUpstreamUnavailable,
			body: `{"error":{"message":"Invalid param.","code":"INVALID_PARAM","id":"3d81ceae-475f-4600-b2a8-2bc116157532","kind":"client"}}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var gotMethod, gotAuth, gotBody string
			f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
				b, _ := io.ReadAll(r.Body)
				gotMethod, gotAuth, gotBody = r.Method, r.Header.Get("Authorization"), string(b)
				if tt.status == http.StatusNoContent {
					w.WriteHeader(tt.status)
					return
				}
				answer(tt.status, tt.body)(w, r)
			})
			c := newTestClient(t, f.URL(t), nil, ClientOptions{})
			err := c.CheckWriteAccount(context.Background(), testToken)
			assert.Equal(t, 1, f.Calls(probePath), "one request, to Ocean's own update endpoint")
			assert.Equal(t, http.MethodPost, gotMethod)
			assert.Equal(t, "Bearer "+testToken, gotAuth)
			assert.JSONEq(t, `{"webhookId":"0"}`, gotBody, "a webhook no user has; the token only in the header")
			if tt.wantErr == nil {
				assert.NoError(t, err)
				return
			}
			var oe *Error
			require.ErrorAs(t, err, &oe)
			assert.Equal(t, tt.wantErr, oe)
			if tt.oceans {
				rec := httptest.NewRecorder()
				Write(rec, oe)
				assert.Equal(t, tt.status, rec.Code)
				assert.JSONEq(t, tt.body, rec.Body.String(), "written back exactly as Ocean gave it")
			}
		})
	}
}

func TestCheckWriteAccountCachesTheVerdict(t *testing.T) {
	tests := []struct {
		name    string
		status  int
		body    string
		ttl     time.Duration
		allowed bool
	}{
		{"allowed: for TTL", 400, noSuchWebhookUpdate, 30 * time.Second, true},
		{"denied: for FailureTTL", 403, permissionDenied, 5 * time.Second, false},
		{"unknown token: for FailureTTL", 401, authFailed, 5 * time.Second, false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			f := newFakeOcean(t, answer(tt.status, tt.body))
			clk := newClock()
			c := newTestClient(t, f.URL(t), clk, ClientOptions{TTL: 30 * time.Second, FailureTTL: 5 * time.Second})
			check := func(token string) {
				t.Helper()
				err := c.CheckWriteAccount(context.Background(), token)
				if tt.allowed {
					require.NoError(t, err)
				} else {
					var oe *Error
					require.ErrorAs(t, err, &oe)
					assert.Equal(t, tt.status, oe.HTTPStatus())
				}
			}
			for range 5 {
				check(testToken)
			}
			assert.Equal(t, 1, f.Calls(probePath), "one request per TTL, not per check")

			clk.Advance(tt.ttl - time.Second)
			check(testToken)
			assert.Equal(t, 1, f.Calls(probePath))

			clk.Advance(time.Second)
			check(testToken)
			assert.Equal(t, 2, f.Calls(probePath), "asked again once the TTL is over")

			check("another-token-16")
			assert.Equal(t, 3, f.Calls(probePath), "each token has its own verdict")
		})
	}
}

func TestCheckWriteAccountDoesNotCacheFailures(t *testing.T) {
	tests := []struct {
		name string
		fail http.HandlerFunc
		want error
	}{
		{"5xx", answer(http.StatusInternalServerError, internalError), ErrUpstreamUnavailable},
		{"hang up", func(w http.ResponseWriter, r *http.Request) {
			if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
				_ = conn.Close()
			}
		}, ErrUpstreamUnavailable},
		{"too large", func(w http.ResponseWriter, r *http.Request) {
			_, _ = w.Write(bytes.Repeat([]byte(" "), MaxResponseBytes+1))
		}, ErrUpstreamUnavailable},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var fail atomic.Bool
			fail.Store(true)
			f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
				if fail.Load() {
					tt.fail(w, r)
					return
				}
				answer(http.StatusBadRequest, noSuchWebhookUpdate)(w, r)
			})
			c := newTestClient(t, f.URL(t), newClock(), ClientOptions{})
			assert.ErrorIs(t, c.CheckWriteAccount(context.Background(), testToken), tt.want)
			assert.ErrorIs(t, c.CheckWriteAccount(context.Background(), testToken), tt.want)
			assert.Equal(t, 2, f.Calls(probePath), "a failure is asked again at once")

			fail.Store(false)
			assert.NoError(t, c.CheckWriteAccount(context.Background(), testToken))
			assert.Equal(t, 3, f.Calls(probePath))
		})
	}
}

func TestCheckWriteAccountTimeout(t *testing.T) {
	release := make(chan struct{})
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-r.Context().Done():
		case <-release:
		}
	})
	t.Cleanup(func() { close(release) })
	c := newTestClient(t, f.URL(t), nil, ClientOptions{Timeout: 20 * time.Millisecond})
	assert.ErrorIs(t, c.CheckWriteAccount(context.Background(), testToken), ErrUpstreamTimeout)
}

func TestCheckWriteAccountWithoutToken(t *testing.T) {
	f := newFakeOcean(t, answer(http.StatusBadRequest, noSuchWebhookUpdate))
	c := newTestClient(t, f.URL(t), nil, ClientOptions{})
	assert.ErrorIs(t, c.CheckWriteAccount(context.Background(), ""), ErrCredentialRequired)
	assert.Zero(t, f.Calls(probePath))
}

func TestCheckWriteAccountIsApartFromMe(t *testing.T) {
	f := newFakeOcean(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/api/i" {
			answer(http.StatusOK, meAlice)(w, r)
			return
		}
		answer(http.StatusForbidden, permissionDenied)(w, r)
	})
	c := newTestClient(t, f.URL(t), newClock(), ClientOptions{})
	ctx := context.Background()
	for range 3 {
		me, err := c.Me(ctx, testToken)
		require.NoError(t, err, "a token refused writes still reads")
		assert.Equal(t, "au1lb55h9jzs0004", me.ID)
		var oe *Error
		require.ErrorAs(t, c.CheckWriteAccount(ctx, testToken), &oe)
		assert.Equal(t, ErrPermissionDenied.ID, oe.ID)
	}
	assert.Equal(t, 1, f.Calls("/api/i"))
	assert.Equal(t, 1, f.Calls(probePath))

	sum := sha256.Sum256([]byte(testToken))
	c.mu.Lock()
	defer c.mu.Unlock()
	assert.Len(t, c.cache, 2)
	for k := range c.cache {
		assert.Contains(t, k, hex.EncodeToString(sum[:]), "keyed by the token's hash")
		assert.NotContains(t, k, testToken)
	}
}

func TestCheckWriteAccountConcurrentChecksShareOneRequest(t *testing.T) {
	synctest.Test(t, func(t *testing.T) {
		var requests atomic.Int32
		release := make(chan struct{})
		hc := &http.Client{Transport: roundTripFunc(func(r *http.Request) (*http.Response, error) {
			requests.Add(1)
			<-release
			return jsonResponse(http.StatusBadRequest, noSuchWebhookUpdate), nil
		})}
		c := NewClient(&url.URL{Scheme: "http", Host: "ocean.test"}, ClientOptions{HTTPClient: hc})

		const n = 20
		var wg sync.WaitGroup
		errs := make([]error, n)
		for i := range n {
			wg.Go(func() { errs[i] = c.CheckWriteAccount(context.Background(), testToken) })
		}
		synctest.Wait()
		assert.Equal(t, int32(1), requests.Load())
		close(release)
		wg.Wait()
		for i := range n {
			assert.NoError(t, errs[i])
		}
		assert.Equal(t, int32(1), requests.Load())
	})
}
