package ocean_test

import (
	"bufio"
	"encoding/json"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/ocean"
)

// Users of the capture.
const (
	alice = "au1lb55h9jzs0004"
	bob   = "au1lb5al9jzs0005"
	carol = "au1lcbjm9jzs000z"
)

// oceanBodies are the note bodies real Ocean sent (capture deliveries and
// the pub/sub recording's deliveries): recipient and {"note":…} body.
type oceanBody struct {
	source, typ, recipient string
	note                   string
}

func oceanBodies(t *testing.T) []oceanBody {
	t.Helper()
	var out []oceanBody
	add := func(source string, body []byte) {
		b := gjson.ParseBytes(body)
		if n := b.Get("body.note"); n.IsObject() {
			out = append(out, oceanBody{source, b.Get("type").Str, b.Get("userId").Str, n.Raw})
		}
	}
	deliveries, err := oceantest.LoadDeliveries()
	require.NoError(t, err)
	for _, d := range deliveries {
		add("ocean-capture", []byte(d.BodyRaw))
	}
	f, err := os.Open(filepath.Join(oceantest.FixturesDir(), "..", "ocean-pubsub", "scenarios.jsonl"))
	require.NoError(t, err)
	t.Cleanup(func() { f.Close() })
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 16<<20)
	for sc.Scan() {
		var s struct {
			Label      string `json:"label"`
			Deliveries []struct {
				Body json.RawMessage `json:"body"`
			} `json:"deliveries"`
		}
		require.NoError(t, json.Unmarshal(sc.Bytes(), &s))
		for _, d := range s.Deliveries {
			add("ocean-pubsub "+s.Label, d.Body)
		}
	}
	require.NoError(t, sc.Err())
	return out
}

// Every note body real Ocean sent is what HideFor makes of it for its
// recipient: nothing changes, byte for byte. (Every recorded note is
// public; the hidden cases are in TestHideForRule.)
func TestHideForKeepsOceansBodies(t *testing.T) {
	bodies := oceanBodies(t)
	types := map[string]int{}
	for _, b := range bodies {
		types[b.typ]++
		out, changed := ocean.HideFor([]byte(b.note), ocean.Viewer{ID: b.recipient}, time.Now())
		assert.False(t, changed, "%s %s to %s", b.source, b.typ, b.recipient)
		assert.Equal(t, b.note, string(out), "%s %s to %s", b.source, b.typ, b.recipient)
	}
	for _, typ := range []string{"note", "reply", "renote", "mention"} {
		assert.Positive(t, types[typ], "the fixtures hold %s bodies", typ)
	}
}

// capturedNote is the body of a mention real Ocean sent: alice's reply to a
// public note of bob's, with its nested reply.
func capturedNote(t *testing.T) string {
	t.Helper()
	for _, b := range oceanBodies(t) {
		if b.typ == "mention" && gjson.Get(b.note, "reply").IsObject() {
			return b.note
		}
	}
	t.Fatal("the capture has a mention that is a reply")
	return ""
}

// byHand hides a note the way §1.4 of the spec says, written with sjson
// independently of the code under test: visibleUserIds and poll removed,
// text and cw null, fileIds and files [], isHidden true last.
func byHand(t *testing.T, note string) string {
	t.Helper()
	var err error
	for _, k := range []string{"visibleUserIds", "poll"} {
		note, err = sjson.Delete(note, k)
		require.NoError(t, err)
	}
	for k, raw := range map[string]string{"text": "null", "cw": "null", "fileIds": "[]", "files": "[]"} {
		note, err = sjson.SetRaw(note, k, raw)
		require.NoError(t, err)
	}
	note, err = sjson.SetRaw(note, "isHidden", "true")
	require.NoError(t, err)
	return note
}

func edit(t *testing.T, note string, path string, v any) string {
	t.Helper()
	out, err := sjson.Set(note, path, v)
	require.NoError(t, err)
	return out
}

func editRaw(t *testing.T, note string, path string, raw string) string {
	t.Helper()
	out, err := sjson.SetRaw(note, path, raw)
	require.NoError(t, err)
	return out
}

func del(t *testing.T, note string, path string) string {
	t.Helper()
	out, err := sjson.Delete(note, path)
	require.NoError(t, err)
	return out
}

// The live case: a DM from alice to bob whose text mentions @carol. Ocean
// sends carol the note hidden: this golden is written out in full.
func TestHideForDMToAnotherUser(t *testing.T) {
	dm := `{"id":"n1","createdAt":"2026-11-26T20:49:45.128Z","userId":"` + alice + `",` +
		`"user":{"id":"` + alice + `","name":null,"username":"alice","host":null},` +
		`"text":"psst @carol, bob only","cw":"secret","visibility":"specified","localOnly":false,` +
		`"visibleUserIds":["` + bob + `"],"reactions":{},"fileIds":["f1"],"files":[{"id":"f1"}],` +
		`"replyId":null,"replyUserId":null,"renoteId":null,"mentions":["` + carol + `","` + bob + `"],` +
		`"clippedCount":0,"poll":{"multiple":false,"expiresAt":null,"choices":[]}}`
	want := `{"id":"n1","createdAt":"2026-11-26T20:49:45.128Z","userId":"` + alice + `",` +
		`"user":{"id":"` + alice + `","name":null,"username":"alice","host":null},` +
		`"text":null,"cw":null,"visibility":"specified","localOnly":false,` +
		`"reactions":{},"fileIds":[],"files":[],` +
		`"replyId":null,"replyUserId":null,"renoteId":null,"mentions":["` + carol + `","` + bob + `"],` +
		`"clippedCount":0,"isHidden":true}`

	out, changed := ocean.HideFor([]byte(dm), ocean.Viewer{ID: carol}, time.Now())
	assert.True(t, changed)
	assert.Equal(t, want, string(out))

	out, changed = ocean.HideFor([]byte(dm), ocean.Viewer{ID: bob}, time.Now())
	assert.False(t, changed, "an addressee sees the DM")
	assert.Equal(t, dm, string(out))
}

func TestHideForRule(t *testing.T) {
	base := capturedNote(t) // by alice, public, replying to bob's public note
	created := time.Date(2026, 11, 26, 20, 49, 40, 536_000_000, time.UTC)
	createdSec := float64(created.UnixMilli()) / 1000
	at := func(d time.Duration) time.Time { return created.Add(d) }
	never := func(string) bool { return false }
	always := func(string) bool { return true }

	tests := []struct {
		name   string
		note   string
		viewer ocean.Viewer
		now    time.Time
		want   func(note string) string // nil: unchanged
	}{
		{name: "public note", note: base, viewer: ocean.Viewer{ID: carol}},
		{name: "home note", note: edit(t, base, "visibility", "home"), viewer: ocean.Viewer{ID: carol}},
		{
			name:   "specified: the author sees it",
			note:   editRaw(t, edit(t, base, "visibility", "specified"), "visibleUserIds", `["`+bob+`"]`),
			viewer: ocean.Viewer{ID: alice},
		},
		{
			name:   "specified: an addressee sees it",
			note:   editRaw(t, edit(t, base, "visibility", "specified"), "visibleUserIds", `["`+bob+`"]`),
			viewer: ocean.Viewer{ID: bob},
		},
		{
			name:   "specified: mentioned but not addressed is hidden",
			note:   editRaw(t, editRaw(t, edit(t, base, "visibility", "specified"), "visibleUserIds", `["`+bob+`"]`), "mentions", `["`+carol+`"]`),
			viewer: ocean.Viewer{ID: carol, Follows: always},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "specified without visibleUserIds (hidden for the viewer it was packed for) stays hidden",
			note:   edit(t, base, "visibility", "specified"),
			viewer: ocean.Viewer{ID: bob},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "followers: replied-to user sees it",
			note:   editRaw(t, edit(t, base, "visibility", "followers"), "mentions", `[]`),
			viewer: ocean.Viewer{ID: bob},
		},
		{
			name:   "followers: mentioned user sees it",
			note:   editRaw(t, edit(t, base, "visibility", "followers"), "mentions", `["`+carol+`"]`),
			viewer: ocean.Viewer{ID: carol},
		},
		{
			name:   "followers: a follower sees it",
			note:   edit(t, base, "visibility", "followers"),
			viewer: ocean.Viewer{ID: carol, Follows: always},
		},
		{
			name:   "followers: not following is hidden",
			note:   edit(t, base, "visibility", "followers"),
			viewer: ocean.Viewer{ID: carol, Follows: never},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "followers: follow unknown is hidden",
			note:   edit(t, base, "visibility", "followers"),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "followers: anonymous is hidden",
			note:   edit(t, base, "visibility", "followers"),
			viewer: ocean.Viewer{Follows: always},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "unknown visibility is hidden",
			note:   edit(t, base, "visibility", "direct"),
			viewer: ocean.Viewer{ID: carol, Follows: always},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "no visibility is hidden",
			note:   del(t, base, "visibility"),
			viewer: ocean.Viewer{ID: carol, Follows: always},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "no author is hidden",
			note:   del(t, base, "userId"),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "no user is hidden",
			note:   del(t, base, "user"),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "no user: the author still sees it",
			note:   del(t, base, "user"),
			viewer: ocean.Viewer{ID: alice},
		},
		{
			name:   "makeNotesHiddenBefore (a time) covering the note hides it",
			note:   edit(t, base, "user.makeNotesHiddenBefore", createdSec+1),
			viewer: ocean.Viewer{ID: carol},
			now:    at(time.Hour),
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "makeNotesHiddenBefore (a time) exactly at the note hides it",
			note:   edit(t, base, "user.makeNotesHiddenBefore", createdSec),
			viewer: ocean.Viewer{ID: carol},
			now:    at(time.Hour),
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "makeNotesHiddenBefore (a time) before the note leaves it",
			note:   edit(t, base, "user.makeNotesHiddenBefore", createdSec-1),
			viewer: ocean.Viewer{ID: carol},
			now:    at(time.Hour),
		},
		{
			name:   "makeNotesHiddenBefore (an age) the note reached hides it",
			note:   edit(t, base, "user.makeNotesHiddenBefore", -3600),
			viewer: ocean.Viewer{ID: carol},
			now:    at(2 * time.Hour),
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "makeNotesHiddenBefore (an age) not reached leaves it",
			note:   edit(t, base, "user.makeNotesHiddenBefore", -3600),
			viewer: ocean.Viewer{ID: carol},
			now:    at(10 * time.Minute),
		},
		{
			name:   "makeNotesHiddenBefore never hides from the author",
			note:   edit(t, base, "user.makeNotesHiddenBefore", 0),
			viewer: ocean.Viewer{ID: alice},
			now:    at(time.Hour),
		},
		{
			name:   "makeNotesHiddenBefore malformed hides",
			note:   edit(t, base, "user.makeNotesHiddenBefore", "soon"),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "a time rule with an unreadable createdAt hides",
			note:   edit(t, edit(t, base, "user.makeNotesHiddenBefore", 1), "createdAt", "yesterday"),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "makeNotesFollowersOnlyBefore: a public note reads followers and hides from a non-follower",
			note:   edit(t, base, "user.makeNotesFollowersOnlyBefore", createdSec+1),
			viewer: ocean.Viewer{ID: carol, Follows: never},
			want:   func(n string) string { return byHand(t, edit(t, n, "visibility", "followers")) },
		},
		{
			name:   "makeNotesFollowersOnlyBefore: a follower sees it, as followers",
			note:   edit(t, base, "user.makeNotesFollowersOnlyBefore", -60),
			viewer: ocean.Viewer{ID: carol, Follows: always},
			now:    at(time.Hour),
			want:   func(n string) string { return edit(t, n, "visibility", "followers") },
		},
		{
			name:   "makeNotesFollowersOnlyBefore not covering the note changes nothing",
			note:   edit(t, base, "user.makeNotesFollowersOnlyBefore", -7200),
			viewer: ocean.Viewer{ID: carol, Follows: never},
			now:    at(time.Hour),
		},
		{
			name:   "makeNotesFollowersOnlyBefore null changes nothing",
			note:   editRaw(t, base, "user.makeNotesFollowersOnlyBefore", "null"),
			viewer: ocean.Viewer{ID: carol, Follows: never},
		},
		{
			name:   "requireSigninToViewContents hides from no viewer",
			note:   edit(t, base, "user.requireSigninToViewContents", true),
			viewer: ocean.Viewer{},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "requireSigninToViewContents: a signed-in viewer sees it",
			note:   edit(t, base, "user.requireSigninToViewContents", true),
			viewer: ocean.Viewer{ID: carol},
		},
		{
			name:   "poll, files and cw of a hidden note go",
			note:   editRaw(t, editRaw(t, edit(t, edit(t, base, "visibility", "followers"), "cw", "cw!"), "fileIds", `["f1"]`), "poll", `{"multiple":false,"expiresAt":null,"choices":[{"text":"a","votes":0,"isVoted":false}]}`),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "a hidden note's isHidden false becomes true, not a second member",
			note:   editRaw(t, edit(t, base, "visibility", "followers"), "isHidden", "false"),
			viewer: ocean.Viewer{ID: carol},
			want:   func(n string) string { return byHand(t, n) },
		},
		{
			name:   "nested reply the viewer may not see is hidden, the note is not",
			note:   edit(t, base, "reply.visibility", "followers"),
			viewer: ocean.Viewer{ID: carol, Follows: never},
			want: func(n string) string {
				return editRaw(t, n, "reply", byHand(t, gjson.Get(n, "reply").Raw))
			},
		},
		{
			name:   "nested reply by the viewer is theirs to see",
			note:   edit(t, base, "reply.visibility", "followers"),
			viewer: ocean.Viewer{ID: bob},
		},
		{
			name: "a follower sees the note, its nested renote is hidden by its own rule",
			note: editRaw(t, edit(t, del(t, del(t, base, "reply"), "replyId"), "visibility", "followers"),
				"renote", edit(t, gjson.Get(base, "reply").Raw, "visibility", "specified")),
			viewer: ocean.Viewer{ID: carol, Follows: always},
			want: func(n string) string {
				r := byHand(t, gjson.Get(n, "renote").Raw)
				return editRaw(t, n, "renote", r)
			},
		},
		{
			name:   "renote of a renote: the inner one is hidden",
			note:   editRaw(t, base, "reply.renote", edit(t, gjson.Get(base, "reply").Raw, "visibility", "specified")),
			viewer: ocean.Viewer{ID: carol},
			want: func(n string) string {
				return editRaw(t, n, "reply.renote", byHand(t, gjson.Get(n, "reply.renote").Raw))
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			now := tt.now
			if now.IsZero() {
				now = at(time.Minute)
			}
			out, changed := ocean.HideFor([]byte(tt.note), tt.viewer, now)
			require.True(t, gjson.ValidBytes(out), "%s", out)
			if tt.want == nil {
				assert.False(t, changed)
				assert.Equal(t, tt.note, string(out))
				return
			}
			want := tt.want(tt.note)
			assert.True(t, changed)
			assert.JSONEq(t, want, string(out))
			assert.Equal(t, want, string(out), "same keys in the same order")
			again, _ := ocean.HideFor(out, tt.viewer, now)
			assert.Equal(t, string(out), string(again), "hiding twice is hiding once")
		})
	}
}

// Follows is asked only about the author of a followers note that neither
// replies to nor mentions the viewer, and only when it decides.
func TestHideForAsksFollowsOnlyWhenItDecides(t *testing.T) {
	base := capturedNote(t)
	tests := []struct {
		name  string
		note  string
		asked []string
	}{
		{name: "public", note: base},
		{name: "specified", note: edit(t, base, "visibility", "specified")},
		{name: "followers mentioning the viewer", note: editRaw(t, edit(t, base, "visibility", "followers"), "mentions", `["`+carol+`"]`)},
		{name: "followers", note: edit(t, base, "visibility", "followers"), asked: []string{alice}},
		{name: "followers nested by bob", note: edit(t, base, "reply.visibility", "followers"), asked: []string{bob}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var asked []string
			v := ocean.Viewer{ID: carol, Follows: func(id string) bool { asked = append(asked, id); return false }}
			ocean.HideFor([]byte(tt.note), v, time.Now())
			assert.Equal(t, tt.asked, asked)
		})
	}
}

func TestHideForNotAnObject(t *testing.T) {
	for _, in := range []string{`null`, `[]`, `"x"`, ``} {
		out, changed := ocean.HideFor([]byte(in), ocean.Viewer{ID: carol}, time.Now())
		assert.False(t, changed, in)
		assert.Equal(t, in, string(out))
	}
}

// What HideFor returns when it changed something is its own: changing the
// input afterwards does not change it.
func TestHideForOwnsItsResult(t *testing.T) {
	in := []byte(edit(t, capturedNote(t), "visibility", "followers"))
	out, changed := ocean.HideFor(in, ocean.Viewer{ID: carol}, time.Now())
	require.True(t, changed)
	want := string(out)
	for i := range in {
		in[i] = ' '
	}
	assert.Equal(t, want, string(out))
}
