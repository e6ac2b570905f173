package confirm

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/queue"
	"github.com/oceanhooks/oceanhooks/webhook"
)

const (
	waitFor = 10 * time.Second
	tick    = 5 * time.Millisecond
	window  = 5 * time.Second
)

// clock is a settable test clock.
type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) Advance(d time.Duration) {
	c.mu.Lock()
	c.now = c.now.Add(d)
	c.mu.Unlock()
}

// hooks: every user has one hook on every event type, to the receiver.
type hooks struct{ url string }

func (h hooks) ActiveHooks(user, typ string) []webhook.Target {
	return []webhook.Target{{HookID: "h-" + user, UserID: user, URL: h.url}}
}
func (h hooks) Target(id string) (webhook.Target, bool) {
	return webhook.Target{HookID: id, URL: h.url}, true
}
func (hooks) RecordAttempt(string, time.Time, int) {}
func (hooks) Deactivate(string)                    {}

// receiver records the bodies of the deliveries it gets.
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	bodies []string
}

func newReceiver(t *testing.T) *receiver {
	rc := &receiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var env struct{ Body json.RawMessage }
		_ = json.Unmarshal(b, &env)
		rc.mu.Lock()
		rc.bodies = append(rc.bodies, string(env.Body))
		rc.mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []string {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]string(nil), rc.bodies...)
}

type fixture struct {
	q    *queue.Queue
	m    *Merger
	clk  *clock
	rc   *receiver
	dir  string
	stop func() // stops the queue and closes its store
}

// start runs a queue on dir (a fresh one when "") and a Merger over it with
// the stream down, as at start-up.
func start(t *testing.T, dir string, clk *clock, rc *receiver) *fixture {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	if clk == nil {
		clk = &clock{now: time.Date(2026, 11, 27, 6, 0, 0, 0, time.UTC)}
	}
	if rc == nil {
		rc = newReceiver(t)
	}
	db, err := badger.Open(queue.BadgerOptions(dir).WithLogger(nil))
	require.NoError(t, err)
	q, err := queue.Open(db, hooks{rc.URL}, queue.Options{
		ServerURL:              "http://ocean.example",
		AllowedPrivateNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		QuickRetries:           -1,
		PollInterval:           5 * time.Millisecond,
		Now:                    clk.Now,
		Rand:                   rand.New(rand.NewPCG(1, 2)),
	})
	require.NoError(t, err)
	m, err := New(q, Options{Window: window, Now: clk.Now})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	stopped := false
	var stop func()
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		require.NoError(t, <-done)
		require.NoError(t, db.Close())
	}
	t.Cleanup(stop)
	return &fixture{q: q, m: m, clk: clk, rc: rc, dir: dir, stop: stop}
}

func mention(id, from string) webhook.Event {
	return webhook.Event{Type: webhook.Mention, UserID: "alice",
		Body: json.RawMessage(`{"note":{"id":"` + id + `","from":"` + from + `"}}`)}
}

func (f *fixture) api(t *testing.T, evs ...webhook.Event) {
	t.Helper()
	_, err := f.m.Enqueue(context.Background(), evs)
	require.NoError(t, err)
}

func (f *fixture) stream(t *testing.T, evs ...webhook.Event) {
	t.Helper()
	require.NoError(t, f.m.Stream(context.Background(), evs))
}

// TestTwinsDeliveredOnceWithTheStreamsBody, whichever source is first; the
// confirmation sends at once, without waiting for the window.
func TestTwinsDeliveredOnceWithTheStreamsBody(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.StreamUp(f.clk.Now())
	f.api(t, mention("n1", "api"))
	f.stream(t, mention("n1", "stream"))
	f.stream(t, mention("n2", "stream"))
	f.api(t, mention("n2", "api"))
	require.Eventually(t, func() bool { return len(f.rc.got()) == 2 }, waitFor, tick)
	assert.ElementsMatch(t, []string{`{"note":{"id":"n1","from":"stream"}}`, `{"note":{"id":"n2","from":"stream"}}`}, f.rc.got())
	f.clk.Advance(2 * window)
	f.m.settle()
	assert.Never(t, func() bool { return len(f.rc.got()) > 2 }, 100*time.Millisecond, tick)
	assert.Equal(t, 2.0, testutil.ToFloat64(f.m.m.api.WithLabelValues("held")))
	assert.Equal(t, 1.0, testutil.ToFloat64(f.m.m.stream.WithLabelValues("confirmed")))
	assert.Equal(t, 1.0, testutil.ToFloat64(f.m.m.stream.WithLabelValues("new")))
}

// TestUnconfirmedWhileTheStreamIsUpIsDropped: Ocean chose not to fire it
// (a muted thread): it never goes out.
func TestUnconfirmedWhileTheStreamIsUpIsDropped(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.StreamUp(f.clk.Now())
	f.clk.Advance(window)
	f.api(t, mention("muted", "api"))
	f.clk.Advance(window)
	f.m.settle()
	assert.Equal(t, 1.0, testutil.ToFloat64(f.m.m.settled.WithLabelValues("dropped")))
	assert.Never(t, func() bool { return len(f.rc.got()) > 0 }, 100*time.Millisecond, tick)
}

// TestUnconfirmedAcrossAnOutageIsDelivered: if the stream was down at any
// moment from a window before the event to the window's end, the twin may
// have been lost, and the event goes out as derived.
func TestUnconfirmedAcrossAnOutageIsDelivered(t *testing.T) {
	cases := []struct {
		name   string
		before func(f *fixture) // runs before the API event, then the event, then after
		after  func(f *fixture)
	}{
		{"down from the start", func(*fixture) {}, func(*fixture) {}},
		{"down just before the event", func(f *fixture) {
			f.m.StreamUp(f.clk.Now())
			f.clk.Advance(window)
			f.m.StreamDown(f.clk.Now())
			f.clk.Advance(time.Second)
			f.m.StreamUp(f.clk.Now())
			f.clk.Advance(time.Second)
		}, func(*fixture) {}},
		{"down during the window", func(f *fixture) {
			f.m.StreamUp(f.clk.Now())
			f.clk.Advance(window)
		}, func(f *fixture) {
			f.clk.Advance(time.Second)
			f.m.StreamDown(f.clk.Now())
			f.clk.Advance(time.Second)
			f.m.StreamUp(f.clk.Now())
		}},
		{"still down at the window's end", func(f *fixture) {
			f.m.StreamUp(f.clk.Now())
			f.clk.Advance(window)
		}, func(f *fixture) {
			f.clk.Advance(time.Second)
			f.m.StreamDown(f.clk.Now())
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, "", nil, nil)
			tc.before(f)
			f.api(t, mention("n1", "api"))
			tc.after(f)
			f.clk.Advance(2 * window)
			f.m.settle()
			require.Eventually(t, func() bool { return len(f.rc.got()) == 1 }, waitFor, tick)
			assert.Equal(t, `{"note":{"id":"n1","from":"api"}}`, f.rc.got()[0])
			assert.Equal(t, 1.0, testutil.ToFloat64(f.m.m.settled.WithLabelValues("delivered")))
		})
	}
}

// TestHoldsSurviveARestart: the API's event is on disk before Enqueue
// returns; a crash before its twin arrives, then a restart (the twin is lost:
// the stream was not subscribed), delivers it exactly once.
func TestHoldsSurviveARestart(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.StreamUp(f.clk.Now())
	f.api(t, mention("n1", "api"))
	f.stop() // the process dies here: what Enqueue stored is on disk

	g := start(t, f.dir, f.clk, f.rc)
	g.clk.Advance(time.Second)
	g.m.StreamUp(g.clk.Now()) // back, after the twin was published
	g.clk.Advance(2 * window)
	g.m.settle()
	require.Eventually(t, func() bool { return len(g.rc.got()) == 1 }, waitFor, tick)
	assert.Equal(t, `{"note":{"id":"n1","from":"api"}}`, g.rc.got()[0])
	assert.Never(t, func() bool { return len(g.rc.got()) > 1 }, 100*time.Millisecond, tick)
}

// TestStreamRepeatsAndReactions: a note published twice is one event; a
// reaction both sources report is sent once, by whichever came first.
func TestStreamRepeatsAndReactions(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.StreamUp(f.clk.Now())
	note := webhook.Event{Type: webhook.Note, UserID: "alice", Body: json.RawMessage(`{"note":{"id":"n1"}}`)}
	f.stream(t, note)
	f.stream(t, note)
	reaction := func(from string) webhook.Event {
		return webhook.Event{Type: webhook.Reaction, UserID: "alice",
			Body: json.RawMessage(`{"note":{"id":"n1"},"reaction":"👍","user":{"id":"bob"},"from":"` + from + `"}`)}
	}
	f.api(t, reaction("api"))
	f.stream(t, reaction("stream"))
	require.Eventually(t, func() bool { return len(f.rc.got()) == 2 }, waitFor, tick)
	assert.ElementsMatch(t, []string{`{"note":{"id":"n1"}}`,
		`{"note":{"id":"n1"},"reaction":"👍","user":{"id":"bob"},"from":"api"}`}, f.rc.got())
	assert.Never(t, func() bool { return len(f.rc.got()) > 2 }, 100*time.Millisecond, tick)
	assert.Equal(t, 2.0, testutil.ToFloat64(f.m.m.stream.WithLabelValues("repeat")))
}

// reaction is bob's reaction to alice's note n1 as from reports it.
func reaction(emoji, from string) webhook.Event {
	return webhook.Event{Type: webhook.Reaction, UserID: "alice",
		Body: json.RawMessage(`{"note":{"id":"n1"},"reaction":"` + emoji + `","user":{"id":"bob"},"from":"` + from + `"}`)}
}

// unreacted is the removal of bob's reaction to n1, as the stream tells it.
var unreacted = webhook.Event{Type: webhook.Reaction, UserID: "alice", Body: json.RawMessage(`{"note":{"id":"n1"},"user":{"id":"bob"}}`)}

// TestChangedReactionDelivered: bob changes his reaction to alice's note
// (Ocean removes the old one, publishing unreacted, and makes the new one,
// publishing reacted) within the time a key is remembered. The new reaction
// is delivered, exactly once, whenever the API's copy of it comes: before
// the stream's removal, between the removal and the stream's reaction, or
// after both.
func TestChangedReactionDelivered(t *testing.T) {
	for _, tc := range []struct {
		name  string
		order []string // api2, unreacted, stream2
		want  string   // whose copy of the second reaction is delivered
	}{
		{"api first", []string{"api2", "unreacted", "stream2"}, "stream"},
		{"api between", []string{"unreacted", "api2", "stream2"}, "api"},
		{"api last", []string{"unreacted", "stream2", "api2"}, "stream"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := start(t, "", nil, nil)
			f.m.StreamUp(f.clk.Now())
			f.stream(t, reaction("👍", "stream"))
			f.api(t, reaction("👍", "api"))
			f.clk.Advance(time.Second)
			for _, step := range tc.order {
				switch step {
				case "api2":
					f.api(t, reaction("❤", "api"))
				case "unreacted":
					require.NoError(t, f.m.Unreacted(context.Background(), []webhook.Event{unreacted}))
				case "stream2":
					f.stream(t, reaction("❤", "stream"))
				}
			}
			want := []string{
				`{"note":{"id":"n1"},"reaction":"👍","user":{"id":"bob"},"from":"stream"}`,
				`{"note":{"id":"n1"},"reaction":"❤","user":{"id":"bob"},"from":"` + tc.want + `"}`,
			}
			require.Eventually(t, func() bool { return len(f.rc.got()) >= 2 }, waitFor, tick)
			assert.Never(t, func() bool { return len(f.rc.got()) > 2 }, 100*time.Millisecond, tick, "delivered once")
			assert.ElementsMatch(t, want, f.rc.got())
		})
	}
}

// TestReactionChangedWhileTheStreamIsDown: with no stream to report the
// removal, the API's reaction is a new one even when bob reacted to the
// note a moment before.
func TestReactionChangedWhileTheStreamIsDown(t *testing.T) {
	f := start(t, "", nil, nil)
	f.api(t, reaction("👍", "api"))
	f.clk.Advance(time.Second)
	f.api(t, reaction("❤", "api"))
	require.Eventually(t, func() bool { return len(f.rc.got()) == 2 }, waitFor, tick)
	assert.ElementsMatch(t, []string{
		`{"note":{"id":"n1"},"reaction":"👍","user":{"id":"bob"},"from":"api"}`,
		`{"note":{"id":"n1"},"reaction":"❤","user":{"id":"bob"},"from":"api"}`,
	}, f.rc.got())
}

// TestFollowAgain: follow, unfollow, follow again are three events, even
// though the two follows share a key.
func TestFollowAgain(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.StreamUp(f.clk.Now())
	user := func(typ, from string) webhook.Event {
		return webhook.Event{Type: typ, UserID: "alice", Body: json.RawMessage(`{"user":{"id":"bob"},"from":"` + from + `"}`)}
	}
	for _, typ := range []string{webhook.Follow, webhook.Unfollow, webhook.Follow} {
		f.api(t, user(typ, "api"))
		f.stream(t, user(typ, "stream"))
	}
	require.Eventually(t, func() bool { return len(f.rc.got()) == 3 }, waitFor, tick)
	f.clk.Advance(2 * window)
	f.m.settle()
	assert.Never(t, func() bool { return len(f.rc.got()) > 3 }, 100*time.Millisecond, tick)
}

func TestKey(t *testing.T) {
	cases := []struct {
		typ, body, want string
	}{
		{webhook.Note, `{"note":{"id":"n1"}}`, "note\x00u\x00n1"},
		{webhook.Mention, `{"note":{"id":"n1"}}`, "mention\x00u\x00n1"},
		{webhook.Follow, `{"user":{"id":"u2"}}`, "follow\x00u\x00u2"},
		{webhook.Reaction, `{"note":{"id":"n1"},"reaction":"x","user":{"id":"u2"}}`, "reaction\x00u\x00n1\x00u2"},
		{webhook.Note, `{"note":{}}`, ""},
		{webhook.Follow, `{"note":{"id":"n1"}}`, ""},
		{webhook.Reaction, `{"note":{"id":"n1"}}`, ""},
		{"reportCreated", `{"note":{"id":"n1"}}`, ""},
		{webhook.Note, `not json`, ""},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, Key(webhook.Event{Type: tc.typ, UserID: "u", Body: json.RawMessage(tc.body)}), tc.typ+" "+tc.body)
	}
}

// TestStandbyLeavesRememberedReactionsToTheLeader: a sidecar standing by
// while another one runs the stream (Leading false) has no stream of its
// own, so its stream reads as down; a reaction the leader's stream already
// confirmed is still a repeat there, not delivered a second time.
func TestStandbyLeavesRememberedReactionsToTheLeader(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.opts.Leading = func() bool { return false }
	f.stream(t, reaction("👍", "stream"))
	require.Eventually(t, func() bool { return len(f.rc.got()) == 1 }, waitFor, tick)
	f.api(t, reaction("👍", "api"))
	assert.Never(t, func() bool { return len(f.rc.got()) > 1 }, 200*time.Millisecond, tick)
}
