package hooks

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// TestRecordAttempts: one call sets the latest attempt of every hook it
// names, in UTC, and skips a deleted hook without bringing it back.
func TestRecordAttempts(t *testing.T) {
	s, _ := newStore(t)
	a := mustCreate(t, s, hook(alice, "a", webhook.Note))
	b := mustCreate(t, s, hook(bob, "b", webhook.Note))
	gone := mustCreate(t, s, hook(alice, "gone", webhook.Note))
	require.NoError(t, s.Delete(alice, gone.ID))
	at := time.Date(2026, 11, 26, 20, 49, 48, 202_000_000, time.FixedZone("JST", 9*3600))

	require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{
		a.ID:    {At: at, Status: 200},
		b.ID:    {At: at.Add(time.Second), Status: 1},
		gone.ID: {At: at, Status: 500},
	}))
	cases := []struct {
		id     string
		at     time.Time
		status int
	}{
		{a.ID, at, 200},
		{b.ID, at.Add(time.Second), 1},
	}
	for _, tc := range cases {
		got, err := s.Get(tc.id)
		require.NoError(t, err)
		require.NotNil(t, got.LatestSentAt)
		assert.True(t, tc.at.Equal(*got.LatestSentAt))
		assert.Equal(t, time.UTC, got.LatestSentAt.Location())
		require.NotNil(t, got.LatestStatus)
		assert.Equal(t, tc.status, *got.LatestStatus)
	}
	_, err := s.Get(gone.ID)
	assert.ErrorIs(t, err, ErrNotFound, "an attempt never brings a deleted hook back")
}
