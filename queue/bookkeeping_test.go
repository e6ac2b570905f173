package queue

import (
	"context"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// TestOutcomesShareCommits: delivering costs no commit of its own per
// delivery: the outcomes of a burst are written together (a handful of
// commits for hundreds of deliveries), the leases they end are in memory
// only, and every delivery ends delivered with its attempt in the log.
func TestOutcomesShareCommits(t *testing.T) {
	const n = 400
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	for i := range 8 {
		hooks.add("h"+strconv.Itoa(i), "u1", rc.URL, "", "note")
	}
	opts := testOptions(nil)
	opts.Workers = 1 // one attempt at a time: outcomes do not pile up behind a commit by themselves
	q := openQueue(t, openDB(t, ""), hooks, opts)
	events := make([]webhook.Event, n/8)
	for i := range events {
		events[i] = event("u1", "note", `{}`)
	}
	require.Equal(t, n, enqueue(t, q, events...))
	before := q.commits.rounds.Load()
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() == n && q.leased.Load() == 0 }, waitFor, tick)
	rounds := q.commits.rounds.Load() - before
	t.Logf("%d deliveries, %d commits", n, rounds)
	assert.Less(t, rounds, int64(n/4), "outcomes share commits")
	assert.Empty(t, keysWithPrefix(t, q, pLease), "leases are never written")
	for i := range 8 {
		for _, d := range list(t, q, "h"+strconv.Itoa(i)) {
			assert.Equal(t, webhook.StateDelivered, d.State)
			assert.Len(t, d.Attempts, 1)
		}
	}
	assert.Zero(t, q.readyNow())
}

// TestDeadLettersAndAttemptLogSurviveACleanRestart: outcomes wait in memory
// for a commit to share, and Run commits every one of them before it
// returns, so a clean stop keeps dead letters, retries and attempt logs.
func TestDeadLettersAndAttemptLogSurviveACleanRestart(t *testing.T) {
	dir := t.TempDir()
	clock := newFakeClock()
	rc := newReceiver(t, func(r *http.Request) int {
		if r.URL.Path == "/dead" {
			return http.StatusForbidden
		}
		return http.StatusServiceUnavailable
	})
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL+"/dead", "", "note")
	hooks.add("h2", "u1", rc.URL+"/retry", "", "note")
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, testOptions(clock))
	q.commits.delay = time.Hour // nothing but Run's end commits the outcomes
	enqueue(t, q, event("u1", "note", `{}`))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	require.Eventually(t, func() bool { return rc.count() == 2 }, waitFor, tick)
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.busy == 0
	}, waitFor, tick, "both attempts ended; their outcomes wait for a commit")
	assert.Equal(t, int64(2), q.leased.Load(), "not committed yet")
	cancel()
	require.NoError(t, <-done)
	require.NoError(t, db.Close())

	db = openDB(t, dir)
	q = openQueue(t, db, hooks, testOptions(clock))
	assert.Equal(t, int64(1), q.dead.Load())
	assert.Equal(t, int64(1), q.readyNow())
	dead := list(t, q, "h1")
	require.Len(t, dead, 1)
	assert.Equal(t, webhook.StateDead, dead[0].State)
	require.Len(t, dead[0].Attempts, 1)
	assert.Equal(t, http.StatusForbidden, dead[0].Attempts[0].Status)
	retry := list(t, q, "h2")
	require.Len(t, retry, 1)
	assert.Equal(t, webhook.StateReady, retry[0].State)
	require.Len(t, retry[0].Attempts, 1)
	assert.Equal(t, http.StatusServiceUnavailable, retry[0].Attempts[0].Status)
	require.NotNil(t, retry[0].NextAt)
	assert.True(t, retry[0].NextAt.After(clock.Now()), "due after its backoff")
}

// TestLeaseExpiresWhileRunning: a lease that outlives the attempt timeout
// (its outcome cannot be committed: the disk hangs) returns to ready while
// Run runs, not only at the next start: the delivery is sent again, and
// once the disk is back the first outcome settles it and the second writes
// nothing over it.
func TestLeaseExpiresWhileRunning(t *testing.T) {
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(nil)
	opts.AttemptTimeout = 100 * time.Millisecond
	opts.ShutdownGrace = 50 * time.Millisecond
	q := openQueue(t, openDB(t, ""), hooks, opts)
	enqueue(t, q, event("u1", "note", `{}`))
	_, release := stall(t, q)
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() >= 2 }, waitFor, tick, "sent again after its lease expired")
	got := rc.got()
	assert.Equal(t, got[0].eventID(), got[1].eventID())
	release()
	require.Eventually(t, func() bool {
		ds := list(t, q, "h1")
		return len(ds) == 1 && ds[0].State == webhook.StateDelivered && q.leased.Load() == 0
	}, waitFor, tick)
	assert.Zero(t, q.readyNow())
	assert.Len(t, list(t, q, "h1")[0].Attempts, 1, "one outcome recorded, the other found it settled")
}

// TestLatestAttemptsInBatches: the hooks' latestSentAt/latestStatus are
// handed to the hook store in batches (far fewer writes than attempts), and
// each hook ends with its latest attempt.
func TestLatestAttemptsInBatches(t *testing.T) {
	const perHook = 50
	var calls atomic.Int64
	rc := newReceiver(t, func(*http.Request) int {
		calls.Add(1)
		return http.StatusOK
	})
	hooks := newFakeHooks()
	for i := range 4 {
		hooks.add("h"+strconv.Itoa(i), "u1", rc.URL, "", "note")
	}
	opts := testOptions(nil)
	opts.PollInterval = 50 * time.Millisecond
	q := openQueue(t, openDB(t, ""), hooks, opts)
	events := make([]webhook.Event, perHook)
	for i := range events {
		events[i] = event("u1", "note", `{}`)
	}
	enqueue(t, q, events...)
	runQueue(t, q)
	require.Eventually(t, func() bool {
		last := hooks.latest()
		return rc.count() == 4*perHook && len(last) == 4
	}, waitFor, tick)
	for id, r := range hooks.latest() {
		assert.Equal(t, http.StatusOK, r.Status, id)
	}
	hooks.mu.Lock()
	batches := hooks.batches
	hooks.mu.Unlock()
	assert.Less(t, batches, 4*perHook/4, "one write per interval, not per attempt")

	t.Run("a batch the store refuses is handed over again", func(t *testing.T) {
		hooks.mu.Lock()
		hooks.refuse, hooks.recorded = 2, nil
		hooks.mu.Unlock()
		enqueue(t, q, events[:1]...)
		require.Eventually(t, func() bool { return len(hooks.latest()) == 4 }, waitFor, tick)
		hooks.mu.Lock()
		defer hooks.mu.Unlock()
		assert.Zero(t, hooks.refuse)
	})
}

// TestReadsAheadAndSeeks: a hook's ready index is read readAhead keys at a
// time, each read starting where the last one ended (past the keys already
// delivered and deleted, which are never scanned again).
func TestReadsAheadAndSeeks(t *testing.T) {
	const n = 300
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	events := make([]webhook.Event, n)
	for i := range events {
		events[i] = event("u1", "note", `{}`)
	}
	enqueue(t, q, events...)
	ds := list(t, q, "h1") // newest first
	newest := keyReady("h1", ds[0].NextAt.UnixMilli(), ds[0].ID)

	q.mu.Lock()
	st := q.stateLocked("h1")
	q.mu.Unlock()
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() == n }, waitFor, tick)
	assert.LessOrEqual(t, q.reads.Load(), int64(n/readAhead+3), "read ahead, not per delivery")
	q.mu.Lock()
	from, buffered := st.from, q.buffered
	q.mu.Unlock()
	assert.Zero(t, buffered, "nothing is held read ahead once all is delivered")
	assert.Greater(t, string(from), string(newest), "the next read starts past every delivered key")

	// Idle, the hook's state is dropped but where its reads start is kept:
	// its next delivery is taken as stored, without a read from the index's
	// start (over the deletion markers of all it delivered).
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.sched["h1"] == nil
	}, waitFor, tick)
	q.mu.Lock()
	kept := q.resume["h1"]
	q.mu.Unlock()
	assert.Equal(t, from, kept.from)
	assert.True(t, kept.caughtUp)
	reads := q.reads.Load()
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return rc.count() == n+1 }, waitFor, tick)
	assert.Equal(t, reads, q.reads.Load(), "no read of the index for a caught-up hook's new delivery")
}

// TestEarliestDueHookFirst: with one worker, hooks are served in the order
// their deliveries fell due, whatever order they were stored in.
func TestEarliestDueHookFirst(t *testing.T) {
	clock := newFakeClock()
	var mu sync.Mutex
	var order []string
	rc := newReceiver(t, func(r *http.Request) int {
		mu.Lock()
		order = append(order, r.Header.Get("X-Ocean-Hook-Id"))
		mu.Unlock()
		return http.StatusOK
	})
	hooks := newFakeHooks()
	for _, h := range []string{"h1", "h2", "h3"} {
		hooks.add(h, "u-"+h, rc.URL, "", "note")
	}
	opts := testOptions(clock)
	opts.Workers = 1
	q := openQueue(t, openDB(t, ""), hooks, opts)
	for _, h := range []string{"h2", "h3", "h1"} { // stored in this order, a second apart
		enqueue(t, q, event("u-"+h, "note", `{}`))
		clock.Advance(time.Second)
	}
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() == 3 }, waitFor, tick)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, []string{"h2", "h3", "h1"}, order)
}

// TestSendersKeepConnections: a receiver that fails for good (quick retries
// exhausted) does not cost a healthy receiver its keep-alive connection, as
// go-retryablehttp's closing of idle connections would.
func TestSendersKeepConnections(t *testing.T) {
	var conns atomic.Int64
	healthy := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusOK)
	}))
	healthy.Config.ConnState = func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}
	healthy.Start()
	t.Cleanup(healthy.Close)
	failing := newReceiver(t, always(http.StatusServiceUnavailable))
	opts := testOptions(nil)
	opts.QuickRetries = 1
	_, host, err := opts.withDefaults()
	require.NoError(t, err)
	s := newSender(&opts, host)
	send := func(to string) int {
		return s.send(context.Background(), s.quick, to, "h1", "", "e1", []byte(`{}`), time.Now()).Status
	}
	require.Equal(t, http.StatusOK, send(healthy.URL))
	require.Equal(t, http.StatusServiceUnavailable, send(failing.URL))
	require.Equal(t, http.StatusOK, send(healthy.URL))
	assert.Equal(t, int64(1), conns.Load(), "the healthy receiver's connection was kept")
}
