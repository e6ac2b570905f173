package queue

import (
	"maps"
	"sync"
)

// deadCounts counts the dead letters of each hook, in memory, beside the
// total (Queue.dead), so that operators see them per hook without a scan of
// the store. Open counts them from disk; every change of the total changes
// them in the same step.
type deadCounts struct {
	mu sync.Mutex
	m  map[string]int
}

// add changes hook's count by n.
func (d *deadCounts) add(hook string, n int) {
	if n == 0 {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.m == nil {
		d.m = map[string]int{}
	}
	if d.m[hook] += n; d.m[hook] <= 0 {
		delete(d.m, hook)
	}
}

// DeadLetters counts the dead letters of each hook that has any.
func (q *Queue) DeadLetters() map[string]int {
	q.deadOf.mu.Lock()
	defer q.deadOf.mu.Unlock()
	return maps.Clone(q.deadOf.m)
}
