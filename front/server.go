// Package front serves the proxy's client connections: an HTTP/1.1 server
// for one http.Handler that does per request only what a reverse proxy
// needs. It parses requests with the standard library (http.ReadRequest) and
// hands the handler an http.Request and an http.ResponseWriter that also
// flushes, hijacks and takes deadlines, as net/http's would. What it leaves
// out is net/http's per-request machinery: a background read and two
// deadline changes per request, a goroutine per request's cancellation, and
// a second buffer before chunking. In their place one goroutine per server
// looks at the connections every tick: it closes those idle or slow past
// their timeout and, for a request in flight whose body is read, peeks at
// the socket to learn whether the client went away, which cancels the
// request's context.
//
// It speaks HTTP/1.0 and HTTP/1.1 over plain TCP; there is no TLS and no
// HTTP/2 (the sidecar serves neither).
package front

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"sync/atomic"
	"time"
)

// Defaults and limits.
const (
	// tick is how often the watch looks at the connections: how late at most
	// a timeout or a client that went away is acted on.
	tick = 50 * time.Millisecond
	// peekAfter is how long a request must have been in flight before the
	// watch peeks at its client's socket; most requests end before.
	peekAfter = 100 * time.Millisecond
	// maxDiscard is the most of a request body the handler left unread that
	// is read and dropped to keep the connection (net/http's 256 KiB);
	// beyond it the connection is closed after the response.
	maxDiscard = 256 << 10
	// newConnGrace is how long Shutdown leaves a new connection to send its
	// first request (net/http's 5 s): the client may have sent it already.
	newConnGrace = 5 * time.Second
	// readerSize is the size of a connection's read buffer.
	readerSize = 4 << 10
	// writerSize is the size of the pooled response buffers: a response
	// whose head and body fit goes out in one write.
	writerSize = 4 << 10
	// lingerFor is how long a connection closed with a request's data
	// unread waits for the client to close its side (net/http's
	// rstAvoidanceDelay).
	lingerFor = 500 * time.Millisecond
	// beforeHead is how much of a body of unknown length is held back before
	// the head is written: a body that ends within it is sent with a
	// Content-Length instead of chunked (net/http holds 2 KiB).
	beforeHead = 2 << 10
)

// Server serves HTTP/1.x on the listeners given to Serve. Set the fields
// before Serve; do not change them after.
type Server struct {
	// Handler answers every request. Required.
	Handler http.Handler
	// ReadHeaderTimeout bounds reading a request's head, from its first
	// byte. Zero means no limit.
	ReadHeaderTimeout time.Duration
	// IdleTimeout closes a keep-alive connection that waits this long for
	// its next request. Zero means ReadHeaderTimeout; both zero, no limit.
	IdleTimeout time.Duration
	// MaxHeaderBytes bounds a request's head (request line and headers).
	// Zero means http.DefaultMaxHeaderBytes (1 MiB).
	MaxHeaderBytes int
	// Logger gets what a server logs: panics in the handler, accept
	// errors. Default: discard.
	Logger *slog.Logger

	mu        sync.Mutex
	listeners map[net.Listener]struct{}
	conns     map[*conn]struct{}
	watching  bool
	closed    bool
	shutting  atomic.Bool
	now       atomic.Int64 // the watch's clock, in unix nanoseconds
	idleWake  chan struct{}
}

// ErrServerClosed is what Serve returns after Shutdown or Close; it is
// net/http's own, so callers can treat both servers alike.
var ErrServerClosed = http.ErrServerClosed

// Serve accepts connections on ln and serves each in its own goroutine,
// until ln fails or the server is shut down. It always returns an error:
// ErrServerClosed after Shutdown or Close.
func (s *Server) Serve(ln net.Listener) error {
	if s.Handler == nil {
		return errors.New("front: no handler")
	}
	if !s.trackListener(ln) {
		return ErrServerClosed
	}
	defer s.untrackListener(ln)
	var delay time.Duration
	for {
		rwc, err := ln.Accept()
		if err != nil {
			if s.shutting.Load() {
				return ErrServerClosed
			}
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() || isTemporary(err) {
				// Out of file descriptors and the like: wait, as net/http
				// does, from 5 ms up to a second.
				delay = min(max(2*delay, 5*time.Millisecond), time.Second)
				s.logger().Warn("accept failed; retrying", "err", err, "delay", delay.String())
				time.Sleep(delay)
				continue
			}
			return err
		}
		delay = 0
		c := s.newConn(rwc)
		if !s.trackConn(c) {
			_ = rwc.Close()
			return ErrServerClosed
		}
		go c.serve()
	}
}

// isTemporary reports whether an accept error is one to wait out.
func isTemporary(err error) bool {
	var t interface{ Temporary() bool }
	return errors.As(err, &t) && t.Temporary()
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) maxHeaderBytes() int64 {
	if s.MaxHeaderBytes > 0 {
		return int64(s.MaxHeaderBytes)
	}
	return http.DefaultMaxHeaderBytes
}

func (s *Server) idleTimeout() time.Duration {
	if s.IdleTimeout != 0 {
		return s.IdleTimeout
	}
	return s.ReadHeaderTimeout
}

func (s *Server) trackListener(ln net.Listener) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || s.shutting.Load() {
		return false
	}
	if s.listeners == nil {
		s.listeners = make(map[net.Listener]struct{})
	}
	s.listeners[ln] = struct{}{}
	return true
}

func (s *Server) untrackListener(ln net.Listener) {
	s.mu.Lock()
	delete(s.listeners, ln)
	s.mu.Unlock()
}

// trackConn registers c and starts the watch if it is not running.
func (s *Server) trackConn(c *conn) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return false
	}
	if s.conns == nil {
		s.conns = make(map[*conn]struct{})
	}
	s.conns[c] = struct{}{}
	if !s.watching {
		s.watching = true
		s.now.Store(time.Now().UnixNano())
		go s.watch()
	}
	// Stamped now that the clock is fresh: after a quiet spell it stood
	// still, and a stale stamp would make a new connection look idle.
	c.since.Store(s.clock())
	return true
}

// untrackConn forgets c: it was closed or hijacked.
func (s *Server) untrackConn(c *conn) {
	s.mu.Lock()
	delete(s.conns, c)
	wake := s.idleWake
	if wake != nil && len(s.conns) == 0 {
		s.idleWake = nil
		close(wake)
	}
	s.mu.Unlock()
}

// watch runs while the server has connections: it advances the clock the
// connections stamp their state changes with, and looks at each.
func (s *Server) watch() {
	t := time.NewTicker(tick)
	defer t.Stop()
	var conns []*conn
	for now := range t.C {
		s.now.Store(now.UnixNano())
		s.mu.Lock()
		if len(s.conns) == 0 {
			s.watching = false
			s.mu.Unlock()
			return
		}
		conns = conns[:0]
		for c := range s.conns {
			conns = append(conns, c)
		}
		s.mu.Unlock()
		n := now.UnixNano()
		for _, c := range conns {
			c.check(n)
		}
		clear(conns)
	}
}

// clock is the watch's time, at most one tick old.
func (s *Server) clock() int64 { return s.now.Load() }

// Shutdown stops the listeners, closes the connections waiting for a
// request, and waits until every connection serving one has answered it and
// closed, or ctx ends (then it returns ctx's error and leaves the rest to
// Close). Connections hijacked by the handler are not its business.
func (s *Server) Shutdown(ctx context.Context) error {
	s.shutting.Store(true)
	s.closeListeners()
	for {
		s.mu.Lock()
		now := time.Now().UnixNano()
		for c := range s.conns {
			c.shutdownIfIdle(now)
		}
		if len(s.conns) == 0 {
			s.mu.Unlock()
			return nil
		}
		if s.idleWake == nil {
			s.idleWake = make(chan struct{})
		}
		wake := s.idleWake
		s.mu.Unlock()
		// A connection that was reading a request when Shutdown began is
		// idle once it answered, and closes itself then; look again at
		// every tick in case one went idle between two looks.
		select {
		case <-wake:
		case <-time.After(tick):
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close closes the listeners and every connection at once.
func (s *Server) Close() error {
	s.shutting.Store(true)
	s.closeListeners()
	s.mu.Lock()
	s.closed = true
	for c := range s.conns {
		c.kill()
	}
	s.mu.Unlock()
	return nil
}

func (s *Server) closeListeners() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for ln := range s.listeners {
		_ = ln.Close()
	}
}
