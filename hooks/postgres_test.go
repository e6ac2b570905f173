package hooks

import (
	"context"
	"fmt"
	"math/rand/v2"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Several Stores on one PostgreSQL schema: what several sidecars sharing
// the store do.

// within is how soon a change through one Store reaches the others.
const within = time.Second

// openShared opens a Store on db (seed: see opener) and runs it until the
// test ends.
func openShared(t *testing.T, db *pgstore.DB, seed uint64) *Store {
	t.Helper()
	return openSharedWith(t, db, seed, Options{})
}

// openSharedWith is openShared with opts.
func openSharedWith(t *testing.T, db *pgstore.DB, seed uint64, opts Options) *Store {
	t.Helper()
	s, err := OpenPostgres(context.Background(), db, contractOptions(seed, opts))
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		assert.NoError(t, <-done)
	})
	require.Eventually(t, db.Connected, 10*time.Second, 5*time.Millisecond, "the Store listens")
	return s
}

// eventuallyIndexed waits until s's index matches what the database holds.
func eventuallyIndexed(t *testing.T, s *Store) {
	t.Helper()
	require.Eventually(t, func() bool {
		all, err := s.ListAll()
		return err == nil && assert.ObjectsAreEqual(buildIndex(all), s.idx.Load())
	}, within, 5*time.Millisecond)
}

// TestPostgresChangesReachEveryStore: a hook created, changed, switched off
// or deleted through one Store is in (or out of) the other's index within a
// second; a takeover marked through one is seen by the other.
func TestPostgresChangesReachEveryStore(t *testing.T) {
	dbA := pgtest.Open(t)
	a := openShared(t, dbA, 1)
	b := openShared(t, pgtest.Again(t, dbA), 2)

	h := mustCreate(t, a, hook(alice, "a", webhook.Note))
	require.Eventually(t, func() bool { return b.Subscribed(alice, webhook.Note) }, within, 5*time.Millisecond, "created")
	assert.Equal(t, []webhook.Target{h.target()}, b.ActiveHooks(alice, webhook.Note))
	assert.True(t, b.AnySubscribed(webhook.Note))

	h, err := a.Update(alice, h.ID, Patch{URL: ptr("https://example.org/moved"), On: &[]string{webhook.Follow}})
	require.NoError(t, err)
	require.Eventually(t, func() bool { return b.Subscribed(alice, webhook.Follow) }, within, 5*time.Millisecond, "updated")
	assert.False(t, b.Subscribed(alice, webhook.Note))
	target, ok := b.Target(h.ID)
	assert.True(t, ok)
	assert.Equal(t, "https://example.org/moved", target.URL, "the next attempt through B goes to the new URL")

	_, err = b.SetActive(h.ID, false)
	require.NoError(t, err)
	require.Eventually(t, func() bool { return !a.Subscribed(alice, webhook.Follow) }, within, 5*time.Millisecond, "switched off")

	id, imported, err := b.Import(native(bob, oceanHookA, webhook.Reply))
	require.NoError(t, err)
	require.True(t, imported)
	require.Eventually(t, func() bool { return a.Subscribed(bob, webhook.Reply) }, within, 5*time.Millisecond, "imported")

	require.NoError(t, b.Delete(bob, id))
	require.Eventually(t, func() bool { _, ok := a.Target(id); return !ok }, within, 5*time.Millisecond, "deleted")
	assert.False(t, a.Subscribed(bob, webhook.Reply))

	done, err := b.TakenOver(alice)
	require.NoError(t, err)
	require.False(t, done)
	require.NoError(t, a.MarkTakenOver(alice))
	done, err = b.TakenOver(alice)
	require.NoError(t, err)
	assert.True(t, done, "a takeover marked through A")

	eventuallyIndexed(t, a)
	eventuallyIndexed(t, b)
}

// TestPostgresRunsOfFailedAttemptsFollowOtherStores: a hook that one Store
// counts failing and another deletes, or activates again, has no run left
// in the first.
func TestPostgresRunsOfFailedAttemptsFollowOtherStores(t *testing.T) {
	dbA := pgtest.Open(t)
	a := openShared(t, dbA, 1)
	b := openShared(t, pgtest.Again(t, dbA), 2)
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	failing := func(s *Store, id string) bool { since, _ := s.failing.of(id); return since != nil }

	reactivated := mustCreate(t, a, hook(alice, "reactivated", webhook.Note))
	deleted := mustCreate(t, a, hook(alice, "deleted", webhook.Note))
	_, err := a.SetActive(reactivated.ID, false)
	require.NoError(t, err)
	eventuallyIndexed(t, b)
	a.Attempted(reactivated.ID, t0, true)
	a.Attempted(deleted.ID, t0, true)
	require.True(t, failing(a, reactivated.ID))
	require.True(t, failing(a, deleted.ID))

	_, err = b.SetActive(reactivated.ID, true)
	require.NoError(t, err)
	require.NoError(t, b.Delete(alice, deleted.ID))
	require.Eventually(t, func() bool { return !failing(a, reactivated.ID) && !failing(a, deleted.ID) },
		within, 5*time.Millisecond)
}

// TestPostgresSuccessElsewhereEndsTheRun: two Stores attempt one hook, each
// telling its own Store of every attempt (Attempted) and handing its latest
// attempts over in batches (RecordAttempts), as each sidecar's queue does.
// A's attempts fail for the whole window, but a success through B in
// between ends A's run: told by B's batch (Run), by A's own next batch, or,
// when A learnt of it neither way, by the stored success that the
// deactivation reads in its own transaction. A success that began before
// A's run ends nothing, and a whole window of failures after B's success
// still deactivates the hook.
func TestPostgresSuccessElsewhereEndsTheRun(t *testing.T) {
	const window = 5 * day
	t0 := time.Date(2026, 3, 1, 12, 0, 0, 0, time.UTC)
	type attempt struct {
		by    string // "A" or "B"
		after time.Duration
		ok    bool
		flush bool // then RecordAttempts hands it over
	}
	tests := []struct {
		name     string
		follow   bool // the Stores run Run
		attempts []attempt
		// ended: before its last attempt, A has no run that began before
		// B's success (with follow: within a second).
		ended    bool
		disabled bool // A's failure at t0+window deactivates the hook
	}{
		{name: "B's batch ends the run A stored, and A hears of it", follow: true,
			attempts: []attempt{{"A", 0, false, true}, {"A", day, false, true}, {"B", 2 * day, true, true}},
			ended:    true},
		{name: "A's next batch finds B's success and ends its run",
			attempts: []attempt{{"A", 0, false, false}, {"B", day, true, true}, {"A", 2 * day, false, true}},
			ended:    true},
		{name: "the deactivation reads B's success in its transaction",
			attempts: []attempt{{"A", 0, false, true}, {"B", day, true, true}, {"A", 2 * day, false, false}}},
		{name: "a success that began before A's run ends nothing", follow: true,
			attempts: []attempt{{"B", -time.Hour, true, true}, {"A", 0, false, true}, {"A", day, false, true}},
			disabled: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dbA := pgtest.Open(t)
			opts := Options{DisableAfter: window}
			stores := map[string]*Store{}
			if tt.follow {
				stores["A"] = openSharedWith(t, dbA, 1, opts)
				stores["B"] = openSharedWith(t, pgtest.Again(t, dbA), 2, opts)
			} else {
				for i, name := range []string{"A", "B"} {
					db := dbA
					if i > 0 {
						db = pgtest.Again(t, dbA)
					}
					s, err := OpenPostgres(context.Background(), db, contractOptions(uint64(i+1), opts))
					require.NoError(t, err)
					stores[name] = s
				}
			}
			a, b := stores["A"], stores["B"]
			h := mustCreate(t, a, hook(alice, "a", webhook.Note))
			if tt.follow {
				eventuallyIndexed(t, b)
			}
			var success time.Time // B's
			for _, at := range tt.attempts {
				s, when := stores[at.by], t0.Add(at.after)
				if at.ok {
					success = when
				}
				require.Empty(t, s.Attempted(h.ID, when, !at.ok))
				if !at.flush {
					continue
				}
				status := 503
				if at.ok {
					status = 200
				}
				require.NoError(t, s.RecordAttempts(map[string]webhook.LatestAttempt{h.ID: {At: when, Status: status}}))
				got, err := s.Get(h.ID)
				require.NoError(t, err)
				if at.ok {
					assert.True(t, got.FailingSince == nil || got.FailingSince.After(when),
						"a success ends the stored run that began before it: %v", got.FailingSince)
				}
			}
			since, _ := a.failing.of(h.ID)
			switch {
			case tt.ended:
				require.Eventually(t, func() bool {
					since, _ := a.failing.of(h.ID)
					return since == nil || since.After(success)
				}, within, 5*time.Millisecond, "A's run ended")
			case !tt.disabled:
				require.NotNil(t, since)
				require.False(t, since.After(success), "A still counts the run: only the transaction can stop it")
			}

			why := a.Attempted(h.ID, t0.Add(window), true)
			got, err := a.Get(h.ID)
			require.NoError(t, err)
			if tt.disabled {
				assert.Contains(t, why, "hook deactivated")
				assert.False(t, got.Active)
				return
			}
			assert.Empty(t, why)
			assert.True(t, got.Active, "B's success ended the run")
			assert.Nil(t, got.DisabledAt)

			// A's failures go on: not before a whole window after B's
			// success, and by a window after the refused attempt, they
			// deactivate the hook all the same.
			assert.Empty(t, a.Attempted(h.ID, success.Add(window-time.Second), true))
			assert.Contains(t, a.Attempted(h.ID, t0.Add(2*window), true), "hook deactivated")
			got, err = a.Get(h.ID)
			require.NoError(t, err)
			assert.False(t, got.Active)
		})
	}
}

// TestPostgresLimitHoldsAcrossStores: concurrent creates of one owner,
// split over two Stores on one schema, never pass the limit.
func TestPostgresLimitHoldsAcrossStores(t *testing.T) {
	dbA := pgtest.Open(t)
	a, err := OpenPostgres(context.Background(), dbA, contractOptions(1, Options{}))
	require.NoError(t, err)
	b, err := OpenPostgres(context.Background(), pgtest.Again(t, dbA), contractOptions(2, Options{}))
	require.NoError(t, err)
	const limit = 3
	for round := range 5 {
		user := fmt.Sprintf("au1lb5al9jzs%04d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		created := 0
		start := make(chan struct{})
		for i := range 16 {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				<-start
				_, err := s.Create(hook(user, fmt.Sprint(i), webhook.Note), limit)
				if err == nil {
					mu.Lock()
					created++
					mu.Unlock()
				} else {
					assert.ErrorIs(t, err, ErrLimit)
				}
			})
		}
		close(start)
		wg.Wait()
		n, err := a.Count(user)
		require.NoError(t, err)
		assert.Equal(t, limit, n, "round %d", round)
		assert.Equal(t, limit, created, "round %d", round)
	}
}

// TestPostgresReloadsEverythingAfterReconnecting: changes whose
// notifications a Store never heard (written while its listener was gone)
// reach its index once the listener is back.
func TestPostgresReloadsEverythingAfterReconnecting(t *testing.T) {
	dbA := pgtest.Open(t)
	a, err := OpenPostgres(context.Background(), dbA, contractOptions(1, Options{}))
	require.NoError(t, err)
	dbB := pgtest.Again(t, dbA)
	b := openShared(t, dbB, 2)
	kept := mustCreate(t, a, hook(alice, "kept", webhook.Note))
	dropped := mustCreate(t, a, hook(alice, "dropped", webhook.Mention))
	require.Eventually(t, func() bool { return b.Subscribed(alice, webhook.Mention) }, within, 5*time.Millisecond)

	// Written behind every Store's back: no notification.
	ctx := context.Background()
	_, err = dbA.Pool().Exec(ctx, `DELETE FROM hooks WHERE id = $1`, dropped.ID)
	require.NoError(t, err)
	_, err = dbA.Pool().Exec(ctx, `UPDATE hooks SET "on" = '{follow}' WHERE id = $1`, kept.ID)
	require.NoError(t, err)
	added := hook(bob, "added", webhook.Reply)
	added.ID = "au1lb5zz9jzs0010"
	_, err = dbA.Pool().Exec(ctx, `INSERT INTO hooks (id, user_id, name, url, secret, "on", active)
		VALUES ($1, $2, $3, $4, $5, $6, true)`, added.ID, added.UserID, added.Name, added.URL, added.Secret, added.On)
	require.NoError(t, err)

	var killed int
	require.NoError(t, dbA.Pool().QueryRow(ctx, `SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity
		WHERE query = 'LISTEN '||$1::text`, `"`+dbB.Channel("hooks")+`"`).Scan(&killed))
	require.Equal(t, 1, killed, "B's listener")
	// And one more change, made while B may still be reconnecting.
	later := mustCreate(t, a, hook(alice, "later", webhook.Reply))

	require.Eventually(t, func() bool {
		return b.Subscribed(bob, webhook.Reply) && b.Subscribed(alice, webhook.Follow) &&
			!b.Subscribed(alice, webhook.Mention) && b.Subscribed(alice, webhook.Reply)
	}, 10*time.Second, 5*time.Millisecond)
	_, ok := b.Target(later.ID)
	assert.True(t, ok)
	_, ok = b.Target(dropped.ID)
	assert.False(t, ok)
	eventuallyIndexed(t, b)
}

// TestRunOnBadgerWaitsForItsContext: no one else writes a Badger database;
// Run has nothing to do but return when it is told to.
func TestRunOnBadgerWaitsForItsContext(t *testing.T) {
	db := openDB(t, t.TempDir())
	t.Cleanup(func() { _ = db.Close() })
	s, err := Open(db, Options{Rand: rand.New(rand.NewPCG(1, 2))})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Run(ctx) }()
	cancel()
	assert.NoError(t, <-done)
}

// TestPostgresImportOnceAcrossStores: concurrent imports of one hook of
// Ocean through two Stores store it once, and every one of them answers
// with its id.
func TestPostgresImportOnceAcrossStores(t *testing.T) {
	dbA := pgtest.Open(t)
	a, err := OpenPostgres(context.Background(), dbA, contractOptions(1, Options{}))
	require.NoError(t, err)
	b, err := OpenPostgres(context.Background(), pgtest.Again(t, dbA), contractOptions(2, Options{}))
	require.NoError(t, err)
	for round := range 5 {
		oceanID := fmt.Sprintf("au1lb5cz9jzs%04d", round)
		var wg sync.WaitGroup
		var mu sync.Mutex
		imports, ids := 0, map[string]bool{}
		start := make(chan struct{})
		for i := range 8 {
			s := []*Store{a, b}[i%2]
			wg.Go(func() {
				<-start
				id, imported, err := s.Import(native(alice, oceanID, webhook.Note))
				assert.NoError(t, err)
				mu.Lock()
				defer mu.Unlock()
				ids[id] = true
				if imported {
					imports++
				}
			})
		}
		close(start)
		wg.Wait()
		assert.Equal(t, 1, imports, "round %d", round)
		assert.Equal(t, map[string]bool{oceanID: true}, ids, "round %d", round)
	}
	n, err := a.Count(alice)
	require.NoError(t, err)
	assert.Equal(t, 5, n)
}

// TestOpenPostgresWantsAMigratedSchema: a schema without the hooks table is
// refused with a clear error, not a failed query later.
func TestOpenPostgresWantsAMigratedSchema(t *testing.T) {
	url := pgtest.ServerURL(t)
	db := pgtest.OpenSchema(t, url, pgtest.NewSchema(t, url))
	_, err := OpenPostgres(context.Background(), db, Options{})
	require.Error(t, err)
	assert.Contains(t, err.Error(), "migrate it first")
}
