package proxy

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/textproto"
	"net/url"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/oceanhooks/oceanhooks/internal/sockpeek"
)

// transport is the proxy's own http.RoundTripper to Ocean: HTTP/1.1 over a
// pool of keep-alive connections, with no goroutine of its own per
// connection. A request's line, headers and a small body of known length go
// out in one write from a pooled buffer; the response is parsed by the
// standard library's http.ReadResponse on a pooled reader; the connection
// returns to the pool when both the request and the response body are done,
// and is closed when it cannot be reused.
//
// What net/http's Transport gives the proxy holds here too: the dial and
// response-header timeouts, cancellation by the request's context,
// Connection: close on either side, 1xx responses handed to the request's
// httptrace.ClientTrace (ReverseProxy forwards them), chunked bodies both
// ways, trailers, Expect: 100-continue, 101 Switching Protocols (the body is
// the connection), and one retry on a fresh connection when a reused one
// turns out to be dead, for idempotent requests only. A request body of
// unknown or large length is written by a goroutine of that request while
// the response is read, so an upstream may answer before the upload ended.
type transport struct {
	addr          string      // host:port dialled for every connection
	host          string      // the upstream URL's host, as requests name it
	tlsConfig     *tls.Config // nil for plain http
	dialer        net.Dialer
	dialNet       func(ctx context.Context, network, addr string) (net.Conn, error) // dialer.DialContext
	headerTimeout time.Duration                                                     // 0: none
	expectTimeout time.Duration
	idleTimeout   time.Duration
	maxIdle       int
	watchEvery    time.Duration

	mu      sync.Mutex
	idle    []*upConn   // least recently used first
	janitor *time.Timer // closes connections idle for longer than idleTimeout

	// The watch: while exchanges are in flight, one goroutine looks at them
	// every watchEvery and interrupts those whose request's context ended
	// or whose response head is overdue. This costs an exchange two map
	// updates instead of a context callback and deadline changes.
	watchMu  sync.Mutex
	inFlight map[*upConn]struct{}
	watching bool
}

// Limits of the transport.
const (
	// maxWatchEvery is the longest the watch waits between two looks: how
	// late at most a client that went away, or an overdue response head,
	// is noticed.
	maxWatchEvery = 50 * time.Millisecond
	// peekAfter is how long a connection must have sat idle before it is
	// looked at for a close by the upstream before reuse. An upstream's
	// idle timeout cannot have closed a connection idle for less; one that
	// died otherwise fails, and an idempotent request is then sent again.
	peekAfter = 5 * time.Millisecond
	// inlineBodyMax is the largest request body of known length that is read
	// whole and sent in the same write as the request's head. Larger bodies
	// stream as the client sends them.
	inlineBodyMax = 64 << 10
	// maxResponseHead bounds the bytes of a response's head (status line
	// and headers, 1xx responses included).
	maxResponseHead = 1 << 20
	// max1xx is how many 1xx responses may precede the final one.
	max1xx = 32
	// writeBufferSize is the size a pooled write buffer starts with; buffers
	// that grew beyond writeBufferMax are not kept.
	writeBufferSize = 4 << 10
	writeBufferMax  = inlineBodyMax + 16<<10
	// readBufferSize is the size of the pooled response readers.
	readBufferSize = 4 << 10
	// chunkRoom is what a chunk's size line and its CRLF need around it.
	chunkRoom = 18
)

var (
	errHeadTooLarge = errors.New("upstream response head too large")
	errTooMany1xx   = errors.New("upstream sent too many 1xx responses")
	errBodyClosed   = errors.New("upstream response body closed")
	errWrongHost    = errors.New("proxy transport: request not for its upstream")
	errShortBody    = errors.New("request body shorter than its Content-Length")
)

// aLongTimeAgo is a deadline in the past: it makes blocked reads and writes
// return at once.
var aLongTimeAgo = time.Unix(1, 0)

func newLeanTransport(up *url.URL, dialTimeout, headerTimeout, idleTimeout time.Duration, maxIdle int) *transport {
	t := &transport{
		host:          up.Host,
		addr:          up.Host,
		dialer:        net.Dialer{Timeout: dialTimeout, KeepAlive: 30 * time.Second},
		headerTimeout: headerTimeout,
		expectTimeout: time.Second,
		idleTimeout:   idleTimeout,
		maxIdle:       maxIdle,
		watchEvery:    maxWatchEvery,
		inFlight:      make(map[*upConn]struct{}),
	}
	t.dialNet = t.dialer.DialContext
	if headerTimeout > 0 && headerTimeout/4 < t.watchEvery {
		t.watchEvery = max(headerTimeout/4, time.Millisecond)
	}
	hostname, port := up.Hostname(), up.Port()
	if port == "" {
		port = "80"
		if up.Scheme == "https" {
			port = "443"
		}
	}
	t.addr = net.JoinHostPort(hostname, port)
	if up.Scheme == "https" {
		t.tlsConfig = &tls.Config{ServerName: hostname, NextProtos: []string{"http/1.1"}, MinVersion: tls.VersionTLS12}
	}
	return t
}

// upConn is one connection to the upstream.
type upConn struct {
	t    *transport
	conn net.Conn
	raw  syscall.RawConn // the socket under conn, or nil (TLS)
	br   *bufio.Reader   // while an exchange runs; pooled when idle
	// headLeft is how many more bytes reads may take while a response head
	// is read; negative when no head is being read. Only the reading
	// goroutine touches it.
	headLeft int64
	idleAt   time.Time

	// mu orders the watch's interruption with the exchange's own deadline
	// changes and with its end: an interruption wins, and never reaches the
	// next exchange.
	mu          sync.Mutex
	cur         *roundTrip // the exchange in flight
	interrupted bool       // the connection's deadlines are spoiled: it is not reused
}

// Read feeds the response reader, within the head limit while a head is
// read.
func (c *upConn) Read(p []byte) (int, error) {
	if c.headLeft < 0 {
		return c.conn.Read(p)
	}
	if c.headLeft == 0 {
		return 0, errHeadTooLarge
	}
	if int64(len(p)) > c.headLeft {
		p = p[:c.headLeft]
	}
	n, err := c.conn.Read(p)
	c.headLeft -= int64(n)
	return n, err
}

// interrupt makes every blocked or later read and write on the connection
// fail at once.
func (c *upConn) interrupt() {
	c.mu.Lock()
	c.interruptLocked()
	c.mu.Unlock()
}

func (c *upConn) interruptLocked() {
	c.interrupted = true
	_ = c.conn.SetDeadline(aLongTimeAgo)
}

// check is the watch's look at the exchange in flight: it is interrupted
// when its request's context ended or its response head is overdue.
func (c *upConn) check(now int64) {
	c.mu.Lock()
	defer c.mu.Unlock()
	x := c.cur
	if x == nil || c.interrupted {
		return
	}
	if x.ctx.Err() != nil {
		c.interruptLocked()
		return
	}
	if by := x.headBy.Load(); by > 0 && now >= by {
		x.timedOut.Store(true)
		c.interruptLocked()
	}
}

// setReadDeadline sets the read deadline unless the exchange was
// interrupted.
func (c *upConn) setReadDeadline(d time.Time) {
	c.mu.Lock()
	if !c.interrupted {
		_ = c.conn.SetReadDeadline(d)
	}
	c.mu.Unlock()
}

// Values of roundTrip.headBy besides a deadline.
const (
	headPending = 0  // the request is still being written
	headIn      = -1 // the response head arrived: no timeout applies
)

// armHeadTimeout starts the response-header timeout once the request was
// written, unless the head already arrived.
func (x *roundTrip) armHeadTimeout() {
	if d := x.t.headerTimeout; d > 0 {
		x.headBy.CompareAndSwap(headPending, time.Now().Add(d).UnixNano())
	}
}

// headDone lifts the header timeout: the body may stream for as long as it
// takes.
func (x *roundTrip) headDone() {
	x.c.headLeft = -1
	x.headBy.Store(headIn)
}

// watch puts c under the transport's watch while x runs on it.
func (t *transport) watch(c *upConn, x *roundTrip) {
	c.mu.Lock()
	c.cur, c.interrupted = x, false
	c.mu.Unlock()
	t.watchMu.Lock()
	t.inFlight[c] = struct{}{}
	if !t.watching {
		t.watching = true
		go t.watchLoop()
	}
	t.watchMu.Unlock()
}

// unwatch ends the watch of c's exchange and reports whether the watch (or
// anything else) interrupted it.
func (t *transport) unwatch(c *upConn) (interrupted bool) {
	c.mu.Lock()
	c.cur = nil
	interrupted = c.interrupted
	c.mu.Unlock()
	t.watchMu.Lock()
	delete(t.inFlight, c)
	t.watchMu.Unlock()
	return interrupted
}

// watchLoop runs while exchanges are in flight.
func (t *transport) watchLoop() {
	tick := time.NewTicker(t.watchEvery)
	defer tick.Stop()
	var conns []*upConn
	for range tick.C {
		t.watchMu.Lock()
		if len(t.inFlight) == 0 {
			t.watching = false
			t.watchMu.Unlock()
			return
		}
		conns = conns[:0]
		for c := range t.inFlight {
			conns = append(conns, c)
		}
		t.watchMu.Unlock()
		now := time.Now().UnixNano()
		for _, c := range conns {
			c.check(now)
		}
		clear(conns)
	}
}

// alive reports whether an idle connection can carry a request: the
// upstream has neither closed it nor sent anything unasked. It costs one
// non-blocking peek at the socket; where there is none to peek at, a dead
// connection shows when it is used (and an idempotent request is then sent
// again).
func (c *upConn) alive() bool {
	if c.raw == nil {
		return true
	}
	st := sockpeek.Unknown
	if err := c.raw.Read(func(fd uintptr) bool { st = sockpeek.Peek(fd); return true }); err != nil {
		return false
	}
	return st == sockpeek.Quiet || st == sockpeek.Unknown
}

func (c *upConn) close() {
	_ = c.conn.Close()
	if c.br != nil {
		c.br.Reset(nil)
		readerPool.Put(c.br)
		c.br = nil
	}
}

var (
	readerPool = sync.Pool{New: func() any { return bufio.NewReaderSize(nil, readBufferSize) }}
	writePool  = sync.Pool{New: func() any { b := make([]byte, 0, writeBufferSize); return &b }}
)

func getWriteBuffer() *[]byte { return writePool.Get().(*[]byte) }

func putWriteBuffer(b *[]byte) {
	if cap(*b) > writeBufferMax {
		return
	}
	*b = (*b)[:0]
	writePool.Put(b)
}

// RoundTrip sends req to the upstream and returns its response. It closes
// req.Body, also on errors.
func (t *transport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.URL == nil || req.URL.Host != t.host {
		closeBody(req)
		return nil, errWrongHost
	}
	ctx := req.Context()
	out := getWriteBuffer()
	defer putWriteBuffer(out)
	h, err := prepare(req, out)
	if err != nil {
		closeBody(req)
		return nil, err
	}
	if err := ctx.Err(); err != nil {
		closeBody(req)
		return nil, err
	}
	trace := httptrace.ContextClientTrace(ctx)
	for attempt := 0; ; attempt++ {
		c, reused, err := t.conn(ctx, attempt > 0)
		if err != nil {
			closeBody(req)
			return nil, err
		}
		res, err := t.exchange(ctx, c, req, h, trace)
		if err == nil {
			return res, nil
		}
		var nr *noResponse
		if errors.As(err, &nr) && reused && attempt == 0 && h.replayable(req) && ctx.Err() == nil {
			continue
		}
		closeBody(req)
		if nr != nil {
			err = nr.err
		}
		if cerr := ctx.Err(); cerr != nil {
			return nil, cerr
		}
		return nil, err
	}
}

// noResponse is an exchange that failed before any byte of a response
// arrived: on a reused connection, the upstream had most likely closed it
// while it sat idle.
type noResponse struct{ err error }

func (e *noResponse) Error() string { return e.err.Error() }
func (e *noResponse) Unwrap() error { return e.err }

func closeBody(req *http.Request) {
	if req.Body != nil {
		_ = req.Body.Close()
	}
}

// conn takes the most recently used idle connection that is still usable,
// or dials a new one.
func (t *transport) conn(ctx context.Context, fresh bool) (*upConn, bool, error) {
	if !fresh {
		now := time.Now()
		for {
			t.mu.Lock()
			n := len(t.idle)
			if n == 0 {
				t.mu.Unlock()
				break
			}
			c := t.idle[n-1]
			t.idle[n-1] = nil
			t.idle = t.idle[:n-1]
			t.mu.Unlock()
			idle := now.Sub(c.idleAt)
			if idle < t.idleTimeout && (idle < peekAfter || c.alive()) {
				return c, true, nil
			}
			c.close()
		}
	}
	c, err := t.dial(ctx)
	return c, false, err
}

func (t *transport) dial(ctx context.Context) (*upConn, error) {
	conn, err := t.dialNet(ctx, "tcp", t.addr)
	if err != nil {
		return nil, err
	}
	if t.tlsConfig != nil {
		tc := tls.Client(conn, t.tlsConfig)
		hctx, cancel := context.WithTimeout(ctx, t.dialer.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			_ = conn.Close()
			return nil, fmt.Errorf("tls handshake with %s: %w", t.addr, err)
		}
		conn = tc
	}
	c := &upConn{t: t, conn: conn}
	if sc, ok := conn.(syscall.Conn); ok {
		if raw, err := sc.SyscallConn(); err == nil {
			c.raw = raw
		}
	}
	return c, nil
}

// putIdle returns a finished connection to the pool, or closes it when the
// pool is full.
func (t *transport) putIdle(c *upConn) {
	c.br.Reset(nil)
	readerPool.Put(c.br)
	c.br = nil
	c.idleAt = time.Now()
	t.mu.Lock()
	if len(t.idle) >= t.maxIdle {
		t.mu.Unlock()
		c.close()
		return
	}
	t.idle = append(t.idle, c)
	if t.janitor == nil {
		t.janitor = time.AfterFunc(t.idleTimeout, t.sweep)
	}
	t.mu.Unlock()
}

// sweep closes the connections that sat idle for longer than idleTimeout
// and runs again while any are left.
func (t *transport) sweep() {
	now := time.Now()
	t.mu.Lock()
	n := 0
	for n < len(t.idle) && now.Sub(t.idle[n].idleAt) >= t.idleTimeout {
		n++
	}
	stale := slices.Clone(t.idle[:n])
	t.idle = slices.Delete(t.idle, 0, n)
	if len(t.idle) > 0 {
		t.janitor.Reset(t.idle[0].idleAt.Add(t.idleTimeout).Sub(now))
	} else {
		t.janitor = nil
	}
	t.mu.Unlock()
	for _, c := range stale {
		c.close()
	}
}

// CloseIdleConnections closes the connections in the pool; connections in
// use are left alone and return to the pool as usual.
func (t *transport) CloseIdleConnections() {
	t.mu.Lock()
	idle := t.idle
	t.idle = nil
	if t.janitor != nil {
		t.janitor.Stop()
		t.janitor = nil
	}
	t.mu.Unlock()
	for _, c := range idle {
		c.close()
	}
}

// idleConns is how many connections the pool holds.
func (t *transport) idleConns() int {
	t.mu.Lock()
	defer t.mu.Unlock()
	return len(t.idle)
}

// body modes of a request.
const (
	bodyNone    = iota
	bodyInline  // read whole, sent with the head
	bodyLength  // known length, streamed
	bodyChunked // unknown length, sent chunked
)

// head is a request prepared for the wire.
type head struct {
	buf     *[]byte // the head, followed by the body when inline
	headLen int
	mode    int
	expect  bool // Expect: 100-continue with a body: the body waits for the upstream's go-ahead
	length  int64
}

func (h *head) streams() bool { return h.mode == bodyLength || h.mode == bodyChunked }

// replayable reports whether the request can be sent again on another
// connection: an idempotent request whose body, if any, is still at hand.
func (h *head) replayable(req *http.Request) bool {
	if h.mode != bodyNone && (h.mode != bodyInline || h.expect) {
		return false
	}
	switch req.Method {
	case "", http.MethodGet, http.MethodHead, http.MethodOptions, http.MethodTrace:
		return true
	}
	_, a := req.Header["Idempotency-Key"]
	_, b := req.Header["X-Idempotency-Key"]
	return a || b
}

// prepare writes req's head into out the way net/http's Request.Write does
// (the Host header from req.Host, User-Agent only when set and not empty,
// Content-Length or chunked Transfer-Encoding from the body, invalid header
// names dropped, line breaks in values turned into spaces) and, for a small
// body of known length, reads the body behind it.
func prepare(req *http.Request, out *[]byte) (*head, error) {
	h := &head{buf: out}
	hasBody := req.Body != nil && req.Body != http.NoBody
	switch {
	case req.ContentLength > 0 && !hasBody:
		return nil, fmt.Errorf("request Content-Length %d with no body", req.ContentLength)
	case req.ContentLength > 0:
		h.length = req.ContentLength
		h.mode = bodyLength
		if h.length <= inlineBodyMax {
			h.mode = bodyInline
		}
	case req.ContentLength < 0 && hasBody:
		h.mode = bodyChunked
	}
	h.expect = h.mode != bodyNone && expectsContinue(req.Header)

	b := (*out)[:0]
	method := req.Method
	if method == "" {
		method = http.MethodGet
	}
	b = append(b, method...)
	b = append(b, ' ')
	start := len(b)
	if req.URL.Opaque != "" {
		b = append(b, req.URL.RequestURI()...)
	} else {
		if p := req.URL.EscapedPath(); p != "" {
			b = append(b, p...)
		} else {
			b = append(b, '/')
		}
		if req.URL.ForceQuery || req.URL.RawQuery != "" {
			b = append(b, '?')
			b = append(b, req.URL.RawQuery...)
		}
	}
	if hasCTL(b[start:]) {
		return nil, errors.New("request target with a control character")
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	host := req.Host
	if host == "" {
		host = req.URL.Host
	}
	if validHost(host) {
		b = append(b, host...)
	}
	b = append(b, "\r\n"...)
	if ua := req.Header["User-Agent"]; len(ua) > 0 {
		if v := textproto.TrimString(ua[0]); v != "" {
			b = appendField(b, "User-Agent", v)
		}
	}
	switch h.mode {
	case bodyInline, bodyLength:
		b = append(b, "Content-Length: "...)
		b = strconv.AppendInt(b, h.length, 10)
		b = append(b, "\r\n"...)
	case bodyChunked:
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
		if len(req.Trailer) > 0 {
			keys := make([]string, 0, len(req.Trailer))
			for k := range req.Trailer {
				k = http.CanonicalHeaderKey(k)
				switch k {
				case "Transfer-Encoding", "Trailer", "Content-Length":
					return nil, fmt.Errorf("invalid request trailer %q", k)
				}
				keys = append(keys, k)
			}
			slices.Sort(keys)
			b = appendField(b, "Trailer", strings.Join(keys, ","))
		}
	default:
		switch method {
		case http.MethodPost, http.MethodPut, http.MethodPatch:
			b = append(b, "Content-Length: 0\r\n"...)
		}
	}
	if req.Close && !headerHasToken(req.Header, "Connection", "close") {
		b = append(b, "Connection: close\r\n"...)
	}
	for k, vv := range req.Header {
		switch k {
		case "Host", "User-Agent", "Content-Length", "Transfer-Encoding", "Trailer":
			continue
		}
		if !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			b = appendField(b, k, textproto.TrimString(v))
		}
	}
	b = append(b, "\r\n"...)
	h.headLen = len(b)
	if h.mode == bodyInline && !h.expect {
		var err error
		if b, err = readInline(b, req.Body, h.length); err != nil {
			*out = b[:0]
			return nil, err
		}
		_ = req.Body.Close()
	}
	*out = b
	return h, nil
}

// readInline appends exactly n bytes of body to b.
func readInline(b []byte, body io.Reader, n int64) ([]byte, error) {
	b = slices.Grow(b, int(n))
	got, err := io.ReadFull(body, b[len(b):len(b)+int(n)])
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) {
		err = errShortBody
	}
	return b[:len(b)+got], err
}

// appendField appends "key: value\r\n", with any CR or LF in the value
// turned into a space.
func appendField(b []byte, key, v string) []byte {
	b = append(b, key...)
	b = append(b, ": "...)
	start := len(b)
	b = append(b, v...)
	for i := start; i < len(b); i++ {
		if b[i] == '\r' || b[i] == '\n' {
			b[i] = ' '
		}
	}
	return append(b, "\r\n"...)
}

func expectsContinue(h http.Header) bool {
	for _, v := range h["Expect"] {
		if strings.EqualFold(textproto.TrimString(v), "100-continue") {
			return true
		}
	}
	return false
}

func hasCTL(b []byte) bool {
	for _, c := range b {
		if c < ' ' || c == 0x7f {
			return true
		}
	}
	return false
}

// validHost accepts what a Host header may carry without opening a way to
// smuggle headers: no control characters, spaces or separators that end a
// line or a field.
func validHost(h string) bool {
	for i := 0; i < len(h); i++ {
		c := h[i]
		if c <= ' ' || c == 0x7f || c == '/' || c == '\\' || c == '"' || c == '<' || c == '>' {
			return false
		}
	}
	return true
}

// tokenChars are the bytes of an RFC 9110 token (a header field name).
var tokenChars = func() (t [256]bool) {
	for c := '0'; c <= '9'; c++ {
		t[c] = true
	}
	for c := 'a'; c <= 'z'; c++ {
		t[c] = true
		t[c-'a'+'A'] = true
	}
	for _, c := range "!#$%&'*+-.^_`|~" {
		t[c] = true
	}
	return t
}()

func validFieldName(k string) bool {
	if k == "" {
		return false
	}
	for i := 0; i < len(k); i++ {
		if !tokenChars[k[i]] {
			return false
		}
	}
	return true
}

// roundTrip is one exchange on one connection; it is also the response
// body handed to the caller.
type roundTrip struct {
	t    *transport
	c    *upConn
	req  *http.Request
	ctx  context.Context
	body io.ReadCloser // the parser's body

	headBy   atomic.Int64 // when the header timeout fires (unix ns), or headPending, headIn
	timedOut atomic.Bool  // the watch interrupted an overdue head

	// pending counts the parts still running: the response, and a request
	// body being written beside it. The last one to end releases the
	// connection.
	pending  atomic.Int32
	broken   atomic.Bool // the connection must not be reused
	keep     bool        // the response allows reuse (set before the response is handed out)
	writeErr atomic.Pointer[error]

	// Only the caller's goroutine reads the body.
	done    bool
	bodyErr error
}

// exchange writes the request on c and reads the response head.
func (t *transport) exchange(ctx context.Context, c *upConn, req *http.Request, h *head, trace *httptrace.ClientTrace) (*http.Response, error) {
	x := &roundTrip{t: t, c: c, req: req, ctx: ctx}
	x.pending.Store(1)
	c.headLeft = maxResponseHead
	if c.br == nil {
		c.br = readerPool.Get().(*bufio.Reader)
		c.br.Reset(c)
	}
	t.watch(c, x)

	buf := *h.buf
	if h.mode == bodyNone || (h.mode == bodyInline && !h.expect) {
		if _, err := c.conn.Write(buf); err != nil {
			return nil, x.fail(&noResponse{err})
		}
		x.armHeadTimeout()
	} else {
		if _, err := c.conn.Write(buf[:h.headLen]); err != nil {
			return nil, x.fail(&noResponse{err})
		}
		if !h.expect {
			x.sendBody(h)
		}
	}
	res, err := x.readHead(ctx, h, trace)
	if err != nil {
		if we := x.writeErr.Load(); we != nil {
			err = *we
		} else if x.timedOut.Load() {
			err = fmt.Errorf("no response head within %s: %w", t.headerTimeout, err)
		}
		return nil, x.fail(err)
	}
	x.keep = !res.Close && !req.Close
	if res.StatusCode == http.StatusSwitchingProtocols && len(req.Header["Upgrade"]) == 0 {
		return nil, x.fail(errors.New("upstream switched protocols unasked"))
	}
	if res.StatusCode == http.StatusSwitchingProtocols {
		// The connection now belongs to the response's body: it outlives
		// the request's context.
		if t.unwatch(c) {
			c.close()
			if err := ctx.Err(); err != nil {
				return nil, err
			}
			return nil, errors.New("upstream connection interrupted during the upgrade")
		}
		res.Body = &upgradeBody{c: c}
		return res, nil
	}
	if res.Body == nil || res.Body == http.NoBody {
		x.done = true
		x.partDone(true)
		return res, nil
	}
	x.body = res.Body
	res.Body = x
	return res, nil
}

// readHead reads responses until the final one, handing each 1xx to the
// trace, and sends an expecting request's body on the upstream's 100
// Continue, on its silence for expectTimeout, or not at all when a final
// answer comes first.
func (x *roundTrip) readHead(ctx context.Context, h *head, trace *httptrace.ClientTrace) (*http.Response, error) {
	c := x.c
	waiting := h.expect
	var expectBy time.Time
	if waiting {
		expectBy = time.Now().Add(x.t.expectTimeout)
		c.setReadDeadline(expectBy)
	}
	got := false // a byte of a response arrived
	for n := 0; ; {
		if _, err := c.br.Peek(1); err != nil {
			if waiting && errors.Is(err, os.ErrDeadlineExceeded) && ctx.Err() == nil {
				waiting = false
				c.setReadDeadline(time.Time{})
				x.sendBody(h)
				continue
			}
			if !got {
				return nil, &noResponse{err}
			}
			return nil, err
		}
		got = true
		res, err := http.ReadResponse(c.br, x.req)
		if err != nil {
			return nil, err
		}
		code := res.StatusCode
		if code < 100 || code > 999 {
			_ = res.Body.Close()
			return nil, fmt.Errorf("upstream sent a malformed status code %d", code)
		}
		if code > 199 || code == http.StatusSwitchingProtocols {
			if waiting {
				// A final answer before the go-ahead: the body is never
				// sent, so the connection cannot carry another request.
				c.setReadDeadline(time.Time{})
				x.broken.Store(true)
				closeBody(x.req)
			}
			x.headDone()
			return res, nil
		}
		if n++; n > max1xx {
			return nil, errTooMany1xx
		}
		// The client hears of it first: a 100 Continue tells it to send
		// the body that is read next.
		if trace != nil && trace.Got1xxResponse != nil {
			if err := trace.Got1xxResponse(code, textproto.MIMEHeader(res.Header)); err != nil {
				return nil, err
			}
		}
		if code == http.StatusContinue && waiting {
			waiting = false
			c.setReadDeadline(time.Time{})
			x.sendBody(h)
		}
	}
}

// sendBody sends the request body that did not go out with the head: an
// inline one at once, a streamed one from a goroutine of its own, so that
// the response can be read while the body is still being sent.
func (x *roundTrip) sendBody(h *head) {
	if h.mode == bodyInline {
		buf, err := readInline((*h.buf)[:h.headLen], x.req.Body, h.length)
		*h.buf = buf
		closeBody(x.req)
		if err == nil {
			_, err = x.c.conn.Write(buf[h.headLen:])
		}
		if err != nil {
			x.writeFailed(err)
			return
		}
		x.armHeadTimeout()
		return
	}
	x.pending.Add(1)
	go x.writeStream(h.mode == bodyChunked, h.length)
}

// writeStream copies the request body to the upstream, chunked or of the
// announced length, then starts the header timeout.
func (x *roundTrip) writeStream(chunked bool, length int64) {
	buf := getWriteBuffer()
	b := (*buf)[:cap(*buf)]
	var err error
	if chunked {
		err = x.copyChunked(b)
	} else {
		err = x.copyLength(b, length)
	}
	putWriteBuffer(buf)
	closeBody(x.req)
	if err != nil {
		x.writeFailed(err)
		x.partDone(false)
		return
	}
	x.armHeadTimeout()
	x.partDone(true)
}

func (x *roundTrip) copyLength(b []byte, left int64) error {
	for left > 0 {
		n, err := x.req.Body.Read(b[:min(int64(len(b)), left)])
		if n > 0 {
			if _, werr := x.c.conn.Write(b[:n]); werr != nil {
				return werr
			}
			left -= int64(n)
		}
		if err == io.EOF {
			if left > 0 {
				return errShortBody
			}
			return nil
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// copyChunked sends each piece the body yields as one chunk, in one write
// with its size line, then the last chunk and the trailers.
func (x *roundTrip) copyChunked(b []byte) error {
	for {
		n, err := x.req.Body.Read(b[chunkRoom-2 : len(b)-2])
		if n > 0 {
			size := strconv.AppendInt(make([]byte, 0, 16), int64(n), 16)
			start := chunkRoom - 2 - len(size) - 2
			copy(b[start:], size)
			b[chunkRoom-4], b[chunkRoom-3] = '\r', '\n'
			end := chunkRoom - 2 + n
			b[end], b[end+1] = '\r', '\n'
			if _, werr := x.c.conn.Write(b[start : end+2]); werr != nil {
				return werr
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return err
		}
	}
	end := append(b[:0], "0\r\n"...)
	for k, vv := range x.req.Trailer {
		if !validFieldName(k) {
			continue
		}
		for _, v := range vv {
			end = appendField(end, k, textproto.TrimString(v))
		}
	}
	end = append(end, "\r\n"...)
	_, err := x.c.conn.Write(end)
	return err
}

// writeFailed records why the request could not be sent whole and stops
// the exchange: the response can no longer be trusted to end.
func (x *roundTrip) writeFailed(err error) {
	x.writeErr.CompareAndSwap(nil, &err)
	x.broken.Store(true)
	x.c.interrupt()
}

// fail ends an exchange that produced no response.
func (x *roundTrip) fail(err error) error {
	x.broken.Store(true)
	x.c.interrupt() // a body still being written stops too
	x.done = true
	x.partDone(false)
	return err
}

func (x *roundTrip) partDone(ok bool) {
	if !ok {
		x.broken.Store(true)
	}
	if x.pending.Add(-1) == 0 {
		x.release()
	}
}

// release returns the connection to the pool when both the request and the
// response ended cleanly and nothing forbids reuse, and closes it
// otherwise.
func (x *roundTrip) release() {
	c := x.c
	reuse := !x.broken.Load() && x.keep
	if x.t.unwatch(c) {
		reuse = false // interrupted: the connection's deadlines are spoiled
	}
	if reuse && c.br.Buffered() > 0 {
		reuse = false // bytes beyond the response: the stream is out of step
	}
	if !reuse {
		c.close()
		return
	}
	x.t.putIdle(c)
}

// Read reads the response body; at its end the connection is released.
func (x *roundTrip) Read(p []byte) (int, error) {
	if x.done {
		if x.bodyErr != nil {
			return 0, x.bodyErr
		}
		return 0, io.EOF
	}
	n, err := x.body.Read(p)
	switch {
	case err == io.EOF:
		x.done = true
		x.partDone(true)
	case err != nil:
		if cerr := x.req.Context().Err(); cerr != nil {
			err = cerr
		}
		x.done, x.bodyErr = true, err
		x.partDone(false)
	}
	return n, err
}

// Close ends the response body; a body not read to its end closes the
// connection (net/http's body would instead read it to the end).
func (x *roundTrip) Close() error {
	if x.done {
		return nil
	}
	x.done, x.bodyErr = true, errBodyClosed
	x.c.interrupt()
	x.partDone(false)
	return nil
}

// upgradeBody is the body of a 101 response: the connection itself, first
// the bytes the upstream sent right behind its head.
type upgradeBody struct {
	c     *upConn
	state atomic.Int32 // upgradeOpen, upgradeRelayed or upgradeClosed
}

const (
	upgradeOpen    = iota
	upgradeRelayed // the relay took the connection over: Close is its business
	upgradeClosed
)

func (u *upgradeBody) Read(p []byte) (int, error)  { return u.c.br.Read(p) }
func (u *upgradeBody) Write(p []byte) (int, error) { return u.c.conn.Write(p) }

// Close closes the connection unless the relay took it over.
func (u *upgradeBody) Close() error {
	if u.state.CompareAndSwap(upgradeOpen, upgradeClosed) {
		u.c.close()
	}
	return nil
}

// takeOver hands the connection to the relay: its socket and the bytes the
// upstream already sent. It reports false when the body was closed first.
func (u *upgradeBody) takeOver() (net.Conn, []byte, bool) {
	if !u.state.CompareAndSwap(upgradeOpen, upgradeRelayed) {
		return nil, nil, false
	}
	var rest []byte
	if n := u.c.br.Buffered(); n > 0 {
		b, _ := u.c.br.Peek(n)
		rest = slices.Clone(b)
	}
	u.c.br.Reset(nil)
	readerPool.Put(u.c.br)
	u.c.br = nil
	return u.c.conn, rest, true
}
