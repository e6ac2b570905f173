package server

import (
	"encoding/json"
	"net/http"
	"regexp"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/internal/redistest"
)

// streamView is what r's /readyz and /metrics say of the event stream: the
// stream member of /readyz (nil when absent) and oceanhooks_stream_leader;
// nil and "" while /readyz does not answer ready (a server starting, whose
// store is not listening yet). It is polled by require.Eventually, so it
// reports rather than fails.
func streamView(t *testing.T, r *running) (readyz map[string]any, leader string) {
	t.Helper()
	status, body := get(t, r.adminURL()+"/readyz")
	if status != http.StatusOK {
		return nil, ""
	}
	var ready struct{ Stream map[string]any }
	if json.Unmarshal([]byte(body), &ready) != nil {
		return nil, ""
	}
	status, metrics := r.adminGet(t, "/metrics")
	if status != http.StatusOK {
		return nil, ""
	}
	if m := regexp.MustCompile(`(?m)^oceanhooks_stream_leader (\S+)$`).FindStringSubmatch(metrics); m != nil {
		leader = m[1]
	}
	return ready.Stream, leader
}

// TestStreamHasOneLeaderOnPostgres: two servers on one PostgreSQL schema,
// both configured with Ocean's event stream: one subscribes (its /readyz
// shows the stream connected and leading, oceanhooks_stream_leader is 1),
// the other stands by (ready, the stream "standby", the gauge 0); when the
// leader stops, the other takes over.
func TestStreamHasOneLeaderOnPostgres(t *testing.T) {
	rs := redistest.Start(t)
	pgURL := pgtest.ServerURL(t)
	cfg := postgresConfig(t, okUpstream(t), pgURL, pgtest.NewSchema(t, pgURL))
	cfg.Ocean.Redis.URL = rs.URL()
	srv := []*running{start(t, cfg), start(t, cfg)}

	leading := func(r *running) bool {
		st, gauge := streamView(t, r)
		return st["leader"] == true && st["connected"] == true && gauge == "1"
	}
	standing := func(r *running) bool {
		st, gauge := streamView(t, r)
		return st["standby"] == true && st["connected"] == false && gauge == "0"
	}
	leader := -1
	require.Eventually(t, func() bool {
		for i, r := range srv {
			if leading(r) && standing(srv[1-i]) {
				leader = i
				return true
			}
		}
		return false
	}, 15*time.Second, 20*time.Millisecond)
	assert.Contains(t, srv[leader].logs.String(), "leading stream")

	require.NoError(t, srv[leader].stop(t))
	other := srv[1-leader]
	require.Eventually(t, func() bool { return leading(other) }, 15*time.Second, 20*time.Millisecond)
	assert.Contains(t, other.logs.String(), "leading stream")
}

// TestStreamOnBadgerAlwaysLeads: on Badger, the one process subscribes as
// it always did: /readyz shows the stream as before (no leader nor standby)
// and oceanhooks_stream_leader is 1.
func TestStreamOnBadgerAlwaysLeads(t *testing.T) {
	rs := redistest.Start(t)
	cfg := testConfig(t, okUpstream(t))
	cfg.Ocean.Redis.URL = rs.URL()
	r := start(t, cfg)
	require.Eventually(t, func() bool {
		st, gauge := streamView(t, r)
		return st["connected"] == true && gauge == "1"
	}, 15*time.Second, 20*time.Millisecond)
	st, _ := streamView(t, r)
	assert.NotContains(t, st, "leader")
	assert.NotContains(t, st, "standby")
}
