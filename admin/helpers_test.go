package admin

import (
	"context"
	"io"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/webhook"
)

const (
	alice = "au1lb55h9jzs0004"
	bob   = "au1lb5al9jzs0005"
	carol = "au1lb50u9jzs0003"
	token = "0123456789abcdef0123456789abcdef-test-token"
)

// fakeDeliveries is a queue that lists what the test put in it and notes
// redeliveries.
type fakeDeliveries struct {
	mu          sync.Mutex
	ds          []webhook.Delivery // newest first
	dead        map[string]int
	redelivered []string // "hook/delivery" ("hook/" for all)
}

func (f *fakeDeliveries) List(_ context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []webhook.Delivery
	for _, d := range f.ds {
		if (hookID != "" && d.HookID != hookID) || (untilID != "" && d.ID >= untilID) {
			continue
		}
		d.Attempts = append([]webhook.Attempt(nil), d.Attempts...)
		out = append(out, d)
		if limit > 0 && len(out) == limit {
			break
		}
	}
	return out, nil
}

func (f *fakeDeliveries) Redeliver(_ context.Context, hookID, deliveryID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if deliveryID != "" {
		found := false
		for _, d := range f.ds {
			found = found || (d.ID == deliveryID && d.HookID == hookID)
		}
		if !found {
			return 0, webhook.ErrNoSuchDelivery
		}
	}
	f.redelivered = append(f.redelivered, hookID+"/"+deliveryID)
	if deliveryID == "" {
		return 0, nil
	}
	return 1, nil
}

func (f *fakeDeliveries) DeadLetters() map[string]int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return maps.Clone(f.dead)
}

func (f *fakeDeliveries) redeliveries() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]string(nil), f.redelivered...)
}

// queueMetrics are the registry series the dashboard reads, set by tests.
type queueMetrics struct {
	ready, leased, dead, held, oldest prometheus.Gauge
	attempts, tapped                  *prometheus.CounterVec
}

func newQueueMetrics(reg prometheus.Registerer) *queueMetrics {
	g := func(name string) prometheus.Gauge {
		x := prometheus.NewGauge(prometheus.GaugeOpts{Name: name, Help: name})
		reg.MustRegister(x)
		return x
	}
	m := &queueMetrics{ready: g(metricReady), leased: g(metricLeased), dead: g(metricDead), held: g(metricHeld), oldest: g(metricOldest),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricAttempts, Help: "a"}, []string{"outcome"}),
		tapped:   prometheus.NewCounterVec(prometheus.CounterOpts{Name: metricTapped, Help: "t"}, []string{"endpoint", "status"})}
	reg.MustRegister(m.attempts, m.tapped)
	return m
}

// fixture is an admin listener over a real hook store and a fake queue.
type fixture struct {
	*httptest.Server
	admin   *Admin
	hooks   *hooks.Store
	queue   *fakeDeliveries
	metrics *queueMetrics
	clock   *clock
}

// clock is a settable test clock.
type clock struct {
	mu sync.Mutex
	t  time.Time
}

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

func newFixture(t *testing.T) *fixture {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(t.TempDir()).WithLogger(nil).WithSyncWrites(false))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	hs, err := hooks.Open(db, hooks.Options{DisableAfter: 120 * time.Hour})
	require.NoError(t, err)
	reg := prometheus.NewRegistry()
	f := &fixture{hooks: hs, queue: &fakeDeliveries{}, metrics: newQueueMetrics(reg),
		clock: &clock{t: time.Date(2026, 3, 6, 12, 0, 0, 0, time.UTC)}}
	f.Server = httptest.NewUnstartedServer(nil)
	f.admin, err = New(Options{Token: token, Listen: "127.0.0.1:0", Bound: f.Listener.Addr(), Registry: reg,
		Hooks: hs, Deliveries: f.queue, DisableAfter: 120 * time.Hour, Now: f.clock.Now})
	require.NoError(t, err)
	f.Config.Handler = f.admin.Handler()
	f.Start()
	t.Cleanup(f.Close)
	return f
}

// origin is the listener's own origin.
func (f *fixture) origin() string { return f.URL }

// request is one request to the fixture.
type request struct {
	method, path, body string
	header             map[string]string
	session            string // cookie value
}

type response struct {
	status int
	header http.Header
	body   string
}

func (f *fixture) do(t *testing.T, r request) response {
	t.Helper()
	if r.method == "" {
		r.method = http.MethodGet
	}
	req, err := http.NewRequest(r.method, f.URL+r.path, strings.NewReader(r.body))
	require.NoError(t, err)
	for k, v := range r.header {
		req.Header.Set(k, v)
	}
	if r.session != "" {
		req.AddCookie(&http.Cookie{Name: sessionCookie, Value: r.session})
	}
	client := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := client.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return response{resp.StatusCode, resp.Header, string(b)}
}

// login posts the token to the login form and returns the session cookie.
func (f *fixture) login(t *testing.T) string {
	t.Helper()
	resp := f.do(t, request{method: http.MethodPost, path: loginPath, body: url.Values{"token": {token}}.Encode(),
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": f.origin()}})
	require.Equal(t, http.StatusSeeOther, resp.status, resp.body)
	for _, c := range (&http.Response{Header: resp.header}).Cookies() {
		if c.Name == sessionCookie {
			return c.Value
		}
	}
	t.Fatal("no session cookie")
	return ""
}

// form posts values to path with session's CSRF token and the listener's
// Origin.
func (f *fixture) form(t *testing.T, session, path string, values url.Values) response {
	t.Helper()
	values.Set(csrfField, f.admin.sessions.csrf(session))
	return f.do(t, request{method: http.MethodPost, path: path, body: values.Encode(), session: session,
		header: map[string]string{"Content-Type": "application/x-www-form-urlencoded", "Origin": f.origin()}})
}

func mustCreate(t *testing.T, s *hooks.Store, h hooks.Hook) hooks.Hook {
	t.Helper()
	got, err := s.Create(h, 100)
	require.NoError(t, err)
	return got
}
