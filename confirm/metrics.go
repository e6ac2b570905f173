package confirm

import (
	"errors"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the Merger's Prometheus collectors.
type metrics struct {
	api     *prometheus.CounterVec
	stream  *prometheus.CounterVec
	settled *prometheus.CounterVec
}

func newMetrics() *metrics {
	m := &metrics{
		api: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_confirm_api_events_total",
			Help: "Events from the API tap by what became of them (held for the stream; first: a reaction stored first; repeat: its twin came first; direct: no key, queued as derived).",
		}, []string{"result"}),
		stream: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_confirm_stream_events_total",
			Help: "Event deliveries from the stream by what became of them (confirmed: held ones released with the stream's body; new; repeat; unreacted: a removed reaction, whose key is forgotten).",
		}, []string{"result"}),
		settled: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_confirm_unconfirmed_total",
			Help: "Held deliveries the stream did not confirm in time: dropped while it was up, delivered as derived when it was down.",
		}, []string{"result"}),
	}
	for _, r := range []string{"held", "first", "repeat", "direct"} {
		m.api.WithLabelValues(r)
	}
	for _, r := range []string{"confirmed", "new", "repeat", "unreacted"} {
		m.stream.WithLabelValues(r)
	}
	for _, r := range []string{"dropped", "delivered"} {
		m.settled.WithLabelValues(r)
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer) error {
	return errors.Join(r.Register(m.api), r.Register(m.stream), r.Register(m.settled))
}
