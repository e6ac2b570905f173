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

// TestLatestAttemptsKeyOnBadger: on Badger a batch of latest attempts is
// written beside the hook's record, not into it (the record is neither read
// nor rewritten); every read lays it over the record, a write of the record
// folds it in, a restart keeps it, and a delete leaves nothing behind, even
// for an attempt recorded after the hook went.
func TestLatestAttemptsKeyOnBadger(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	s, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(7, 8))})
	require.NoError(t, err)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))
	other := mustCreate(t, s, hook(alice, "b", webhook.Note))
	version := func(key []byte) uint64 {
		var v uint64
		require.NoError(t, db.View(func(txn *badger.Txn) error {
			item, err := txn.Get(key)
			if err == nil {
				v = item.Version()
			}
			return err
		}))
		return v
	}
	before := version(keyHook(h.ID))
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 123_456_789, time.UTC)
	s.Attempted(h.ID, t0, true)
	s.Attempted(h.ID, t0.Add(time.Minute), true)
	require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{h.ID: {At: t0.Add(time.Minute), Status: 502}}))
	assert.Equal(t, before, version(keyHook(h.ID)), "the record is not rewritten")

	check := func(step string, at time.Time, status, failures int) {
		t.Helper()
		for _, got := range []func() (Hook, error){
			func() (Hook, error) { return s.Get(h.ID) },
			func() (Hook, error) { return pick(h.ID)(s.List(alice)) },
			func() (Hook, error) { return pick(h.ID)(s.ListAll()) },
		} {
			g, err := got()
			require.NoError(t, err, step)
			require.NotNil(t, g.LatestSentAt, step)
			assert.True(t, at.Equal(*g.LatestSentAt), "%s: latestSentAt %s", step, g.LatestSentAt)
			assert.Equal(t, status, *g.LatestStatus, step)
			assert.Equal(t, failures, g.Failures, step)
			if failures > 0 {
				require.NotNil(t, g.FailingSince, step)
				assert.True(t, t0.Equal(*g.FailingSince), step)
			}
		}
	}
	check("recorded", t0.Add(time.Minute), 502, 2)

	name := "renamed"
	_, err = s.Update(alice, h.ID, Patch{Name: &name})
	require.NoError(t, err)
	check("after an update of the record", t0.Add(time.Minute), 502, 2)
	latestKeys := func() int {
		n := 0
		require.NoError(t, db.View(func(txn *badger.Txn) error {
			return eachValue(txn, prefixLatest, func(_, _ []byte) error { n++; return nil })
		}))
		return n
	}
	assert.Zero(t, latestKeys(), "the update folded the key into the record")

	require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{h.ID: {At: t0.Add(2 * time.Minute), Status: 500}}))
	require.NoError(t, db.Close())
	db = openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err = Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(9, 9))})
	require.NoError(t, err)
	check("after a restart", t0.Add(2*time.Minute), 500, 2)

	require.NoError(t, s.Delete(alice, other.ID))
	require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{other.ID: {At: t0, Status: 200}}))
	require.NoError(t, s.Delete(alice, h.ID))
	assert.Zero(t, latestKeys(), "a deleted hook leaves no latest attempt behind")
}

// pick returns a function that finds hook id in a list.
func pick(id string) func([]Hook, error) (Hook, error) {
	return func(hooks []Hook, err error) (Hook, error) {
		if err != nil {
			return Hook{}, err
		}
		for _, h := range hooks {
			if h.ID == id {
				return h, nil
			}
		}
		return Hook{}, fmt.Errorf("hook %s not listed", id)
	}
}
