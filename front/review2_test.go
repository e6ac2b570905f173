package front

import (
	"bufio"
	"context"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// A body the server read and dropped after the handler (the rest the handler
// left unread) must not read as ended to a reader left behind (net/http's
// Transport, still sending it upstream): for a chunked body that reader would
// then end the upload cleanly, and the upstream would take the truncated
// body for the whole one. net/http's server answers such a read with
// ErrBodyReadAfterClose.
func TestReviewDroppedBodyDoesNotReadAsEnded(t *testing.T) {
	for _, srv := range reviewServers {
		t.Run(srv.name, func(t *testing.T) {
			bodies := make(chan io.Reader, 2)
			addr := srv.serve(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.URL.Path == "/upload" {
					buf := make([]byte, 5)
					_, err := io.ReadFull(r.Body, buf)
					if err != nil {
						panic(err)
					}
					bodies <- r.Body
				}
				_, _ = io.WriteString(w, "ok")
			}))
			c := reviewDial(t, addr)
			_, err := io.WriteString(c, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n"+
				"GET /next HTTP/1.1\r\nHost: x\r\n\r\n")
			require.NoError(t, err)
			br := bufio.NewReader(c)
			for range 2 { // the second answer: the first request is over
				res, err := http.ReadResponse(br, nil)
				require.NoError(t, err)
				_, err = io.ReadAll(res.Body)
				require.NoError(t, err)
			}
			late, err := io.ReadAll(<-bodies)
			if err == nil {
				assert.Equal(t, "world", string(late), "the body read as ended without its rest")
			}
		})
	}
}

// Close between a request's move to active and its registration as the
// request in flight (kill finds no context to cancel) must still leave the
// handler a canceled context: its connection is gone.
func TestReviewCloseBeforeTheHandlerCancels(t *testing.T) {
	got := make(chan error, 1)
	s := &Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { got <- r.Context().Err() })}
	a, b := net.Pipe()
	t.Cleanup(func() { _ = b.Close() })
	c := s.newConn(a)
	c.state.Store(stateActive)
	c.kill() // Close, with the request not registered yet
	req, err := http.ReadRequest(bufio.NewReader(strings.NewReader("GET / HTTP/1.1\r\nHost: x\r\n\r\n")))
	require.NoError(t, err)
	c.serveRequest(req)
	require.ErrorIs(t, <-got, context.Canceled)
}
