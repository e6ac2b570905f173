package e2e

import (
	"net/http"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// createHook creates a hook through the sidecar and returns its id.
func createHook(t *testing.T, base, token, url string, on ...string) string {
	t.Helper()
	status, body := call(t, base, "i/webhooks/create", token,
		map[string]any{"name": "e2e", "url": url, "secret": "s3cret", "on": on}, true)
	require.Equal(t, http.StatusOK, status, "%s", body)
	return gjson.GetBytes(body, "id").String()
}

// types lists the event types the receiver got, per path.
func types(rc *receiver) map[string][]string {
	out := map[string][]string{}
	for _, d := range rc.deliveries() {
		out[d.Path] = append(out[d.Path], gjson.GetBytes(d.Body, "type").String())
	}
	return out
}

// TestUnsubscribedCallsCostNothing: with nobody subscribed to what a call can
// cause, the sidecar makes no extra request of Ocean for it (not even /api/i),
// and the client's answer is Ocean's.
func TestUnsubscribedCallsCostNothing(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	// Bob subscribes only to reply: follows and plain notes concern nobody.
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "reply")
	fake.ResetCounts()

	status, _ := call(t, sc.url(), "following/create", oceantest.TokenAlice, map[string]any{"userId": oceantest.BobID}, true)
	require.Equal(t, http.StatusOK, status)
	status, _ = call(t, sc.url(), "following/delete", oceantest.TokenAlice, map[string]any{"userId": oceantest.BobID}, true)
	require.Equal(t, http.StatusOK, status)
	status, _ = call(t, sc.url(), "notes/reactions/create", oceantest.TokenAlice, map[string]any{"noteId": "nope", "reaction": "👍"}, true)
	require.NotZero(t, status)

	for _, ep := range []string{"i", "users/relation", "users/show", "notes/show"} {
		assert.Zero(t, fake.Calls(ep), "extra Ocean request to %s", ep)
	}
	assert.Equal(t, 1, fake.Calls("following/create"))
	assert.Empty(t, rc.deliveries())
}

// TestFollowRequestThenAccept: a follow that becomes a pending request fires
// nothing; accepting it fires follow to the requester and followed to the
// acceptor, as Ocean does.
func TestFollowRequestThenAccept(t *testing.T) {
	fake := oceantest.New(t, oceantest.WithLocked(oceantest.BobID))
	rc := newReceiver(t)
	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "follow", "followed", "unfollow")
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "follow", "followed", "unfollow")

	status, body := call(t, sc.url(), "following/create", oceantest.TokenAlice, map[string]any{"userId": oceantest.BobID}, true)
	require.Equal(t, http.StatusOK, status, "%s", body)
	// A marker event proves the queue is flowing before we look for absence.
	status, _ = call(t, sc.url(), "following/create", oceantest.TokenBob, map[string]any{"userId": oceantest.CarolID}, true)
	require.Equal(t, http.StatusOK, status)
	require.Eventually(t, func() bool { return len(types(rc)["/bob"]) == 1 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, map[string][]string{"/bob": {"follow"}}, types(rc), "a pending request fires nothing")

	status, body = call(t, sc.url(), "following/requests/accept", oceantest.TokenBob, map[string]any{"userId": oceantest.AliceID}, true)
	require.Equal(t, http.StatusNoContent, status, "%s", body)
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 3 }, 10*time.Second, 10*time.Millisecond)
	got := types(rc)
	assert.Equal(t, []string{"follow"}, got["/alice"])
	assert.ElementsMatch(t, []string{"follow", "followed"}, got["/bob"])
	for _, d := range rc.deliveries() {
		if d.Path == "/alice" {
			assert.Equal(t, oceantest.BobID, gjson.GetBytes(d.Body, "body.user.id").String())
			assert.True(t, gjson.GetBytes(d.Body, "body.user.isFollowing").Bool())
		}
	}
}

// TestReceiverOutageAndRestart: events raised while the receiver fails, and
// across a restart of the sidecar on the same data dir, all arrive once the
// receiver is back: no loss, and duplicates only by retry.
func TestReceiverOutageAndRestart(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	var failing atomic.Bool
	failing.Store(true)
	var refused atomic.Int64
	rc.setFail(func(*http.Request) int {
		if failing.Load() {
			refused.Add(1)
			return http.StatusServiceUnavailable
		}
		return 0
	})
	dataDir := t.TempDir()
	cfg := baseConfig(t, fake.URL, dataDir)
	cfg.Delivery.BackoffBase = config.Duration(20 * time.Millisecond)
	cfg.Delivery.BackoffCap = config.Duration(200 * time.Millisecond)
	cfg.Delivery.MaxAttempts = 1000
	sc := startSidecar(t, cfg)
	createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "note")

	const n = 20
	noteIDs := map[string]bool{}
	post := func(base string, i int) {
		status, body := call(t, base, "notes/create", oceantest.TokenAlice, map[string]any{"text": "outage " + string(rune('a'+i))}, true)
		require.Equal(t, http.StatusOK, status, "%s", body)
		noteIDs[gjson.GetBytes(body, "createdNote.id").String()] = true
	}
	for i := range n / 2 {
		post(sc.url(), i)
	}
	require.Eventually(t, func() bool { return refused.Load() >= n/2*3 }, 20*time.Second, 10*time.Millisecond,
		"several backoff steps of failures")
	sc.stop(t)

	sc2 := startSidecar(t, cfg)
	for i := n / 2; i < n; i++ {
		post(sc2.url(), i)
	}
	failing.Store(false)
	require.Eventually(t, func() bool {
		seen := map[string]bool{}
		for _, d := range rc.deliveries() {
			seen[gjson.GetBytes(d.Body, "body.note.id").String()] = true
		}
		return len(seen) == n
	}, 30*time.Second, 20*time.Millisecond)
	events := map[string]int{}
	for _, d := range rc.deliveries() {
		assert.True(t, noteIDs[gjson.GetBytes(d.Body, "body.note.id").String()])
		events[gjson.GetBytes(d.Body, "eventId").String()]++
	}
	assert.Len(t, events, n, "one eventId per event, stable across retries")
}
