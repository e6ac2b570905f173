//go:build unix

package proxy

import "syscall"

// alive reports whether an idle connection can carry a request: the
// upstream has neither closed it nor sent anything unasked. It costs one
// non-blocking peek at the socket.
func (c *upConn) alive() bool {
	if c.raw == nil {
		return true
	}
	ok := false
	err := c.raw.Read(func(fd uintptr) bool {
		var b [1]byte
		for {
			n, _, err := syscall.Recvfrom(int(fd), b[:], syscall.MSG_PEEK|syscall.MSG_DONTWAIT)
			if err == syscall.EINTR {
				continue
			}
			ok = n <= 0 && err == syscall.EAGAIN // nothing to read: neither data nor EOF
			return true
		}
	})
	return err == nil && ok
}
