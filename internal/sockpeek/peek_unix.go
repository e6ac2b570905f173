//go:build unix

package sockpeek

import "syscall"

// Peek looks at fd once without blocking or consuming anything. Call it
// from a syscall.RawConn's Control or Read.
func Peek(fd uintptr) State {
	var b [1]byte
	for {
		n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return Quiet
		case err != nil:
			return Closed
		case n == 0:
			return Closed
		default:
			return Data
		}
	}
}
