package pgstore_test

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/pgstore"
)

// leader is one process calling Lead: it counts how often its run started
// and whether it runs now.
type leader struct {
	db      *pgstore.DB
	cancel  context.CancelFunc
	done    chan struct{}
	terms   atomic.Int32
	running atomic.Bool
}

// startLeaders runs Lead("stream") on each db; running counts the runs
// going on at once across all of them, and most the highest count seen.
func startLeaders(t *testing.T, dbs []*pgstore.DB, running, most *atomic.Int32) []*leader {
	t.Helper()
	ls := make([]*leader, len(dbs))
	for i, db := range dbs {
		ctx, cancel := context.WithCancel(context.Background())
		l := &leader{db: db, cancel: cancel, done: make(chan struct{})}
		ls[i] = l
		go func() {
			defer close(l.done)
			assert.NoError(t, db.Lead(ctx, "stream", func(ctx context.Context) error {
				l.terms.Add(1)
				l.running.Store(true)
				n := running.Add(1)
				for {
					m := most.Load()
					if n <= m || most.CompareAndSwap(m, n) {
						break
					}
				}
				<-ctx.Done()
				running.Add(-1)
				l.running.Store(false)
				return nil
			}))
		}()
		t.Cleanup(func() {
			cancel()
			<-l.done
		})
	}
	return ls
}

func runningOne(ls []*leader) (int, bool) {
	found, n := -1, 0
	for i, l := range ls {
		if l.running.Load() {
			found, n = i, n+1
		}
	}
	return found, n == 1
}

// Of three sidecars, one leads at a time; when it stops, another takes
// over; a stopped leader's Lead returns.
func TestLeadOneAtATimeWithFailover(t *testing.T) {
	db := pgtest.Open(t)
	dbs := []*pgstore.DB{db, pgtest.Again(t, db), pgtest.Again(t, db)}
	var running, most atomic.Int32
	ls := startLeaders(t, dbs, &running, &most)

	var first int
	require.Eventually(t, func() bool {
		var ok bool
		first, ok = runningOne(ls)
		return ok
	}, 10*time.Second, 10*time.Millisecond)
	assert.True(t, ls[first].db.Leading("stream"))

	ls[first].cancel()
	select {
	case <-ls[first].done:
	case <-time.After(10 * time.Second):
		t.Fatal("Lead did not return after its context ended")
	}
	var second int
	require.Eventually(t, func() bool {
		var ok bool
		second, ok = runningOne(ls)
		return ok
	}, 10*time.Second, 10*time.Millisecond, "another sidecar takes over")
	assert.NotEqual(t, first, second)
	assert.False(t, ls[first].db.Leading("stream"))
	assert.Equal(t, int32(1), most.Load(), "never two leaders at once")
}

// A leader whose lock connection is lost (the server ended it, so the lock
// is free at once) stops running, and a sidecar that takes the lock at that
// very moment does not run before it stopped: never two at a time.
func TestLeadStopsWhenItsConnectionIsLost(t *testing.T) {
	db := pgtest.Open(t)
	var running, most atomic.Int32
	a := startLeaders(t, []*pgstore.DB{db}, &running, &most)[0]
	require.Eventually(t, a.running.Load, 10*time.Second, 10*time.Millisecond)

	// End the session holding this schema's lock (other tests may hold
	// advisory locks on the same server), then start a second sidecar at
	// once: it finds the lock free on its first try.
	ctx := context.Background()
	var ended bool
	require.NoError(t, db.Pool().QueryRow(ctx, `
		WITH k AS (SELECT hashtext('oceanhooks.lead.' || $1 || '.stream')::bigint AS v)
		SELECT pg_terminate_backend(l.pid) FROM pg_locks l, k
		 WHERE l.locktype = 'advisory' AND l.granted
		   AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
		   AND l.classid = ((k.v >> 32) & 4294967295)::oid AND l.objid = (k.v & 4294967295)::oid`,
		db.Schema()).Scan(&ended))
	require.True(t, ended)
	b := startLeaders(t, []*pgstore.DB{pgtest.Again(t, db)}, &running, &most)[0]

	require.Eventually(t, func() bool { return !a.running.Load() }, 10*time.Second, 10*time.Millisecond,
		"the leader that lost its connection stops")
	require.Eventually(t, func() bool {
		return b.running.Load() || a.terms.Load() > 1
	}, 15*time.Second, 10*time.Millisecond, "a new term starts")
	assert.Equal(t, int32(1), most.Load(), "never two leaders at once")
}

// Names are separate locks: leading "stream" does not keep another name.
func TestLeadNamesAreSeparate(t *testing.T) {
	db := pgtest.Open(t)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	started := make(chan string, 2)
	for _, name := range []string{"a", "b"} {
		wg.Go(func() {
			_ = db.Lead(ctx, name, func(ctx context.Context) error {
				started <- name
				<-ctx.Done()
				return nil
			})
		})
	}
	got := map[string]bool{}
	for range 2 {
		select {
		case n := <-started:
			got[n] = true
		case <-time.After(10 * time.Second):
			t.Fatal("both names lead")
		}
	}
	assert.True(t, db.Leading("a") && db.Leading("b"))
}
