package hooks

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"io"
	"log/slog"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// fakeDeliveries records what the API asks of the queue. Like the queue, its
// SendTest records the attempt on the hook.
type fakeDeliveries struct {
	store *Store
	now   func() time.Time

	mu          sync.Mutex
	tests       []webhook.TestSend
	testStatus  int
	testErr     error
	cancelled   []string
	listCalls   []listCall
	list        []webhook.Delivery
	listErr     error
	redelivered [][2]string
	redeliverN  int
	redeliverE  error
}

type listCall struct {
	hook  string
	limit int
	until string
}

func (f *fakeDeliveries) CancelHook(_ context.Context, hookID string) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.cancelled = append(f.cancelled, hookID)
	return nil
}

func (f *fakeDeliveries) List(_ context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.listCalls = append(f.listCalls, listCall{hookID, limit, untilID})
	return f.list, f.listErr
}

func (f *fakeDeliveries) Redeliver(_ context.Context, hookID, deliveryID string) (int, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.redelivered = append(f.redelivered, [2]string{hookID, deliveryID})
	return f.redeliverN, f.redeliverE
}

func (f *fakeDeliveries) SendTest(_ context.Context, t webhook.TestSend) (int, error) {
	f.mu.Lock()
	f.tests = append(f.tests, t)
	status, err := f.testStatus, f.testErr
	f.mu.Unlock()
	if status != 0 {
		f.store.RecordAttempt(t.HookID, f.now(), status)
	}
	return status, err
}

func (f *fakeDeliveries) sent() []webhook.TestSend {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]webhook.TestSend(nil), f.tests...)
}

// apiClock is the API's clock, fixed unless moved.
type apiClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *apiClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *apiClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// harness is the API on loopback in front of a fake Ocean.
type harness struct {
	t          *testing.T
	ocean      *oceantest.Server
	db         *badger.DB
	dir        string
	store      *Store
	deliveries *fakeDeliveries
	clock      *apiClock
	oceanClock *apiClock // the Ocean client's token caches
	api        *API
	url        string
	logs       *syncBuffer
	takeOver   bool                 // the API takes over hooks held in Ocean
	reg        *prometheus.Registry // the API's metrics, new at each start
}

type syncBuffer = testlog.Buffer

func newHarness(t *testing.T) *harness {
	t.Helper()
	return newHarnessWith(t, false)
}

// newHarnessWith is newHarness with the takeover of Ocean's hooks on or off.
func newHarnessWith(t *testing.T, takeOver bool) *harness {
	t.Helper()
	h := &harness{t: t, ocean: oceantest.New(t), dir: t.TempDir(), takeOver: takeOver,
		clock:      &apiClock{t: time.Date(2026, 11, 26, 20, 50, 24, 0, time.UTC)},
		oceanClock: &apiClock{t: time.Date(2026, 11, 26, 20, 50, 24, 0, time.UTC)}, logs: &syncBuffer{}}
	h.db = openDB(t, h.dir)
	t.Cleanup(func() { _ = h.db.Close() })
	h.start()
	t.Cleanup(func() {
		// Whatever a test did, no token reached the logs.
		logs := h.logs.String()
		for _, token := range []string{oceantest.TokenAlice, oceantest.TokenBob, oceantest.TokenAdmin, oceantest.TokenCarol,
			oceantest.TokenAliceAppRead, oceantest.TokenAliceAppWrite} {
			assert.NotContains(t, logs, token)
		}
	})
	return h
}

// start builds the store and the API over h.db and serves it.
func (h *harness) start() {
	t := h.t
	var err error
	h.store, err = Open(h.db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(5, 6))})
	require.NoError(t, err)
	base, err := url.Parse(h.ocean.URL)
	require.NoError(t, err)
	h.deliveries = &fakeDeliveries{store: h.store, now: h.clock.Now, testStatus: 200}
	logger := slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	client := ocean.NewClient(base, ocean.ClientOptions{Logger: logger, Now: h.oceanClock.Now})
	opts := APIOptions{Now: h.clock.Now, Logger: logger}
	h.reg = prometheus.NewRegistry()
	if h.takeOver {
		opts.TakeOver, opts.Registerer = client, h.reg
	}
	h.api = NewAPI(h.store, client, h.deliveries, opts)
	srv := httptest.NewServer(h.api)
	t.Cleanup(srv.Close)
	h.url = srv.URL
}

// restart closes Badger and opens everything again on the same directory.
func (h *harness) restart() {
	require.NoError(h.t, h.db.Close())
	h.db = openDB(h.t, h.dir)
	db := h.db
	h.t.Cleanup(func() { _ = db.Close() })
	h.start()
}

type response struct {
	status int
	header http.Header
	body   string
}

// call POSTs params (JSON-encoded unless a string) to the endpoint with
// token as Bearer credential ("" for none).
func (h *harness) call(endpoint, token string, params any) response {
	h.t.Helper()
	var body []byte
	switch p := params.(type) {
	case string:
		body = []byte(p)
	case nil:
		body = []byte("{}")
	default:
		var err error
		body, err = json.Marshal(p)
		require.NoError(h.t, err)
	}
	req, err := http.NewRequest(http.MethodPost, h.url+"/api/i/webhooks/"+endpoint, bytes.NewReader(body))
	require.NoError(h.t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	return h.do(req)
}

func (h *harness) do(req *http.Request) response {
	h.t.Helper()
	resp, err := http.DefaultClient.Do(req)
	require.NoError(h.t, err)
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	require.NoError(h.t, err)
	assert.Equal(h.t, cacheControl, resp.Header.Get("Cache-Control"), "every answer carries Ocean's Cache-Control")
	return response{status: resp.StatusCode, header: resp.Header, body: string(b)}
}

// create makes a hook through the API and returns its view.
func (h *harness) create(token string, params map[string]any) hookView {
	h.t.Helper()
	res := h.call("create", token, params)
	require.Equal(h.t, http.StatusOK, res.status, res.body)
	var v hookView
	require.NoError(h.t, json.Unmarshal([]byte(res.body), &v))
	return v
}

func (h *harness) all() []Hook {
	h.t.Helper()
	all, err := h.store.ListAll()
	require.NoError(h.t, err)
	return all
}

// captured returns the capture's call with label.
func captured(t *testing.T, label string) oceantest.Call {
	t.Helper()
	calls, err := oceantest.LoadCalls()
	require.NoError(t, err)
	for _, c := range calls {
		if c.Label == label {
			return c
		}
	}
	require.FailNow(t, "no captured call "+label)
	return oceantest.Call{}
}

// params returns a captured request without its token.
func params(c oceantest.Call) map[string]any {
	p := map[string]any{}
	for k, v := range c.Request {
		if k != "i" {
			p[k] = v
		}
	}
	return p
}

// sameAsCapture checks got against Ocean's captured body field by field and,
// since the capture keeps Ocean's key order, byte for byte; ids maps our ids
// to the capture's.
func sameAsCapture(t *testing.T, want json.RawMessage, got string, ids map[string]string) {
	t.Helper()
	for ours, theirs := range ids {
		got = strings.ReplaceAll(got, ours, theirs)
	}
	assert.JSONEq(t, string(want), got)
	assert.Equal(t, string(want), got, "same key order as Ocean")
}

func TestCreateListShowAsCaptured(t *testing.T) {
	h := newHarness(t)

	// Bob, alice and the admin create their hooks as in the capture.
	ids := map[string]string{}
	for _, tc := range []struct{ label, token string }{
		{"B webhook, 8 user event types", oceantest.TokenBob},
		{"A webhook, 8 user event types", oceantest.TokenAlice},
		{"admin webhook with ALL 11 types", oceantest.TokenAdmin},
	} {
		c := captured(t, tc.label)
		res := h.call("create", tc.token, params(c))
		require.Equal(t, c.Status, res.status, res.body)
		assert.Equal(t, "application/json; charset=utf-8", res.header.Get("Content-Type"))
		var v hookView
		require.NoError(t, json.Unmarshal([]byte(res.body), &v))
		var want hookView
		require.NoError(t, json.Unmarshal(c.Response, &want))
		ids[v.ID] = want.ID
		sameAsCapture(t, c.Response, res.body, ids)
	}

	for _, tc := range []struct{ label, token string }{
		{"list B webhooks", oceantest.TokenBob},
		{"list A webhooks", oceantest.TokenAlice},
		{"list admin webhooks", oceantest.TokenAdmin},
	} {
		c := captured(t, tc.label)
		res := h.call("list", tc.token, params(c))
		require.Equal(t, http.StatusOK, res.status, res.body)
		sameAsCapture(t, c.Response, res.body, ids)
	}

	show := captured(t, "show B webhook")
	var bobHook string
	for ours, theirs := range ids {
		if theirs == show.Request["webhookId"] {
			bobHook = ours
		}
	}
	res := h.call("show", oceantest.TokenBob, map[string]any{"webhookId": bobHook})
	require.Equal(t, http.StatusOK, res.status)
	sameAsCapture(t, show.Response, res.body, ids)

	// After deliveries, latestSentAt/latestStatus show as Ocean shows them.
	for ours, theirs := range ids {
		switch theirs {
		case "au1lb5cr9jzs0006":
			h.store.RecordAttempt(ours, time.Date(2026, 11, 26, 20, 49, 48, 202_000_000, time.UTC), 200)
		case "au1lb5cz9jzs0007":
			h.store.RecordAttempt(ours, time.Date(2026, 11, 26, 20, 49, 48, 223_000_000, time.UTC), 200)
		}
	}
	for _, tc := range []struct{ label, token string }{
		{"list B webhooks after deliveries", oceantest.TokenBob},
		{"list A webhooks after deliveries", oceantest.TokenAlice},
		{"list admin webhooks after deliveries", oceantest.TokenAdmin},
	} {
		c := captured(t, tc.label)
		res := h.call("list", tc.token, nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		sameAsCapture(t, c.Response, res.body, ids)
	}
	requireIndexMatchesStore(t, h.store)
	assert.True(t, h.store.Subscribed(oceantest.BobID, webhook.Note))
	assert.True(t, h.store.Subscribed(oceantest.AdminID, webhook.ReportCreated))
}

func TestCreateAdminTypesAsNonAdmin(t *testing.T) {
	h := newHarness(t)
	c := captured(t, "B webhook with ALL 11 types (non-admin)")
	res := h.call("create", oceantest.TokenBob, params(c))
	assert.Equal(t, c.Status, res.status)
	sameAsCapture(t, c.Response, res.body, nil)
	assert.Empty(t, h.all())
}

func TestCreateDefaultsAndLimit(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenAlice, map[string]any{"name": "n", "url": "u", "on": []string{}})
	assert.Equal(t, "", v.Secret, "secret defaults to the empty string")
	assert.Equal(t, []string{}, v.On)
	assert.True(t, v.Active)
	assert.Nil(t, v.LatestSentAt)
	assert.Nil(t, v.LatestStatus)
	assert.Regexp(t, `^[0-9a-z]{16}$`, v.ID)

	// Duplicates in on are kept, as Ocean keeps them.
	v2 := h.create(oceantest.TokenAlice, map[string]any{"name": "n2", "url": "u", "on": []string{"note", "note"}})
	assert.Equal(t, []string{"note", "note"}, v2.On)
	h.create(oceantest.TokenAlice, map[string]any{"name": "n3", "url": "u", "on": []string{"note"}})

	before := h.all()
	res := h.call("create", oceantest.TokenAlice, map[string]any{"name": "n4", "url": "u", "on": []string{"note"}})
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.JSONEq(t, `{"error":{"message":"You cannot create webhook any more.","code":"TOO_MANY_WEBHOOKS","id":"87a9bb19-111e-4e37-81d3-a3e7426453b0","kind":"client"}}`, res.body)
	assert.Equal(t, before, h.all())

	// The limit is per user.
	h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
}

func TestLimitComesFromOceansPolicy(t *testing.T) {
	h := newHarness(t)
	h.ocean.Handle("i", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `{"id":"`+oceantest.CarolID+`","isAdmin":false,"policies":{"webhookLimit":1}}`)
	})
	h.create(oceantest.TokenCarol, map[string]any{"name": "one", "url": "u", "on": []string{}})
	res := h.call("create", oceantest.TokenCarol, map[string]any{"name": "two", "url": "u", "on": []string{}})
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.Contains(t, res.body, "TOO_MANY_WEBHOOKS")
}

func TestUpdate(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "https://a.example/x?y=1&z=2", "secret": "s", "on": []string{"note"}})
	assert.Contains(t, h.call("show", oceantest.TokenBob, map[string]any{"webhookId": v.ID}).body,
		`"url":"https://a.example/x?y=1&z=2"`, "no HTML escaping, like JSON.stringify")

	res := h.call("update", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "name": "renamed",
		"on": []string{"follow", "mention"}, "active": false})
	assert.Equal(t, http.StatusNoContent, res.status)
	assert.Empty(t, res.body)
	assert.Empty(t, res.header.Get("Content-Type"))

	got := h.call("show", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	want := v
	want.Name, want.On, want.Active = "renamed", []string{"follow", "mention"}, false
	assert.JSONEq(t, string(marshal(want)), got.body, "omitted fields are unchanged")
	assert.False(t, h.store.Subscribed(oceantest.BobID, webhook.Note))
	assert.False(t, h.store.Subscribed(oceantest.BobID, webhook.Follow), "inactive")

	// A null secret clears it; active comes back.
	res = h.call("update", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "secret": nil, "active": true})
	require.Equal(t, http.StatusNoContent, res.status, res.body)
	stored, err := h.store.Get(v.ID)
	require.NoError(t, err)
	assert.Equal(t, "", stored.Secret)
	assert.True(t, h.store.Subscribed(oceantest.BobID, webhook.Follow))

	// Admin types: only for admins.
	res = h.call("update", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "on": []string{"reportCreated"}})
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.JSONEq(t, `{"error":{"message":"You are not an administrator.","code":"YOU_ARE_NOT_ADMIN","id":"26601bea-079b-4782-8dac-071febe2acf9","kind":"client"}}`, res.body)
	adminHook := h.create(oceantest.TokenAdmin, map[string]any{"name": "a", "url": "u", "on": []string{}})
	res = h.call("update", oceantest.TokenAdmin, map[string]any{"webhookId": adminHook.ID, "on": []string{"reportResolved"}})
	assert.Equal(t, http.StatusNoContent, res.status)

	// Missing hook.
	res = h.call("update", oceantest.TokenBob, map[string]any{"webhookId": "au1lb5zz9jzs0zzz", "name": "x"})
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.JSONEq(t, `{"error":{"message":"No such webhook.","code":"NO_SUCH_WEBHOOK","id":"fb0fea69-da18-45b1-828d-bd4fd1612518","kind":"client"}}`, res.body)
	requireIndexMatchesStore(t, h.store)
}

func TestDelete(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
	res := h.call("delete", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	assert.Equal(t, http.StatusNoContent, res.status)
	assert.Empty(t, res.body)
	assert.Equal(t, []string{v.ID}, h.deliveries.cancelled, "what the queue holds for it goes too")
	assert.Empty(t, h.all())
	assert.False(t, h.store.Subscribed(oceantest.BobID, webhook.Note))

	for _, ep := range []struct {
		endpoint string
		id       string
	}{
		{"delete", "bae73e5a-5522-4965-ae19-3a8688e71d82"},
		{"show", "50f614d9-3047-4f7e-90d8-ad6b2d5fb098"},
		{"update", "fb0fea69-da18-45b1-828d-bd4fd1612518"},
		{"test", "0c52149c-e913-18f8-5dc7-74870bfe0cf9"},
		{"deliveries", ocean.ErrNoSuchWebhookDeliveries.ID},
		{"redeliver", ocean.ErrNoSuchWebhookRedeliver.ID},
	} {
		t.Run(ep.endpoint, func(t *testing.T) {
			res := h.call(ep.endpoint, oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "note"})
			assert.Equal(t, http.StatusBadRequest, res.status)
			assert.JSONEq(t, `{"error":{"message":"No such webhook.","code":"NO_SUCH_WEBHOOK","id":"`+ep.id+`","kind":"client"}}`, res.body)
		})
	}
	assert.Len(t, h.deliveries.cancelled, 1)
}

func TestUsersNeverReachOthersHooks(t *testing.T) {
	h := newHarness(t)
	bobs := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "https://bob.example", "secret": "bob-secret", "on": []string{"note"}})
	alices := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "https://alice.example", "on": []string{"note"}})
	before := h.all()

	calls := []struct {
		endpoint string
		params   map[string]any
		errID    string
	}{
		{"show", map[string]any{"webhookId": bobs.ID}, ocean.ErrNoSuchWebhookShow.ID},
		{"update", map[string]any{"webhookId": bobs.ID, "url": "https://evil.example", "active": false}, ocean.ErrNoSuchWebhookUpdate.ID},
		{"test", map[string]any{"webhookId": bobs.ID, "type": "note"}, ocean.ErrNoSuchWebhookTest.ID},
		{"deliveries", map[string]any{"webhookId": bobs.ID}, ocean.ErrNoSuchWebhookDeliveries.ID},
		{"redeliver", map[string]any{"webhookId": bobs.ID}, ocean.ErrNoSuchWebhookRedeliver.ID},
		{"delete", map[string]any{"webhookId": bobs.ID}, ocean.ErrNoSuchWebhookDelete.ID},
	}
	for _, c := range calls {
		t.Run(c.endpoint, func(t *testing.T) {
			res := h.call(c.endpoint, oceantest.TokenAlice, c.params)
			assert.Equal(t, http.StatusBadRequest, res.status)
			assert.JSONEq(t, `{"error":{"message":"No such webhook.","code":"NO_SUCH_WEBHOOK","id":"`+c.errID+`","kind":"client"}}`, res.body)
			assert.NotContains(t, res.body, "bob-secret")
		})
	}
	assert.Equal(t, before, h.all(), "bob's hook is untouched")
	assert.Empty(t, h.deliveries.sent())
	assert.Empty(t, h.deliveries.cancelled)
	assert.Empty(t, h.deliveries.listCalls)
	assert.Empty(t, h.deliveries.redelivered)

	res := h.call("list", oceantest.TokenAlice, nil)
	require.Equal(t, http.StatusOK, res.status)
	assert.JSONEq(t, string(marshal([]hookView{alices})), res.body, "a list holds only the caller's hooks")
}

func TestAuthentication(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
	listBody := string(marshal([]hookView{v}))
	h.ocean.ResetCounts()

	post := func(body string, header http.Header) response {
		req, err := http.NewRequest(http.MethodPost, h.url+"/api/i/webhooks/list", strings.NewReader(body))
		require.NoError(t, err)
		req.Header.Set("Content-Type", "application/json")
		for k, vs := range header {
			req.Header[k] = vs
		}
		return h.do(req)
	}

	t.Run("bearer", func(t *testing.T) {
		res := post(`{}`, http.Header{"Authorization": {"Bearer " + oceantest.TokenBob}})
		assert.Equal(t, http.StatusOK, res.status)
		assert.JSONEq(t, listBody, res.body)
	})
	t.Run("body i", func(t *testing.T) {
		res := post(`{"i":"`+oceantest.TokenBob+`"}`, nil)
		assert.Equal(t, http.StatusOK, res.status)
		assert.JSONEq(t, listBody, res.body)
	})
	t.Run("bearer wins over i", func(t *testing.T) {
		res := post(`{"i":"`+oceantest.TokenAlice+`"}`, http.Header{"Authorization": {"Bearer " + oceantest.TokenBob}})
		assert.JSONEq(t, listBody, res.body)
	})
	t.Run("the token is asked of Ocean once per TTL", func(t *testing.T) {
		h.ocean.ResetCounts()
		for range 5 {
			res := post(`{"i":"`+oceantest.TokenAdmin+`"}`, nil)
			assert.Equal(t, http.StatusOK, res.status)
			res = post(`{}`, http.Header{"Authorization": {"Bearer " + oceantest.TokenAdmin}})
			assert.Equal(t, http.StatusOK, res.status)
		}
		assert.Equal(t, 1, h.ocean.Calls("i"))
	})
	t.Run("invalid token: Ocean's answer", func(t *testing.T) {
		res := post(`{}`, http.Header{"Authorization": {"Bearer not-a-valid-tok"}})
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.JSONEq(t, `{"error":{"message":"Authentication failed. Please ensure your token is correct.","code":"AUTHENTICATION_FAILED","id":"b0a7f5f8-dc2f-4171-b91f-de88ad238e14","kind":"client"}}`, res.body)
		assert.Contains(t, res.header.Get("WWW-Authenticate"), `error="invalid_token"`)
	})
	t.Run("empty token", func(t *testing.T) {
		res := post(`{"i":""}`, nil)
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.Contains(t, res.body, "AUTHENTICATION_FAILED")
	})
	t.Run("no token", func(t *testing.T) {
		res := post(`{}`, nil)
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.JSONEq(t, `{"error":{"message":"Credential required.","code":"CREDENTIAL_REQUIRED","id":"1384574d-a912-4b81-8601-c7b1c4085df1","kind":"client"}}`, res.body)
		assert.Equal(t, `Bearer realm="Misskey"`, res.header.Get("WWW-Authenticate"))
	})
	t.Run("null i is no token", func(t *testing.T) {
		res := post(`{"i":null}`, nil)
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.Contains(t, res.body, "CREDENTIAL_REQUIRED")
	})
	t.Run("non-string i: a bare 400", func(t *testing.T) {
		for _, body := range []string{`{"i":42}`, `{"i":{"a":1}}`, `{"i":["x"]}`, `{"i":true}`} {
			res := post(body, nil)
			assert.Equal(t, http.StatusBadRequest, res.status, body)
			assert.Empty(t, res.body, body)
		}
	})
	t.Run("lower-case bearer is not a bearer", func(t *testing.T) {
		res := post(`{}`, http.Header{"Authorization": {"bearer " + oceantest.TokenBob}})
		assert.Equal(t, http.StatusUnauthorized, res.status)
		assert.Contains(t, res.body, "CREDENTIAL_REQUIRED")
	})
}

func TestOceanUnreachableIsNeverASilentSuccess(t *testing.T) {
	h := newHarness(t)
	h.ocean.Handle("i", func(w http.ResponseWriter, r *http.Request) {
		if conn, _, err := http.NewResponseController(w).Hijack(); err == nil {
			_ = conn.Close()
		}
	})
	res := h.call("create", oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{}})
	assert.Equal(t, http.StatusBadGateway, res.status)
	assert.JSONEq(t, `{"error":{"message":"Ocean is not reachable through the oceanhooks sidecar.","code":"UPSTREAM_UNAVAILABLE","id":"9b0c7f1e-6a53-4c8e-a0f4-3d2b8e5c1a77","kind":"server"}}`, res.body)
	assert.Empty(t, h.all())
}

// fakeAuth answers every token with me, or err, and every write check with
// writeErr.
type fakeAuth struct {
	me       ocean.Me
	err      error
	writeErr error
}

func (f fakeAuth) Me(context.Context, string) (ocean.Me, error) { return f.me, f.err }

func (f fakeAuth) CheckWriteAccount(context.Context, string) error { return f.writeErr }

func TestAuthenticatorFailureOfItsOwn(t *testing.T) {
	s, _ := newStore(t)
	srv := httptest.NewServer(NewAPI(s, fakeAuth{err: errors.New("boom")}, &fakeDeliveries{store: s}, APIOptions{}))
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/i/webhooks/list", strings.NewReader(`{"i":"token-alice-0001"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode, "never a silent success")
	assert.Contains(t, string(body), "UPSTREAM_UNAVAILABLE")
}

func TestTestEndpoint(t *testing.T) {
	h := newHarness(t)
	c := captured(t, "webhook TEST delivery type=reaction (B)")
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "http://127.0.0.1:61899/hook/bob", "secret": "testsecret", "on": []string{"note"}})

	p := params(c)
	p["webhookId"] = v.ID
	res := h.call("test", oceantest.TokenBob, p)
	assert.Equal(t, c.Status, res.status)
	assert.Empty(t, res.body)

	sent := h.deliveries.sent()
	require.Len(t, sent, 1, "one attempt")
	body, _ := testBody(webhook.Reaction, h.clock.Now())
	assert.Equal(t, webhook.TestSend{HookID: v.ID, UserID: oceantest.BobID, URL: "http://127.0.0.1:61899/hook/bob-TEST",
		Secret: "testsecret", Type: webhook.Reaction, Body: body}, sent[0], "override.url, the hook's secret")
	assert.Equal(t, "❤", jsonString(t, sent[0].Body, "reaction"))
	assert.Equal(t, "dummy-note-1", jsonString(t, sent[0].Body, "note", "id"))
	assert.Equal(t, "dummy-user-2", jsonString(t, sent[0].Body, "user", "id"))

	// The attempt shows on the hook.
	got := h.call("show", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	assert.Contains(t, got.body, `"latestSentAt":"2026-11-26T20:50:24.000Z","latestStatus":200`)

	// Inactive hooks and types not in `on` are tested all the same; both
	// override fields apply, an empty one too.
	_, err := h.store.Update(oceantest.BobID, v.ID, Patch{Active: ptr(false)})
	require.NoError(t, err)
	for _, typ := range webhook.UserEventTypes {
		res := h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": typ,
			"override": map[string]any{"url": "https://other.example/x", "secret": ""}})
		require.Equal(t, http.StatusNoContent, res.status, res.body)
	}
	sent = h.deliveries.sent()[1:]
	require.Len(t, sent, len(webhook.UserEventTypes))
	for i, s := range sent {
		assert.Equal(t, webhook.UserEventTypes[i], s.Type)
		assert.Equal(t, "https://other.example/x", s.URL)
		assert.Equal(t, "", s.Secret)
		want, ok := testBody(s.Type, h.clock.Now())
		require.True(t, ok)
		assert.JSONEq(t, string(want), string(s.Body))
	}

	// No override: the hook's own URL and secret.
	res = h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "follow"})
	require.Equal(t, http.StatusNoContent, res.status)
	last := h.deliveries.sent()[len(h.deliveries.sent())-1]
	assert.Equal(t, "http://127.0.0.1:61899/hook/bob", last.URL)
	assert.Equal(t, "testsecret", last.Secret)

	// A receiver that did not answer is still a 204 (Ocean's test is fire
	// and forget); a test that could not even be attempted is a 500.
	h.deliveries.testStatus, h.deliveries.testErr = 1, errors.New("dial: connection refused")
	res = h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "note"})
	assert.Equal(t, http.StatusNoContent, res.status)
	h.deliveries.testStatus, h.deliveries.testErr = 0, errors.New("envelope")
	res = h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "note"})
	assert.Equal(t, http.StatusInternalServerError, res.status)
	assert.Contains(t, res.body, `"code":"INTERNAL_ERROR"`)
}

func jsonString(t *testing.T, raw json.RawMessage, path ...string) string {
	t.Helper()
	var v any
	require.NoError(t, json.Unmarshal(raw, &v))
	for _, p := range path {
		m, ok := v.(map[string]any)
		require.True(t, ok, "no object at %s", p)
		v = m[p]
	}
	s, _ := v.(string)
	return s
}

func TestTestWithAdminTypesFailsLikeOcean(t *testing.T) {
	h := newHarness(t)
	for _, label := range []string{
		"webhook TEST delivery type=reportCreated (admin)",
		"webhook TEST delivery type=reportResolved (admin)",
		"webhook TEST delivery type=reportAutoResolved (admin)",
	} {
		t.Run(label, func(t *testing.T) {
			v := h.create(oceantest.TokenAdmin, map[string]any{"name": "a", "url": "http://127.0.0.1:61899/hook/admin", "on": eventTypes})
			defer h.call("delete", oceantest.TokenAdmin, map[string]any{"webhookId": v.ID})
			c := captured(t, label)
			p := params(c)
			p["webhookId"] = v.ID
			res := h.call("test", oceantest.TokenAdmin, p)
			assert.Equal(t, c.Status, res.status)

			// The error id in info is random, as Ocean's is.
			var got struct {
				Error struct {
					Info map[string]any `json:"info"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal([]byte(res.body), &got))
			var want struct {
				Error struct {
					Info map[string]any `json:"info"`
				} `json:"error"`
			}
			require.NoError(t, json.Unmarshal(c.Response, &want))
			gotID, _ := got.Error.Info["id"].(string)
			assert.Regexp(t, `^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`, gotID)
			sameAsCapture(t, c.Response, res.body, map[string]string{gotID: want.Error.Info["id"].(string)})
		})
	}
	assert.Empty(t, h.deliveries.sent())
}

func TestTestIsForNativeTokensOnly(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{}})
	accessDenied := `{"error":{"message":"Access denied.","code":"ACCESS_DENIED","id":"56f35758-7dd5-468b-8439-5d6fb8ec9b8e","kind":"client"}}`

	res := h.call("test", "", map[string]any{"webhookId": v.ID, "type": "note"})
	assert.Equal(t, http.StatusBadRequest, res.status, "no credential: Ocean's secure check comes first")
	assert.JSONEq(t, accessDenied, res.body)

	// An app's access token (not 16 characters) that Ocean accepts.
	api := NewAPI(h.store, fakeAuth{me: ocean.Me{ID: oceantest.BobID, WebhookLimit: 3}}, h.deliveries, APIOptions{})
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)
	req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/i/webhooks/test",
		strings.NewReader(`{"webhookId":"`+v.ID+`","type":"note"}`))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer an-app-access-token-of-32-chars!")
	res = h.do(req)
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.JSONEq(t, accessDenied, res.body)
	assert.Empty(t, h.deliveries.sent())
}

func TestTestIsRateLimited(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{}})
	for i := range testLimitMax {
		res := h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "note"})
		require.Equal(t, http.StatusNoContent, res.status, "call %d", i)
		h.clock.Advance(time.Second)
	}
	res := h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "note"})
	assert.Equal(t, http.StatusTooManyRequests, res.status)
	assert.JSONEq(t, `{"error":{"message":"Rate limit exceeded. Please try again later.","code":"RATE_LIMIT_EXCEEDED","id":"d5826d14-3982-4d2e-8011-b9e9f02499ef","kind":"client"}}`, res.body)
	assert.Equal(t, "840", res.header.Get("Retry-After"), "until the first call leaves the 15-minute window")
	assert.Len(t, h.deliveries.sent(), testLimitMax)

	// Other users have their own allowance; the window slides.
	alices := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "u", "on": []string{}})
	res = h.call("test", oceantest.TokenAlice, map[string]any{"webhookId": alices.ID, "type": "note"})
	assert.Equal(t, http.StatusNoContent, res.status)
	h.clock.Advance(840 * time.Second)
	res = h.call("test", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "type": "note"})
	assert.Equal(t, http.StatusNoContent, res.status)
}

// TestOwnEndpointsAreRateLimited: deliveries and redeliver are limited per
// user like test, with Ocean's RATE_LIMIT_EXCEEDED and a Retry-After; a
// refused call never reaches the queue.
func TestOwnEndpointsAreRateLimited(t *testing.T) {
	cases := []struct {
		endpoint   string
		max        int
		window     time.Duration
		status     int
		queueCalls func(*fakeDeliveries) int
	}{
		{"deliveries", deliveriesLimitMax, deliveriesLimitWindow, http.StatusOK,
			func(f *fakeDeliveries) int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.listCalls) }},
		{"redeliver", redeliverLimitMax, redeliverLimitWindow, http.StatusNoContent,
			func(f *fakeDeliveries) int { f.mu.Lock(); defer f.mu.Unlock(); return len(f.redelivered) }},
	}
	for _, tc := range cases {
		t.Run(tc.endpoint, func(t *testing.T) {
			h := newHarness(t)
			v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
			params := map[string]any{"webhookId": v.ID}
			for i := range tc.max {
				res := h.call(tc.endpoint, oceantest.TokenBob, params)
				require.Equal(t, tc.status, res.status, "call %d: %s", i, res.body)
				h.clock.Advance(time.Second)
			}
			res := h.call(tc.endpoint, oceantest.TokenBob, params)
			assert.Equal(t, http.StatusTooManyRequests, res.status)
			assert.JSONEq(t, `{"error":{"message":"Rate limit exceeded. Please try again later.","code":"RATE_LIMIT_EXCEEDED","id":"d5826d14-3982-4d2e-8011-b9e9f02499ef","kind":"client"}}`, res.body)
			assert.Equal(t, strconv.Itoa(int((tc.window-time.Duration(tc.max)*time.Second)/time.Second)), res.header.Get("Retry-After"))
			assert.Equal(t, tc.max, tc.queueCalls(h.deliveries), "the refused call never reached the queue")

			// Other users have their own allowance; the window slides.
			alices := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "u", "on": []string{}})
			res = h.call(tc.endpoint, oceantest.TokenAlice, map[string]any{"webhookId": alices.ID})
			assert.Equal(t, tc.status, res.status, res.body)
			h.clock.Advance(tc.window - time.Duration(tc.max)*time.Second)
			res = h.call(tc.endpoint, oceantest.TokenBob, params)
			assert.Equal(t, tc.status, res.status, res.body)
		})
	}
}

func TestDeliveriesAndRedeliver(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
	at := time.Date(2026, 11, 26, 20, 49, 48, 0, time.UTC)
	h.deliveries.list = []webhook.Delivery{{ID: "au1lbh009jzs0001", HookID: v.ID, UserID: oceantest.BobID,
		EventID: "e1", Type: "note", CreatedAt: at, State: webhook.StateDead,
		Attempts: []webhook.Attempt{{At: at, Status: 500, Duration: 12, Response: "oops"}}}}

	res := h.call("deliveries", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	require.Equal(t, http.StatusOK, res.status, res.body)
	assert.JSONEq(t, string(marshal(h.deliveries.list)), res.body)
	res = h.call("deliveries", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "limit": 100, "untilId": "au1lbh009jzs0002"})
	require.Equal(t, http.StatusOK, res.status, res.body)
	assert.Equal(t, []listCall{{v.ID, 10, ""}, {v.ID, 100, "au1lbh009jzs0002"}}, h.deliveries.listCalls, "limit defaults to 10")

	h.deliveries.list = nil
	res = h.call("deliveries", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	assert.Equal(t, "[]", res.body)

	res = h.call("redeliver", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	assert.Equal(t, http.StatusNoContent, res.status)
	res = h.call("redeliver", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "deliveryId": "au1lbh009jzs0001"})
	assert.Equal(t, http.StatusNoContent, res.status)
	assert.Equal(t, [][2]string{{v.ID, ""}, {v.ID, "au1lbh009jzs0001"}}, h.deliveries.redelivered)

	h.deliveries.redeliverE = webhook.ErrNoSuchDelivery
	res = h.call("redeliver", oceantest.TokenBob, map[string]any{"webhookId": v.ID, "deliveryId": "au1lbh009jzs0009"})
	assert.Equal(t, http.StatusBadRequest, res.status)
	assert.JSONEq(t, `{"error":{"message":"No such delivery.","code":"NO_SUCH_DELIVERY","id":"e7b1d9c3-4a62-4f8e-b5d0-2c9a6e3f1b87","kind":"client"}}`, res.body)

	h.deliveries.redeliverE = errors.New("disk on fire")
	res = h.call("redeliver", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	assert.Equal(t, http.StatusInternalServerError, res.status)
	h.deliveries.listErr = errors.New("disk on fire")
	res = h.call("deliveries", oceantest.TokenBob, map[string]any{"webhookId": v.ID})
	assert.Equal(t, http.StatusInternalServerError, res.status)
}

func TestHooksSurviveARestart(t *testing.T) {
	h := newHarness(t)
	b := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "secret": "s", "on": []string{"note", "follow"}})
	a := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "u", "on": []string{"mention"}})
	require.Equal(t, http.StatusNoContent, h.call("update", oceantest.TokenAlice, map[string]any{"webhookId": a.ID, "active": false}).status)
	before := h.all()
	index := h.store.idx.Load()

	h.restart()
	assert.Equal(t, before, h.all())
	assert.Equal(t, index, h.store.idx.Load())
	assert.True(t, h.store.Subscribed(oceantest.BobID, webhook.Follow))
	assert.False(t, h.store.Subscribed(oceantest.AliceID, webhook.Mention))
	res := h.call("show", oceantest.TokenBob, map[string]any{"webhookId": b.ID})
	assert.JSONEq(t, string(marshal(b)), res.body)
	requireIndexMatchesStore(t, h.store)
}
