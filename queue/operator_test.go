package queue

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// TestOperatorListingMasksURLs: a receiver that echoes its own URL (a
// Discord-style credential in the path) in its error answer does not get
// that URL shown to operators; the hook owner's own listing (List) keeps it.
func TestOperatorListingMasksURLs(t *testing.T) {
	secretPath := "/api/webhooks/1/t0ken-in-the-path?wait=true"
	var self string
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadRequest)
		_, _ = io.WriteString(w, `{"message":"Unknown Webhook","url":"`+self+`"}`)
	}))
	t.Cleanup(rc.Close)
	self = rc.URL + secretPath

	hooks := newFakeHooks()
	hooks.add("h1", "u1", self, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	q.sender.private = func(netip.Addr) bool { return false } // as if rc were a public host: its answer is logged
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))
	require.Eventually(t, func() bool { return q.dead.Load() == 1 }, waitFor, tick)
	require.Contains(t, list(t, q, "h1")[0].Attempts[0].Response, "t0ken", "precondition: the response echoes the URL")

	srv := httptest.NewServer(q.OperatorHandler())
	t.Cleanup(srv.Close)
	resp, err := http.Get(srv.URL + "/deliveries?webhookId=h1")
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode, "%s", body)
	assert.NotContains(t, string(body), "t0ken")
	assert.Contains(t, string(body), `Unknown Webhook`)
	assert.Contains(t, string(body), rc.URL+`/…`)
}

// TestOperatorRedeliverAll: a POST without a deliveryId answers at once that
// the redelivery of the hook's dead letters started, not a count it cannot
// know yet, and every dead letter is then sent again.
func TestOperatorRedeliverAll(t *testing.T) {
	q, rc, srv := operatorWithDeadLetters(t, 2)
	require.Equal(t, 2, rc.count(), "precondition: each delivery was sent once")

	resp, err := http.Post(srv.URL+"/deliveries", "application/json", strings.NewReader(`{"webhookId":"h1"}`))
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	assert.Equal(t, http.StatusOK, resp.StatusCode)
	assert.JSONEq(t, `{"started":true}`, string(body))
	require.Eventually(t, func() bool { return rc.count() == 4 && q.dead.Load() == 2 }, waitFor, tick)
}

// operatorWithDeadLetters runs a queue whose hook h1 (of u1) has n dead
// letters, its receiver refusing every delivery with a 403, and serves the
// queue's OperatorHandler.
func operatorWithDeadLetters(t *testing.T, n int) (*Queue, *receiver, *httptest.Server) {
	t.Helper()
	rc := newReceiver(t, always(http.StatusForbidden))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(nil))
	runQueue(t, q)
	evs := make([]webhook.Event, n)
	for i := range evs {
		evs[i] = event("u1", "note", `{}`)
	}
	enqueue(t, q, evs...)
	require.Eventually(t, func() bool { return q.dead.Load() == int64(n) }, waitFor, tick)
	srv := httptest.NewServer(q.OperatorHandler())
	t.Cleanup(srv.Close)
	return q, rc, srv
}
