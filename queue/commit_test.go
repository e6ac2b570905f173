package queue

import (
	"context"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// stepRounds makes each commit of q wait until step is called, one commit
// per call; began receives once per commit that began. Every commit goes
// through at cleanup.
func stepRounds(t *testing.T, q *Queue) (began <-chan struct{}, step func()) {
	t.Helper()
	b := make(chan struct{}, 64)
	tokens := make(chan struct{})
	stop := make(chan struct{})
	q.commits.before = func() {
		b <- struct{}{}
		select {
		case <-tokens:
		case <-stop:
		}
	}
	t.Cleanup(func() { close(stop) })
	return b, func() { tokens <- struct{}{} }
}

// returned reports whether ch has a value, without waiting.
func returned[T any](ch <-chan T) bool { return len(ch) > 0 }

// TestOpenNeedsSyncedCommits: an enqueue is durable when its commit
// returns only on a database that syncs every commit; Open refuses any
// other, and BadgerOptions opens it so.
func TestOpenNeedsSyncedCommits(t *testing.T) {
	assert.True(t, BadgerOptions(t.TempDir()).SyncWrites, "BadgerOptions syncs every commit")
	db, err := badger.Open(testBadgerOptions(t.TempDir()).WithSyncWrites(false))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	_, err = Open(db, newFakeHooks(), testOptions(nil))
	require.Error(t, err)
	assert.Contains(t, err.Error(), "SyncWrites")
}

// TestEnqueueWaitsForTheCommitThatCoversIt: concurrent enqueues share one
// commit, and a caller returns only once the commit holding its deliveries
// has returned (so has been synced): one that arrives while a commit is in
// flight is not answered by that commit but by the next, which takes every
// caller that arrived meanwhile.
func TestEnqueueWaitsForTheCommitThatCoversIt(t *testing.T) {
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	began, step := stepRounds(t, q)
	call := func(n int) <-chan error {
		done := make(chan error, 1)
		go func() {
			_, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{"n":`+string(rune('0'+n))+`}`)})
			done <- err
		}()
		return done
	}

	first := call(0)
	<-began // the first commit is in flight, with the first caller only
	var later []<-chan error
	for i := range 8 {
		later = append(later, call(i+1))
	}
	require.Eventually(t, func() bool {
		q.commits.mu.Lock()
		defer q.commits.mu.Unlock()
		return len(q.commits.pending) == 8
	}, waitFor, tick, "the callers that came during the commit wait for the next")
	step()
	require.NoError(t, <-first)
	<-began // the second commit
	assert.Never(t, func() bool {
		for _, ch := range later {
			if returned(ch) {
				return true
			}
		}
		return false
	}, 50*time.Millisecond, tick, "no caller returns before the commit holding its deliveries")
	step()
	for _, ch := range later {
		require.NoError(t, <-ch)
	}
	assert.Equal(t, int64(2), q.commits.rounds.Load(), "nine enqueues, two commits")
	assert.Equal(t, int64(9), q.readyNow())
	assert.Len(t, list(t, q, "h1"), 9)
}

// TestEveryWriteWaitsForItsCommit: the other calls that store deliveries
// (Hold, Confirm, a redelivery, the end of holds) also return only after the
// commit holding their writes.
func TestEveryWriteWaitsForItsCommit(t *testing.T) {
	cases := []struct {
		name  string
		setup func(t *testing.T, q *Queue) // before commits are held
		call  func(q *Queue) error
		check func(t *testing.T, q *Queue)
	}{
		{
			name: "hold",
			call: func(q *Queue) error {
				_, err := q.Hold(context.Background(), []webhook.Event{keyed("u1", "note", "a", `{}`)}, time.Now().Add(time.Hour), remember)
				return err
			},
			check: func(t *testing.T, q *Queue) { assert.Equal(t, int64(1), q.held.Load()) },
		},
		{
			name: "confirm",
			call: func(q *Queue) error {
				_, err := q.Confirm(context.Background(), []webhook.Event{keyed("u1", "note", "a", `{}`)}, remember)
				return err
			},
			check: func(t *testing.T, q *Queue) { assert.Equal(t, int64(1), q.readyNow()) },
		},
		{
			name: "redeliver",
			setup: func(t *testing.T, q *Queue) {
				deadLetters(t, q, "u1", "h1", 1)
			},
			call: func(q *Queue) error {
				_, err := q.Redeliver(context.Background(), "h1", list(t, q, "h1")[0].ID)
				return err
			},
			check: func(t *testing.T, q *Queue) { assert.Equal(t, webhook.StateReady, list(t, q, "h1")[0].State) },
		},
		{
			name: "settle holds",
			setup: func(t *testing.T, q *Queue) {
				hold(t, q, time.Now().Add(-time.Second), keyed("u1", "note", "a", `{}`))
			},
			call: func(q *Queue) error {
				_, _, err := q.Settle(time.Now(), 10, func(time.Time) bool { return true })
				return err
			},
			check: func(t *testing.T, q *Queue) { assert.Equal(t, int64(1), q.readyNow()) },
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			hooks := newFakeHooks()
			hooks.add("h1", "u1", "http://example.invalid/", "", "note")
			q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
			if tc.setup != nil {
				tc.setup(t, q)
			}
			began, step := stepRounds(t, q)
			done := make(chan error, 1)
			go func() { done <- tc.call(q) }()
			<-began
			assert.Never(t, func() bool { return returned(done) }, 50*time.Millisecond, tick, "returned before its commit")
			step()
			require.NoError(t, <-done)
			tc.check(t, q)
		})
	}
}

// TestOneFailingWriteLeavesTheOthers: a write of a round that fails (here a
// redelivery of an unknown id) gets its error; the others of the same round
// are committed.
func TestOneFailingWriteLeavesTheOthers(t *testing.T) {
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	began, step := stepRounds(t, q)
	first := make(chan error, 1)
	go func() {
		_, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{}`)})
		first <- err
	}()
	<-began
	bad := make(chan error, 1)
	good := make(chan error, 1)
	go func() { _, err := q.Redeliver(context.Background(), "h1", "0000000000000000"); bad <- err }()
	go func() {
		_, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{}`)})
		good <- err
	}()
	require.Eventually(t, func() bool {
		q.commits.mu.Lock()
		defer q.commits.mu.Unlock()
		return len(q.commits.pending) == 2
	}, waitFor, tick)
	step()
	<-began
	step()
	require.NoError(t, <-first)
	assert.ErrorIs(t, <-bad, webhook.ErrNoSuchDelivery)
	require.NoError(t, <-good)
	assert.Len(t, list(t, q, "h1"), 2)
}

// TestEnqueueTooLargeForOneTransaction: a call whose deliveries do not fit
// in one transaction is written in several, all before it returns, and
// every delivery is stored.
func TestEnqueueTooLargeForOneTransaction(t *testing.T) {
	hooks := newFakeHooks()
	hooks.add("h1", "u1", "http://example.invalid/", "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	body := `{"text":"` + strings.Repeat("x", 512<<10) + `"}`
	events := make([]webhook.Event, 4) // 2 MiB of bodies; a transaction of this database takes less
	for i := range events {
		events[i] = event("u1", "note", body)
	}
	require.Equal(t, 4, enqueue(t, q, events...))
	assert.Equal(t, int64(4), q.readyNow())
	assert.Len(t, keysWithPrefix(t, q, pBody), 4)
}
