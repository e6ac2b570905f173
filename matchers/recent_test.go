package matchers

import (
	"fmt"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// The record keeps an id for at least its keep time (longer than Ocean's
// repeat window), forgets it after two generations, and never holds more
// than two generations of ids.
func TestRecentNotes(t *testing.T) {
	require.Greater(t, recentNotesKeep, ocean.NoteCreateRepeatWindow, "kept longer than Ocean repeats")
	t0 := time.Date(2026, 11, 27, 12, 0, 0, 0, time.UTC)

	t.Run("an id is new once", func(t *testing.T) {
		r := newRecentNotes(time.Minute, 10)
		assert.True(t, r.first("n1", t0))
		assert.False(t, r.first("n1", t0))
		assert.True(t, r.first("n2", t0))
	})
	t.Run("kept for at least keep", func(t *testing.T) {
		r := newRecentNotes(time.Minute, 10)
		require.True(t, r.first("x0", t0))
		require.True(t, r.first("n1", t0.Add(59*time.Second)))
		// Generations turn at t0+60s and t0+120s: n1, recorded just before
		// the first turn, is still known a full keep later.
		assert.True(t, r.first("x1", t0.Add(60*time.Second)))
		assert.False(t, r.first("n1", t0.Add(119*time.Second)))
		assert.True(t, r.first("x2", t0.Add(120*time.Second)))
		assert.True(t, r.first("n1", t0.Add(121*time.Second)), "forgotten two generations on")
	})
	t.Run("bounded: a full generation turns early", func(t *testing.T) {
		r := newRecentNotes(time.Hour, 4)
		for i := range 4 {
			require.True(t, r.first(fmt.Sprint("a", i), t0))
		}
		for i := range 4 {
			require.True(t, r.first(fmt.Sprint("b", i), t0))
		}
		assert.False(t, r.first("a0", t0), "the generation before is still known")
		require.True(t, r.first("c0", t0))
		assert.LessOrEqual(t, len(r.cur)+len(r.old), 8)
		assert.True(t, r.first("a1", t0), "two generations on it is forgotten")
	})
	t.Run("a clock that steps back keeps the record", func(t *testing.T) {
		r := newRecentNotes(time.Minute, 10)
		require.True(t, r.first("n1", t0))
		assert.False(t, r.first("n1", t0.Add(-time.Hour)))
	})
}

// Ocean answers a notes/create repeated within its window with the earlier
// note and fires nothing: the second answer derives nothing (no event, no
// error, counted as repeated), while another note still derives.
func TestNotesCreateRepeatedDerivesOnce(t *testing.T) {
	h := newHarness(t, allHooks(alice, bob))
	resp := `{"createdNote":` + note(t, "n1", alice, replyTo(t, bob), mentions(bob)) + `}`
	for range 3 {
		wanted, err := h.do(t, "notes/create", "tok-alice", `{"text":"hi"}`, 200, resp)
		require.True(t, wanted)
		require.NoError(t, err)
	}
	require.Len(t, h.sink.batches, 1, "one set of events for one note")
	assert.ElementsMatch(t, []got{{webhook.Note, alice}, {webhook.Reply, bob}, {webhook.Mention, bob}}, kinds(h.sink.events()))
	assert.Equal(t, 2.0, h.nothing("notes/create", "repeated"))
	assert.Zero(t, h.failures("notes/create", "malformed"))

	_, err := h.do(t, "notes/create", "tok-alice", `{"text":"hi"}`, 200, `{"createdNote":`+note(t, "n2", alice)+`}`)
	require.NoError(t, err)
	assert.Len(t, h.sink.batches, 2, "a new note derives")
}

// A note whose events nobody could receive is recorded too: a hook created
// before the repeat does not make Ocean fire, so neither does the sidecar.
func TestNotesCreateRepeatAfterNewHook(t *testing.T) {
	subs := allHooks(carol)
	h := newHarness(t, subs)
	resp := `{"createdNote":` + note(t, "n1", alice) + `}`
	_, err := h.do(t, "notes/create", "tok-alice", `{"text":"hi"}`, 200, resp)
	require.NoError(t, err)
	subs.hooks = append(subs.hooks, hook{user: alice, on: webhook.UserEventTypes, active: true})
	_, err = h.do(t, "notes/create", "tok-alice", `{"text":"hi"}`, 200, resp)
	require.NoError(t, err)
	assert.Empty(t, h.sink.batches)
}
