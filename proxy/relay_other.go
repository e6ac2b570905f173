//go:build !unix

package proxy

import (
	"net"
	"sync/atomic"
)

func readerOf(src net.Conn, out *atomic.Int64) func() (*[relayBufferSize]byte, int, error) {
	return blockingReader(src, out)
}
