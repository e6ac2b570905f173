package sockpeek

import (
	"net"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"
)

func peekConn(t *testing.T, c net.Conn) State {
	t.Helper()
	raw, err := c.(syscall.Conn).SyscallConn()
	require.NoError(t, err)
	var st State
	require.NoError(t, raw.Control(func(fd uintptr) { st = Peek(fd) }))
	return st
}

// A peek tells an open quiet socket, one with data waiting (left in
// place), and one whose peer closed.
func TestPeek(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	defer ln.Close()
	client, err := net.Dial("tcp", ln.Addr().String())
	require.NoError(t, err)
	defer client.Close()
	server, err := ln.Accept()
	require.NoError(t, err)
	defer server.Close()

	require.Equal(t, Quiet, peekConn(t, server))
	_, err = client.Write([]byte("x"))
	require.NoError(t, err)
	require.Eventually(t, func() bool { return peekConn(t, server) == Data }, 5e9, 1e6)
	buf := make([]byte, 1)
	_, err = server.Read(buf)
	require.NoError(t, err)
	require.Equal(t, "x", string(buf), "the peek left the byte in place")

	require.NoError(t, client.Close())
	require.Eventually(t, func() bool { return peekConn(t, server) == Closed }, 5e9, 1e6)
}
