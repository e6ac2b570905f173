package front_test

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/textproto"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/front"
)

// These tests drive a front.Server end to end over loopback TCP with raw
// connections, so that what they check is the bytes on the wire. Timeouts
// in them are failure guards only: no test waits on the clock to order
// events, and none asserts on elapsed time.

// guard bounds every blocking step of a test: a hang fails instead of
// stalling the run.
const guard = 10 * time.Second

// testServer is a front.Server serving a loopback listener.
type testServer struct {
	*front.Server
	addr string
	done chan struct{} // closed when Serve returned
	err  error         // what Serve returned, once done is closed
}

// serve starts s (its Handler set by the caller) and closes it when the
// test ends.
func serve(t testing.TB, s *front.Server) *testServer {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	ts := &testServer{Server: s, addr: ln.Addr().String(), done: make(chan struct{})}
	go func() {
		ts.err = s.Serve(ln)
		close(ts.done)
	}()
	t.Cleanup(func() {
		_ = s.Close()
		select {
		case <-ts.done:
		case <-time.After(guard):
			t.Error("Serve did not return after Close")
		}
	})
	return ts
}

func serveFunc(t *testing.T, h http.HandlerFunc) *testServer {
	t.Helper()
	return serve(t, &front.Server{Handler: h})
}

// client is a raw connection to a test server.
type client struct {
	t *testing.T
	net.Conn
	br *bufio.Reader
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	require.NoError(t, c.SetDeadline(time.Now().Add(guard)))
	t.Cleanup(func() { _ = c.Close() })
	return &client{t: t, Conn: c, br: bufio.NewReader(c)}
}

func (c *client) send(raw string) {
	c.t.Helper()
	_, err := io.WriteString(c.Conn, raw)
	require.NoError(c.t, err)
}

// response reads one response to a request with the given method, with
// its whole body (and so its trailers).
func (c *client) response(method string) (*http.Response, string) {
	c.t.Helper()
	res, err := http.ReadResponse(c.br, &http.Request{Method: method})
	require.NoError(c.t, err)
	b, err := io.ReadAll(res.Body)
	require.NoError(c.t, err)
	return res, string(b)
}

// head reads one response's status line and header fields as sent,
// without interpreting the framing.
func (c *client) head() (string, http.Header) {
	c.t.Helper()
	tp := textproto.NewReader(c.br)
	line, err := tp.ReadLine()
	require.NoError(c.t, err)
	h, err := tp.ReadMIMEHeader()
	require.NoError(c.t, err)
	return line, http.Header(h)
}

// requireClosed wants the server to have closed the connection cleanly:
// nothing more to read, then EOF (not a reset, which can cost the client
// the response it has not read yet).
func (c *client) requireClosed() {
	c.t.Helper()
	rest, err := io.ReadAll(c.br)
	require.NoError(c.t, err, "the connection ends with EOF")
	require.Empty(c.t, string(rest), "nothing after the last response")
}

func get(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n" }

// within waits for ch or fails the test after guard.
func within[T any](t *testing.T, ch <-chan T, what string) T {
	t.Helper()
	select {
	case v := <-ch:
		return v
	case <-time.After(guard):
		require.FailNow(t, "timed out waiting: "+what)
		var zero T
		return zero
	}
}

// echoPath answers with the request's path.
func echoPath(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, r.URL.Path) }

// logSink is a slog handler that keeps the messages and attributes.
type logSink struct {
	mu   sync.Mutex
	recs []string
	errs []string // those at level Error
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler       { return l }
func (l *logSink) WithGroup(string) slog.Handler            { return l }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.recs = append(l.recs, b.String())
	if r.Level >= slog.LevelError {
		l.errs = append(l.errs, b.String())
	}
	l.mu.Unlock()
	return nil
}

func (l *logSink) records() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.recs...)
}

func (l *logSink) errors() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]string(nil), l.errs...)
}

func TestKeepAlive(t *testing.T) {
	ts := serveFunc(t, echoPath)

	t.Run("sequential", func(t *testing.T) {
		c := dial(t, ts.addr)
		for _, p := range []string{"/a", "/b", "/c"} {
			c.send(get(p))
			res, body := c.response(http.MethodGet)
			assert.Equal(t, p, body)
			assert.False(t, res.Close)
		}
	})
	t.Run("pipelined", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send(get("/first") + get("/second"))
		_, body := c.response(http.MethodGet)
		assert.Equal(t, "/first", body)
		_, body = c.response(http.MethodGet)
		assert.Equal(t, "/second", body)
	})
	t.Run("HTTP/1.0", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("GET /ka HTTP/1.0\r\nConnection: keep-alive\r\n\r\n")
		res, body := c.response(http.MethodGet)
		assert.Equal(t, "/ka", body)
		assert.Equal(t, "keep-alive", res.Header.Get("Connection"))
		c.send("GET /last HTTP/1.0\r\n\r\n")
		res, body = c.response(http.MethodGet)
		assert.Equal(t, "/last", body)
		assert.True(t, res.Close)
		c.requireClosed()
	})
}

func TestFraming(t *testing.T) {
	big := strings.Repeat("0123456789abcdef", 64) // 1 KiB
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/length":
			w.Header().Set("Content-Length", "5")
			_, _ = io.WriteString(w, "he")
			_, _ = io.WriteString(w, "llo")
		case "/small":
			_, _ = io.WriteString(w, "hello, ")
			_, _ = io.WriteString(w, "world")
		case "/large":
			for range 3 {
				_, _ = io.WriteString(w, big)
			}
		case "/trailer":
			w.Header().Set("Trailer", "X-Sum")
			_, _ = io.WriteString(w, "body")
			w.Header().Set("X-Sum", "42")
		case "/prefixed":
			_, _ = io.WriteString(w, "body")
			w.(http.Flusher).Flush()
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		case "/prefixed-early":
			w.Header().Set(http.TrailerPrefix+"X-Late", "early")
			_, _ = io.WriteString(w, "body")
			w.Header().Set(http.TrailerPrefix+"X-Late", "late")
		}
	})
	c := dial(t, ts.addr)

	t.Run("declared length", func(t *testing.T) {
		c.send(get("/length"))
		res, body := c.response(http.MethodGet)
		assert.Equal(t, "hello", body)
		assert.Equal(t, int64(5), res.ContentLength)
		assert.Empty(t, res.TransferEncoding)
	})
	t.Run("small body gets a length", func(t *testing.T) {
		c.send(get("/small"))
		res, body := c.response(http.MethodGet)
		assert.Equal(t, "hello, world", body)
		assert.Equal(t, int64(len(body)), res.ContentLength)
		assert.Empty(t, res.TransferEncoding)
		assert.Equal(t, "text/plain; charset=utf-8", res.Header.Get("Content-Type"), "sniffed")
		_, err := http.ParseTime(res.Header.Get("Date"))
		assert.NoError(t, err, "Date")
	})
	t.Run("large body is chunked", func(t *testing.T) {
		c.send(get("/large"))
		res, body := c.response(http.MethodGet)
		assert.Equal(t, strings.Repeat(big, 3), body)
		assert.Equal(t, []string{"chunked"}, res.TransferEncoding)
		assert.Equal(t, int64(-1), res.ContentLength)
	})
	t.Run("declared trailer", func(t *testing.T) {
		c.send(get("/trailer"))
		res, body := c.response(http.MethodGet)
		assert.Equal(t, "body", body)
		assert.Equal(t, []string{"chunked"}, res.TransferEncoding)
		assert.Equal(t, "42", res.Trailer.Get("X-Sum"))
		assert.Empty(t, res.Header.Get("X-Sum"))
	})
	for _, p := range []string{"/prefixed", "/prefixed-early"} {
		t.Run("TrailerPrefix "+p, func(t *testing.T) {
			c.send(get(p))
			res, body := c.response(http.MethodGet)
			assert.Equal(t, "body", body)
			assert.Equal(t, "late", res.Trailer.Get("X-Late"))
			for k := range res.Header {
				assert.NotContains(t, k, "X-Late")
			}
		})
	}
}

// TestSniffAcrossWrites: with no Content-Type, the type is sniffed from the
// body's start, as net/http sees it, even when it came in several writes
// and the body is chunked.
func TestSniffAcrossWrites(t *testing.T) {
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "  <ht")
		_, _ = io.WriteString(w, "ml><body>"+strings.Repeat("x", 4<<10))
	})
	c := dial(t, ts.addr)
	c.send(get("/"))
	res, _ := c.response(http.MethodGet)
	assert.Equal(t, "text/html; charset=utf-8", res.Header.Get("Content-Type"))
}

// TestNoBody: HEAD, 204 and 304 get no body and no framing header; the
// pipelined request after each is read from where the head ended.
func TestNoBody(t *testing.T) {
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.Header().Set("Content-Length", "5")
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Content-Type", "text/plain")
			w.WriteHeader(http.StatusNotModified)
		}
		_, _ = io.WriteString(w, "hello")
	})
	c := dial(t, ts.addr)

	c.send("HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" + get("/next"))
	line, h := c.head()
	assert.Equal(t, "HTTP/1.1 200 OK", line)
	assert.Equal(t, "5", h.Get("Content-Length"), "the length a GET would get")
	_, body := c.response(http.MethodGet)
	assert.Equal(t, "hello", body, "no body after the HEAD response")

	for _, code := range []string{"204", "304"} {
		c.send(get("/"+code) + get("/next"))
		line, h := c.head()
		assert.Equal(t, code, strings.Fields(line)[1])
		assert.Empty(t, h.Get("Content-Length"), code)
		assert.Empty(t, h.Get("Transfer-Encoding"), code)
		if code == "304" {
			assert.Empty(t, h.Get("Content-Type"))
		}
		_, body := c.response(http.MethodGet)
		assert.Equal(t, "hello", body, "no body after %s", code)
	}
}

// TestFlushStreams: a flushed first part reaches the client while the
// handler waits to write the second.
func TestFlushStreams(t *testing.T) {
	next := make(chan struct{})
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.WriteString(w, "first")
		if err := http.NewResponseController(w).Flush(); err != nil {
			return
		}
		select {
		case <-next:
		case <-r.Context().Done():
			return
		}
		_, _ = io.WriteString(w, "second")
	})
	c := dial(t, ts.addr)
	c.send(get("/"))
	res, err := http.ReadResponse(c.br, nil)
	require.NoError(t, err)
	first := make([]byte, len("first"))
	_, err = io.ReadFull(res.Body, first)
	require.NoError(t, err, "the first part arrives before the handler goes on")
	assert.Equal(t, "first", string(first))
	close(next)
	rest, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.Equal(t, "second", string(rest))
}

func TestExpectContinue(t *testing.T) {
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/read" {
			b, _ := io.ReadAll(r.Body)
			_, _ = w.Write(b)
			return
		}
		w.WriteHeader(http.StatusUnauthorized)
	})
	const head = " HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n"

	t.Run("handler reads", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /read" + head)
		line, _ := c.head()
		require.Equal(t, "HTTP/1.1 100 Continue", line)
		c.send("hello")
		res, body := c.response(http.MethodPost)
		assert.Equal(t, "hello", body)
		assert.False(t, res.Close)
		c.send(get("/read"))
		_, body = c.response(http.MethodGet)
		assert.Empty(t, body, "the connection carries the next request")
	})
	t.Run("handler does not read", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /deny" + head)
		res, _ := c.response(http.MethodPost)
		assert.Equal(t, http.StatusUnauthorized, res.StatusCode, "no 100 Continue first")
		assert.True(t, res.Close)
		c.requireClosed()
	})
	for _, expect := range []string{"200-ok", "100-continue; x", "100"} {
		t.Run("Expect "+expect, func(t *testing.T) {
			// The body, more than the server reads with the head, comes
			// anyway: it must not cost the client the answer.
			c := dial(t, ts.addr)
			body := strings.Repeat("b", 64<<10)
			go func() {
				_, _ = fmt.Fprintf(c.Conn, "POST /read HTTP/1.1\r\nHost: x\r\nExpect: %s\r\nContent-Length: %d\r\n\r\n%s", expect, len(body), body)
			}()
			res, _ := c.response(http.MethodPost)
			assert.Equal(t, http.StatusExpectationFailed, res.StatusCode)
			assert.True(t, res.Close)
			c.requireClosed()
		})
	}
	// As net/http: an empty Expect is no expectation, and 100-continue
	// counts as a token of the first Expect field's list.
	for name, fields := range map[string]string{
		"empty":     "Expect: \r\n",
		"list":      "Expect: 100-Continue, x\r\n",
		"two lines": "Expect: 100-continue\r\nExpect: x\r\n",
	} {
		t.Run("Expect "+name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send("POST /read HTTP/1.1\r\nHost: x\r\n" + fields + "Content-Length: 5\r\n\r\n")
			if name != "empty" {
				line, _ := c.head()
				require.Equal(t, "HTTP/1.1 100 Continue", line)
			}
			c.send("hello")
			res, body := c.response(http.MethodPost)
			assert.Equal(t, http.StatusOK, res.StatusCode)
			assert.Equal(t, "hello", body)
		})
	}
}

// TestExpectContinueAfterEarlyHints: the 100 Continue goes out when the
// handler reads the body, not before: a 103 the handler sends first
// arrives first, and (as with net/http) does not cancel the 100.
func TestExpectContinueAfterEarlyHints(t *testing.T) {
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		b, _ := io.ReadAll(r.Body)
		_, _ = w.Write(b)
	})
	c := dial(t, ts.addr)
	c.send("POST / HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
	line, h := c.head()
	require.Equal(t, "HTTP/1.1 103 Early Hints", line)
	assert.Equal(t, "</style.css>; rel=preload", h.Get("Link"))
	line, _ = c.head()
	require.Equal(t, "HTTP/1.1 100 Continue", line)
	c.send("hello")
	res, body := c.response(http.MethodPost)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "hello", body)
}

func TestRequestBodies(t *testing.T) {
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/echo" {
			b, err := io.ReadAll(r.Body)
			if err != nil {
				w.WriteHeader(http.StatusBadRequest)
				return
			}
			_, _ = w.Write(b)
			return
		}
		_, _ = io.WriteString(w, "ignored "+r.URL.Path)
	})

	t.Run("chunked", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nhello\r\n7;ext=1\r\n, world\r\n0\r\nX-T: v\r\n\r\n")
		res, body := c.response(http.MethodPost)
		assert.Equal(t, "hello, world", body)
		assert.False(t, res.Close)
		c.send(get("/after"))
		_, body = c.response(http.MethodGet)
		assert.Equal(t, "ignored /after", body)
	})
	t.Run("small unread body is dropped", func(t *testing.T) {
		c := dial(t, ts.addr)
		c.send("POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\n0123456789" + get("/after"))
		res, body := c.response(http.MethodPost)
		assert.Equal(t, "ignored /skip", body)
		assert.False(t, res.Close)
		_, body = c.response(http.MethodGet)
		assert.Equal(t, "ignored /after", body)
	})
	t.Run("large unread body closes", func(t *testing.T) {
		c := dial(t, ts.addr)
		const size = 300 << 10
		sent := make(chan error, 1)
		go func() {
			_, err := fmt.Fprintf(c.Conn, "POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", size, strings.Repeat("z", size))
			sent <- err
		}()
		res, body := c.response(http.MethodPost)
		assert.Equal(t, "ignored /skip", body)
		assert.True(t, res.Close, "Connection: close")
		c.requireClosed()
		_ = within(t, sent, "the client's write")
	})
	t.Run("large body read after the head", func(t *testing.T) {
		// As net/http: a body too big to drop stays the handler's to read
		// once the response began; the connection closes after.
		read := make(chan int64, 1)
		ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
			_, _ = io.WriteString(w, "head first")
			w.(http.Flusher).Flush()
			n, _ := io.Copy(io.Discard, r.Body)
			read <- n
		})
		c := dial(t, ts.addr)
		const size = 300 << 10
		go func() {
			_, _ = fmt.Fprintf(c.Conn, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", size, strings.Repeat("z", size))
		}()
		res, body := c.response(http.MethodPost)
		assert.Equal(t, "head first", body)
		assert.True(t, res.Close)
		assert.Equal(t, int64(size), within(t, read, "the handler's read"))
		c.requireClosed()
	})
	t.Run("large body not sent yet", func(t *testing.T) {
		// A client that sends its body only after the response began must
		// get the response, not wait for a server reading the body.
		c := dial(t, ts.addr)
		c.send("POST /skip HTTP/1.1\r\nHost: x\r\nContent-Length: 1000000\r\n\r\n")
		res, body := c.response(http.MethodPost)
		assert.Equal(t, "ignored /skip", body)
		assert.True(t, res.Close)
	})
}

func TestBadRequests(t *testing.T) {
	called := make(chan string, 16)
	ts := serve(t, &front.Server{
		Handler:        http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { called <- r.URL.Path }),
		MaxHeaderBytes: 1 << 10,
	})
	cases := []struct {
		name string
		raw  string
		code int
	}{
		{"garbage", "\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03 not http\r\n\r\n", http.StatusBadRequest},
		{"no request line", "hello\r\n\r\n", http.StatusBadRequest},
		{"head too big", "GET / HTTP/1.1\r\nHost: x\r\nX-Big: " + strings.Repeat("a", 64<<10) + "\r\n\r\n", http.StatusRequestHeaderFieldsTooLarge},
		{"no Host", "GET / HTTP/1.1\r\n\r\n", http.StatusBadRequest},
		{"two Hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", http.StatusBadRequest},
		{"bad Host", "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", http.StatusBadRequest},
		{"bad header name", "GET / HTTP/1.1\r\nHost: x\r\nX Y: z\r\n\r\n", http.StatusBadRequest},
		{"unsupported coding", "POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n", http.StatusNotImplemented},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", http.StatusHTTPVersionNotSupported},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := dial(t, ts.addr)
			c.send(tc.raw + get("/after"))
			res, _ := c.response(http.MethodGet)
			assert.Equal(t, tc.code, res.StatusCode)
			assert.True(t, res.Close, "Connection: close")
			c.requireClosed()
		})
	}
	assert.Empty(t, called, "no request reached the handler")
}

func TestTimeouts(t *testing.T) {
	t.Run("idle", func(t *testing.T) {
		ts := serve(t, &front.Server{Handler: http.HandlerFunc(echoPath), IdleTimeout: 200 * time.Millisecond, ReadHeaderTimeout: time.Hour})
		c := dial(t, ts.addr)
		c.send(get("/a"))
		_, body := c.response(http.MethodGet)
		assert.Equal(t, "/a", body)
		c.requireClosed()
	})
	t.Run("half a head", func(t *testing.T) {
		called := make(chan struct{}, 1)
		ts := serve(t, &front.Server{
			Handler:           http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called <- struct{}{} }),
			ReadHeaderTimeout: 200 * time.Millisecond,
			IdleTimeout:       time.Hour,
		})
		c := dial(t, ts.addr)
		c.send("GET / HTTP/1.1\r\nHost: x\r\n")
		c.requireClosed()
		assert.Empty(t, called)
	})
}

// TestClientGone: a handler waiting on its request's context is released
// when the client closes its connection.
func TestClientGone(t *testing.T) {
	entered, released := make(chan struct{}), make(chan error, 1)
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		select {
		case <-r.Context().Done():
			released <- r.Context().Err()
		case <-time.After(guard):
			released <- nil
		}
	})
	c := dial(t, ts.addr)
	c.send(get("/"))
	within(t, entered, "the handler")
	require.NoError(t, c.Close())
	assert.ErrorIs(t, within(t, released, "the handler's release"), context.Canceled)
}

func TestShutdown(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, "done "+r.URL.Path)
	})
	idle := dial(t, ts.addr)
	idle.send(get("/"))
	_, body := idle.response(http.MethodGet)
	require.Equal(t, "done /", body)

	busy := dial(t, ts.addr)
	busy.send(get("/slow"))
	within(t, entered, "the slow request")

	shut := make(chan error, 1)
	go func() { shut <- ts.Shutdown(context.Background()) }()
	idle.requireClosed()
	select {
	case err := <-shut:
		require.FailNow(t, "Shutdown returned with a request in flight", "%v", err)
	default:
	}
	close(release)
	res, body := busy.response(http.MethodGet)
	assert.Equal(t, "done /slow", body)
	assert.True(t, res.Close, "Connection: close")
	busy.requireClosed()
	require.NoError(t, within(t, shut, "Shutdown"))
	within(t, ts.done, "Serve")
	assert.ErrorIs(t, ts.err, http.ErrServerClosed)
	_, err := net.Dial("tcp", ts.addr)
	assert.Error(t, err, "the listener is closed")
}

func TestClose(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	t.Cleanup(func() { close(release) })
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		close(entered)
		<-release
	})
	c := dial(t, ts.addr)
	c.send(get("/"))
	within(t, entered, "the handler")
	require.NoError(t, ts.Close())
	c.requireClosed()
	within(t, ts.done, "Serve")
	assert.ErrorIs(t, ts.err, http.ErrServerClosed)
}

func TestHijack(t *testing.T) {
	type hijacked struct {
		buffered int
		extra    string
		err      error
	}
	got, release := make(chan hijacked, 1), make(chan struct{})
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			got <- hijacked{err: err}
			return
		}
		defer conn.Close()
		n := rw.Reader.Buffered()
		extra := make([]byte, n)
		_, err = io.ReadFull(rw, extra)
		got <- hijacked{buffered: n, extra: string(extra), err: err}
		<-release
		_, _ = rw.WriteString("RAW " + string(extra))
		_ = rw.Flush()
	})
	c := dial(t, ts.addr)
	c.send("GET / HTTP/1.1\r\nHost: x\r\n\r\nEXTRA")
	h := within(t, got, "the hijack")
	require.NoError(t, h.err)
	assert.Equal(t, len("EXTRA"), h.buffered, "the bytes read after the head come with the connection")
	assert.Equal(t, "EXTRA", h.extra)

	ctx, cancel := context.WithTimeout(context.Background(), guard)
	defer cancel()
	require.NoError(t, ts.Shutdown(ctx), "Shutdown does not wait for a hijacked connection")
	close(release)
	raw, err := io.ReadAll(c.br)
	require.NoError(t, err)
	assert.Equal(t, "RAW EXTRA", string(raw))
}

func TestPanic(t *testing.T) {
	sink := &logSink{}
	ts := serve(t, &front.Server{Logger: slog.New(sink), Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/panic":
			panic("boom")
		case "/abort":
			_, _ = io.WriteString(w, "partial")
			panic(http.ErrAbortHandler)
		}
		_, _ = io.WriteString(w, "ok")
	})})

	c := dial(t, ts.addr)
	c.send(get("/panic") + get("/"))
	c.requireClosed()
	recs := sink.records()
	require.Len(t, recs, 1)
	assert.Contains(t, recs[0], "panic=boom")

	c = dial(t, ts.addr)
	c.send(get("/"))
	_, body := c.response(http.MethodGet)
	assert.Equal(t, "ok", body, "the server keeps serving")

	c = dial(t, ts.addr)
	c.send(get("/abort"))
	c.requireClosed()
	assert.Len(t, sink.records(), 1, "http.ErrAbortHandler is not logged")
}

func TestInformational(t *testing.T) {
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</style.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Del("Link")
		_, _ = io.WriteString(w, "final")
	})
	c := dial(t, ts.addr)
	c.send(get("/"))
	line, h := c.head()
	assert.Equal(t, "HTTP/1.1 103 Early Hints", line)
	assert.Equal(t, "</style.css>; rel=preload", h.Get("Link"))
	res, body := c.response(http.MethodGet)
	assert.Equal(t, http.StatusOK, res.StatusCode)
	assert.Equal(t, "final", body)
	assert.Empty(t, res.Header.Get("Link"))
}

func TestRequestContext(t *testing.T) {
	type seen struct {
		local, remote string
		server        bool
	}
	got := make(chan seen, 1)
	ts := serveFunc(t, func(w http.ResponseWriter, r *http.Request) {
		var s seen
		if a, ok := r.Context().Value(http.LocalAddrContextKey).(net.Addr); ok {
			s.local = a.String()
		}
		s.server = r.Context().Value(http.ServerContextKey) != nil
		s.remote = r.RemoteAddr
		got <- s
	})
	c := dial(t, ts.addr)
	c.send(get("/"))
	c.response(http.MethodGet)
	s := within(t, got, "the handler")
	assert.Equal(t, ts.addr, s.local)
	assert.True(t, s.server, "ServerContextKey")
	assert.Equal(t, c.LocalAddr().String(), s.remote)
}
