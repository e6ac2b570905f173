package oceantest

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// Ocean answers a notes/create repeated by the same user within 60 s with
// the earlier note and creates nothing; after the window, or from another
// user, or with other parameters, it is a new note.
func TestNotesCreateRepeated(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	s := New(t, WithNow(func() time.Time { return now }))
	params := map[string]any{"text": "once", "visibility": "home"}

	first := synthNote(t, s, TokenAlice, params)
	now = now.Add(59 * time.Second)
	again := synthNote(t, s, TokenAlice, params)
	assert.Equal(t, first["id"], again["id"], "the earlier note")
	assert.Equal(t, first["createdAt"], again["createdAt"])

	other := synthNote(t, s, TokenBob, params)
	assert.NotEqual(t, first["id"], other["id"], "another user's call is its own")
	changed := synthNote(t, s, TokenAlice, map[string]any{"text": "once", "visibility": "public"})
	assert.NotEqual(t, first["id"], changed["id"], "other parameters make another note")

	// noCreatedNote is a parameter too: a new note, answered 204.
	mustPost(t, s, "notes/create", TokenAlice, map[string]any{"text": "once", "visibility": "home", "noCreatedNote": true}, 204)
	mustPost(t, s, "notes/create", TokenAlice, map[string]any{"text": "once", "visibility": "home", "noCreatedNote": true}, 204)

	now = now.Add(2 * time.Second) // 61 s after the first
	later := synthNote(t, s, TokenAlice, params)
	assert.NotEqual(t, first["id"], later["id"], "after the window it is a new note")
}

// scheduledAt answers 204 and posts nothing now; one in the past is an
// error; noCreatedNote creates the note and answers 204.
func TestNotesCreateNoContent(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	s := New(t, WithNow(func() time.Time { return now }))
	notes := func() int64 {
		var u struct{ NotesCount int64 }
		require.NoError(t, json.Unmarshal(mustPost(t, s, "users/show", TokenAlice, map[string]any{"userId": AliceID}, 200), &u))
		return u.NotesCount
	}
	before := notes()

	code, body, _ := post(t, s, "notes/create", TokenAlice, map[string]any{"text": "later", "scheduledAt": now.Add(time.Minute).UnixMilli()})
	assert.Equal(t, 204, code)
	assert.Empty(t, body)
	assert.Equal(t, before, notes(), "a scheduled note is posted later")

	code, body, _ = post(t, s, "notes/create", TokenAlice, map[string]any{"text": "late", "scheduledAt": now.Add(-time.Minute).UnixMilli()})
	assert.Equal(t, 400, code)
	assert.Contains(t, string(body), `"code":"CANNOT_SCHEDULE_TO_PAST"`)

	code, body, _ = post(t, s, "notes/create", TokenAlice, map[string]any{"text": "quiet", "noCreatedNote": true})
	assert.Equal(t, 204, code)
	assert.Empty(t, body)
	assert.Equal(t, before+1, notes(), "noCreatedNote creates the note")
}

// NoteAs packs a note as Ocean packs a mention for that user: hidden for a
// user the DM does not address, whole for an addressee.
func TestNoteAs(t *testing.T) {
	s := New(t)
	n := synthNote(t, s, TokenAlice, map[string]any{"text": "psst @carol", "visibility": "specified",
		"visibleUserIds": []string{BobID}})
	id := n["id"].(string)

	var forCarol, forBob map[string]any
	require.NoError(t, json.Unmarshal(s.NoteAs(id, CarolID), &forCarol))
	assert.Equal(t, true, forCarol["isHidden"])
	assert.Nil(t, forCarol["text"])
	assert.NotContains(t, forCarol, "visibleUserIds")
	require.NoError(t, json.Unmarshal(s.NoteAs(id, BobID), &forBob))
	assert.Equal(t, "psst @carol", forBob["text"])
	assert.NotContains(t, forBob, "reactionAndUserPairCache")
	assert.Contains(t, forBob, "clippedCount", "detailed")

	assert.Nil(t, s.NoteAs("nope", BobID))
	assert.Nil(t, s.NoteAs(id, "nobody"))
}
