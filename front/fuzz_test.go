package front_test

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/front"
)

// fuzzGuard bounds each fuzz exchange: a server that neither answers nor
// closes by then hangs.
const fuzzGuard = 2 * time.Second

// fuzzHandler does, by the request's path, the things a handler does to a
// response, so that the fuzzer reaches them.
func fuzzHandler(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	if !strings.HasPrefix(p, "/noread") {
		_, _ = io.Copy(io.Discard, r.Body)
	}
	switch {
	case strings.HasPrefix(p, "/big"):
		for range 3 {
			_, _ = w.Write(bytes.Repeat([]byte("b"), 1<<10))
		}
	case strings.HasPrefix(p, "/flush"):
		_, _ = io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		_, _ = io.WriteString(w, "rest")
	case strings.HasPrefix(p, "/103"):
		w.Header().Set("Link", "</a>")
		w.WriteHeader(http.StatusEarlyHints)
		_, _ = io.WriteString(w, "after hints")
	case strings.HasPrefix(p, "/trailer"):
		w.Header().Set("Trailer", "X-T")
		_, _ = io.WriteString(w, "body")
		w.Header().Set("X-T", "v")
	case strings.HasPrefix(p, "/204"):
		w.WriteHeader(http.StatusNoContent)
	case strings.HasPrefix(p, "/length"):
		w.Header().Set("Content-Length", "4")
		_, _ = io.WriteString(w, "four")
	default:
		_, _ = io.WriteString(w, "ok")
	}
}

// FuzzRequest sends arbitrary bytes as a request on a fresh connection and
// half-closes it. The server must answer with responses that parse, or
// nothing, and close the connection; it must not panic (a panic in the
// server is recovered and logged, so an error log fails the input); and it
// must go on serving.
func FuzzRequest(f *testing.F) {
	for _, seed := range []string{
		"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET /big HTTP/1.1\r\nHost: x\r\n\r\nGET /flush HTTP/1.1\r\nHost: x\r\n\r\n",
		"HEAD /big HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /noread HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhelloGET /204 HTTP/1.1\r\nHost: x\r\n\r\n",
		"POST /trailer HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\nX: y\r\n\r\n",
		"POST /103 HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\nhi",
		"POST /noread HTTP/1.1\r\nHost: x\r\nExpect: 100-continue\r\nContent-Length: 2\r\n\r\n",
		"GET /length HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
		"POST / HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip, chunked\r\n\r\n",
		"GET / HTTP/2.0\r\n\r\n",
		"OPTIONS * HTTP/1.1\r\nHost: x\r\n\r\n",
		"GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n",
		"\r\n\r\nGET / HTTP/1.1\nHost: x\n\n",
		"\x16\x03\x01\x00\xa5\x01\x00",
	} {
		f.Add([]byte(seed))
	}

	sink := &logSink{}
	ts := serve(f, &front.Server{Handler: http.HandlerFunc(fuzzHandler), Logger: slog.New(sink)})

	f.Fuzz(func(t *testing.T, raw []byte) {
		before := len(sink.errors())
		c, err := net.Dial("tcp", ts.addr)
		require.NoError(t, err)
		defer c.Close()
		require.NoError(t, c.SetDeadline(time.Now().Add(fuzzGuard)))
		if _, err := c.Write(raw); err != nil {
			require.Truef(t, isReset(err), "write: %v", err)
		}
		_ = c.(*net.TCPConn).CloseWrite()

		// The first request as the server reads it, for what to expect
		// back: a HEAD's response has no body.
		method := http.MethodGet
		if req, err := http.ReadRequest(bufio.NewReader(bytes.NewReader(raw))); err == nil {
			method = req.Method
		}
		br := bufio.NewReader(c)
		for {
			if _, err := br.Peek(1); err != nil {
				// No answer: the server closed (or reset, having left
				// input unread) without a word.
				require.Truef(t, err == io.EOF || isReset(err), "the server neither answered nor closed: %v", err)
				break
			}
			res, err := http.ReadResponse(br, &http.Request{Method: method})
			require.NoError(t, err, "the answer parses")
			_, err = io.Copy(io.Discard, res.Body)
			require.Truef(t, err == nil || isReset(err), "the answer's body reads: %v", err)
			if res.StatusCode >= 100 && res.StatusCode < 200 {
				continue // an informational response: the final one follows
			}
			// Later responses answer pipelined requests this test does
			// not parse; what matters is that the server closes.
			_, err = io.Copy(io.Discard, br)
			require.Truef(t, err == nil || isReset(err), "the server closes: %v", err)
			break
		}
		require.Len(t, sink.errors(), before, "the server logged an error: %v", sink.errors())

		n, err := net.Dial("tcp", ts.addr)
		require.NoError(t, err)
		defer n.Close()
		require.NoError(t, n.SetDeadline(time.Now().Add(fuzzGuard)))
		_, err = io.WriteString(n, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		require.NoError(t, err)
		res, err := http.ReadResponse(bufio.NewReader(n), nil)
		require.NoError(t, err, "the server goes on serving")
		b, err := io.ReadAll(res.Body)
		require.NoError(t, err)
		require.Equal(t, "ok", string(b))
	})
}

func isReset(err error) bool {
	var op *net.OpError
	return errors.As(err, &op) && strings.Contains(op.Err.Error(), "reset")
}
