package front

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// 1. A body still held by a goroutine that outlives the handler (as
// http.Transport's writeLoop does) must fail once the connection ended, not
// read a recycled bufio.Reader (nil reader: panic; reused: another client's bytes).
func TestReviewBodyReadAfterConnectionEnded(t *testing.T) {
	bodies := make(chan io.Reader, 1)
	s, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		bodies <- r.Body
		w.WriteHeader(http.StatusRequestEntityTooLarge)
	})})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 10\r\n\r\nhello")
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
	require.NoError(t, s.Shutdown(context.Background())) // the connection has ended
	type result struct {
		err      error
		panicked any
	}
	done := make(chan result, 1)
	go func() {
		defer func() {
			if p := recover(); p != nil {
				done <- result{panicked: p}
			}
		}()
		_, err := (<-bodies).Read(make([]byte, 10))
		done <- result{err: err}
	}()
	got := <-done
	require.Nil(t, got.panicked, "read after the connection ended panicked")
	require.Error(t, got.err)
}

// 2. The first connection after a quiet spell is stamped with the watch's
// stale clock (0 at start) and closed at the first tick, whatever IdleTimeout.
func TestReviewFirstConnectionKeepsIdleTimeout(t *testing.T) {
	s, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}), IdleTimeout: time.Hour})
	c := reviewDial(t, addr)
	require.Eventually(t, func() bool { s.mu.Lock(); defer s.mu.Unlock(); return len(s.conns) == 1 }, 10*time.Second, time.Millisecond)
	for range 2 { // two ticks: the watch looked at the connection at least once
		t0 := s.clock()
		require.Eventually(t, func() bool { return s.clock() != t0 }, 10*time.Second, time.Millisecond)
	}
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err, "an idle connection closed long before IdleTimeout")
	assert.Equal(t, http.StatusOK, res.StatusCode)
}

// 3. Close must cancel the context of a request in flight, as net/http's
// does (its background read fails on the closed connection).
func TestReviewCloseCancelsInFlight(t *testing.T) {
	for _, srv := range []string{"front", "net-http"} {
		t.Run(srv, func(t *testing.T) {
			entered, canceled := make(chan struct{}), make(chan struct{})
			h := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				close(entered)
				<-r.Context().Done()
				close(canceled)
			})
			var closeFn func() error
			var addr string
			if srv == "front" {
				var s *Server
				s, addr = reviewFront(t, &Server{Handler: h})
				closeFn = s.Close
			} else {
				hs := &http.Server{Handler: h}
				ln, err := net.Listen("tcp", "127.0.0.1:0")
				require.NoError(t, err)
				go func() { _ = hs.Serve(ln) }()
				addr, closeFn = ln.Addr().String(), hs.Close
			}
			c := reviewDial(t, addr)
			_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			<-entered
			require.NoError(t, closeFn())
			select {
			case <-canceled:
			case <-time.After(10 * time.Second): // a hang guard, not a timing assert
				t.Fatal("the request's context outlived Close")
			}
		})
	}
}

// 4. The watch's peek must not wait for the socket's read lock: between
// its look at c.cur and the peek, the request can end and the connection
// block reading the next one; the watch then hangs (no timeouts for anyone)
// until that client sends or leaves.
func TestReviewPeekDoesNotWaitForReader(t *testing.T) {
	s, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {})})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	_, err = http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	var fc *conn
	s.mu.Lock()
	for k := range s.conns {
		fc = k
	}
	s.mu.Unlock()
	// Wait until serve blocks in the socket's Read for the next request.
	require.Eventually(t, func() bool {
		buf := make([]byte, 1<<20)
		for _, g := range strings.Split(string(buf[:runtime.Stack(buf, true)]), "\n\n") {
			if strings.Contains(g, "[IO wait") && strings.Contains(g, "(*conn).serve") {
				return true
			}
		}
		return false
	}, 10*time.Second, time.Millisecond)
	done := make(chan bool, 1)
	go func() { done <- fc.gone() }()
	select {
	case g := <-done:
		assert.False(t, g)
	case <-time.After(10 * time.Second): // a hang guard
		t.Fatal("gone() blocked behind the connection's pending Read")
	}
}

// 5. A header map the handler kept across WriteHeader must not change the
// head's framing (net/http clones it at WriteHeader): here front sends two
// Content-Lengths.
func TestReviewHeaderMapKeptAcrossWriteHeader(t *testing.T) {
	for _, srv := range reviewServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := srv.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				w.WriteHeader(http.StatusOK)
				h.Set("Content-Length", "10")
				_, _ = io.WriteString(w, "abc")
			}))
			c := reviewDial(t, addr)
			_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			res, err := http.ReadResponse(bufio.NewReader(c), nil)
			require.NoError(t, err)
			b, err := io.ReadAll(res.Body)
			require.NoError(t, err)
			assert.Equal(t, "abc", string(b))
		})
	}
}
