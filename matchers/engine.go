// Package matchers turns the API calls the proxy taps into the webhook events
// Ocean itself would fire: one table row per endpoint says which events the
// endpoint can cause, how to tell whether anyone could receive them, and how to
// derive recipients and bodies from the request and Ocean's answer.
package matchers

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// DefaultReadTimeout bounds, all together, the extra Ocean reads one tapped
// call may need (caller identity, relations, public user views).
const DefaultReadTimeout = 3 * time.Second

// Subscriptions is the in-memory index of active hooks (hooks.Store). Both
// methods must answer from memory: they are asked on the hot path.
type Subscriptions interface {
	// Subscribed reports whether userID owns an active hook listing eventType.
	Subscribed(userID, eventType string) bool
	// AnySubscribed reports whether any active hook lists one of eventTypes.
	AnySubscribed(eventTypes ...string) bool
}

// Ocean reads from Ocean with the caller's token (ocean.Client).
type Ocean interface {
	// Me maps a token to its user; the client caches the answer.
	Me(ctx context.Context, token string) (ocean.Me, error)
	// Call posts params to /api/<endpoint> with the token and returns the body.
	Call(ctx context.Context, endpoint, token string, params any) ([]byte, error)
}

// Sink stores events durably (queue.Queue): one synced write per call.
type Sink interface {
	Enqueue(ctx context.Context, events []webhook.Event) (int, error)
}

// Options tune an Engine. The zero value is usable.
type Options struct {
	// Logger receives skipped-event warnings. Default: slog.Default().
	Logger *slog.Logger
	// Registerer receives the engine's metrics. Nil: not registered.
	Registerer prometheus.Registerer
	// ReadTimeout bounds all extra Ocean reads of one call together.
	// Default DefaultReadTimeout.
	ReadTimeout time.Duration
	// Now is the clock of Ocean's time-based hiding rules and of the record
	// of recently created notes. Default time.Now.
	Now func() time.Time
}

// Engine derives events from tapped calls and hands them to the Sink.
type Engine struct {
	subs        Subscriptions
	oc          Ocean
	sink        Sink
	log         *slog.Logger
	readTimeout time.Duration
	now         func() time.Time
	rules       map[string]*rule
	m           metrics
	// recent holds the ids of created notes already derived.
	recent *recentNotes
}

var _ proxy.Consumer = (*Engine)(nil)

// New builds an Engine over the rule table.
func New(subs Subscriptions, oc Ocean, sink Sink, opts Options) *Engine {
	e := &Engine{
		subs:        subs,
		oc:          oc,
		sink:        sink,
		log:         opts.Logger,
		readTimeout: opts.ReadTimeout,
		now:         opts.Now,
		rules:       make(map[string]*rule, len(table)),
		m:           newMetrics(opts.Registerer),
		recent:      newRecentNotes(recentNotesKeep, recentNotesPerGeneration),
	}
	if e.now == nil {
		e.now = time.Now
	}
	if e.log == nil {
		e.log = slog.Default()
	}
	if e.readTimeout <= 0 {
		e.readTimeout = DefaultReadTimeout
	}
	for i := range table {
		e.rules[table[i].endpoint] = &table[i]
	}
	return e
}

// Taps returns one proxy tap per table row. Each tap's Wanted gate asks only
// the in-memory index whether any active hook lists an event the endpoint can
// cause; when it says no, the proxy neither buffers nor parses the call.
func (e *Engine) Taps() []proxy.Tap {
	taps := make([]proxy.Tap, 0, len(table))
	for i := range table {
		r := &table[i]
		t := proxy.Tap{
			Endpoint: r.endpoint,
			Wanted:   func() bool { return e.subs.AnySubscribed(r.causes...) },
		}
		if r.before != nil {
			t.Before = func(ctx context.Context, obs *proxy.Observation) { e.before(ctx, r, obs) }
		}
		taps = append(taps, t)
	}
	return taps
}

func (e *Engine) before(ctx context.Context, r *rule, obs *proxy.Observation) {
	c := &call{ctx: ctx, e: e, r: r, obs: obs}
	defer c.close()
	r.before(c)
}

// Observe derives the events of one successful tapped call and hands them all
// to the Sink in one Enqueue before returning. Its error is for logging only:
// the proxy never lets it change the client's response.
func (e *Engine) Observe(ctx context.Context, obs *proxy.Observation) error {
	r := e.rules[obs.Endpoint]
	if r == nil || obs.Status < 200 || obs.Status > 299 {
		return nil
	}
	// The gate again: subscriptions may have changed since the proxy asked.
	if !e.subs.AnySubscribed(r.causes...) {
		return nil
	}
	c := &call{ctx: ctx, e: e, r: r, obs: obs}
	defer c.close()
	var err error
	if r.answers == answersObject {
		c.answer, err = c.response()
	}
	if err == nil {
		err = r.derive(c)
	}
	if err != nil {
		e.m.failures.WithLabelValues(r.endpoint, failureReason(err)).Inc()
		return fmt.Errorf("derive %s: %w", r.endpoint, err)
	}
	if len(c.events) == 0 {
		return nil
	}
	// The durable write is not bound by the read deadline.
	n, err := e.sink.Enqueue(ctx, c.events)
	if err != nil {
		// The store failed or did not answer within the tap's deadline: the
		// events are lost unless a write already under way lands.
		e.m.failures.WithLabelValues(r.endpoint, "enqueue").Inc()
		e.m.skipped.WithLabelValues(r.endpoint, "enqueue").Add(float64(len(c.events)))
		return fmt.Errorf("enqueue %d events of %s (lost): %w", len(c.events), r.endpoint, err)
	}
	for _, ev := range c.events {
		e.m.derived.WithLabelValues(ev.Type).Inc()
	}
	e.log.DebugContext(ctx, "events derived", "endpoint", r.endpoint,
		"events", len(c.events), "deliveries", n)
	return nil
}

// errMalformed marks an Ocean answer the derivation cannot use.
var errMalformed = errors.New("malformed ocean answer")

func failureReason(err error) string {
	if errors.Is(err, errMalformed) {
		return "malformed"
	}
	return "other"
}

// readFailureReason labels why an extra read failed.
func readFailureReason(err error) string {
	var oe *ocean.Error
	switch {
	case errors.Is(err, context.DeadlineExceeded):
		return "timeout"
	case errors.Is(err, context.Canceled):
		return "canceled"
	case errors.Is(err, errMalformed):
		return "malformed"
	case errors.As(err, &oe):
		switch oe.Code {
		case ocean.ErrUpstreamTimeout.Code:
			return "timeout"
		case ocean.ErrUpstreamUnavailable.Code:
			return "unavailable"
		}
		return "ocean_error"
	default:
		return "unavailable"
	}
}

type metrics struct {
	derived  *prometheus.CounterVec
	skipped  *prometheus.CounterVec
	failures *prometheus.CounterVec
	nothing  *prometheus.CounterVec
}

func newMetrics(reg prometheus.Registerer) metrics {
	m := metrics{
		derived: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_events_derived_total",
			Help: "Events derived from tapped API calls and handed to the queue, by event type.",
		}, []string{"type"}),
		skipped: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_derive_skipped_total",
			Help: "Events not derived because an extra Ocean read they needed failed, by endpoint and reason.",
		}, []string{"endpoint", "reason"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_derive_failures_total",
			Help: "Tapped calls whose events could not be derived or enqueued, by endpoint and reason.",
		}, []string{"endpoint", "reason"}),
		nothing: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_derive_nothing_total",
			Help: "Tapped calls that cause no event by design (Ocean's answer shows nothing to derive from, or Ocean fired nothing for them), by endpoint and reason.",
		}, []string{"endpoint", "reason"}),
	}
	if reg != nil {
		reg.MustRegister(m.derived, m.skipped, m.failures, m.nothing)
	}
	return m
}
