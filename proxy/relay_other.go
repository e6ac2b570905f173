//go:build !unix

package proxy

import "net"

func readerOf(src net.Conn) func() (*[relayBufferSize]byte, int, error) {
	return blockingReader(src)
}
