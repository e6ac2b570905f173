package queue

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Tests of what only the PostgreSQL queue has: several sidecars on one
// store.

func openPG(t *testing.T, db *pgstore.DB, hooks Hooks, opts Options) *PGQueue {
	t.Helper()
	q, err := OpenPostgres(context.Background(), db, hooks, opts)
	require.NoError(t, err)
	return q
}

// concurrency is a receiver that answers 204 after a moment and records,
// per eventId and per hook, how many of its requests were in flight at
// once, and how often each eventId arrived.
type concurrency struct {
	*httptest.Server
	mu                sync.Mutex
	inEvent, inHook   map[string]int
	maxEvent, maxHook int
	deliveries        map[string]int
}

func newConcurrency(t *testing.T, hold time.Duration) *concurrency {
	c := &concurrency{inEvent: map[string]int{}, inHook: map[string]int{}, deliveries: map[string]int{}}
	c.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var env struct{ EventID, HookID string }
		_ = json.Unmarshal(body, &env)
		c.mu.Lock()
		c.inEvent[env.EventID]++
		c.inHook[env.HookID]++
		c.maxEvent = max(c.maxEvent, c.inEvent[env.EventID])
		c.maxHook = max(c.maxHook, c.inHook[env.HookID])
		c.mu.Unlock()
		time.Sleep(hold) // an attempt that takes a moment, so that attempts overlap
		c.mu.Lock()
		c.inEvent[env.EventID]--
		c.inHook[env.HookID]--
		c.deliveries[env.EventID]++
		c.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(c.Close)
	return c
}

func (c *concurrency) delivered() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.deliveries)
}

// TestPGTwoQueuesShareTheWork: two sidecars' queues on one schema, each
// enqueueing half of a few hundred events for three hooks: every delivery
// arrives once, none is attempted by both at once, and no hook has more
// attempts in flight than PerHookConcurrency across both.
func TestPGTwoQueuesShareTheWork(t *testing.T) {
	rc := newConcurrency(t, 2*time.Millisecond)
	fh := newFakeHooks()
	for _, h := range []string{"h1", "h2", "h3"} {
		fh.add(h, "u1", rc.URL, "", "note")
	}
	opts := testOptions(nil)
	opts.PerHookConcurrency = 2
	db := pgtest.Open(t)
	a := openPG(t, db, fh, opts)
	b := openPG(t, pgtest.Again(t, db), fh, opts)
	start(t, a)
	start(t, b)

	const events = 300
	var wg sync.WaitGroup
	for i := range events {
		q := a
		if i%2 == 1 {
			q = b
		}
		wg.Go(func() { put(t, q, event("u1", "note", fmt.Sprintf(`{"n":%d}`, i))) })
	}
	wg.Wait()
	require.Eventually(t, func() bool { return rc.delivered() == 3*events }, 60*time.Second, 10*time.Millisecond)

	rc.mu.Lock()
	defer rc.mu.Unlock()
	assert.Equal(t, 1, rc.maxEvent, "a delivery attempted by both at once")
	assert.LessOrEqual(t, rc.maxHook, 2, "the per-hook limit holds across sidecars")
	for id, n := range rc.deliveries {
		assert.Equal(t, 1, n, "delivery %s", id)
	}
}

// TestPGLeaseOfADeadQueueExpires: a queue that claimed deliveries and died
// (it never attempts them, never gives them back) holds them only until
// its leases expire; the other queue then delivers them.
func TestPGLeaseOfADeadQueueExpires(t *testing.T) {
	rc := newConcurrency(t, 0)
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(nil)
	opts.AttemptTimeout, opts.ShutdownGrace = 300*time.Millisecond, 200*time.Millisecond
	db := pgtest.Open(t)
	dead := openPG(t, db, fh, opts)
	live := openPG(t, pgtest.Again(t, db), fh, opts)

	put(t, dead, event("u1", "note", `{}`), event("u1", "note", `{}`))
	claimed, err := dead.claim(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, claimed, 2)
	again, err := live.claim(context.Background(), 10)
	require.NoError(t, err)
	assert.Empty(t, again, "leased by the other queue")
	for _, d := range listed(t, live, "h1") {
		assert.Equal(t, webhook.StateLeased, d.State)
	}

	start(t, live)
	require.Eventually(t, func() bool {
		ds := listed(t, live, "h1")
		return ds[0].State == webhook.StateDelivered && ds[1].State == webhook.StateDelivered
	}, wait, poll)
	assert.Equal(t, 2, rc.delivered())
}

// TestPGConfirmOnceAcrossSidecars: several sidecars each read Ocean's event
// stream and confirm the same events at the same time: the event key rows
// make each event delivered once across all of them.
func TestPGConfirmOnceAcrossSidecars(t *testing.T) {
	rc := newConcurrency(t, 0)
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "mention")
	fh.add("h2", "u1", rc.URL, "", "mention")
	db := pgtest.Open(t)
	queues := []*PGQueue{openPG(t, db, fh, testOptions(nil)), openPG(t, pgtest.Again(t, db), fh, testOptions(nil))}
	const events = 50
	var evs []webhook.Event
	for i := range events {
		ev := event("u1", "mention", fmt.Sprintf(`{"n":%d}`, i))
		ev.Key = fmt.Sprintf("note:%d", i)
		evs = append(evs, ev)
	}
	// One event is also held by the API tap of the first sidecar.
	n, err := queues[0].Hold(context.Background(), evs[:1], time.Now().Add(time.Minute), time.Hour)
	require.NoError(t, err)
	require.Equal(t, 2, n)

	var (
		wg    sync.WaitGroup
		total [2]ConfirmResult
	)
	for i, q := range queues {
		wg.Go(func() {
			for _, ev := range evs { // one call per stream message, as the merger makes them
				r, err := q.Confirm(context.Background(), []webhook.Event{ev}, time.Hour)
				assert.NoError(t, err)
				total[i].Released += r.Released
				total[i].New += r.New
				total[i].Repeats += r.Repeats
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 2, total[0].Released+total[1].Released, "the held event's two deliveries, released once")
	assert.Equal(t, 2*(events-1), total[0].New+total[1].New, "one delivery per hook and event")
	assert.Equal(t, events, total[0].Repeats+total[1].Repeats, "the other sidecar's copy of each event")

	for _, q := range queues {
		start(t, q)
	}
	require.Eventually(t, func() bool { return rc.delivered() == 2*events }, wait, poll)
	assert.Len(t, listed(t, queues[1], ""), 2*events)
	rc.mu.Lock()
	defer rc.mu.Unlock()
	for id, n := range rc.deliveries {
		assert.Equal(t, 1, n, "delivery %s", id)
	}
}

// stallWrites makes q's write rounds wait until release is called; rounds
// counts the rounds begun.
func stallWrites(t *testing.T, q *PGQueue) (rounds *atomic.Int64, release func()) {
	gate := make(chan struct{})
	rounds = &atomic.Int64{}
	q.fault = func(op string) error {
		if op == "write" {
			rounds.Add(1)
			<-gate
		}
		return nil
	}
	var once sync.Once
	release = func() { once.Do(func() { close(gate) }) }
	t.Cleanup(release)
	return rounds, release
}

// waiting counts the items waiting for the next round.
func (g *groupCommit[T]) waiting() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return len(g.pending)
}

// TestPGEnqueueSharesCommits: concurrent Enqueue calls are committed
// together; each call returns only after its commit, and a caller whose
// context ends first gets its error while its write goes on and is
// delivered.
func TestPGEnqueueSharesCommits(t *testing.T) {
	rc := newConcurrency(t, 0)
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "note")
	q := openPG(t, pgtest.Open(t), fh, testOptions(nil))
	rounds, release := stallWrites(t, q)

	// The first call's commit stalls; the calls that come meanwhile wait
	// for the next, one round for all of them.
	first := make(chan error, 1)
	go func() {
		_, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{}`)})
		first <- err
	}()
	require.Eventually(t, func() bool { return rounds.Load() == 1 }, wait, poll)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() { put(t, q, event("u1", "note", `{}`)) })
	}
	require.Eventually(t, func() bool { return q.writes.waiting() == 20 }, wait, poll)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	_, err := q.Enqueue(ctx, []webhook.Event{event("u1", "note", `{}`)})
	require.ErrorIs(t, err, context.DeadlineExceeded, "gave up waiting")
	assert.Empty(t, listed(t, q, "h1"), "nothing is committed yet")
	release()
	require.NoError(t, <-first)
	wg.Wait()
	assert.Equal(t, int64(2), rounds.Load(), "the calls that waited shared one commit")

	start(t, q)
	require.Eventually(t, func() bool { return rc.delivered() == 22 }, wait, poll, "the abandoned call's write went on")
}

// TestPGWritesShareCommits: Hold, Confirm and Enqueue calls that come while
// a commit is in flight share the next commit, each decided in the order
// it came (a hold and the confirmation of its event in one round release
// the held deliveries; a second confirmation is a repeat), and each returns
// what it stored once that commit is made.
func TestPGWritesShareCommits(t *testing.T) {
	until := time.Now().Add(time.Hour)
	hold := func(key string, want int) func(t *testing.T, q *PGQueue) {
		return func(t *testing.T, q *PGQueue) {
			n, err := q.Hold(context.Background(), []webhook.Event{keyed("u1", "mention", key, `{}`)}, until, time.Hour)
			assert.NoError(t, err)
			assert.Equal(t, want, n, "hold %s", key)
		}
	}
	confirm := func(key string, want ConfirmResult) func(t *testing.T, q *PGQueue) {
		return func(t *testing.T, q *PGQueue) {
			r, err := q.Confirm(context.Background(), []webhook.Event{keyed("u1", "mention", key, `{}`)}, time.Hour)
			assert.NoError(t, err)
			assert.Equal(t, want, r, "confirm %s", key)
		}
	}
	enqueue := func(t *testing.T, q *PGQueue) {
		n, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "mention", `{}`)})
		assert.NoError(t, err)
		assert.Equal(t, 1, n)
	}
	many := func(n int, call func(i int) func(t *testing.T, q *PGQueue)) []func(t *testing.T, q *PGQueue) {
		var calls []func(t *testing.T, q *PGQueue)
		for i := range n {
			calls = append(calls, call(i))
		}
		return calls
	}
	tests := []struct {
		name   string
		calls  []func(t *testing.T, q *PGQueue)
		states map[string]int // the deliveries afterwards, by state (the stalled enqueue's included)
	}{
		{
			name:   "holds",
			calls:  many(20, func(i int) func(t *testing.T, q *PGQueue) { return hold(fmt.Sprint("note:", i), 1) }),
			states: map[string]int{StateHeld: 20, webhook.StateReady: 1},
		},
		{
			name: "confirms",
			calls: many(20, func(i int) func(t *testing.T, q *PGQueue) {
				return confirm(fmt.Sprint("note:", i), ConfirmResult{New: 1})
			}),
			states: map[string]int{webhook.StateReady: 21},
		},
		{
			name: "holds, confirms and enqueues of shared keys",
			calls: []func(t *testing.T, q *PGQueue){
				hold("note:1", 1),
				enqueue,
				confirm("note:1", ConfirmResult{Released: 1}),
				confirm("note:1", ConfirmResult{Repeats: 1}),
				hold("note:1", 0),
				confirm("note:2", ConfirmResult{New: 1}),
				hold("note:2", 0),
				hold("note:3", 1),
				enqueue,
			},
			states: map[string]int{StateHeld: 1, webhook.StateReady: 5},
		},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fh := newFakeHooks()
			fh.add("h1", "u1", "http://127.0.0.1:9/", "", "mention")
			q := openPG(t, pgtest.Open(t), fh, testOptions(nil))
			rounds, release := stallWrites(t, q)
			var wg sync.WaitGroup
			wg.Go(func() { enqueue(t, q) })
			require.Eventually(t, func() bool { return rounds.Load() == 1 }, wait, poll)
			for i, call := range tc.calls { // one at a time, so that they are decided in this order
				wg.Go(func() { call(t, q) })
				require.Eventually(t, func() bool { return q.writes.waiting() == i+1 }, wait, poll)
			}
			release()
			wg.Wait()
			assert.Equal(t, int64(2), rounds.Load(), "the calls that waited shared one commit")
			got := map[string]int{}
			for _, d := range listed(t, q, "h1") {
				got[d.State]++
			}
			assert.Equal(t, tc.states, got)
		})
	}
}

// TestPGWriteRoundSurvivesABadCall: a call whose part of a shared round
// fails (a body that is not JSON) gets its error, and the calls that
// shared the round with it are stored all the same.
func TestPGWriteRoundSurvivesABadCall(t *testing.T) {
	fh := newFakeHooks()
	fh.add("h1", "u1", "http://127.0.0.1:9/", "", "mention")
	q := openPG(t, pgtest.Open(t), fh, testOptions(nil))
	rounds, release := stallWrites(t, q)
	ctx := context.Background()
	var wg sync.WaitGroup
	wg.Go(func() { put(t, q, event("u1", "mention", `{}`)) })
	require.Eventually(t, func() bool { return rounds.Load() == 1 }, wait, poll)

	calls := []func(){
		func() {
			n, err := q.Hold(ctx, []webhook.Event{keyed("u1", "mention", "note:1", `{}`)}, time.Now().Add(time.Hour), time.Hour)
			assert.NoError(t, err)
			assert.Equal(t, 1, n)
		},
		func() {
			_, err := q.Confirm(ctx, []webhook.Event{keyed("u1", "mention", "note:2", `{"unclosed":`)}, time.Hour)
			assert.Error(t, err, "its own part failed")
		},
		func() {
			r, err := q.Confirm(ctx, []webhook.Event{keyed("u1", "mention", "note:3", `{}`)}, time.Hour)
			assert.NoError(t, err)
			assert.Equal(t, ConfirmResult{New: 1}, r)
		},
	}
	for i, call := range calls {
		wg.Go(call)
		require.Eventually(t, func() bool { return q.writes.waiting() == i+1 }, wait, poll)
	}
	release()
	wg.Wait()
	got := map[string]int{}
	for _, d := range listed(t, q, "h1") {
		got[d.State]++
	}
	assert.Equal(t, map[string]int{StateHeld: 1, webhook.StateReady: 2}, got)
}

// TestPGDeliveryIDTakenIsRenewed: two sidecars whose id generators drew the
// same node make the same delivery id in the same millisecond; the second
// to store it gets fresh ids and its call succeeds, and both deliveries
// are kept.
func TestPGDeliveryIDTakenIsRenewed(t *testing.T) {
	tests := []struct {
		name string
		call func(q *PGQueue) (int, error)
	}{
		{"enqueue", func(q *PGQueue) (int, error) {
			return q.Enqueue(context.Background(), []webhook.Event{event("u1", "mention", `{}`)})
		}},
		{"hold", func(q *PGQueue) (int, error) {
			return q.Hold(context.Background(), []webhook.Event{keyed("u1", "mention", "note:1", `{}`)}, time.Now().Add(time.Hour), time.Hour)
		}},
		{"confirm", func(q *PGQueue) (int, error) {
			r, err := q.Confirm(context.Background(), []webhook.Event{keyed("u1", "mention", "note:1", `{}`)}, time.Hour)
			return r.New, err
		}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			fh := newFakeHooks()
			fh.add("h1", "u1", "http://127.0.0.1:9/", "", "mention")
			clock := newFakeClock() // one millisecond for both
			logs := &testlog.Buffer{}
			opts := testOptions(clock) // the same seed: the same node
			opts.Logger = slog.New(slog.NewTextHandler(logs, nil))
			db := pgtest.Open(t)
			first := openPG(t, db, fh, testOptions(clock))
			second := openPG(t, pgtest.Again(t, db), fh, opts)

			n, err := first.Enqueue(context.Background(), []webhook.Event{event("u1", "mention", `{}`)})
			require.NoError(t, err)
			require.Equal(t, 1, n)
			n, err = tc.call(second)
			require.NoError(t, err)
			assert.Equal(t, 1, n)
			assert.Contains(t, logs.String(), "delivery id was taken", "the first id collided")
			ds := listed(t, second, "h1")
			require.Len(t, ds, 2, "both deliveries are stored")
			assert.NotEqual(t, ds[0].ID, ds[1].ID)
		})
	}
}
