package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"sync/atomic"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// answerStatus is the status the client must get when the upstream answers
// a GET with answer and hangs up: the final status net/http's parser reads
// after any 1xx, or 502 for anything the proxy cannot pass on (no answer,
// not HTTP, a status code below 100, a 101 nobody asked for, too many 1xx).
// bodyBroken reports a final answer whose body ends early or malformed:
// its status is on its way when the body breaks, so the client's response
// breaks off instead (ReverseProxy aborts it) and may not arrive at all.
func answerStatus(answer []byte) (status int, bodyBroken bool) {
	br := bufio.NewReader(bytes.NewReader(answer))
	req := &http.Request{Method: http.MethodGet}
	for range max1xx + 1 {
		res, err := http.ReadResponse(br, req)
		if err != nil {
			return http.StatusBadGateway, false
		}
		switch code := res.StatusCode; {
		case code < 100 || code > 999 || code == http.StatusSwitchingProtocols:
			return http.StatusBadGateway, false
		case code >= 200:
			_, err := io.Copy(io.Discard, res.Body)
			return code, err != nil
		}
	}
	return http.StatusBadGateway, false
}

// FuzzUpstreamAnswer sends the proxy's lean transport arbitrary upstream
// answers: the client gets the answer's status or an Ocean-style 502, never
// a hang or a crash, and the next request is served.
func FuzzUpstreamAnswer(f *testing.F) {
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-T\r\n\r\n2\r\nok\r\n0\r\nX-T: v\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 103 Early Hints\r\nLink: </a.js>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\n",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		"HTTP/1.1 042 Odd\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nab",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
		"HTTP/1.1 200 OK\r\n no colon\r\n\r\n",
		"HTTP/1.1 2000 OK\r\n\r\n",
		"SSH-2.0-OpenSSH_9.6\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	var answer atomic.Pointer[[]byte]
	upstream := rawUpstream(f, func(c net.Conn) {
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
			_, _ = c.Write(*answer.Load())
			return
		}
	})
	sc := newSidecar(f, upstream, func(o *Options) { o.ResponseHeaderTimeout = guard })
	sc.client.Timeout = guard
	f.Fuzz(func(t *testing.T, a []byte) {
		answer.Store(&a)
		want, broken := answerStatus(a)
		resp, err := sc.client.Get(sc.url("/api/meta"))
		if broken {
			if err == nil {
				assert.Equal(t, want, resp.StatusCode)
				_, err = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
			assert.Error(t, err, "the client sees the body break off")
		} else {
			require.NoError(t, err, "the client gets an answer")
			_, err = io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			assert.NoError(t, err)
			assert.Equal(t, want, resp.StatusCode)
		}

		resp, err = sc.client.Get(sc.url("/ok"))
		require.NoError(t, err)
		assert.Equal(t, "ok", string(readAll(t, resp.Body)), "the proxy keeps serving")
		resp.Body.Close()
	})
}
