package proxy

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime/multipart"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/andybalholm/brotli"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// guard is how long a test waits for something that must happen before it
// declares a hang; it is a failure bound, never an assertion on timing.
const guard = 10 * time.Second

type snapshot struct {
	status  int
	header  http.Header
	body    []byte
	trailer http.Header
}

func take(t *testing.T, c *http.Client, req *http.Request) snapshot {
	t.Helper()
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body := readAll(t, resp.Body)
	h := resp.Header.Clone()
	h.Del("Date")
	return snapshot{status: resp.StatusCode, header: h, body: body, trailer: resp.Trailer}
}

func gzipped(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	require.NoError(t, err)
	require.NoError(t, zw.Close())
	return buf.Bytes()
}

func brotlied(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	bw := brotli.NewWriter(&buf)
	_, err := bw.Write(b)
	require.NoError(t, err)
	require.NoError(t, bw.Close())
	return buf.Bytes()
}

// TestPassThroughIsByteIdentical asks the upstream once directly and once
// through the sidecar: status, headers, body bytes and trailers must match.
func TestPassThroughIsByteIdentical(t *testing.T) {
	emojis := []byte(`{"emojis":[{"name":"blobcat","url":"https://ocean.example/emoji/blobcat.webp"}]}`)
	gz, br := gzipped(t, emojis), brotlied(t, emojis)
	big := testBytes(4<<20, 7)
	oceanErr, err := json.Marshal(map[string]any{"error": ocean.ErrInvalidParam})
	require.NoError(t, err)

	encoded := func(name string, payload []byte) http.HandlerFunc {
		return func(w http.ResponseWriter, r *http.Request) {
			if r.Header.Get("Accept-Encoding") != name {
				http.Error(w, "accept-encoding not passed through", http.StatusNotAcceptable)
				return
			}
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			w.Header().Set("Content-Encoding", name)
			w.Header().Set("Vary", "Accept-Encoding")
			w.Header().Set("Content-Length", fmt.Sprint(len(payload)))
			_, _ = w.Write(payload)
		}
	}

	cases := []struct {
		name    string
		handler http.HandlerFunc
		request func(base string) *http.Request
		check   func(t *testing.T, got snapshot)
	}{
		{
			name: "json api call",
			handler: func(w http.ResponseWriter, r *http.Request) {
				body, _ := io.ReadAll(r.Body)
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.Header().Add("Set-Cookie", "a=1; Path=/")
				w.Header().Add("Set-Cookie", "b=2; Path=/")
				w.Header().Set("X-Ocean-Thing", "kept")
				fmt.Fprintf(w, `{"method":%q,"auth":%q,"body":%q}`, r.Method, r.Header.Get("Authorization"), sha(body))
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, base+"/api/notes/timeline", strings.NewReader(`{"limit":10}`))
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", "Bearer tok")
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, http.StatusOK, got.status)
				assert.JSONEq(t, fmt.Sprintf(`{"method":"POST","auth":"Bearer tok","body":%q}`, sha([]byte(`{"limit":10}`))), string(got.body))
				assert.Equal(t, []string{"a=1; Path=/", "b=2; Path=/"}, got.header.Values("Set-Cookie"))
			},
		},
		{
			name:    "gzip response",
			handler: encoded("gzip", gz),
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/api/emojis", nil)
				req.Header.Set("Accept-Encoding", "gzip")
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, http.StatusOK, got.status)
				assert.Equal(t, "gzip", got.header.Get("Content-Encoding"))
				assert.Equal(t, gz, got.body)
			},
		},
		{
			name:    "brotli response",
			handler: encoded("br", br),
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/api/emojis", nil)
				req.Header.Set("Accept-Encoding", "br")
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, "br", got.header.Get("Content-Encoding"))
				assert.Equal(t, br, got.body)
			},
		},
		{
			name: "4 MiB streamed download",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/octet-stream")
				for chunk := range slicesChunk(big, 64<<10) {
					_, _ = w.Write(chunk)
					http.NewResponseController(w).Flush()
				}
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/files/big.bin", nil)
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Len(t, got.body, len(big))
				assert.Equal(t, sha(big), sha(got.body))
			},
		},
		{
			name: "ocean error response",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				w.WriteHeader(http.StatusBadRequest)
				_, _ = w.Write(oceanErr)
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, base+"/api/notes/create", strings.NewReader(`{}`))
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, http.StatusBadRequest, got.status)
				assert.JSONEq(t, string(oceanErr), string(got.body))
			},
		},
		{
			name: "204 with empty body",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.WriteHeader(http.StatusNoContent)
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodPost, base+"/api/notes/delete", strings.NewReader(`{"noteId":"x"}`))
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, http.StatusNoContent, got.status)
				assert.Empty(t, got.body)
			},
		},
		{
			name: "trailers",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Trailer", "X-Checksum")
				_, _ = w.Write([]byte("payload"))
				w.Header().Set("X-Checksum", sha([]byte("payload")))
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/trailer", nil)
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, "payload", string(got.body))
				assert.Equal(t, sha([]byte("payload")), got.trailer.Get("X-Checksum"))
			},
		},
		{
			name: "path and query kept raw",
			handler: func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.WriteString(w, r.RequestURI)
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/files/a%2Fb/c?x=1&y=%20z", nil)
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, "/files/a%2Fb/c?x=1&y=%20z", string(got.body))
			},
		},
		{
			name: "no accept-encoding added",
			handler: func(w http.ResponseWriter, r *http.Request) {
				fmt.Fprintf(w, "%q", r.Header.Values("Accept-Encoding"))
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/api/meta", nil)
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, "[]", string(got.body))
			},
		},
		{
			name: "redirect passed, not followed",
			handler: func(w http.ResponseWriter, r *http.Request) {
				http.Redirect(w, r, "/somewhere/else", http.StatusFound)
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodGet, base+"/@alice", nil)
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, http.StatusFound, got.status)
				assert.Equal(t, "/somewhere/else", got.header.Get("Location"))
			},
		},
		{
			name: "HEAD keeps content length",
			handler: func(w http.ResponseWriter, r *http.Request) {
				w.Header().Set("Content-Length", "1234")
				w.Header().Set("Content-Type", "image/webp")
			},
			request: func(base string) *http.Request {
				req, _ := http.NewRequest(http.MethodHead, base+"/files/x.webp", nil)
				return req
			},
			check: func(t *testing.T, got snapshot) {
				assert.Equal(t, "1234", got.header.Get("Content-Length"))
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			upstream := newUpstream(t, tc.handler)
			sc := newSidecar(t, upstream.URL, nil)
			noRedirect := func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
			sc.client.CheckRedirect = noRedirect
			direct := &http.Client{Transport: &http.Transport{DisableCompression: true}, CheckRedirect: noRedirect}
			t.Cleanup(direct.CloseIdleConnections)

			want := take(t, direct, tc.request(upstream.URL))
			got := take(t, sc.client, tc.request(sc.srv.URL))

			assert.Equal(t, want.status, got.status, "status")
			assert.Equal(t, want.header, got.header, "headers")
			assert.True(t, bytes.Equal(want.body, got.body), "body bytes differ")
			assert.Equal(t, want.trailer, got.trailer, "trailers")
			tc.check(t, got)
		})
	}
}

func slicesChunk(b []byte, n int) func(func([]byte) bool) {
	return func(yield func([]byte) bool) {
		for len(b) > 0 {
			k := min(n, len(b))
			if !yield(b[:k]) {
				return
			}
			b = b[k:]
		}
	}
}

// TestMultipartUploadIsStreamed shows that an upload reaches the upstream
// while the client is still writing it, and arrives byte for byte, whether
// or not its endpoint is tapped.
func TestMultipartUploadIsStreamed(t *testing.T) {
	var form bytes.Buffer
	mw := multipart.NewWriter(&form)
	require.NoError(t, mw.WriteField("folderId", "f1"))
	part, err := mw.CreateFormFile("file", "cat.webp")
	require.NoError(t, err)
	_, err = part.Write(testBytes(2<<20, 11))
	require.NoError(t, err)
	require.NoError(t, mw.Close())
	payload := form.Bytes()
	const headLen = 4096

	for _, tc := range []struct {
		name   string
		tapped bool
	}{{"untapped", false}, {"tapped endpoint", true}} {
		t.Run(tc.name, func(t *testing.T) {
			firstSeen := make(chan struct{})
			type upload struct {
				sum, contentType string
			}
			got := make(chan upload, 1)
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				h := sha256.New()
				head := make([]byte, headLen)
				n, _ := io.ReadFull(r.Body, head)
				h.Write(head[:n])
				close(firstSeen)
				_, _ = io.Copy(h, r.Body)
				got <- upload{sum: hex.EncodeToString(h.Sum(nil)), contentType: r.Header.Get("Content-Type")}
				w.Header().Set("Content-Type", "application/json; charset=utf-8")
				_, _ = io.WriteString(w, `{"id":"file1"}`)
			}))
			rec := &recorder{}
			sc := newSidecar(t, upstream.URL, func(o *Options) {
				if tc.tapped {
					o.Taps = []Tap{{Endpoint: "drive/files/create"}}
					o.Consumer = rec
				}
			})

			pr, pw := io.Pipe()
			go func() {
				_, _ = pw.Write(payload[:headLen])
				select {
				case <-firstSeen:
				case <-time.After(guard):
					pw.CloseWithError(errors.New("upstream saw nothing while the client was still writing: the upload was buffered"))
					return
				}
				_, _ = pw.Write(payload[headLen:])
				_ = pw.Close()
			}()
			req, err := http.NewRequest(http.MethodPost, sc.url("/api/drive/files/create"), pr)
			require.NoError(t, err)
			req.Header.Set("Content-Type", mw.FormDataContentType())
			resp, err := sc.client.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusOK, resp.StatusCode)
			assert.JSONEq(t, `{"id":"file1"}`, string(readAll(t, resp.Body)))

			up := <-got
			assert.Equal(t, sha(payload), up.sum, "upstream got different bytes")
			assert.Equal(t, mw.FormDataContentType(), up.contentType)
			assert.Zero(t, rec.count(), "a multipart upload is never observed")
			if tc.tapped {
				assert.Equal(t, 1.0, counter(t, sc.p.m.notJSONBodies, "drive/files/create", dirRequest))
			}
		})
	}
}

// TestDownloadIsStreamed shows that the client gets the first part of a
// download while the upstream is still producing the rest.
func TestDownloadIsStreamed(t *testing.T) {
	data := testBytes(1<<20, 3)
	const headLen = 32 << 10
	clientHasHead := make(chan struct{})
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "video/mp4")
		_, _ = w.Write(data[:headLen])
		http.NewResponseController(w).Flush()
		select {
		case <-clientHasHead:
		case <-time.After(guard):
			return // the test fails on the short body
		}
		_, _ = w.Write(data[headLen:])
	}))
	sc := newSidecar(t, upstream.URL, nil)

	resp, err := sc.client.Get(sc.url("/files/movie.mp4"))
	require.NoError(t, err)
	defer resp.Body.Close()
	head := make([]byte, headLen)
	_, err = io.ReadFull(resp.Body, head)
	require.NoError(t, err)
	close(clientHasHead)
	rest := readAll(t, resp.Body)
	assert.Equal(t, sha(data), sha(append(head, rest...)))
}

// TestServerSentEventsAreFlushed shows that an event reaches the client
// before the upstream ends the response.
func TestServerSentEventsAreFlushed(t *testing.T) {
	clientHasEvent := make(chan struct{})
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		_, _ = io.WriteString(w, "data: hello\n\n")
		http.NewResponseController(w).Flush()
		select {
		case <-clientHasEvent:
		case <-time.After(guard):
			return
		}
		_, _ = io.WriteString(w, "data: bye\n\n")
	}))
	sc := newSidecar(t, upstream.URL, nil)

	resp, err := sc.client.Get(sc.url("/events"))
	require.NoError(t, err)
	defer resp.Body.Close()
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadString('\n')
	require.NoError(t, err)
	assert.Equal(t, "data: hello\n", line)
	close(clientHasEvent)
	rest := readAll(t, br)
	assert.Equal(t, "\ndata: bye\n\n", string(rest))
}

func TestForwardedHeaders(t *testing.T) {
	loopback := netip.MustParsePrefix("127.0.0.0/8")
	cases := []struct {
		name     string
		trusted  []netip.Prefix
		incoming map[string]string
		want     func(host string) map[string]string
	}{
		{
			name:    "untrusted peer: forged values replaced",
			trusted: []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")},
			incoming: map[string]string{
				"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": "evil.example", "X-Real-Ip": "9.9.9.9", "Forwarded": "for=1.2.3.4",
			},
			want: func(host string) map[string]string {
				return map[string]string{
					"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
					"X-Forwarded-Host": host, "X-Real-Ip": "127.0.0.1", "Forwarded": "",
				}
			},
		},
		{
			name:    "trusted peer: chain extended, proto and host kept, Forwarded dropped",
			trusted: []netip.Prefix{loopback},
			incoming: map[string]string{
				"X-Forwarded-For": "1.2.3.4", "X-Forwarded-Proto": "https",
				"X-Forwarded-Host": "ocean.example", "X-Real-Ip": "1.2.3.4", "Forwarded": "for=1.2.3.4;proto=https",
			},
			want: func(string) map[string]string {
				return map[string]string{
					"X-Forwarded-For": "1.2.3.4, 127.0.0.1", "X-Forwarded-Proto": "https",
					"X-Forwarded-Host": "ocean.example", "X-Real-Ip": "1.2.3.4", "Forwarded": "",
				}
			},
		},
		{
			name:     "trusted peer without forwarding headers",
			trusted:  []netip.Prefix{loopback},
			incoming: map[string]string{},
			want: func(host string) map[string]string {
				return map[string]string{
					"X-Forwarded-For": "127.0.0.1", "X-Forwarded-Proto": "http",
					"X-Forwarded-Host": host, "X-Real-Ip": "127.0.0.1",
				}
			},
		},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			seen := make(chan http.Request, 1)
			upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				seen <- *r
			}))
			sc := newSidecar(t, upstream.URL, func(o *Options) { o.TrustedProxies = tc.trusted })
			req, err := http.NewRequest(http.MethodGet, sc.url("/"), nil)
			require.NoError(t, err)
			for k, v := range tc.incoming {
				req.Header.Set(k, v)
			}
			resp, err := sc.client.Do(req)
			require.NoError(t, err)
			resp.Body.Close()
			r := <-seen
			host := strings.TrimPrefix(sc.srv.URL, "http://")
			assert.Equal(t, host, r.Host, "the client's Host is kept")
			for k, v := range tc.want(host) {
				assert.Equal(t, v, strings.Join(r.Header.Values(k), ","), k)
			}
		})
	}
}

func TestHostHeaderIsKept(t *testing.T) {
	seen := make(chan string, 1)
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { seen <- r.Host }))
	sc := newSidecar(t, upstream.URL, nil)
	req, err := http.NewRequest(http.MethodPost, sc.url("/inbox"), strings.NewReader(`{}`))
	require.NoError(t, err)
	req.Host = "ocean.example"
	resp, err := sc.client.Do(req)
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "ocean.example", <-seen)
}

func oceanJSON(t *testing.T, e *ocean.Error) string {
	t.Helper()
	b, err := json.Marshal(map[string]any{"error": e})
	require.NoError(t, err)
	return string(b)
}

func TestUpstreamFailuresAnswerLikeOcean(t *testing.T) {
	dead := httptest.NewServer(http.NotFoundHandler())
	deadURL := dead.URL
	dead.Close()

	release := make(chan struct{})
	slow := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) }) // runs before the upstream's Close

	cases := []struct {
		name     string
		upstream string
		want     *ocean.Error
		kind     int
	}{
		{"upstream down", deadURL, ocean.ErrUpstreamUnavailable, upstreamUnavailable},
		{"upstream slower than the header timeout", slow.URL, ocean.ErrUpstreamTimeout, upstreamTimeout},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sc := newSidecar(t, tc.upstream, func(o *Options) {
				o.ResponseHeaderTimeout = 50 * time.Millisecond
				o.DialTimeout = time.Second
			})
			resp, err := sc.client.Post(sc.url("/api/notes/timeline"), "application/json", strings.NewReader(`{}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, tc.want.HTTPStatus(), resp.StatusCode)
			assert.Equal(t, "application/json; charset=utf-8", resp.Header.Get("Content-Type"))
			assert.JSONEq(t, oceanJSON(t, tc.want), string(readAll(t, resp.Body)))
			assert.Equal(t, 1.0, testutilValue(sc.p.m.upstreamErrors[tc.kind]))
			assert.Equal(t, 1.0, sc.requests(t, labelAPI, "5xx"))
		})
	}
}

// TestClientGoneIsNotAnUpstreamError: a client that hangs up while Ocean
// thinks is neither counted as an upstream failure nor logged loudly.
func TestClientGoneIsNotAnUpstreamError(t *testing.T) {
	arrived := make(chan struct{}, 1)
	release := make(chan struct{})
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived <- struct{}{}
		select {
		case <-release:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(release) }) // runs before the upstream's Close
	sc := newSidecar(t, upstream.URL, nil)

	ctx, cancel := context.WithCancel(t.Context())
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, sc.url("/api/notes/timeline"), strings.NewReader(`{}`))
	require.NoError(t, err)
	done := make(chan error, 1)
	go func() {
		resp, err := sc.client.Do(req)
		if err == nil {
			resp.Body.Close()
		}
		done <- err
	}()
	<-arrived
	cancel()
	require.ErrorIs(t, <-done, context.Canceled)

	require.Eventually(t, func() bool { return sc.requests(t, labelAPI, "canceled") == 1 },
		guard, 5*time.Millisecond)
	assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamUnavailable]))
	assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamTimeout]))
	assert.Empty(t, sc.logs.loudLines())
}

// TestClientGoneMidUpload: a client whose upload breaks off is not an
// upstream failure either.
func TestClientGoneMidUpload(t *testing.T) {
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
	}))
	sc := newSidecar(t, upstream.URL, nil)

	conn, err := netDial(sc.srv.URL)
	require.NoError(t, err)
	_, err = io.WriteString(conn, "POST /api/drive/files/create HTTP/1.1\r\nHost: x\r\n"+
		"Content-Type: application/octet-stream\r\nContent-Length: 100000\r\n\r\npartial")
	require.NoError(t, err)
	require.NoError(t, conn.Close())

	require.Eventually(t, func() bool {
		return sc.requests(t, labelAPI, "canceled")+sc.requests(t, labelAPI, "5xx")+
			sc.requests(t, labelAPI, "2xx") == 1
	}, guard, 5*time.Millisecond)
	assert.Equal(t, 1.0, sc.requests(t, labelAPI, "canceled"))
	assert.Zero(t, testutilValue(sc.p.m.upstreamErrors[upstreamUnavailable]))
	assert.Empty(t, sc.logs.loudLines())
}

func TestLocalSeam(t *testing.T) {
	var upstreamHits []string
	hits := make(chan string, 16)
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits <- r.URL.Path
		_, _ = io.WriteString(w, "ocean")
	}))
	local := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		fmt.Fprintf(w, `{"local":%q}`, r.URL.Path)
	})
	sc := newSidecar(t, upstream.URL, func(o *Options) { o.Local = local })

	for _, path := range []string{
		"/api/i/webhooks/create", "/api/i/webhooks/list", "/api/i/webhooks",
		"/api/i/webhooks/deliveries", "/api/i/webhooks/x/y",
	} {
		t.Run(path, func(t *testing.T) {
			resp, err := sc.client.Post(sc.url(path), "application/json", strings.NewReader(`{}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.JSONEq(t, fmt.Sprintf(`{"local":%q}`, path), string(readAll(t, resp.Body)))
		})
	}
	for _, path := range []string{"/api/i/webhooksx", "/api/i", "/api/i/webhook"} {
		t.Run(path, func(t *testing.T) {
			resp, err := sc.client.Post(sc.url(path), "application/json", strings.NewReader(`{}`))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, "ocean", string(readAll(t, resp.Body)))
			upstreamHits = append(upstreamHits, <-hits)
		})
	}
	assert.Equal(t, []string{"/api/i/webhooksx", "/api/i", "/api/i/webhook"}, upstreamHits)
	assert.Empty(t, hits, "a local path reached the upstream")
	assert.Equal(t, 5.0, sc.requests(t, labelLocal, "2xx"))
	assert.Equal(t, 3.0, sc.requests(t, labelAPI, "2xx"))
}

func TestLocalSeamOffForwards(t *testing.T) {
	hits := make(chan string, 1)
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { hits <- r.URL.Path }))
	sc := newSidecar(t, upstream.URL, nil)
	resp, err := sc.client.Post(sc.url("/api/i/webhooks/list"), "application/json", strings.NewReader(`{}`))
	require.NoError(t, err)
	resp.Body.Close()
	assert.Equal(t, "/api/i/webhooks/list", <-hits)
}

func TestRouteLabels(t *testing.T) {
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	sc := newSidecar(t, upstream.URL, func(o *Options) {
		o.Taps = []Tap{{Endpoint: "notes/create", Wanted: func() bool { return false }}}
		o.Consumer = &recorder{}
	})
	for _, path := range []string{"/api/notes/create", "/api/notes/show", "/api/x/y/z", "/", "/notes/abc", "/api"} {
		resp, err := sc.client.Post(sc.url(path), "application/json", strings.NewReader(`{}`))
		require.NoError(t, err)
		resp.Body.Close()
	}
	assert.Equal(t, 1.0, sc.requests(t, "notes/create", "2xx"))
	assert.Equal(t, 2.0, sc.requests(t, labelAPI, "2xx"))
	assert.Equal(t, 3.0, sc.requests(t, labelOther, "2xx"))
	n, err := testutilCount(sc.p.m.requests)
	require.NoError(t, err)
	assert.Equal(t, 5*numStatusClasses, n, "one series per route and class, no more")
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	_, err := New(Options{Upstream: mustURL(t, "http://127.0.0.1:1"), Registerer: reg})
	require.NoError(t, err)
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	for _, want := range []string{
		"oceanhooks_proxy_requests_total", "oceanhooks_proxy_request_duration_seconds",
		"oceanhooks_proxy_upstream_errors_total", "oceanhooks_proxy_upgraded_connections",
	} {
		assert.Contains(t, names, want)
	}
	_, err = New(Options{Upstream: mustURL(t, "http://127.0.0.1:1"), Registerer: reg})
	assert.Error(t, err, "a second proxy on the same registry must fail, not panic")
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	require.NoError(t, err)
	return u
}

func TestNewRejectsBadOptions(t *testing.T) {
	up := mustURL(t, "http://127.0.0.1:3000")
	cases := []struct {
		name string
		opts Options
	}{
		{"no upstream", Options{}},
		{"not http", Options{Upstream: mustURL(t, "ftp://127.0.0.1")}},
		{"no host", Options{Upstream: mustURL(t, "http:///x")}},
		{"upstream with path", Options{Upstream: mustURL(t, "http://127.0.0.1:3000/ocean")}},
		{"upstream with query", Options{Upstream: mustURL(t, "http://127.0.0.1:3000/?a=1")}},
		{"taps without consumer", Options{Upstream: up, Taps: []Tap{{Endpoint: "notes/create"}}}},
		{"tap endpoint with api prefix", Options{Upstream: up, Consumer: &recorder{}, Taps: []Tap{{Endpoint: "/api/notes/create"}}}},
		{"empty tap endpoint", Options{Upstream: up, Consumer: &recorder{}, Taps: []Tap{{}}}},
		{"tapped twice", Options{Upstream: up, Consumer: &recorder{}, Taps: []Tap{{Endpoint: "notes/create"}, {Endpoint: "notes/create"}}}},
		{"tap on a local path", Options{Upstream: up, Consumer: &recorder{}, Local: http.NotFoundHandler(),
			Taps: []Tap{{Endpoint: "i/webhooks/create"}}}},
		{"unknown transport", Options{Upstream: up, Transport: "h2"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := New(tc.opts)
			assert.Error(t, err)
		})
	}
	p, err := New(Options{Upstream: mustURL(t, "https://ocean.example/")})
	require.NoError(t, err)
	assert.Equal(t, DefaultTapBodyCap, p.bodyCap)
	require.NotNil(t, p.lean, "the proxy's own transport is the default")
	assert.Nil(t, p.std)
	assert.Equal(t, DefaultMaxIdleConnsPerHost, p.lean.maxIdle)
	assert.Equal(t, DefaultResponseHeaderTimeout, p.lean.headerTimeout)
	assert.Equal(t, DefaultDialTimeout, p.lean.dialer.Timeout)
	assert.Equal(t, DefaultIdleConnTimeout, p.lean.idleTimeout)
	assert.Equal(t, "ocean.example:443", p.lean.addr)
	assert.NotNil(t, p.lean.tlsConfig)

	p, err = New(Options{Upstream: mustURL(t, "https://ocean.example/"), Transport: TransportStdlib})
	require.NoError(t, err)
	require.NotNil(t, p.std)
	assert.Nil(t, p.lean)
	assert.Equal(t, DefaultMaxIdleConnsPerHost, p.std.MaxIdleConnsPerHost)
	assert.Equal(t, DefaultResponseHeaderTimeout, p.std.ResponseHeaderTimeout)
	assert.True(t, p.std.DisableCompression)
}
