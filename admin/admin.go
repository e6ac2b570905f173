// Package admin serves the admin listener: health and readiness, Prometheus
// metrics, the operator API (/hooks, /deliveries) and the operators'
// dashboard (/dash/), all behind one guard (the listener's own Host, no
// foreign Origin, the admin token or a dashboard session). It reads hooks
// and deliveries through small interfaces it declares, and the queue's
// figures from the server's Prometheus registry.
package admin

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Hooks is what the admin listener needs of the hook store.
type Hooks interface {
	ListAll() ([]hooks.Hook, error)
	List(userID string) ([]hooks.Hook, error)
	Get(id string) (hooks.Hook, error)
	// SetActive switches a hook on or off, whoever owns it.
	SetActive(id string, active bool) (hooks.Hook, error)
	// Import stores a hook read from Ocean's database once (by its Ocean id).
	Import(h hooks.Hook) (id string, imported bool, err error)
	// Imported tells whether Ocean's hook oceanID of userID was imported.
	Imported(userID, oceanID string) (id string, found bool, err error)
}

// Deliveries is what the admin listener needs of the queue.
type Deliveries interface {
	// List returns deliveries newest first (hookID "": every hook's).
	List(ctx context.Context, hookID string, limit int, untilID string) ([]webhook.Delivery, error)
	// Redeliver queues one delivery again, or, without deliveryID, starts
	// redelivering every dead letter of the hook in the background.
	Redeliver(ctx context.Context, hookID, deliveryID string) (int, error)
	// DeadLetters counts the dead letters of each hook that has any.
	DeadLetters() map[string]int
}

// Options configure the admin listener. Token, Bound, Registry, Hooks and
// Deliveries are required.
type Options struct {
	// Token is the admin token.
	Token string
	// Listen is the configured listen address (adminListen) and Bound the
	// address actually bound: together with AllowedHosts they say which Host
	// headers name the listener.
	Listen       string
	Bound        net.Addr
	AllowedHosts []string
	// MetricsPublic serves GET /metrics without the token.
	MetricsPublic bool
	// Registry is the server's registry: served on /metrics and sampled for
	// the dashboard.
	Registry *prometheus.Registry
	Hooks    Hooks
	// Deliveries is the queue.
	Deliveries Deliveries
	// Ready answers /readyz: its status code and body. Nil: always ready.
	Ready func(ctx context.Context) (int, map[string]any)
	// WhileStoreOpen wraps the routes that read or write the store, so that
	// they answer 503 once it is closing. Nil: none.
	WhileStoreOpen func(http.Handler) http.Handler
	// DisableAfter is delivery.disableAfter, shown on the dashboard.
	DisableAfter time.Duration
	// SampleEvery is how often the dashboard samples Registry. Default 5s.
	SampleEvery time.Duration
	// Logger gets failures and dashboard logins. Default: discard.
	Logger *slog.Logger
	// Now is the clock. Default time.Now.
	Now func() time.Time
}

// Admin is the admin listener's handler and the dashboard's sampler.
type Admin struct {
	opts     Options
	log      *slog.Logger
	guard    *guard
	sampler  *sampler
	pages    *pages
	handler  http.Handler
	sessions *sessions
}

// New builds the admin listener's handler from opts.
func New(opts Options) (*Admin, error) {
	if opts.Token == "" || opts.Bound == nil || opts.Registry == nil || opts.Hooks == nil || opts.Deliveries == nil {
		return nil, errors.New("admin: token, bound address, registry, hooks and deliveries are required")
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.SampleEvery <= 0 {
		opts.SampleEvery = 5 * time.Second
	}
	if opts.WhileStoreOpen == nil {
		opts.WhileStoreOpen = func(h http.Handler) http.Handler { return h }
	}
	hosts, err := newHostPolicy(opts.Listen, opts.Bound, opts.AllowedHosts)
	if err != nil {
		return nil, err
	}
	pg, err := newPages()
	if err != nil {
		return nil, fmt.Errorf("admin: %w", err)
	}
	a := &Admin{opts: opts, log: opts.Logger, sessions: newSessions(opts.Token, opts.Now), pages: pg}
	a.guard = &guard{tokenSum: sha256Sum(opts.Token), metricsPublic: opts.MetricsPublic, hosts: hosts, sessions: a.sessions}
	a.sampler = newSampler(opts.Registry, opts.SampleEvery, opts.Now)
	a.handler = a.guard.wrap(a.routes())
	return a, nil
}

// Handler serves the admin listener.
func (a *Admin) Handler() http.Handler { return a.handler }

// Run samples the registry for the dashboard's rates until ctx ends.
func (a *Admin) Run(ctx context.Context) error {
	a.sampler.run(ctx)
	return nil
}

// routes are the admin listener's routes:
//
//	GET  /healthz      200 while the process is up
//	GET  /readyz       Options.Ready's answer
//	GET  /metrics      Prometheus metrics of every part
//	     /hooks        the operators' hook listing and import (hooksapi.go)
//	     /deliveries   the operators' delivery listing and redelivery (deliveriesapi.go)
//	GET  /             sends the browser to the dashboard
//	     /dash/…       the dashboard (dashboard.go)
func (a *Admin) routes() http.Handler {
	mux := http.NewServeMux()
	open := a.opts.WhileStoreOpen
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeJSON(w, http.StatusOK, map[string]string{"status": "ok"})
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if a.opts.Ready == nil {
			writeJSON(w, http.StatusOK, map[string]string{"status": "ready"})
			return
		}
		status, body := a.opts.Ready(r.Context())
		writeJSON(w, status, body)
	})
	reg := a.opts.Registry
	mux.Handle("GET /metrics", promhttp.InstrumentMetricHandler(reg,
		promhttp.HandlerFor(reg, promhttp.HandlerOpts{Registry: reg, ErrorLog: promLogger{a.log}})))
	mux.Handle("/hooks", open(http.HandlerFunc(a.hooksAPI)))
	mux.Handle("/deliveries", open(http.HandlerFunc(a.deliveriesAPI)))
	a.dashboardRoutes(mux, open)
	return mux
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	body, _ := json.Marshal(v)
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(status)
	_, _ = w.Write(append(body, '\n'))
}

// promLogger reports errors of the metrics handler.
type promLogger struct{ log *slog.Logger }

func (l promLogger) Println(v ...any) {
	l.log.Error("serve metrics", "err", fmt.Sprint(v...))
}
