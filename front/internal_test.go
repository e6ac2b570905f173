package front

import (
	"context"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// startInternal serves h with a Server the test can look inside.
func startInternal(t *testing.T, h http.HandlerFunc) (*Server, string) {
	t.Helper()
	return reviewFront(t, &Server{Handler: h, ReadHeaderTimeout: 10 * time.Second})
}

// A connection that has not sent its first request when Shutdown begins is
// left the moment net/http leaves it: a request it sends then is answered,
// not dropped with the connection.
func TestShutdownLetsANewConnectionSendItsRequest(t *testing.T) {
	s, addr := startInternal(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "served")
	})
	c := reviewDial(t, addr)
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return len(s.conns) == 1
	}, 10*time.Second, time.Millisecond, "the server has the connection")

	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	// Once Shutdown waits, it has looked at every connection once.
	require.Eventually(t, func() bool {
		s.mu.Lock()
		defer s.mu.Unlock()
		return s.idleWake != nil
	}, 10*time.Second, time.Millisecond, "Shutdown waits")

	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	got, err := io.ReadAll(c)
	require.NoError(t, err)
	require.Contains(t, string(got), "served")
	require.Contains(t, string(got), "Connection: close")
	select {
	case err := <-shut:
		require.NoError(t, err)
	case <-time.After(10 * time.Second):
		require.FailNow(t, "Shutdown did not return")
	}
}

// The watch peeks for a gone client only once the request body is read. A
// body of declared length read exactly to its end (as the proxy's transport
// reads one, without asking again for the EOF) counts as read: a POST's
// client that goes away while the upstream is slow cancels the request.
func TestClientGoneAfterABodyReadToItsLength(t *testing.T) {
	read, canceled := make(chan struct{}), make(chan struct{})
	_, addr := startInternal(t, func(w http.ResponseWriter, r *http.Request) {
		buf := make([]byte, r.ContentLength)
		if _, err := io.ReadFull(r.Body, buf); err != nil {
			return
		}
		close(read)
		select {
		case <-r.Context().Done():
			close(canceled)
		case <-time.After(10 * time.Second):
		}
	})
	c := reviewDial(t, addr)
	body := `{"limit":10}`
	_, err := io.WriteString(c, "POST /api/notes/timeline HTTP/1.1\r\nHost: x\r\nContent-Length: 12\r\n\r\n"+body)
	require.NoError(t, err)
	select {
	case <-read:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the handler did not read the body")
	}
	require.NoError(t, c.Close())
	select {
	case <-canceled:
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the request's context was not canceled after the client left")
	}
}

// A context derived from the request's (net/http's Transport derives one
// per request) registers with it through AfterFunc instead of starting a
// goroutine to wait for it, and is canceled with it.
func TestDerivedContextUsesAfterFunc(t *testing.T) {
	rc := &reqCtx{c: &conn{s: &Server{}}}
	child, cancel := context.WithCancel(rc)
	defer cancel()
	rc.mu.Lock()
	registered := len(rc.after)
	rc.mu.Unlock()
	require.Equal(t, 1, registered, "the child waits through AfterFunc")

	rc.cancel()
	select {
	case <-child.Done():
	case <-time.After(10 * time.Second):
		require.FailNow(t, "the child was not canceled with the request")
	}
	require.ErrorIs(t, child.Err(), context.Canceled)

	stopped := context.AfterFunc(&reqCtx{c: rc.c}, func() {})
	require.True(t, stopped(), "stop before the cancel stops it")
}

// A body read to its end still reads as ended after the request: net/http's
// Transport reads once more past the declared length to check that nothing
// follows, sometimes after the response went out, and an error there fails
// its write and closes the upstream connection.
func TestFinishedBodyReadsEndAfterTheRequest(t *testing.T) {
	bodies := make(chan io.Reader, 1)
	_, addr := startInternal(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		bodies <- r.Body
		_, _ = io.WriteString(w, "ok")
	})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	buf := make([]byte, 512)
	n, err := c.Read(buf)
	require.NoError(t, err)
	require.Contains(t, string(buf[:n]), "ok", "the response is out: the request ended")
	n, err = (<-bodies).Read(buf)
	require.Equal(t, 0, n)
	require.ErrorIs(t, err, io.EOF)
}

// SwapHeader hands the response a whole header map before WriteHeader, and
// changes nothing after it.
func TestSwapHeaderBeforeWriteHeaderOnly(t *testing.T) {
	type swapped struct{ before, after http.Header }
	got := make(chan swapped, 1)
	_, addr := startInternal(t, func(w http.ResponseWriter, r *http.Request) {
		sw := w.(interface{ SwapHeader(http.Header) http.Header })
		before := sw.SwapHeader(http.Header{"X-Swapped": {"yes"}, "Content-Type": {"text/plain"}})
		w.WriteHeader(http.StatusOK)
		after := sw.SwapHeader(http.Header{"X-Late": {"no"}})
		got <- swapped{before, after}
		_, _ = io.WriteString(w, "ok")
	})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	raw, err := io.ReadAll(c)
	require.NoError(t, err)
	s := <-got
	require.NotNil(t, s.before, "the map the response had")
	require.Nil(t, s.after, "no swap after WriteHeader")
	require.Contains(t, string(raw), "X-Swapped: yes\r\n")
	require.NotContains(t, string(raw), "X-Late")
}

// A status set before a hijack goes out before what the hijacker writes,
// as with net/http, even when the head was still held back.
func TestHijackAfterWriteHeaderSendsTheHead(t *testing.T) {
	_, addr := startInternal(t, func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusAccepted) // no length, no type: the head waits
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		_, _ = rw.WriteString("RAW")
		_ = rw.Flush()
	})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	require.NoError(t, c.SetReadDeadline(time.Now().Add(10*time.Second)))
	raw, err := io.ReadAll(c)
	require.NoError(t, err)
	got := string(raw)
	require.True(t, strings.HasPrefix(got, "HTTP/1.1 202 Accepted\r\n"), "the head first: %q", got)
	require.True(t, strings.HasSuffix(got, "\r\n\r\nRAW"), "then the hijacker's bytes: %q", got)
}
