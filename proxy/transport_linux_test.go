package proxy

import (
	"net"
	"net/http"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// listenBacklogZero listens on a loopback port with an accept queue of one
// connection, and never accepts.
func listenBacklogZero() (net.Listener, error) {
	fd, err := syscall.Socket(syscall.AF_INET, syscall.SOCK_STREAM|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, err
	}
	if err := syscall.Bind(fd, &syscall.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	if err := syscall.Listen(fd, 0); err != nil {
		_ = syscall.Close(fd)
		return nil, err
	}
	f := os.NewFile(uintptr(fd), "backlog-zero")
	defer f.Close()
	return net.FileListener(f)
}

// listenFull returns the address of a listener whose accept queue is
// full: connecting to it hangs until the dial times out.
func listenFull(t *testing.T) string {
	t.Helper()
	ln, err := listenBacklogZero()
	require.NoError(t, err)
	t.Cleanup(func() { _ = ln.Close() })
	addr := ln.Addr().String()
	// Fill the queue: connections beyond it are never completed.
	for range 2 {
		c, err := net.DialTimeout("tcp", addr, 100*time.Millisecond)
		if err != nil {
			break
		}
		t.Cleanup(func() { _ = c.Close() })
	}
	return "http://" + addr
}

func TestDialTimeout(t *testing.T) {
	for _, tr := range transports {
		t.Run(tr, func(t *testing.T) {
			upstream := listenFull(t)
			sc := newSidecar(t, upstream, onTransport(tr, func(o *Options) { o.DialTimeout = 100 * time.Millisecond }))
			resp, err := sc.client.Get(sc.url("/api/meta"))
			require.NoError(t, err)
			defer resp.Body.Close()
			assert.Equal(t, http.StatusGatewayTimeout, resp.StatusCode)
			assert.JSONEq(t, oceanJSON(t, ocean.ErrUpstreamTimeout), string(readAll(t, resp.Body)))
			assert.Equal(t, 1.0, testutilValue(sc.p.m.upstreamErrors[upstreamTimeout]))
		})
	}
}
