package proxy

import (
	"fmt"
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"
)

// Status classes of oceanhooks_proxy_requests_total; "canceled" is a request
// that got no response because the client went away first.
var statusClasses = [...]string{"canceled", "1xx", "2xx", "3xx", "4xx", "5xx"}

const numStatusClasses = len(statusClasses)

func statusClass(code int) int {
	c := code / 100
	switch {
	case code <= 0:
		return 0
	case c < 1:
		return 1
	case c > 5:
		return 5
	}
	return c
}

// Upstream error kinds.
const (
	upstreamUnavailable = iota
	upstreamTimeout
)

var upstreamKinds = [...]string{"unavailable", "timeout"}

// Body directions.
const (
	dirRequest  = "request"
	dirResponse = "response"
)

// Reasons of oceanhooks_proxy_ambiguous_requests_total.
const (
	reasonCredential    = "credential"     // ocean.ReadCredential found no single reading
	reasonDuplicateKeys = "duplicate_keys" // the body names a key twice
)

// Tap failure stages.
const (
	stageWanted  = "wanted"  // the tap's gate panicked
	stageBefore  = "before"  // the tap's Before step panicked
	stageRead    = "read"    // the upstream's body failed while being read
	stageDecode  = "decode"  // the body's Content-Encoding could not be undone
	stageObserve = "observe" // the Consumer returned an error or panicked
)

type metrics struct {
	requests       *prometheus.CounterVec
	duration       *prometheus.HistogramVec
	tappedCalls    *prometheus.CounterVec
	failures       *prometheus.CounterVec
	overCapBodies  *prometheus.CounterVec
	notJSONBodies  *prometheus.CounterVec
	ambiguous      *prometheus.CounterVec
	upstreamErrors [len(upstreamKinds)]prometheus.Counter
	upgraded       prometheus.Gauge
}

func newMetrics(reg prometheus.Registerer) (*metrics, error) {
	m := &metrics{
		requests: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_proxy_requests_total",
			Help: "Requests handled by the proxy, by route (a tapped endpoint's name, or api, streaming, local, other) and status class.",
		}, []string{"endpoint", "status"}),
		duration: prometheus.NewHistogramVec(prometheus.HistogramOpts{
			Name:    "oceanhooks_proxy_request_duration_seconds",
			Help:    "Time from receiving a request to the end of its response, by route; upgraded connections are left out.",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}, []string{"endpoint"}),
		tappedCalls: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_proxy_tapped_total",
			Help: "Tapped calls that got an upstream response, by endpoint and upstream status code; only 2xx ones are observed.",
		}, []string{"endpoint", "status"}),
		failures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_proxy_tap_failures_total",
			Help: "Tap failures that left the response untouched, by endpoint and stage (wanted, before, read, decode, observe).",
		}, []string{"endpoint", "stage"}),
		overCapBodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_proxy_bodies_over_cap_total",
			Help: "Tapped bodies larger than the tap cap, streamed through untapped, by endpoint and direction.",
		}, []string{"endpoint", "direction"}),
		notJSONBodies: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_proxy_bodies_not_json_total",
			Help: "Tapped bodies that were not JSON, passed through untapped, by endpoint and direction.",
		}, []string{"endpoint", "direction"}),
		ambiguous: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_proxy_ambiguous_requests_total",
			Help: "Tapped calls passed through underived because Ocean could read them differently, by endpoint and reason (credential, duplicate_keys).",
		}, []string{"endpoint", "reason"}),
		upgraded: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "oceanhooks_proxy_upgraded_connections",
			Help: "Upgraded (WebSocket) connections currently open.",
		}),
	}
	upstreamErrors := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "oceanhooks_proxy_upstream_errors_total",
		Help: "Requests the upstream could not answer, by kind (unavailable: 502, timeout: 504).",
	}, []string{"kind"})
	for i, kind := range upstreamKinds {
		m.upstreamErrors[i] = upstreamErrors.WithLabelValues(kind)
	}
	for _, c := range []prometheus.Collector{m.requests, m.duration, m.tappedCalls, m.failures,
		m.overCapBodies, m.notJSONBodies, m.ambiguous, upstreamErrors, m.upgraded} {
		if err := reg.Register(c); err != nil {
			return nil, fmt.Errorf("proxy metrics: %w", err)
		}
	}
	return m, nil
}

// route resolves a route's metric children once, so counting a request is
// an array index and an atomic add.
func (m *metrics) route(label string, tap *Tap) *route {
	rt := &route{label: label, tap: tap, duration: m.duration.WithLabelValues(label)}
	if tap != nil {
		rt.tappedBy = new(tappedCounters)
	}
	for i, class := range statusClasses {
		rt.requests[i] = m.requests.WithLabelValues(label, class)
	}
	return rt
}

// tappedCounters holds a tapped route's child of
// oceanhooks_proxy_tapped_total for each status code from 100 to 599, each
// resolved the first time the code is seen.
type tappedCounters [500]atomic.Pointer[prometheus.Counter]

// tapped counts a tapped call's upstream status; after the first call with a
// status, counting it is an array index and an atomic add.
func (m *metrics) tapped(rt *route, status int) {
	if status < 100 || status > 599 {
		m.tappedCalls.WithLabelValues(rt.label, strconv.Itoa(status)).Inc()
		return
	}
	slot := &rt.tappedBy[status-100]
	if c := slot.Load(); c != nil {
		(*c).Inc()
		return
	}
	c := m.tappedCalls.WithLabelValues(rt.label, strconv.Itoa(status))
	slot.Store(&c)
	c.Inc()
}

func (m *metrics) tapFailure(endpoint, stage string) {
	m.failures.WithLabelValues(endpoint, stage).Inc()
}

func (m *metrics) overCap(endpoint, direction string) {
	m.overCapBodies.WithLabelValues(endpoint, direction).Inc()
}

func (m *metrics) notJSON(endpoint, direction string) {
	m.notJSONBodies.WithLabelValues(endpoint, direction).Inc()
}

func (m *metrics) ambiguousRequest(endpoint, reason string) {
	m.ambiguous.WithLabelValues(endpoint, reason).Inc()
}
