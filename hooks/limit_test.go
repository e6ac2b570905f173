package hooks

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
)

func TestLimiter(t *testing.T) {
	clk := &apiClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(3, time.Minute, clk.Now)
	for range 3 {
		_, ok := l.allow("u")
		assert.True(t, ok)
		clk.Advance(10 * time.Second)
	}
	wait, ok := l.allow("u")
	assert.False(t, ok)
	assert.Equal(t, 30*time.Second, wait, "until the first call is a minute old")
	_, ok = l.allow("other")
	assert.True(t, ok, "keys are independent")

	clk.Advance(30 * time.Second)
	_, ok = l.allow("u")
	assert.True(t, ok, "the window slid past the first call")
	_, ok = l.allow("u")
	assert.False(t, ok)
}

func TestLimiterForgetsIdleKeys(t *testing.T) {
	clk := &apiClock{t: time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)}
	l := newLimiter(1, time.Minute, clk.Now)
	for i := range sweepAt {
		l.allow(fmt.Sprint(i))
	}
	assert.Len(t, l.hits, sweepAt)
	clk.Advance(time.Minute)
	l.allow("fresh")
	assert.Len(t, l.hits, 1, "keys idle for a whole window are dropped")
}
