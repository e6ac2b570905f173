package front

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// These tests check front against the framing, resource and lifecycle
// rules of net/http's server, end to end over loopback TCP. Where a rule is
// net/http's, the case runs on both servers so a difference shows.

// reviewServers are the two servers a differential case runs on.
var reviewServers = []struct {
	name  string
	serve func(t *testing.T, h http.Handler) string
}{
	{"front", func(t *testing.T, h http.Handler) string { _, addr := reviewFront(t, &Server{Handler: h}); return addr }},
	{"net-http", func(t *testing.T, h http.Handler) string {
		s := &http.Server{Handler: h}
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		require.NoError(t, err)
		go func() { _ = s.Serve(ln) }()
		t.Cleanup(func() { _ = s.Close() })
		return ln.Addr().String()
	}},
}

// reviewFront serves s on a loopback listener until the test ends.
func reviewFront(t *testing.T, s *Server) (*Server, string) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	go func() { _ = s.Serve(ln) }()
	t.Cleanup(func() { _ = s.Close() })
	return s, ln.Addr().String()
}

func reviewDial(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	require.NoError(t, err)
	t.Cleanup(func() { _ = c.Close() })
	return c
}

// exchange writes raw, half-closes, and reads every response until the
// server closes; reqs is what the handler saw.
type seen struct {
	method, path, body string
	bodyErr            bool
}

type reply struct {
	status int
	body   string
	close  bool
}

func exchange(t *testing.T, addr, raw string, reqs <-chan seen) ([]reply, []seen) {
	t.Helper()
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, raw)
	require.NoError(t, err)
	require.NoError(t, c.(*net.TCPConn).CloseWrite())
	br := bufio.NewReader(c)
	var out []reply
	for {
		res, err := http.ReadResponse(br, nil)
		if err != nil {
			break
		}
		b, _ := io.ReadAll(res.Body)
		out = append(out, reply{res.StatusCode, string(b), res.Close})
	}
	var got []seen
	for {
		select {
		case s := <-reqs:
			got = append(got, s)
		default:
			return out, got
		}
	}
}

// recorder is a handler that reads the whole body and reports it.
func recorder() (http.Handler, chan seen) {
	ch := make(chan seen, 16)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, err := io.ReadAll(r.Body)
		ch <- seen{r.Method, r.URL.Path, string(b), err != nil}
		_, _ = io.WriteString(w, "ok "+r.URL.Path)
	}), ch
}

// TestReviewFramingAsNetHTTP sends ambiguous and pipelined requests and
// wants front to frame them exactly as net/http does: what reaches the
// handler and what the client gets back.
func TestReviewFramingAsNetHTTP(t *testing.T) {
	cases := []struct{ name, raw string }{
		{"pipelined with bodies", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabcPOST /b HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nxyz\r\n0\r\n\r\nGET /c HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CL and TE", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /after HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"TE chunked twice", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"TE list", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"TE with space", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"two CLs differ", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 0\r\nContent-Length: 40\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CL plus sign", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: +4\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"bad chunk size", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"chunk ext and trailer", "POST /a HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n2;x=y\r\nhi\r\n0\r\nT: v\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"obs-fold", "GET /a HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"bare LF", "GET /a HTTP/1.1\nHost: x\n\nGET /b HTTP/1.1\nHost: x\n\n"},
		{"NUL in header", "GET /a HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"no host", "GET /a HTTP/1.1\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"two hosts", "GET /a HTTP/1.1\r\nHost: x\r\nHost: y\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"HTTP/2.0 line", "GET /a HTTP/2.0\r\nHost: x\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"CRLF after POST", "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\n\r\nx\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"HTTP/1.0 closes", "GET /a HTTP/1.0\r\n\r\nGET /smuggled HTTP/1.0\r\n\r\n"},
		{"HTTP/1.0 keep-alive", "GET /a HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET /b HTTP/1.0\r\n\r\n"},
		{"Connection close", "GET /a HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\nGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
		{"Expect other", "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 200-ok\r\nContent-Length: 1\r\n\r\nxGET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			var want []reply
			var wantSeen []seen
			for i, srv := range reviewServers {
				h, ch := recorder()
				got, gotSeen := exchange(t, srv.serve(t, h), tc.raw, ch)
				for _, s := range gotSeen {
					assert.NotEqual(t, "/smuggled", s.path, srv.name)
				}
				if i == 0 {
					want, wantSeen = got, gotSeen
					continue
				}
				// Compare statuses and bodies; error texts may differ.
				assert.Equal(t, statuses(want), statuses(got), "responses: front vs %s", srv.name)
				assert.Equal(t, wantSeen, gotSeen, "requests seen: front vs %s", srv.name)
			}
		})
	}
}

func statuses(rs []reply) []string {
	var out []string
	for _, r := range rs {
		s := fmt.Sprint(r.status)
		if r.status >= 400 {
			// 400 or 501: net/http answers 501 to "too many transfer
			// encodings", front 400; both close.
			s = "error"
		}
		if r.status == http.StatusOK {
			s += " " + r.body
		}
		out = append(out, s)
	}
	return out
}

// TestReviewUnreadBodyIsNotARequest: a body the handler left unread, too
// big to drop, must not be parsed as the next request.
func TestReviewUnreadBodyIsNotARequest(t *testing.T) {
	for _, size := range []int{1 << 10, maxDiscard + 1<<10} {
		t.Run(fmt.Sprint(size), func(t *testing.T) {
			paths := make(chan string, 4)
			_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				paths <- r.URL.Path
				w.WriteHeader(http.StatusRequestEntityTooLarge)
			})})
			inner := "GET /smuggled HTTP/1.1\r\nHost: x\r\n\r\n"
			body := strings.Repeat("a", size-len(inner)) + inner
			c := reviewDial(t, addr)
			go func() {
				_, _ = fmt.Fprintf(c, "POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
				_ = c.(*net.TCPConn).CloseWrite()
			}()
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			require.Equal(t, http.StatusRequestEntityTooLarge, res.StatusCode)
			_, _ = io.Copy(io.Discard, res.Body)
			assert.Equal(t, size > maxDiscard, res.Close, "Connection: close iff the body was too big to drop")
			_, err = http.ReadResponse(br, nil)
			require.Error(t, err, "no second response")
			assert.Equal(t, "/a", <-paths)
			assert.Empty(t, paths)
		})
	}
}

// TestReviewExpectContinue: a 100 Continue only when the handler reads;
// when it does not, the connection closes (the body may or may not come).
func TestReviewExpectContinue(t *testing.T) {
	for _, read := range []bool{true, false} {
		t.Run(fmt.Sprint("read=", read), func(t *testing.T) {
			_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if read {
					b, _ := io.ReadAll(r.Body)
					_, _ = w.Write(b)
					return
				}
				w.WriteHeader(http.StatusUnauthorized)
			})})
			c := reviewDial(t, addr)
			_, err := io.WriteString(c, "POST /a HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 5\r\n\r\n")
			require.NoError(t, err)
			br := bufio.NewReader(c)
			res, err := http.ReadResponse(br, nil)
			require.NoError(t, err)
			if !read {
				assert.Equal(t, http.StatusUnauthorized, res.StatusCode)
				assert.True(t, res.Close)
				return
			}
			require.Equal(t, http.StatusContinue, res.StatusCode)
			_, err = io.WriteString(c, "hello")
			require.NoError(t, err)
			res, err = http.ReadResponse(br, nil)
			require.NoError(t, err)
			b, _ := io.ReadAll(res.Body)
			assert.Equal(t, "hello", string(b))
			assert.False(t, res.Close)
		})
	}
}

// TestReviewResponseHeadersSanitized: header values with CR/LF, invalid
// names and invalid trailers must not split the response.
func TestReviewResponseHeadersSanitized(t *testing.T) {
	for _, srv := range reviewServers {
		t.Run(srv.name, func(t *testing.T) {
			addr := srv.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := w.Header()
				h.Set("Trailer", "X-T")
				h["X-A"] = []string{"v\r\nX-Injected: 1"}
				h["Bad Name\r\nX-Injected"] = []string{"2"}
				w.WriteHeader(http.StatusOK)
				_, _ = io.WriteString(w, "body")
				h.Set("X-T", "t\r\n\r\nHTTP/1.1 200 OK")
				h.Set(http.TrailerPrefix+"Content-Length", "9")
			}))
			c := reviewDial(t, addr)
			_, err := io.WriteString(c, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			br := bufio.NewReader(c)
			for range 2 {
				res, err := http.ReadResponse(br, nil)
				require.NoError(t, err)
				b, err := io.ReadAll(res.Body)
				require.NoError(t, err)
				assert.Equal(t, "body", string(b))
				assert.Empty(t, res.Header.Get("X-Injected"))
				assert.Equal(t, "v  X-Injected: 1", res.Header.Get("X-A"))
				assert.Equal(t, "t    HTTP/1.1 200 OK", res.Trailer.Get("X-T"))
			}
		})
	}
}

// TestReviewNoBodyStatuses: HEAD, 204 and 304 carry no body on the wire,
// whatever the handler writes, and the next pipelined response parses.
func TestReviewNoBodyStatuses(t *testing.T) {
	_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/204":
			w.Header().Set("Transfer-Encoding", "chunked")
			w.WriteHeader(http.StatusNoContent)
		case "/304":
			w.Header().Set("Content-Length", "100")
			w.WriteHeader(http.StatusNotModified)
		case "/103":
			w.Header().Set("Link", "</a>")
			w.WriteHeader(http.StatusEarlyHints)
		}
		_, _ = io.WriteString(w, strings.Repeat("x", 3000))
	})})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "HEAD /a HTTP/1.1\r\nHost: x\r\n\r\nGET /204 HTTP/1.1\r\nHost: x\r\n\r\n"+
		"GET /304 HTTP/1.1\r\nHost: x\r\n\r\nGET /103 HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	for _, want := range []struct {
		code int
		head bool
		body int
	}{{200, true, 0}, {204, false, 0}, {304, false, 0}, {103, false, 0}, {200, false, 3000}} {
		var req *http.Request
		if want.head {
			req = &http.Request{Method: http.MethodHead}
		}
		res, err := http.ReadResponse(br, req)
		require.NoError(t, err)
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		assert.Equal(t, want.code, res.StatusCode)
		assert.Len(t, b, want.body)
		if want.body == 0 {
			assert.Empty(t, res.TransferEncoding, "code %d", want.code)
		}
	}
}

// TestReviewShortAndLongWrites: a body shorter than the declared length
// ends the connection (the client cannot read past it into the next
// response); a longer one is refused.
func TestReviewShortAndLongWrites(t *testing.T) {
	werr := make(chan error, 1)
	_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "5")
		if r.URL.Path == "/long" {
			_, err := io.WriteString(w, "123456")
			werr <- err
			return
		}
		_, _ = io.WriteString(w, "123")
	})})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "GET /long HTTP/1.1\r\nHost: x\r\n\r\nGET /short HTTP/1.1\r\nHost: x\r\n\r\nGET /next HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	br := bufio.NewReader(c)
	res, err := http.ReadResponse(br, nil)
	require.NoError(t, err)
	require.ErrorIs(t, <-werr, http.ErrContentLength)
	_, err = io.ReadAll(res.Body)
	require.Error(t, err, "nothing written: the connection closes short of the length")
	_, err = http.ReadResponse(br, nil)
	require.Error(t, err)
}

// TestReviewPanicClosesConnection: a panicking handler's connection closes
// without a complete response; the server keeps serving.
func TestReviewPanicClosesConnection(t *testing.T) {
	_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/panic" {
			w.Header().Set("Content-Length", "10")
			_, _ = io.WriteString(w, "12345")
			w.(http.Flusher).Flush()
			panic("boom")
		}
		_, _ = io.WriteString(w, "ok")
	})})
	for range 2 {
		c := reviewDial(t, addr)
		_, err := io.WriteString(c, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		br := bufio.NewReader(c)
		res, err := http.ReadResponse(br, nil)
		require.NoError(t, err)
		_, err = io.ReadAll(res.Body)
		require.ErrorIs(t, err, io.ErrUnexpectedEOF)
	}
}

// TestReviewHeadLimits: a head over MaxHeaderBytes gets a 431; a head that
// stalls is closed after ReadHeaderTimeout; both without a handler call.
func TestReviewHeadLimits(t *testing.T) {
	called := make(chan struct{}, 2)
	_, addr := reviewFront(t, &Server{
		Handler:           http.HandlerFunc(func(http.ResponseWriter, *http.Request) { called <- struct{}{} }),
		MaxHeaderBytes:    1 << 10,
		ReadHeaderTimeout: 200 * time.Millisecond,
		IdleTimeout:       time.Hour,
	})
	c := reviewDial(t, addr)
	go func() {
		_, _ = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nX: "+strings.Repeat("a", 1<<20)+"\r\n\r\n")
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusRequestHeaderFieldsTooLarge, res.StatusCode)

	// Slowloris: a head's first bytes, then nothing. The watch closes it.
	c = reviewDial(t, addr)
	_, err = io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n")
	require.NoError(t, err)
	b, err := io.ReadAll(c)
	assert.NoError(t, err)
	assert.Empty(t, b)
	assert.Empty(t, called)
}

// TestReviewClientGoneCancels: a client that goes away while its request
// (body read) is in flight cancels the request's context.
func TestReviewClientGoneCancels(t *testing.T) {
	entered := make(chan struct{})
	done := make(chan error, 1)
	_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.ReadAll(r.Body)
		close(entered)
		<-r.Context().Done()
		done <- r.Context().Err()
	})})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\n\r\nhi")
	require.NoError(t, err)
	<-entered
	require.NoError(t, c.Close())
	require.ErrorIs(t, <-done, context.Canceled)
}

// TestReviewHijackKeepsBufferedBytes: bytes pipelined after an upgrade
// request reach the hijacker through the returned reader.
func TestReviewHijackKeepsBufferedBytes(t *testing.T) {
	got := make(chan string, 1)
	_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		conn, brw, err := w.(http.Hijacker).Hijack()
		if err != nil {
			got <- err.Error()
			return
		}
		defer conn.Close()
		_, _ = brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\n")
		_ = brw.Flush()
		b := make([]byte, 5)
		_, _ = io.ReadFull(brw, b)
		got <- string(b)
	})})
	c := reviewDial(t, addr)
	_, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\nConnection: Upgrade\r\nUpgrade: x\r\n\r\nhello")
	require.NoError(t, err)
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	assert.Equal(t, http.StatusSwitchingProtocols, res.StatusCode)
	assert.Equal(t, "hello", <-got)
}

// TestReviewShutdownDrains: Shutdown lets a request in flight finish with
// Connection: close and then returns; idle connections are closed.
func TestReviewShutdownDrains(t *testing.T) {
	entered, release := make(chan struct{}), make(chan struct{})
	s, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/slow" {
			close(entered)
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	})})
	idle := reviewDial(t, addr)
	_, err := io.WriteString(idle, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	ibr := bufio.NewReader(idle)
	res, err := http.ReadResponse(ibr, nil)
	require.NoError(t, err)
	_, _ = io.ReadAll(res.Body)

	busy := reviewDial(t, addr)
	_, err = io.WriteString(busy, "GET /slow HTTP/1.1\r\nHost: x\r\n\r\n")
	require.NoError(t, err)
	<-entered
	shut := make(chan error, 1)
	go func() { shut <- s.Shutdown(context.Background()) }()
	_, err = ibr.ReadByte()
	require.ErrorIs(t, err, io.EOF, "the idle connection is closed")
	close(release)
	res, err = http.ReadResponse(bufio.NewReader(busy), nil)
	require.NoError(t, err)
	assert.True(t, res.Close)
	require.NoError(t, <-shut)
}

// TestReviewConcurrentBodyReader: a second goroutine reads the request
// body while the handler writes and flushes the response, as
// httputil.ReverseProxy's transport does (run with -race).
func TestReviewConcurrentBodyReader(t *testing.T) {
	_, addr := reviewFront(t, &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		var wg sync.WaitGroup
		var n int64
		wg.Go(func() { n, _ = io.Copy(io.Discard, r.Body) })
		_ = http.NewResponseController(w).EnableFullDuplex()
		for range 10 {
			_, _ = w.Write(bytes.Repeat([]byte("x"), 1000))
			w.(http.Flusher).Flush()
		}
		wg.Wait()
		_, _ = fmt.Fprintf(w, "|%d", n)
	})})
	c := reviewDial(t, addr)
	body := strings.Repeat("b", 100<<10)
	go func() {
		_, _ = fmt.Fprintf(c, "POST / HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n%s", len(body), body)
	}()
	res, err := http.ReadResponse(bufio.NewReader(c), nil)
	require.NoError(t, err)
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	assert.True(t, strings.HasSuffix(string(b), fmt.Sprintf("|%d", len(body))), "tail %q", b[max(0, len(b)-10):])
}
