package hooks

import (
	"sync"
	"time"
)

// limiter allows each key at most max calls in any window (a sliding log),
// as Ocean limits i/webhooks/test per user (and we limit our deliveries and
// redeliver). Memory is bounded by the keys seen within one window.
type limiter struct {
	max    int
	window time.Duration
	now    func() time.Time

	mu   sync.Mutex
	hits map[string][]time.Time // per key, oldest first, at most max
}

// sweepAt is the number of keys beyond which idle ones are dropped.
const sweepAt = 4096

func newLimiter(max int, window time.Duration, now func() time.Time) *limiter {
	return &limiter{max: max, window: window, now: now, hits: map[string][]time.Time{}}
}

// allow records a call of key and reports whether it is within the limit;
// if not, wait is how long until it would be.
func (l *limiter) allow(key string) (wait time.Duration, ok bool) {
	now := l.now()
	l.mu.Lock()
	defer l.mu.Unlock()
	hs := live(l.hits[key], now, l.window)
	if len(hs) >= l.max {
		l.hits[key] = hs
		return hs[0].Add(l.window).Sub(now), false
	}
	l.hits[key] = append(hs, now)
	if len(l.hits) > sweepAt {
		for k, v := range l.hits {
			if len(live(v, now, l.window)) == 0 {
				delete(l.hits, k)
			}
		}
	}
	return 0, true
}

// live drops the calls that left the window.
func live(hs []time.Time, now time.Time, window time.Duration) []time.Time {
	i := 0
	for i < len(hs) && !hs[i].After(now.Add(-window)) {
		i++
	}
	return hs[i:]
}
