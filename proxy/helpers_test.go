package proxy

import (
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/front"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
)

// sidecar is a Proxy served by a real loopback server, with the client that
// talks to it (no transparent decompression, so raw bytes are compared).
type sidecar struct {
	p      *Proxy
	srv    *frontend
	client *http.Client
	logs   *logBuffer
}

// frontend is the loopback server in front of the Proxy: front.Server, as
// the sidecar serves by default, or net/http's with
// OCEANHOOKS_TEST_SERVER=stdlib.
type frontend struct {
	URL   string
	Close func()
}

func serveFront(t testing.TB, h http.Handler) *frontend {
	t.Helper()
	if os.Getenv("OCEANHOOKS_TEST_SERVER") == "stdlib" {
		srv := httptest.NewServer(h)
		return &frontend{URL: srv.URL, Close: srv.Close}
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	fs := &front.Server{Handler: h, ReadHeaderTimeout: 10 * time.Second}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = fs.Serve(ln)
	}()
	return &frontend{URL: "http://" + ln.Addr().String(), Close: func() {
		_ = fs.Close()
		<-done
	}}
}

// newUpstream starts a loopback server standing in for Ocean.
func newUpstream(t testing.TB, h http.Handler) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(srv.Close)
	return srv
}

// newSidecar builds a Proxy in front of upstream; edit may change options.
func newSidecar(t testing.TB, upstream string, edit func(*Options)) *sidecar {
	t.Helper()
	u, err := url.Parse(upstream)
	require.NoError(t, err)
	logs := &logBuffer{}
	opts := Options{
		Upstream:   u,
		Registerer: prometheus.NewRegistry(),
		Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
	}
	if edit != nil {
		edit(&opts)
	}
	p, err := New(opts)
	require.NoError(t, err)
	return serveSidecar(t, p, p, logs)
}

func serveSidecar(t testing.TB, p *Proxy, h http.Handler, logs *logBuffer) *sidecar {
	t.Helper()
	srv := serveFront(t, h)
	t.Cleanup(srv.Close)
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	return &sidecar{p: p, srv: srv, client: &http.Client{Transport: tr}, logs: logs}
}

func (s *sidecar) url(path string) string { return s.srv.URL + path }

// counter reads one child of a counter vector.
func counter(t *testing.T, vec *prometheus.CounterVec, labels ...string) float64 {
	t.Helper()
	return testutil.ToFloat64(vec.WithLabelValues(labels...))
}

func (s *sidecar) requests(t *testing.T, route, class string) float64 {
	return counter(t, s.p.m.requests, route, class)
}

// logBuffer collects log output from any goroutine.
type logBuffer struct{ testlog.Buffer }

// loudLines returns the log lines at warning level or above.
func (l *logBuffer) loudLines() []string {
	var loud []string
	for line := range strings.Lines(l.String()) {
		if strings.Contains(line, "level=WARN") || strings.Contains(line, "level=ERROR") {
			loud = append(loud, line)
		}
	}
	return loud
}

// testBytes returns n deterministic pseudo-random bytes.
func testBytes(n int, seed uint64) []byte {
	r := rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(r.Uint32())
	}
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func hashReader(t *testing.T, r io.Reader) string {
	t.Helper()
	h := sha256.New()
	_, err := io.Copy(h, r)
	require.NoError(t, err)
	return hex.EncodeToString(h.Sum(nil))
}

func readAll(t *testing.T, r io.Reader) []byte {
	t.Helper()
	b, err := io.ReadAll(r)
	require.NoError(t, err)
	return b
}

func testutilValue(c prometheus.Collector) float64 { return testutil.ToFloat64(c) }

func testutilCount(c prometheus.Collector) (int, error) { return testutil.CollectAndCount(c), nil }

// netDial opens a raw TCP connection to a test server's URL.
func netDial(serverURL string) (net.Conn, error) {
	return net.Dial("tcp", strings.TrimPrefix(serverURL, "http://"))
}

// histogramCount is how many observations a histogram child holds.
func histogramCount(t *testing.T, o prometheus.Observer) uint64 {
	t.Helper()
	m := &dto.Metric{}
	require.NoError(t, o.(prometheus.Metric).Write(m))
	return m.GetHistogram().GetSampleCount()
}
