package hooks

import (
	"math/rand/v2"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const day = 24 * time.Hour

// newDisablingStore opens a store that deactivates hooks failing for window.
func newDisablingStore(t *testing.T, dir string, window time.Duration) (*Store, *prometheus.Registry) {
	t.Helper()
	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	reg := prometheus.NewRegistry()
	s, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(7, 8)), DisableAfter: window, Registerer: reg})
	require.NoError(t, err)
	return s, reg
}

// step is one delivery attempt of the hook, at t0 + after.
type step struct {
	after  time.Duration
	failed bool
}

// TestAutoDisable: the attempts' times are the clock. A hook whose attempts
// all failed for the window is deactivated by the attempt that completes
// it, and that attempt is told why; one success inside the window, a window
// of 0, or a hook already off disable nothing.
func TestAutoDisable(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	failingDaily := func(days int) []step {
		var s []step
		for d := range days + 1 {
			s = append(s, step{time.Duration(d) * day, true})
		}
		return s
	}
	tests := []struct {
		name       string
		window     time.Duration
		inactive   bool
		steps      []step
		disabledAt int // index of the step that disables; -1: none does
		since      time.Duration
		failures   int
	}{
		{name: "failing for the whole window disables", window: 5 * day, steps: failingDaily(6), disabledAt: 5, since: 0, failures: 6},
		{name: "one attempt short of the window", window: 5 * day,
			steps: []step{{0, true}, {5*day - time.Second, true}}, disabledAt: -1},
		{name: "one success inside the window does not", window: 5 * day,
			steps:      []step{{0, true}, {day, true}, {2 * day, false}, {3 * day, true}, {5 * day, true}, {7*day + time.Hour, true}, {8 * day, true}},
			disabledAt: 6, since: 3 * day, failures: 4},
		{name: "a success that began before the run does not end it", window: 5 * day,
			steps: []step{{day, true}, {day - time.Second, false}, {6 * day, true}}, disabledAt: 2, since: day, failures: 2},
		{name: "0 never disables", window: 0, steps: failingDaily(30), disabledAt: -1},
		{name: "a hook already off stays as it is", window: 5 * day, inactive: true, steps: failingDaily(6), disabledAt: -1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, reg := newDisablingStore(t, t.TempDir(), tt.window)
			h := hook(alice, "a", webhook.Note)
			h.Active = !tt.inactive
			h = mustCreate(t, s, h)
			for i, st := range tt.steps {
				why := s.Attempted(h.ID, t0.Add(st.after), st.failed)
				got, err := s.Get(h.ID)
				require.NoError(t, err)
				if i == tt.disabledAt {
					assert.Contains(t, why, "hook deactivated", "step %d", i)
					assert.Contains(t, why, "delivery.disableAfter")
					assert.False(t, got.Active, "step %d", i)
					require.NotNil(t, got.DisabledAt)
					require.NotNil(t, got.FailingSince)
					assert.True(t, t0.Add(tt.since).Equal(*got.FailingSince), "failing since %v", got.FailingSince)
					assert.Equal(t, tt.failures, got.Failures)
					assert.False(t, s.Subscribed(alice, webhook.Note), "the index dropped it")
					tgt, ok := s.Target(h.ID)
					require.True(t, ok)
					assert.False(t, tgt.Active)
					break
				}
				assert.Empty(t, why, "step %d", i)
				assert.Equal(t, !tt.inactive, got.Active, "step %d", i)
				assert.Nil(t, got.DisabledAt)
			}
			want := 0.0
			if tt.disabledAt >= 0 {
				want = 1
			}
			assert.Equal(t, want, testutil.ToFloat64(s.autoDisabled))
			n, err := testutil.GatherAndCount(reg, "oceanhooks_hooks_auto_disabled_total")
			require.NoError(t, err)
			assert.Equal(t, 1, n, "the counter is registered")
			requireIndexMatchesStore(t, s)
		})
	}
}

// TestReactivationResetsTheClock: an auto-disabled hook activated again, by
// its owner or an operator, starts a fresh window: the failures before do not
// count, and the next window of failures disables it again.
func TestReactivationResetsTheClock(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	tests := []struct {
		name     string
		activate func(s *Store, id string) error
	}{
		{"by its owner", func(s *Store, id string) error {
			_, err := s.Update(alice, id, Patch{Active: ptr(true)})
			return err
		}},
		{"by an operator", func(s *Store, id string) error {
			_, err := s.SetActive(id, true)
			return err
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newDisablingStore(t, t.TempDir(), 5*day)
			h := mustCreate(t, s, hook(alice, "a", webhook.Note))
			s.Attempted(h.ID, t0, true)
			require.NotEmpty(t, s.Attempted(h.ID, t0.Add(5*day), true))

			require.NoError(t, tt.activate(s, h.ID))
			got, err := s.Get(h.ID)
			require.NoError(t, err)
			assert.True(t, got.Active)
			assert.Nil(t, got.FailingSince, "activation clears the run")
			assert.Zero(t, got.Failures)
			assert.Nil(t, got.DisabledAt)
			assert.True(t, s.Subscribed(alice, webhook.Note))

			assert.Empty(t, s.Attempted(h.ID, t0.Add(6*day), true), "the failures before activation do not count")
			assert.Empty(t, s.Attempted(h.ID, t0.Add(11*day-time.Second), true))
			assert.NotEmpty(t, s.Attempted(h.ID, t0.Add(11*day), true), "a fresh window of failures disables it again")
		})
	}
}

// TestFailingRunSurvivesARestart: the run goes to disk with the queue's
// batch of latest attempts, so the window goes on after a restart; a
// success in a later batch clears it on disk too.
func TestFailingRunSurvivesARestart(t *testing.T) {
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	dir := t.TempDir()
	db := openDB(t, dir)
	s, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(7, 8)), DisableAfter: 5 * day})
	require.NoError(t, err)
	failing := mustCreate(t, s, hook(alice, "failing", webhook.Note))
	healed := mustCreate(t, s, hook(bob, "healed", webhook.Note))
	for d := range 3 {
		at := t0.Add(time.Duration(d) * day)
		s.Attempted(failing.ID, at, true)
		s.Attempted(healed.ID, at, d < 2)
	}
	s.RecordAttempts(map[string]webhook.LatestAttempt{
		failing.ID: {At: t0.Add(2 * day), Status: 500},
		healed.ID:  {At: t0.Add(2 * day), Status: 200},
	})
	got, err := s.Get(failing.ID)
	require.NoError(t, err)
	require.NotNil(t, got.FailingSince)
	assert.True(t, t0.Equal(*got.FailingSince))
	assert.Equal(t, 3, got.Failures)
	got, err = s.Get(healed.ID)
	require.NoError(t, err)
	assert.Nil(t, got.FailingSince, "a success in the batch clears the run on disk")
	require.NoError(t, db.Close())

	db = openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err = Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(9, 9)), DisableAfter: 5 * day})
	require.NoError(t, err)
	assert.Empty(t, s.Attempted(healed.ID, t0.Add(5*day), true))
	why := s.Attempted(failing.ID, t0.Add(5*day), true)
	assert.Contains(t, why, "hook deactivated")
	got, err = s.Get(failing.ID)
	require.NoError(t, err)
	assert.False(t, got.Active)
	assert.Equal(t, 4, got.Failures)
}

// TestSetActive: an operator switches any user's hook off and on; the same
// state again writes nothing; an unknown id is ErrNotFound.
func TestSetActive(t *testing.T) {
	s, _ := newStore(t)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))
	got, err := s.SetActive(h.ID, false)
	require.NoError(t, err)
	assert.False(t, got.Active)
	assert.False(t, s.Subscribed(alice, webhook.Note))

	before := s.db.MaxVersion()
	got, err = s.SetActive(h.ID, false)
	require.NoError(t, err)
	assert.False(t, got.Active)
	assert.Equal(t, before, s.db.MaxVersion(), "no write when nothing changes")

	got, err = s.SetActive(h.ID, true)
	require.NoError(t, err)
	assert.True(t, got.Active)
	assert.True(t, s.Subscribed(alice, webhook.Note))
	_, err = s.SetActive("nope", true)
	assert.ErrorIs(t, err, ErrNotFound)
	requireIndexMatchesStore(t, s)
}
