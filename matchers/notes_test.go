package matchers

import (
	"context"
	"net/http"
	"slices"
	"strconv"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// tokenOf maps the capture's "A …"/"B …" labels to the caller's token.
func tokenOf(label string) string {
	switch label[0] {
	case 'A':
		return "tok-alice"
	case 'B':
		return "tok-bob"
	}
	return "tok-admin"
}

// Every captured notes/create, replayed with the capture's hooks (alice, bob
// and admin subscribed to every user event), yields exactly the deliveries
// Ocean sent for it: same types to the same users, bodies equal byte for byte
// (so in Ocean's key order), and not one extra Ocean request.
func TestNotesCreateMatchesCapture(t *testing.T) {
	calls := loadCalls(t)
	deliveries := loadDeliveries(t)

	want := map[string][]delivery{} // note id → deliveries of it
	for _, d := range deliveries {
		if id := gjson.Get(d.Body, "note.id"); id.Exists() {
			want[id.Str] = append(want[id.Str], d)
		}
	}

	n := 0
	for _, c := range calls {
		if c.Endpoint != "notes/create" {
			continue
		}
		n++
		t.Run(c.Label, func(t *testing.T) {
			h := newHarness(t, allHooks(admin, alice, bob))
			wanted, err := h.do(t, c.Endpoint, tokenOf(c.Label), string(c.Request), c.Status, string(c.Response))
			require.True(t, wanted)
			require.NoError(t, err)

			noteID := gjson.GetBytes(c.Response, "createdNote.id").Str
			exp := want[noteID]
			require.NotEmpty(t, exp, "Ocean delivered something for every captured note")
			require.Len(t, h.sink.batches, 1, "one Enqueue per call")
			gotEvents := h.sink.batches[0]
			var expKinds []got
			for _, d := range exp {
				expKinds = append(expKinds, got{d.Type, d.UserID})
			}
			assert.ElementsMatch(t, expKinds, kinds(gotEvents))
			for _, d := range exp {
				for _, ev := range gotEvents {
					if ev.Type == d.Type && ev.UserID == d.UserID {
						assert.JSONEq(t, d.Body, string(ev.Body), "%s to %s", d.Type, d.UserID)
						assert.Equal(t, d.Body, string(ev.Body), "%s to %s: same bytes, same key order", d.Type, d.UserID)
					}
				}
			}
			assert.Empty(t, h.oc.endpoints(), "notes/create needs no extra read")
			assert.Zero(t, h.oc.meCalls)
		})
	}
	assert.Equal(t, 6, n, "the capture has six notes/create calls")
}

// note builds a createdNote answer shaped like Ocean's (key order included)
// by the author, then applies edits (sjson paths relative to createdNote).
func note(t *testing.T, id, author string, edits ...func(string) string) string {
	t.Helper()
	n := `{"id":"` + id + `","createdAt":"2026-11-26T20:50:00.000Z","userId":"` + author + `",` +
		`"user":` + userLiteOf(author) + `,"text":"hi","cw":null,"visibility":"public","localOnly":false,` +
		`"reactionAcceptance":null,"renoteCount":0,"repliesCount":0,"reactionCount":0,"reactions":{},` +
		`"reactionEmojis":{},"fileIds":[],"files":[],"replyId":null,"replyUserId":null,"renoteId":null,"clippedCount":0}`
	for _, e := range edits {
		n = e(n)
	}
	require.True(t, gjson.Valid(n), n)
	return n
}

func userLiteOf(id string) string {
	host := "null"
	if id == remo {
		host = `"remote.example"`
	}
	return `{"id":"` + id + `","name":null,"username":"u` + id[len(id)-4:] + `","host":` + host +
		`,"avatarUrl":null,"avatarBlurhash":null,"avatarDecorations":[],"isBot":false,"isCat":false,` +
		`"emojis":{},"onlineStatus":"unknown","badgeRoles":[]}`
}

func set(path string, v any) func(string) string {
	return func(s string) string {
		out, err := sjson.Set(s, path, v)
		if err != nil {
			panic(err)
		}
		return out
	}
}

func setRaw(path, raw string) func(string) string {
	return func(s string) string {
		out, err := sjson.SetRaw(s, path, raw)
		if err != nil {
			panic(err)
		}
		return out
	}
}

// replyTo makes the note a reply to a note by target.
func replyTo(t *testing.T, target string) func(string) string {
	return func(s string) string {
		target := note(t, "target0000000001", target)
		s = set("replyId", "target0000000001")(s)
		s = set("replyUserId", gjson.Get(target, "userId").Str)(s)
		return setRaw("reply", target)(s)
	}
}

// renoteOf makes the note a renote (or, with text, a quote) of target's note.
func renoteOf(t *testing.T, target string) func(string) string {
	return func(s string) string {
		s = set("renoteId", "target0000000002")(s)
		return setRaw("renote", note(t, "target0000000002", target))(s)
	}
}

func mentions(ids ...string) func(string) string { return set("mentions", ids) }

func TestNotesCreateRecipients(t *testing.T) {
	tests := []struct {
		name   string
		hooks  *fakeSubs
		note   func(t *testing.T) string
		want   []got
		mentOK bool
	}{
		{
			name:  "plain note goes to its author",
			hooks: allHooks(alice, bob),
			note:  func(t *testing.T) string { return note(t, "n1", alice) },
			want:  []got{{webhook.Note, alice}},
		},
		{
			name:  "reply to another local user: note, reply and mention",
			hooks: allHooks(alice, bob),
			note: func(t *testing.T) string {
				return note(t, "n1", alice, replyTo(t, bob), mentions(bob))
			},
			want: []got{{webhook.Note, alice}, {webhook.Reply, bob}, {webhook.Mention, bob}},
		},
		{
			name:  "self-reply is delivered as reply (and is no mention)",
			hooks: allHooks(alice),
			note:  func(t *testing.T) string { return note(t, "n1", alice, replyTo(t, alice)) },
			want:  []got{{webhook.Note, alice}, {webhook.Reply, alice}},
		},
		{
			name: "remote reply target gets nothing, even if the index were to list it",
			hooks: &fakeSubs{hooks: []hook{
				{user: alice, on: webhook.UserEventTypes, active: true},
				{user: remo, on: webhook.UserEventTypes, active: true},
			}},
			note: func(t *testing.T) string { return note(t, "n1", alice, replyTo(t, remo)) },
			want: []got{{webhook.Note, alice}},
		},
		{
			name:  "reply without a packed reply falls back to replyUserId",
			hooks: allHooks(bob),
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("replyId", "gone"), set("replyUserId", bob))
			},
			want: []got{{webhook.Reply, bob}},
		},
		{
			name:  "pure renote of another local user's note",
			hooks: allHooks(alice, bob),
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("text", nil), renoteOf(t, bob))
			},
			want: []got{{webhook.Note, alice}, {webhook.Renote, bob}},
		},
		{
			name:  "quote is a renote too",
			hooks: allHooks(bob),
			note:  func(t *testing.T) string { return note(t, "n1", alice, renoteOf(t, bob)) },
			want:  []got{{webhook.Renote, bob}},
		},
		{
			name:  "self-renote sends no renote",
			hooks: allHooks(alice),
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("text", nil), renoteOf(t, alice))
			},
			want: []got{{webhook.Note, alice}},
		},
		{
			name:  "self-quote sends no renote",
			hooks: allHooks(alice),
			note:  func(t *testing.T) string { return note(t, "n1", alice, renoteOf(t, alice)) },
			want:  []got{{webhook.Note, alice}},
		},
		{
			name: "renote of a remote user's note sends no renote",
			hooks: &fakeSubs{hooks: []hook{
				{user: alice, on: webhook.UserEventTypes, active: true},
				{user: remo, on: webhook.UserEventTypes, active: true},
			}},
			note: func(t *testing.T) string { return note(t, "n1", alice, renoteOf(t, remo)) },
			want: []got{{webhook.Note, alice}},
		},
		{
			name:  "mention of a remote user (no hook) sends nothing to them",
			hooks: allHooks(alice, bob),
			note:  func(t *testing.T) string { return note(t, "n1", alice, mentions(remo, bob)) },
			want:  []got{{webhook.Note, alice}, {webhook.Mention, bob}},
		},
		{
			name:  "DM: every local addressee gets a mention",
			hooks: allHooks(bob, carol),
			note: func(t *testing.T) string {
				return note(t, "n1", alice, set("visibility", "specified"),
					set("visibleUserIds", []string{bob, carol}), mentions(bob, carol))
			},
			want: []got{{webhook.Mention, bob}, {webhook.Mention, carol}},
		},
		{
			name:  "self-mention goes to the author",
			hooks: allHooks(alice),
			note:  func(t *testing.T) string { return note(t, "n1", alice, mentions(alice)) },
			want:  []got{{webhook.Note, alice}, {webhook.Mention, alice}},
		},
		{
			name:  "a repeated mention id is one event",
			hooks: allHooks(bob),
			note:  func(t *testing.T) string { return note(t, "n1", alice, mentions(bob, bob)) },
			want:  []got{{webhook.Mention, bob}},
		},
		{
			name:  "followers-only note still fires note",
			hooks: allHooks(alice),
			note:  func(t *testing.T) string { return note(t, "n1", alice, set("visibility", "followers")) },
			want:  []got{{webhook.Note, alice}},
		},
		{
			name: "hook that does not list the type gets nothing",
			hooks: &fakeSubs{hooks: []hook{
				{user: bob, on: []string{webhook.Note, webhook.Follow}, active: true},
				{user: alice, on: []string{webhook.Reaction}, active: true},
			}},
			note: func(t *testing.T) string {
				return note(t, "n1", alice, replyTo(t, bob), mentions(bob))
			},
			want: nil,
		},
		{
			name: "inactive hook gets nothing",
			hooks: &fakeSubs{hooks: []hook{
				{user: bob, on: webhook.UserEventTypes, active: false},
				{user: carol, on: webhook.UserEventTypes, active: true},
			}},
			note: func(t *testing.T) string {
				return note(t, "n1", alice, replyTo(t, bob), mentions(bob))
			},
			want: nil,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			resp := `{"createdNote":` + tt.note(t) + `}`
			wanted, err := h.do(t, "notes/create", "tok-alice", `{"text":"hi"}`, 200, resp)
			require.True(t, wanted)
			require.NoError(t, err)
			assert.ElementsMatch(t, tt.want, kinds(h.sink.events()))
			if len(tt.want) == 0 {
				assert.Empty(t, h.sink.batches, "nothing to enqueue, no Enqueue call")
			} else {
				assert.Len(t, h.sink.batches, 1, "one Enqueue per call")
			}
			assert.Empty(t, h.oc.endpoints())
			assert.Zero(t, h.oc.meCalls)
		})
	}
}

// The note/reply/renote body is the note packed for nobody: no myReaction,
// no poll votes, the pair cache on the note and on nested notes. The mention
// body drops the author's own fields but has no pair cache.
func TestNotesCreateBodies(t *testing.T) {
	poll := `{"expiresAt":null,"multiple":false,"choices":[{"text":"a","votes":1,"isVoted":true},{"text":"b","votes":0,"isVoted":false}]}`
	quoted := note(t, "q1", bob, set("myReaction", "👍"), setRaw("poll", poll),
		set("reactions", map[string]int{"👍": 1}), set("reactionCount", 1))
	created := note(t, "n1", alice, setRaw("poll", poll), set("myReaction", nil),
		set("renoteId", "q1"), setRaw("renote", quoted), mentions(bob))

	h := newHarness(t, allHooks(alice, bob))
	_, err := h.do(t, "notes/create", "tok-alice", `{}`, 200, `{"createdNote":`+created+`}`)
	require.NoError(t, err)
	events := h.sink.events()
	require.ElementsMatch(t, []got{{webhook.Note, alice}, {webhook.Renote, bob}, {webhook.Mention, bob}}, kinds(events))

	noVotes := `{"expiresAt":null,"multiple":false,"choices":[{"text":"a","votes":1,"isVoted":false},{"text":"b","votes":0,"isVoted":false}]}`
	strip := func(n string, cache bool) string {
		n, _ = sjson.Delete(n, "myReaction")
		n, _ = sjson.SetRaw(n, "poll", noVotes)
		if cache {
			n = insertAfter(t, n, "reactionEmojis", `"reactionAndUserPairCache":[]`)
		}
		return n
	}
	full := strip(created, true)
	full, _ = sjson.SetRaw(full, "renote", strip(quoted, true))
	ment := strip(created, false)
	ment, _ = sjson.SetRaw(ment, "renote", strip(quoted, false))

	for _, ev := range events {
		want := `{"note":` + full + `}`
		if ev.Type == webhook.Mention {
			want = `{"note":` + ment + `}`
		}
		assert.JSONEq(t, want, string(ev.Body), ev.Type)
		assert.Equal(t, want, string(ev.Body), "%s: key order", ev.Type)
	}
}

// insertAfter inserts member right after key in a compact object (test only).
func insertAfter(t *testing.T, obj, key, member string) string {
	t.Helper()
	v := gjson.Get(obj, key)
	require.True(t, v.Exists())
	end := v.Index + len(v.Raw)
	return obj[:end] + "," + member + obj[end:]
}

// A note that already carries a pair cache never ends up with two.
func TestNotesCreateExistingPairCache(t *testing.T) {
	const cache = `"reactionAndUserPairCache":["x/👍"]`
	tests := []struct {
		name string
		edit func(string) string
		want func(string) string // the expected note from the edited one
	}{
		{
			name: "right after reactionEmojis: kept as Ocean sent it",
			edit: func(s string) string { return insertAfter(t, s, "reactionEmojis", cache) },
			want: func(s string) string { return s },
		},
		{
			name: "before reactionEmojis: kept, none added",
			edit: func(s string) string { return insertAfter(t, s, "reactionCount", cache) },
			want: func(s string) string { return s },
		},
		{
			name: "further on: ours in place, theirs dropped",
			edit: func(s string) string { return insertAfter(t, s, "clippedCount", cache) },
			want: func(s string) string {
				s, _ = sjson.Delete(s, "reactionAndUserPairCache")
				return insertAfter(t, s, "reactionEmojis", `"reactionAndUserPairCache":[]`)
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			created := note(t, "n1", alice, tt.edit)
			h := newHarness(t, allHooks(alice))
			_, err := h.do(t, "notes/create", "tok-alice", `{}`, 200, `{"createdNote":`+created+`}`)
			require.NoError(t, err)
			events := h.sink.events()
			require.Len(t, events, 1)
			assert.Equal(t, `{"note":`+tt.want(created)+`}`, string(events[0].Body))
		})
	}
}

// Malformed or unexpected answers: no event, no panic, the response bytes
// untouched; only what Ocean would not send counts as a failure.
func TestNotesCreateMalformed(t *testing.T) {
	tests := []struct {
		name     string
		response string
		want     []got
		failure  bool
	}{
		{name: "missing createdNote", response: `{"note":{}}`, failure: true},
		{name: "createdNote null (scheduled note)", response: `{"createdNote":null}`},
		{name: "createdNote a string", response: `{"createdNote":"x"}`, failure: true},
		{name: "createdNote an array", response: `{"createdNote":[]}`, failure: true},
		{name: "userId a number", response: `{"createdNote":{"id":"n1","userId":7}}`, failure: true},
		{name: "userId missing", response: `{"createdNote":{"id":"n1"}}`, failure: true},
		{name: "truncated JSON", response: `{"createdNote":{"id":"n1","userId":"` + alice + `","text":"he`, failure: true},
		{name: "non-JSON 200", response: `<html>Bad gateway</html>`, failure: true},
		{name: "empty body", response: ``, failure: true},
		{name: "top-level array", response: `[{"createdNote":{}}]`, failure: true},
		{
			name:     "mentions not an array: the rest still derives",
			response: `{"createdNote":{"id":"n1","userId":"` + alice + `","mentions":"` + bob + `"}}`,
			want:     []got{{webhook.Note, alice}},
		},
		{
			name:     "reply, renote and ids of the wrong types",
			response: `{"createdNote":{"id":"n1","userId":"` + alice + `","reply":"` + bob + `","replyUserId":5,"renote":[],"mentions":[1,null,{}]}}`,
			want:     []got{{webhook.Note, alice}},
		},
		{
			name:     "nested reply with wrong-typed fields",
			response: `{"createdNote":{"id":"n1","userId":"` + alice + `","reply":{"userId":5,"user":"x"},"poll":{"choices":"x"}}}`,
			want:     []got{{webhook.Note, alice}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allHooks(alice, bob))
			obs := &proxy.Observation{Endpoint: "notes/create", Request: []byte(`{}`), Token: "tok-alice",
				Status: 200, Response: []byte(tt.response)}
			var err error
			require.NotPanics(t, func() { err = h.e.Observe(context.Background(), obs) })
			assert.Equal(t, tt.response, string(obs.Response), "the response is never changed")
			assert.ElementsMatch(t, tt.want, kinds(h.sink.events()))
			for _, ev := range h.sink.events() {
				assert.True(t, gjson.ValidBytes(ev.Body), "bodies are valid JSON: %s", ev.Body)
			}
			if tt.failure {
				assert.Error(t, err)
				assert.Equal(t, 1.0, h.failures("notes/create", "malformed"))
			} else {
				assert.NoError(t, err)
				assert.Zero(t, h.failures("notes/create", "malformed"))
			}
		})
	}
}

// BenchmarkDeriveNotesCreate measures the hot path: the captured reply
// (note, reply and mention, three bodies) through Observe into a sink. Each
// round gets its own note id, as every created note has: a repeated one
// would derive nothing.
func BenchmarkDeriveNotesCreate(b *testing.B) {
	c := callByLabel(b, loadCalls(b), "A replies to B's note")
	e := New(allHooks(alice, bob), newFakeOcean(), discardSink{}, Options{})
	resp := slices.Clone(c.Response)
	id := gjson.GetBytes(resp, "createdNote.id")
	require.Len(b, id.Str, ocean.IDLen)
	slot := resp[id.Index+1 : id.Index+1+ocean.IDLen]
	obs := &proxy.Observation{Endpoint: "notes/create", Request: c.Request, Token: "tok-alice",
		Status: c.Status, Response: resp}
	ctx := context.Background()
	var buf [ocean.IDLen]byte
	b.SetBytes(int64(len(resp)))
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		n := strconv.AppendInt(buf[:0], int64(i), 36)
		copy(slot[copy(slot, "0000000000000000"[:len(slot)-len(n)]):], n)
		if err := e.Observe(ctx, obs); err != nil {
			b.Fatal(err)
		}
	}
	if n := value(e.m.derived.WithLabelValues(webhook.Mention)); n != float64(b.N) {
		b.Fatalf("%v mentions derived in %d rounds", n, b.N)
	}
}

type discardSink struct{}

func (discardSink) Enqueue(_ context.Context, events []webhook.Event) (int, error) {
	return len(events), nil
}

// notes/create answers 204 with scheduledAt and with noCreatedNote: a known
// answer with nothing to derive from. No event, no error (the proxy logs an
// error at ERROR), no failure counted; the reason is counted apart.
func TestNotesCreateNoContent(t *testing.T) {
	tests := []struct {
		name    string
		request string
		reason  string
	}{
		{name: "scheduled note", request: `{"text":"later","scheduledAt":1795759031689}`, reason: "scheduled"},
		{name: "noCreatedNote", request: `{"text":"quiet","noCreatedNote":true}`, reason: "no_created_note"},
		{name: "both", request: `{"text":"x","scheduledAt":1795759031689,"noCreatedNote":true}`, reason: "scheduled"},
		{name: "scheduledAt null", request: `{"text":"x","scheduledAt":null,"noCreatedNote":true}`, reason: "no_created_note"},
		{name: "neither", request: `{"text":"x"}`, reason: "no_content"},
		{name: "request not JSON", request: `text=x`, reason: "no_content"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allHooks(alice, bob))
			wanted, err := h.do(t, "notes/create", "tok-alice", tt.request, http.StatusNoContent, "")
			require.True(t, wanted)
			assert.NoError(t, err)
			assert.Empty(t, h.sink.batches)
			for _, reason := range []string{"malformed", "other", "enqueue"} {
				assert.Zero(t, h.failures("notes/create", reason), reason)
			}
			assert.Equal(t, 1.0, h.nothing("notes/create", tt.reason))
			assert.Empty(t, h.oc.endpoints())
		})
	}
}
