package e2e

import (
	"io"
	"net/http"
	"sort"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/internal/redistest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// streamSidecars starts n sidecars sharing one PostgreSQL store, each
// configured with Ocean's event stream on rs, in front of replay; the hooks
// (one on every user event for each user of the capture, delivering to rc
// under /native/<user>) are made through the first, and the others read them
// when they start.
func streamSidecars(t *testing.T, n int, c *oceantest.PubSubCapture, replay *oceantest.Replay, rs *redistest.Server, rc *receiver) []*sidecar {
	t.Helper()
	url := pgtest.ServerURL(t)
	schema := pgtest.NewSchema(t, url)
	sidecarConfig := func() config.Config {
		cfg := baseConfig(t, replay.URL, t.TempDir())
		cfg.PublicURL = "http://" + oceantest.PubSubHost
		cfg.Ocean.Redis.URL = rs.URL()
		cfg.Events.ConfirmWindow = config.Duration(confirmWindow)
		cfg.Store.Backend = config.BackendPostgres
		cfg.Store.Postgres.URL = url
		cfg.Store.Postgres.Schema = schema
		return cfg
	}
	scs := []*sidecar{startSidecar(t, sidecarConfig())}
	for _, u := range c.Users {
		status, body := call(t, scs[0].url(), "i/webhooks/create", u.Token, map[string]any{
			"name": "all", "url": rc.URL + "/native/" + u.Name, "on": webhook.UserEventTypes}, true)
		require.Equal(t, http.StatusOK, status, string(body))
	}
	for len(scs) < n {
		scs = append(scs, startSidecar(t, sidecarConfig()))
	}
	return scs
}

// streamRole is what the sidecar's /readyz says of the stream: "leader"
// (subscribed), "standby", or "" (neither: the leader before its
// subscription is up, or a sidecar not ready yet).
func streamRole(t *testing.T, sc *sidecar) string {
	t.Helper()
	res, err := http.Get("http://" + sc.AdminAddr().String() + "/readyz")
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	st := gjson.GetBytes(b, "stream")
	switch {
	case res.StatusCode != http.StatusOK:
	case st.Get("standby").Bool():
		return "standby"
	case st.Get("leader").Bool() && st.Get("connected").Bool():
		return "leader"
	}
	return ""
}

// oneLeader waits until one of scs leads the stream, subscribed, and all the
// others stand by, and returns the leader's index.
func oneLeader(t *testing.T, scs []*sidecar) int {
	t.Helper()
	leader := -1
	require.Eventually(t, func() bool {
		leader = -1
		for i, sc := range scs {
			switch streamRole(t, sc) {
			case "leader":
				if leader >= 0 {
					return false
				}
				leader = i
			case "standby":
			default:
				return false
			}
		}
		return leader >= 0
	}, streamWait, streamTick)
	return leader
}

// replayAcross replays every scenario of the pub/sub capture (through one
// sidecar, or several sharing a store), each one's calls through the next of
// scs in turn and Ocean's messages published on
// rs before the last call's answer: the receiver gets exactly what Ocean
// itself sent, each event once.
func replayAcross(t *testing.T, scs []*sidecar, c *oceantest.PubSubCapture, replay *oceantest.Replay, rs *redistest.Server, rc *receiver) {
	t.Helper()
	for i, s := range c.Scenarios {
		t.Run(s.Label, func(t *testing.T) {
			before := len(rc.deliveries())
			replay.Before = func(n int) {
				if n != len(s.Steps)-1 {
					return
				}
				for _, m := range s.Messages {
					_, err := rs.Publish(oceantest.PubSubHost, m)
					assert.NoError(t, err)
				}
			}
			play(t, scs[i%len(scs)], c, replay, s)
			var want []string
			for _, d := range s.Deliveries {
				want = append(want, native(d))
			}
			require.Eventually(t, func() bool { return len(rc.deliveries())-before >= len(want) }, streamWait, streamTick)
			// Past the window nothing else arrives: no sidecar sends what
			// another sent, nor what the stream did not confirm (those
			// holds are dropped).
			assert.Never(t, func() bool { return len(rc.deliveries())-before > len(want) }, 2*confirmWindow, 20*time.Millisecond)
			var got []string
			for _, d := range rc.deliveries()[before:] {
				got = append(got, delivered(t, d))
			}
			sort.Strings(got)
			sort.Strings(want)
			assert.Equal(t, want, got)
		})
	}
}

// TestStreamAcrossSidecars replays every scenario of the pub/sub capture
// through three sidecars sharing one PostgreSQL store, all configured with
// Ocean's event stream on a real Redis: one of them subscribes and the
// others stand by, and the receiver gets exactly what Ocean itself sent,
// each event once, follows and unfollows (whose key may recur) included,
// whichever sidecar the calls went through.
func TestStreamAcrossSidecars(t *testing.T) {
	c := oceantest.LoadPubSub(t)
	rs := redistest.Start(t)
	replay := oceantest.NewReplay(t, c)
	rc := newReceiver(t)
	scs := streamSidecars(t, 3, c, replay, rs, rc)
	oneLeader(t, scs)
	replayAcross(t, scs, c, replay, rs, rc)
}

// TestStreamFailsOverAcrossSidecars: when the sidecar that leads the stream
// stops, one of the two others takes over (its /readyz shows it subscribed,
// the last one stands by), and the stream's messages published after the
// takeover are delivered exactly once, every scenario replayed through the
// two that are left.
func TestStreamFailsOverAcrossSidecars(t *testing.T) {
	c := oceantest.LoadPubSub(t)
	rs := redistest.Start(t)
	replay := oceantest.NewReplay(t, c)
	rc := newReceiver(t)
	scs := streamSidecars(t, 3, c, replay, rs, rc)
	first := oneLeader(t, scs)
	scs[first].stop(t)
	left := append(append([]*sidecar(nil), scs[:first]...), scs[first+1:]...)
	oneLeader(t, left)
	replayAcross(t, left, c, replay, rs, rc)
}
