package hooks

import (
	"cmp"
	"maps"
	"slices"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// index is an immutable snapshot of the active hooks, and of every hook's
// delivery target: readers load it through an atomic pointer, writers publish
// a new one (copy on write).
type index struct {
	// targets holds every hook's target (active or not) by hook id, so a
	// delivery attempt learns its URL and secret without a disk read.
	targets map[string]webhook.Target
	// users holds only users with at least one active hook.
	users map[string]*userHooks
	// typeCounts counts, per event type, the active hooks on it (absent: 0).
	typeCounts map[string]int
}

// userHooks is one user's part of the index.
type userHooks struct {
	hooks  []Hook                      // active hooks, id (creation) order
	byType map[string][]webhook.Target // event type → targets, creation order
}

func newUserHooks(hooks []Hook) *userHooks {
	if len(hooks) == 0 {
		return nil
	}
	u := &userHooks{hooks: hooks, byType: map[string][]webhook.Target{}}
	for _, h := range hooks {
		for _, t := range types(h) {
			u.byType[t] = append(u.byType[t], h.target())
		}
	}
	return u
}

// types returns h's event types without duplicates (Ocean accepts them).
func types(h Hook) []string {
	return slices.Compact(slices.Sorted(slices.Values(h.On)))
}

// indexed is the part of a hook the index keeps: configuration, not
// bookkeeping.
func indexed(h Hook) Hook {
	return Hook{ID: h.ID, UserID: h.UserID, Name: h.Name, On: cloneOn(h.On), URL: h.URL, Secret: h.Secret, Active: true}
}

// buildIndex makes the index of hooks from scratch.
func buildIndex(hooks []Hook) *index {
	byUser := map[string][]Hook{}
	targets := make(map[string]webhook.Target, len(hooks))
	for _, h := range hooks {
		targets[h.ID] = h.target()
		if h.Active {
			byUser[h.UserID] = append(byUser[h.UserID], indexed(h))
		}
	}
	idx := &index{targets: targets, users: map[string]*userHooks{}, typeCounts: map[string]int{}}
	for user, hs := range byUser {
		slices.SortFunc(hs, func(a, b Hook) int { return cmp.Compare(a.ID, b.ID) })
		idx.users[user] = newUserHooks(hs)
		for _, h := range hs {
			for _, t := range types(h) {
				idx.typeCounts[t]++
			}
		}
	}
	return idx
}

// with returns a new index where old (nil: none) is replaced by new (nil:
// none). Only the owner's entry and the type counts are rebuilt.
func (idx *index) with(old, new *Hook) *index {
	out := &index{targets: maps.Clone(idx.targets), users: maps.Clone(idx.users), typeCounts: maps.Clone(idx.typeCounts)}
	if old != nil {
		delete(out.targets, old.ID)
	}
	if new != nil {
		out.targets[new.ID] = new.target()
	}
	if old != nil && old.Active {
		out.remove(*old)
	}
	if new != nil && new.Active {
		out.add(indexed(*new))
	}
	return out
}

func (idx *index) remove(h Hook) {
	u := idx.users[h.UserID]
	if u == nil {
		return
	}
	i := slices.IndexFunc(u.hooks, func(x Hook) bool { return x.ID == h.ID })
	if i < 0 {
		return
	}
	for _, t := range types(u.hooks[i]) {
		if idx.typeCounts[t]--; idx.typeCounts[t] <= 0 {
			delete(idx.typeCounts, t)
		}
	}
	hs := slices.Delete(slices.Clone(u.hooks), i, i+1)
	if nu := newUserHooks(hs); nu != nil {
		idx.users[h.UserID] = nu
	} else {
		delete(idx.users, h.UserID)
	}
}

func (idx *index) add(h Hook) {
	var hs []Hook
	if u := idx.users[h.UserID]; u != nil {
		hs = slices.Clone(u.hooks)
	}
	i, _ := slices.BinarySearchFunc(hs, h.ID, func(x Hook, id string) int { return cmp.Compare(x.ID, id) })
	hs = slices.Insert(hs, i, h)
	idx.users[h.UserID] = newUserHooks(hs)
	for _, t := range types(h) {
		idx.typeCounts[t]++
	}
}

func (idx *index) subscribed(userID, eventType string) bool {
	u := idx.users[userID]
	return u != nil && len(u.byType[eventType]) > 0
}

func (idx *index) active(userID, eventType string) []webhook.Target {
	u := idx.users[userID]
	if u == nil {
		return nil
	}
	return slices.Clone(u.byType[eventType])
}

// holds reports whether idx already holds h as it is: its target, and its
// configuration when it is active.
func (idx *index) holds(h Hook) bool {
	if t, ok := idx.targets[h.ID]; !ok || t != h.target() {
		return false
	}
	if !h.Active {
		return true
	}
	u := idx.users[h.UserID]
	if u == nil {
		return false
	}
	i := slices.IndexFunc(u.hooks, func(x Hook) bool { return x.ID == h.ID })
	if i < 0 {
		return false
	}
	x := u.hooks[i]
	return x.Name == h.Name && slices.Equal(x.On, h.On)
}
