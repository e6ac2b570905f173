package ocean

import (
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"time"
)

// IDLen is the length of an Ocean aidx id such as "au1lb5cr9jzs0006".
const IDLen = 16

// idEpoch is the origin of the aid/aidx time part: 2000-01-01T00:00:00Z.
var idEpoch = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC).UnixMilli()

// idSpace is how many values four base-36 digits hold.
const idSpace = 36 * 36 * 36 * 36

// IDGen makes Ocean-style aidx ids: 8 base-36 digits of milliseconds since
// 2000-01-01, 4 of a node chosen once per generator, 4 of a counter within
// the millisecond. Ids of one generator sort in creation order, as strings
// and as Badger keys. Safe for concurrent use.
type IDGen struct {
	mu      sync.Mutex
	node    string
	last    int64
	counter int64
}

// NewIDGen returns a generator whose node part is drawn from r.
func NewIDGen(r *rand.Rand) *IDGen {
	return &IDGen{node: pad36(r.Int64N(idSpace), 4)}
}

// Next returns a new id for time now. A clock that steps back never makes an
// id sort before one already returned.
func (g *IDGen) Next(now time.Time) string {
	ms := max(now.UnixMilli()-idEpoch, 0)
	g.mu.Lock()
	if ms < g.last {
		ms = g.last
	}
	if ms == g.last {
		g.counter++
		if g.counter >= idSpace {
			ms++ // this millisecond is spent: borrow the next one
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

// IsID reports whether s has Ocean's `misskey:id` format (^[a-zA-Z0-9]+$),
// which every id parameter of its API must match.
func IsID(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if (c < '0' || c > '9') && (c < 'a' || c > 'z') && (c < 'A' || c > 'Z') {
			return false
		}
	}
	return true
}
