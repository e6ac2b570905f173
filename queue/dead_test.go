package queue

import (
	"context"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// trackingHooks is a hook store that follows runs of failed attempts (a
// failureTracker, as hooks.Store is): it notes every report and deactivates
// the hook at the failed attempt number disableAt.
type trackingHooks struct {
	*fakeHooks
	disableAt int

	mu      sync.Mutex
	reports []bool // failed, per attempt
}

func (h *trackingHooks) Attempted(hookID string, _ time.Time, failed bool) string {
	h.mu.Lock()
	h.reports = append(h.reports, failed)
	n := 0
	for _, f := range h.reports {
		if f {
			n++
		}
	}
	h.mu.Unlock()
	if failed && n == h.disableAt {
		h.Deactivate(hookID)
		return "hook deactivated: every delivery attempt failed"
	}
	return ""
}

func (h *trackingHooks) reported() []bool {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]bool(nil), h.reports...)
}

// TestAttemptsReportedForAutoDisable: every attempt of a queued delivery is
// reported to a hook store that follows failures, as failed or not by its
// outcome, and the reason the store gives for deactivating the hook heads
// that attempt's log entry.
func TestAttemptsReportedForAutoDisable(t *testing.T) {
	var calls atomic.Int64
	rc := newReceiver(t, func(*http.Request) int {
		if calls.Add(1) == 1 {
			return http.StatusOK
		}
		return http.StatusServiceUnavailable
	})
	hooks := &trackingHooks{fakeHooks: newFakeHooks(), disableAt: 2}
	hooks.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(nil)
	opts.MaxAttempts = 2
	opts.BackoffBase = time.Millisecond
	opts.BackoffCap = time.Millisecond
	q := openQueue(t, openDB(t, ""), hooks, opts)
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return rc.count() == 1 && len(hooks.reported()) == 1 }, waitFor, tick)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 1 }, waitFor, tick)

	assert.Equal(t, []bool{false, true, true}, hooks.reported())
	assert.True(t, hooks.isDeactivated("h1"))
	ds := list(t, q, "h1")
	require.Len(t, ds, 2)
	require.Len(t, ds[0].Attempts, 2)
	assert.Equal(t, "HTTP 503 Service Unavailable", ds[0].Attempts[0].Error)
	assert.True(t, strings.HasPrefix(ds[0].Attempts[1].Error, "hook deactivated: every delivery attempt failed; this attempt: HTTP 503"),
		"the attempt log says why: %q", ds[0].Attempts[1].Error)
}

// TestDeadLettersPerHook: the dead letters of each hook are counted as they
// die, are redelivered, expire and are cancelled, and again from disk at
// Open.
func TestDeadLettersPerHook(t *testing.T) {
	var healed atomic.Bool
	rc := newReceiver(t, func(*http.Request) int {
		if healed.Load() {
			return http.StatusOK
		}
		return http.StatusForbidden
	})
	hooks := newFakeHooks()
	for _, h := range []string{"h1", "h2", "h3"} {
		hooks.add(h, "u-"+h, rc.URL+"/"+h, "", "note")
	}
	dir := t.TempDir()
	db := openDB(t, dir)
	q := openQueue(t, db, hooks, testOptions(nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	enqueue(t, q, event("u-h1", "note", `{}`), event("u-h1", "note", `{}`), event("u-h1", "note", `{}`),
		event("u-h2", "note", `{}`), event("u-h3", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 5 }, waitFor, tick)
	assert.Equal(t, map[string]int{"h1": 3, "h2": 1, "h3": 1}, q.DeadLetters())

	healed.Store(true)
	one := list(t, q, "h1")[0].ID
	n, err := q.Redeliver(context.Background(), "h1", one)
	require.NoError(t, err)
	require.Equal(t, 1, n)
	require.Eventually(t, func() bool { return q.dead.Load() == 4 && rc.count() == 6 }, waitFor, tick)
	assert.Equal(t, map[string]int{"h1": 2, "h2": 1, "h3": 1}, q.DeadLetters())

	require.NoError(t, q.CancelHook(context.Background(), "h3"))
	require.Eventually(t, func() bool { return q.dead.Load() == 3 }, waitFor, tick)
	assert.Equal(t, map[string]int{"h1": 2, "h2": 1}, q.DeadLetters())
	cancel()
	require.NoError(t, <-done)

	require.NoError(t, db.Close())
	db = openDB(t, dir)
	q = openQueue(t, db, hooks, testOptions(nil))
	assert.Equal(t, map[string]int{"h1": 2, "h2": 1}, q.DeadLetters(), "counted from disk at Open")

	_, err = q.sweep(time.Now().Add(DefaultDeadLetterTTL + time.Hour))
	require.NoError(t, err)
	assert.Zero(t, q.dead.Load())
	assert.Empty(t, q.DeadLetters(), "expired dead letters are no longer counted")
}
