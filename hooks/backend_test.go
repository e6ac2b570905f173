package hooks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// The contract of a backend, run against each: the same calls on a Store
// must give the same answers, and survive a restart, on Badger and on
// PostgreSQL.

// opener opens Stores on one set of data: the first call on fresh, empty
// data, each later one on the same data again (a restart of the process;
// on Badger it closes the database the previous Store used). seed makes the
// Store's ids differ from those of the Stores before it.
type opener func(t *testing.T, seed uint64, opts Options) *Store

// backends are the backends the contract runs on.
var backends = []struct {
	name string
	new  func(t *testing.T) opener
}{
	{name: "badger", new: func(t *testing.T) opener {
		dir := filepath.Join(t.TempDir(), "badger")
		var mu sync.Mutex
		var last interface{ Close() error }
		return func(t *testing.T, seed uint64, opts Options) *Store {
			mu.Lock()
			defer mu.Unlock()
			if last != nil {
				require.NoError(t, last.Close())
			}
			db := openDB(t, dir)
			t.Cleanup(func() { _ = db.Close() })
			last = db
			s, err := Open(db, contractOptions(seed, opts))
			require.NoError(t, err)
			return s
		}
	}},
	{name: "postgres", new: func(t *testing.T) opener {
		db := pgtest.Open(t)
		first := true
		return func(t *testing.T, seed uint64, opts Options) *Store {
			handle := db
			if !first {
				handle = pgtest.Again(t, db)
			}
			first = false
			s, err := OpenPostgres(context.Background(), handle, contractOptions(seed, opts))
			require.NoError(t, err)
			return s
		}
	}},
}

func contractOptions(seed uint64, opts Options) Options {
	if opts.Now == nil {
		opts.Now = newTestClock().Now
	}
	opts.Rand = rand.New(rand.NewPCG(seed, seed^0x9e3779b97f4a7c15))
	return opts
}

// forEachBackend runs test once per backend.
func forEachBackend(t *testing.T, test func(t *testing.T, open opener)) {
	for _, b := range backends {
		t.Run(b.name, func(t *testing.T) { test(t, b.new(t)) })
	}
}

func TestContractCRUD(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		a1 := mustCreate(t, s, hook(alice, "a1", webhook.Note, webhook.Follow))
		b1 := mustCreate(t, s, hook(bob, "b1", webhook.Mention))
		a2 := mustCreate(t, s, hook(alice, "a2"))
		assert.Less(t, a1.ID, b1.ID)
		assert.Less(t, b1.ID, a2.ID)
		assert.Equal(t, []string{}, a2.On, "an empty on is an empty array, never null")

		got, err := s.Get(a1.ID)
		require.NoError(t, err)
		assert.Equal(t, a1, got)
		got, err = s.Owned(alice, a1.ID)
		require.NoError(t, err)
		assert.Equal(t, a1, got)
		_, err = s.Owned(bob, a1.ID)
		assert.ErrorIs(t, err, ErrNotFound)
		_, err = s.Get("au1nohook0000000")
		assert.ErrorIs(t, err, ErrNotFound)

		list, err := s.List(alice)
		require.NoError(t, err)
		assert.Equal(t, []Hook{a1, a2}, list, "creation order")
		list, err = s.List("au1nobody0000000")
		require.NoError(t, err)
		assert.Equal(t, []Hook{}, list)
		all, err := s.ListAll()
		require.NoError(t, err)
		assert.Equal(t, []Hook{a1, b1, a2}, all)
		n, err := s.Count(alice)
		require.NoError(t, err)
		assert.Equal(t, 2, n)

		assert.True(t, s.Subscribed(alice, webhook.Follow))
		assert.Equal(t, []webhook.Target{a1.target()}, s.ActiveHooks(alice, webhook.Note))
		target, ok := s.Target(b1.ID)
		assert.True(t, ok)
		assert.Equal(t, b1.target(), target)

		_, err = s.Create(hook("a/b", "bad"), 10)
		assert.Error(t, err, "an invalid user id")
		requireIndexMatchesStore(t, s)
	})
}

func TestContractLimit(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		for i := range 3 {
			_, err := s.Create(hook(alice, fmt.Sprint(i), webhook.Note), 3)
			require.NoError(t, err)
		}
		_, err := s.Create(hook(alice, "fourth", webhook.Note), 3)
		assert.ErrorIs(t, err, ErrLimit)
		_, err = s.Create(hook(bob, "zero", webhook.Note), 0)
		assert.ErrorIs(t, err, ErrLimit, "a limit of 0 allows none")

		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		for i := range 12 {
			wg.Go(func() {
				if _, err := s.Create(hook(bob, fmt.Sprint(i), webhook.Note), 4); err == nil {
					mu.Lock()
					created++
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, 4, created, "concurrent creates stop at the limit")
		n, err := s.Count(bob)
		require.NoError(t, err)
		assert.Equal(t, 4, n)
		requireIndexMatchesStore(t, s)
	})
}

func TestContractUpdateAndSetActive(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		h := mustCreate(t, s, hook(alice, "a", webhook.Note))

		got, err := s.Update(alice, h.ID, Patch{Name: ptr("renamed"), URL: ptr("https://example.org/x"),
			Secret: ptr("s2"), On: &[]string{webhook.Follow, webhook.Follow}})
		require.NoError(t, err)
		want := h
		want.Name, want.URL, want.Secret, want.On = "renamed", "https://example.org/x", "s2", []string{webhook.Follow, webhook.Follow}
		assert.Equal(t, want, got)
		stored, err := s.Get(h.ID)
		require.NoError(t, err)
		assert.Equal(t, want, stored)
		assert.False(t, s.Subscribed(alice, webhook.Note))
		assert.True(t, s.Subscribed(alice, webhook.Follow))

		_, err = s.Update(bob, h.ID, Patch{Name: ptr("stolen")})
		assert.ErrorIs(t, err, ErrNotFound)
		_, err = s.Update(alice, "au1nohook0000000", Patch{Name: ptr("x")})
		assert.ErrorIs(t, err, ErrNotFound)

		got, err = s.SetActive(h.ID, false)
		require.NoError(t, err)
		assert.False(t, got.Active)
		assert.False(t, s.Subscribed(alice, webhook.Follow))
		got, err = s.SetActive(h.ID, false)
		require.NoError(t, err, "the same state again")
		assert.False(t, got.Active)
		got, err = s.SetActive(h.ID, true)
		require.NoError(t, err)
		assert.True(t, got.Active)
		assert.True(t, s.Subscribed(alice, webhook.Follow))
		_, err = s.SetActive("au1nohook0000000", true)
		assert.ErrorIs(t, err, ErrNotFound)
		requireIndexMatchesStore(t, s)
	})
}

func TestContractDelete(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		a := mustCreate(t, s, hook(alice, "a", webhook.Note))
		b := mustCreate(t, s, hook(alice, "b", webhook.Note))

		assert.ErrorIs(t, s.Delete(bob, a.ID), ErrNotFound, "someone else's hook is no hook")
		require.NoError(t, s.Delete(alice, a.ID))
		assert.ErrorIs(t, s.Delete(alice, a.ID), ErrNotFound)
		_, err := s.Get(a.ID)
		assert.ErrorIs(t, err, ErrNotFound)
		_, ok := s.Target(a.ID)
		assert.False(t, ok)
		assert.Equal(t, []webhook.Target{b.target()}, s.ActiveHooks(alice, webhook.Note))
		list, err := s.List(alice)
		require.NoError(t, err)
		assert.Equal(t, []Hook{b}, list)
		requireIndexMatchesStore(t, s)
	})
}

func TestContractImportOnce(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		sent := time.Date(2026, 11, 26, 20, 49, 48, 202e6, time.FixedZone("x", 3600))
		h := native(alice, oceanHookA, webhook.Note)
		h.LatestSentAt, h.LatestStatus = &sent, ptr(200)

		id, imported, err := s.Import(h)
		require.NoError(t, err)
		assert.True(t, imported)
		assert.Equal(t, oceanHookA, id, "Ocean's id")
		got, err := s.Get(id)
		require.NoError(t, err)
		assert.Equal(t, Hook{ID: id, UserID: alice, Name: h.Name, On: h.On, URL: h.URL, Secret: h.Secret, Active: true,
			LatestSentAt: ptr(sent.UTC()), LatestStatus: ptr(200), NativeID: oceanHookA}, got)
		assert.True(t, s.Subscribed(alice, webhook.Note))

		_, imported, err = s.Import(h)
		require.NoError(t, err)
		assert.False(t, imported, "once")
		require.NoError(t, s.Delete(alice, id))
		_, imported, err = s.Import(h)
		require.NoError(t, err)
		assert.False(t, imported, "a hook its owner deleted is not brought back")
		found, ok, err := s.Imported(alice, oceanHookA)
		require.NoError(t, err)
		assert.True(t, ok)
		assert.Equal(t, id, found)
		_, ok, err = s.Imported(bob, oceanHookA)
		require.NoError(t, err)
		assert.False(t, ok)

		// bob's hook in Ocean whose id a hook here already has gets a fresh one.
		taken := mustCreate(t, s, hook(bob, "b", webhook.Note))
		id, imported, err = s.Import(native(bob, taken.ID, webhook.Note))
		require.NoError(t, err)
		assert.True(t, imported)
		assert.NotEqual(t, taken.ID, id)

		// Concurrent imports of one hook store one.
		var wg sync.WaitGroup
		var mu sync.Mutex
		var ids []string
		for range 6 {
			wg.Go(func() {
				id, imported, err := s.Import(native(bob, "au1lb5cz9jzs0009", webhook.Note))
				if err == nil && imported {
					mu.Lock()
					ids = append(ids, id)
					mu.Unlock()
				}
			})
		}
		wg.Wait()
		assert.Equal(t, []string{"au1lb5cz9jzs0009"}, ids)
		_, _, err = s.Import(native(bob, "au1lb5cz9jzs000a", "reportCreated"))
		assert.ErrorIs(t, err, ErrNotImportable)
		requireIndexMatchesStore(t, s)
	})
}

func TestContractTakenOver(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		done, err := s.TakenOver(alice)
		require.NoError(t, err)
		assert.False(t, done)
		require.NoError(t, s.MarkTakenOver(alice))
		require.NoError(t, s.MarkTakenOver(alice), "twice is fine")
		done, err = s.TakenOver(alice)
		require.NoError(t, err)
		assert.True(t, done)
		done, err = s.TakenOver(bob)
		require.NoError(t, err)
		assert.False(t, done)

		s2 := open(t, 2, Options{})
		done, err = s2.TakenOver(alice)
		require.NoError(t, err)
		assert.True(t, done, "a restart keeps it")
	})
}

func TestContractRecordAttempts(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{})
		a := mustCreate(t, s, hook(alice, "a", webhook.Note))
		b := mustCreate(t, s, hook(alice, "b", webhook.Note))
		gone := mustCreate(t, s, hook(alice, "gone", webhook.Note))
		require.NoError(t, s.Delete(alice, gone.ID))
		at := time.Date(2026, 11, 26, 21, 0, 0, 123e6, time.FixedZone("x", 3600))
		s.Attempted(b.ID, at, true)

		require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{
			a.ID: {At: at, Status: 200}, b.ID: {At: at.Add(time.Second), Status: 503}, gone.ID: {At: at, Status: 200},
		}))
		got, err := s.Get(a.ID)
		require.NoError(t, err)
		assert.Equal(t, ptr(at.UTC()), got.LatestSentAt)
		assert.Equal(t, ptr(200), got.LatestStatus)
		assert.Nil(t, got.FailingSince)
		got, err = s.Get(b.ID)
		require.NoError(t, err)
		assert.Equal(t, ptr(at.Add(time.Second).UTC()), got.LatestSentAt)
		assert.Equal(t, ptr(503), got.LatestStatus)
		assert.Equal(t, ptr(at.UTC()), got.FailingSince, "the run of failed attempts is stored with the batch")
		assert.Equal(t, 1, got.Failures)
		_, err = s.Get(gone.ID)
		assert.ErrorIs(t, err, ErrNotFound, "a deleted hook is left alone")

		// One attempt at a time keeps the run and the other fields.
		_, err = s.Update(alice, b.ID, Patch{Name: ptr("renamed")})
		require.NoError(t, err)
		s.RecordAttempt(b.ID, at.Add(2*time.Second), 500)
		got, err = s.Get(b.ID)
		require.NoError(t, err)
		assert.Equal(t, ptr(at.Add(2*time.Second).UTC()), got.LatestSentAt)
		assert.Equal(t, ptr(500), got.LatestStatus)
		assert.Equal(t, "renamed", got.Name)
		assert.Equal(t, ptr(at.UTC()), got.FailingSince)
		requireIndexMatchesStore(t, s)
	})
}

func TestContractDeactivate(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{DisableAfter: day})
		gone := mustCreate(t, s, hook(alice, "gone", webhook.Note))
		failing := mustCreate(t, s, hook(alice, "failing", webhook.Note))

		s.Deactivate(gone.ID)
		s.Deactivate(gone.ID)
		got, err := s.Get(gone.ID)
		require.NoError(t, err)
		assert.False(t, got.Active)
		s.Deactivate("au1nohook0000000")

		t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		assert.Empty(t, s.Attempted(failing.ID, t0, true))
		assert.NotEmpty(t, s.Attempted(failing.ID, t0.Add(day), true), "failing for DisableAfter deactivates")
		got, err = s.Get(failing.ID)
		require.NoError(t, err)
		assert.False(t, got.Active)
		assert.NotNil(t, got.DisabledAt)
		assert.Equal(t, ptr(t0), got.FailingSince)
		assert.Equal(t, 2, got.Failures)
		assert.False(t, s.Subscribed(alice, webhook.Note))

		got, err = s.SetActive(failing.ID, true)
		require.NoError(t, err)
		assert.Nil(t, got.DisabledAt, "activation starts the clock afresh")
		assert.Nil(t, got.FailingSince)
		assert.Zero(t, got.Failures)
		requireIndexMatchesStore(t, s)
	})
}

// TestContractRestart: a Store opened again on the same data finds every
// hook, import, takeover, latest attempt and run of failed attempts, and
// builds the same index.
func TestContractRestart(t *testing.T) {
	forEachBackend(t, func(t *testing.T, open opener) {
		s := open(t, 1, Options{DisableAfter: 10 * day})
		a := mustCreate(t, s, hook(alice, "a", webhook.Note, webhook.Mention))
		b := mustCreate(t, s, hook(bob, "b", webhook.Follow))
		off := mustCreate(t, s, hook(bob, "off", webhook.Note))
		_, err := s.SetActive(off.ID, false)
		require.NoError(t, err)
		d := mustCreate(t, s, hook(alice, "deleted", webhook.Note))
		require.NoError(t, s.Delete(alice, d.ID))
		_, _, err = s.Import(native(alice, oceanHookA, webhook.Reply))
		require.NoError(t, err)
		require.NoError(t, s.MarkTakenOver(alice))
		at := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
		s.Attempted(b.ID, at, true)
		require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{a.ID: {At: at, Status: 204}, b.ID: {At: at, Status: 500}}))
		before, err := s.ListAll()
		require.NoError(t, err)
		require.Len(t, before, 4)

		s2 := open(t, 2, Options{DisableAfter: 10 * day})
		after, err := s2.ListAll()
		require.NoError(t, err)
		assert.Equal(t, before, after)
		assert.Equal(t, s.idx.Load(), s2.idx.Load())
		_, imported, err := s2.Import(native(alice, oceanHookA, webhook.Reply))
		require.NoError(t, err)
		assert.False(t, imported)
		done, err := s2.TakenOver(alice)
		require.NoError(t, err)
		assert.True(t, done)
		assert.NotEmpty(t, s2.Attempted(b.ID, at.Add(10*day), true), "the run of failed attempts survives")

		// The restarted Store writes where the first left off.
		c := mustCreate(t, s2, hook(alice, "c", webhook.Note))
		list, err := s2.List(alice)
		require.NoError(t, err)
		assert.ElementsMatch(t, []string{a.ID, oceanHookA, c.ID}, hookIDs(list))
		assert.IsIncreasing(t, hookIDs(list), "id order")
		requireIndexMatchesStore(t, s2)
	})
}

func hookIDs(hs []Hook) []string {
	ids := make([]string, len(hs))
	for i, h := range hs {
		ids[i] = h.ID
	}
	return ids
}
