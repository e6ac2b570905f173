package matchers

import (
	"strings"
	"sync"
	"time"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// Bounds of the record of recently derived created notes.
const (
	// recentNotesKeep is how long an id stays recorded at least (while the
	// record is not full). Ocean hands an earlier note back only within
	// ocean.NoteCreateRepeatWindow of having answered with it, and the engine
	// records the id after that answer, so any time over the window is
	// enough; twice the window leaves room for a slow first derivation.
	recentNotesKeep = 2 * ocean.NoteCreateRepeatWindow
	// recentNotesPerGeneration caps each of the two generations; the record
	// holds at most twice as many ids. An id is kept for recentNotesKeep
	// unless that many other notes are created through the sidecar within
	// it first.
	recentNotesPerGeneration = 1 << 15
)

// recentNotes remembers the ids of notes whose notes/create answer was
// derived, so that Ocean's answer to a repeated notes/create (the earlier
// note, for which Ocean fires nothing) derives nothing. A new note's id is
// never one seen before, so the id alone tells a returned note from a fresh
// one; the note's createdAt cannot (a returned note may be under a second
// old, and a fresh one several seconds old on a busy server).
//
// It keeps two generations of ids: a new one starts when the current one is
// recentNotesKeep old or full, and the one before is then dropped. So an id
// is kept between recentNotesKeep and twice that (less only when a
// generation fills first), and memory is bounded. The record lives in
// memory: a repeat that comes after a restart of the sidecar, or whose
// first answer was not derived (no hook could receive its events then), is
// derived as a new note. Safe for concurrent use.
type recentNotes struct {
	mu       sync.Mutex
	keep     time.Duration
	max      int // ids per generation
	cur, old map[string]struct{}
	since    time.Time // when cur started
}

func newRecentNotes(keep time.Duration, max int) *recentNotes {
	return &recentNotes{keep: keep, max: max, cur: map[string]struct{}{}}
}

// first records id and reports whether it was not recorded yet.
func (r *recentNotes) first(id string, now time.Time) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, seen := r.cur[id]; seen {
		return false
	}
	if _, seen := r.old[id]; seen {
		return false
	}
	if len(r.cur) == 0 {
		r.since = now
	} else if len(r.cur) >= r.max || now.Sub(r.since) >= r.keep {
		r.old, r.cur, r.since = r.cur, make(map[string]struct{}, len(r.cur)), now
	}
	// A copy: the id must not hold on to Ocean's answer it was cut from.
	r.cur[strings.Clone(id)] = struct{}{}
	return true
}
