package hooks

import (
	"errors"
	"fmt"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Hooks that already exist in Ocean ("native" hooks) come into the store
// through Import, once each: the record of the import (the key
// h/native/<userID>/<oceanID> in Badger, a row of hook_imports in
// PostgreSQL) is written in the same transaction as the hook and outlives
// it, so a second import of
// the same Ocean hook (a repeated takeover, a crash between importing and
// switching Ocean's copy off, `oceanhooks import` run again, a hook its owner
// deleted since) stores nothing.

// ErrNotImportable: the hook has event types that oceanhooks does not send
// (Ocean's admin-only report events); it stays in Ocean.
var ErrNotImportable = errors.New("hook has event types oceanhooks does not send")

// UnsupportedTypes returns the event types of on that oceanhooks does not
// send (Ocean's admin-only reportCreated, reportResolved,
// reportAutoResolved, or any type Ocean may add). A hook with none can move
// from Ocean to oceanhooks without losing an event; a hook with any stays in
// Ocean, untouched.
func UnsupportedTypes(on []string) (unsupported []string) {
	for _, t := range on {
		if !webhook.IsUserEventType(t) {
			unsupported = append(unsupported, t)
		}
	}
	return unsupported
}

// Import stores h, a hook as Ocean holds it (h.NativeID is Ocean's id of
// it, h.UserID its owner), with its name, URL, secret, event types, active
// flag and latest delivery status, unless that Ocean hook was imported
// before. It returns the id of the stored hook (of the earlier import when
// there was one, even if its owner deleted it since) and whether this call
// stored it. The check and the insert are one transaction.
//
// The new hook keeps Ocean's id when no hook of the store has it (so
// receivers see the same hookId), else it gets a fresh one. The owner's
// webhook limit does not apply: a user who had more hooks in Ocean than the
// limit keeps them all (and cannot create more until under it, as in Ocean).
func (s *Store) Import(h Hook) (id string, imported bool, err error) {
	if !ocean.IsID(h.UserID) || !ocean.IsID(h.NativeID) {
		return "", false, fmt.Errorf("import hook: invalid user id %q or Ocean hook id %q", h.UserID, h.NativeID)
	}
	if bad := UnsupportedTypes(h.On); len(bad) > 0 {
		return "", false, fmt.Errorf("import hook %s: %w: %v", h.NativeID, ErrNotImportable, bad)
	}
	h.On = cloneOn(h.On)
	if h.LatestSentAt != nil {
		at := h.LatestSentAt.UTC()
		h.LatestSentAt = &at
	}
	s.writeMu.Lock()
	id, imported, err = s.be.importNative(h, func() string { return s.ids.Next(s.now()) })
	if err == nil && imported {
		h.ID = id
		s.idx.Store(s.idx.Load().with(nil, &h))
	}
	s.writeMu.Unlock()
	if err != nil {
		return "", false, fmt.Errorf("import hook %s: %w", h.NativeID, err)
	}
	if imported {
		s.sync()
	}
	return id, imported, nil
}

// Imported returns the id of the hook imported from Ocean's hook oceanID of
// userID, if it was imported (the hook may have been deleted since).
func (s *Store) Imported(userID, oceanID string) (id string, found bool, err error) {
	id, found, err = s.be.imported(userID, oceanID)
	if err != nil {
		return "", false, fmt.Errorf("read import of %s: %w", oceanID, err)
	}
	return id, found, nil
}

// TakenOver reports whether userID's hooks in Ocean were all taken over
// (MarkTakenOver, through this Store or any other on the same data). Once
// true, the answer comes from memory.
func (s *Store) TakenOver(userID string) (bool, error) {
	if _, ok := s.takenOver.Load(userID); ok {
		return true, nil
	}
	done, err := s.be.takenOver(userID)
	if err != nil {
		return false, fmt.Errorf("read takeover of %s: %w", userID, err)
	}
	if done {
		s.takenOver.Store(userID, struct{}{})
	}
	return done, nil
}

// MarkTakenOver records that every hook userID had in Ocean is in the store
// now and switched off in Ocean (or stays there by design), so the takeover
// never asks Ocean about this user again.
func (s *Store) MarkTakenOver(userID string) error {
	if err := s.be.markTakenOver(userID, s.now()); err != nil {
		return fmt.Errorf("record takeover of %s: %w", userID, err)
	}
	s.sync()
	s.takenOver.Store(userID, struct{}{})
	return nil
}
