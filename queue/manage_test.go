package queue

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

func TestListPaging(t *testing.T) {
	clock := newFakeClock()
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note", "follow")
	hooks.add("h2", "u1", "http://example.invalid/", "", "follow")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
	for i := range 5 {
		enqueue(t, q, event("u1", "note", `{"n":`+strconv.Itoa(i)+`}`))
		clock.Advance(time.Millisecond)
	}
	enqueue(t, q, event("u1", "follow", `{}`)) // one each for h1 and h2

	all := list(t, q, "h1")
	require.Len(t, all, 6)
	for i := 1; i < len(all); i++ {
		assert.Greater(t, all[i-1].ID, all[i].ID, "newest first")
	}
	first := all[len(all)-1]
	assert.Equal(t, "h1", first.HookID)
	assert.Equal(t, "u1", first.UserID)
	assert.Equal(t, "note", first.Type)
	assert.Equal(t, webhook.StateReady, first.State)
	assert.Len(t, first.EventID, 36)
	require.NotNil(t, first.NextAt)
	assert.Equal(t, newFakeClock().Now(), *first.NextAt)
	assert.Equal(t, newFakeClock().Now(), first.CreatedAt)
	assert.Empty(t, first.Attempts)

	var paged []webhook.Delivery
	until := ""
	for {
		page, err := q.List(context.Background(), "h1", 4, until)
		require.NoError(t, err)
		if len(page) == 0 {
			break
		}
		assert.LessOrEqual(t, len(page), 4)
		paged = append(paged, page...)
		until = page[len(page)-1].ID
	}
	assert.Equal(t, all, paged)

	everyone := list(t, q, "")
	assert.Len(t, everyone, 7, "no hook: every hook's deliveries")
	assert.Equal(t, "h2", everyone[0].HookID)
	ds, err := q.List(context.Background(), "nobody", 10, "")
	require.NoError(t, err)
	assert.Empty(t, ds)
	ds, err = q.List(context.Background(), "h1", 0, "")
	require.NoError(t, err)
	assert.Len(t, ds, 6, "limit 0 means the default")
}

func TestRedeliver(t *testing.T) {
	clock := newFakeClock()
	var code atomic.Int32
	code.Store(http.StatusNotFound)
	rc := newReceiver(t, func(*http.Request) int { return int(code.Load()) })
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	hooks.add("h2", "u2", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{"n":1}`), event("u1", "note", `{"n":2}`), event("u2", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 3 }, waitFor, tick)
	ds := list(t, q, "h1")
	require.Len(t, ds, 2)
	code.Store(http.StatusOK)

	t.Run("unknown ids", func(t *testing.T) {
		_, err := q.Redeliver(context.Background(), "h1", "0000000000000000")
		assert.ErrorIs(t, err, webhook.ErrNoSuchDelivery)
		_, err = q.Redeliver(context.Background(), "h1", "not an id")
		assert.ErrorIs(t, err, webhook.ErrNoSuchDelivery)
		other := list(t, q, "h2")[0].ID
		_, err = q.Redeliver(context.Background(), "h1", other)
		assert.ErrorIs(t, err, webhook.ErrNoSuchDelivery, "another hook's delivery")
	})
	t.Run("one", func(t *testing.T) {
		n, err := q.Redeliver(context.Background(), "h1", ds[0].ID)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		require.Eventually(t, func() bool { return rc.count() == 4 }, waitFor, tick)
		assert.Equal(t, ds[0].EventID, rc.got()[3].eventID(), "the same eventId")
		require.Eventually(t, func() bool { return q.dead.Load() == 2 && q.leased.Load() == 0 }, waitFor, tick)
		d := list(t, q, "h1")[0]
		assert.Equal(t, webhook.StateDelivered, d.State)
		require.Len(t, d.Attempts, 2, "the attempt log keeps the earlier attempt")
		assert.Equal(t, 404, d.Attempts[0].Status)
		assert.Equal(t, 200, d.Attempts[1].Status)
	})
	t.Run("a delivered one again", func(t *testing.T) {
		n, err := q.Redeliver(context.Background(), "h1", ds[0].ID)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		require.Eventually(t, func() bool { return rc.count() == 5 }, waitFor, tick)
	})
	t.Run("all dead letters of the hook", func(t *testing.T) {
		require.Eventually(t, func() bool { return q.leased.Load() == 0 && q.readyNow() == 0 }, waitFor, tick)
		n, err := q.Redeliver(context.Background(), "h1", "")
		require.NoError(t, err)
		assert.Zero(t, n, "done in the background")
		require.Eventually(t, func() bool { return rc.count() == 6 }, waitFor, tick, "only the remaining dead letter of h1")
		assert.Equal(t, ds[1].EventID, rc.got()[5].eventID())
		require.Eventually(t, func() bool { return q.dead.Load() == 1 && q.jobs.pending() == 0 }, waitFor, tick, "h2's stays dead")
		assert.Empty(t, keysWithPrefix(t, q, pJob), "the finished job is not kept")
		n, err = q.Redeliver(context.Background(), "h1", "")
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.Never(t, func() bool { return rc.count() > 6 }, 50*time.Millisecond, tick, "no dead letter left to send")
	})
}

func TestLeasesReturnedAtOpen(t *testing.T) {
	dir := t.TempDir()
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, testOptions(nil))
	enqueue(t, q, event("u1", "note", `{"n":1}`), event("u1", "note", `{"n":2}`), event("u1", "note", `{"n":3}`))
	require.Len(t, leaseDue(t, q, "h1", 2), 2)
	states := map[string]int{}
	for _, d := range list(t, q, "h1") {
		states[d.State]++
	}
	assert.Equal(t, map[string]int{webhook.StateLeased: 2, webhook.StateReady: 1}, states)
	assert.Empty(t, keysWithPrefix(t, q, pLease), "leases are not written")
	require.NoError(t, db.Close()) // as a crash would leave it: two attempts under way

	db = openDB(t, dir)
	q = openQueue(t, db, hooks, testOptions(nil))
	assert.Equal(t, int64(3), q.readyNow())
	assert.Equal(t, int64(0), q.leased.Load())
	for _, d := range list(t, q, "h1") {
		assert.Equal(t, webhook.StateReady, d.State)
	}
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() == 3 }, waitFor, tick)
}

func TestShutdownReturnsLeases(t *testing.T) {
	slow := newHangingReceiver(t)
	hooks := newFakeHooks()
	hooks.add("h1", "u1", slow.URL, "", "note")
	opts := testOptions(nil)
	opts.AttemptTimeout = time.Minute
	opts.ShutdownGrace = 50 * time.Millisecond
	q := openQueue(t, openDB(t, ""), hooks, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	enqueue(t, q, event("u1", "note", `{}`), event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return slow.inflight.Load() == 2 }, waitFor, tick)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(waitFor):
		t.Fatal("Run did not return after the grace period")
	}
	assert.Equal(t, int64(0), q.leased.Load())
	assert.Equal(t, int64(2), q.readyNow())
	for _, d := range list(t, q, "h1") {
		assert.Equal(t, webhook.StateReady, d.State)
		assert.Empty(t, d.Attempts, "a cancelled attempt is not counted")
	}
	assert.Empty(t, hooks.attempts())
	enqueue(t, q, event("u1", "note", `{}`))
	assert.Never(t, func() bool { return slow.count() > 2 }, 50*time.Millisecond, tick, "no claims after Run returned")
}

func TestShutdownWaitsForInFlight(t *testing.T) {
	slow := newHangingReceiver(t)
	hooks := newFakeHooks()
	hooks.add("h1", "u1", slow.URL, "", "note")
	opts := testOptions(nil)
	opts.AttemptTimeout = time.Minute
	opts.ShutdownGrace = time.Minute
	q := openQueue(t, openDB(t, ""), hooks, opts)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return slow.inflight.Load() == 1 }, waitFor, tick)
	cancel()
	assert.Never(t, func() bool { return len(done) > 0 }, 50*time.Millisecond, tick, "Run waits for the attempt")
	slow.unblock()
	require.NoError(t, <-done)
	ds := list(t, q, "h1")
	require.Len(t, ds, 1)
	assert.Equal(t, webhook.StateDelivered, ds[0].State)
}

func TestSendTest(t *testing.T) {
	clock := newFakeClock()
	rc := newReceiver(t, always(http.StatusAccepted))
	hooks := newFakeHooks()
	q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
	status, err := q.SendTest(context.Background(), webhook.TestSend{HookID: "h9", UserID: "u9", URL: rc.URL, Secret: "k", Type: "follow", Body: json.RawMessage(`{"user":{"id":"dummy-user-1"}}`)})
	require.NoError(t, err)
	assert.Equal(t, http.StatusAccepted, status)
	require.Equal(t, 1, rc.count())
	h := rc.got()[0]
	assert.JSONEq(t, `{"server":"http://127.0.0.1:61812","hookId":"h9","userId":"u9","eventId":"`+h.eventID()+`",
		"createdAt":`+strconv.Itoa(int(clock.Now().UnixMilli()))+`,"type":"follow","body":{"user":{"id":"dummy-user-1"}}}`, string(h.Body))
	assert.True(t, verifySignature("k", h.Header, h.Body, clock.Now()))
	assert.Equal(t, []recorded{{"h9", clock.Now(), http.StatusAccepted}}, hooks.attempts())

	t.Run("no retry", func(t *testing.T) {
		failing := newReceiver(t, always(http.StatusInternalServerError))
		opts := testOptions(clock)
		opts.QuickRetries = 3
		q := openQueue(t, openDB(t, ""), newFakeHooks(), opts)
		status, err := q.SendTest(context.Background(), webhook.TestSend{URL: failing.URL, Type: "note"})
		require.NoError(t, err)
		assert.Equal(t, 500, status)
		assert.Equal(t, 1, failing.count())
	})
}

func TestQuickRetries(t *testing.T) {
	var calls atomic.Int32
	rc := newReceiver(t, func(*http.Request) int {
		if calls.Add(1) < 3 {
			return http.StatusBadGateway
		}
		return http.StatusOK
	})
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(nil)
	opts.QuickRetries = 2
	q := openQueue(t, openDB(t, ""), hooks, opts)
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool {
		ds := list(t, q, "h1")
		return len(ds) == 1 && ds[0].State == webhook.StateDelivered
	}, waitFor, tick)
	assert.Len(t, list(t, q, "h1")[0].Attempts, 1, "two quick retries inside one attempt")
	assert.Equal(t, 3, rc.count())
}

func TestResponseLogIsCapped(t *testing.T) {
	big := strings.Repeat("x", 100<<10)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, big)
	}))
	t.Cleanup(srv.Close)
	hooks := newFakeHooks()
	hooks.add("h1", "u1", srv.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	q.sender.private = func(netip.Addr) bool { return false } // as if srv were a public host
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 1 }, waitFor, tick)
	a := list(t, q, "h1")[0].Attempts
	require.Len(t, a, 1)
	assert.Equal(t, big[:4096], a[0].Response)
	assert.Equal(t, "HTTP 400 Bad Request", a[0].Error)
}

// TestNoResponseBodyFromAllowedPrivateAddress: a receiver reached only
// because delivery.allowedPrivateNetworks lets it (loopback here) leaves its
// status and the attempt's duration in the log, never its answer, so a hook
// cannot be used to read an internal service.
func TestNoResponseBodyFromAllowedPrivateAddress(t *testing.T) {
	cases := []struct {
		name   string
		status int
		state  string
		err    string
	}{
		{name: "success", status: http.StatusOK, state: webhook.StateDelivered},
		{name: "final failure", status: http.StatusForbidden, state: webhook.StateDead, err: "HTTP 403 Forbidden"},
		{name: "retried failure", status: http.StatusInternalServerError, state: webhook.StateReady, err: "HTTP 500 Internal Server Error"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				w.WriteHeader(tc.status)
				_, _ = io.WriteString(w, "internal service secret")
			}))
			t.Cleanup(srv.Close)
			hooks := newFakeHooks()
			hooks.add("h1", "u1", srv.URL, "", "note")
			opts := testOptions(newFakeClock())
			require.Equal(t, loopback, opts.AllowedPrivateNetworks)
			q := openQueue(t, openDB(t, ""), hooks, opts)
			runQueue(t, q)
			enqueue(t, q, event("u1", "note", `{}`))
			require.Eventually(t, func() bool {
				ds := list(t, q, "h1")
				return len(ds) == 1 && ds[0].State == tc.state && len(ds[0].Attempts) == 1
			}, waitFor, tick)
			a := list(t, q, "h1")[0].Attempts[0]
			assert.Equal(t, tc.status, a.Status)
			assert.GreaterOrEqual(t, a.Duration, int64(0))
			assert.Empty(t, a.Response, "no body from an internal address")
			assert.Equal(t, tc.err, a.Error)
			require.NoError(t, q.db.View(func(txn *badger.Txn) error {
				it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true})
				defer it.Close()
				for it.Rewind(); it.Valid(); it.Next() {
					v, err := it.Item().ValueCopy(nil)
					require.NoError(t, err)
					assert.NotContains(t, string(v), "internal service secret", "stored nowhere")
				}
				return nil
			}))
		})
	}
}

func TestMetrics(t *testing.T) {
	clock := newFakeClock()
	rc := newReceiver(t, always(http.StatusTeapot))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	hooks.add("h2", "u2", "http://10.0.0.1/", "", "note") // blocked: retried, never final
	reg := prometheus.NewPedanticRegistry()
	opts := testOptions(clock)
	opts.Registerer = reg
	dir := t.TempDir()
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, opts)
	enqueue(t, q, event("u1", "note", `{}`), event("u2", "note", `{}`), event("u2", "note", `{}`))
	clock.Advance(90 * time.Second)
	assert.Equal(t, 3.0, testutil.ToFloat64(q.m.enqueued))
	assert.Equal(t, 90.0, gaugeValue(t, reg, "oceanhooks_queue_oldest_ready_age_seconds"))
	assert.Equal(t, 3.0, gaugeValue(t, reg, "oceanhooks_queue_ready"))

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	wg.Go(func() { _ = q.Run(ctx) })
	require.Eventually(t, func() bool { return gaugeValue(t, reg, "oceanhooks_queue_dead") == 1 }, waitFor, tick)
	cancel()
	wg.Wait()
	assert.Equal(t, 1.0, testutil.ToFloat64(q.m.attempts.WithLabelValues("final")))
	assert.Equal(t, 1, testutil.CollectAndCount(q.m.latency))

	// Reopened, the gauges are counted from disk.
	require.NoError(t, db.Close())
	db = openDB(t, dir)
	reg = prometheus.NewPedanticRegistry()
	opts.Registerer = reg
	openQueue(t, db, hooks, opts)
	assert.Equal(t, 1.0, gaugeValue(t, reg, "oceanhooks_queue_dead"))
	assert.Equal(t, 0.0, gaugeValue(t, reg, "oceanhooks_queue_leased"))
}

func gaugeValue(t *testing.T, reg *prometheus.Registry, name string) float64 {
	t.Helper()
	mfs, err := reg.Gather()
	require.NoError(t, err)
	for _, mf := range mfs {
		if mf.GetName() == name {
			return mf.GetMetric()[0].GetGauge().GetValue()
		}
	}
	t.Fatalf("no metric %s", name)
	return 0
}

func TestOpenValidates(t *testing.T) {
	db := openDB(t, "")
	cases := []struct {
		name string
		opts Options
	}{
		{"no server URL", Options{}},
		{"relative server URL", Options{ServerURL: "/x"}},
		{"bad prefix", Options{ServerURL: "https://ocean.example", HeaderPrefix: "Foo"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Open(db, newFakeHooks(), tc.opts)
			assert.Error(t, err)
		})
	}
	_, err := Open(nil, newFakeHooks(), Options{ServerURL: "https://ocean.example"})
	assert.Error(t, err)
}

// The queue is the hooks API's Deliveries.
var _ interface {
	CancelHook(ctx context.Context, hookID string) error
	List(ctx context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error)
	Redeliver(ctx context.Context, hookID, deliveryID string) (int, error)
	SendTest(ctx context.Context, t webhook.TestSend) (int, error)
} = (*Queue)(nil)
