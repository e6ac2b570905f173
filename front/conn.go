package front

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/net/http/httpguts"

	"github.com/oceanhooks/oceanhooks/internal/sockpeek"
)

// States of a connection. The connection's goroutine moves it along
// idle → head → active → idle…; the watch and Shutdown close it only from
// the state they judged, by compare-and-swap, so a request that began in
// between is served.
const (
	stateIdle     int32 = iota // waiting for a request's first byte
	stateHead                  // reading a request's head
	stateActive                // the handler runs
	stateHijacked              // the handler took the connection
	stateClosed
)

// conn is one client connection.
type conn struct {
	s      *Server
	rwc    net.Conn
	raw    syscall.RawConn // for the watch's peek; nil if rwc has none
	remote string
	local  net.Addr

	state atomic.Int32
	since atomic.Int64 // the watch's clock when the state last changed
	// used is set once the first request's head began: Shutdown gives a
	// connection that has not sent a byte yet a moment to send its first
	// request, as net/http does.
	used atomic.Bool

	lr connReader
	br *bufio.Reader
	cw connWriter

	// cur is the request in flight, for the watch.
	cur atomic.Pointer[reqCtx]

	// contMu orders a 100 Continue with the response's first bytes on the
	// wire: once those are out, no 100 may follow.
	contMu      sync.Mutex
	contPending atomic.Bool

	lastPOST bool
	werr     error
	body     *reqBody // the latest request's body; ended with the connection
	// linger is set when the client may still be sending what was not
	// read: the connection is half-closed and drained before it closes.
	linger bool
}

func (s *Server) newConn(rwc net.Conn) *conn {
	c := &conn{s: s, rwc: rwc, local: rwc.LocalAddr()}
	if ra := rwc.RemoteAddr(); ra != nil {
		c.remote = ra.String()
	}
	if sc, ok := rwc.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	c.lr.c = c
	c.cw.c = c
	return c
}

// connReader reads the connection for the bufio.Reader: it bounds a
// request's head and marks the first byte of a request.
type connReader struct {
	c      *conn
	remain int64
	hit    bool // the head's bound was reached
}

func (r *connReader) Read(p []byte) (int, error) {
	if r.remain <= 0 {
		r.hit = true
		return 0, io.EOF
	}
	if int64(len(p)) > r.remain {
		p = p[:r.remain]
	}
	n, err := r.c.rwc.Read(p)
	r.remain -= int64(n)
	if n > 0 && r.c.state.Load() == stateIdle {
		if !r.c.moveTo(stateIdle, stateHead) {
			return 0, net.ErrClosed
		}
		r.c.used.Store(true)
	}
	return n, err
}

// connWriter writes responses to the connection and remembers the first
// error.
type connWriter struct {
	c *conn
	// info is set while an informational response other than 100 is
	// written: as with net/http, it leaves a 100 Continue owed.
	info bool
}

func (w *connWriter) Write(p []byte) (int, error) {
	c := w.c
	if c.contPending.Load() {
		c.contMu.Lock()
		if w.info {
			n, err := w.write(p)
			c.contMu.Unlock()
			return n, err
		}
		c.contPending.Store(false)
		c.contMu.Unlock()
	}
	return w.write(p)
}

func (w *connWriter) write(p []byte) (int, error) {
	c := w.c
	n, err := c.rwc.Write(p)
	if err != nil && c.werr == nil {
		c.werr = err
		if rc := c.cur.Load(); rc != nil {
			rc.cancel()
		}
	}
	return n, err
}

// moveTo changes the state from `from` to `to` and stamps the time.
func (c *conn) moveTo(from, to int32) bool {
	if !c.state.CompareAndSwap(from, to) {
		return false
	}
	c.since.Store(c.s.clock())
	return true
}

var readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readerSize) }}

// serve reads requests and answers them one at a time until the connection
// closes, is hijacked, or must close.
func (c *conn) serve() {
	defer func() {
		if err := recover(); err != nil && err != http.ErrAbortHandler {
			buf := make([]byte, 64<<10)
			buf = buf[:runtime.Stack(buf, false)]
			c.s.logger().Error("panic serving a request", "remote", c.remote, "panic", fmt.Sprint(err), "stack", string(buf))
		}
		if rc := c.cur.Load(); rc != nil {
			rc.cancel()
		}
		c.end()
	}()

	c.br = readerPool.Get().(*bufio.Reader)
	c.br.Reset(&c.lr)
	limit := c.s.maxHeaderBytes() + 4096 // as net/http: room for the request line
	for {
		if c.br.Buffered() > 0 {
			// A pipelined request is already here.
			if !c.moveTo(stateIdle, stateHead) {
				return
			}
		}
		c.lr.remain, c.lr.hit = limit, false
		if c.lastPOST {
			// Old clients send a CRLF after a POST body (RFC 9112 §2.2).
			peek, _ := c.br.Peek(4)
			_, _ = c.br.Discard(leadingCRLF(peek))
		}
		req, err := http.ReadRequest(c.br)
		if err != nil {
			c.refuse(err)
			return
		}
		c.lr.remain = math.MaxInt64
		if !c.moveTo(stateHead, stateActive) {
			return
		}
		c.lastPOST = req.Method == http.MethodPost
		if code, why := check(req); code != 0 {
			c.answer(code, why)
			return
		}
		if !c.serveRequest(req) || c.s.shutting.Load() || !c.moveTo(stateActive, stateIdle) {
			return
		}
	}
}

// end closes the connection unless it was hijacked, and forgets it.
func (c *conn) end() {
	if c.state.Load() != stateHijacked {
		if c.linger {
			c.lingerClose()
		}
		c.state.Store(stateClosed)
		_ = c.rwc.Close()
		if b := c.body; b != nil {
			// A goroutine the handler left reading the body (net/http's
			// Transport writes it from one) must not read the pooled
			// reader once another connection has it. The close above ends
			// a read under way; the lock waits for it.
			b.mu.Lock()
			b.shut = true
			b.mu.Unlock()
		}
		if c.br != nil {
			c.br.Reset(nil)
			readerPool.Put(c.br)
			c.br = nil
		}
	}
	c.s.untrackConn(c)
}

// lingerClose half-closes the connection and reads what the client still
// sends until it closes its side, for at most lingerFor. Closing a socket
// with unread data sends a reset, which can cost the client the response
// it has not read yet; net/http waits the same way.
func (c *conn) lingerClose() {
	cw, ok := c.rwc.(interface{ CloseWrite() error })
	if !ok || cw.CloseWrite() != nil {
		return
	}
	_ = c.rwc.SetReadDeadline(time.Now().Add(lingerFor))
	_, _ = io.Copy(io.Discard, c.rwc)
}

// kill closes the connection now, whatever it is doing.
func (c *conn) kill() {
	for {
		st := c.state.Load()
		if st == stateHijacked || st == stateClosed {
			return
		}
		if c.state.CompareAndSwap(st, stateClosed) {
			_ = c.rwc.Close()
			if rc := c.cur.Load(); rc != nil {
				rc.cancel()
			}
			return
		}
	}
}

// shutdownIfIdle is Shutdown's closeIfIdle: a connection that has not sent
// its first byte yet is left newConnGrace to do so.
func (c *conn) shutdownIfIdle(now int64) {
	if !c.used.Load() && now-c.since.Load() < int64(newConnGrace) {
		return
	}
	c.closeIfIdle()
}

// closeIfIdle closes the connection if it waits for a request.
func (c *conn) closeIfIdle() {
	if c.state.CompareAndSwap(stateIdle, stateClosed) {
		_ = c.rwc.Close()
	}
}

// check is the watch's look at the connection at time now.
func (c *conn) check(now int64) {
	since := c.since.Load()
	switch c.state.Load() {
	case stateIdle:
		if d := c.s.idleTimeout(); d > 0 && now-since >= int64(d) {
			c.closeIfIdle()
		}
	case stateHead:
		if d := c.s.ReadHeaderTimeout; d > 0 && now-since >= int64(d) && c.state.CompareAndSwap(stateHead, stateClosed) {
			_ = c.rwc.Close()
		}
	case stateActive:
		rc := c.cur.Load()
		if rc == nil || now-since < int64(peekAfter) || rc.Err() != nil || !rc.bodyRead() {
			return
		}
		if c.gone() {
			rc.cancel()
		}
	}
}

func leadingCRLF(b []byte) int {
	n := 0
	for _, c := range b {
		if c != '\r' && c != '\n' {
			break
		}
		n++
	}
	return n
}

// check applies the rules net/http's server adds to http.ReadRequest's. It
// returns 0 for a request to serve, else the status and reason to answer
// with before closing.
func check(req *http.Request) (int, string) {
	if req.ProtoMajor != 1 {
		return http.StatusHTTPVersionNotSupported, "unsupported protocol version"
	}
	if req.Host == "" {
		if req.ProtoAtLeast(1, 1) && req.Method != http.MethodConnect {
			return http.StatusBadRequest, "missing required Host header"
		}
	} else if !httpguts.ValidHostHeader(req.Host) {
		return http.StatusBadRequest, "malformed Host header"
	}
	for k, vv := range req.Header {
		if !httpguts.ValidHeaderFieldName(k) {
			return http.StatusBadRequest, "invalid header name"
		}
		for _, v := range vv {
			if !httpguts.ValidHeaderFieldValue(v) {
				return http.StatusBadRequest, "invalid header value"
			}
		}
	}
	return 0, ""
}

const errorHeaders = "\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n"

// refuse answers a request that could not be read, as net/http does, or
// says nothing when the connection ended or timed out.
func (c *conn) refuse(err error) {
	switch {
	case c.lr.hit:
		c.answer(http.StatusRequestHeaderFieldsTooLarge, "")
		c.linger = true // the rest of the head may still come
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, net.ErrClosed), isNetError(err):
		// The client left, or the watch closed the connection.
	case strings.Contains(err.Error(), "unsupported transfer encoding"), strings.Contains(err.Error(), "too many transfer encodings"):
		// http.ReadRequest's error has no type of its own. The encoding is
		// not echoed (net/http's caution against reflected content).
		_, _ = fmt.Fprintf(c.rwc, "HTTP/1.1 501 Not Implemented%sUnsupported transfer encoding", errorHeaders)
	default:
		c.answer(http.StatusBadRequest, "")
	}
}

func isNetError(err error) bool {
	var ne net.Error
	return errors.As(err, &ne)
}

// answer writes a plain-text error response and leaves the connection to be
// closed.
func (c *conn) answer(code int, why string) {
	text := fmt.Sprintf("%d %s", code, http.StatusText(code))
	if why != "" {
		text += ": " + why
	}
	_ = c.rwc.SetWriteDeadline(time.Now().Add(time.Second))
	_, _ = io.WriteString(c.rwc, "HTTP/1.1 "+text+errorHeaders+text)
}

// serveRequest runs the handler for req and finishes its response. It
// reports whether the connection may carry another request.
func (c *conn) serveRequest(req *http.Request) bool {
	// One allocation for the request's context, body and response: they
	// live as long as each other (a goroutine the handler left may hold
	// the body or the context after it returned, so nothing is reused).
	x := &perRequest{}
	rc, w := &x.ctx, &x.w
	rc.c = c
	*w = response{c: c, req: req, header: make(http.Header), length: -1}

	if req.Body != nil && req.Body != http.NoBody {
		x.body = reqBody{rc: req.Body, c: c, left: req.ContentLength}
		rc.body = &x.body
		c.body = rc.body
		req.Body = rc.body
		w.rb = rc.body
	}
	if ex := req.Header["Expect"]; len(ex) > 0 && ex[0] != "" {
		// As net/http: the first Expect field counts, 100-continue as one
		// of its tokens; anything else is an expectation not met.
		if !hasToken(ex[0], "100-continue") {
			w.header.Set("Connection", "close")
			w.WriteHeader(http.StatusExpectationFailed)
			w.finish()
			c.linger = rc.body != nil
			return false
		}
		if req.ProtoAtLeast(1, 1) && rc.body != nil {
			rc.body.cont = true
			c.contPending.Store(true)
		}
	}
	if req.Method == http.MethodOptions && req.RequestURI == "*" {
		// As net/http: OPTIONS * is the server's to answer.
		w.header.Set("Content-Length", "0")
		w.WriteHeader(http.StatusOK)
	} else {
		req = req.WithContext(rc)
		req.RemoteAddr = c.remote
		w.req = req
		c.cur.Store(rc)
		if c.state.Load() == stateClosed {
			// Close (kill) came after the move to active but found no
			// request to cancel yet.
			rc.cancel()
		}
		c.s.Handler.ServeHTTP(w, req)
		c.cur.Store(nil)
	}
	rc.cancel()
	if w.hijacked {
		return false
	}
	w.finish()
	if w.reusable() {
		return true
	}
	c.linger = c.werr == nil && rc.body != nil && rc.body.unread()
	return false
}

// hasToken reports whether v lists token (lower case) as a whole element
// between spaces, tabs or commas, ignoring ASCII case: net/http's reading
// of Expect.
func hasToken(v, token string) bool {
	for at := 0; at+len(token) <= len(v); at++ {
		if at > 0 && !isTokenBoundary(v[at-1]) {
			continue
		}
		if end := at + len(token); end < len(v) && !isTokenBoundary(v[end]) {
			continue
		}
		match := true
		for i := range len(token) {
			b := v[at+i]
			if 'A' <= b && b <= 'Z' {
				b += 'a' - 'A'
			}
			if b != token[i] {
				match = false
				break
			}
		}
		if match {
			return true
		}
	}
	return false
}

func isTokenBoundary(b byte) bool { return b == ' ' || b == ',' || b == '\t' }

// perRequest is what one request needs besides the request itself.
type perRequest struct {
	ctx  reqCtx
	body reqBody
	w    response
}

// gone peeks at the socket without blocking: true when the client closed
// its side or the connection broke. Data (a pipelined request) or nothing
// means it is still there.
func (c *conn) gone() bool {
	if c.raw == nil {
		return false
	}
	// Control, not Read: Read would take the socket's read lock and wait
	// behind a blocked read (the next request's, or a hijacker's), and the
	// watch with it. A peek that does not wait needs no lock.
	st := sockpeek.Unknown
	err := c.raw.Control(func(fd uintptr) { st = sockpeek.Peek(fd) })
	return err == nil && st == sockpeek.Closed
}

// reqCtx is a request's context: canceled when the client went away, a
// write to it failed, or the handler returned.
type reqCtx struct {
	c    *conn
	body *reqBody // nil without a body

	mu    sync.Mutex
	done  chan struct{} // made on the first Done
	err   error
	after []*afterFunc // run when canceled
}

type afterFunc struct{ f func() }

var closedChan = func() chan struct{} { c := make(chan struct{}); close(c); return c }()

func (rc *reqCtx) Deadline() (time.Time, bool) { return time.Time{}, false }

func (rc *reqCtx) Done() <-chan struct{} {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.done == nil {
		if rc.err != nil {
			return closedChan
		}
		rc.done = make(chan struct{})
	}
	return rc.done
}

func (rc *reqCtx) Err() error {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return rc.err
}

// Value answers net/http's two server keys: LocalAddrContextKey with the
// connection's local address and ServerContextKey with the *front.Server
// (not an *http.Server). httputil.ReverseProxy looks for the latter to
// know that a panic with http.ErrAbortHandler is recovered: that is how it
// breaks off a response whose upstream body failed.
func (rc *reqCtx) Value(key any) any {
	switch key {
	case http.LocalAddrContextKey:
		return rc.c.local
	case http.ServerContextKey:
		return rc.c.s
	}
	return nil
}

func (rc *reqCtx) cancel() {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.err != nil {
		return
	}
	rc.err = context.Canceled
	if rc.done != nil {
		close(rc.done)
	}
	for _, a := range rc.after {
		go a.f()
	}
	rc.after = nil
}

// AfterFunc arranges for f to run in its own goroutine once the request's
// context is canceled, as context.AfterFunc does. With it, a context a
// handler derives straight from this one (context.WithCancel) waits for it
// without a goroutine of its own. One derived through a value context does
// not see it: the context package looks only at the direct parent.
func (rc *reqCtx) AfterFunc(f func()) (stop func() bool) {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	if rc.err != nil {
		go f()
		return func() bool { return false }
	}
	a := &afterFunc{f: f}
	rc.after = append(rc.after, a)
	return func() bool {
		rc.mu.Lock()
		defer rc.mu.Unlock()
		for i, b := range rc.after {
			if b == a {
				rc.after = append(rc.after[:i], rc.after[i+1:]...)
				return true
			}
		}
		return false
	}
}

// bodyRead reports whether nothing more is to be read for the request: the
// only time the watch may peek at the socket, which the body's reader
// would otherwise share.
func (rc *reqCtx) bodyRead() bool { return rc.body == nil || rc.body.eof.Load() }

// reqBody is the request body the handler reads: it sends a 100 Continue on
// the first read when one is owed, notes the end, and refuses reads after
// the request ended.
type reqBody struct {
	c    *conn
	mu   sync.Mutex
	rc   io.ReadCloser
	cont bool  // a 100 Continue is owed on the first read
	left int64 // the declared length not read yet; -1 if none was declared
	eof  atomic.Bool
	bad  atomic.Bool // a read failed: what follows on the wire is not a request
	shut bool        // the request ended: no more reads
	// dropped is set when settle read the rest and threw it away: a reader
	// left behind did not get it, so its next read is no end but an error.
	dropped bool
}

func (b *reqBody) Read(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shut {
		if b.eof.Load() && !b.dropped {
			// Read to its end: a late reader (net/http's Transport reads
			// again after the declared length, to check that nothing
			// follows) finds the end, not an error that would fail its
			// write and cost it the upstream connection.
			return 0, io.EOF
		}
		return 0, http.ErrBodyReadAfterClose
	}
	if b.cont {
		b.cont = false
		b.c.sendContinue()
	}
	n, err := b.rc.Read(p)
	if b.left > 0 {
		b.left -= int64(n)
	}
	switch {
	case err == io.EOF:
		// net/http's body reader returns the EOF with a declared length's
		// last bytes, so a body read to its length is marked read.
		b.eof.Store(true)
	case err != nil:
		b.bad.Store(true)
	}
	return n, err
}

// Close is a no-op for the handler: the server decides, once the handler
// returned, whether the rest of the body is read or the connection closed.
func (b *reqBody) Close() error { return nil }

// sendContinue writes a 100 Continue unless the response began.
func (c *conn) sendContinue() {
	c.contMu.Lock()
	defer c.contMu.Unlock()
	if !c.contPending.Load() {
		return
	}
	// The flag clears after the write: until then the response's first
	// write waits on contMu, so the 100 cannot land inside it.
	_, _ = io.WriteString(c.rwc, "HTTP/1.1 100 Continue\r\n\r\n")
	c.contPending.Store(false)
}

// unread reports whether the client may still be sending the body: it was
// neither read to its end nor broken. It does not wait for a read under way
// (one the handler left running).
func (b *reqBody) unread() bool { return !b.eof.Load() && !b.bad.Load() }

// settle ends the body after the handler returned: what the handler left
// unread is read and dropped, up to maxDiscard, so the connection can carry
// the next request. It reports whether it can.
func (b *reqBody) settle() bool {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.shut {
		return !b.bad.Load() && b.eof.Load()
	}
	if b.eof.Load() {
		b.shut = true
		return true
	}
	if b.left >= maxDiscard {
		// Declared too big to drop: the connection will close after the
		// response, which does not wait for the body (the client may send
		// it only once it read the response). As with net/http, the
		// handler may still read it.
		return false
	}
	b.shut = true
	if b.bad.Load() || b.cont {
		// A failed body leaves the framing unknown; one never asked for
		// (no 100 Continue sent) may or may not come.
		return false
	}
	b.dropped = true
	_, err := io.CopyN(io.Discard, b.rc, maxDiscard+1)
	if err == io.EOF {
		b.eof.Store(true)
		return true
	}
	return false
}
