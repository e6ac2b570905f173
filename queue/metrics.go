package queue

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// metrics are the queue's Prometheus collectors. The depth gauges are read
// from a depthSource at each scrape: the Badger queue's counters kept in
// memory (a scrape never scans the store), the PostgreSQL queue's counts in
// SQL (the whole store's, every sidecar's).
type metrics struct {
	enqueued  prometheus.Counter
	abandoned prometheus.Counter
	attempts  *prometheus.CounterVec
	latency   prometheus.Histogram
	depth     *depthCollector
}

// depth is what the depth gauges show.
type depth struct {
	ready, leased, dead, held int64
	oldest                    time.Duration // how long the most overdue ready delivery has been due
}

// depthSource reads the queue's depth.
type depthSource interface{ depth() depth }

func newMetrics(q depthSource) *metrics {
	return &metrics{
		enqueued: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oceanhooks_queue_enqueued_total",
			Help: "Deliveries stored by Enqueue.",
		}),
		abandoned: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "oceanhooks_queue_enqueue_abandoned_total",
			Help: "Deliveries whose caller stopped waiting for the disk (delivered only if their write completed later).",
		}),
		attempts: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "oceanhooks_delivery_attempts_total",
			Help: "Delivery attempts by outcome (success, retry, final, gone, dropped).",
		}, []string{"outcome"}),
		latency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "oceanhooks_delivery_attempt_duration_seconds",
			Help:    "Duration of delivery attempts, quick retries included.",
			Buckets: []float64{.005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		depth: &depthCollector{q: q,
			ready:  prometheus.NewDesc("oceanhooks_queue_ready", "Deliveries waiting for their due time or a worker.", nil, nil),
			leased: prometheus.NewDesc("oceanhooks_queue_leased", "Deliveries being attempted.", nil, nil),
			dead:   prometheus.NewDesc("oceanhooks_queue_dead", "Dead letters kept for redelivery.", nil, nil),
			held:   prometheus.NewDesc("oceanhooks_queue_held", "Deliveries held until Ocean's event stream confirms their event.", nil, nil),
			oldest: prometheus.NewDesc("oceanhooks_queue_oldest_ready_age_seconds", "How long the most overdue ready delivery has been due.", nil, nil),
		},
	}
}

func (m *metrics) register(r prometheus.Registerer) error {
	return errors.Join(r.Register(m.enqueued), r.Register(m.abandoned), r.Register(m.attempts), r.Register(m.latency), r.Register(m.depth))
}

type depthCollector struct {
	q                                 depthSource
	ready, leased, dead, held, oldest *prometheus.Desc
}

func (c *depthCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.ready
	ch <- c.leased
	ch <- c.dead
	ch <- c.held
	ch <- c.oldest
}

func (c *depthCollector) Collect(ch chan<- prometheus.Metric) {
	d := c.q.depth()
	ch <- prometheus.MustNewConstMetric(c.ready, prometheus.GaugeValue, float64(d.ready))
	ch <- prometheus.MustNewConstMetric(c.leased, prometheus.GaugeValue, float64(d.leased))
	ch <- prometheus.MustNewConstMetric(c.dead, prometheus.GaugeValue, float64(d.dead))
	ch <- prometheus.MustNewConstMetric(c.held, prometheus.GaugeValue, float64(d.held))
	ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, d.oldest.Seconds())
}

// depth is read from the counters kept in memory.
func (q *Queue) depth() depth {
	leased := q.leased.Load() // once, so that ready + leased is the ready keys' count
	return depth{ready: max(q.readyKeys.Load()-leased, 0), leased: leased, dead: q.dead.Load(),
		held: q.held.Load(), oldest: q.oldestReadyAge()}
}

// readyNow is how many deliveries wait for their due time or a worker:
// ready keys on disk less those an attempt holds.
func (q *Queue) readyNow() int64 { return max(q.readyKeys.Load()-q.leased.Load(), 0) }

// oldestReadyAge is how long the earliest due ready delivery has been due (0
// when nothing is overdue). The schedule's per-hook earliest due may be
// slightly early after a claim; it is corrected at the next dispatch.
func (q *Queue) oldestReadyAge() time.Duration {
	now := q.opts.Now().UnixMilli()
	q.mu.Lock()
	earliest := int64(noDue)
	for _, st := range q.sched {
		earliest = min(earliest, st.next())
	}
	q.mu.Unlock()
	if earliest == noDue || earliest >= now {
		return 0
	}
	return time.Duration(now-earliest) * time.Millisecond
}
