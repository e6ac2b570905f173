//go:build unix

package proxy

import (
	"io"
	"net"
	"os"
	"sync/atomic"
	"syscall"
)

// readerOf reads src without holding a buffer while it waits: the runtime's
// poller wakes the reader when the socket is readable, and only then is a
// pooled buffer taken for the read.
func readerOf(src net.Conn, out *atomic.Int64) func() (*[relayBufferSize]byte, int, error) {
	sc, ok := src.(syscall.Conn)
	if !ok {
		return blockingReader(src, out)
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return blockingReader(src, out)
	}
	return func() (*[relayBufferSize]byte, int, error) {
		var (
			buf  *[relayBufferSize]byte
			n    int
			rerr error
		)
		err := raw.Read(func(fd uintptr) bool {
			b := getRelayBuffer(out)
			for {
				n, rerr = syscall.Read(int(fd), b[:])
				if rerr != syscall.EINTR {
					break
				}
			}
			if rerr == syscall.EAGAIN {
				putRelayBuffer(out, b)
				return false // wait until readable
			}
			buf = b
			return true
		})
		switch {
		case err != nil:
			return buf, 0, err
		case rerr != nil:
			return buf, 0, os.NewSyscallError("read", rerr)
		case n == 0:
			return buf, 0, io.EOF
		}
		return buf, n, nil
	}
}
