package bench

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"
)

// The overhead benchmark's untapped call as wrk sends it, and the fake
// upstream's answer to it, byte for byte.
const (
	floorRequest = "POST /api/notes/timeline HTTP/1.1\r\nHost: 127.0.0.1:18301\r\nContent-Type: application/json\r\n" +
		"Authorization: Bearer tok-0\r\nContent-Length: 12\r\n\r\n{\"limit\":10}"
	floorHead = "HTTP/1.1 200 OK\r\nContent-Length: 1024\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Date: Fri, 27 Nov 2026 14:50:22 GMT\r\n\r\n"
)

// BenchmarkUntappedFloor is the least user-space work the design's fixed
// parts do for one untapped call, with no socket and nothing of ours: the
// standard library's request parser (http.ReadRequest), a bare
// httputil.ReverseProxy, the outgoing request serialized (Request.Write),
// the upstream's answer parsed (http.ReadResponse), and the client's
// response head serialized (Header.Write) with its body copied. Every
// buffer is reused; what is left are those parts' own costs. BENCHMARKS.md
// sets it against the CPU a request may take at 0.8× nginx's throughput.
func BenchmarkUntappedFloor(b *testing.B) {
	answer := []byte(floorHead + strings.Repeat("x", 1024))
	up, err := url.Parse("http://127.0.0.1:18300")
	if err != nil {
		b.Fatal(err)
	}
	tr := &cannedTransport{answer: answer, out: bufio.NewWriterSize(io.Discard, 4<<10), in: bufio.NewReaderSize(nil, 4<<10)}
	rp := &httputil.ReverseProxy{
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(up)
			pr.Out.Host = pr.In.Host
			pr.SetXForwarded()
		},
		Transport:  tr,
		BufferPool: fixedPool{make([]byte, 32<<10)},
	}
	w := &serializingWriter{h: make(http.Header), out: bufio.NewWriterSize(io.Discard, 4<<10)}
	src := bytes.NewReader(nil)
	br := bufio.NewReaderSize(src, 4<<10)
	raw := []byte(floorRequest)
	b.ReportAllocs()
	for b.Loop() {
		src.Reset(raw)
		br.Reset(src)
		req, err := http.ReadRequest(br)
		if err != nil {
			b.Fatal(err)
		}
		req.RemoteAddr = "127.0.0.1:40000"
		clear(w.h)
		w.code = 0
		rp.ServeHTTP(w, req)
		if w.code != http.StatusOK {
			b.Fatalf("status %d", w.code)
		}
		_ = w.out.Flush()
	}
}

// cannedTransport writes the request where a socket would be and answers
// with the same bytes every time.
type cannedTransport struct {
	answer []byte
	out    *bufio.Writer
	in     *bufio.Reader
	src    bytes.Reader
}

func (t *cannedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if err := req.Write(t.out); err != nil {
		return nil, err
	}
	_ = t.out.Flush()
	t.src.Reset(t.answer)
	t.in.Reset(&t.src)
	return http.ReadResponse(t.in, req)
}

// serializingWriter writes a response as a server would, into a buffer.
type serializingWriter struct {
	h    http.Header
	code int
	out  *bufio.Writer
}

func (w *serializingWriter) Header() http.Header { return w.h }

func (w *serializingWriter) WriteHeader(code int) {
	w.code = code
	_, _ = w.out.WriteString("HTTP/1.1 200 OK\r\n")
	_ = w.h.Write(w.out)
	_, _ = w.out.WriteString("\r\n")
}

func (w *serializingWriter) Write(p []byte) (int, error) { return w.out.Write(p) }

type fixedPool struct{ buf []byte }

func (p fixedPool) Get() []byte  { return p.buf }
func (p fixedPool) Put(b []byte) {}
