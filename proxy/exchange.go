package proxy

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync/atomic"
)

// exchange is the per-request ResponseWriter the proxy hands down: it notes
// the status for the metrics, tracks an upgraded connection for Shutdown and
// watches the request body to tell a client that went away from an upstream
// failure. It is also the forwarded request's context: the request's own,
// in which it finds itself (exchangeKey). Each request has its own: the
// transport may hold the request body (and so the exchange) after the
// handler returned, so an exchange is never reused.
type exchange struct {
	http.ResponseWriter
	context.Context // the client request's
	p               *Proxy
	req             *http.Request

	status   int
	hijacked bool
	refused  bool // an upgrade refused because Shutdown's grace is over
	// returned is set once the handler returned normally (no panic).
	returned bool
	body     watchedBody
}

// exchangeKey finds the exchange in its request's context.
type exchangeKey struct{}

// Value is the request context's value, and the exchange for exchangeKey.
func (ex *exchange) Value(key any) any {
	if _, ok := key.(exchangeKey); ok {
		return ex
	}
	return ex.Context.Value(key)
}

// watchBody puts ex's body watch between r's body and the transport.
func (ex *exchange) watchBody(r *http.Request) {
	if r.Body == nil || r.Body == http.NoBody || r.ContentLength == 0 {
		return
	}
	ex.body.rc = r.Body
	r.Body = &ex.body
}

// clientGone reports whether reading the client's request body failed.
func (ex *exchange) clientGone() bool { return ex.body.failed.Load() }

func (ex *exchange) WriteHeader(code int) {
	if ex.status == 0 && (code >= http.StatusOK || code == http.StatusSwitchingProtocols) {
		ex.status = code
	}
	ex.ResponseWriter.WriteHeader(code)
}

func (ex *exchange) Write(b []byte) (int, error) {
	if ex.status == 0 {
		ex.status = http.StatusOK
	}
	return ex.ResponseWriter.Write(b)
}

// Unwrap lets http.ResponseController reach the server's writer (Flush,
// deadlines).
func (ex *exchange) Unwrap() http.ResponseWriter { return ex.ResponseWriter }

// Hijack hands over the client connection for a protocol switch and
// registers it, so Shutdown can wait for it and close it.
func (ex *exchange) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	if ex.p.upgrades.isClosing() {
		// The grace period is over: answer with an error instead of the 101.
		ex.refused = true
		return nil, nil, errUpgradeRefused
	}
	conn, brw, err := http.NewResponseController(ex.ResponseWriter).Hijack()
	if err != nil {
		return nil, nil, err
	}
	ex.hijacked = true
	ex.status = http.StatusSwitchingProtocols
	ws := headerHasToken(ex.req.Header, "Upgrade", "websocket")
	uc := ex.p.upgrades.track(conn, ws).(*upgradedConn)
	uc.br = brw.Reader
	return uc, brw, nil
}

var errUpgradeRefused = errors.New("shutting down: no new upgraded connections")

// watchedBody passes a request body through and remembers whether reading
// it failed.
type watchedBody struct {
	rc     io.ReadCloser
	failed atomic.Bool // an error other than EOF was seen
}

func (b *watchedBody) Read(p []byte) (int, error) {
	n, err := b.rc.Read(p)
	if err != nil && err != io.EOF {
		b.failed.Store(true)
	}
	return n, err
}

func (b *watchedBody) Close() error { return b.rc.Close() }
