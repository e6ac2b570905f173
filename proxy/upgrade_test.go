package proxy

import (
	"bytes"
	"context"
	"encoding/binary"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// wsUpstream is a streaming endpoint: it greets first (a server-initiated
// message), then echoes every message.
func wsUpstream(t *testing.T) *httptest.Server {
	return newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/streaming" {
			http.NotFound(w, r)
			return
		}
		wsEcho(w, r)
	}))
}

// wsEcho is wsUpstream's streaming endpoint.
func wsEcho(w http.ResponseWriter, r *http.Request) {
	c, err := websocket.Accept(w, r, nil)
	if err != nil {
		return
	}
	defer c.CloseNow()
	c.SetReadLimit(1 << 20)
	ctx := context.Background()
	if err := c.Write(ctx, websocket.MessageText, []byte("hello "+r.URL.Query().Get("i"))); err != nil {
		return
	}
	for {
		typ, msg, err := c.Read(ctx)
		if err != nil {
			return
		}
		if string(msg) == "close-me" {
			_ = c.Close(4000, "done")
			return
		}
		if err := c.Write(ctx, typ, msg); err != nil {
			return
		}
	}
}

// dial asks sc for a WebSocket at path (and a query), over a transport of
// its own.
func dial(t *testing.T, sc *sidecar, path string) (*websocket.Conn, *http.Response, error) {
	t.Helper()
	tr := &http.Transport{}
	t.Cleanup(tr.CloseIdleConnections)
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	return websocket.Dial(ctx, "ws"+strings.TrimPrefix(sc.srv.URL, "http")+path,
		&websocket.DialOptions{HTTPClient: &http.Client{Transport: tr}})
}

func dialWS(t *testing.T, sc *sidecar) *websocket.Conn {
	t.Helper()
	c, resp, err := dial(t, sc, "/streaming?i=tok")
	require.NoError(t, err)
	require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)
	c.SetReadLimit(1 << 20)
	t.Cleanup(func() { c.CloseNow() })
	return c
}

// dialRefused asks sc for a WebSocket that it must refuse, and returns the
// answer it gave instead.
func dialRefused(t *testing.T, sc *sidecar) *http.Response {
	t.Helper()
	_, resp, err := dial(t, sc, "/streaming")
	require.Error(t, err, "the upgrade is refused")
	require.NotNil(t, resp)
	return resp
}

func readMsg(t *testing.T, c *websocket.Conn) (websocket.MessageType, []byte) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	typ, msg, err := c.Read(ctx)
	require.NoError(t, err)
	return typ, msg
}

func openUpgrades(p *Proxy) float64 { return testutil.ToFloat64(p.m.upgraded) }

func TestWebSocketBothWays(t *testing.T) {
	sc := newSidecar(t, wsUpstream(t).URL, nil)
	c := dialWS(t, sc)

	_, greeting := readMsg(t, c)
	assert.Equal(t, "hello tok", string(greeting), "server-initiated message")

	ctx := t.Context()
	msgs := []struct {
		typ  websocket.MessageType
		data []byte
	}{
		{websocket.MessageText, []byte(`{"type":"connect","body":{"channel":"homeTimeline","id":"1"}}`)},
		{websocket.MessageBinary, testBytes(200, 1)},
		{websocket.MessageBinary, testBytes(70_000, 2)}, // 64-bit length header
		{websocket.MessageText, []byte{}},
	}
	for _, m := range msgs {
		require.NoError(t, c.Write(ctx, m.typ, m.data))
		typ, echo := readMsg(t, c)
		assert.Equal(t, m.typ, typ)
		assert.True(t, bytes.Equal(m.data, echo), "echo differs for a %d-byte message", len(m.data))
	}
	assert.Equal(t, 1.0, openUpgrades(sc.p))

	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	require.Eventually(t, func() bool { return openUpgrades(sc.p) == 0 }, guard, 5*time.Millisecond)
	assert.Equal(t, 1.0, sc.requests(t, labelStreaming, "1xx"))
	assert.Zero(t, histogramCount(t, sc.p.streamRoute.duration), "upgrades stay out of the latency histogram")
}

func TestWebSocketClosedByUpstream(t *testing.T) {
	sc := newSidecar(t, wsUpstream(t).URL, nil)
	c := dialWS(t, sc)
	readMsg(t, c)
	require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte("close-me")))
	ctx, cancel := context.WithTimeout(t.Context(), guard)
	defer cancel()
	_, _, err := c.Read(ctx)
	require.Error(t, err)
	assert.Equal(t, websocket.StatusCode(4000), websocket.CloseStatus(err), "read error: %v", err)
	require.Eventually(t, func() bool { return openUpgrades(sc.p) == 0 }, guard, 5*time.Millisecond)
}

func TestShutdownTellsWebSocketClientsGoingAway(t *testing.T) {
	sc := newSidecar(t, wsUpstream(t).URL, nil)
	sc.p.upgrades.linger = 200 * time.Millisecond
	c := dialWS(t, sc)
	readMsg(t, c)
	require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte("ping")))
	readMsg(t, c)

	ctx, cancel := context.WithCancel(t.Context())
	cancel() // the grace period is over
	require.NoError(t, sc.p.Shutdown(ctx))

	rctx, rcancel := context.WithTimeout(t.Context(), guard)
	defer rcancel()
	_, _, err := c.Read(rctx)
	require.Error(t, err)
	assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "read error: %v", err)
	require.Eventually(t, func() bool { return openUpgrades(sc.p) == 0 }, guard, 5*time.Millisecond)
}

func TestShutdownWaitsForWebSockets(t *testing.T) {
	sc := newSidecar(t, wsUpstream(t).URL, nil)
	c := dialWS(t, sc)
	readMsg(t, c)

	done := make(chan error, 1)
	go func() { done <- sc.p.Shutdown(context.Background()) }()
	require.Never(t, func() bool { return len(done) > 0 }, 50*time.Millisecond, 5*time.Millisecond,
		"Shutdown returned while a WebSocket was open")

	// The connection still works during the grace period.
	require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte("still here")))
	_, echo := readMsg(t, c)
	assert.Equal(t, "still here", string(echo))

	require.NoError(t, c.Close(websocket.StatusNormalClosure, ""))
	select {
	case err := <-done:
		assert.NoError(t, err)
	case <-time.After(guard):
		t.Fatal("Shutdown did not return after the last WebSocket closed")
	}
}

// TestShutdownWithoutUpgrades: with no upgraded connection open, Shutdown
// returns nil at once, even while the grace period runs; it drops idle
// upstream connections but leaves a response that is still streaming alone,
// and the proxy still forwards. When the grace is over, a later upgrade is
// refused as it is when connections were open.
func TestShutdownWithoutUpgrades(t *testing.T) {
	release := make(chan struct{})
	var closed atomic.Int32
	upstream := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path != "/stream" {
			_, _ = io.WriteString(w, "plain")
			return
		}
		_, _ = io.WriteString(w, "part1,")
		_ = http.NewResponseController(w).Flush()
		select {
		case <-release:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "part2")
	}))
	upstream.Config.ConnState = func(_ net.Conn, st http.ConnState) {
		if st == http.StateClosed {
			closed.Add(1)
		}
	}
	upstream.Start()
	t.Cleanup(upstream.Close)
	sc := newSidecar(t, upstream.URL, nil)
	get := func(path string) string {
		t.Helper()
		resp, err := sc.client.Get(sc.url(path))
		require.NoError(t, err)
		defer resp.Body.Close()
		require.Equal(t, http.StatusOK, resp.StatusCode)
		return string(readAll(t, resp.Body))
	}

	// A response in flight on one upstream connection, an idle one beside it.
	stream, err := sc.client.Get(sc.url("/stream"))
	require.NoError(t, err)
	defer stream.Body.Close()
	first := make([]byte, len("part1,"))
	_, err = io.ReadFull(stream.Body, first)
	require.NoError(t, err)
	require.Equal(t, "plain", get("/plain"))
	require.Zero(t, closed.Load())

	done := make(chan error, 1)
	go func() { done <- sc.p.Shutdown(context.Background()) }()
	select {
	case err := <-done:
		require.NoError(t, err)
	case <-time.After(guard):
		t.Fatal("Shutdown blocked with no upgraded connection open")
	}
	require.Eventually(t, func() bool { return closed.Load() == 1 }, guard, 5*time.Millisecond,
		"the idle upstream connection is dropped")

	close(release)
	rest := readAll(t, stream.Body)
	assert.Equal(t, "part1,part2", string(first)+string(rest), "the streaming response is left alone")
	assert.Equal(t, "plain", get("/plain"), "the proxy still forwards")

	t.Run("grace over", func(t *testing.T) {
		sc := newSidecar(t, wsUpstream(t).URL, nil)
		ctx, cancel := context.WithCancel(t.Context())
		cancel()
		require.NoError(t, sc.p.Shutdown(ctx))

		assert.Equal(t, http.StatusBadGateway, dialRefused(t, sc).StatusCode)
		assert.Zero(t, openUpgrades(sc.p))
	})
}

func TestUpgradeAfterGraceIsRefused(t *testing.T) {
	sc := newSidecar(t, wsUpstream(t).URL, nil)
	sc.p.upgrades.linger = 100 * time.Millisecond
	first := dialWS(t, sc)
	readMsg(t, first)
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	require.NoError(t, sc.p.Shutdown(ctx))

	assert.Equal(t, http.StatusBadGateway, dialRefused(t, sc).StatusCode)
	assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamUnavailable]), "not an upstream failure")
}

// frame builds a server-to-client WebSocket frame.
func frame(opcode byte, payload []byte, masked bool) []byte {
	f := []byte{0x80 | opcode}
	mask := byte(0)
	if masked {
		mask = 0x80
	}
	switch n := len(payload); {
	case n < 126:
		f = append(f, mask|byte(n))
	case n <= 0xffff:
		f = append(f, mask|126)
		f = binary.BigEndian.AppendUint16(f, uint16(n))
	default:
		f = append(f, mask|127)
		f = binary.BigEndian.AppendUint64(f, uint64(n))
	}
	if masked {
		f = append(f, 1, 2, 3, 4)
	}
	return append(f, payload...)
}

func TestFrameTracker(t *testing.T) {
	var stream []byte
	var boundaries []int
	for _, f := range [][]byte{
		frame(0x1, []byte("hi"), false),
		frame(0x2, nil, false),
		frame(0x2, testBytes(125, 1), false),
		frame(0x2, testBytes(126, 2), false),
		frame(0x2, testBytes(65535, 3), false),
		frame(0x2, testBytes(65536, 4), false),
		frame(0x9, []byte("ping"), true),
	} {
		stream = append(stream, f...)
		boundaries = append(boundaries, len(stream))
	}
	isBoundary := map[int]bool{0: true}
	for _, b := range boundaries {
		isBoundary[b] = true
	}
	for _, step := range []int{1, 3, 7, 1000, len(stream)} {
		var tr frameTracker
		for i := 0; i < len(stream); i += step {
			end := min(i+step, len(stream))
			tr.feed(stream[i:end])
			if tr.atBoundary() != isBoundary[end] {
				t.Fatalf("step %d: at byte %d atBoundary=%v, want %v", step, end, tr.atBoundary(), isBoundary[end])
			}
		}
		assert.False(t, tr.sawClose)
	}
	var tr frameTracker
	tr.feed(frame(0x8, []byte{0x03, 0xe8}, false))
	assert.True(t, tr.sawClose)
	assert.True(t, tr.atBoundary())
}

// TestGoAwayNeverSplitsAFrame: mid-frame, no close frame is injected; the
// connection is just closed.
func TestGoAwayNeverSplitsAFrame(t *testing.T) {
	cases := []struct {
		name    string
		written []byte
		want    []byte
	}{
		{"at a boundary", frame(0x1, []byte("hi"), false), append(frame(0x1, []byte("hi"), false), goingAway...)},
		{"mid-frame", frame(0x1, []byte("hello"), false)[:4], frame(0x1, []byte("hello"), false)[:4]},
		{"after the upstream's close", frame(0x8, []byte{0x03, 0xe8}, false), frame(0x8, []byte{0x03, 0xe8}, false)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			p, err := New(Options{Upstream: mustURL(t, "http://127.0.0.1:1")})
			require.NoError(t, err)
			p.upgrades.linger = 10 * time.Millisecond
			server, client := net.Pipe()
			got := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(client)
				got <- b
			}()
			c := p.upgrades.track(server, true)
			_, err = c.Write(tc.written)
			require.NoError(t, err)
			c.(*upgradedConn).goAway()
			n, err := c.Write([]byte("dropped after going away"))
			assert.NoError(t, err)
			assert.Equal(t, len("dropped after going away"), n)
			select {
			case b := <-got:
				assert.Equal(t, tc.want, b)
			case <-time.After(guard):
				t.Fatal("connection never closed")
			}
			require.Eventually(t, func() bool { return openUpgrades(p) == 0 }, guard, 5*time.Millisecond)
		})
	}
}
