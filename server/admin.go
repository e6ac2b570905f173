package server

import (
	"context"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/url"

	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// adminHandler serves the admin listener:
//
//	GET /healthz     200 while the process is up
//	GET /readyz      200 when the store is open, the upstream accepts connections
//	                 and no shutdown has begun; else 503 with the reason
//	GET /metrics     Prometheus metrics of every part, Go runtime and process
//	/hooks           the operators' hook listing (hooks.Store.OperatorHandler)
//	/deliveries      the operators' delivery listing and redelivery (queue.Queue.OperatorHandler)
func (s *Server) adminHandler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeStatus(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if reason := s.notReady(r.Context()); reason != "" {
			writeStatus(w, http.StatusServiceUnavailable, map[string]string{"status": "not ready", "reason": reason})
			return
		}
		writeStatus(w, http.StatusOK, map[string]string{"status": "ready"})
	})
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(s.reg,
		promhttp.HandlerFor(s.reg, promhttp.HandlerOpts{Registry: s.reg, ErrorLog: slogPromLogger{s}})))
	mux.Handle("/hooks", s.hooks.OperatorHandler())
	mux.Handle("/deliveries", s.queue.OperatorHandler())
	return mux
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
