package matchers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// bodyOf returns the body of the one event of typ to user.
func bodyOf(t *testing.T, h *harness, typ, user string) string {
	t.Helper()
	var found []string
	for _, ev := range h.sink.events() {
		if ev.Type == typ && ev.UserID == user {
			found = append(found, string(ev.Body))
		}
	}
	require.Len(t, found, 1, "one %s to %s", typ, user)
	return found[0]
}

// Each recipient of a created note other than its author gets it as Ocean
// packs it for them: hidden where they may not see the note or a nested one.
func TestNotesCreateHidesForEachRecipient(t *testing.T) {
	fans := func(t *testing.T, author string) string {
		return note(t, "f1", author, set("visibility", "followers"), set("text", "fans only"))
	}
	tests := []struct {
		name   string
		note   func(t *testing.T) string
		hooks  *fakeSubs
		setup  func(o *fakeOcean)
		hidden map[got][]string // paths hidden in the event's note ("" the note itself); absent: nothing
		reads  []string
	}{
		{
			name: "DM to bob mentioning carol: hidden for carol only",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "specified"), set("visibleUserIds", []string{bob}),
					mentions(carol, bob))
			},
			hooks:  allHooks(alice, bob, carol),
			hidden: map[got][]string{{webhook.Mention, carol}: {""}},
		},
		{
			name: "public quote of bob's followers note mentioning carol: the quoted note hidden for carol",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("renoteId", "f1"), setRaw("renote", fans(t, bob)), mentions(carol))
			},
			hooks:  allHooks(alice, bob, carol),
			hidden: map[got][]string{{webhook.Mention, carol}: {"renote"}},
		},
		{
			name: "reply quoting bob's followers note: hidden for the replied-to admin, not for bob",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, replyTo(t, admin), mentions(admin), set("renoteId", "f1"), setRaw("renote", fans(t, bob)))
			},
			hooks:  allHooks(alice, bob, admin),
			hidden: map[got][]string{{webhook.Reply, admin}: {"renote"}, {webhook.Mention, admin}: {"renote"}},
		},
		{
			name: "followers quote: renote to a non-follower hidden, after one relation read",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "followers"), renoteOf(t, bob))
			},
			hooks: allHooks(bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, false, false, false, false))
			},
			hidden: map[got][]string{{webhook.Renote, bob}: {""}},
			reads:  []string{`users/relation {"userId":"` + bob + `"}`},
		},
		{
			name: "followers quote: renote to a follower whole",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "followers"), renoteOf(t, bob))
			},
			hooks: allHooks(bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, false, true, false, false))
			},
			reads: []string{`users/relation {"userId":"` + bob + `"}`},
		},
		{
			name: "followers quote: relation read fails, hidden (fail closed), no error",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "followers"), renoteOf(t, bob))
			},
			hooks: allHooks(bob),
			setup: func(o *fakeOcean) {
				o.fail("users/relation", "userId", bob, errDown)
			},
			hidden: map[got][]string{{webhook.Renote, bob}: {""}},
			reads:  []string{`users/relation {"userId":"` + bob + `"}`},
		},
		{
			name: "followers reply: the replied-to user sees it without a read",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "followers"), replyTo(t, bob), mentions(bob))
			},
			hooks: allHooks(bob),
		},
		{
			name: "own followers note quoted, mentioning carol: one read for both nested notes",
			note: func(t *testing.T) string {
				inner := note(t, "f2", alice, set("visibility", "followers"), set("replyId", "f1"), setRaw("reply", fans(t, alice)))
				return note(t, "n1", alice, set("renoteId", "f2"), setRaw("renote", inner), mentions(carol))
			},
			hooks: allHooks(carol),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", carol, rel(carol, false, false, false, false))
			},
			hidden: map[got][]string{{webhook.Mention, carol}: {"renote", "renote.reply"}},
			reads:  []string{`users/relation {"userId":"` + carol + `"}`},
		},
		{
			name: "self-mention and note: the author's view as it is",
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "specified"), set("visibleUserIds", []string{}),
					mentions(alice), set("renoteId", "f1"), setRaw("renote", fans(t, bob)))
			},
			hooks: allHooks(alice),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			if tt.setup != nil {
				tt.setup(h.oc)
			}
			created := tt.note(t)
			_, err := h.do(t, "notes/create", "tok-alice", `{}`, 200, `{"createdNote":`+created+`}`)
			require.NoError(t, err)
			require.NotEmpty(t, h.sink.events())
			for _, ev := range h.sink.events() {
				n := gjson.GetBytes(ev.Body, "note")
				require.True(t, n.IsObject(), "%s", ev.Body)
				hidden := map[string]bool{}
				for _, p := range tt.hidden[got{ev.Type, ev.UserID}] {
					hidden[p] = true
				}
				for _, p := range []string{"", "reply", "renote", "renote.reply"} {
					sub := n
					if p != "" {
						sub = n.Get(p)
					}
					if !sub.Exists() {
						continue
					}
					assert.Equal(t, hidden[p], sub.Get("isHidden").Bool(), "%s to %s: %q hidden", ev.Type, ev.UserID, p)
					if hidden[p] {
						assert.Equal(t, gjson.Null, sub.Get("text").Type)
						assert.False(t, sub.Get("visibleUserIds").Exists())
					} else {
						assert.NotEqual(t, gjson.Null, sub.Get("text").Type, "%s to %s: %q", ev.Type, ev.UserID, p)
					}
				}
			}
			assert.Equal(t, tt.reads, h.oc.endpoints())
			assert.Zero(t, h.oc.meCalls, "the author is the caller")
		})
	}
}

// Recipients who may see everything share one body: hiding allocates only
// for those who get something hidden.
func TestNotesCreateSharesUnhiddenBodies(t *testing.T) {
	h := newHarness(t, allHooks(bob, carol, admin))
	created := note(t, "n1", alice, set("visibility", "specified"), set("visibleUserIds", []string{bob, admin}),
		mentions(bob, admin, carol))
	_, err := h.do(t, "notes/create", "tok-alice", `{}`, 200, `{"createdNote":`+created+`}`)
	require.NoError(t, err)
	var bodies = map[string][]byte{}
	for _, ev := range h.sink.events() {
		bodies[ev.UserID] = ev.Body
	}
	require.Len(t, bodies, 3)
	assert.Same(t, &bodies[bob][0], &bodies[admin][0], "one body for the addressees")
	assert.True(t, gjson.GetBytes(bodies[carol], "note.isHidden").Bool())
}

// Pinned notes in the caller as another user sees them are hidden as Ocean
// hides them for that user: followers-only ones unless they follow.
func TestSeenByHidesPinnedNotes(t *testing.T) {
	self := edit(t, `{"id":"`+alice+`","username":"alice","host":null}`, "pinnedNotes", []any{})
	pins := `[` + note(t, "p1", alice, set("text", "public pin")) + `,` +
		note(t, "p2", alice, set("text", "fans pin"), set("visibility", "followers")) + `,` +
		note(t, "p3", alice, set("text", "dm pin"), set("visibility", "specified"), set("visibleUserIds", []string{carol})) + `]`
	self = setRaw("pinnedNotes", pins)(self)

	for _, tc := range []struct {
		name      string
		following bool
		hidden    []bool
	}{
		{"viewer follows", true, []bool{false, false, true}},
		{"viewer does not follow", false, []bool{false, true, true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			viewer := ocean.Viewer{ID: bob, Follows: func(a string) bool { return a == alice && tc.following }}
			out := gjson.ParseBytes(seenBy(gjson.Parse(self), relation{following: tc.following}, viewer, time.Now()))
			pinned := out.Get("pinnedNotes").Array()
			require.Len(t, pinned, 3)
			for i, p := range pinned {
				assert.Equal(t, tc.hidden[i], p.Get("isHidden").Bool(), "pin %d", i)
				assert.Equal(t, tc.hidden[i], p.Get("text").Type == gjson.Null, "pin %d", i)
			}
		})
	}
}

// following/invalidate builds the caller as the removed follower sees them:
// a followers-only pin is hidden from them, who follow no more.
func TestCallerSeenByHidesPinnedNotes(t *testing.T) {
	h := newHarness(t, allHooks(bob))
	self := edit(t, `{"id":"`+alice+`","username":"alice","host":null}`, "pinnedNotes", []any{})
	self = setRaw("pinnedNotes", `[`+note(t, "p2", alice, set("text", "fans pin"), set("visibility", "followers"))+`]`)(self)
	h.oc.answer("users/show", "userId", alice, self)
	h.oc.answer("users/relation", "userId", bob, rel(bob, false, true, false, false))
	_, err := h.do(t, "following/invalidate", "tok-alice", `{"userId":"`+bob+`"}`, 200, userLiteOf(alice))
	require.NoError(t, err)
	body := bodyOf(t, h, webhook.Unfollow, bob)
	assert.True(t, gjson.Get(body, "user.pinnedNotes.0.isHidden").Bool())
	assert.NotContains(t, body, "fans pin")
}

// reaction (beyond Ocean): the note comes from notes/show as the reacting
// user sees it; a nested note its author may not see is hidden for them.
func TestReactionHidesNestedNotesFromTheAuthor(t *testing.T) {
	h := newHarness(t, allHooks(bob))
	quoted := note(t, "q1", admin, set("visibility", "followers"), set("text", "admin's fans only"))
	reacted := note(t, "n1", bob, set("renoteId", "q1"), setRaw("renote", quoted))
	h.oc.answer("notes/show", "noteId", "n1", reacted)
	h.oc.answer("users/show", "userId", alice, userLiteOf(alice))
	_, err := h.do(t, "notes/reactions/create", "tok-alice", `{"noteId":"n1","reaction":"👍"}`, 204, "")
	require.NoError(t, err)
	body := bodyOf(t, h, webhook.Reaction, bob)
	assert.True(t, gjson.Get(body, "note.renote.isHidden").Bool())
	assert.NotContains(t, body, "admin's fans only")
	assert.Equal(t, "hi", gjson.Get(body, "note.text").Str, "bob's own note")
}
