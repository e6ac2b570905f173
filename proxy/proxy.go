// Package proxy forwards every client request to Ocean unchanged and lets the
// sidecar see the successful API calls it cares about: the transparent reverse
// proxy, the tap that hands those calls to a Consumer before the client gets
// the answer, and the seam where /api/i/webhooks/* is answered locally.
package proxy

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"net/netip"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// Defaults of Options.
const (
	// DefaultTapBodyCap is the largest request or response body the tap
	// inspects (1 MiB); larger bodies stream through untapped.
	DefaultTapBodyCap int64 = 1 << 20
	// DefaultDialTimeout bounds connecting to the upstream.
	DefaultDialTimeout = 5 * time.Second
	// DefaultResponseHeaderTimeout bounds the wait for the upstream's
	// response headers once the request was sent.
	DefaultResponseHeaderTimeout = 60 * time.Second
	// DefaultMaxIdleConnsPerHost is how many idle keep-alive connections to
	// the upstream are kept (the standard library's 2 throttles a sidecar
	// that talks to a single host).
	DefaultMaxIdleConnsPerHost = 1024
	// DefaultObserveTimeout bounds one Consumer.Observe call.
	DefaultObserveTimeout = 10 * time.Second
	// DefaultIdleConnTimeout is how long an idle upstream connection is kept.
	DefaultIdleConnTimeout = 90 * time.Second
)

// Values of Options.Transport.
const (
	// TransportLean is the proxy's own HTTP/1.1 transport (transport.go): a
	// pool of keep-alive connections with no goroutines of its own, and
	// upgraded connections relayed without copy buffers held while idle.
	TransportLean = "lean"
	// TransportStdlib is net/http's Transport, for operators who need it
	// (the lean transport speaks HTTP/1.1 only and honours no proxy
	// environment variables, which the sidecar never used either).
	TransportStdlib = "stdlib"
)

// Options configures a Proxy. Only Upstream is required.
type Options struct {
	// Upstream is Ocean's base URL (scheme and host; no path, no query).
	Upstream *url.URL
	// TapBodyCap is the largest body, in bytes, the tap reads: a tapped
	// request or response body above it (as sent, and once decoded) is
	// streamed through untapped and counted. Default DefaultTapBodyCap.
	TapBodyCap int64
	// Taps are the endpoints to inspect, one Tap per endpoint.
	Taps []Tap
	// Consumer receives the observations of tapped calls. Required when
	// Taps is not empty.
	Consumer Consumer
	// ObserveTimeout bounds one Consumer.Observe call; its context is
	// detached from the client's, so a client that hangs up does not lose
	// the events of a call Ocean carried out. Default DefaultObserveTimeout.
	ObserveTimeout time.Duration
	// Local answers /api/i/webhooks and everything under /api/i/webhooks/
	// instead of Ocean. Nil forwards those paths too.
	Local http.Handler
	// DialTimeout bounds connecting to the upstream. Default
	// DefaultDialTimeout.
	DialTimeout time.Duration
	// ResponseHeaderTimeout bounds the wait for the upstream's response
	// headers after the request was written; past it the client gets an
	// Ocean-style 504. Bodies may stream for longer. Zero means
	// DefaultResponseHeaderTimeout, a negative value means no limit.
	ResponseHeaderTimeout time.Duration
	// IdleConnTimeout is how long an idle upstream connection is kept.
	// Default DefaultIdleConnTimeout.
	IdleConnTimeout time.Duration
	// MaxIdleConnsPerHost is how many idle upstream connections are kept.
	// Default DefaultMaxIdleConnsPerHost.
	MaxIdleConnsPerHost int
	// Transport is what carries requests to the upstream: TransportLean or
	// TransportStdlib. Default TransportLean.
	Transport string
	// TrustedProxies are the peers (e.g. nginx) whose X-Forwarded-For,
	// X-Forwarded-Proto, X-Forwarded-Host and X-Real-IP are believed: their
	// X-Forwarded-For is extended with the peer address and the others are
	// kept. From any other peer the four headers are replaced by what this
	// proxy sees. An RFC 7239 Forwarded header is removed from every
	// request, a trusted peer's too: Ocean reads the X-Forwarded-* headers,
	// and a second chain that this proxy does not extend could only
	// disagree with them. Default none.
	TrustedProxies []netip.Prefix
	// Logger receives warnings and errors; never tokens or bodies. Default:
	// discard.
	Logger *slog.Logger
	// Registerer gets the proxy's metrics. Default: a private registry.
	Registerer prometheus.Registerer
}

// Proxy is the sidecar's http.Handler: it forwards to Ocean, taps the
// endpoints it was given and answers the local paths itself.
type Proxy struct {
	plain  *httputil.ReverseProxy // untapped traffic: the stock path
	tapped *httputil.ReverseProxy // tapped calls: inspects the response

	lean     *transport      // the upstream transport, unless std is set
	std      *http.Transport // net/http's, when Options.Transport asks for it
	upstream *url.URL
	local    http.Handler
	trusted  []netip.Prefix

	bodyCap        int64
	consumer       Consumer
	observeTimeout time.Duration

	// routes maps a tapped endpoint to its tap and metrics; every other path
	// falls into one of the fixed routes, which keeps label values bounded.
	routes                                        map[string]*route
	apiRoute, streamRoute, otherRoute, localRoute *route

	log      *slog.Logger
	m        *metrics
	upgrades upgrades
}

// route is what the proxy knows about one class of path: its metric label,
// its pre-resolved metric children and, for a tapped endpoint, the tap.
type route struct {
	label    string
	tap      *Tap
	requests [numStatusClasses]prometheus.Counter
	duration prometheus.Observer
	tappedBy *tappedCounters // a tapped endpoint's counters by upstream status
}

// New checks opts and builds a Proxy.
func New(opts Options) (*Proxy, error) {
	if opts.Upstream == nil {
		return nil, errors.New("proxy: no upstream")
	}
	up := opts.Upstream
	if (up.Scheme != "http" && up.Scheme != "https") || up.Host == "" {
		return nil, fmt.Errorf("proxy: upstream %q: want http(s)://host[:port]", up.Redacted())
	}
	if (up.Path != "" && up.Path != "/") || up.RawQuery != "" || up.User != nil {
		return nil, fmt.Errorf("proxy: upstream %q: must have no path, query or credentials", up.Redacted())
	}
	if len(opts.Taps) > 0 && opts.Consumer == nil {
		return nil, errors.New("proxy: taps without a consumer")
	}
	switch opts.Transport {
	case "", TransportLean, TransportStdlib:
	default:
		return nil, fmt.Errorf("proxy: transport %q: want %q or %q", opts.Transport, TransportLean, TransportStdlib)
	}
	p := &Proxy{
		upstream:       &url.URL{Scheme: up.Scheme, Host: up.Host},
		local:          opts.Local,
		trusted:        opts.TrustedProxies,
		bodyCap:        opts.TapBodyCap,
		consumer:       opts.Consumer,
		observeTimeout: opts.ObserveTimeout,
		log:            opts.Logger,
		routes:         make(map[string]*route, len(opts.Taps)),
	}
	if p.bodyCap <= 0 {
		p.bodyCap = DefaultTapBodyCap
	}
	if p.observeTimeout <= 0 {
		p.observeTimeout = DefaultObserveTimeout
	}
	if p.log == nil {
		p.log = slog.New(slog.DiscardHandler)
	}
	reg := opts.Registerer
	if reg == nil {
		reg = prometheus.NewRegistry()
	}
	m, err := newMetrics(reg)
	if err != nil {
		return nil, err
	}
	p.m = m
	p.apiRoute = m.route(labelAPI, nil)
	p.streamRoute = m.route(labelStreaming, nil)
	p.otherRoute = m.route(labelOther, nil)
	p.localRoute = m.route(labelLocal, nil)
	for i := range opts.Taps {
		t := opts.Taps[i]
		if err := checkEndpoint(t.Endpoint); err != nil {
			return nil, err
		}
		if _, dup := p.routes[t.Endpoint]; dup {
			return nil, fmt.Errorf("proxy: endpoint %q tapped twice", t.Endpoint)
		}
		if p.local != nil && isLocalEndpoint(t.Endpoint) {
			return nil, fmt.Errorf("proxy: endpoint %q is answered locally, it cannot be tapped", t.Endpoint)
		}
		p.routes[t.Endpoint] = m.route(t.Endpoint, &t)
	}

	var rt http.RoundTripper
	if opts.Transport == TransportStdlib {
		p.std = newStdTransport(opts)
		rt = p.std
	} else {
		s := transportSettings(opts)
		p.lean = newLeanTransport(p.upstream, s.dial, s.header, s.idle, s.maxIdle)
		rt = p.lean
	}
	errorLog := slog.NewLogLogger(p.log.Handler(), slog.LevelWarn)
	bufs := newBufferPool()
	p.plain = &httputil.ReverseProxy{
		Rewrite:        p.rewrite,
		Transport:      rt,
		BufferPool:     bufs,
		ErrorHandler:   p.handleError,
		ErrorLog:       errorLog,
		ModifyResponse: p.moveHeader,
	}
	p.tapped = &httputil.ReverseProxy{
		Rewrite:      p.rewrite,
		Transport:    rt,
		BufferPool:   bufs,
		ErrorHandler: p.handleError,
		ErrorLog:     errorLog,
		ModifyResponse: func(res *http.Response) error {
			err := p.inspectResponse(res)
			_ = p.moveHeader(res)
			return err
		},
	}
	p.upgrades.init(p)
	return p, nil
}

func checkEndpoint(ep string) error {
	if ep == "" || strings.HasPrefix(ep, "/") || strings.HasPrefix(ep, "api/") ||
		strings.HasSuffix(ep, "/") || strings.ContainsAny(ep, "?# ") {
		return fmt.Errorf("proxy: tap endpoint %q: want a bare endpoint name like notes/create", ep)
	}
	return nil
}

// settings are the transport options with their defaults applied.
type settings struct {
	dial, header, idle time.Duration // header 0: no limit
	maxIdle            int
}

func transportSettings(opts Options) settings {
	s := settings{dial: opts.DialTimeout, header: opts.ResponseHeaderTimeout,
		idle: opts.IdleConnTimeout, maxIdle: opts.MaxIdleConnsPerHost}
	if s.dial <= 0 {
		s.dial = DefaultDialTimeout
	}
	switch {
	case s.header == 0:
		s.header = DefaultResponseHeaderTimeout
	case s.header < 0:
		s.header = 0
	}
	if s.idle <= 0 {
		s.idle = DefaultIdleConnTimeout
	}
	if s.maxIdle <= 0 {
		s.maxIdle = DefaultMaxIdleConnsPerHost
	}
	return s
}

// closeIdle closes the idle upstream connections of whichever transport
// runs.
func (p *Proxy) closeIdle() {
	if p.lean != nil {
		p.lean.CloseIdleConnections()
	}
	if p.std != nil {
		p.std.CloseIdleConnections()
	}
}

func newStdTransport(opts Options) *http.Transport {
	s := transportSettings(opts)
	dialer := &net.Dialer{Timeout: s.dial, KeepAlive: 30 * time.Second}
	return &http.Transport{
		// Never an environment proxy: the upstream is a neighbour.
		Proxy:                 nil,
		DialContext:           dialer.DialContext,
		MaxIdleConnsPerHost:   s.maxIdle,
		IdleConnTimeout:       s.idle,
		ResponseHeaderTimeout: s.header,
		ExpectContinueTimeout: time.Second,
		// The client's Accept-Encoding travels as is and the response body
		// is never decompressed on the way: bytes in, same bytes out.
		DisableCompression: true,
	}
}

// Fixed route labels; a tapped endpoint's label is its name.
const (
	labelAPI       = "api"
	labelStreaming = "streaming"
	labelOther     = "other"
	labelLocal     = "local"
)

const (
	apiPrefix     = "/api/"
	localEndpoint = "i/webhooks"
)

func isLocalEndpoint(ep string) bool {
	return ep == localEndpoint ||
		(len(ep) > len(localEndpoint) && ep[len(localEndpoint)] == '/' && strings.HasPrefix(ep, localEndpoint))
}

// classify finds the route of a path: map lookups and prefix checks only.
func (p *Proxy) classify(path string) *route {
	ep, ok := strings.CutPrefix(path, apiPrefix)
	if !ok {
		if path == "/streaming" {
			return p.streamRoute
		}
		return p.otherRoute
	}
	if rt, ok := p.routes[ep]; ok {
		return rt
	}
	if p.local != nil && isLocalEndpoint(ep) {
		return p.localRoute
	}
	return p.apiRoute
}

// tapFor is the tap decision: the tap to run for r, or nil when r is proxied
// untouched.
func (p *Proxy) tapFor(rt *route, r *http.Request) *Tap {
	if rt.tap == nil || r.Method != http.MethodPost {
		return nil
	}
	if !p.wanted(rt) {
		return nil
	}
	return rt.tap
}

// wanted asks the tap's gate, treating a panic as "not wanted".
func (p *Proxy) wanted(rt *route) (ok bool) {
	if rt.tap.Wanted == nil {
		return true
	}
	defer func() {
		if v := recover(); v != nil {
			ok = false
			p.m.tapFailure(rt.label, stageWanted)
			p.log.Error("tap gate panicked", "endpoint", rt.label, "panic", v)
		}
	}()
	return rt.tap.Wanted()
}

// ServeHTTP answers r locally, through the tap, or by plain forwarding.
func (p *Proxy) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	start := time.Now()
	rt := p.classify(r.URL.Path)
	ex := &exchange{ResponseWriter: w, p: p, req: r}
	defer p.finish(ex, rt, start)

	switch {
	case rt == p.localRoute:
		p.local.ServeHTTP(ex, r)
	default:
		// The request is forwarded as a copy whose context finds the
		// exchange (moveHeader). The server keeps its own: it looks at its
		// request's body after the handler, to finish an Expect:
		// 100-continue exchange or drain what was not read, and must find
		// it as it made it, not wrapped by the body watch or the tap.
		ex.Context = r.Context()
		r = r.WithContext(ex)
		if tap := p.tapFor(rt, r); tap != nil {
			p.serveTapped(ex, r, rt, tap)
		} else {
			ex.watchBody(r)
			p.plain.ServeHTTP(ex, r)
		}
	}
	ex.returned = true
}

// moveHeader hands the upstream's response header to the client's response
// whole, where ReverseProxy would copy it value by value (and parse its
// Content-Type to learn whether to flush at once, which matters only for an
// event stream, whose Content-Type is left to it). It runs as the last step
// of ModifyResponse; a 101's header stays, ReverseProxy checks it.
func (p *Proxy) moveHeader(res *http.Response) error {
	if res.StatusCode == http.StatusSwitchingProtocols {
		return nil
	}
	ex, _ := res.Request.Context().Value(exchangeKey{}).(*exchange)
	if ex == nil {
		return nil
	}
	if sw, ok := ex.ResponseWriter.(headerSwapper); ok && swapHeader(sw, res) {
		return nil
	}
	dst := ex.ResponseWriter.Header()
	for k, vv := range res.Header {
		if k == "Content-Type" && len(vv) == 1 && isEventStream(vv[0]) {
			continue
		}
		dst[k] = vv
		delete(res.Header, k)
	}
	return nil
}

// headerSwapper is a ResponseWriter that takes a whole header map in place
// of its own (front's does).
type headerSwapper interface {
	SwapHeader(http.Header) http.Header
}

// swapHeader is moveHeader by swapping maps: the upstream's header becomes
// the client response's, fields the response had already and the upstream
// did not send stay, and res keeps the (emptied) map the response had, with
// an event stream's Content-Type left in it as moveHeader leaves it.
func swapHeader(sw headerSwapper, res *http.Response) bool {
	up := res.Header
	ct, stream := up["Content-Type"]
	stream = stream && len(ct) == 1 && isEventStream(ct[0])
	if stream {
		delete(up, "Content-Type")
	}
	old := sw.SwapHeader(up)
	if old == nil {
		if stream {
			up["Content-Type"] = ct
		}
		return false
	}
	for k, vv := range old {
		if _, sent := up[k]; !sent {
			up[k] = vv
		}
	}
	clear(old)
	if stream {
		old["Content-Type"] = ct
	}
	res.Header = old
	return true
}

func isEventStream(ct string) bool {
	const es = "text/event-stream"
	ct = strings.TrimSpace(ct)
	return len(ct) >= len(es) && strings.EqualFold(ct[:len(es)], es)
}

// finish records the request's metrics. It runs deferred so that a handler
// aborting with a panic is still counted.
func (p *Proxy) finish(ex *exchange, rt *route, start time.Time) {
	status := ex.status
	if status == 0 && ex.returned && rt == p.localRoute {
		status = http.StatusOK // net/http answers 200 for a handler that wrote nothing
	}
	rt.requests[statusClass(status)].Inc()
	if status != http.StatusSwitchingProtocols {
		rt.duration.Observe(time.Since(start).Seconds())
	}
}

// rewrite points the outgoing request at the upstream and sets the
// forwarding headers (see Options.TrustedProxies). The client's Host header
// is kept: Ocean's HTTP signature checks on /inbox sign it.
func (p *Proxy) rewrite(pr *httputil.ProxyRequest) {
	out, in := pr.Out, pr.In
	out.URL.Scheme = p.upstream.Scheme
	out.URL.Host = p.upstream.Host
	out.Host = in.Host

	host, _, _ := net.SplitHostPort(in.RemoteAddr)
	peer := peerAddr(host)
	var self []string // the peer's address, shared by two headers
	if peer.IsValid() {
		self = []string{host}
	}
	h := out.Header
	// ReverseProxy drops it before Rewrite too; this rule must not depend
	// on that.
	delete(h, "Forwarded")
	if p.isTrusted(peer) {
		if prior := in.Header["X-Forwarded-For"]; len(prior) > 0 {
			h["X-Forwarded-For"] = []string{strings.Join(prior, ", ") + ", " + host}
		} else {
			h["X-Forwarded-For"] = self
		}
		keepOr(h, in.Header, "X-Forwarded-Proto", protoOf(in))
		keepOr(h, in.Header, "X-Forwarded-Host", []string{in.Host})
		keepOr(h, in.Header, "X-Real-Ip", self)
		return
	}
	setOrDelete(h, "X-Forwarded-For", self)
	h["X-Forwarded-Proto"] = protoOf(in)
	h["X-Forwarded-Host"] = []string{in.Host}
	setOrDelete(h, "X-Real-Ip", self)
}

// Shared header values; their capacity equals their length, so an append
// by anyone copies instead of writing into them.
var (
	protoHTTP  = []string{"http"}
	protoHTTPS = []string{"https"}
)

func protoOf(r *http.Request) []string {
	if r.TLS != nil {
		return protoHTTPS
	}
	return protoHTTP
}

func keepOr(out, in http.Header, key string, def []string) {
	if v := in[key]; len(v) > 0 {
		out[key] = v
		return
	}
	setOrDelete(out, key, def)
}

func setOrDelete(h http.Header, key string, v []string) {
	if len(v) == 0 {
		delete(h, key)
		return
	}
	h[key] = v
}

// peerAddr parses the host part of a RemoteAddr; IPv4-mapped IPv6
// addresses are unmapped so IPv4 prefixes match them.
func peerAddr(host string) netip.Addr {
	a, err := netip.ParseAddr(host)
	if err != nil {
		return netip.Addr{}
	}
	return a.Unmap()
}

func (p *Proxy) isTrusted(peer netip.Addr) bool {
	if !peer.IsValid() {
		return false
	}
	for _, pfx := range p.trusted {
		if pfx.Contains(peer) {
			return true
		}
	}
	return false
}

// handleError answers a failed upstream exchange the way Ocean answers
// errors. A client that went away is not an upstream failure: nothing is
// written, counted as an upstream error, or logged above debug.
func (p *Proxy) handleError(w http.ResponseWriter, r *http.Request, err error) {
	ex, _ := w.(*exchange)
	if r.Context().Err() != nil || (ex != nil && ex.clientGone()) {
		p.log.Debug("client went away", "method", r.Method, "path", r.URL.Path, "err", err)
		return
	}
	if ex != nil && ex.refused {
		p.log.Debug("upgrade refused while shutting down", "path", r.URL.Path)
		w.Header().Set("Connection", "close")
		ocean.Write(w, ocean.ErrUpstreamUnavailable)
		return
	}
	if ex != nil && ex.hijacked {
		p.log.Warn("upgraded connection failed", "path", r.URL.Path, "err", err)
		return
	}
	e, kind := ocean.ErrUpstreamUnavailable, upstreamUnavailable
	var ne net.Error
	if errors.Is(err, context.DeadlineExceeded) || (errors.As(err, &ne) && ne.Timeout()) {
		e, kind = ocean.ErrUpstreamTimeout, upstreamTimeout
	}
	p.m.upstreamErrors[kind].Inc()
	p.log.Warn("upstream failed", "kind", upstreamKinds[kind], "method", r.Method, "path", r.URL.Path, "err", err)
	ocean.Write(w, e)
}

// bufferPool recycles ReverseProxy's copy buffers (one per response
// otherwise). ReverseProxy takes a buffer and gives it back within one
// response copy, so no buffer is ever in two responses' hands. It stores
// array pointers so neither Get nor Put allocates.
type bufferPool struct{ pool sync.Pool }

const copyBufferSize = 32 << 10

func newBufferPool() *bufferPool {
	bp := &bufferPool{}
	bp.pool.New = func() any { return new([copyBufferSize]byte) }
	return bp
}

func (bp *bufferPool) Get() []byte { return bp.pool.Get().(*[copyBufferSize]byte)[:] }

func (bp *bufferPool) Put(b []byte) {
	if cap(b) != copyBufferSize {
		return
	}
	bp.pool.Put((*[copyBufferSize]byte)(b[:copyBufferSize]))
}
