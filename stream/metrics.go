package stream

import (
	"errors"
	"regexp"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the subscriber's Prometheus collectors.
type metrics struct {
	connected    prometheus.Gauge
	reconnects   prometheus.Counter
	messages     *prometheus.CounterVec
	events       *prometheus.CounterVec
	sinkFailures prometheus.Counter
	skipped      prometheus.Counter
	lost         prometheus.Counter
}

func newMetrics() *metrics {
	m := &metrics{
		connected: prometheus.NewGauge(prometheus.GaugeOpts{
			Name: "oceanhooks_stream_connected",
			Help: "1 while the subscription to Ocean's event stream is up.",
		}),
		reconnects: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oceanhooks_stream_reconnects_total",
			Help: "Times the event stream's connection was lost and tried again.",
		}),
		messages: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_stream_messages_total",
			Help: "Event stream messages read, by outcome (ignored, unsubscribed, derived, malformed).",
		}, []string{"outcome"}),
		events: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_stream_events_total",
			Help: "Events taken from the event stream, by type.",
		}, []string{"type"}),
		sinkFailures: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oceanhooks_stream_store_failures_total",
			Help: "Failed attempts to store events from the stream (retried).",
		}),
		skipped: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oceanhooks_stream_reactions_skipped_total",
			Help: "Reactions from the stream not sent because a read they needed failed.",
		}),
		lost: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oceanhooks_stream_events_lost_total",
			Help: "Events read from the stream that could not be stored before shutdown.",
		}),
	}
	for _, o := range []Outcome{Ignored, Unsubscribed, Derived, Malformed} {
		m.messages.WithLabelValues(string(o))
	}
	return m
}

func (m *metrics) register(r prometheus.Registerer, _ *Subscriber) error {
	return errors.Join(r.Register(m.connected), r.Register(m.reconnects), r.Register(m.messages),
		r.Register(m.events), r.Register(m.sinkFailures), r.Register(m.skipped), r.Register(m.lost))
}

// userinfo matches the password part of a URL's userinfo.
var userinfo = regexp.MustCompile(`(://[^:/@\s]*:)[^@\s]*@`)

// redactPasswords hides every URL password in s.
func redactPasswords(s string) string { return userinfo.ReplaceAllString(s, "${1}xxxxx@") }
