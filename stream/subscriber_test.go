package stream

import (
	"context"
	"errors"
	"log/slog"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/redistest"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// channel is Ocean's config.host in the capture.
const channel = "127.0.0.1:61812"

// recorder is a Sink that keeps what it is given; fail makes it refuse.
type recorder struct {
	mu     sync.Mutex
	events []webhook.Event
	fail   int // refuse this many calls first
}

func (r *recorder) Stream(_ context.Context, evs []webhook.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail > 0 {
		r.fail--
		return errors.New("disk on fire")
	}
	r.events = append(r.events, evs...)
	return nil
}

// Unreacted keeps each removed reaction as an event of type "unreacted".
func (r *recorder) Unreacted(_ context.Context, evs []webhook.Event) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range evs {
		ev.Type = "unreacted"
		r.events = append(r.events, ev)
	}
	return nil
}

func (r *recorder) got() []webhook.Event {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]webhook.Event(nil), r.events...)
}

// reactions answers ReactionBody from a table.
type reactions struct{ err error }

func (f reactions) ReactionBody(_ context.Context, noteID, reactorID, reaction string) ([]byte, bool, error) {
	if f.err != nil {
		return nil, false, f.err
	}
	return []byte(`{"note":{"id":"` + noteID + `"},"reaction":"` + reaction + `","user":{"id":"` + reactorID + `"}}`), true, nil
}

type harness struct {
	sub  *Subscriber
	sink *recorder
	reg  *prometheus.Registry
	logs *testlog.Buffer
}

func startSubscriber(t *testing.T, opts Options, subs Subscriptions) *harness {
	t.Helper()
	h := &harness{sink: &recorder{}, reg: prometheus.NewRegistry(), logs: &testlog.Buffer{}}
	opts.Registerer = h.reg
	opts.Logger = slog.New(slog.NewTextHandler(h.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	if opts.Channel == "" {
		opts.Channel = channel
	}
	if opts.PingInterval == 0 {
		opts.PingInterval = 200 * time.Millisecond
	}
	opts.MinBackoff, opts.MaxBackoff = 20*time.Millisecond, 100*time.Millisecond
	sub, err := New(opts, subs, h.sink, reactions{})
	require.NoError(t, err)
	h.sub = sub
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
	return h
}

func (h *harness) waitConnected(t *testing.T) {
	t.Helper()
	require.Eventually(t, func() bool { return h.sub.Health().Connected }, 10*time.Second, 5*time.Millisecond)
}

// TestSubscriberReplaysTheCapture publishes every captured message on a real
// Redis: what reaches the Sink are Ocean's native deliveries, bodies byte for
// byte, plus the reaction Ocean does not send.
func TestSubscriberReplaysTheCapture(t *testing.T) {
	rs := redistest.Start(t)
	h := startSubscriber(t, Options{URL: rs.URL()}, everyone{})
	h.waitConnected(t)

	var want []string
	total := 0
	for _, s := range loadScenarios(t) {
		for _, raw := range s.Messages {
			n, err := rs.Publish(channel, raw)
			require.NoError(t, err)
			require.Equal(t, 1, n)
			total++
		}
		for _, e := range s.Native {
			want = append(want, eventKey(e))
		}
	}
	want = append(want, "reaction|au24s4u0a28b0004|"+`{"note":{"id":"au24shsea28b000d"},"reaction":"👍","user":{"id":"au24s4z7a28b0005"}}`)
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(h.sub.m.messages.WithLabelValues(string(Ignored)))+
			testutil.ToFloat64(h.sub.m.messages.WithLabelValues(string(Derived))) == float64(total)
	}, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(h.sink.got()) >= len(want) }, 10*time.Second, 5*time.Millisecond)

	seen := map[string]bool{}
	var got []string
	for _, e := range h.sink.got() {
		k := eventKey(e)
		if !seen[k] { // a note published twice is folded by the confirm step
			seen[k] = true
			got = append(got, k)
		}
	}
	sort.Strings(got)
	sort.Strings(want)
	assert.Equal(t, want, got)
}

// TestSubscriberSurvivesOutages: unreachable at start, up, killed, back: the
// subscriber keeps trying, reports each state once in the log, counts the
// reconnects, and takes events again after each return.
func TestSubscriberSurvivesOutages(t *testing.T) {
	port := redistest.FreePort(t)
	h := startSubscriber(t, Options{URL: "redis://127.0.0.1:" + itoa(port)}, everyone{})
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.sub.m.reconnects) >= 2 }, 10*time.Second, 5*time.Millisecond)
	assert.False(t, h.sub.Health().Connected)
	assert.NotEmpty(t, h.sub.Health().LastError)

	rs := redistest.StartOn(t, port)
	h.waitConnected(t)
	mention := `{"channel":"mainStream:u1","message":{"type":"mention","body":{"id":"n1"}}}`
	_, err := rs.Publish(channel, mention)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.sink.got()) == 1 }, 10*time.Second, 5*time.Millisecond)

	rs.Stop()
	require.Eventually(t, func() bool { return !h.sub.Health().Connected }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 0.0, testutil.ToFloat64(h.sub.m.connected))

	rs = redistest.StartOn(t, port)
	h.waitConnected(t)
	_, err = rs.Publish(channel, mention)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.sink.got()) == 2 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 1.0, testutil.ToFloat64(h.sub.m.connected))
	logs := h.logs.String()
	assert.Equal(t, 2, countOf(logs, "event stream connected"))
	assert.Equal(t, 2, countOf(logs, "event stream down"), "one line per state change, not per retry")
}

// TestSubscriberBackAfterAStall: Redis stops answering for longer than two
// ping intervals (a long command, a fork, a paused host) without closing the
// connection, then answers again. The stream is down meanwhile; once Redis
// answers it is up again, not taken to be down for as long as the
// connection lasts while it carries events.
func TestSubscriberBackAfterAStall(t *testing.T) {
	rs := redistest.Start(t, redistest.WithConfig("enable-debug-command yes"))
	h := startSubscriber(t, Options{URL: rs.URL()}, everyone{})
	h.waitConnected(t)
	slept := make(chan error, 1)
	go func() {
		_, err := rs.Do("DEBUG", "SLEEP", "1")
		slept <- err
	}()
	require.Eventually(t, func() bool { return !h.sub.Health().Connected }, 10*time.Second, 5*time.Millisecond)
	require.NoError(t, <-slept)
	_, err := rs.Publish(channel, `{"channel":"mainStream:u1","message":{"type":"mention","body":{"id":"n1"}}}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.sink.got()) == 1 }, 10*time.Second, 5*time.Millisecond)
	h.waitConnected(t)
}

// TestSubscriberWrongPassword: a refused login is an outage with a reason that
// does not quote the password.
func TestSubscriberWrongPassword(t *testing.T) {
	rs := redistest.Start(t, redistest.WithPassword("right-pass"))
	h := startSubscriber(t, Options{URL: "redis://:wrong-pass@" + rs.Addr}, everyone{})
	require.Eventually(t, func() bool { return testutil.ToFloat64(h.sub.m.reconnects) >= 1 }, 10*time.Second, 5*time.Millisecond)
	hl := h.sub.Health()
	assert.False(t, hl.Connected)
	assert.NotContains(t, hl.LastError, "wrong-pass")
	assert.NotContains(t, h.logs.String(), "wrong-pass")

	h2 := startSubscriber(t, Options{URL: "redis://" + rs.Addr, Password: "right-pass"}, everyone{})
	h2.waitConnected(t)
	assert.NotContains(t, h2.logs.String(), "right-pass")
}

// TestSubscriberWithTheReadmeACL: the ACL the README gives (SUBSCRIBE on the
// one channel, PING) is all the subscriber needs.
func TestSubscriberWithTheReadmeACL(t *testing.T) {
	rs := redistest.Start(t, redistest.WithConfig("user oceanhooks on >s3cret resetchannels &"+channel+" -@all +subscribe +ping"))
	h := startSubscriber(t, Options{URL: "redis://oceanhooks:s3cret@" + rs.Addr}, everyone{})
	h.waitConnected(t)
	_, err := rs.Publish(channel, `{"channel":"mainStream:u1","message":{"type":"follow","body":{"id":"u2"}}}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.sink.got()) == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.JSONEq(t, `{"user":{"id":"u2"}}`, string(h.sink.got()[0].Body))
}

// TestSubscriberNeverLogsMessages: secrets on the channel never reach the
// log, whatever the message's shape; a message of unknown shape is counted.
func TestSubscriberNeverLogsMessages(t *testing.T) {
	rs := redistest.Start(t)
	h := startSubscriber(t, Options{URL: rs.URL()}, everyone{})
	h.waitConnected(t)
	for _, raw := range []string{
		`{"channel":"internal","message":{"type":"userTokenRegenerated","body":{"id":"u1","token":"SECRET-TOKEN"}}}`,
		`{"channel":"internal","message":{"type":"webhookCreated","body":{"secret":"SECRET-HOOK"}}}`,
		`{"channel":"mainStream:u1","message":{"type":"mention","body":"SECRET-BODY"}}`,
		`SECRET-NOT-JSON`,
		`{"channel":"noteStream:n1","message":{"type":"unreacted","body":{"id":"n1","userId":"u1","body":{"reaction":"SECRET-REACTION"}}}}`,
	} {
		_, err := rs.Publish(channel, raw)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(h.sub.m.messages.WithLabelValues(string(Malformed))) == 3
	}, 10*time.Second, 5*time.Millisecond)
	assert.NotContains(t, h.logs.String(), "SECRET")
	assert.Contains(t, h.logs.String(), "unknown shape")
	assert.Empty(t, h.sink.got())
}

// TestSubscriberRetriesTheSink: a store that fails for a while loses nothing
// the stream carried.
func TestSubscriberRetriesTheSink(t *testing.T) {
	rs := redistest.Start(t)
	h := startSubscriber(t, Options{URL: rs.URL()}, everyone{})
	h.sink.fail = 3
	h.waitConnected(t)
	_, err := rs.Publish(channel, `{"channel":"mainStream:u1","message":{"type":"unfollow","body":{"id":"u2"}}}`)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return len(h.sink.got()) == 1 }, 10*time.Second, 5*time.Millisecond)
	assert.Equal(t, 3.0, testutil.ToFloat64(h.sub.m.sinkFailures))
}

func countOf(s, sub string) int { return strings.Count(s, sub) }

func itoa(n int) string { return strconv.Itoa(n) }

// TestSubscriberRunsAgain: a Run that returned (a sidecar's term leading the
// stream ended) can be followed by another on the same Subscriber: it
// connects again with a client of its own, its state changes reach OnHealth
// again, and it takes messages; the metrics stay registered once.
func TestSubscriberRunsAgain(t *testing.T) {
	rs := redistest.Start(t)
	sink, reg := &recorder{}, prometheus.NewRegistry()
	sub, err := New(Options{URL: rs.URL(), Channel: channel, PingInterval: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler), Registerer: reg}, everyone{}, sink, reactions{})
	require.NoError(t, err)
	var mu sync.Mutex
	var states []bool
	sub.OnHealth(func(h Health) {
		mu.Lock()
		states = append(states, h.Connected)
		mu.Unlock()
	})
	mention := `{"channel":"mainStream:u1","message":{"type":"mention","body":{"id":"n1"}}}`
	for term := 1; term <= 2; term++ {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan error, 1)
		go func() { done <- sub.Run(ctx) }()
		require.Eventually(t, func() bool { return sub.Health().Connected }, 10*time.Second, 5*time.Millisecond, "term %d", term)
		_, err := rs.Publish(channel, mention)
		require.NoError(t, err)
		require.Eventually(t, func() bool { return len(sink.got()) == term }, 10*time.Second, 5*time.Millisecond, "term %d", term)
		cancel()
		require.NoError(t, <-done)
		assert.Equal(t, "stopped", sub.Health().LastError)
		assert.Equal(t, 0.0, testutil.ToFloat64(sub.m.connected))
	}
	mu.Lock()
	assert.Equal(t, []bool{true, true}, states, "each term's connection is reported")
	mu.Unlock()
	n, err := testutil.GatherAndCount(reg, "oceanhooks_stream_connected")
	require.NoError(t, err)
	assert.Equal(t, 1, n)
}

// TestSubscriberStopsReadingWhenItsContextEnds: a Run whose context ends
// returns without waiting for the next ping (here a minute away), so a
// sidecar whose term leading the stream ended stops reading before another
// takes over.
func TestSubscriberStopsReadingWhenItsContextEnds(t *testing.T) {
	rs := redistest.Start(t)
	sub, err := New(Options{URL: rs.URL(), Channel: channel, PingInterval: time.Minute,
		Logger: slog.New(slog.DiscardHandler)}, everyone{}, &recorder{}, reactions{})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	require.Eventually(t, func() bool { return sub.Health().Connected }, 10*time.Second, 5*time.Millisecond)
	cancel()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(30 * time.Second):
		t.Fatal("Run still reading after its context ended")
	}
}

// gate is a Sink that takes nothing until it is opened.
type gate struct {
	recorder
	open chan struct{}
}

func (g *gate) Stream(ctx context.Context, evs []webhook.Event) error {
	<-g.open
	return g.recorder.Stream(ctx, evs)
}

// TestSubscriberBehindThenCaughtUp: a Sink that does not keep up makes the
// reader stop: the state reads Behind from then (Redis may drop what it
// holds for us), and, once the reader goes on and a ping shows the
// connection dropped nothing, connected again, with every event delivered
// and no outage counted.
func TestSubscriberBehindThenCaughtUp(t *testing.T) {
	rs := redistest.Start(t)
	sink := &gate{open: make(chan struct{})}
	sub, err := New(Options{URL: rs.URL(), Channel: channel, PingInterval: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, Buffer: 1,
		Logger: slog.New(slog.DiscardHandler)}, everyone{}, sink, reactions{})
	require.NoError(t, err)
	var mu sync.Mutex
	var states []string
	sub.OnHealth(func(h Health) {
		mu.Lock()
		defer mu.Unlock()
		switch {
		case !h.Connected:
			states = append(states, "down")
		case h.Behind:
			states = append(states, "behind")
		default:
			states = append(states, "up")
		}
	})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	var once sync.Once
	release := func() { once.Do(func() { close(sink.open) }) }
	t.Cleanup(func() {
		release()
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return sub.Health().Connected }, 10*time.Second, 5*time.Millisecond)
	for i := range 5 {
		_, err := rs.Publish(channel, `{"channel":"mainStream:u1","message":{"type":"mention","body":{"id":"n`+itoa(i)+`"}}}`)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool { return sub.Health().Behind }, 10*time.Second, 5*time.Millisecond)
	assert.True(t, sub.Health().Connected)
	release()
	require.Eventually(t, func() bool { h := sub.Health(); return h.Connected && !h.Behind }, 10*time.Second, 5*time.Millisecond)
	require.Eventually(t, func() bool { return len(sink.got()) == 5 }, 10*time.Second, 5*time.Millisecond)
	mu.Lock()
	assert.Equal(t, []string{"up", "behind", "up"}, states)
	mu.Unlock()
	assert.Equal(t, 0.0, testutil.ToFloat64(sub.m.reconnects))
}

// slowReactions answers ReactionBody as reactions does, the first call
// once released is closed (entered is closed when it starts).
type slowReactions struct {
	reactions
	calls   atomic.Int64
	entered chan struct{}
	release chan struct{}
}

func (f *slowReactions) ReactionBody(ctx context.Context, noteID, reactorID, reaction string) ([]byte, bool, error) {
	if f.calls.Add(1) == 1 {
		close(f.entered)
		<-f.release
	}
	return f.reactions.ReactionBody(ctx, noteID, reactorID, reaction)
}

// TestSubscriberRemovedReactionInOrder: a reaction changed (👍 then ❤️:
// Ocean publishes reacted, then unreacted and reacted) reaches the Sink in
// that order even when reading the first reaction's note is slow: the
// removal comes after the first reaction is stored and before the second,
// so the second is not taken for a repeat of the first, nor forgotten.
func TestSubscriberRemovedReactionInOrder(t *testing.T) {
	rs := redistest.Start(t)
	sink := &recorder{}
	react := &slowReactions{entered: make(chan struct{}), release: make(chan struct{})}
	sub, err := New(Options{URL: rs.URL(), Channel: channel, PingInterval: 200 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond,
		Logger: slog.New(slog.DiscardHandler)}, everyone{}, sink, react)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- sub.Run(ctx) }()
	var once sync.Once
	release := func() { once.Do(func() { close(react.release) }) }
	t.Cleanup(func() {
		release()
		cancel()
		require.NoError(t, <-done)
	})
	require.Eventually(t, func() bool { return sub.Health().Connected }, 10*time.Second, 5*time.Millisecond)
	msg := func(typ, reaction string) string {
		return `{"channel":"noteStream:n1","message":{"type":"` + typ + `","body":{"id":"n1","userId":"u1","body":{"reaction":"` + reaction + `","emoji":null,"userId":"u2"}}}}`
	}
	_, err = rs.Publish(channel, msg("reacted", "👍"))
	require.NoError(t, err)
	<-react.entered // the first reaction's read is slow
	for _, raw := range []string{msg("unreacted", "👍"), msg("reacted", "❤")} {
		_, err = rs.Publish(channel, raw)
		require.NoError(t, err)
	}
	require.Eventually(t, func() bool {
		return testutil.ToFloat64(sub.m.messages.WithLabelValues(string(Derived))) == 3
	}, 10*time.Second, 5*time.Millisecond)
	assert.Never(t, func() bool { return len(sink.got()) > 0 }, 200*time.Millisecond, 5*time.Millisecond,
		"nothing overtakes the first reaction")
	release()
	require.Eventually(t, func() bool { return len(sink.got()) == 3 }, 10*time.Second, 5*time.Millisecond)
	var got []string
	for _, ev := range sink.got() {
		got = append(got, ev.Type+"|"+ev.UserID+"|"+string(ev.Body))
	}
	assert.Equal(t, []string{
		`reaction|u1|{"note":{"id":"n1"},"reaction":"👍","user":{"id":"u2"}}`,
		`unreacted|u1|{"note":{"id":"n1"},"user":{"id":"u2"}}`,
		`reaction|u1|{"note":{"id":"n1"},"reaction":"❤","user":{"id":"u2"}}`,
	}, got)
}
