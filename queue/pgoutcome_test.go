package queue

import (
	"io"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
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
