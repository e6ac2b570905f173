package proxy

import (
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestTappedCountsResolveTheirSeriesOnce: counting a tapped call's upstream
// status looks its series up by label the first time a status is seen
// only; after that it costs no allocation.
func TestTappedCountsResolveTheirSeriesOnce(t *testing.T) {
	p, err := New(Options{Upstream: mustURL(t, "http://127.0.0.1:1"), Consumer: &recorder{},
		Taps: []Tap{{Endpoint: "notes/create"}}})
	require.NoError(t, err)
	rt := p.routes["notes/create"]
	require.NotNil(t, rt)
	for _, status := range []int{200, 204, 429} {
		p.m.tapped(rt, status)
		allocs := testing.AllocsPerRun(100, func() { p.m.tapped(rt, status) })
		assert.Zero(t, allocs, "status %d", status)
	}
	assert.Equal(t, 102.0, counter(t, p.m.tappedCalls, "notes/create", "200"), "one for the first call, 101 from AllocsPerRun")
	assert.Equal(t, 102.0, counter(t, p.m.tappedCalls, "notes/create", "429"))
	p.m.tapped(rt, 42) // outside the table: still counted
	assert.Equal(t, 1.0, counter(t, p.m.tappedCalls, "notes/create", "42"))
}
