package hooks

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"sync"
	"time"
)

// reloadRetry is the pause before reading again hooks whose reload failed.
const reloadRetry = 500 * time.Millisecond

// Run keeps the index current with the changes that other Stores sharing
// the data make (PostgreSQL: other sidecars, or other Stores of this
// process), until ctx ends; it returns nil then. It reloads every hook
// after each (re)connect of its listener, so that changes made while it was
// disconnected are not missed, and then each hook that any Store wrote, as
// soon as that write commits. A hook deleted elsewhere leaves the index and
// its run of failed attempts; one activated elsewhere starts its run
// afresh; one whose stored run a success elsewhere ended ends its run here
// too. On Badger, which one process holds, no one else writes: Run only
// waits for ctx.
func (s *Store) Run(ctx context.Context) error {
	f, ok := s.be.(follower)
	if !ok {
		<-ctx.Done()
		return nil
	}
	var (
		mu      sync.Mutex
		pending = map[string]struct{}{}
		wake    = make(chan struct{}, 1)
	)
	changed := func(id string) {
		mu.Lock()
		pending[id] = struct{}{}
		mu.Unlock()
		select {
		case wake <- struct{}{}:
		default:
		}
	}
	take := func() []string {
		mu.Lock()
		defer mu.Unlock()
		ids := slices.Collect(maps.Keys(pending))
		clear(pending)
		return ids
	}
	// The listener only notes ids; this goroutine reads them, so that a
	// burst of changes to one hook costs one read, and a read that failed
	// is tried again.
	var wg sync.WaitGroup
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case <-wake:
			}
			for ids := take(); len(ids) > 0; ids = take() {
				failed := false
				for _, id := range ids {
					if err := s.reload(id); err != nil {
						s.log.Error("hooks: reload a hook changed elsewhere; trying again", "hook", id, "err", err)
						changed(id)
						failed = true
					}
				}
				if failed {
					select {
					case <-ctx.Done():
						return
					case <-time.After(reloadRetry):
					}
				}
			}
		}
	})
	err := f.follow(ctx, s.reloadAll, changed)
	wg.Wait()
	return err
}

// reload reads hook id again and puts what it found into the index.
func (s *Store) reload(id string) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	var now *Hook
	h, err := s.be.get(id)
	switch {
	case err == nil:
		now = &h
	case !errors.Is(err, ErrNotFound):
		return err
	}
	idx := s.idx.Load()
	var old *Hook
	if t, ok := idx.targets[id]; ok {
		old = &Hook{ID: id, UserID: t.UserID, Active: t.Active}
	}
	switch {
	case old == nil && now == nil:
	case now != nil && idx.holds(*now):
	default:
		s.idx.Store(idx.with(old, now))
	}
	switch {
	case now == nil || now.Active && (old == nil || !old.Active):
		s.failing.forget(id)
	case now.succeededAt != nil:
		s.failing.endBy(id, *now.succeededAt, time.Time{})
	}
	return nil
}

// reloadAll rebuilds the index from everything the backend holds.
func (s *Store) reloadAll(context.Context) error {
	s.writeMu.Lock()
	defer s.writeMu.Unlock()
	all, err := s.be.all()
	if err != nil {
		return fmt.Errorf("reload hooks: %w", err)
	}
	old, idx := s.idx.Load(), buildIndex(all)
	s.idx.Store(idx)
	for id, was := range old.targets {
		if is, ok := idx.targets[id]; !ok || is.Active && !was.Active {
			s.failing.forget(id)
		}
	}
	for _, h := range all {
		if h.succeededAt != nil {
			s.failing.endBy(h.ID, *h.succeededAt, time.Time{})
		}
	}
	return nil
}
