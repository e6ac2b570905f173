package queue

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const waitFor, tick = 10 * time.Second, 5 * time.Millisecond

// TestReceiverDownThenUp: a receiver that fails for several backoff steps and
// then recovers gets every event, each exactly once successfully, every retry
// with the same eventId.
func TestReceiverDownThenUp(t *testing.T) {
	clock := newFakeClock()
	var up atomic.Bool
	rc := newReceiver(t, func(*http.Request) int {
		if up.Load() {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	hooks := newFakeHooks()
	hooks.add("ha", "u1", rc.URL, "", "note")
	hooks.add("hb", "u1", rc.URL, "", "note")
	opts := testOptions(clock)
	opts.BackoffBase = time.Second
	q := openQueue(t, openDB(t, ""), hooks, opts)
	runQueue(t, q)

	const events = 10
	for i := range events {
		require.Equal(t, 2, enqueue(t, q, event("u1", "note", `{"n":`+strconv.Itoa(i)+`}`)))
	}
	const deliveries = 2 * events
	const downSteps = 3
	for step := 1; step <= downSteps; step++ {
		require.Eventually(t, func() bool { return rc.count() == step*deliveries }, waitFor, tick, "step %d", step)
		require.Eventually(t, func() bool { return q.readyNow() == deliveries }, waitFor, tick)
		assert.Equal(t, int64(0), q.dead.Load())
		// Nothing is due before its backoff: (2^n − 1) s plus at most 20 %.
		clock.Advance(time.Duration(1<<step-1) * time.Second / 2)
		assert.Never(t, func() bool { return rc.count() > step*deliveries }, 50*time.Millisecond, tick)
		clock.Advance(time.Duration(1<<step-1) * time.Second)
	}
	up.Store(true)
	require.Eventually(t, func() bool { return rc.count() == (downSteps+1)*deliveries }, waitFor, tick)
	require.Eventually(t, func() bool { return q.readyNow() == 0 && q.leased.Load() == 0 }, waitFor, tick)

	seen := map[string]int{}
	okByID := map[string]int{}
	for _, h := range rc.got() {
		seen[h.eventID()]++
		if h.Status == http.StatusOK {
			okByID[h.eventID()]++
		}
	}
	assert.Len(t, seen, deliveries)
	for id, n := range seen {
		assert.Equal(t, downSteps+1, n, "attempts of %s", id)
		assert.Equal(t, 1, okByID[id], "successes of %s", id)
	}
	for _, d := range list(t, q, "") {
		assert.Equal(t, webhook.StateDelivered, d.State)
		require.Len(t, d.Attempts, downSteps+1)
		assert.Equal(t, 503, d.Attempts[0].Status)
		assert.Equal(t, "HTTP 503 Service Unavailable", d.Attempts[0].Error)
		assert.Equal(t, 200, d.Attempts[downSteps].Status)
	}
	require.Eventually(t, func() bool {
		last := hooks.latest()
		return last["ha"].Status == http.StatusOK && last["hb"].Status == http.StatusOK
	}, waitFor, tick, "each hook's latest attempt is recorded on it")
	assert.LessOrEqual(t, len(hooks.attempts()), (downSteps+1)*deliveries, "at most one record per attempt")
}

// hangingReceiver holds every request until released (or the client leaves).
type hangingReceiver struct {
	*receiver
	release  chan struct{}
	inflight atomic.Int32
	peak     atomic.Int32
	once     sync.Once
}

func newHangingReceiver(t *testing.T) *hangingReceiver {
	h := &hangingReceiver{release: make(chan struct{})}
	h.receiver = newReceiver(t, func(r *http.Request) int {
		n := h.inflight.Add(1)
		defer h.inflight.Add(-1)
		for {
			p := h.peak.Load()
			if n <= p || h.peak.CompareAndSwap(p, n) {
				break
			}
		}
		select {
		case <-h.release:
		case <-r.Context().Done():
		}
		return http.StatusOK
	})
	t.Cleanup(h.unblock) // runs before the server's Close
	return h
}

func (h *hangingReceiver) unblock() { h.once.Do(func() { close(h.release) }) }

// The receiver reads the body before hanging, so r.Context() ends when the
// client gives up.

func TestPerHookIsolation(t *testing.T) {
	slow := newHangingReceiver(t)
	fast := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("hslow", "u1", slow.URL, "", "note")
	hooks.add("hfast", "u2", fast.URL, "", "note")
	opts := testOptions(nil)
	opts.Workers = 4
	opts.PerHookConcurrency = 2
	opts.AttemptTimeout = time.Minute
	q := openQueue(t, openDB(t, ""), hooks, opts)
	runQueue(t, q)

	for i := range 20 {
		enqueue(t, q, event("u1", "note", `{"n":`+strconv.Itoa(i)+`}`))
	}
	require.Eventually(t, func() bool { return slow.inflight.Load() == 2 }, waitFor, tick)
	for i := range 10 {
		enqueue(t, q, event("u2", "note", `{"n":`+strconv.Itoa(i)+`}`))
	}
	require.Eventually(t, func() bool { return fast.count() == 10 }, waitFor, tick, "the fast hook is not held up")
	assert.Equal(t, int32(2), slow.peak.Load(), "the hanging hook holds only its own slots")
	require.Eventually(t, func() bool { return q.leased.Load() == 2 && q.readyNow() == 18 }, waitFor, tick,
		"the slow hook's two attempts are leased, the rest wait")

	slow.unblock()
	require.Eventually(t, func() bool { return q.readyNow() == 0 && q.leased.Load() == 0 }, waitFor, tick)
	assert.Equal(t, int32(2), slow.peak.Load())
}

func TestCancelHook(t *testing.T) {
	t.Run("pending and dead", func(t *testing.T) {
		clock := newFakeClock()
		rc := newReceiver(t, func(r *http.Request) int { return http.StatusInternalServerError })
		hooks := newFakeHooks()
		hooks.add("h1", "u1", rc.URL, "", "note")
		hooks.add("h2", "u1", rc.URL, "", "follow")
		opts := testOptions(clock)
		opts.MaxAttempts = 2
		q := openQueue(t, openDB(t, ""), hooks, opts)
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`), event("u1", "note", `{}`), event("u1", "follow", `{}`))
		require.Eventually(t, func() bool { return rc.count() == 3 && q.readyNow() == 3 }, waitFor, tick)
		clock.Advance(2 * time.Minute)
		require.Eventually(t, func() bool { return q.dead.Load() == 3 }, waitFor, tick)
		enqueue(t, q, event("u1", "note", `{}`)) // and one pending
		require.Eventually(t, func() bool { return rc.count() == 7 && q.readyNow() == 1 }, waitFor, tick)

		ids := deliveryIDs(t, q, "h1")
		hooks.remove("h1")
		require.NoError(t, q.CancelHook(context.Background(), "h1"))
		require.Eventually(t, func() bool { return len(list(t, q, "h1")) == 0 && q.jobs.pending() == 0 }, waitFor, tick, "removed in the background")
		assert.Len(t, list(t, q, "h2"), 1, "another hook's deliveries stay")
		assert.Equal(t, int64(0), q.readyNow())
		assert.Equal(t, int64(1), q.dead.Load())
		assert.Empty(t, keysOf(t, q, "h1", ids), "no key of the hook's deliveries is left")

		clock.Advance(time.Hour)
		assert.Never(t, func() bool { return rc.count() > 7 }, 100*time.Millisecond, tick)
	})
	t.Run("in flight", func(t *testing.T) {
		slow := newHangingReceiver(t)
		hooks := newFakeHooks()
		hooks.add("h1", "u1", slow.URL, "", "note")
		opts := testOptions(nil)
		opts.AttemptTimeout = time.Minute
		q := openQueue(t, openDB(t, ""), hooks, opts)
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`))
		require.Eventually(t, func() bool { return slow.inflight.Load() == 1 }, waitFor, tick)
		ids := deliveryIDs(t, q, "h1")
		require.NoError(t, q.CancelHook(context.Background(), "h1"))
		require.Eventually(t, func() bool { return q.leased.Load() == 0 && q.jobs.pending() == 0 }, waitFor, tick)
		slow.unblock() // the attempt succeeds after the cancel
		require.Eventually(t, func() bool { return len(hooks.attempts()) == 1 }, waitFor, tick)
		require.Eventually(t, func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.busy == 0 }, waitFor, tick)
		assert.Empty(t, list(t, q, "h1"), "the outcome does not resurrect the delivery")
		assert.Empty(t, keysOf(t, q, "h1", ids))
		assert.Equal(t, int64(0), q.leased.Load())
		assert.Equal(t, int64(0), q.readyNow())
	})
}

func TestHookDeletedDropsDelivery(t *testing.T) {
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	enqueue(t, q, event("u1", "note", `{}`))
	hooks.remove("h1")
	runQueue(t, q)
	require.Eventually(t, func() bool { return q.readyNow() == 0 && q.leased.Load() == 0 }, waitFor, tick)
	assert.Empty(t, list(t, q, "h1"))
	assert.Zero(t, rc.count())
}

func TestEditedURLAppliesToNextAttempt(t *testing.T) {
	clock := newFakeClock()
	old := newReceiver(t, always(http.StatusBadGateway))
	moved := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", old.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return old.count() == 1 && q.readyNow() == 1 }, waitFor, tick)
	hooks.setURL("h1", moved.URL)
	clock.Advance(2 * time.Minute)
	require.Eventually(t, func() bool { return moved.count() == 1 }, waitFor, tick)
	assert.Equal(t, old.got()[0].eventID(), moved.got()[0].eventID())
	assert.Equal(t, 1, old.count())
}

func TestGoneDeactivatesHook(t *testing.T) {
	rc := newReceiver(t, always(http.StatusGone))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 1 }, waitFor, tick)
	assert.True(t, hooks.isDeactivated("h1"))
	require.Len(t, hooks.attempts(), 1)
	assert.Equal(t, http.StatusGone, hooks.attempts()[0].Status)
	ds := list(t, q, "h1")
	require.Len(t, ds, 1)
	assert.Equal(t, webhook.StateDead, ds[0].State)
	assert.Equal(t, 0, enqueue(t, q, event("u1", "note", `{}`)), "an inactive hook gets no new deliveries")
}

func TestDeadLetters(t *testing.T) {
	t.Run("final status", func(t *testing.T) {
		clock := newFakeClock()
		rc := newReceiver(t, always(http.StatusBadRequest))
		hooks := newFakeHooks()
		hooks.add("h1", "u1", rc.URL, "", "note")
		opts := testOptions(clock)
		opts.DeadLetterTTL = 24 * time.Hour
		q := openQueue(t, openDB(t, ""), hooks, opts)
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`))
		require.Eventually(t, func() bool { return q.dead.Load() == 1 }, waitFor, tick)
		assert.Equal(t, 1, rc.count(), "a 4xx is not retried")
		ds := list(t, q, "h1")
		require.Len(t, ds, 1)
		assert.Equal(t, webhook.StateDead, ds[0].State)
		assert.Nil(t, ds[0].NextAt)

		ids := deliveryIDs(t, q, "h1")
		clock.Advance(24*time.Hour - time.Second)
		n, err := q.sweep(clock.Now())
		require.NoError(t, err)
		assert.Zero(t, n)
		assert.Len(t, list(t, q, "h1"), 1)

		clock.Advance(2 * time.Second)
		n, err = q.sweep(clock.Now())
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Empty(t, list(t, q, "h1"))
		assert.Empty(t, keysOf(t, q, "h1", ids))
		assert.Equal(t, int64(0), q.dead.Load())
	})
	t.Run("out of attempts", func(t *testing.T) {
		clock := newFakeClock()
		rc := newReceiver(t, always(http.StatusInternalServerError))
		hooks := newFakeHooks()
		hooks.add("h1", "u1", rc.URL, "", "note")
		opts := testOptions(clock)
		opts.MaxAttempts = 3
		q := openQueue(t, openDB(t, ""), hooks, opts)
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`))
		for i := 1; i <= 3; i++ {
			// Advance only once the attempt's outcome is recorded: advancing
			// earlier would schedule the retry after the advanced clock.
			require.Eventually(t, func() bool {
				ds := list(t, q, "h1")
				return rc.count() == i && len(ds) == 1 && len(ds[0].Attempts) == i
			}, waitFor, tick)
			clock.Advance(time.Hour)
		}
		require.Eventually(t, func() bool { return q.dead.Load() == 1 }, waitFor, tick)
		assert.Never(t, func() bool { return rc.count() > 3 }, 50*time.Millisecond, tick)
		ds := list(t, q, "h1")
		require.Len(t, ds, 1)
		assert.Len(t, ds[0].Attempts, 3)
	})
	t.Run("delivered records expire too", func(t *testing.T) {
		clock := newFakeClock()
		rc := newReceiver(t, always(http.StatusOK))
		hooks := newFakeHooks()
		hooks.add("h1", "u1", rc.URL, "", "note")
		opts := testOptions(clock)
		opts.Retention = time.Hour
		q := openQueue(t, openDB(t, ""), hooks, opts)
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`))
		require.Eventually(t, func() bool {
			ds := list(t, q, "h1")
			return len(ds) == 1 && ds[0].State == webhook.StateDelivered
		}, waitFor, tick)
		ids := deliveryIDs(t, q, "h1")
		clock.Advance(time.Hour + time.Millisecond)
		n, err := q.sweep(clock.Now())
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Empty(t, keysOf(t, q, "h1", ids))
	})
}

// deliveryIDs are the ids of hook's deliveries.
func deliveryIDs(t *testing.T, q *Queue, hook string) []string {
	t.Helper()
	var ids []string
	for _, d := range list(t, q, hook) {
		ids = append(ids, d.ID)
	}
	require.NotEmpty(t, ids)
	return ids
}

// keysOf lists every key that names one of ids or is in hook's indexes.
func keysOf(t *testing.T, q *Queue, hook string, ids []string) []string {
	t.Helper()
	var keys []string
	for _, k := range allKeys(t, q) {
		if strings.HasPrefix(k, pHook+hook+"/") || strings.HasPrefix(k, pReady+hook+"/") ||
			slices.ContainsFunc(ids, func(id string) bool { return strings.Contains(k, id) }) {
			keys = append(keys, k)
		}
	}
	return keys
}

// TestMaintenanceLoops: Run collects value-log garbage and sweeps expired
// dead letters on its own.
func TestMaintenanceLoops(t *testing.T) {
	clock := newFakeClock()
	rc := newReceiver(t, always(http.StatusUnprocessableEntity))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(clock)
	opts.GCInterval = 10 * time.Millisecond
	opts.SweepInterval = 10 * time.Millisecond
	opts.DeadLetterTTL = time.Hour
	q := openQueue(t, openDB(t, ""), hooks, opts)
	runQueue(t, q)
	big := `{"note":{"text":"` + strings.Repeat("a", 8<<10) + `"}}` // in the value log
	enqueue(t, q, event("u1", "note", big), event("u1", "note", big))
	require.Eventually(t, func() bool { return q.dead.Load() == 2 }, waitFor, tick)
	require.Eventually(t, func() bool { return q.gcRuns.Load() >= 2 }, waitFor, tick)
	ids := deliveryIDs(t, q, "h1")
	clock.Advance(time.Hour + time.Millisecond)
	require.Eventually(t, func() bool { return q.dead.Load() == 0 }, waitFor, tick)
	assert.Empty(t, list(t, q, "h1"))
	assert.Empty(t, keysOf(t, q, "h1", ids))
}

// TestSweepSeeksPastWhatItRemoved: the sweep removes expired deliveries a
// batch at a time, each batch's scan of the expiry index starting past the
// keys the last one removed, and the next sweep starting there too: the
// deletion markers they leave are not scanned again (a scan from the
// index's start walked over all of them for every batch, quadratic in the
// deliveries that expire together). What expires later is still removed,
// also after a sweep that was asked about a time far ahead.
func TestSweepSeeksPastWhatItRemoved(t *testing.T) {
	const n = 2*batch + 10
	clock := newFakeClock()
	var status atomic.Int64
	status.Store(http.StatusOK)
	rc := newReceiver(t, func(*http.Request) int { return int(status.Load()) })
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(clock)
	opts.Retention = time.Hour
	opts.DeadLetterTTL = 2 * time.Hour
	q := openQueue(t, openDB(t, ""), hooks, opts)
	runQueue(t, q)
	delivered := func(want int) func() bool {
		return func() bool {
			return q.readyKeys.Load() == 0 && q.dead.Load() == 0 && rc.count() == want && q.leased.Load() == 0
		}
	}
	events := make([]webhook.Event, n)
	for i := range events {
		events[i] = event("u1", "note", `{}`)
	}
	enqueue(t, q, events...)
	require.Eventually(t, delivered(n), waitFor, tick)
	require.NoError(t, q.commits.sync())
	var last []byte
	for _, k := range allKeys(t, q) {
		if strings.HasPrefix(k, pExpiry) && k > string(last) {
			last = []byte(k)
		}
	}
	require.NotNil(t, last)

	clock.Advance(time.Hour + time.Second)
	removed, err := q.sweep(clock.Now())
	require.NoError(t, err)
	assert.Equal(t, n, removed)
	q.mu.Lock()
	from := q.sweptTo
	q.mu.Unlock()
	assert.Greater(t, string(from), string(last), "the next scan starts past every key removed")

	// Later expiries are found from there.
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, delivered(n+1), waitFor, tick)
	require.NoError(t, q.commits.sync())
	removed, err = q.sweep(clock.Now())
	require.NoError(t, err)
	assert.Zero(t, removed, "not expired yet")
	clock.Advance(time.Hour + time.Second)
	removed, err = q.sweep(clock.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, removed)

	// A sweep asked about a time far ahead moves the next scan's start no
	// further than what deliveries made from now on can expire at: a dead
	// letter (kept 2 h) removed by it does not hide a delivered one made
	// afterwards (kept 1 h), which expires before it.
	status.Store(http.StatusBadRequest)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 1 && q.leased.Load() == 0 }, waitFor, tick)
	removed, err = q.sweep(clock.Now().Add(30 * 24 * time.Hour))
	require.NoError(t, err)
	assert.Equal(t, 1, removed)
	status.Store(http.StatusOK)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, delivered(n+3), waitFor, tick)
	clock.Advance(time.Hour + time.Second)
	removed, err = q.sweep(clock.Now())
	require.NoError(t, err)
	assert.Equal(t, 1, removed)
	assert.Empty(t, list(t, q, "h1"))
}
