// Package server wires oceanhooks together and runs it: it opens the store
// (embedded Badger in dataDir, or PostgreSQL shared by several sidecars:
// store.backend), builds the hook store, the Ocean client, the queue, the
// event engine and the proxy, serves the proxy and the admin listener, and
// shuts everything down in order when its context ends.
package server

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"golang.org/x/sync/errgroup"

	"github.com/oceanhooks/oceanhooks/admin"
	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/confirm"
	"github.com/oceanhooks/oceanhooks/front"
	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/matchers"
	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/queue"
	"github.com/oceanhooks/oceanhooks/stream"
)

// Timeouts of the listeners that are not settings.
const (
	// ReadHeaderTimeout bounds reading a request's headers on both listeners
	// (slowloris); bodies and responses may take as long as they need.
	ReadHeaderTimeout = 30 * time.Second
	// IdleTimeout closes a client's keep-alive connection after this long unused.
	IdleTimeout = 2 * time.Minute
	// AdminShutdownTimeout bounds closing the admin listener, which is
	// closed last so that /metrics and /healthz answer while the proxy drains.
	AdminShutdownTimeout = 5 * time.Second
	// HandlerWaitMargin is how much longer than proxy.observeTimeout the
	// store waits, after the grace period forced the remaining client
	// connections closed, for their handlers to return: a tapped call may be
	// storing its events for up to proxy.observeTimeout (see Server.handlerWait).
	HandlerWaitMargin = 2 * time.Second
	// ReadyProbeTimeout bounds the upstream probe of /readyz.
	ReadyProbeTimeout = 2 * time.Second
)

// Server is oceanhooks, built and bound, ready to Run.
type Server struct {
	cfg config.Config
	log *slog.Logger

	upstream       *url.URL
	oceanTransport *http.Transport
	reg            *prometheus.Registry
	store          store // nil until opened
	hooks          *hooks.Store
	queue          deliveryQueue
	proxy          *proxy.Proxy
	merger         *confirm.Merger    // nil without the event stream
	stream         *stream.Subscriber // nil without the event stream
	console        *admin.Admin       // the admin listener's routes and dashboard
	// lead chooses the one sidecar sharing the store that runs the event
	// stream (see streamTerm); nil on Badger, whose one process always does.
	lead leader

	mainLn, adminLn net.Listener
	main            httpServer // the proxy's listener: front.Server, or net/http's
	admin           *http.Server
	gate            gate // handlers that may touch the store: proxy and admin operator routes
	draining        atomic.Bool
	closeOnce       sync.Once
	closeErr        error

	// after starts the bounded wait for handlers before the store closes
	// (time.After; tests observe it).
	after func(time.Duration) <-chan time.Time
}

// deliveryQueue is what the server needs of the queue, whichever the
// backend: *queue.Queue on Badger, *queue.PGQueue on PostgreSQL.
type deliveryQueue interface {
	confirm.Store
	hooks.Deliveries
	admin.Deliveries
	Run(ctx context.Context) error
}

var (
	_ deliveryQueue = (*queue.Queue)(nil)
	_ deliveryQueue = (*queue.PGQueue)(nil)
)

// Run builds oceanhooks from cfg and runs it until ctx ends, then shuts down
// gracefully (see Server.Run). It returns nil after a clean shutdown. Ending
// ctx while the store opens (a PostgreSQL server that does not answer, a
// migration lock held by another sidecar) stops the start.
func Run(ctx context.Context, cfg config.Config, logger *slog.Logger) error {
	s, err := build(ctx, cfg, logger)
	if err != nil {
		return err
	}
	return s.Run(ctx)
}

// New validates cfg, opens the store (Badger in cfg.DataDir, or PostgreSQL,
// migrated), builds every part and binds both listeners, so that a busy
// port, a locked data dir or an unreachable database is reported before
// anything runs. The caller must Run or Close the Server.
func New(cfg config.Config, logger *slog.Logger) (*Server, error) {
	return build(context.Background(), cfg, logger)
}

// build is New with ctx bounding the store's opening: Run passes its own, so
// that a signal ends a start that waits on an unreachable database.
func build(ctx context.Context, cfg config.Config, logger *slog.Logger) (_ *Server, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if logger == nil {
		logger = slog.New(slog.DiscardHandler)
	}
	s := &Server{cfg: cfg, log: logger, after: time.After}
	defer func() {
		if err != nil {
			_ = s.Close()
		}
	}()
	if s.upstream, err = cfg.UpstreamURL(); err != nil {
		return nil, err
	}
	trusted, err := config.ParsePrefixes(cfg.Proxy.TrustedProxies)
	if err != nil {
		return nil, fmt.Errorf("proxy.trustedProxies: %w", err)
	}
	allowed, err := config.ParsePrefixes(cfg.Delivery.AllowedPrivateNetworks)
	if err != nil {
		return nil, fmt.Errorf("delivery.allowedPrivateNetworks: %w", err)
	}

	s.reg = prometheus.NewRegistry()
	s.reg.MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
		collectors.NewBuildInfoCollector(),
	)

	if s.store, err = openStore(ctx, cfg, logger); err != nil {
		return nil, err
	}
	token, created, err := loadAdminToken(cfg)
	if err != nil {
		return nil, err
	}
	if created {
		logger.Info("generated the admin token; it is shown only this once (the operator commands read it from the file)",
			"file", cfg.AdminTokenPath(), "token", token)
	}
	if s.hooks, err = s.store.openHooks(ctx, hooks.Options{
		Logger:       logger.With("component", "hooks"),
		DisableAfter: cfg.Delivery.DisableAfter.D(),
		Registerer:   s.reg,
	}); err != nil {
		return nil, fmt.Errorf("open hooks: %w", err)
	}
	// The sidecar's own reads of Ocean (/api/i, event reads) share one pool
	// of keep-alive connections sized like the proxy's.
	s.oceanTransport = &http.Transport{
		DialContext:         (&net.Dialer{Timeout: cfg.Proxy.DialTimeout.D(), KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: cfg.Proxy.MaxIdleConnsPerHost,
		IdleConnTimeout:     90 * time.Second,
		TLSHandshakeTimeout: cfg.Proxy.DialTimeout.D(),
	}
	oc := ocean.NewClient(s.upstream, ocean.ClientOptions{
		Timeout:    cfg.Auth.Timeout.D(),
		TTL:        cfg.Auth.CacheTTL.D(),
		FailureTTL: cfg.Auth.FailureTTL.D(),
		HTTPClient: &http.Client{Transport: s.oceanTransport},
		Logger:     logger.With("component", "ocean"),
	})
	if s.queue, err = s.store.openQueue(ctx, s.hooks, queue.Options{
		ServerURL:              cfg.ServerURL(),
		HeaderPrefix:           cfg.Delivery.HeaderPrefix,
		Workers:                cfg.Delivery.Workers,
		PerHookConcurrency:     cfg.Delivery.PerHookConcurrency,
		MaxAttempts:            cfg.Delivery.MaxAttempts,
		BackoffBase:            cfg.Delivery.BackoffBase.D(),
		BackoffCap:             cfg.Delivery.BackoffCap.D(),
		AttemptTimeout:         cfg.Delivery.AttemptTimeout.D(),
		QuickRetries:           quickRetries(cfg.Delivery.QuickRetries),
		DeadLetterTTL:          cfg.Delivery.DeadLetterTTL.D(),
		AllowedPrivateNetworks: allowed,
		ShutdownGrace:          cfg.ShutdownGrace.D(),
		Logger:                 logger.With("component", "queue"),
		Registerer:             s.reg,
	}); err != nil {
		return nil, fmt.Errorf("open queue: %w", err)
	}
	// Without Ocean's event stream the API tap's events go to the queue as
	// derived; with it, through the step that merges the two sources.
	var sink matchers.Sink = s.queue
	if cfg.Ocean.Redis.URL != "" {
		if s.merger, err = confirm.New(s.queue, confirm.Options{
			Window:         cfg.Events.ConfirmWindow.D(),
			DetectionDelay: 2 * stream.DefaultPingInterval,
			Leading:        func() bool { return s.streamLeading() },
			Logger:         logger.With("component", "confirm"),
			Registerer:     s.reg,
		}); err != nil {
			return nil, err
		}
		sink = s.merger
	}
	engine := matchers.New(s.hooks, oc, sink, matchers.Options{
		Logger:      logger.With("component", "matchers"),
		Registerer:  s.reg,
		ReadTimeout: cfg.Events.ReadTimeout.D(),
	})
	if s.merger != nil {
		r := cfg.Ocean.Redis
		if s.stream, err = stream.New(stream.Options{
			URL:        r.URL,
			Password:   r.Password,
			DB:         r.DB,
			TLS:        r.TLS,
			Channel:    cfg.StreamChannel(),
			Logger:     logger.With("component", "stream"),
			Registerer: s.reg,
		}, s.hooks, s.merger, engine); err != nil {
			return nil, err
		}
		s.stream.OnHealth(s.merger.StreamHealth)
		s.lead = s.store.leader()
		if err := s.reg.Register(prometheus.NewGaugeFunc(prometheus.GaugeOpts{
			Name: "oceanhooks_stream_leader",
			Help: "1 while this sidecar is the one that subscribes to Ocean's event stream and ends the held events (on PostgreSQL one sidecar at a time).",
		}, func() float64 {
			if s.streamLeading() {
				return 1
			}
			return 0
		})); err != nil {
			return nil, fmt.Errorf("stream metrics: %w", err)
		}
	}
	apiOpts := hooks.APIOptions{
		Logger:     logger.With("component", "hooks-api"),
		Registerer: s.reg,
	}
	if cfg.Hooks.TakeOverNative {
		// oc calls Ocean at the upstream URL, never the sidecar itself.
		apiOpts.TakeOver = oc
	}
	api := hooks.NewAPI(s.hooks, oc, s.queue, apiOpts)
	if s.proxy, err = proxy.New(proxy.Options{
		Upstream:              s.upstream,
		TapBodyCap:            int64(cfg.TapBodyCap),
		Taps:                  engine.Taps(),
		Consumer:              engine,
		ObserveTimeout:        cfg.Proxy.ObserveTimeout.D(),
		Local:                 api,
		DialTimeout:           cfg.Proxy.DialTimeout.D(),
		ResponseHeaderTimeout: cfg.Proxy.UpstreamTimeout.D(),
		MaxIdleConnsPerHost:   cfg.Proxy.MaxIdleConnsPerHost,
		Transport:             cfg.Proxy.Transport,
		TrustedProxies:        trusted,
		Logger:                logger.With("component", "proxy"),
		Registerer:            s.reg,
	}); err != nil {
		return nil, fmt.Errorf("build proxy: %w", err)
	}

	if s.mainLn, err = net.Listen("tcp", cfg.Listen); err != nil {
		return nil, fmt.Errorf("listen: %w", err)
	}
	if s.adminLn, err = net.Listen("tcp", cfg.AdminListen); err != nil {
		return nil, fmt.Errorf("admin listen: %w", err)
	}
	if s.console, err = admin.New(admin.Options{
		Token:          token,
		Listen:         cfg.AdminListen,
		Bound:          s.adminLn.Addr(),
		AllowedHosts:   cfg.Admin.AllowedHosts,
		MetricsPublic:  cfg.Admin.MetricsPublic,
		Registry:       s.reg,
		Hooks:          s.hooks,
		Deliveries:     s.queue,
		Ready:          s.ready,
		WhileStoreOpen: s.whileStoreOpen,
		DisableAfter:   cfg.Delivery.DisableAfter.D(),
		Logger:         logger.With("component", "admin"),
	}); err != nil {
		return nil, err
	}
	httpLog := slog.NewLogLogger(logger.With("component", "http").Handler(), slog.LevelWarn)
	if cfg.Proxy.Server == "stdlib" {
		s.main = &http.Server{
			Handler:           s.track(s.proxy),
			ReadHeaderTimeout: ReadHeaderTimeout,
			IdleTimeout:       IdleTimeout,
			ErrorLog:          httpLog,
		}
	} else {
		s.main = &front.Server{
			Handler:           s.track(s.proxy),
			ReadHeaderTimeout: ReadHeaderTimeout,
			IdleTimeout:       IdleTimeout,
			Logger:            logger.With("component", "http"),
		}
	}
	s.admin = &http.Server{
		Handler:           s.console.Handler(),
		ReadHeaderTimeout: ReadHeaderTimeout,
		IdleTimeout:       IdleTimeout,
		ErrorLog:          httpLog,
	}
	return s, nil
}

// httpServer is what front.Server and http.Server have in common.
type httpServer interface {
	Serve(net.Listener) error
	Shutdown(context.Context) error
	Close() error
}

// quickRetries maps the config's count to queue.Options, where 0 means the
// default and a negative value means none.
func quickRetries(n int) int {
	if n == 0 {
		return -1
	}
	return n
}

// Addr is the proxy listener's address.
func (s *Server) Addr() net.Addr { return s.mainLn.Addr() }

// AdminAddr is the admin listener's address.
func (s *Server) AdminAddr() net.Addr { return s.adminLn.Addr() }

// track counts the proxy handlers in flight, so that the store is closed only
// after the last one that could still enqueue has returned.
func (s *Server) track(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !s.gate.enter() {
			// Only after the listener closed: no client can be waiting for Ocean.
			http.Error(w, "shutting down", http.StatusServiceUnavailable)
			return
		}
		defer s.gate.leave()
		next.ServeHTTP(w, r)
	})
}

// handlerWait bounds the wait, after the listeners closed, for handlers that
// may still touch the store: a tapped call stores its events for up to
// proxy.observeTimeout after Ocean answered, whatever became of its client.
func (s *Server) handlerWait() time.Duration {
	return s.cfg.Proxy.ObserveTimeout.D() + HandlerWaitMargin
}

// Run serves until ctx ends, then shuts down: the listeners stop accepting,
// in-flight requests and WebSockets get cfg.ShutdownGrace to finish (then
// their connections are closed), the queue stops claiming and lets in-flight
// attempts finish within the same grace (else their leases return), the admin
// listener closes, and the store is closed last, after the handlers that may
// still touch it returned (at most handlerWait) and with the admin operator
// routes answering 503. It returns nil after a clean shutdown, or the first
// error that stopped a part.
func (s *Server) Run(ctx context.Context) error {
	s.log.Info("proxy listening", "addr", s.mainLn.Addr().String(), "upstream", s.upstream.Redacted())
	s.log.Info("admin listening", "addr", s.adminLn.Addr().String())

	g, gctx := errgroup.WithContext(ctx)
	g.Go(func() error {
		if err := s.main.Serve(s.mainLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve proxy: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.admin.Serve(s.adminLn); !errors.Is(err, http.ErrServerClosed) {
			return fmt.Errorf("serve admin: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.queue.Run(gctx); err != nil {
			return fmt.Errorf("queue: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		if err := s.hooks.Run(gctx); err != nil {
			return fmt.Errorf("hooks: %w", err)
		}
		return nil
	})
	g.Go(func() error {
		<-gctx.Done()
		s.shutdownHTTP()
		return nil
	})
	g.Go(func() error { return s.console.Run(gctx) })
	if s.stream != nil {
		if s.lead == nil {
			g.Go(func() error { return s.streamTerm(gctx) })
		} else {
			g.Go(func() error { return s.lead.Lead(gctx, streamLead, s.streamTerm) })
		}
	}
	err := g.Wait()
	if cerr := s.Close(); cerr != nil {
		err = errors.Join(err, cerr)
	}
	if err == nil {
		s.log.Info("stopped")
	}
	return err
}

// streamLead is the name of the event stream's Lead.
const streamLead = "stream"

// streamTerm subscribes to Ocean's event stream and ends the held events
// whose window is over (every sidecar's: they share the store), until ctx
// ends. On Badger it runs as long as the server; on PostgreSQL only while
// this sidecar leads, one sidecar at a time: a pub/sub message carries no
// id, so the copies of one message read by several subscribers could not be
// told apart from the repeats of a recurring event (follow, unfollow: a key
// may occur again) or of an event without a key, and each sidecar would
// deliver those once.
// Holds are judged by the leader's own stream history: when a term ends the
// merger counts the stream as down from then, so a later term's holds made
// before its subscription is up are delivered as derived (at least once).
func (s *Server) streamTerm(ctx context.Context) error {
	var g errgroup.Group
	g.Go(func() error { return s.stream.Run(ctx) })
	g.Go(func() error { return s.merger.Run(ctx) })
	err := g.Wait()
	s.merger.StreamDown(time.Now())
	return err
}

// streamLeading reports whether this sidecar runs the event stream now.
func (s *Server) streamLeading() bool {
	return s.lead == nil || s.lead.Leading(streamLead)
}

// shutdownHTTP drains the proxy listener within the grace period, then closes
// the admin listener.
func (s *Server) shutdownHTTP() {
	s.draining.Store(true)
	grace := s.cfg.ShutdownGrace.D()
	s.log.Info("shutting down", "grace", grace.String())
	ctx, cancel := context.WithTimeout(context.Background(), grace)
	defer cancel()

	var wg sync.WaitGroup
	wg.Go(func() {
		if err := s.main.Shutdown(ctx); err != nil {
			s.log.Warn("grace period over; closing remaining client connections", "err", err)
			_ = s.main.Close()
		}
	})
	wg.Go(func() {
		if err := s.proxy.Shutdown(ctx); err != nil {
			s.log.Warn("closing upgraded connections", "err", err)
		}
	})
	wg.Wait()

	actx, acancel := context.WithTimeout(context.Background(), AdminShutdownTimeout)
	defer acancel()
	if err := s.admin.Shutdown(actx); err != nil {
		_ = s.admin.Close()
	}
}

// Close releases everything New acquired: the listeners and the store. Run
// calls it; call it yourself only for a Server that is never Run.
func (s *Server) Close() error {
	s.closeOnce.Do(func() {
		for _, ln := range []net.Listener{s.mainLn, s.adminLn} {
			if ln != nil {
				_ = ln.Close()
			}
		}
		if s.oceanTransport != nil {
			defer s.oceanTransport.CloseIdleConnections()
		}
		if s.store == nil {
			return
		}
		// After a forced close, handlers may still be finishing an enqueue;
		// none starts from now on (the admin operator routes answer 503).
		wait := s.handlerWait()
		left, running := s.gate.close(func() <-chan time.Time {
			return s.after(wait)
		})
		if running > 0 {
			s.log.Info("waited for handlers before closing the store", "running", running, "left", left, "max_wait", wait.String())
		}
		if left > 0 {
			s.log.Warn("closing the store while handlers are still running", "handlers", left)
		}
		if err := s.store.close(); err != nil {
			s.closeErr = fmt.Errorf("close store: %w", err)
		}
	})
	return s.closeErr
}
