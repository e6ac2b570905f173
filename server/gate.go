package server

import (
	"sync"
	"time"
)

// gate counts the handlers that may touch the store, so that the store is
// closed only after they returned (or a bounded wait ended), and admits none
// once closing began.
type gate struct {
	mu      sync.Mutex
	closing bool
	n       int
	idle    chan struct{} // closed when closing and n is 0
}

// enter admits one handler; false once closing began.
func (g *gate) enter() bool {
	g.mu.Lock()
	defer g.mu.Unlock()
	if g.closing {
		return false
	}
	g.n++
	return true
}

// leave ends a handler that enter admitted.
func (g *gate) leave() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.n--
	if g.closing && g.n == 0 && g.idle != nil {
		close(g.idle)
		g.idle = nil
	}
}

// close admits no more handlers and waits until those admitted returned or
// timeout fired. It reports how many were still running then (0: all
// returned) and how many were running when closing began.
func (g *gate) close(timeout func() <-chan time.Time) (left, running int) {
	g.mu.Lock()
	g.closing = true
	running = g.n
	if running == 0 {
		g.mu.Unlock()
		return 0, 0
	}
	idle := make(chan struct{})
	g.idle = idle
	g.mu.Unlock()

	select {
	case <-idle:
		return 0, running
	case <-timeout():
		g.mu.Lock()
		defer g.mu.Unlock()
		return g.n, running
	}
}
