package hooks

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const oceanHookA = "au1lb5cz9jzs0007"

func native(user, oceanID string, on ...string) Hook {
	h := hook(user, "n-"+oceanID, on...)
	h.NativeID = oceanID
	return h
}

func TestImportKeepsOceansHookOnce(t *testing.T) {
	s, _ := newStore(t)
	sent := time.Date(2026, 11, 26, 20, 49, 48, 202e6, time.FixedZone("x", 3600))
	h := native(alice, oceanHookA, webhook.Note, webhook.Reply)
	h.LatestSentAt, h.LatestStatus = &sent, ptr(200)

	id, imported, err := s.Import(h)
	require.NoError(t, err)
	assert.True(t, imported)
	assert.Equal(t, oceanHookA, id, "Ocean's id, so receivers see the same hookId")
	got, err := s.Get(id)
	require.NoError(t, err)
	assert.Equal(t, Hook{ID: id, UserID: alice, Name: h.Name, On: h.On, URL: h.URL, Secret: h.Secret, Active: true,
		LatestSentAt: ptr(sent.UTC()), LatestStatus: ptr(200), NativeID: oceanHookA}, got)
	assert.Len(t, s.ActiveHooks(alice, webhook.Note), 1, "an active import fires from the sidecar at once")
	requireIndexMatchesStore(t, s)

	again := h
	again.Name = "changed in Ocean since"
	id2, imported, err := s.Import(again)
	require.NoError(t, err)
	assert.False(t, imported, "the same hook of Ocean is imported once")
	assert.Equal(t, id, id2)
	n, err := s.Count(alice)
	require.NoError(t, err)
	assert.Equal(t, 1, n)

	require.NoError(t, s.Delete(alice, id))
	_, imported, err = s.Import(h)
	require.NoError(t, err)
	assert.False(t, imported, "a hook its owner deleted is not brought back")
	found, ok, err := s.Imported(alice, oceanHookA)
	require.NoError(t, err)
	assert.True(t, ok)
	assert.Equal(t, id, found)
}

func TestImportTakesAFreshIDWhenOceansIsTaken(t *testing.T) {
	s, _ := newStore(t)
	_, imported, err := s.Import(native(alice, oceanHookA, webhook.Note))
	require.NoError(t, err)
	require.True(t, imported)
	// Another user's hook of Ocean with the same id cannot exist in one
	// Ocean; two Oceans' imports into one store can.
	id, imported, err := s.Import(native(bob, oceanHookA, webhook.Note))
	require.NoError(t, err)
	assert.True(t, imported)
	assert.NotEqual(t, oceanHookA, id)
	got, err := s.Get(id)
	require.NoError(t, err)
	assert.Equal(t, oceanHookA, got.NativeID)
	assert.Equal(t, bob, got.UserID)
}

func TestImportIgnoresTheLimitAndRefusesWhatWeDoNotSend(t *testing.T) {
	s, _ := newStore(t)
	for i := range 5 {
		_, _, err := s.Import(native(alice, "au1lb5cz9jzs000"+string(rune('a'+i)), webhook.Note))
		require.NoError(t, err)
	}
	n, err := s.Count(alice)
	require.NoError(t, err)
	assert.Equal(t, 5, n, "every hook the user had in Ocean, whatever the limit")
	_, err = s.Create(hook(alice, "sixth", webhook.Note), 3)
	assert.ErrorIs(t, err, ErrLimit)

	_, _, err = s.Import(native(admin, oceanHookA, webhook.Note, webhook.ReportCreated))
	assert.ErrorIs(t, err, ErrNotImportable)
	_, _, err = s.Import(native(alice, "not-an-id", webhook.Note))
	assert.Error(t, err)
	assert.Equal(t, []string{"reportResolved", "sometimeLater"}, UnsupportedTypes([]string{"note", "reportResolved", "sometimeLater"}))
}

func TestConcurrentImportsOfOneHook(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	imports := 0
	for range 16 {
		wg.Go(func() {
			_, imported, err := s.Import(native(alice, oceanHookA, webhook.Note))
			assert.NoError(t, err)
			if imported {
				mu.Lock()
				imports++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 1, imports)
	all, err := s.ListAll()
	require.NoError(t, err)
	assert.Len(t, all, 1)
}

func TestImportsAndTakeoverSurviveAReopen(t *testing.T) {
	s, dir := newStore(t)
	_, _, err := s.Import(native(alice, oceanHookA, webhook.Note))
	require.NoError(t, err)
	done, err := s.TakenOver(alice)
	require.NoError(t, err)
	assert.False(t, done)
	require.NoError(t, s.MarkTakenOver(alice))
	require.NoError(t, s.db.Close())

	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s2, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(1, 2))})
	require.NoError(t, err)
	_, imported, err := s2.Import(native(alice, oceanHookA, webhook.Note))
	require.NoError(t, err)
	assert.False(t, imported)
	done, err = s2.TakenOver(alice)
	require.NoError(t, err)
	assert.True(t, done)
	done, err = s2.TakenOver(bob)
	require.NoError(t, err)
	assert.False(t, done)
}
