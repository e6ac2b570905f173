package proxy

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net"
	"sync"
	"sync/atomic"
)

// An upgraded (WebSocket) connection through the proxy's own transport is
// relayed by two small goroutines, one per direction, once ReverseProxy
// wrote the 101 to the client: ReverseProxy's copiers hand both ends over
// (upgradedConn.WriteTo and ReadFrom) and return, so the handler, its
// request and the server's buffers for the connection are released while
// the connection lives on. Each direction waits for its socket to become
// readable without holding a buffer, reads into a pooled buffer and gives it
// back once the bytes are written: an idle connection holds no copy buffer,
// and the memory a connection holds does not grow with its traffic.

// relayBufferSize is the size of the pooled buffers the relays read into.
const relayBufferSize = 16 << 10

var relayPool = sync.Pool{New: func() any { return new([relayBufferSize]byte) }}

// getRelayBuffer takes a relay buffer; out counts the proxy's buffers taken
// and not yet given back.
func getRelayBuffer(out *atomic.Int64) *[relayBufferSize]byte {
	out.Add(1)
	return relayPool.Get().(*[relayBufferSize]byte)
}

func putRelayBuffer(out *atomic.Int64, b *[relayBufferSize]byte) {
	out.Add(-1)
	relayPool.Put(b)
}

// relay carries one upgraded connection's bytes both ways.
type relay struct {
	client  *upgradedConn
	up      net.Conn
	pending atomic.Int32 // directions still running
	once    sync.Once
}

// startRelay takes both ends of the connection over from ReverseProxy,
// once; the second of ReverseProxy's copiers finds it started.
func (c *upgradedConn) startRelay(body *upgradeBody) {
	if !c.relayed.CompareAndSwap(false, true) {
		return
	}
	up, upRest, ok := body.takeOver()
	if !ok {
		// The request ended before the copy began: nothing to relay.
		_ = c.shut()
		return
	}
	var clientRest []byte
	if br := c.takeReader(); br != nil {
		if n := br.Buffered(); n > 0 {
			b, _ := br.Peek(n)
			clientRest = append([]byte(nil), b...)
		}
	}
	r := &relay{client: c, up: up}
	r.pending.Store(2)
	go r.run(c.Conn, clientRest, up, closeWriter(up))
	go r.run(up, upRest, c, c.closeWrite)
}

// run copies one direction; at src's end it half-closes dst, as
// ReverseProxy does. The connection is closed on either side's failure (a
// side that cannot be half-closed included), or once both directions ended.
func (r *relay) run(src net.Conn, rest []byte, dst io.Writer, halfClose func() error) {
	err := pump(src, rest, dst, &r.client.u.buffers)
	if err == nil {
		err = halfClose()
	}
	if err != nil || r.pending.Add(-1) == 0 {
		r.shut()
	}
}

func (r *relay) shut() {
	r.once.Do(func() {
		_ = r.client.shut()
		_ = r.up.Close()
	})
}

// pump writes rest, then whatever src yields, to dst until src ends
// (nil) or either side fails.
func pump(src net.Conn, rest []byte, dst io.Writer, out *atomic.Int64) error {
	if len(rest) > 0 {
		if _, err := dst.Write(rest); err != nil {
			return err
		}
	}
	read := readerOf(src, out)
	for {
		buf, n, err := read()
		if n > 0 {
			_, werr := dst.Write(buf[:n])
			putRelayBuffer(out, buf)
			if werr != nil {
				return werr
			}
		} else if buf != nil {
			putRelayBuffer(out, buf)
		}
		if err == io.EOF {
			return nil
		}
		if err != nil {
			return err
		}
	}
}

// blockingReader reads a connection that offers no readiness wait (TLS):
// the buffer is held while the read blocks.
func blockingReader(src net.Conn, out *atomic.Int64) func() (*[relayBufferSize]byte, int, error) {
	return func() (*[relayBufferSize]byte, int, error) {
		buf := getRelayBuffer(out)
		n, err := src.Read(buf[:])
		return buf, n, err
	}
}

func closeWriter(c net.Conn) func() error {
	return func() error {
		if cw, ok := c.(interface{ CloseWrite() error }); ok {
			return cw.CloseWrite()
		}
		return errors.ErrUnsupported
	}
}

// takeReader gives up the client's buffered reader from the hijack (the
// bytes the client sent right behind its request).
func (c *upgradedConn) takeReader() *bufio.Reader {
	c.mu.Lock()
	defer c.mu.Unlock()
	br := c.br
	c.br = nil
	return br
}

func bytesReader(b []byte) io.Reader { return bytes.NewReader(b) }
