package server

import (
	"context"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/json"
	"fmt"
	"mime"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oceanhooks/oceanhooks/stream"

	"github.com/oceanhooks/oceanhooks/config"
)

// adminHandler serves the admin listener:
//
//	GET /healthz     200 while the process is up
//	GET /readyz      200 when the store is open, the upstream accepts connections
//	                 and no shutdown has begun; else 503 with the reason; with
//	                 the event stream configured, its state too (not a reason
//	                 to be unready: the API tap covers local calls meanwhile)
//	GET /metrics     Prometheus metrics of every part, Go runtime and process
//	/hooks           the operators' hook listing (hooks.Store.OperatorHandler)
//	/deliveries      the operators' delivery listing and redelivery (queue.Queue.OperatorHandler)
//
// behind the admin guard (see adminGuard). The operator routes answer 503
// once the store is closing.
func (s *Server) adminHandler(guard *adminGuard) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		body := map[string]any{"status": "ready"}
		status := http.StatusOK
		if reason := s.notReady(r.Context()); reason != "" {
			body = map[string]any{"status": "not ready", "reason": reason}
			status = http.StatusServiceUnavailable
		}
		if s.stream != nil {
			// Ready either way: the API tap covers local calls while the
			// stream is down.
			body["stream"] = streamStatus(s.stream.Health())
		}
		writeStatus(w, status, body)
	})
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(s.reg,
		promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg, ErrorLog: slogPromLogger{s}})))
	mux.Handle("/hooks", s.whileStoreOpen(s.hooks.OperatorHandler()))
	mux.Handle("/deliveries", s.whileStoreOpen(s.queue.OperatorHandler()))
	return guard.wrap(mux)
}

// whileStoreOpen runs next only while the store is open, and keeps the store
// open until next returns; afterwards it answers 503.
func (s *Server) whileStoreOpen(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.gate.enter() {
			writeStatus(w, http.StatusServiceUnavailable, map[string]string{"error": "shutting down: the store is closed"})
			return
		}
		defer s.gate.leave()
		next.ServeHTTP(w, r)
	})
}

// adminGuard is what the admin listener checks before any route:
//
//  1. the Host header names this listener (DNS rebinding): else 421;
//  2. an Origin header, if any, is this listener's own origin: else 403;
//  3. a bearer token, except for GET /healthz, /readyz and, with
//     admin.metricsPublic, /metrics: else 401 with WWW-Authenticate;
//  4. a method other than GET and HEAD sends Content-Type application/json,
//     which a web page cannot send cross-origin without a preflight: else 415.
type adminGuard struct {
	tokenSum      [sha256.Size]byte // the token is compared by its digest, in constant time
	metricsPublic bool
	hosts         hostPolicy
}

func newAdminGuard(cfg config.Config, token string, bound net.Addr) (*adminGuard, error) {
	hosts, err := newHostPolicy(cfg.AdminListen, bound, cfg.Admin.AllowedHosts)
	if err != nil {
		return nil, err
	}
	return &adminGuard{tokenSum: sha256.Sum256([]byte(token)), metricsPublic: cfg.Admin.MetricsPublic, hosts: hosts}, nil
}

func (g *adminGuard) wrap(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !g.hosts.accepts(r.Host) {
			writeStatus(w, http.StatusMisdirectedRequest, map[string]string{"error": "Host " + strconv.Quote(r.Host) +
				" is not this admin listener's address; add it to admin.allowedHosts to reach the listener by that name"})
			return
		}
		if origin, ok := r.Header["Origin"]; ok && !sameOrigin(origin, r.Host) {
			writeStatus(w, http.StatusForbidden, map[string]string{"error": "cross-origin requests are refused"})
			return
		}
		if !g.public(r) && !g.authorized(r) {
			w.Header().Set("WWW-Authenticate", `Bearer realm="oceanhooks admin"`)
			writeStatus(w, http.StatusUnauthorized, map[string]string{"error": "missing or wrong admin token: send Authorization: Bearer <token> (see admin.tokenFile)"})
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead && !isJSON(r.Header.Get("Content-Type")) {
			writeStatus(w, http.StatusUnsupportedMediaType, map[string]string{"error": "Content-Type must be application/json"})
			return
		}
		next.ServeHTTP(w, r)
	})
}

// public reports whether r may be served without the token.
func (g *adminGuard) public(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	switch r.URL.Path {
	case "/healthz", "/readyz":
		return true
	case "/metrics":
		return g.metricsPublic
	}
	return false
}

func (g *adminGuard) authorized(r *http.Request) bool {
	scheme, token, ok := strings.Cut(r.Header.Get("Authorization"), " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return false
	}
	sum := sha256.Sum256([]byte(strings.TrimSpace(token)))
	return subtle.ConstantTimeCompare(sum[:], g.tokenSum[:]) == 1
}

// sameOrigin reports whether the Origin header values name the admin
// listener itself, reached as host (the accepted Host header).
func sameOrigin(origin []string, host string) bool {
	if len(origin) != 1 {
		return false
	}
	u, err := url.Parse(origin[0])
	return err == nil && u.Scheme == "http" && u.Path == "" && strings.EqualFold(u.Host, host)
}

func isJSON(contentType string) bool {
	mt, _, err := mime.ParseMediaType(contentType)
	return err == nil && mt == "application/json"
}

// hostPolicy decides which Host header values reach the admin listener: its
// own address, so that a web page whose DNS name was rebound to it cannot.
type hostPolicy struct {
	port    string          // the bound port
	names   map[string]bool // accepted with port: the configured host, the bound IP, localhost on loopback or any address
	anyIP   bool            // bound to every address: any IP literal, with port
	allowed map[string]bool // admin.allowedHosts: "name" (any port) and "name:port"
}

func newHostPolicy(listen string, bound net.Addr, allowedHosts []string) (hostPolicy, error) {
	tcp, ok := bound.(*net.TCPAddr)
	if !ok {
		return hostPolicy{}, fmt.Errorf("admin listener: unexpected address %v", bound)
	}
	p := hostPolicy{port: strconv.Itoa(tcp.Port), names: map[string]bool{}, allowed: map[string]bool{}}
	ip, _ := netip.AddrFromSlice(tcp.IP)
	ip = ip.Unmap()
	p.names[ip.String()] = true
	if host, _, err := net.SplitHostPort(listen); err == nil && host != "" {
		p.names[normalHost(host)] = true
	}
	if ip.IsLoopback() || ip.IsUnspecified() {
		p.names["localhost"] = true
	}
	p.anyIP = ip.IsUnspecified()
	for _, h := range allowedHosts {
		if host, port, err := net.SplitHostPort(h); err == nil {
			p.allowed[net.JoinHostPort(normalHost(host), port)] = true
			continue
		}
		p.allowed[normalHost(h)] = true
	}
	return p, nil
}

// accepts reports whether hostHeader (host or host:port) names the listener.
func (p hostPolicy) accepts(hostHeader string) bool {
	host, port, err := net.SplitHostPort(hostHeader)
	if err != nil {
		host, port = strings.TrimSuffix(strings.TrimPrefix(hostHeader, "["), "]"), "80"
	}
	host = normalHost(host)
	if host == "" {
		return false
	}
	if p.allowed[host] || p.allowed[net.JoinHostPort(host, port)] {
		return true
	}
	if port != p.port {
		return false
	}
	if p.names[host] {
		return true
	}
	_, err = netip.ParseAddr(host)
	return p.anyIP && err == nil
}

// normalHost lower-cases a host name, drops a trailing dot and writes an IP
// address in its canonical form.
func normalHost(h string) string {
	h = strings.TrimSuffix(strings.ToLower(h), ".")
	if a, err := netip.ParseAddr(h); err == nil {
		return a.Unmap().String()
	}
	return h
}

// streamStatus is the event stream's part of /readyz.
func streamStatus(h stream.Health) map[string]any {
	st := map[string]any{"connected": h.Connected, "since": h.Since.UTC().Format(time.RFC3339)}
	if !h.Connected {
		st["error"] = h.LastError
	}
	return st
}

// notReady returns why the server cannot take traffic, or "".
func (s *Server) notReady(ctx context.Context) string {
	if s.draining.Load() {
		return "shutting down"
	}
	if s.db == nil || s.db.IsClosed() {
		return "store closed"
	}
	ctx, cancel := context.WithTimeout(ctx, min(ReadyProbeTimeout, s.cfg.Proxy.DialTimeout.D()))
	defer cancel()
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostPort(s.upstream))
	if err != nil {
		return "upstream unreachable: " + err.Error()
	}
	_ = conn.Close()
	return ""
}

// hostPort is u's host and port, the scheme's default port if it has none.
func hostPort(u *url.URL) string {
	port := u.Port()
	if port == "" {
		port = "80"
		if u.Scheme == "https" {
			port = "443"
		}
	}
	return net.JoinHostPort(u.Hostname(), port)
}

func writeStatus(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// slogPromLogger reports errors of the metrics handler.
type slogPromLogger struct{ s *Server }

func (l slogPromLogger) Println(v ...any) {
	l.s.log.Error("serve metrics", "err", fmt.Sprint(v...))
}
