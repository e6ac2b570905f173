package hooks

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"

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

// TestRecordAttemptsOfManyHooks: a batch larger than one Badger transaction
// can hold (the queue hands over every hook that had an attempt in the last
// interval, thousands on a busy server) is still recorded whole.
func TestRecordAttemptsOfManyHooks(t *testing.T) {
	dir := t.TempDir()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(false).
		WithMemTableSize(1 << 20).WithValueThreshold(512)) // the server's value threshold, a smaller memtable
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(7, 8))})
	require.NoError(t, err)
	const users, perUser = 200, 20
	at := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)
	latest := map[string]webhook.LatestAttempt{}
	for u := range users {
		for i := range perUser {
			h, err := s.Create(hook(fmt.Sprintf("user%04d", u), fmt.Sprintf("h%d", i), webhook.Note), perUser)
			require.NoError(t, err)
			latest[h.ID] = webhook.LatestAttempt{At: at.Add(time.Duration(len(latest)) * time.Millisecond), Status: 200 + len(latest)%2}
		}
	}
	require.NoError(t, s.RecordAttempts(latest))
	all, err := s.ListAll()
	require.NoError(t, err)
	require.Len(t, all, users*perUser)
	for _, h := range all {
		want := latest[h.ID]
		require.NotNil(t, h.LatestSentAt, h.ID)
		require.True(t, want.At.Equal(*h.LatestSentAt), h.ID)
		require.Equal(t, want.Status, *h.LatestStatus, h.ID)
	}
}
