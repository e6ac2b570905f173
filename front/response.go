package front

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"net/textproto"
	"strconv"
	"sync"
	"time"
)

// response is the http.ResponseWriter of one request. It writes the head
// into a pooled buffer as soon as the head is settled: at WriteHeader when
// the length is declared and the type known, else once the body outgrew
// what is held back or the handler returned (then with a Content-Length if
// it all fit). The buffer goes out when full, on Flush, and when the
// handler returned: a small response is one write.
type response struct {
	c      *conn
	req    *http.Request
	header http.Header
	snap   http.Header // the header as of WriteHeader, if asked for before the head went out

	status      int
	wroteHeader bool  // the final status is set
	headOut     bool  // the head is in bw
	length      int64 // the body's length as declared or settled, -1 if unknown
	written     int64
	chunked     bool
	closeAfter  bool
	hijacked    bool
	fullDuplex  bool
	// atWriteHeader is set when the head went out within WriteHeader, from
	// the header map as it was parsed there.
	atWriteHeader bool
	trailers      []string // declared in the Trailer header
	rb            *reqBody // the request's body, nil without one

	held []byte // body held back before the head
	bw   *bufio.Writer
}

var (
	writerPool = sync.Pool{New: func() any { return bufio.NewWriterSize(nil, writerSize) }}
	heldPool   = sync.Pool{New: func() any { b := make([]byte, 0, beforeHead); return &b }}
)

func (w *response) writer() *bufio.Writer {
	if w.bw == nil {
		w.bw = writerPool.Get().(*bufio.Writer)
		w.bw.Reset(&w.c.cw)
	}
	return w.bw
}

func (w *response) Header() http.Header {
	if w.wroteHeader && !w.headOut && w.snap == nil {
		// Changes from now on must not reach the head, as with net/http.
		w.snap = w.header.Clone()
	}
	return w.header
}

// SwapHeader makes h the response's header map and returns the map it had,
// so that a handler holding a whole header built elsewhere (the proxy, the
// upstream's response header) hands it over instead of copying it field by
// field. After WriteHeader it changes nothing and returns nil.
func (w *response) SwapHeader(h http.Header) http.Header {
	if w.wroteHeader || w.hijacked || h == nil {
		return nil
	}
	old := w.header
	w.header = h
	return old
}

func (w *response) isHEAD() bool { return w.req.Method == http.MethodHead }

func (w *response) WriteHeader(code int) {
	if w.hijacked {
		w.c.s.logger().Warn("WriteHeader on a hijacked connection", "code", code)
		return
	}
	if w.wroteHeader {
		w.c.s.logger().Warn("superfluous WriteHeader", "code", code, "first", w.status)
		return
	}
	if code < 100 || code > 999 {
		panic(fmt.Sprintf("invalid WriteHeader code %v", code))
	}
	if code < 200 && code != http.StatusSwitchingProtocols {
		w.informational(code)
		return
	}
	w.wroteHeader = true
	w.status = code
	if cl := w.header["Content-Length"]; len(cl) > 0 {
		v, err := strconv.ParseInt(textproto.TrimString(cl[0]), 10, 64)
		if err == nil && v >= 0 {
			w.length = v
		} else {
			w.c.s.logger().Warn("invalid Content-Length from the handler", "value", cl[0])
			delete(w.header, "Content-Length")
		}
	}
	if w.length >= 0 || !bodyAllowedForStatus(code) || w.isHEAD() {
		if _, typed := w.header["Content-Type"]; typed || !bodyAllowedForStatus(code) || w.length == 0 || w.header.Get("Content-Encoding") != "" {
			w.atWriteHeader = true
			w.writeHead(false, nil)
		}
	}
}

// informational writes a 1xx response at once. Only a 100 takes the place
// of the 100 Continue the body's first read would send.
func (w *response) informational(code int) {
	bw := w.writer()
	w.c.cw.info = code != http.StatusContinue
	_, _ = bw.WriteString(statusLine(code, w.req.ProtoAtLeast(1, 1)))
	writeFields(bw, w.header, noBodyHeaders)
	_, _ = bw.WriteString("\r\n")
	_ = bw.Flush()
	w.c.cw.info = false
}

var noBodyHeaders = map[string]bool{"Content-Length": true, "Transfer-Encoding": true}

func (w *response) Write(p []byte) (int, error) {
	if w.hijacked {
		return 0, http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if len(p) == 0 {
		return 0, nil
	}
	if !bodyAllowedForStatus(w.status) {
		return 0, http.ErrBodyNotAllowed
	}
	if w.length >= 0 && w.written+int64(len(p)) > w.length {
		return 0, http.ErrContentLength
	}
	w.written += int64(len(p))
	if !w.headOut {
		if w.held == nil {
			w.held = (*heldPool.Get().(*[]byte))[:0]
		}
		if len(w.held)+len(p) <= beforeHead {
			w.held = append(w.held, p...)
			return len(p), nil
		}
		w.writeHead(false, p)
		if err := w.releaseHeld(); err != nil {
			return 0, err
		}
	}
	return w.body(p)
}

// body writes p as body: dropped for HEAD, as a chunk when chunked.
func (w *response) body(p []byte) (int, error) {
	if w.isHEAD() || len(p) == 0 {
		return len(p), nil
	}
	bw := w.writer()
	if w.chunked {
		var hex [16]byte
		_, _ = bw.Write(strconv.AppendInt(hex[:0], int64(len(p)), 16))
		_, _ = bw.WriteString("\r\n")
		n, err := bw.Write(p)
		if err != nil {
			return n, err
		}
		_, err = bw.WriteString("\r\n")
		return n, err
	}
	return bw.Write(p)
}

// releaseHeld writes out the body held back before the head.
func (w *response) releaseHeld() error {
	if w.held == nil {
		return nil
	}
	_, err := w.body(w.held)
	b := w.held[:0]
	heldPool.Put(&b)
	w.held = nil
	return err
}

func (w *response) Flush() { _ = w.FlushError() }

// FlushError sends what is buffered; http.ResponseController calls it.
func (w *response) FlushError() error {
	if w.hijacked {
		return http.ErrHijacked
	}
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headOut {
		w.writeHead(false, nil)
		if err := w.releaseHeld(); err != nil {
			return err
		}
	}
	return w.writer().Flush()
}

// SetReadDeadline and SetWriteDeadline are http.ResponseController's.
func (w *response) SetReadDeadline(t time.Time) error  { return w.c.rwc.SetReadDeadline(t) }
func (w *response) SetWriteDeadline(t time.Time) error { return w.c.rwc.SetWriteDeadline(t) }

// EnableFullDuplex lets the handler read the request body after it began
// the response (http.ResponseController).
func (w *response) EnableFullDuplex() error {
	w.fullDuplex = true
	return nil
}

// Hijack hands the connection to the handler, with the read buffer and what
// was buffered for writing flushed.
func (w *response) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if w.hijacked {
		return nil, nil, http.ErrHijacked
	}
	if w.wroteHeader && !w.headOut {
		// As net/http: a status set before the hijack goes out first.
		w.writeHead(false, nil)
		if err := w.releaseHeld(); err != nil {
			return nil, nil, err
		}
	}
	bw := w.writer()
	if err := bw.Flush(); err != nil {
		return nil, nil, err
	}
	w.hijacked = true
	c := w.c
	c.cur.Store(nil)
	c.state.Store(stateHijacked)
	c.s.untrackConn(c)
	// The buffers go with the connection; the writer writes straight to it.
	bw.Reset(c.rwc)
	w.bw = nil
	return c.rwc, bufio.NewReadWriter(c.br, bw), nil
}

// finish completes the response once the handler returned.
func (w *response) finish() {
	if !w.wroteHeader {
		w.WriteHeader(http.StatusOK)
	}
	if !w.headOut {
		w.writeHead(true, nil)
		_ = w.releaseHeld()
	}
	bw := w.writer()
	if w.chunked {
		_, _ = bw.WriteString("0\r\n")
		w.writeTrailers(bw)
		_, _ = bw.WriteString("\r\n")
	}
	_ = bw.Flush()
	bw.Reset(nil)
	writerPool.Put(bw)
	w.bw = nil
}

// reusable reports whether the connection may carry the next request.
func (w *response) reusable() bool {
	if w.closeAfter || w.c.werr != nil {
		return false
	}
	if !w.isHEAD() && w.length >= 0 && bodyAllowedForStatus(w.status) && w.written != w.length {
		return false // the client was promised more than it got
	}
	if w.rb != nil && !w.rb.settle() {
		return false
	}
	return true
}
