package ocean

import (
	"math/rand/v2"
	"regexp"
	"slices"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestIDGen(t *testing.T) {
	g := NewIDGen(rand.New(rand.NewPCG(1, 2)))
	at := time.Date(2026, 11, 26, 20, 49, 29, 0, time.UTC)
	shape := regexp.MustCompile(`^[0-9a-z]{16}$`)

	var ids []string
	for i := range 50 {
		now := at.Add(time.Duration(i/10) * time.Millisecond) // ten ids per millisecond
		ids = append(ids, g.Next(now))
	}
	ids = append(ids, g.Next(at.Add(-time.Hour))) // the clock stepped back
	for _, id := range ids {
		assert.Regexp(t, shape, id)
		assert.True(t, IsID(id))
	}
	assert.True(t, slices.IsSorted(ids), "ids sort in creation order")
	assert.Len(t, slices.Compact(slices.Clone(ids)), len(ids), "ids are unique")

	// The time part is Ocean's: the capture's hooks were created at
	// 2026-11-26T20:49:29Z and their ids start with "au1lb5".
	assert.Equal(t, "au1lb5", ids[0][:6])
}

func TestIDGenCounterOverflowBorrowsTheNextMillisecond(t *testing.T) {
	g := NewIDGen(rand.New(rand.NewPCG(3, 4)))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	g.last = at.UnixMilli() - idEpoch
	g.counter = idSpace - 2
	a := g.Next(at)
	b := g.Next(at)
	require.Less(t, a, b)
	assert.Equal(t, "zzzz", a[12:])
	assert.Equal(t, "0000", b[12:])
	assert.Equal(t, pad36(at.UnixMilli()-idEpoch+1, 8), b[:8])
}

func TestIsID(t *testing.T) {
	tests := []struct {
		in   string
		want bool
	}{
		{"au1lb5cr9jzs0006", true},
		{"ABCxyz019", true},
		{"", false},
		{"au1lb5cr-jzs0006", false},
		{"a b", false},
		{"ü", false},
		{"../x", false},
	}
	for _, tt := range tests {
		t.Run(tt.in, func(t *testing.T) { assert.Equal(t, tt.want, IsID(tt.in)) })
	}
}
