package proxy

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
)

// benchTaps is a tap table of the size the matchers register.
func benchTaps() []Tap {
	names := []string{
		"notes/create", "notes/delete", "notes/reactions/create", "notes/reactions/delete",
		"following/create", "following/delete", "following/requests/accept", "following/requests/reject",
		"following/requests/cancel", "following/invalidate", "blocking/create", "blocking/delete",
		"mute/create", "mute/delete", "notes/renotes", "notes/update", "channels/follow", "users/lists/push",
	}
	taps := make([]Tap, len(names))
	for i, n := range names {
		taps[i] = Tap{Endpoint: n, Wanted: func() bool { return false }}
	}
	return taps
}

type nopConsumer struct{}

func (nopConsumer) Observe(context.Context, *Observation) error { return nil }

func benchProxy(b *testing.B, upstream string, taps []Tap, edit ...func(*Options)) *Proxy {
	b.Helper()
	u, err := url.Parse(upstream)
	if err != nil {
		b.Fatal(err)
	}
	opts := Options{Upstream: u, Taps: taps, Consumer: nopConsumer{}, Registerer: prometheus.NewRegistry()}
	for _, e := range edit {
		e(&opts)
	}
	p, err := New(opts)
	if err != nil {
		b.Fatal(err)
	}
	return p
}

// BenchmarkUntappedDecision is what every request pays to learn it is not
// tapped.
func BenchmarkUntappedDecision(b *testing.B) {
	p := benchProxy(b, "http://127.0.0.1:3000", benchTaps())
	for _, tc := range []struct{ name, method, path string }{
		{"api endpoint", http.MethodPost, "/api/notes/timeline"},
		{"tapped endpoint not wanted", http.MethodPost, "/api/notes/create"},
		{"static file", http.MethodGet, "/files/webpublic-0123.webp"},
		{"streaming", http.MethodGet, "/streaming"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			req := httptest.NewRequest(tc.method, tc.path, nil)
			b.ReportAllocs()
			for b.Loop() {
				rt := p.classify(req.URL.Path)
				if p.tapFor(rt, req) != nil {
					b.Fatal("tapped")
				}
			}
		})
	}
}

// benchWriter is a reusable ResponseWriter that discards the body.
type benchWriter struct {
	h    http.Header
	code int
}

func (w *benchWriter) Header() http.Header         { return w.h }
func (w *benchWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *benchWriter) WriteHeader(code int)        { w.code = code }

// benchBody is a request body that can be rewound without allocating.
type benchBody struct {
	r    bytes.Reader
	data []byte
}

func (b *benchBody) Read(p []byte) (int, error) { return b.r.Read(p) }
func (b *benchBody) Close() error               { return nil }

func benchServe(b *testing.B, h http.Handler, path string) {
	b.Helper()
	body := &benchBody{data: []byte(`{"limit":10,"withFiles":false}`)}
	req := httptest.NewRequest(http.MethodPost, path, nil)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer token")
	req.RemoteAddr = "127.0.0.1:40000"
	w := &benchWriter{h: make(http.Header)}
	b.ReportAllocs()
	for b.Loop() {
		body.r.Reset(body.data)
		req.Body = body
		req.ContentLength = int64(len(body.data))
		clear(w.h)
		w.code = 0
		h.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
	}
}

func fastUpstream(b *testing.B) *httptest.Server {
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json; charset=utf-8")
		_, _ = io.WriteString(w, `[{"id":"n1","text":"hello"}]`)
	}))
	b.Cleanup(srv.Close)
	return srv
}

// BenchmarkProxyUntapped runs an untapped API call through the real handler
// to a fast upstream, on the proxy's own transport and on net/http's;
// "stock" is a bare httputil.ReverseProxy with net/http's transport, the
// floor the sidecar is measured against.
func BenchmarkProxyUntapped(b *testing.B) {
	upstream := fastUpstream(b)
	p := benchProxy(b, upstream.URL, benchTaps())
	b.Run("oceanhooks", func(b *testing.B) { benchServe(b, p, "/api/notes/timeline") })
	std := benchProxy(b, upstream.URL, benchTaps(), func(o *Options) { o.Transport = TransportStdlib })
	b.Run("oceanhooks-stdlib", func(b *testing.B) { benchServe(b, std, "/api/notes/timeline") })
	b.Run("stock", func(b *testing.B) {
		u, _ := url.Parse(upstream.URL)
		stock := &httputil.ReverseProxy{
			Rewrite: func(pr *httputil.ProxyRequest) {
				pr.SetURL(u)
				pr.SetXForwarded()
			},
			Transport: newStdTransport(Options{}),
		}
		benchServe(b, stock, "/api/notes/timeline")
	})
}

// BenchmarkProxyTapped is the same call on a tapped endpoint whose gate says
// yes, with a consumer that does nothing: the price of inspection.
func BenchmarkProxyTapped(b *testing.B) {
	upstream := fastUpstream(b)
	p := benchProxy(b, upstream.URL, []Tap{{Endpoint: "notes/timeline"}})
	benchServe(b, p, "/api/notes/timeline")
}
