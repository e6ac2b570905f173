package queue

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// TestPGOutcomeWithNULInResponse: a receiver whose answer holds a NUL byte
// (which PostgreSQL's jsonb refuses as \u0000) still has its delivery
// recorded delivered, once, and so do the other deliveries written in the
// same batch: no outcome is lost, and nothing is sent again when the
// leases end.
func TestPGOutcomeWithNULInResponse(t *testing.T) {
	var mu sync.Mutex
	hits := map[string]int{}
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		hook := r.Header.Get("X-Ocean-Hook-Id")
		mu.Lock()
		hits[hook]++
		mu.Unlock()
		if hook == "h1" {
			_, _ = io.WriteString(w, "ok\x00binary")
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(srv.Close)
	fh := newFakeHooks()
	fh.add("h1", "u1", srv.URL, "", "note")
	fh.add("h2", "u1", srv.URL, "", "note")
	opts := testOptions(nil)
	opts.AttemptTimeout = time.Second // a lost outcome's delivery is attempted again soon
	q := openPG(t, pgtest.Open(t), fh, opts)
	q.sender.private = func(netip.Addr) bool { return false } // as if srv were a public host: its answer is logged
	start(t, q)
	require.Equal(t, 2, put(t, q, event("u1", "note", `{}`)))

	require.Eventually(t, func() bool {
		return stateOf(t, q, "h1") == webhook.StateDelivered && stateOf(t, q, "h2") == webhook.StateDelivered
	}, wait, poll)
	a := listed(t, q, "h1")[0].Attempts
	require.Len(t, a, 1)
	assert.Equal(t, http.StatusOK, a[0].Status)
	assert.Contains(t, a[0].Response, "binary")
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, map[string]int{"h1": 1, "h2": 1}, hits)
}

// TestPGHoldOfAKeyTheSweepRemoves: a Hold of an expired event key whose row
// the expiry sweep deletes while the Hold is deciding (after the Hold found
// the row there, before it locked it) still stores the key held, so that
// the confirmation releases the held delivery instead of storing a second
// one.
func TestPGHoldOfAKeyTheSweepRemoves(t *testing.T) {
	clock := newFakeClock()
	fh := newFakeHooks()
	fh.add("h1", "u1", "http://127.0.0.1:9/", "", "mention")
	db := pgtest.Open(t)
	q := openPG(t, db, fh, testOptions(clock))
	ctx := context.Background()
	ev := event("u1", "mention", `{}`)
	ev.Key = "k1"
	h := hashKey(ev.Key)
	// The key was confirmed long ago: expired, its row not swept yet.
	_, err := db.Pool().Exec(ctx, `INSERT INTO queue_event_keys (key, mode, expires) VALUES ($1, 'c', 1)`, h)
	require.NoError(t, err)

	// The sweep's DELETE takes the row first (emulated: it locks the row,
	// lets the Hold queue up behind it, then deletes it and commits).
	sweep, err := db.Pool().Begin(ctx)
	require.NoError(t, err)
	t.Cleanup(func() { _ = sweep.Rollback(ctx) })
	var pid int
	require.NoError(t, sweep.QueryRow(ctx, `SELECT pg_backend_pid()`).Scan(&pid))
	_, err = sweep.Exec(ctx, `SELECT 1 FROM queue_event_keys WHERE key = $1 FOR UPDATE`, h)
	require.NoError(t, err)
	held := make(chan error, 1)
	go func() {
		_, err := q.Hold(ctx, []webhook.Event{ev}, clock.Now().Add(time.Minute), time.Hour)
		held <- err
	}()
	require.Eventually(t, func() bool {
		var n int
		err := db.Pool().QueryRow(ctx, `SELECT count(*) FROM pg_stat_activity WHERE $1 = ANY(pg_blocking_pids(pid))`, pid).Scan(&n)
		return err == nil && n > 0
	}, wait, poll, "the Hold waits for the sweep's row lock")
	_, err = sweep.Exec(ctx, `DELETE FROM queue_event_keys WHERE expires <= $1`, clock.Now().UnixMilli())
	require.NoError(t, err)
	require.NoError(t, sweep.Commit(ctx))
	require.NoError(t, <-held)

	r, err := q.Confirm(ctx, []webhook.Event{ev}, time.Hour)
	require.NoError(t, err)
	assert.Equal(t, ConfirmResult{Released: 1}, r, "the confirmation releases the held delivery")
	ds, err := q.List(ctx, "h1", MaxListLimit, "")
	require.NoError(t, err)
	assert.Len(t, ds, 1)
}

// TestPGOutcomeTheDatabaseRefusesHoldsUpNoOther: when PostgreSQL refuses
// one outcome of a round (here an attempt log entry that is not JSON), the
// other outcomes of the round are written all the same, each on its own,
// and only the refused one waits to be tried again.
func TestPGOutcomeTheDatabaseRefusesHoldsUpNoOther(t *testing.T) {
	fh := newFakeHooks()
	fh.add("h1", "u1", "http://127.0.0.1:9/", "", "note")
	fh.add("h2", "u1", "http://127.0.0.1:9/", "", "note")
	q := openPG(t, pgtest.Open(t), fh, testOptions(nil))
	require.Equal(t, 2, put(t, q, event("u1", "note", `{}`)))
	leases, err := q.claim(context.Background(), 10)
	require.NoError(t, err)
	require.Len(t, leases, 2)

	delivered := verdict{state: webhook.StateDelivered, expires: time.Now().Add(time.Hour).UnixMilli()}
	bad := &pgOutcome{l: leases[0], kind: outcomeSettle, v: delivered, entry: []byte(`{"not json`)}
	good := &pgOutcome{l: leases[1], kind: outcomeSettle, v: delivered, entry: []byte(`{"status":204}`)}
	q.writeOutcomes([]*pgOutcome{bad, good})

	assert.Equal(t, webhook.StateDelivered, stateOf(t, q, leases[1].hook), "the good outcome is written")
	assert.NotEqual(t, webhook.StateDelivered, stateOf(t, q, leases[0].hook), "the refused one is not")
	q.parkMu.Lock()
	defer q.parkMu.Unlock()
	require.Len(t, q.parked, 1, "only the refused outcome waits to be tried again")
	assert.Same(t, bad, q.parked[0])
}

// TestPGUnknownHookKeptWhileDeaf: a delivery whose hook this sidecar does
// not know, old enough to count as its hook's leftover, is given back, not
// dropped, while the store's listeners are not all connected (this sidecar
// may be missing a hook made through another); once they are, it is
// dropped as a deleted hook's.
func TestPGUnknownHookKeptWhileDeaf(t *testing.T) {
	clock := newFakeClock()
	fh := newFakeHooks()
	fh.add("h1", "u1", "http://127.0.0.1:9/", "", "note") // nothing listens: every attempt fails
	db := pgtest.Open(t)
	logs := &testlog.Buffer{}
	opts := testOptions(clock)
	opts.Logger = slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	q := openPG(t, db, fh, opts)
	require.Equal(t, 1, put(t, q, event("u1", "note", `{}`)))
	clock.Advance(2 * unknownGrace) // old enough to count as a deleted hook's

	// A listener of the same store that cannot finish connecting.
	ctx, cancel := context.WithCancel(context.Background())
	release := make(chan struct{})
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
	})
	wg.Go(func() {
		_ = db.Listen(ctx, []string{db.Channel("deaf")}, func(ctx context.Context) error {
			select {
			case <-release:
			case <-ctx.Done():
			}
			return nil
		}, func(string, string) {})
	})
	start(t, q)
	// The hook is known at first (also to the look for a restart's leftovers,
	// which would remove an old delivery of an unknown hook): one failed
	// attempt, then it is gone here.
	require.Eventually(t, func() bool {
		d := listed(t, q, "h1")
		return len(d) == 1 && len(d[0].Attempts) == 1 && strings.Contains(logs.String(), "looked for the work a restart left")
	}, wait, poll)
	fh.remove("h1")
	const msg = "hook not known here yet"
	for n := 1; n <= 3; n++ {
		clock.Advance(time.Hour) // due again
		require.Eventually(t, func() bool { return strings.Count(logs.String(), msg) >= n }, wait, poll,
			"given back, again and again")
		require.False(t, db.Connected())
		assert.Len(t, listed(t, q, "h1"), 1, "not dropped while deaf")
	}
	assert.NotContains(t, logs.String(), "hook is gone")

	close(release)
	require.Eventually(t, db.Connected, wait, poll)
	clock.Advance(time.Hour)
	require.Eventually(t, func() bool { return len(listed(t, q, "h1")) == 0 }, wait, poll, "dropped once connected")
	assert.Contains(t, logs.String(), "hook is gone")
}

// TestPGRedeliverAllTakenOverElsewhere: a redeliver-all job this sidecar
// runs whose stored job another sidecar replaced (a newer call through it)
// is left to that sidecar: this one drops its copy instead of trying it
// again at every poll for ever.
func TestPGRedeliverAllTakenOverElsewhere(t *testing.T) {
	rc := newScripted(t)
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "note")
	rc.answer("h1", answer{status: http.StatusNotFound})
	db := pgtest.Open(t)
	var paused atomic.Bool
	a := openPG(t, db, fh, testOptions(nil))
	a.fault = func(op string) error {
		if op == "job" && paused.Load() {
			return errors.New("paused by the test")
		}
		return nil
	}
	b := openPG(t, pgtest.Again(t, db), fh, testOptions(nil))
	start(t, a)
	for range 3 {
		put(t, a, event("u1", "note", `{}`))
	}
	require.Eventually(t, func() bool { return len(a.DeadLetters()) == 1 && a.DeadLetters()["h1"] == 3 }, wait, poll)

	paused.Store(true)
	_, err := a.Redeliver(context.Background(), "h1", "")
	require.NoError(t, err)
	require.Equal(t, 1, a.jobs.pending())
	// A newer call through the other sidecar (not running: its job stays
	// stored for whoever resumes it) replaces the stored job.
	put(t, a, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return a.DeadLetters()["h1"] == 4 }, wait, poll)
	_, err = b.Redeliver(context.Background(), "h1", "")
	require.NoError(t, err)

	paused.Store(false)
	require.Eventually(t, func() bool { return a.jobs.pending() == 0 }, wait, poll,
		"the job another sidecar took over is dropped here")
	var stored int
	require.NoError(t, db.Pool().QueryRow(context.Background(), "SELECT count(*) FROM queue_jobs").Scan(&stored))
	assert.Equal(t, 1, stored, "the other sidecar's job stays stored, for it (or a restart) to run")
}
