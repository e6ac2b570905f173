package confirm

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/redistest"
	"github.com/oceanhooks/oceanhooks/stream"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// everyone has a hook on every event; it counts the questions.
type everyone struct{ asked atomic.Int64 }

func (e *everyone) Subscribed(string, string) bool { e.asked.Add(1); return true }

// TestHoldsWaitWhileTheStreamIsBehind: the store takes the stream's events
// slowly, the subscriber stops reading, and Redis drops it for its output
// buffer (client-output-buffer-limit pubsub) while an API event is held; the
// twin published then is gone. The hold must not be dropped on the word of a
// stream that was not reading: it is delivered, as derived, once the
// subscriber has found out and come back.
func TestHoldsWaitWhileTheStreamIsBehind(t *testing.T) {
	const channel = "ocean.example"
	rs := redistest.Start(t, redistest.WithConfig("client-output-buffer-limit pubsub 64kb 0 0"))
	f := start(t, "", nil, nil)
	subs := &everyone{}
	sink := newTokenSink(f.m)
	release := sink.release
	sub, downs := runStream(t, f, rs, 1, subs, sink, nil, release)
	f.clk.Advance(window)

	bob := func(id string) string {
		return `{"channel":"mainStream:bob","message":{"type":"mention","body":{"id":"` + id + `"}}}`
	}
	_, err := rs.Publish(channel, bob("b0"))
	require.NoError(t, err)
	<-sink.entered // the store is busy with b0
	asked := subs.asked.Load()
	for _, id := range []string{"b1", "b2"} { // b1 waits for the store, b2 for room: the reader stops
		_, err = rs.Publish(channel, bob(id))
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return subs.asked.Load() == asked+2 }, waitFor, tick)

	f.api(t, mention("n1", "api"))
	filler := `{"channel":"internal","message":"` + strings.Repeat("x", 256<<10) + `"}`
	dropped := false
	for range 400 {
		n, err := rs.Publish(channel, filler)
		require.NoError(t, err)
		if n == 0 {
			dropped = true
			break
		}
	}
	require.True(t, dropped, "Redis did not drop the subscriber that stopped reading")
	n, err := rs.Publish(channel, `{"channel":"mainStream:alice","message":{"type":"mention","body":{"id":"n1","from":"stream"}}}`)
	require.NoError(t, err)
	require.Zero(t, n, "the twin reaches no one")

	f.clk.Advance(2 * window)
	f.m.settle() // the hold's window is over; the stream has not read since before it
	release()
	require.Eventually(t, func() bool { return downs.Load() > 0 && sub.Health().Connected }, waitFor, tick)
	settledAsDerived(t, f, `{"note":{"id":"n1","from":"api"}}`)
	assert.Len(t, f.rc.got(), 4, "b0, b1, b2 and n1, once each")
}

// TestHoldsJudgedOnceTheStreamCaughtUp: holds due while the stream is behind
// wait; a twin that comes late confirms its hold (the stream's body, once),
// and once the stream caught up without an outage, a hold without a twin is
// dropped as usual.
func TestHoldsJudgedOnceTheStreamCaughtUp(t *testing.T) {
	f := start(t, "", nil, nil)
	f.m.StreamUp(f.clk.Now())
	f.clk.Advance(window)
	f.m.StreamBehind(f.clk.Now())
	f.api(t, mention("n1", "api"), mention("n2", "api"))
	f.clk.Advance(2 * window)
	f.m.settle()
	assert.Zero(t, testutil.ToFloat64(f.m.m.settled.WithLabelValues("dropped")), "nothing judged while behind")
	assert.Zero(t, testutil.ToFloat64(f.m.m.settled.WithLabelValues("delivered")))

	f.stream(t, mention("n1", "stream")) // read late
	f.m.StreamUp(f.clk.Now())            // caught up: nothing was dropped
	f.clk.Advance(time.Second)
	f.m.settle()
	require.Eventually(t, func() bool { return len(f.rc.got()) == 1 }, waitFor, tick)
	assert.Equal(t, `{"note":{"id":"n1","from":"stream"}}`, f.rc.got()[0])
	assert.Equal(t, 1.0, testutil.ToFloat64(f.m.m.settled.WithLabelValues("dropped")), "n2: Ocean did not fire it")
	assert.Never(t, func() bool { return len(f.rc.got()) > 1 }, 100*time.Millisecond, tick)
}

// tokenSink hands the stream's events to the Merger one call per token
// (all of them once tokens is closed: a gate).
type tokenSink struct {
	m       *Merger
	tokens  chan struct{}
	entered chan struct{} // closed at the first call
	first   atomic.Bool
	closed  sync.Once
}

// release lets every call through from now on (closes tokens, once).
func (s *tokenSink) release() { s.closed.Do(func() { close(s.tokens) }) }

func newTokenSink(m *Merger) *tokenSink {
	return &tokenSink{m: m, tokens: make(chan struct{}, 16), entered: make(chan struct{})}
}

func (s *tokenSink) Stream(ctx context.Context, evs []webhook.Event) error {
	if s.first.CompareAndSwap(false, true) {
		close(s.entered)
	}
	<-s.tokens
	return s.m.Stream(ctx, evs)
}

func (s *tokenSink) Unreacted(ctx context.Context, evs []webhook.Event) error {
	return s.m.Unreacted(ctx, evs)
}

// TestTwinReadBeforeAnOutageConfirmsItsHold: the twin of a held event was
// read, but the store has not taken it yet when the connection turns out
// lost (Redis dropped the subscriber while it was behind). The hold must not
// go out as derived before that twin reaches the store: the event is
// delivered once, with the stream's body.
func TestTwinReadBeforeAnOutageConfirmsItsHold(t *testing.T) {
	const channel = "ocean.example"
	rs := redistest.Start(t)
	f := start(t, "", nil, nil)
	subs := &everyone{}
	sink := newTokenSink(f.m)
	release := sink.release
	sub, downs := runStream(t, f, rs, 1, subs, sink, nil, release)
	f.clk.Advance(window)

	f.api(t, mention("n1", "api"))
	bob := `{"channel":"mainStream:bob","message":{"type":"mention","body":{"id":"b0"}}}`
	_, err := rs.Publish(channel, bob)
	require.NoError(t, err)
	<-sink.entered // the store is busy with b0
	asked := subs.asked.Load()
	for _, msg := range []string{ // the twin waits for the store, b1 for room: the reader stops
		`{"channel":"mainStream:alice","message":{"type":"mention","body":{"id":"n1","from":"stream"}}}`,
		`{"channel":"mainStream:bob","message":{"type":"mention","body":{"id":"b1"}}}`,
	} {
		_, err = rs.Publish(channel, msg)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return subs.asked.Load() == asked+2 }, waitFor, tick)
	_, err = rs.Do("CLIENT", "KILL", "TYPE", "pubsub") // Redis drops the subscriber
	require.NoError(t, err)

	sink.tokens <- struct{}{} // b0 is stored; the twin is next
	require.Eventually(t, func() bool { return !sub.Health().Connected }, waitFor, tick)
	f.clk.Advance(2 * window)
	f.m.settle() // the hold's window is over, its twin not yet stored
	release()
	require.Eventually(t, func() bool { return downs.Load() > 0 && sub.Health().Connected }, waitFor, tick)
	f.clk.Advance(2 * window)
	f.m.settle()
	n1 := func() []string {
		var got []string
		for _, b := range f.rc.got() {
			if strings.Contains(b, `"n1"`) {
				got = append(got, b)
			}
		}
		return got
	}
	require.Eventually(t, func() bool { return len(n1()) > 0 }, waitFor, tick)
	assert.Never(t, func() bool { return len(n1()) > 1 }, 200*time.Millisecond, tick, "delivered once")
	assert.Equal(t, []string{`{"note":{"id":"n1","from":"stream"}}`}, n1())
}

// TestHoldsWaitWhileALostStreamDrains: the connection is lost while the
// reader is not behind but the store still has events read before the loss
// to take (b0). An API event held just before the loss lost its twin with
// the connection. While the subscriber waits for b0 before telling the loss,
// the hold must not be judged on a stream taken to be up (dropped: lost for
// good); once the loss is told it is delivered, as derived.
func TestHoldsWaitWhileALostStreamDrains(t *testing.T) {
	const channel = "ocean.example"
	rs := redistest.Start(t)
	f := start(t, "", nil, nil)
	sink := newTokenSink(f.m)
	release := sink.release
	sub, downs := runStream(t, f, rs, 16, &everyone{}, sink, nil, release)
	f.clk.Advance(window)

	_, err := rs.Publish(channel, `{"channel":"mainStream:bob","message":{"type":"mention","body":{"id":"b0"}}}`)
	require.NoError(t, err)
	<-sink.entered // the store is busy with b0
	f.api(t, mention("n1", "api"))
	_, err = rs.Do("CLIENT", "KILL", "TYPE", "pubsub") // n1's twin went with the connection
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !sub.Health().Connected }, waitFor, tick)
	assert.Zero(t, downs.Load(), "the loss is told once b0 is through")

	f.clk.Advance(2 * window)
	f.m.settle() // n1's window is over while b0 still waits for the store
	release()
	require.Eventually(t, func() bool { return downs.Load() > 0 && sub.Health().Connected }, waitFor, tick)
	settledAsDerived(t, f, `{"note":{"id":"n1","from":"api"}}`)
	assert.Len(t, f.rc.got(), 2, "b0 and n1, once each")
}

// noteReactions builds reaction bodies as the stream's reads would.
type noteReactions struct{}

func (noteReactions) ReactionBody(_ context.Context, noteID, reactorID, reaction string) ([]byte, bool, error) {
	return []byte(`{"note":{"id":"` + noteID + `"},"reaction":"` + reaction + `","user":{"id":"` + reactorID + `"},"from":"stream"}`), true, nil
}

// TestChangedReactionThroughTheStream: bob reacts to alice's note, then
// changes his reaction; Ocean publishes reacted, unreacted, reacted on a
// real Redis. Both reactions are delivered, once each, though they share a
// key; the API's copies, whenever they come, add nothing.
func TestChangedReactionThroughTheStream(t *testing.T) {
	const channel = "ocean.example"
	rs := redistest.Start(t)
	f := start(t, "", nil, nil)
	runStream(t, f, rs, 0, &everyone{}, f.m, noteReactions{}, nil)
	msg := func(typ, emoji string) string {
		return `{"channel":"noteStream:n1","message":{"type":"` + typ + `","body":{"id":"n1","userId":"alice","body":{"reaction":"` + emoji + `","emoji":null,"userId":"bob"}}}}`
	}
	f.api(t, reaction("👍", "api"))
	for _, raw := range []string{msg("reacted", "👍"), msg("unreacted", "👍"), msg("reacted", "❤")} {
		_, err := rs.Publish(channel, raw)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return len(f.rc.got()) >= 2 }, waitFor, tick)
	f.api(t, reaction("❤", "api"))
	assert.Never(t, func() bool { return len(f.rc.got()) > 2 }, 200*time.Millisecond, tick, "delivered once each")
	assert.ElementsMatch(t, []string{
		`{"note":{"id":"n1"},"reaction":"👍","user":{"id":"bob"},"from":"api"}`,
		`{"note":{"id":"n1"},"reaction":"❤","user":{"id":"bob"},"from":"stream"}`,
	}, f.rc.got())
}

// runStream runs a subscriber of rs's channel "ocean.example" (buffer 0:
// the default) that feeds sink and tells f's Merger its health, until the
// test ends; release, if any, runs first (a gated sink lets it finish). It
// returns the subscriber, connected, and the count of losses it told.
func runStream(t *testing.T, f *fixture, rs *redistest.Server, buffer int, subs stream.Subscriptions, sink stream.Sink,
	react stream.Reactions, release func()) (*stream.Subscriber, *atomic.Int64) {
	t.Helper()
	sub, err := stream.New(stream.Options{URL: rs.URL(), Channel: "ocean.example", PingInterval: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Buffer: buffer, Now: f.clk.Now,
		Logger: slog.New(slog.DiscardHandler)}, subs, sink, react)
	require.NoError(t, err)
	var downs atomic.Int64
	sub.OnHealth(func(h stream.Health) {
		if !h.Connected {
			downs.Add(1)
		}
	})
	sub.OnHealth(f.m.StreamHealth)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		if release != nil {
			release()
		}
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return sub.Health().Connected }, waitFor, tick)
	return sub, &downs
}

// settledAsDerived ends the holds due two windows from now and waits for
// body, the API's, to be delivered.
func settledAsDerived(t *testing.T, f *fixture, body string) {
	t.Helper()
	f.clk.Advance(2 * window)
	f.m.settle()
	require.Eventually(t, func() bool { return slices.Contains(f.rc.got(), body) }, waitFor, tick,
		"the held event is delivered: %q", f.rc.got())
}
