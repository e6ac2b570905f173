package front

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
)

// fixedHandler answers like the bench upstream: a JSON body with its length.
func fixedHandler() http.Handler {
	body := bytes.Repeat([]byte("x"), 1024)
	cl := strconv.Itoa(len(body))
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		h := w.Header()
		h["Content-Type"] = []string{"application/json; charset=utf-8"}
		h["Content-Length"] = []string{cl}
		w.WriteHeader(http.StatusOK)
		_, _ = w.Write(body)
	})
}

const benchRequest = "POST /api/notes/timeline HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n" +
	"Authorization: Bearer tok-0\r\nUser-Agent: bench\r\nContent-Length: 12\r\n\r\n{\"limit\":10}"

// benchServer measures one keep-alive connection's request/response cycle
// through serve, with a raw client whose own cost is a write and a read.
func benchServer(b *testing.B, serve func(net.Listener) error, stop func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(b, err)
	go func() { _ = serve(ln) }()
	b.Cleanup(stop)
	c, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(b, err)
	defer c.Close()
	br := bufio.NewReader(c)
	// Learn the response's size once: the handler's answer is fixed.
	_, err = io.WriteString(c, benchRequest)
	require.NoError(b, err)
	res, err := http.ReadResponse(br, nil)
	require.NoError(b, err)
	raw, err := io.ReadAll(res.Body)
	require.NoError(b, err)
	var head bytes.Buffer
	require.NoError(b, res.Header.Write(&head))
	size := -1
	for probe := 0; probe < 2; probe++ {
		// Measure the whole response as the bytes on the wire.
		_, err = io.WriteString(c, benchRequest)
		require.NoError(b, err)
		buf := make([]byte, 64<<10)
		n, err := c.Read(buf)
		require.NoError(b, err)
		size = n
	}
	require.Greater(b, size, len(raw))
	buf := make([]byte, size)
	req := []byte(benchRequest)
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		if _, err := io.ReadFull(c, buf); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkServe(b *testing.B) {
	b.Run("front", func(b *testing.B) {
		s := &Server{Handler: fixedHandler()}
		benchServer(b, s.Serve, func() { _ = s.Close() })
	})
	b.Run("net-http", func(b *testing.B) {
		s := &http.Server{Handler: fixedHandler()}
		benchServer(b, s.Serve, func() { _ = s.Close() })
	})
}
