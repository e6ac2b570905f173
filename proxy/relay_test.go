package proxy

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/coder/websocket"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestUpgradedConnectionsHoldNothingWhileIdle: on the lean transport an
// upgraded connection is handed to the relay once the 101 went out: the
// handler returns (its request counted as answered), and an idle
// connection holds no copy buffer. On net/http's transport ReverseProxy
// copies for the connection's whole life, with a buffer per direction.
// Either way the connections keep working and are told the server is going
// away at shutdown.
func TestUpgradedConnectionsHoldNothingWhileIdle(t *testing.T) {
	const n = 6
	cases := []struct {
		transport       string
		handlersReturn  bool
		buffersWhenIdle int64
	}{
		{TransportLean, true, 0},
		{TransportStdlib, false, 2 * n},
	}
	for _, tc := range cases {
		t.Run(tc.transport, func(t *testing.T) {
			sc := newSidecar(t, wsUpstream(t).URL, onTransport(tc.transport))
			sc.p.upgrades.linger = 200 * time.Millisecond
			conns := make([]*websocket.Conn, n)
			for i := range conns {
				conns[i] = dialWS(t, sc)
				_, greeting := readMsg(t, conns[i])
				require.Equal(t, "hello tok", string(greeting))
			}
			require.Eventually(t, func() bool { return openUpgrades(sc.p) == n }, guard, time.Millisecond)
			if tc.handlersReturn {
				require.Eventually(t, func() bool { return sc.requests(t, labelStreaming, "1xx") == n }, guard, time.Millisecond,
					"every handler returned while its connection lives on")
			} else {
				assert.Zero(t, sc.requests(t, labelStreaming, "1xx"), "the handlers wait for their connections")
			}
			require.Eventually(t, func() bool { return sc.p.upgrades.buffers.Load() == tc.buffersWhenIdle }, guard, time.Millisecond)

			for i, c := range conns {
				msg := fmt.Sprintf("message %d after a rest", i)
				require.NoError(t, c.Write(t.Context(), websocket.MessageText, []byte(msg)))
				_, echo := readMsg(t, c)
				assert.Equal(t, msg, string(echo))
			}
			big := testBytes(200<<10, 3) // several relay buffers' worth
			require.NoError(t, conns[0].Write(t.Context(), websocket.MessageBinary, big))
			_, echo := readMsg(t, conns[0])
			assert.Equal(t, sha(big), sha(echo))
			require.Eventually(t, func() bool { return sc.p.upgrades.buffers.Load() == tc.buffersWhenIdle }, guard, time.Millisecond,
				"the buffers come back once the bytes are through")

			ctx, cancel := context.WithCancel(t.Context())
			cancel()
			require.NoError(t, sc.p.Shutdown(ctx))
			for _, c := range conns {
				rctx, rcancel := context.WithTimeout(t.Context(), guard)
				_, _, err := c.Read(rctx)
				rcancel()
				assert.Equal(t, websocket.StatusGoingAway, websocket.CloseStatus(err), "read error: %v", err)
			}
			require.Eventually(t, func() bool { return openUpgrades(sc.p) == 0 && sc.p.upgrades.buffers.Load() == 0 },
				guard, time.Millisecond)
		})
	}
}

// TestUpgradeCarriesBytesOnBothSidesOfTheSwitch: bytes the client sends
// right behind its upgrade request, and bytes the upstream sends right
// behind its 101, both arrive; a half-close passes through, each way.
func TestUpgradeCarriesBytesOnBothSidesOfTheSwitch(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream := rawUpstream(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				req, err := http.ReadRequest(br)
				if err != nil || req.Header.Get("Upgrade") != "echo" {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nGREETING;")
				_, _ = io.Copy(c, br) // echoes until the client's half-close
				_, _ = io.WriteString(c, ";BYE")
			})
			sc := newSidecar(t, upstream, onTransport(tr))
			conn, err := netDial(sc.srv.URL)
			require.NoError(t, err)
			t.Cleanup(func() { _ = conn.Close() })
			require.NoError(t, conn.SetDeadline(time.Now().Add(guard)))
			_, err = io.WriteString(conn, "GET /streaming HTTP/1.1\r\nHost: ocean.example\r\nConnection: Upgrade\r\nUpgrade: echo\r\n\r\nEARLY;")
			require.NoError(t, err)
			br := bufio.NewReader(conn)
			resp, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusSwitchingProtocols, resp.StatusCode)

			got := make([]byte, len("GREETING;EARLY;"))
			_, err = io.ReadFull(br, got)
			require.NoError(t, err)
			assert.Equal(t, "GREETING;EARLY;", string(got))
			_, err = io.WriteString(conn, "later")
			require.NoError(t, err)
			got = make([]byte, len("later"))
			_, err = io.ReadFull(br, got)
			require.NoError(t, err)
			assert.Equal(t, "later", string(got))

			require.NoError(t, conn.(*net.TCPConn).CloseWrite())
			rest, err := io.ReadAll(br)
			require.NoError(t, err, "the upstream's end reaches the client as an end")
			assert.Equal(t, ";BYE", string(rest))
			require.Eventually(t, func() bool { return openUpgrades(sc.p) == 0 && sc.p.upgrades.buffers.Load() == 0 },
				guard, time.Millisecond)
		})
	}
}

// TestUpgradeRefusedByUpstream: an upstream that answers an upgrade request
// with a plain response is passed through as one, and its connection goes
// back to work.
func TestUpgradeRefusedByUpstream(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream, cc := countedUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				http.Error(w, "no streaming here", http.StatusForbidden)
			}), nil)
			sc := newSidecar(t, upstream.URL, onTransport(tr))
			for range 2 {
				resp := dialRefused(t, sc)
				assert.Equal(t, http.StatusForbidden, resp.StatusCode)
				assert.True(t, strings.HasPrefix(string(readAll(t, resp.Body)), "no streaming here"))
			}
			assert.Equal(t, int32(1), cc.opened.Load())
			assert.Zero(t, openUpgrades(sc.p))
		})
	}
}
