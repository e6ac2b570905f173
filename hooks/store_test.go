package hooks

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const (
	alice = "au1lb55h9jzs0004"
	bob   = "au1lb5al9jzs0005"
	admin = "au1lb50u9jzs0003"
)

// testClock is a settable clock; each call to Now moves it 1 ms on, so that
// ids made in a row differ in their time part too.
type testClock struct {
	mu sync.Mutex
	t  time.Time
}

func newTestClock() *testClock {
	return &testClock{t: time.Date(2026, 11, 26, 20, 49, 29, 0, time.UTC)}
}

func (c *testClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.t = c.t.Add(time.Millisecond)
	return c.t
}

func openDB(t *testing.T, dir string) *badger.DB {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithSyncWrites(false))
	require.NoError(t, err)
	return db
}

// newStore opens a store on a fresh Badger directory, closed at cleanup.
func newStore(t *testing.T) (*Store, string) {
	t.Helper()
	dir := t.TempDir()
	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(7, 8))})
	require.NoError(t, err)
	return s, dir
}

func mustCreate(t *testing.T, s *Store, h Hook) Hook {
	t.Helper()
	got, err := s.Create(h, 100)
	require.NoError(t, err)
	return got
}

func hook(user, name string, on ...string) Hook {
	return Hook{UserID: user, Name: name, URL: "https://example.com/" + name, Secret: "s-" + name, On: on, Active: true}
}

// requireIndexMatchesStore checks the live index against one rebuilt from
// everything on disk.
func requireIndexMatchesStore(t *testing.T, s *Store) {
	t.Helper()
	all, err := s.ListAll()
	require.NoError(t, err)
	assert.Equal(t, buildIndex(all), s.idx.Load())
}

func ptr[T any](v T) *T { return &v }

func TestCreateGetListDelete(t *testing.T) {
	s, _ := newStore(t)
	a1 := mustCreate(t, s, hook(alice, "a1", webhook.Note, webhook.Follow))
	b1 := mustCreate(t, s, hook(bob, "b1", webhook.Mention))
	a2 := mustCreate(t, s, hook(alice, "a2"))

	assert.Len(t, a1.ID, 16)
	assert.Regexp(t, `^[0-9a-z]{16}$`, a1.ID)
	assert.Less(t, a1.ID, b1.ID)
	assert.Less(t, b1.ID, a2.ID)
	assert.True(t, a1.Active)
	assert.Nil(t, a1.LatestSentAt)
	assert.Nil(t, a1.LatestStatus)
	assert.Equal(t, []string{}, a2.On, "an empty on is an empty array, never null")

	got, err := s.Get(a1.ID)
	require.NoError(t, err)
	assert.Equal(t, a1, got)

	list, err := s.List(alice)
	require.NoError(t, err)
	assert.Equal(t, []Hook{a1, a2}, list, "creation order")
	n, err := s.Count(alice)
	require.NoError(t, err)
	assert.Equal(t, 2, n)

	all, err := s.ListAll()
	require.NoError(t, err)
	assert.Equal(t, []Hook{a1, b1, a2}, all)

	_, err = s.Owned(bob, a1.ID)
	assert.ErrorIs(t, err, ErrNotFound, "someone else's hook is no hook")
	assert.ErrorIs(t, s.Delete(bob, a1.ID), ErrNotFound)
	require.NoError(t, s.Delete(alice, a1.ID))
	_, err = s.Get(a1.ID)
	assert.ErrorIs(t, err, ErrNotFound)
	assert.ErrorIs(t, s.Delete(alice, a1.ID), ErrNotFound)
	list, err = s.List(alice)
	require.NoError(t, err)
	assert.Equal(t, []Hook{a2}, list)

	list, err = s.List("au1nobody0000000")
	require.NoError(t, err)
	assert.Equal(t, []Hook{}, list)
	requireIndexMatchesStore(t, s)
}

func TestCreateRespectsTheLimit(t *testing.T) {
	s, _ := newStore(t)
	for i := range 3 {
		_, err := s.Create(hook(alice, fmt.Sprint(i), webhook.Note), 3)
		require.NoError(t, err)
	}
	_, err := s.Create(hook(alice, "fourth", webhook.Note), 3)
	assert.ErrorIs(t, err, ErrLimit)
	_, err = s.Create(hook(bob, "zero", webhook.Note), 0)
	assert.ErrorIs(t, err, ErrLimit, "a limit of 0 allows none")
	n, err := s.Count(alice)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
	requireIndexMatchesStore(t, s)
}

func TestCreateConcurrentlyNeverPassesTheLimit(t *testing.T) {
	s, _ := newStore(t)
	var wg sync.WaitGroup
	var mu sync.Mutex
	created := 0
	for i := range 20 {
		wg.Go(func() {
			if _, err := s.Create(hook(alice, fmt.Sprint(i), webhook.Note), 3); err == nil {
				mu.Lock()
				created++
				mu.Unlock()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 3, created)
	n, err := s.Count(alice)
	require.NoError(t, err)
	assert.Equal(t, 3, n)
}

func TestCreateRejectsAnInvalidUserID(t *testing.T) {
	s, _ := newStore(t)
	_, err := s.Create(hook("a/b", "x"), 3)
	assert.Error(t, err)
	all, err := s.ListAll()
	require.NoError(t, err)
	assert.Empty(t, all)
}

func TestStoreUpdate(t *testing.T) {
	s, _ := newStore(t)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))

	got, err := s.Update(alice, h.ID, Patch{Name: ptr("renamed"), On: &[]string{webhook.Follow, webhook.Follow}})
	require.NoError(t, err)
	want := h
	want.Name, want.On = "renamed", []string{webhook.Follow, webhook.Follow}
	assert.Equal(t, want, got)
	stored, err := s.Get(h.ID)
	require.NoError(t, err)
	assert.Equal(t, want, stored, "fields not in the patch are kept")

	_, err = s.Update(bob, h.ID, Patch{Name: ptr("stolen")})
	assert.ErrorIs(t, err, ErrNotFound)
	_, err = s.Update(alice, "au1nohook0000000", Patch{Name: ptr("x")})
	assert.ErrorIs(t, err, ErrNotFound)
	stored, err = s.Get(h.ID)
	require.NoError(t, err)
	assert.Equal(t, "renamed", stored.Name)
	requireIndexMatchesStore(t, s)
}

func TestIndexFollowsEveryChange(t *testing.T) {
	s, _ := newStore(t)
	assert.False(t, s.AnySubscribed(webhook.Note))

	a := mustCreate(t, s, hook(alice, "a", webhook.Note, webhook.Mention, webhook.Note))
	b := mustCreate(t, s, hook(bob, "b", webhook.Follow))
	a2 := mustCreate(t, s, hook(alice, "a2", webhook.Note))
	requireIndexMatchesStore(t, s)

	assert.True(t, s.Subscribed(alice, webhook.Note))
	assert.True(t, s.Subscribed(alice, webhook.Mention))
	assert.False(t, s.Subscribed(alice, webhook.Follow))
	assert.False(t, s.Subscribed(bob, webhook.Note))
	assert.True(t, s.AnySubscribed(webhook.Reply, webhook.Follow))
	assert.False(t, s.AnySubscribed(webhook.Reply, webhook.Renote))
	assert.False(t, s.AnySubscribed())
	assert.Equal(t, []webhook.Target{a.target(), a2.target()}, s.ActiveHooks(alice, webhook.Note),
		"one target per hook (duplicates in on do not repeat it), creation order")
	assert.Equal(t, 2, s.idx.Load().typeCounts[webhook.Note])

	// The caller owns the slice it gets.
	got := s.ActiveHooks(alice, webhook.Note)
	got[0].URL = "mutated"
	assert.Equal(t, a.URL, s.ActiveHooks(alice, webhook.Note)[0].URL)

	// A new URL and secret show in the targets.
	_, err := s.Update(alice, a.ID, Patch{URL: ptr("https://new.example"), Secret: ptr("")})
	require.NoError(t, err)
	assert.Equal(t, "https://new.example", s.ActiveHooks(alice, webhook.Note)[0].URL)
	assert.Equal(t, "", s.ActiveHooks(alice, webhook.Note)[0].Secret)
	requireIndexMatchesStore(t, s)

	// Deactivated: gone from the index, kept on disk.
	_, err = s.Update(alice, a.ID, Patch{Active: ptr(false)})
	require.NoError(t, err)
	assert.False(t, s.Subscribed(alice, webhook.Mention))
	assert.Equal(t, []webhook.Target{a2.target()}, s.ActiveHooks(alice, webhook.Note))
	requireIndexMatchesStore(t, s)

	// New types.
	_, err = s.Update(alice, a2.ID, Patch{On: &[]string{webhook.Reply}})
	require.NoError(t, err)
	assert.False(t, s.Subscribed(alice, webhook.Note))
	assert.False(t, s.AnySubscribed(webhook.Note))
	assert.True(t, s.Subscribed(alice, webhook.Reply))
	requireIndexMatchesStore(t, s)

	// Reactivated.
	_, err = s.Update(alice, a.ID, Patch{Active: ptr(true)})
	require.NoError(t, err)
	assert.True(t, s.Subscribed(alice, webhook.Mention))
	requireIndexMatchesStore(t, s)

	// The queue's deactivation (410 Gone).
	s.Deactivate(b.ID)
	assert.False(t, s.Subscribed(bob, webhook.Follow))
	assert.Nil(t, s.ActiveHooks(bob, webhook.Follow))
	stored, err := s.Get(b.ID)
	require.NoError(t, err)
	assert.False(t, stored.Active)
	s.Deactivate("au1nohook0000000") // nothing to do
	requireIndexMatchesStore(t, s)

	require.NoError(t, s.Delete(alice, a.ID))
	require.NoError(t, s.Delete(alice, a2.ID))
	assert.False(t, s.AnySubscribed(webhook.UserEventTypes...))
	assert.Empty(t, s.idx.Load().users)
	assert.Empty(t, s.idx.Load().typeCounts)
	requireIndexMatchesStore(t, s)
}

func TestIndexMatchesStoreAfterRandomChangesAndRestart(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	clk := newTestClock()
	s, err := Open(db, Options{Now: clk.Now, Rand: rand.New(rand.NewPCG(1, 1))})
	require.NoError(t, err)

	r := rand.New(rand.NewPCG(42, 42))
	users := []string{alice, bob, admin}
	types := append(slices.Clone(webhook.UserEventTypes), webhook.AdminEventTypes...)
	randomOn := func() []string {
		var on []string
		for range r.IntN(4) {
			on = append(on, types[r.IntN(len(types))])
		}
		return on
	}
	for range 300 {
		all, err := s.ListAll()
		require.NoError(t, err)
		switch op := r.IntN(5); {
		case op == 0 || len(all) == 0:
			h := hook(users[r.IntN(len(users))], "h", randomOn()...)
			h.Active = r.IntN(3) > 0
			_, err := s.Create(h, 5)
			if err != nil {
				require.ErrorIs(t, err, ErrLimit)
			}
		case op == 1:
			h := all[r.IntN(len(all))]
			require.NoError(t, s.Delete(h.UserID, h.ID))
		case op == 2:
			h := all[r.IntN(len(all))]
			_, err := s.Update(h.UserID, h.ID, Patch{On: ptr(randomOn()), Active: ptr(r.IntN(2) == 0)})
			require.NoError(t, err)
		case op == 3:
			s.Deactivate(all[r.IntN(len(all))].ID)
		default:
			s.RecordAttempt(all[r.IntN(len(all))].ID, clk.Now(), 200)
		}
		requireIndexMatchesStore(t, s)
	}

	before, err := s.ListAll()
	require.NoError(t, err)
	liveIndex := s.idx.Load()
	require.NoError(t, db.Close())

	db2 := openDB(t, dir)
	t.Cleanup(func() { _ = db2.Close() })
	s2, err := Open(db2, Options{})
	require.NoError(t, err)
	after, err := s2.ListAll()
	require.NoError(t, err)
	assert.Equal(t, before, after, "hooks survive a restart")
	assert.Equal(t, liveIndex, s2.idx.Load(), "the index rebuilt at start is the one kept while running")
}

func TestRecordAttempt(t *testing.T) {
	s, _ := newStore(t)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))
	at := time.Date(2026, 11, 26, 20, 49, 48, 202_000_000, time.FixedZone("JST", 9*3600))
	s.RecordAttempt(h.ID, at, 200)
	got, err := s.Get(h.ID)
	require.NoError(t, err)
	require.NotNil(t, got.LatestSentAt)
	assert.True(t, at.Equal(*got.LatestSentAt))
	assert.Equal(t, time.UTC, got.LatestSentAt.Location())
	assert.Equal(t, 200, *got.LatestStatus)

	s.RecordAttempt(h.ID, at.Add(time.Second), 1)
	got, err = s.Get(h.ID)
	require.NoError(t, err)
	assert.Equal(t, 1, *got.LatestStatus)

	require.NoError(t, s.Delete(alice, h.ID))
	s.RecordAttempt(h.ID, at, 500)
	_, err = s.Get(h.ID)
	assert.ErrorIs(t, err, ErrNotFound, "an attempt never brings a deleted hook back")
}

func TestRecordAttemptNeverLosesAConcurrentEdit(t *testing.T) {
	s, _ := newStore(t)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))
	at := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)

	var wg sync.WaitGroup
	for i := range 8 {
		wg.Go(func() {
			for j := range 25 {
				s.RecordAttempt(h.ID, at.Add(time.Duration(i*25+j)*time.Second), 200+i)
			}
		})
	}
	wg.Go(func() {
		for j := range 50 {
			_, err := s.Update(alice, h.ID, Patch{Name: ptr(fmt.Sprintf("name-%02d", j))})
			assert.NoError(t, err)
		}
	})
	wg.Wait()

	got, err := s.Get(h.ID)
	require.NoError(t, err)
	assert.Equal(t, "name-49", got.Name, "the last edit survived every attempt record")
	require.NotNil(t, got.LatestStatus)
	assert.GreaterOrEqual(t, *got.LatestStatus, 200)
	requireIndexMatchesStore(t, s)
}

func TestTarget(t *testing.T) {
	s, _ := newStore(t)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))
	got, ok := s.Target(h.ID)
	require.True(t, ok)
	assert.Equal(t, webhook.Target{HookID: h.ID, UserID: alice, URL: h.URL, Secret: h.Secret, Active: true}, got)

	_, err := s.Update(alice, h.ID, Patch{Active: ptr(false), URL: ptr("https://moved.example")})
	require.NoError(t, err)
	got, ok = s.Target(h.ID)
	require.True(t, ok, "inactive hooks still have a target")
	assert.False(t, got.Active)
	assert.Equal(t, "https://moved.example", got.URL)

	require.NoError(t, s.Delete(alice, h.ID))
	_, ok = s.Target(h.ID)
	assert.False(t, ok)
}

func TestFailedWriteChangesNothing(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	s, err := Open(db, Options{})
	require.NoError(t, err)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))
	idx := s.idx.Load()
	require.NoError(t, db.Close())

	_, err = s.Create(hook(alice, "b", webhook.Follow), 10)
	assert.Error(t, err)
	_, err = s.Update(alice, h.ID, Patch{Active: ptr(false)})
	assert.Error(t, err)
	assert.Error(t, s.Delete(alice, h.ID))
	s.Deactivate(h.ID)
	assert.Same(t, idx, s.idx.Load(), "the index is untouched by failed writes")
	assert.True(t, s.Subscribed(alice, webhook.Note))

	db2 := openDB(t, dir)
	t.Cleanup(func() { _ = db2.Close() })
	s2, err := Open(db2, Options{})
	require.NoError(t, err)
	all, err := s2.ListAll()
	require.NoError(t, err)
	assert.Equal(t, []Hook{h}, all, "and so is the disk")
}

func TestReadersNeverSeeAHalfWrite(t *testing.T) {
	s, _ := newStore(t)
	stop := make(chan struct{})
	var readers sync.WaitGroup
	for range 4 {
		readers.Go(func() {
			for {
				select {
				case <-stop:
					return
				default:
				}
				// Every hook is on both types, so any one snapshot holds
				// as many targets of one as of the other.
				idx := s.idx.Load()
				if u := idx.users[alice]; u != nil && len(u.byType[webhook.Note]) != len(u.byType[webhook.Mention]) {
					t.Error("a reader saw a half-applied change")
				}
				_ = s.Subscribed(alice, webhook.Note)
				_ = s.AnySubscribed(webhook.Note, webhook.Mention)
			}
		})
	}
	for i := range 30 {
		h := mustCreate(t, s, hook(alice, fmt.Sprint(i), webhook.Note, webhook.Mention))
		if i%2 == 0 {
			require.NoError(t, s.Delete(alice, h.ID))
		}
	}
	close(stop)
	readers.Wait()
	requireIndexMatchesStore(t, s)
}

// TestDeactivateTwiceWritesOnce: a backlog of 410s deactivates the hook with
// its first answer; the others find it off and write nothing.
func TestDeactivateTwiceWritesOnce(t *testing.T) {
	dir := t.TempDir()
	db := openDB(t, dir)
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db, Options{Now: newTestClock().Now, Rand: rand.New(rand.NewPCG(7, 8))})
	require.NoError(t, err)
	h := mustCreate(t, s, hook(alice, "a", webhook.Note))

	before := db.MaxVersion()
	s.Deactivate(h.ID)
	got, err := s.Get(h.ID)
	require.NoError(t, err)
	assert.False(t, got.Active)
	assert.False(t, s.Subscribed(alice, webhook.Note))
	first := db.MaxVersion()
	require.Greater(t, first, before, "the first 410 writes")

	for range 3 {
		s.Deactivate(h.ID)
	}
	assert.Equal(t, first, db.MaxVersion(), "the hook was already off: no write")
	again, err := s.Get(h.ID)
	require.NoError(t, err)
	assert.Equal(t, got, again)
	requireIndexMatchesStore(t, s)

	// Switched on again by its owner, the next 410 turns it off again.
	_, err = s.Update(alice, h.ID, Patch{Active: ptr(true)})
	require.NoError(t, err)
	s.Deactivate(h.ID)
	got, err = s.Get(h.ID)
	require.NoError(t, err)
	assert.False(t, got.Active)
}
