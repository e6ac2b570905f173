package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// transports are the two ways to the upstream; every behaviour below holds
// on both.
var transports = []string{TransportLean, TransportStdlib}

func onTransport(name string, more ...func(*Options)) func(*Options) {
	return func(o *Options) {
		o.Transport = name
		for _, m := range more {
			m(o)
		}
	}
}

// connCounter counts an httptest server's connections.
type connCounter struct{ opened, closed atomic.Int32 }

func (cc *connCounter) hook(_ net.Conn, st http.ConnState) {
	switch st {
	case http.StateNew:
		cc.opened.Add(1)
	case http.StateClosed, http.StateHijacked:
		cc.closed.Add(1)
	}
}

// countedUpstream is newUpstream with its connections counted; edit may
// change the server before it starts.
func countedUpstream(t *testing.T, h http.Handler, edit func(*http.Server)) (*httptest.Server, *connCounter) {
	t.Helper()
	cc := &connCounter{}
	srv := httptest.NewUnstartedServer(h)
	srv.Config.ConnState = cc.hook
	if edit != nil {
		edit(srv.Config)
	}
	srv.Start()
	t.Cleanup(srv.Close)
	return srv, cc
}

// rawUpstream is a TCP upstream that hands each connection to serve.
func rawUpstream(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		conns []net.Conn
	)
	t.Cleanup(func() {
		_ = ln.Close()
		mu.Lock()
		for _, c := range conns {
			_ = c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	wg.Go(func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Go(func() {
				defer c.Close()
				serve(c)
			})
		}
	})
	return "http://" + ln.Addr().String()
}

// readRequest reads one request and its whole body from a raw connection.
func readRawRequest(br *bufio.Reader) (*http.Request, []byte, error) {
	req, err := http.ReadRequest(br)
	if err != nil {
		return nil, nil, err
	}
	body, err := io.ReadAll(req.Body)
	return req, body, err
}

func TestUpstreamConnectionsAreReused(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream, cc := countedUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, "ok")
			}), nil)
			sc := newSidecar(t, upstream.URL, onTransport(tr))
			if sc.p.std != nil {
				// net/http's Transport hands a connection back to its pool
				// from its own goroutine once the body was read; a next
				// request that comes sooner dials while it waits, and may
				// get the new connection. One connection at most leaves it
				// only reuse to show.
				sc.p.std.MaxConnsPerHost = 1
			}
			for i := range 20 {
				method := []string{http.MethodGet, http.MethodPost}[i%2]
				req, err := http.NewRequest(method, sc.url("/api/notes/timeline"), strings.NewReader(`{"limit":10}`))
				require.NoError(t, err)
				got := take(t, sc.client, req)
				require.Equal(t, http.StatusOK, got.status)
				require.Equal(t, "ok", string(got.body))
			}
			assert.Equal(t, int32(1), cc.opened.Load(), "one keep-alive connection carries every request")
		})
	}
}

// writeCounter counts the writes on a connection.
type writeCounter struct {
	net.Conn
	writes *atomic.Int32
}

func (w writeCounter) Write(b []byte) (int, error) {
	w.writes.Add(1)
	return w.Conn.Write(b)
}

// TestSmallRequestIsOneWrite: the request line, the headers and a small body
// of known length leave in one write; a larger one streams behind its head.
func TestSmallRequestIsOneWrite(t *testing.T) {
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, sha(readAll(t, r.Body)))
	}))
	sc := newSidecar(t, upstream.URL, nil)
	var writes atomic.Int32
	dial := sc.p.lean.dialNet
	sc.p.lean.dialNet = func(ctx context.Context, network, addr string) (net.Conn, error) {
		c, err := dial(ctx, network, addr)
		if err != nil {
			return nil, err
		}
		return writeCounter{Conn: c, writes: &writes}, nil
	}
	cases := []struct {
		name      string
		method    string
		body      []byte
		oneWrite  bool
		minWrites int32
	}{
		{"GET", http.MethodGet, nil, true, 1},
		{"small JSON POST", http.MethodPost, []byte(`{"text":"hello"}`), true, 1},
		{"body at the inline limit", http.MethodPost, testBytes(inlineBodyMax, 1), true, 1},
		{"larger body", http.MethodPost, testBytes(inlineBodyMax+1, 2), false, 2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := writes.Load()
			var body io.Reader
			if tc.body != nil {
				body = strings.NewReader(string(tc.body))
			}
			req, err := http.NewRequest(tc.method, sc.url("/api/drive/files/create"), body)
			require.NoError(t, err)
			got := take(t, sc.client, req)
			require.Equal(t, http.StatusOK, got.status)
			assert.Equal(t, sha(tc.body), string(got.body), "the upstream got the body whole")
			n := writes.Load() - before
			if tc.oneWrite {
				assert.Equal(t, int32(1), n)
			} else {
				assert.GreaterOrEqual(t, n, tc.minWrites)
			}
		})
	}
}

func TestConnectionClose(t *testing.T) {
	cases := []struct {
		name        string
		upstreamSay bool // the upstream answers Connection: close
		clientSays  bool // the client asks for Connection: close
		wantOpened  int32
	}{
		{"upstream closes: a new connection each time", true, false, 3},
		{"client closes: the upstream connection is kept", false, true, 1},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				upstream, cc := countedUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tc.upstreamSay {
						w.Header().Set("Connection", "close")
					}
					fmt.Fprintf(w, "conn close from client seen: %v", r.Header.Get("Connection") != "")
				}), nil)
				sc := newSidecar(t, upstream.URL, onTransport(tr))
				for range 3 {
					req, err := http.NewRequest(http.MethodGet, sc.url("/api/meta"), nil)
					require.NoError(t, err)
					req.Close = tc.clientSays
					got := take(t, sc.client, req)
					require.Equal(t, http.StatusOK, got.status)
					assert.Equal(t, "conn close from client seen: false", string(got.body), "Connection is hop-by-hop")
					if tc.upstreamSay {
						assert.Empty(t, got.header.Get("Connection"), "the upstream's Connection header is not passed on")
					}
				}
				assert.Equal(t, tc.wantOpened, cc.opened.Load())
			})
		}
	}
}

// TestIdleConnectionClosedByUpstream: an upstream that closes connections
// it keeps idle (Ocean's keep-alive timeout) costs no request. The lean
// transport looks at an idle connection before it reuses it, so even a POST
// never meets the closed one; net/http's transport learns of the close
// from a goroutine of its own, and a request may win that race (one without a body
// is then sent again, a POST fails), so it is asked a GET.
func TestIdleConnectionClosedByUpstream(t *testing.T) {
	method := map[string]string{TransportLean: http.MethodPost, TransportStdlib: http.MethodGet}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream, cc := countedUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				_, _ = io.WriteString(w, "ok")
			}), func(s *http.Server) { s.IdleTimeout = 20 * time.Millisecond })
			sc := newSidecar(t, upstream.URL, onTransport(tr))
			for i := range 3 {
				var body io.Reader
				if method[tr] == http.MethodPost {
					body = strings.NewReader(`{"text":"x"}`)
				}
				req, err := http.NewRequest(method[tr], sc.url("/api/notes/create"), body)
				require.NoError(t, err)
				resp, err := sc.client.Do(req)
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, "ok", string(readAll(t, resp.Body)))
				resp.Body.Close()
				want := int32(i + 1)
				require.Eventually(t, func() bool { return cc.closed.Load() == want }, guard, time.Millisecond,
					"the upstream closes the idle connection")
			}
			assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamUnavailable]))
		})
	}
}

// TestDeadConnectionRetriedOnceForIdempotentRequests: a reused connection
// that dies when a request is sent on it (the upstream hangs up without an
// answer) is retried once on a fresh connection for idempotent requests
// only.
func TestDeadConnectionRetriedOnceForIdempotentRequests(t *testing.T) {
	cases := []struct {
		name      string
		method    string
		header    string
		wantRetry bool
		stdRetry  bool // net/http's transport: only requests without a body, which it cannot replay
	}{
		{"GET", http.MethodGet, "", true, true},
		{"HEAD", http.MethodHead, "", true, true},
		{"POST", http.MethodPost, "", false, false},
		{"POST with an Idempotency-Key", http.MethodPost, "Idempotency-Key", true, false},
		{"DELETE", http.MethodDelete, "", false, false},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				if tr == TransportStdlib {
					tc.wantRetry = tc.stdRetry
				}
				var mu sync.Mutex
				var seen []string // method of each request the upstream read, and whether it answered
				upstream := rawUpstream(t, func(c net.Conn) {
					br := bufio.NewReader(c)
					for n := 0; ; n++ {
						req, _, err := readRawRequest(br)
						if err != nil {
							return
						}
						mu.Lock()
						seen = append(seen, fmt.Sprintf("%s answered=%v", req.Method, n == 0))
						mu.Unlock()
						if n > 0 {
							return // dies with the request unanswered
						}
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfirst")
					}
				})
				sc := newSidecar(t, upstream, onTransport(tr))
				do := func(method string) *http.Response {
					var body io.Reader
					if method == http.MethodPost {
						body = strings.NewReader(`{}`)
					}
					req, err := http.NewRequest(method, sc.url("/api/thing"), body)
					require.NoError(t, err)
					if tc.header != "" {
						req.Header.Set(tc.header, "k1")
					}
					resp, err := sc.client.Do(req)
					require.NoError(t, err)
					t.Cleanup(func() { resp.Body.Close() })
					_, _ = io.Copy(io.Discard, resp.Body)
					return resp
				}
				require.Equal(t, http.StatusOK, do(http.MethodGet).StatusCode) // opens the connection
				resp := do(tc.method)
				mu.Lock()
				defer mu.Unlock()
				if tc.wantRetry {
					assert.Equal(t, http.StatusOK, resp.StatusCode)
					assert.Equal(t, []string{"GET answered=true", tc.method + " answered=false", tc.method + " answered=true"}, seen,
						"sent again, once, on a fresh connection")
				} else {
					assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
					assert.Equal(t, []string{"GET answered=true", tc.method + " answered=false"}, seen,
						"a non-idempotent request is never sent twice")
				}
			})
		}
	}
}

// TestHeaderTimeoutSparesTheBody: the response-header timeout bounds the
// wait for the head only; a body may stream for longer.
func TestHeaderTimeoutSparesTheBody(t *testing.T) {
	const headerTimeout = 50 * time.Millisecond
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, "part1,")
				_ = http.NewResponseController(w).Flush()
				// The behaviour under test is time passing: the body goes on
				// well after the header timeout.
				<-time.After(4 * headerTimeout)
				_, _ = io.WriteString(w, "part2")
			}))
			sc := newSidecar(t, upstream.URL, onTransport(tr, func(o *Options) { o.ResponseHeaderTimeout = headerTimeout }))
			resp, err := sc.client.Get(sc.url("/files/slow"))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.Equal(t, "part1,part2", string(readAll(t, resp.Body)))
		})
	}
}

// TestClientGoneReachesUpstream: a client that goes away, while the upstream
// thinks or in the middle of the response, ends the upstream exchange: the
// upstream sees its connection go.
func TestClientGoneReachesUpstream(t *testing.T) {
	cases := []struct {
		name    string
		midBody bool
	}{
		{"while the upstream thinks", false},
		{"in the middle of the response", true},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				arrived := make(chan struct{}, 1)
				upstreamSawEnd := make(chan struct{})
				upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tc.midBody {
						w.Header().Set("Content-Length", "100000")
						_, _ = io.WriteString(w, "first bytes")
						_ = http.NewResponseController(w).Flush()
					}
					arrived <- struct{}{}
					select {
					case <-r.Context().Done():
						close(upstreamSawEnd)
					case <-time.After(guard):
					}
				}))
				sc := newSidecar(t, upstream.URL, onTransport(tr))
				ctx, cancel := context.WithCancel(t.Context())
				req, err := http.NewRequestWithContext(ctx, http.MethodGet, sc.url("/api/notes/timeline"), nil)
				require.NoError(t, err)
				done := make(chan struct{})
				go func() {
					defer close(done)
					resp, err := sc.client.Do(req)
					if err == nil {
						_, _ = io.ReadFull(resp.Body, make([]byte, len("first bytes")))
						<-ctx.Done()
						resp.Body.Close()
					}
				}()
				<-arrived
				cancel()
				<-done
				select {
				case <-upstreamSawEnd:
				case <-time.After(guard):
					t.Fatal("the upstream exchange outlived the client")
				}
				assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamUnavailable]))
				assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamTimeout]))
			})
		}
	}
}

func TestInformationalResponsesReachTheClient(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Link", "</assets/app.js>; rel=preload; as=script")
				w.WriteHeader(http.StatusEarlyHints)
				w.Header().Del("Link")
				w.Header().Set("Content-Type", "text/html")
				_, _ = io.WriteString(w, "<html></html>")
			}))
			sc := newSidecar(t, upstream.URL, onTransport(tr))
			var mu sync.Mutex
			var infos []string
			trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
				mu.Lock()
				defer mu.Unlock()
				infos = append(infos, fmt.Sprintf("%d %s", code, h.Get("Link")))
				return nil
			}}
			req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace), http.MethodGet, sc.url("/"), nil)
			require.NoError(t, err)
			got := take(t, sc.client, req)
			assert.Equal(t, http.StatusOK, got.status)
			assert.Equal(t, "<html></html>", string(got.body))
			mu.Lock()
			defer mu.Unlock()
			assert.Equal(t, []string{"103 </assets/app.js>; rel=preload; as=script"}, infos)
		})
	}
}

// watchedReader records whether its body was read at all.
type watchedReader struct {
	r    io.Reader
	read atomic.Bool
}

func (w *watchedReader) Read(p []byte) (int, error) {
	w.read.Store(true)
	return w.r.Read(p)
}

func TestExpectContinue(t *testing.T) {
	cases := []struct {
		name   string
		size   int
		reject bool
	}{
		{"small upload accepted", 2048, false},
		{"large upload accepted", 300 << 10, false},
		{"upload refused before it is sent", 300 << 10, true},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					if tc.reject {
						w.WriteHeader(http.StatusRequestEntityTooLarge)
						_, _ = io.WriteString(w, "too large")
						return
					}
					fmt.Fprint(w, sha(readAll(t, r.Body)))
				}))
				sc := newSidecar(t, upstream.URL, onTransport(tr))
				// The client waits for the go-ahead far longer than the
				// test lasts: its body goes only once the 100 arrived.
				client := &http.Client{Transport: &http.Transport{ExpectContinueTimeout: 3 * time.Second}}
				t.Cleanup(client.CloseIdleConnections)
				payload := testBytes(tc.size, 5)
				body := &watchedReader{r: strings.NewReader(string(payload))}
				var continued atomic.Bool
				trace := &httptrace.ClientTrace{Got100Continue: func() { continued.Store(true) }}
				req, err := http.NewRequestWithContext(httptrace.WithClientTrace(t.Context(), trace),
					http.MethodPost, sc.url("/api/drive/files/create"), body)
				require.NoError(t, err)
				req.ContentLength = int64(tc.size)
				req.Header.Set("Expect", "100-continue")
				resp, err := client.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				got := readAll(t, resp.Body)
				if tc.reject {
					assert.Equal(t, http.StatusRequestEntityTooLarge, resp.StatusCode)
					assert.Equal(t, "too large", string(got))
					assert.False(t, continued.Load(), "no go-ahead")
					assert.False(t, body.read.Load(), "the client never sent its body")
					return
				}
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.True(t, continued.Load(), "the upstream's 100 Continue reached the client")
				assert.Equal(t, sha(payload), string(got))
			})
		}
	}
}

// TestChunkedBothWays: bodies of unknown length go up chunked and come back
// chunked, whole, small and large, with the upstream seeing chunks.
func TestChunkedBothWays(t *testing.T) {
	cases := []struct {
		name string
		size int
	}{
		{"small", 300},
		{"large", 1 << 20},
	}
	for _, tr := range transports {
		for _, tc := range cases {
			t.Run(tr+"/"+tc.name, func(t *testing.T) {
				upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
					w.Header().Set("X-Upstream-Saw", fmt.Sprintf("%q %d", r.TransferEncoding, r.ContentLength))
					b := readAll(t, r.Body)
					for chunk := range slicesChunk(b, 10000) {
						_, _ = w.Write(chunk)
						_ = http.NewResponseController(w).Flush()
					}
				}))
				sc := newSidecar(t, upstream.URL, onTransport(tr))
				payload := testBytes(tc.size, 9)
				req, err := http.NewRequest(http.MethodPost, sc.url("/api/echo"), onlyReader{strings.NewReader(string(payload))})
				require.NoError(t, err)
				resp, err := sc.client.Do(req)
				require.NoError(t, err)
				defer resp.Body.Close()
				got := readAll(t, resp.Body)
				assert.Equal(t, `["chunked"] -1`, resp.Header.Get("X-Upstream-Saw"))
				assert.Equal(t, sha(payload), sha(got))
				assert.Equal(t, []string{"chunked"}, resp.TransferEncoding)
				assert.Equal(t, int64(-1), resp.ContentLength)
			})
		}
	}
}

func TestResponseTrailers(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Declared")
				_, _ = io.WriteString(w, "body")
				_ = http.NewResponseController(w).Flush()
				w.Header().Set("X-Declared", "d")
				w.Header().Set(http.TrailerPrefix+"X-Undeclared", "u")
			}))
			sc := newSidecar(t, upstream.URL, onTransport(tr))
			resp, err := sc.client.Get(sc.url("/trailers"))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, "body", string(readAll(t, resp.Body)))
			assert.Equal(t, "d", resp.Trailer.Get("X-Declared"))
			assert.Equal(t, "u", resp.Trailer.Get("X-Undeclared"))
		})
	}
}

// TestResponseWithoutLength: an answer with neither Content-Length nor
// chunking ends when the upstream closes; it reaches the client whole and
// the next request gets a new connection.
func TestResponseWithoutLength(t *testing.T) {
	body := strings.Repeat("no length given, ", 3000)
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var conns atomic.Int32
			upstream := rawUpstream(t, func(c net.Conn) {
				conns.Add(1)
				if _, _, err := readRawRequest(bufio.NewReader(c)); err != nil {
					return
				}
				_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\n"+body)
			})
			sc := newSidecar(t, upstream, onTransport(tr))
			for range 2 {
				resp, err := sc.client.Get(sc.url("/files/x.txt"))
				require.NoError(t, err)
				assert.Equal(t, http.StatusOK, resp.StatusCode)
				assert.Equal(t, body, string(readAll(t, resp.Body)))
				resp.Body.Close()
			}
			assert.Equal(t, int32(2), conns.Load())
		})
	}
}

// TestMalformedUpstreamAnswers: whatever the upstream sends back that is
// not HTTP gets the client an Ocean-style 502, and the proxy keeps
// serving.
func TestMalformedUpstreamAnswers(t *testing.T) {
	cases := []struct {
		name     string
		answer   string
		leanOnly bool // net/http's transport passes it on (and net/http's server may refuse to write it)
	}{
		{"not HTTP", "SSH-2.0-OpenSSH_9.6\r\n", false},
		{"nothing at all", "", false},
		{"status line only", "HTTP/1.1 200 OK\r\n", false},
		{"bad status code", "HTTP/1.1 2x0 OK\r\n\r\n", false},
		{"status code below 100", "HTTP/1.1 042 Odd\r\nContent-Length: 0\r\n\r\n", true},
		{"bad header line", "HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", false},
		{"two lengths", "HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab", false},
		{"switching protocols unasked", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n", false},
		{"endless 1xx", strings.Repeat("HTTP/1.1 103 Early Hints\r\n\r\n", max1xx+1), false},
		{"head too large", "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("x", maxResponseHead) + "\r\n\r\n", true},
	}
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			var answer atomic.Pointer[string]
			upstream := rawUpstream(t, func(c net.Conn) {
				br := bufio.NewReader(c)
				for {
					req, _, err := readRawRequest(br)
					if err != nil {
						return
					}
					if req.URL.Path == "/ok" {
						_, _ = io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok")
						continue
					}
					_, _ = io.WriteString(c, *answer.Load())
					return
				}
			})
			sc := newSidecar(t, upstream, onTransport(tr, func(o *Options) { o.ResponseHeaderTimeout = time.Second }))
			for _, tc := range cases {
				if tr == TransportStdlib && tc.leanOnly {
					continue
				}
				t.Run(tc.name, func(t *testing.T) {
					answer.Store(&tc.answer)
					resp, err := sc.client.Get(sc.url("/api/meta"))
					require.NoError(t, err)
					assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
					assert.JSONEq(t, oceanJSON(t, ocean.ErrUpstreamUnavailable), string(readAll(t, resp.Body)))
					resp.Body.Close()

					resp, err = sc.client.Get(sc.url("/ok"))
					require.NoError(t, err)
					assert.Equal(t, "ok", string(readAll(t, resp.Body)), "the proxy keeps serving")
					resp.Body.Close()
				})
			}
		})
	}
}

// TestIdlePool: the pool keeps at most MaxIdleConnsPerHost connections and
// closes those idle for longer than IdleConnTimeout.
func TestIdlePool(t *testing.T) {
	release := make(chan struct{})
	var inFlight sync.WaitGroup
	upstream, cc := countedUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			inFlight.Done()
			<-release
		}
		_, _ = io.WriteString(w, "ok")
	}), nil)
	sc := newSidecar(t, upstream.URL, func(o *Options) {
		o.MaxIdleConnsPerHost = 2
		o.IdleConnTimeout = 100 * time.Millisecond
	})
	const n = 5
	inFlight.Add(n)
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := sc.client.Get(sc.url("/hold"))
			if err == nil {
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
	inFlight.Wait()
	close(release)
	wg.Wait()
	require.Equal(t, int32(n), cc.opened.Load())
	assert.Equal(t, 2, sc.p.lean.idleConns(), "at most MaxIdleConnsPerHost kept")
	require.Eventually(t, func() bool { return cc.closed.Load() == n-2 }, guard, time.Millisecond)
	require.Eventually(t, func() bool { return sc.p.lean.idleConns() == 0 && cc.closed.Load() == n }, guard, 5*time.Millisecond,
		"idle connections are closed after IdleConnTimeout")
}

func TestTLSUpstream(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/streaming" {
					wsEcho(w, r)
					return
				}
				fmt.Fprintf(w, "%s %s", r.Method, sha(readAll(t, r.Body)))
			}))
			t.Cleanup(upstream.Close)
			roots := x509.NewCertPool()
			roots.AddCert(upstream.Certificate())
			sc := newSidecar(t, upstream.URL, onTransport(tr))
			if sc.p.lean != nil {
				sc.p.lean.tlsConfig.RootCAs = roots
			} else {
				sc.p.std.TLSClientConfig = &tls.Config{RootCAs: roots}
			}
			resp, err := sc.client.Post(sc.url("/api/notes/create"), "application/json", strings.NewReader(`{"text":"x"}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, "POST "+sha([]byte(`{"text":"x"}`)), string(readAll(t, resp.Body)))

			c := dialWS(t, sc)
			_, greeting := readMsg(t, c)
			assert.Equal(t, "hello tok", string(greeting))
		})
	}
}

// TestNoResponseIsNotRetriedOnFreshConnections: a connection that was just
// dialled and dies is an upstream failure, never a retry loop.
func TestNoResponseIsNotRetriedOnFreshConnections(t *testing.T) {
	var conns atomic.Int32
	upstream := rawUpstream(t, func(c net.Conn) {
		conns.Add(1)
		_, _, _ = readRawRequest(bufio.NewReader(c))
	})
	sc := newSidecar(t, upstream, nil)
	resp, err := sc.client.Get(sc.url("/api/meta"))
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, http.StatusBadGateway, resp.StatusCode)
	assert.Equal(t, int32(1), conns.Load())
}

// TestRequestTargetAndHeadersAsNetHTTPWritesThem compares what the upstream
// receives through each transport.
func TestRequestTargetAndHeadersAsNetHTTPWritesThem(t *testing.T) {
	seen := make(chan string, 2)
	upstream := rawUpstream(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		for {
			tp := textproto.NewReader(br)
			line, err := tp.ReadLine()
			if err != nil {
				return
			}
			h, err := tp.ReadMIMEHeader()
			if err != nil {
				return
			}
			n, _ := strconv.Atoi(h.Get("Content-Length"))
			body := make([]byte, n)
			_, _ = io.ReadFull(br, body)
			for _, k := range []string{"Date", "X-Forwarded-For", "X-Real-Ip"} {
				delete(h, k)
			}
			seen <- fmt.Sprintf("%s %q %s", line, map[string][]string(h), body)
			_, _ = io.WriteString(c, "HTTP/1.1 204 No Content\r\n\r\n")
		}
	})
	var got []string
	for _, tr := range transports {
		sc := newSidecar(t, upstream, onTransport(tr))
		req, err := http.NewRequest(http.MethodPost, sc.url("/api/a%2Fb/c?x=1&y=%20z"), strings.NewReader(`{"i":"t"}`))
		require.NoError(t, err)
		req.Host = "ocean.example"
		req.Header.Set("Content-Type", "application/json")
		req.Header.Add("Accept", "a")
		req.Header.Add("Accept", "b")
		req.Header.Set("Te", "trailers")
		resp, err := sc.client.Do(req)
		require.NoError(t, err)
		resp.Body.Close()
		got = append(got, <-seen)
	}
	assert.Equal(t, got[1], got[0], "lean and stdlib send the same request")
	assert.Contains(t, got[0], `POST /api/a%2Fb/c?x=1&y=%20z HTTP/1.1`)
}
