package server

import (
	"context"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"time"

	"github.com/oceanhooks/oceanhooks/stream"
)

// ready answers the admin listener's /readyz: 200 when the store is open
// (on PostgreSQL: answers a query and this sidecar hears the others'
// changes), the upstream accepts connections and no shutdown has begun, else 503 with
// the reason; with the event stream configured, its state too (not a reason
// to be unready: the API tap covers local calls meanwhile), or, on a sidecar
// that does not lead the stream (PostgreSQL: one leads at a time), that it
// stands by.
func (s *Server) ready(ctx context.Context) (int, map[string]any) {
	body := map[string]any{"status": "ready"}
	status := http.StatusOK
	if reason := s.notReady(ctx); reason != "" {
		body = map[string]any{"status": "not ready", "reason": reason}
		status = http.StatusServiceUnavailable
	}
	switch {
	case s.stream == nil:
	case !s.streamLeading():
		body["stream"] = map[string]any{"connected": false, "standby": true}
	default:
		st := streamStatus(s.stream.Health())
		if s.lead != nil {
			st["leader"] = true
		}
		body["stream"] = st
	}
	return status, body
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

// streamStatus is the event stream's part of /readyz.
func streamStatus(h stream.Health) map[string]any {
	st := map[string]any{"connected": h.Connected, "since": h.Since.UTC().Format(time.RFC3339)}
	if !h.Connected {
		st["error"] = h.LastError
	}
	if h.Behind {
		// Connected, but not reading: held events wait (see stream.Health).
		st["behind"] = true
	}
	return st
}

// notReady returns why the server cannot take traffic, or "".
func (s *Server) notReady(ctx context.Context) string {
	if s.draining.Load() {
		return "shutting down"
	}
	if s.store == nil {
		return "store closed"
	}
	ctx, cancel := context.WithTimeout(ctx, min(ReadyProbeTimeout, s.cfg.Proxy.DialTimeout.D()))
	defer cancel()
	if reason := s.store.unavailable(ctx); reason != "" {
		return reason
	}
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
