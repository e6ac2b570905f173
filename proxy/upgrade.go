package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// http.Server.Shutdown does not wait for hijacked connections, so the proxy
// keeps its own set of upgraded (WebSocket) connections and Shutdown deals
// with them.

const (
	// goAwayWriteTimeout bounds writing the close frame to a client that
	// does not read.
	goAwayWriteTimeout = time.Second
	// closeLinger is how long a client told "going away" has to answer the
	// close handshake before its connection is closed anyway.
	closeLinger = 2 * time.Second
)

// goingAway is a server-to-client WebSocket close frame: FIN+close opcode,
// unmasked, status 1001 "going away".
var goingAway = func() []byte {
	reason := "server shutting down"
	f := []byte{0x88, byte(2 + len(reason)), 0x03, 0xE9}
	return append(f, reason...)
}()

type upgrades struct {
	p       *Proxy
	mu      sync.Mutex
	conns   map[*upgradedConn]struct{}
	closing bool          // grace is over: new upgrades are told to go away at once
	drained chan struct{} // closed when conns becomes empty after Shutdown began
	linger  time.Duration // closeLinger; shorter in tests
	buffers atomic.Int64  // copy buffers held by upgraded connections
}

func (u *upgrades) init(p *Proxy) {
	u.p = p
	u.linger = closeLinger
	u.conns = make(map[*upgradedConn]struct{})
}

func (u *upgrades) isClosing() bool {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.closing
}

func (u *upgrades) track(conn net.Conn, ws bool) net.Conn {
	c := &upgradedConn{Conn: conn, u: u, ws: ws}
	u.mu.Lock()
	u.conns[c] = struct{}{}
	u.mu.Unlock()
	u.p.m.upgraded.Inc()
	return c
}

func (u *upgrades) remove(c *upgradedConn) {
	u.mu.Lock()
	delete(u.conns, c)
	if len(u.conns) == 0 && u.drained != nil {
		close(u.drained)
		u.drained = nil
	}
	u.mu.Unlock()
	u.p.m.upgraded.Dec()
}

// Shutdown waits until every upgraded (WebSocket) connection has ended or
// ctx is done; then it tells each remaining WebSocket client that the server
// is going away (close status 1001), closes the connections within a short
// linger, and returns nil. Call it beside http.Server.Shutdown with the same
// grace context: the server waits for ordinary requests, Shutdown for the
// connections the server no longer sees. It also drops idle upstream
// connections; responses still streaming are left alone. Upgrades asked for
// after the grace period are refused with an Ocean-style 502, whether or not
// any connection was open when it ended.
func (p *Proxy) Shutdown(ctx context.Context) error {
	defer p.closeIdle()
	u := &p.upgrades
	u.mu.Lock()
	if len(u.conns) == 0 {
		if ctx.Err() != nil {
			u.closing = true
		}
		u.mu.Unlock()
		return nil
	}
	if u.drained == nil {
		u.drained = make(chan struct{})
	}
	drained := u.drained
	u.mu.Unlock()

	select {
	case <-drained:
		return nil
	case <-ctx.Done():
	}

	u.mu.Lock()
	u.closing = true
	left := make([]*upgradedConn, 0, len(u.conns))
	for c := range u.conns {
		left = append(left, c)
	}
	u.mu.Unlock()
	p.log.Info("closing upgraded connections after the grace period", "connections", len(left))
	for _, c := range left {
		c.goAway()
	}
	return nil
}

// upgradedConn is the client side of an upgraded connection. Writes (the
// upstream's bytes) are serialised with Shutdown's close frame, and for a
// WebSocket the frame boundaries are followed so that the close frame is
// never written into the middle of another frame.
//
// ReverseProxy copies through WriteTo and ReadFrom: with the proxy's own
// transport they hand the connection to a relay (relay.go) and return at
// once, and from then on Close and CloseWrite, which ReverseProxy calls as
// it finishes, leave the connection to the relay.
type upgradedConn struct {
	net.Conn
	u       *upgrades
	ws      bool
	relayed atomic.Bool

	mu     sync.Mutex
	br     *bufio.Reader // the hijack's reader: bytes the client sent behind its request
	frames frameTracker
	gone   bool // told to go away: later upstream bytes are dropped

	closeOnce sync.Once
}

func (c *upgradedConn) Write(b []byte) (int, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.gone {
		// The client was sent a close frame; anything after it would be a
		// protocol error, and the upstream copy must not fail before the
		// client had a chance to answer the close.
		return len(b), nil
	}
	n, err := c.Conn.Write(b)
	if c.ws {
		c.frames.feed(b[:n])
	}
	return n, err
}

// CloseWrite half-closes the client connection when the upstream ended its
// side, as the reverse proxy does for a bare TCP connection.
func (c *upgradedConn) CloseWrite() error {
	if c.relayed.Load() {
		return nil
	}
	return c.closeWrite()
}

func (c *upgradedConn) closeWrite() error {
	cw, ok := c.Conn.(interface{ CloseWrite() error })
	if !ok {
		return errors.ErrUnsupported
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	return cw.CloseWrite()
}

// Close closes the connection, unless the relay carries it.
func (c *upgradedConn) Close() error {
	if c.relayed.Load() {
		return nil
	}
	return c.shut()
}

// shut closes the connection and stops tracking it.
func (c *upgradedConn) shut() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() { c.u.remove(c) })
	return err
}

// WriteTo copies what the client sends to the upstream. Given the proxy
// transport's upgraded body, it starts the relay instead and returns.
func (c *upgradedConn) WriteTo(w io.Writer) (int64, error) {
	if body, ok := w.(*upgradeBody); ok {
		c.startRelay(body)
		return 0, nil
	}
	var src io.Reader = c.Conn
	if br := c.takeReader(); br != nil && br.Buffered() > 0 {
		rest, _ := br.Peek(br.Buffered())
		src = io.MultiReader(bytesReader(rest), c.Conn)
	}
	return copyPooled(w, src, &c.u.buffers)
}

// ReadFrom copies what the upstream sends to the client. Given the proxy
// transport's upgraded body, it starts the relay instead and returns.
func (c *upgradedConn) ReadFrom(r io.Reader) (int64, error) {
	if body, ok := r.(*upgradeBody); ok {
		c.startRelay(body)
		return 0, nil
	}
	return copyPooled(c, r, &c.u.buffers)
}

// copyPooled copies src to dst through a pooled relay buffer, held for the
// copy's whole life (the path of net/http's transport).
func copyPooled(dst io.Writer, src io.Reader, out *atomic.Int64) (int64, error) {
	buf := getRelayBuffer(out)
	defer putRelayBuffer(out, buf)
	return io.CopyBuffer(plainWriter{dst}, plainReader{src}, buf[:])
}

// plainWriter and plainReader hide ReadFrom and WriteTo, so that io.CopyBuffer
// uses the buffer it is given.
type plainWriter struct{ io.Writer }
type plainReader struct{ io.Reader }

// goAway sends a WebSocket client the 1001 close frame when that can be done
// cleanly, half-closes the connection and closes it after closeLinger.
func (c *upgradedConn) goAway() {
	// Unblock an upstream write stuck on a client that does not read.
	_ = c.Conn.SetWriteDeadline(time.Now().Add(goAwayWriteTimeout))
	c.mu.Lock()
	if !c.gone {
		c.gone = true
		if c.ws && c.frames.atBoundary() && !c.frames.sawClose {
			_ = c.Conn.SetWriteDeadline(time.Now().Add(goAwayWriteTimeout))
			_, _ = c.Conn.Write(goingAway)
		}
		if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
			_ = cw.CloseWrite()
		}
	}
	c.mu.Unlock()
	time.AfterFunc(c.u.linger, func() { _ = c.shut() })
}

// frameTracker follows the WebSocket frames of the server-to-client stream,
// header by header, skipping payloads.
type frameTracker struct {
	hdr       [14]byte
	n         int    // header bytes collected so far
	remaining uint64 // payload bytes of the current frame still to come
	sawClose  bool   // the upstream sent a close frame
}

func (t *frameTracker) atBoundary() bool { return t.n == 0 && t.remaining == 0 }

func (t *frameTracker) feed(b []byte) {
	for len(b) > 0 {
		if t.remaining > 0 {
			k := min(uint64(len(b)), t.remaining)
			t.remaining -= k
			b = b[k:]
			continue
		}
		t.hdr[t.n] = b[0]
		t.n++
		b = b[1:]
		if t.n < 2 {
			continue
		}
		need := 2
		switch t.hdr[1] & 0x7f {
		case 126:
			need += 2
		case 127:
			need += 8
		}
		if t.hdr[1]&0x80 != 0 {
			need += 4
		}
		if t.n < need {
			continue
		}
		var length uint64
		switch l := t.hdr[1] & 0x7f; l {
		case 126:
			length = uint64(t.hdr[2])<<8 | uint64(t.hdr[3])
		case 127:
			for _, x := range t.hdr[2:10] {
				length = length<<8 | uint64(x)
			}
		default:
			length = uint64(l)
		}
		if t.hdr[0]&0x0f == 0x8 {
			t.sawClose = true
		}
		t.remaining = length
		t.n = 0
	}
}

// headerHasToken reports whether a comma-separated header lists token,
// ignoring case.
func headerHasToken(h http.Header, key, token string) bool {
	for _, v := range h[key] {
		for part := range strings.SplitSeq(v, ",") {
			if strings.EqualFold(strings.TrimSpace(part), token) {
				return true
			}
		}
	}
	return false
}
