package e2e

import (
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
)

// startSidecarLogging is startSidecar with its log kept in logs (debug and up).
func startSidecarLogging(t *testing.T, upstream string, logs *testlog.Buffer) *sidecar {
	t.Helper()
	cfg := baseConfig(t, upstream, t.TempDir())
	return startSidecarWith(t, cfg, slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})))
}

// postNote posts notes/create through the sidecar and returns the created
// note's id ("" for a 204).
func postNote(t *testing.T, base, token string, params map[string]any, wantStatus int) string {
	t.Helper()
	status, body := call(t, base, "notes/create", token, params, true)
	require.Equal(t, wantStatus, status, "%s", body)
	return gjson.GetBytes(body, "createdNote.id").String()
}

// notesTo lists what the receiver got at path as "type note-id".
func notesTo(rc *receiver, path string) []string {
	var out []string
	for _, d := range rc.deliveries() {
		if d.Path == path {
			out = append(out, gjson.GetBytes(d.Body, "type").Str+" "+gjson.GetBytes(d.Body, "body.note.id").Str)
		}
	}
	return out
}

// bodyNote is body.note of the one delivery of typ at path about noteID.
func bodyNote(t *testing.T, rc *receiver, path, typ, noteID string) string {
	t.Helper()
	var found []string
	for _, d := range rc.deliveries() {
		if d.Path == path && gjson.GetBytes(d.Body, "type").Str == typ && gjson.GetBytes(d.Body, "body.note.id").Str == noteID {
			found = append(found, gjson.GetBytes(d.Body, "body.note").Raw)
		}
	}
	require.Len(t, found, 1, "one %s of %s at %s", typ, noteID, path)
	return found[0]
}

// waitFor waits until the receiver holds n deliveries.
func waitFor(t *testing.T, rc *receiver, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(rc.deliveries()) >= n }, 10*time.Second, 10*time.Millisecond)
}

// Issue 9, defect 9: notes/create with scheduledAt and with noCreatedNote
// answers 204. The client gets it, nothing is sent, and nothing is logged as
// an error; a note posted afterwards still arrives (the tap is alive).
func TestNoteAnsweredNoContentIsNoError(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	var logs testlog.Buffer
	sc := startSidecarLogging(t, fake.URL, &logs)
	createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "note", "mention")
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "mention")

	postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "later @bob",
		"scheduledAt": time.Now().Add(time.Hour).UnixMilli()}, http.StatusNoContent)
	postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "quiet @bob", "noCreatedNote": true}, http.StatusNoContent)
	marker := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "marker"}, http.StatusOK)

	waitFor(t, rc, 1)
	assert.Equal(t, []string{"note " + marker}, notesTo(rc, "/alice"))
	assert.Empty(t, notesTo(rc, "/bob"))
	assert.NotContains(t, logs.String(), "level=ERROR")
	assert.NotContains(t, logs.String(), "malformed")
	assert.Contains(t, logs.String(), "reason=scheduled")
	assert.Contains(t, logs.String(), "reason=no_created_note")
}

// Issue 9, defect 10: Ocean answers the same notes/create again within 60 s
// with the earlier note and fires nothing; so does the sidecar: one set of
// deliveries for the note, however often the call is repeated.
func TestRepeatedNoteCreateFiresOnce(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "note", "reply", "renote", "mention")
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "note", "reply", "renote", "mention")

	target := postNote(t, sc.url(), oceantest.TokenBob, map[string]any{"text": "target"}, http.StatusOK)
	params := map[string]any{"text": "hello @bob", "replyId": target}
	first := postNote(t, sc.url(), oceantest.TokenAlice, params, http.StatusOK)
	again := postNote(t, sc.url(), oceantest.TokenAlice, params, http.StatusOK)
	require.Equal(t, first, again, "Ocean answered the repeat with the earlier note")
	postNote(t, sc.url(), oceantest.TokenAlice, params, http.StatusOK)
	marker := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "marker"}, http.StatusOK)

	waitFor(t, rc, 5)
	require.Eventually(t, func() bool {
		for _, n := range notesTo(rc, "/alice") {
			if n == "note "+marker {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"note " + first, "note " + marker}, notesTo(rc, "/alice"))
	assert.ElementsMatch(t, []string{"note " + target, "reply " + first, "mention " + first}, notesTo(rc, "/bob"))
}

// Issue 9, defect 1, live case: a DM from alice to bob whose text mentions
// @carol. Ocean sends carol the note hidden (text null, isHidden, no
// visibleUserIds); bob, an addressee, gets it whole. Each body is the note
// as the fake Ocean packs it for that user, byte for byte.
func TestMentionOfADMHiddenFromTheMentioned(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "mention")
	createHook(t, sc.url(), oceantest.TokenCarol, rc.URL+"/carol", "mention")

	dm := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "psst, @carol must not read this",
		"visibility": "specified", "visibleUserIds": []string{oceantest.BobID}}, http.StatusOK)
	waitFor(t, rc, 2)

	carol := bodyNote(t, rc, "/carol", "mention", dm)
	assert.Equal(t, string(fake.NoteAs(dm, oceantest.CarolID)), carol)
	assert.Equal(t, gjson.Null, gjson.Get(carol, "text").Type)
	assert.True(t, gjson.Get(carol, "isHidden").Bool())
	assert.False(t, gjson.Get(carol, "visibleUserIds").Exists())
	assert.NotContains(t, carol, "must not read")

	bob := bodyNote(t, rc, "/bob", "mention", dm)
	assert.Equal(t, string(fake.NoteAs(dm, oceantest.BobID)), bob)
	assert.Equal(t, "psst, @carol must not read this", gjson.Get(bob, "text").Str)
}

// Issue 9, defect 1, live case: a public quote of a followers-only note that
// mentions a non-follower. The mentioned user gets the quote with the quoted
// note hidden; the quoted note's author gets renote with it whole.
func TestQuotedFollowersNoteHiddenFromANonFollower(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "renote")
	createHook(t, sc.url(), oceantest.TokenCarol, rc.URL+"/carol", "mention")

	status, body := call(t, sc.url(), "following/create", oceantest.TokenAlice, map[string]any{"userId": oceantest.BobID}, true)
	require.Equal(t, http.StatusOK, status, "%s", body)
	fans := postNote(t, sc.url(), oceantest.TokenBob, map[string]any{"text": "for my followers", "visibility": "followers"}, http.StatusOK)
	quote := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "look @carol", "renoteId": fans}, http.StatusOK)
	waitFor(t, rc, 2)

	carol := bodyNote(t, rc, "/carol", "mention", quote)
	assert.Equal(t, string(fake.NoteAs(quote, oceantest.CarolID)), carol)
	assert.Equal(t, "look @carol", gjson.Get(carol, "text").Str)
	assert.True(t, gjson.Get(carol, "renote.isHidden").Bool())
	assert.Equal(t, gjson.Null, gjson.Get(carol, "renote.text").Type)
	assert.NotContains(t, carol, "for my followers")

	bob := bodyNote(t, rc, "/bob", "renote", quote)
	assert.Equal(t, "for my followers", gjson.Get(bob, "renote.text").Str, "bob's own note")
	assert.False(t, gjson.Get(bob, "renote.isHidden").Exists())
}

// A followers-only note of the caller nested in a mention: the sidecar asks
// Ocean (users/relation, the caller's token) whether the mentioned user
// follows the caller, and hides the note unless they do.
func TestNestedFollowersNoteOfTheCallerByRelation(t *testing.T) {
	for _, follows := range []bool{false, true} {
		name := map[bool]string{false: "carol does not follow alice", true: "carol follows alice"}[follows]
		t.Run(name, func(t *testing.T) {
			fake := oceantest.New(t)
			rc := newReceiver(t)
			sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
			createHook(t, sc.url(), oceantest.TokenCarol, rc.URL+"/carol", "mention")
			if follows {
				status, body := call(t, sc.url(), "following/create", oceantest.TokenCarol, map[string]any{"userId": oceantest.AliceID}, true)
				require.Equal(t, http.StatusOK, status, "%s", body)
			}
			fans := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "alice's followers only", "visibility": "followers"}, http.StatusOK)
			quote := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "remember this, @carol?", "renoteId": fans}, http.StatusOK)
			waitFor(t, rc, 1)

			carol := bodyNote(t, rc, "/carol", "mention", quote)
			assert.Equal(t, string(fake.NoteAs(quote, oceantest.CarolID)), carol)
			assert.Equal(t, !follows, gjson.Get(carol, "renote.isHidden").Bool())
			assert.Positive(t, fake.Calls("users/relation"))
		})
	}
}

// Beyond Ocean (which packs reply and renote bodies without hiding): a
// followers-only quote sent as `renote` to the quoted author shows its text
// only if they follow the quoting user.
func TestRenoteBodyHiddenFromANonFollower(t *testing.T) {
	for _, follows := range []bool{false, true} {
		name := map[bool]string{false: "bob does not follow alice", true: "bob follows alice"}[follows]
		t.Run(name, func(t *testing.T) {
			fake := oceantest.New(t)
			rc := newReceiver(t)
			sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
			createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "renote")
			if follows {
				status, body := call(t, sc.url(), "following/create", oceantest.TokenBob, map[string]any{"userId": oceantest.AliceID}, true)
				require.Equal(t, http.StatusOK, status, "%s", body)
			}
			target := postNote(t, sc.url(), oceantest.TokenBob, map[string]any{"text": "bob's public note"}, http.StatusOK)
			quote := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "between us followers",
				"visibility": "followers", "renoteId": target}, http.StatusOK)
			waitFor(t, rc, 1)

			bob := bodyNote(t, rc, "/bob", "renote", quote)
			if follows {
				assert.Equal(t, "between us followers", gjson.Get(bob, "text").Str)
				assert.False(t, gjson.Get(bob, "isHidden").Exists())
			} else {
				assert.Equal(t, gjson.Null, gjson.Get(bob, "text").Type)
				assert.True(t, gjson.Get(bob, "isHidden").Bool())
				assert.NotContains(t, bob, "between us")
			}
			assert.Equal(t, "bob's public note", gjson.Get(bob, "renote.text").Str)
			assert.True(t, gjson.Get(bob, "reactionAndUserPairCache").IsArray(), "still the note event's shape")
		})
	}
}
