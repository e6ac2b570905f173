package queue

import (
	"context"
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// deadLetters stores n deliveries of user's `note` for hook (user's only
// hook on it) and makes them dead letters through the claim and outcome path
// (no HTTP).
func deadLetters(t *testing.T, q *Queue, user, hook string, n int) {
	t.Helper()
	events := make([]webhook.Event, n)
	for i := range events {
		events[i] = event(user, "note", `{}`)
	}
	require.Equal(t, n, enqueue(t, q, events...))
	now := q.opts.Now()
	got := leaseDue(t, q, hook, n)
	require.Len(t, got, n)
	for _, l := range got {
		st := q.settlementOf(l, webhook.Attempt{At: now, Status: 400, Error: "HTTP 400 Bad Request"}, outFinal, 0, now)
		require.Equal(t, webhook.StateDead, settleNow(t, q, l, st.update))
	}
	require.Equal(t, int64(n), q.dead.Load())
}

// TestRedeliverAllInTheBackground: redelivering every dead letter of a hook
// answers at once, having only stored the job; Run requeues them in batches,
// and a job a restart interrupted is resumed by the next Run.
func TestRedeliverAllInTheBackground(t *testing.T) {
	const n = 2*batch + 40
	dir := t.TempDir()
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, testOptions(newFakeClock()))
	deadLetters(t, q, "u1", "h1", n)

	got, err := q.Redeliver(context.Background(), "h1", "")
	require.NoError(t, err)
	assert.Zero(t, got)
	assert.Equal(t, int64(n), q.dead.Load(), "nothing requeued inside the call")
	assert.Len(t, keysWithPrefix(t, q, pJob), 1, "the job is stored")

	// A restart before Run did the work: the next Run finds the job.
	require.NoError(t, db.Close())
	db = openDB(t, dir)
	q = openQueue(t, db, hooks, testOptions(newFakeClock()))
	require.Equal(t, int64(n), q.dead.Load())
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() == n }, waitFor, tick)
	require.Eventually(t, func() bool { return q.jobs.pending() == 0 && q.dead.Load() == 0 }, waitFor, tick)
	assert.Empty(t, keysWithPrefix(t, q, pJob))
	seen := map[string]bool{}
	for _, h := range rc.got() {
		seen[h.eventID()] = true
	}
	assert.Len(t, seen, n, "each dead letter sent once")
}

// TestRemovalInTheBackground: CancelHook answers at once; Run removes the
// hook's deliveries in batches, stops between two batches on shutdown, and
// the next Run finishes the removal on its own, since the hook is gone.
func TestRemovalInTheBackground(t *testing.T) {
	const n = 3*batch + 10
	dir := t.TempDir()
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note")
	hooks.add("h2", "u2", "http://example.invalid/", "", "note")
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, testOptions(newFakeClock()))
	deadLetters(t, q, "u1", "h1", n)
	enqueue(t, q, event("u2", "note", `{}`))
	keep := list(t, q, "h2")

	hooks.remove("h1")
	require.NoError(t, q.CancelHook(context.Background(), "h1"))
	assert.Len(t, deliveryIDs(t, q, "h1"), min(n, MaxListLimit), "nothing removed inside the call")

	// Shutdown during the second batch: Run stops after it.
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	var batches atomic.Int32
	q.fault = func(op string) error {
		if op == "job" && batches.Add(1) == 2 {
			cancel()
		}
		return nil
	}
	require.NoError(t, q.Run(ctx))
	left := q.dead.Load()
	assert.Equal(t, int64(n-2*batch), left, "two batches of %d, then it stopped", batch)

	// Restart: the hook no longer exists, so Run removes what is left.
	require.NoError(t, db.Close())
	db = openDB(t, dir)
	q = openQueue(t, db, hooks, testOptions(newFakeClock()))
	require.Equal(t, left, q.dead.Load())
	runQueue(t, q)
	require.Eventually(t, func() bool { return q.dead.Load() == 0 && q.jobs.pending() == 0 }, waitFor, tick)
	assert.Empty(t, keysOf(t, q, "h1", nil))
	assert.Empty(t, list(t, q, "h1"))
	assert.Equal(t, keep[0].ID, list(t, q, "h2")[0].ID, "another hook's deliveries stay")
}

// TestLeftoversOfAHookDeletedBeforeACrash: the hook store deleted the hook
// but the process died before CancelHook; the next Run removes its
// deliveries, and only its.
func TestLeftoversOfAHookDeletedBeforeACrash(t *testing.T) {
	dir := t.TempDir()
	hooks := newFakeHooks()
	// 192.0.2.1 is refused by the guard: ready deliveries stay ready.
	hooks.add("h1", "u1", "http://192.0.2.1/", "", "note")
	hooks.add("h1x", "u2", "http://192.0.2.1/", "", "note") // its prefix q/h/h1… is h1's too
	hooks.add("h2", "u3", "http://192.0.2.1/", "", "note")
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, testOptions(newFakeClock()))
	deadLetters(t, q, "u1", "h1", 5)
	enqueue(t, q, event("u1", "note", `{}`), event("u2", "note", `{}`), event("u3", "note", `{}`))
	require.NoError(t, db.Close())

	hooks.remove("h1")
	db = openDB(t, dir)
	q = openQueue(t, db, hooks, testOptions(newFakeClock()))
	runQueue(t, q)
	require.Eventually(t, func() bool { return len(keysOf(t, q, "h1", nil)) == 0 && q.jobs.pending() == 0 }, waitFor, tick)
	assert.Equal(t, int64(0), q.dead.Load())
	assert.Len(t, list(t, q, "h1x"), 1)
	assert.Len(t, list(t, q, "h2"), 1)
}

// TestRemovalSeeksPastWhatItRemoved: each batch of a removal reads the
// hook's index from past the last delivery the batch before removed (a read
// from the index's start walked over the deletion markers of every batch
// before: quadratic in the hook's deliveries). A delivery stored below that
// point meanwhile (an enqueue that made its id before the hook went and
// committed after) is still removed before the removal ends.
func TestRemovalSeeksPastWhatItRemoved(t *testing.T) {
	const n = 2*batch + 10
	clock := newFakeClock()
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
	events := make([]webhook.Event, n)
	for i := range events {
		events[i] = event("u1", "note", `{}`)
	}
	enqueue(t, q, events...)
	late, err := q.prepare([]webhook.Event{event("u1", "note", `{}`)}) // its id is older than what follows
	require.NoError(t, err)
	require.Len(t, late, 1)
	clock.Advance(time.Second)
	enqueue(t, q, events...)
	ids, err := q.hookIDs("h1", "", 2*n+1)
	require.NoError(t, err)
	require.Len(t, ids, 2*n)
	hooks.remove("h1")

	removed, done, err := q.cancelBatch("h1")
	require.NoError(t, err)
	require.False(t, done)
	require.Equal(t, batch, removed)
	q.mu.Lock()
	at := q.cancelAt["h1"]
	q.mu.Unlock()
	assert.Equal(t, ids[batch-1], at, "the next batch reads from past the last one removed")

	// Once the removal is past it, the late delivery lands.
	total := removed
	for at <= late[0].id {
		removed, done, err = q.cancelBatch("h1")
		require.NoError(t, err)
		require.False(t, done)
		total += removed
		q.mu.Lock()
		at = q.cancelAt["h1"]
		q.mu.Unlock()
	}
	require.NoError(t, q.commits.wait(func(txn *badger.Txn) error { return putAll(txn, late) }, nil))
	for !done {
		removed, done, err = q.cancelBatch("h1")
		require.NoError(t, err)
		total += removed
	}
	assert.Equal(t, 2*n+1, total)
	assert.Empty(t, keysOf(t, q, "h1", nil))
	q.mu.Lock()
	assert.NotContains(t, q.cancelAt, "h1", "nothing is kept of a finished removal")
	q.mu.Unlock()
}
