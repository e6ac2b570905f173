package queue

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// idLen is the length of a delivery id.
const idLen = 16

// epoch2000 is the origin of Ocean's aid/aidx time part.
var epoch2000 = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// idGen makes Ocean-style aidx ids: 8 base-36 digits of milliseconds since
// 2000, 4 of a per-process node, 4 of a counter. They sort by time, so the
// newest-first listing and its untilId paging follow creation order.
type idGen struct {
	mu      sync.Mutex
	node    string
	last    int64
	counter int64
}

func newIDGen(r *rand.Rand) *idGen {
	return &idGen{node: pad36(r.Int64N(36*36*36*36), 4)}
}

func (g *idGen) next(now time.Time) string {
	ms := max(now.UnixMilli()-epoch2000, 0)
	g.mu.Lock()
	if ms < g.last {
		ms = g.last // never go back in time: ids of one process stay ordered
	}
	if ms == g.last {
		g.counter++
		if g.counter >= 36*36*36*36 {
			// The counter is spent for this millisecond: borrow the next one.
			ms++
			g.counter = 0
		}
	} else {
		g.counter = 0
	}
	g.last = ms
	c := g.counter
	g.mu.Unlock()
	return pad36(ms, 8) + g.node + pad36(c, 4)
}

func pad36(v int64, n int) string {
	s := strconv.FormatInt(v, 36)
	if len(s) >= n {
		return s[len(s)-n:]
	}
	return strings.Repeat("0", n-len(s)) + s
}

// validID reports whether s can be a delivery id (used before a lookup).
func validID(s string) bool {
	if len(s) != idLen {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') {
			return false
		}
	}
	return true
}
