package admin

import (
	"context"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
)

// The dashboard's rates come from the server's own Prometheus registry,
// sampled every few seconds into a small ring: the hot paths keep only the
// counters they already have.

// Metrics the dashboard reads.
const (
	metricReady    = "oceanhooks_queue_ready"
	metricLeased   = "oceanhooks_queue_leased"
	metricDead     = "oceanhooks_queue_dead"
	metricHeld     = "oceanhooks_queue_held"
	metricOldest   = "oceanhooks_queue_oldest_ready_age_seconds"
	metricAttempts = "oceanhooks_delivery_attempts_total"
	metricTapped   = "oceanhooks_proxy_tapped_total"
	metricDisabled = "oceanhooks_hooks_auto_disabled_total"
)

// sample is one reading of the registry.
type sample struct {
	at                        time.Time
	ready, leased, dead, held float64
	oldest                    float64 // seconds
	delivered, failed, tapped float64 // counters: successful and failed attempts, tapped calls
	disabled                  float64 // counter: hooks auto-disabled
}

// read takes a sample from g.
func read(g prometheus.Gatherer, at time.Time) (sample, error) {
	mfs, err := g.Gather()
	s := sample{at: at}
	for _, mf := range mfs {
		switch mf.GetName() {
		case metricReady:
			s.ready = sum(mf, nil)
		case metricLeased:
			s.leased = sum(mf, nil)
		case metricDead:
			s.dead = sum(mf, nil)
		case metricHeld:
			s.held = sum(mf, nil)
		case metricOldest:
			s.oldest = sum(mf, nil)
		case metricAttempts:
			s.delivered = sum(mf, func(outcome string) bool { return outcome == "success" })
			s.failed = sum(mf, func(outcome string) bool { return outcome == "retry" || outcome == "final" || outcome == "gone" })
		case metricTapped:
			s.tapped = sum(mf, nil)
		case metricDisabled:
			s.disabled = sum(mf, nil)
		}
	}
	return s, err
}

// sum adds mf's gauge or counter values, of the series whose "outcome"
// label keep accepts (nil: all).
func sum(mf *dto.MetricFamily, keep func(outcome string) bool) float64 {
	var total float64
	for _, m := range mf.GetMetric() {
		if keep != nil {
			outcome := ""
			for _, l := range m.GetLabel() {
				if l.GetName() == "outcome" {
					outcome = l.GetValue()
				}
			}
			if !keep(outcome) {
				continue
			}
		}
		switch {
		case m.Counter != nil:
			total += m.Counter.GetValue()
		case m.Gauge != nil:
			total += m.Gauge.GetValue()
		case m.Untyped != nil:
			total += m.Untyped.GetValue()
		}
	}
	return total
}

// ringSize is how many samples the ring keeps: with the default interval,
// the last 15 minutes.
const ringSize = 180

// sampler keeps the latest samples of a registry.
type sampler struct {
	g     prometheus.Gatherer
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex
	ring [ringSize]sample
	n    int // samples in ring
	next int // where the next one goes
}

func newSampler(g prometheus.Gatherer, every time.Duration, now func() time.Time) *sampler {
	return &sampler{g: g, every: every, now: now}
}

// run samples every s.every until ctx ends.
func (s *sampler) run(ctx context.Context) {
	t := time.NewTicker(s.every)
	defer t.Stop()
	s.take()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			s.take()
		}
	}
}

// take reads the registry and keeps the sample.
func (s *sampler) take() {
	smp, _ := read(s.g, s.now()) // a failing collector leaves its values at 0; the rest still count
	s.mu.Lock()
	defer s.mu.Unlock()
	s.ring[s.next] = smp
	s.next = (s.next + 1) % ringSize
	s.n = min(s.n+1, ringSize)
}

// samples returns the kept samples, oldest first.
func (s *sampler) samples() []sample {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]sample, 0, s.n)
	for i := range s.n {
		out = append(out, s.ring[(s.next-s.n+i+ringSize)%ringSize])
	}
	return out
}

// rates are per-second rates over a window.
type rates struct {
	Window                    time.Duration // what they cover: the window, or less while the ring is younger
	Delivered, Failed, Tapped float64
}

// rateOver returns the rates between now (a fresh sample) and the oldest
// kept sample no older than window.
func rateOver(kept []sample, now sample, window time.Duration) rates {
	var from *sample
	for i := range kept {
		if now.at.Sub(kept[i].at) <= window && kept[i].at.Before(now.at) {
			from = &kept[i]
			break
		}
	}
	if from == nil {
		return rates{}
	}
	secs := now.at.Sub(from.at).Seconds()
	if secs <= 0 {
		return rates{}
	}
	per := func(a, b float64) float64 { return max(b-a, 0) / secs }
	return rates{
		Window:    now.at.Sub(from.at).Round(time.Second),
		Delivered: per(from.delivered, now.delivered),
		Failed:    per(from.failed, now.failed),
		Tapped:    per(from.tapped, now.tapped),
	}
}
