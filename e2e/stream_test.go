package e2e

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/redistest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// confirmWindow is short in these tests: the twins arrive within
// milliseconds, and what waits for the window is what must not be sent.
const confirmWindow = 700 * time.Millisecond

const (
	streamWait = 15 * time.Second
	streamTick = 10 * time.Millisecond
)

func itoa(n int) string { return strconv.Itoa(n) }

// streamSidecar runs the sidecar in front of the replayed Ocean with the
// event stream on redisURL, and a hook on every user event for each user of
// the capture, delivering to rc under /native/<user>.
func streamSidecar(t *testing.T, c *oceantest.PubSubCapture, replay *oceantest.Replay, redisURL string, rc *receiver) *sidecar {
	t.Helper()
	cfg := baseConfig(t, replay.URL, t.TempDir())
	cfg.PublicURL = "http://" + oceantest.PubSubHost
	cfg.Ocean.Redis.URL = redisURL
	cfg.Events.ConfirmWindow = config.Duration(confirmWindow)
	sc := startSidecar(t, cfg)
	for _, u := range c.Users {
		status, body := call(t, sc.url(), "i/webhooks/create", u.Token, map[string]any{
			"name": "all", "url": rc.URL + "/native/" + u.Name, "on": webhook.UserEventTypes}, true)
		require.Equal(t, http.StatusOK, status, string(body))
	}
	return sc
}

// streamState is the stream part of /readyz.
func streamState(t *testing.T, sc *sidecar) (connected bool) {
	t.Helper()
	res, err := http.Get("http://" + sc.AdminAddr().String() + "/readyz")
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return gjson.GetBytes(b, "stream.connected").Bool()
}

// play runs the scenario's calls through the sidecar as the capture's client
// did (token in the body).
func play(t *testing.T, sc *sidecar, c *oceantest.PubSubCapture, replay *oceantest.Replay, s oceantest.PubSubScenario) {
	t.Helper()
	replay.Play(s)
	for _, st := range s.Steps {
		var params map[string]any
		require.NoError(t, json.Unmarshal(st.Request, &params))
		status, body := call(t, sc.url(), st.Endpoint, c.Users[st.User].Token, params, false)
		require.Equal(t, st.Status, status, "%s %s: %s", s.Label, st.Endpoint, body)
	}
}

// delivered is what one hook received, keyed for comparison.
func delivered(t *testing.T, d received) string {
	t.Helper()
	var env struct {
		Server string          `json:"server"`
		Type   string          `json:"type"`
		Body   json.RawMessage `json:"body"`
	}
	require.NoError(t, json.Unmarshal(d.Body, &env))
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, env.Body))
	return strings.TrimPrefix(d.Path, "/native/") + " " + env.Type + " " + env.Server + " " + b.String()
}

func native(d oceantest.PubSubDelivery) string {
	return d.User + " " + d.Type + " " + gjson.GetBytes(d.Envelope, "server").Str + " " + string(d.Body)
}

// TestStreamReplaysOceansDeliveries replays every scenario of the pub/sub
// capture: the calls through the sidecar, Ocean's messages on a real Redis
// published before Ocean's last answer. What the receiver gets is exactly
// what Ocean itself sent (recipient, type, server and body byte for byte),
// nothing more: the muted thread's reply and mention, which the API tap
// derives, are dropped; the scheduled note, which no call shows, is sent.
func TestStreamReplaysOceansDeliveries(t *testing.T) {
	c := oceantest.LoadPubSub(t)
	rs := redistest.Start(t)
	replay := oceantest.NewReplay(t, c)
	rc := newReceiver(t)
	sc := streamSidecar(t, c, replay, rs.URL(), rc)
	require.Eventually(t, func() bool { return streamState(t, sc) }, streamWait, streamTick)

	replayAcross(t, []*sidecar{sc}, c, replay, rs, rc)
}

// TestStreamDownTheAPITapCovers: with the stream unreachable, the API tap's
// events go out as derived once the window ends; readiness is kept and the
// outage shows in /readyz. When the stream is back, events are merged again:
// once each, nothing lost, nothing repeated.
func TestStreamDownTheAPITapCovers(t *testing.T) {
	c := oceantest.LoadPubSub(t)
	replay := oceantest.NewReplay(t, c)
	rc := newReceiver(t)
	port := redistest.FreePort(t)
	sc := streamSidecar(t, c, replay, "redis://127.0.0.1:"+itoa(port), rc)
	res, err := http.Get("http://" + sc.AdminAddr().String() + "/readyz")
	require.NoError(t, err)
	b, _ := io.ReadAll(res.Body)
	res.Body.Close()
	assert.Equal(t, http.StatusOK, res.StatusCode, string(b))
	assert.False(t, gjson.GetBytes(b, "stream.connected").Bool())
	assert.NotEmpty(t, gjson.GetBytes(b, "stream.error").Str)

	s := c.Scenario(t, "mention")
	play(t, sc, c, replay, s)
	require.Eventually(t, func() bool { return len(rc.deliveries()) == len(s.Deliveries) }, streamWait, streamTick)
	assert.Never(t, func() bool { return len(rc.deliveries()) > len(s.Deliveries) }, 2*confirmWindow, 20*time.Millisecond)
	var got, want []string
	for _, d := range rc.deliveries() {
		got = append(got, strings.Fields(delivered(t, d))[0]+" "+strings.Fields(delivered(t, d))[1])
	}
	for _, d := range s.Deliveries {
		want = append(want, d.User+" "+d.Type)
	}
	assert.ElementsMatch(t, want, got)

	// The stream comes back: the next calls' events are delivered once each,
	// with Ocean's bodies, and nothing from before is sent again.
	rs := redistest.StartOn(t, port)
	require.Eventually(t, func() bool { return streamState(t, sc) }, streamWait, streamTick)
	s = c.Scenario(t, "quote")
	replay.Before = func(int) {
		for _, m := range s.Messages {
			_, err := rs.Publish(oceantest.PubSubHost, m)
			assert.NoError(t, err)
		}
	}
	before := len(rc.deliveries())
	play(t, sc, c, replay, s)
	require.Eventually(t, func() bool { return len(rc.deliveries())-before == len(s.Deliveries) }, streamWait, streamTick)
	assert.Never(t, func() bool { return len(rc.deliveries())-before > len(s.Deliveries) }, 2*confirmWindow, 20*time.Millisecond)
	got, want = nil, nil
	for _, d := range rc.deliveries()[before:] {
		got = append(got, delivered(t, d))
	}
	for _, d := range s.Deliveries {
		want = append(want, native(d))
	}
	assert.ElementsMatch(t, want, got)
}

// TestStreamFederation: events caused on other servers reach hooks with no
// API call at all: a remote user's mention and follow of alice, published as
// Ocean publishes /inbox activity; a remote author's note goes to nobody.
func TestStreamFederation(t *testing.T) {
	c := oceantest.LoadPubSub(t)
	rs := redistest.Start(t)
	replay := oceantest.NewReplay(t, c)
	rc := newReceiver(t)
	sc := streamSidecar(t, c, replay, rs.URL(), rc)
	require.Eventually(t, func() bool { return streamState(t, sc) }, streamWait, streamTick)

	alice := c.Users["alice"].ID
	// A captured mention of alice, its author made remote as /inbox delivers it.
	var mention string
	for _, m := range c.Scenario(t, "mention").Messages {
		if gjson.Get(m, "channel").Str == "mainStream:"+alice && gjson.Get(m, "message.type").Str == "mention" {
			mention = m
		}
	}
	require.NotEmpty(t, mention)
	remoteMention := strings.ReplaceAll(mention, `"host":null`, `"host":"remote.example"`)
	remoteMention = strings.Replace(remoteMention, `"uri":null`, `"uri":"https://remote.example/notes/1"`, 1)
	remoteUser := `{"id":"remoteuser0001","name":null,"username":"rem","host":"remote.example","avatarUrl":null,"avatarBlurhash":null,"avatarDecorations":[],"isBot":false,"isCat":false,"emojis":{},"onlineStatus":"unknown","badgeRoles":[]}`
	followed := `{"channel":"mainStream:` + alice + `","message":{"type":"followed","body":` + remoteUser + `}}`
	var remoteNote string
	for _, m := range c.Scenario(t, "plain_note").Messages {
		remoteNote = strings.ReplaceAll(m, `"host":null`, `"host":"remote.example"`)
	}
	for _, m := range []string{remoteMention, followed, remoteNote} {
		_, err := rs.Publish(oceantest.PubSubHost, m)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 2 }, streamWait, streamTick)
	assert.Never(t, func() bool { return len(rc.deliveries()) > 2 }, 2*confirmWindow, 20*time.Millisecond)
	byType := map[string]string{}
	for _, d := range rc.deliveries() {
		assert.Equal(t, "/native/alice", d.Path)
		byType[gjson.GetBytes(d.Body, "type").Str] = gjson.GetBytes(d.Body, "body").Raw
	}
	assert.JSONEq(t, `{"note":`+gjson.Get(remoteMention, "message.body").Raw+`}`, byType["mention"])
	assert.JSONEq(t, `{"user":`+remoteUser+`}`, byType["followed"])
}
