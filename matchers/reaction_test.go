package matchers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// Ocean never sends `reaction`; we do, for the captured reaction too: the
// note as of after the reaction without the reacting user's own fields, the
// reaction as given, and the reacting user as UserLite.
func TestReactionCreate(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	captured := callByLabel(t, calls, "A reacts to B's note")
	bobsNote := gjson.GetBytes(callByLabel(t, calls, "B posts a note").Response, "createdNote").Raw
	noteID := gjson.Get(bobsNote, "id").Str
	// notes/show as the reacting user sees it: the reaction counted, and
	// their own reaction marked.
	reacted := edit(t, bobsNote, "reactionCount", 1, "reactions", map[string]int{"👍": 1}, "myReaction", "👍")
	wantNote, _ := sjson.Delete(reacted, "myReaction")
	aliceLite := userOf(dl[0]) // alice as UserLite, as Ocean delivered her
	bobLite := userOf(dl[3])

	tests := []struct {
		name      string
		hooks     *fakeSubs
		token     string
		request   string
		setup     func(o *fakeOcean)
		want      map[got]string
		wantCalls []string
		wantMe    int
		skipped   map[string]float64
		failure   bool
	}{
		{
			name:    "the captured reaction goes to the note's author",
			hooks:   allHooks(alice, bob),
			token:   "tok-alice",
			request: string(captured.Request),
			want: map[got]string{
				{webhook.Reaction, bob}: `{"note":` + wantNote + `,"reaction":"👍","user":` + aliceLite + `}`,
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`, `users/show {"userId":"` + alice + `"}`},
			wantMe:    1,
		},
		{
			name:    "self-reaction is sent too, reaction string as given",
			hooks:   allHooks(bob),
			token:   "tok-bob",
			request: `{"noteId":"` + noteID + `","reaction":":blobcat:"}`,
			want: map[got]string{
				{webhook.Reaction, bob}: `{"note":` + wantNote + `,"reaction":":blobcat:","user":` + bobLite + `}`,
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`, `users/show {"userId":"` + bob + `"}`},
			wantMe:    1,
		},
		{
			name:      "author not subscribed: the note read alone, no identity lookup",
			hooks:     &fakeSubs{hooks: []hook{{user: carol, on: []string{webhook.Reaction}, active: true}}},
			token:     "tok-alice",
			request:   string(captured.Request),
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`},
		},
		{
			name:    "note by a remote user: nothing",
			hooks:   allHooks(alice, remo),
			token:   "tok-alice",
			request: string(captured.Request),
			setup: func(o *fakeOcean) {
				o.answer("notes/show", "noteId", noteID, edit(t, reacted, "userId", remo, "user.host", "remote.example"))
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`},
		},
		{
			name:    "note read fails: skipped and counted",
			hooks:   allHooks(bob),
			token:   "tok-alice",
			request: string(captured.Request),
			setup: func(o *fakeOcean) {
				o.fail("notes/show", "noteId", noteID, &ocean.Error{Code: "NO_SUCH_NOTE", Kind: "client"})
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`},
			skipped:   map[string]float64{"ocean_error": 1},
		},
		{
			name:    "note read answers another note: skipped",
			hooks:   allHooks(bob),
			token:   "tok-alice",
			request: string(captured.Request),
			setup: func(o *fakeOcean) {
				o.answer("notes/show", "noteId", noteID, edit(t, reacted, "id", "other"))
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`},
			skipped:   map[string]float64{"malformed": 1},
		},
		{
			name:    "note read answers non-JSON: skipped",
			hooks:   allHooks(bob),
			token:   "tok-alice",
			request: string(captured.Request),
			setup: func(o *fakeOcean) {
				o.answer("notes/show", "noteId", noteID, `<html>`)
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`},
			skipped:   map[string]float64{"malformed": 1},
		},
		{
			name:    "reacting user's view fails: skipped",
			hooks:   allHooks(bob),
			token:   "tok-alice",
			request: string(captured.Request),
			setup: func(o *fakeOcean) {
				o.fail("users/show", "userId", alice, errDown)
			},
			wantCalls: []string{`notes/show {"noteId":"` + noteID + `"}`, `users/show {"userId":"` + alice + `"}`},
			wantMe:    1,
			skipped:   map[string]float64{"unavailable": 1},
		},
		{
			name:    "request without a reaction: malformed, nothing read",
			hooks:   allHooks(bob),
			token:   "tok-alice",
			request: `{"noteId":"` + noteID + `"}`,
			failure: true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			h.oc.answer("notes/show", "noteId", noteID, reacted)
			h.oc.answer("users/show", "userId", alice, selfView(t, calls, "alice"))
			h.oc.answer("users/show", "userId", bob, selfView(t, calls, "bob"))
			if tt.setup != nil {
				tt.setup(h.oc)
			}
			wanted, err := h.do(t, "notes/reactions/create", tt.token, tt.request, 204, "")
			require.True(t, wanted)
			if tt.failure {
				assert.Error(t, err)
				assert.Equal(t, 1.0, h.failures("notes/reactions/create", "malformed"))
			} else {
				assert.NoError(t, err)
			}
			gotBodies := map[got]string{}
			for _, ev := range h.sink.events() {
				gotBodies[got{ev.Type, ev.UserID}] = string(ev.Body)
			}
			if len(tt.want) == 0 {
				assert.Empty(t, gotBodies)
			} else {
				assert.Equal(t, tt.want, gotBodies)
				for k, body := range gotBodies {
					assert.JSONEq(t, tt.want[k], body)
				}
			}
			assert.Equal(t, tt.wantCalls, h.oc.endpoints())
			assert.Equal(t, tt.wantMe, h.oc.meCalls)
			for _, reason := range []string{"ocean_error", "malformed", "unavailable"} {
				assert.Equal(t, tt.skipped[reason], h.skipped("notes/reactions/create", reason), reason)
			}
		})
	}
}

// TestReactionBodyForTheStream: a reaction Ocean's event stream announced gets
// the same body as the API tap builds, from public reads (no credential): the
// note as the public sees it and the reactor as UserLite.
func TestReactionBodyForTheStream(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	bobsNote := gjson.GetBytes(callByLabel(t, calls, "B posts a note").Response, "createdNote").Raw
	noteID := gjson.Get(bobsNote, "id").Str
	aliceLite := userOf(dl[0])

	h := newHarness(t, allHooks(bob))
	h.oc.answer("notes/show", "noteId", noteID, bobsNote)
	h.oc.answer("users/show", "userId", alice, selfView(t, calls, "alice"))
	body, ok, err := h.e.ReactionBody(context.Background(), noteID, alice, `<"👍">`)
	require.NoError(t, err)
	require.True(t, ok)
	assert.Equal(t, `{"note":`+bobsNote+`,"reaction":"<\"👍\">","user":`+aliceLite+`}`, string(body))
	for _, c := range h.oc.calls {
		assert.Empty(t, c.token, "the stream's reads are public")
	}

	// A note that is gone is an error; a remote author's note is no event.
	_, ok, err = h.e.ReactionBody(context.Background(), "nosuchnote", alice, "👍")
	assert.Error(t, err)
	assert.False(t, ok)
	remote, _ := sjson.Set(bobsNote, "user.host", "remote.example")
	remote, _ = sjson.Set(remote, "id", "remotenote")
	h.oc.answer("notes/show", "noteId", "remotenote", remote)
	_, ok, err = h.e.ReactionBody(context.Background(), "remotenote", alice, "👍")
	assert.NoError(t, err)
	assert.False(t, ok)
}
