package stream

import (
	"bufio"
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const pubsubDir = "../../shared/fixtures/ocean-pubsub"

// scenario is one recorded scenario of the pub/sub capture, kept as raw JSON
// so that key order survives.
type scenario struct {
	Label    string
	Messages []string          // raw published strings, in order
	Native   []webhook.Event   // Ocean's deliveries: type, recipient, body bytes
	Users    map[string]string // username → id
}

func loadScenarios(t testing.TB) []scenario {
	t.Helper()
	users := map[string]string{}
	f, err := os.ReadFile(filepath.Join(pubsubDir, "users.jsonl"))
	require.NoError(t, err)
	for _, line := range bytes.Split(bytes.TrimSpace(f), []byte("\n")) {
		users[gjson.GetBytes(line, "username").Str] = gjson.GetBytes(line, "i.id").Str
	}
	file, err := os.Open(filepath.Join(pubsubDir, "scenarios.jsonl"))
	require.NoError(t, err)
	defer file.Close()
	sc := bufio.NewScanner(file)
	sc.Buffer(nil, 64<<20)
	var out []scenario
	for sc.Scan() {
		line := sc.Bytes()
		s := scenario{Label: gjson.GetBytes(line, "label").Str, Users: users}
		for _, m := range gjson.GetBytes(line, "messages").Array() {
			s.Messages = append(s.Messages, m.Get("raw").Str)
		}
		for _, d := range gjson.GetBytes(line, "deliveries").Array() {
			user := strings.TrimPrefix(d.Get("path").Str, "/native/")
			require.Contains(t, users, user)
			s.Native = append(s.Native, webhook.Event{Type: d.Get("body.type").Str, UserID: users[user],
				Body: compact(t, d.Get("body.body").Raw)})
		}
		out = append(out, s)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out)
	return out
}

func compact(t testing.TB, raw string) []byte {
	t.Helper()
	var b bytes.Buffer
	require.NoError(t, json.Compact(&b, []byte(raw)))
	return b.Bytes()
}

// everyone has every hook; nobody has none.
type everyone struct{}

func (everyone) Subscribed(string, string) bool { return true }

type nobody struct{}

func (nobody) Subscribed(string, string) bool { return false }

// only subscribes one (user, type).
type only struct{ user, typ string }

func (o only) Subscribed(u, t string) bool { return u == o.user && t == o.typ }

func eventKey(e webhook.Event) string {
	return e.Type + "|" + e.UserID + "|" + string(e.Body)
}

// TestDecodeMatchesOceanDeliveries replays every captured message: the
// events decoded from the stream are exactly Ocean's native deliveries of the
// scenario, bodies byte for byte (key order included), once each note's
// second publish is folded.
func TestDecodeMatchesOceanDeliveries(t *testing.T) {
	for _, s := range loadScenarios(t) {
		t.Run(s.Label, func(t *testing.T) {
			seen := map[string]bool{}
			var got []string
			for _, raw := range s.Messages {
				d := Decode(raw, everyone{})
				require.NotEqual(t, Malformed, d.Outcome, d.Reason)
				if d.Outcome != Derived || d.Reacted != nil {
					continue
				}
				k := eventKey(d.Event)
				if !seen[k] {
					seen[k] = true
					got = append(got, k)
				}
			}
			var want []string
			for _, e := range s.Native {
				want = append(want, eventKey(e))
			}
			sort.Strings(got)
			sort.Strings(want)
			assert.Equal(t, want, got)
		})
	}
}

// TestDecodeReacted: the fork's noteStream `reacted` names the note, its
// author and the reactor; Ocean sends no webhook for it, we send `reaction`.
func TestDecodeReacted(t *testing.T) {
	var reacted []Decoded
	for _, s := range loadScenarios(t) {
		for _, raw := range s.Messages {
			if d := Decode(raw, everyone{}); d.Reacted != nil {
				reacted = append(reacted, d)
			}
		}
	}
	require.Len(t, reacted, 1)
	r := reacted[0].Reacted
	assert.Equal(t, "au24shsea28b000d", r.NoteID)
	assert.Equal(t, "au24s4u0a28b0004", r.AuthorID)
	assert.Equal(t, "au24s4z7a28b0005", r.ReactorID)
	assert.Equal(t, "👍", r.Reaction)
}

// TestDecodeUnreacted: an `unreacted` (a reaction removed, or changed) has
// the shape of `reacted`; for an author with a `reaction` hook it names the
// note, its author and the reactor, marked Removed; for another author it is
// Unsubscribed, and one of unknown shape Malformed, its reason and size
// logged, never its content.
func TestDecodeUnreacted(t *testing.T) {
	const raw = `{"channel":"noteStream:n1","message":{"type":"unreacted","body":{"id":"n1","userId":"u1","visibility":"public","visibleUserIds":[],"mentions":[],"replyUserId":null,"body":{"reaction":":x@.:","userId":"u2"}}}}`
	d := Decode(raw, only{"u1", webhook.Reaction})
	require.Equal(t, Derived, d.Outcome, d.Reason)
	require.NotNil(t, d.Reacted)
	assert.Equal(t, Reacted{NoteID: "n1", AuthorID: "u1", ReactorID: "u2", Reaction: ":x@.:", Removed: true}, *d.Reacted)

	assert.Equal(t, Unsubscribed, Decode(raw, only{"u1", webhook.Mention}).Outcome)
	assert.Equal(t, Unsubscribed, Decode(raw, only{"u2", webhook.Reaction}).Outcome)

	for _, bad := range []string{
		`{"channel":"noteStream:n1","message":{"type":"unreacted","body":{"id":"n1","body":{"reaction":"SECRET","userId":"u2"}}}}`,
		`{"channel":"noteStream:n1","message":{"type":"unreacted","body":{"id":"n1","userId":"u1","body":{"reaction":"SECRET"}}}}`,
		`{"channel":"noteStream:n1","message":{"type":"unreacted","body":{"id":"n1","userId":"u1","body":{"reaction":"SECRET","userId":"u2"`,
	} {
		d := Decode(bad, only{"u1", webhook.Reaction})
		assert.Equal(t, Malformed, d.Outcome, bad)
		assert.Contains(t, d.Reason, "unreacted")
		assert.NotContains(t, d.Reason, "SECRET")
	}
}

// TestDecodeConsultsTheIndexFirst: with no hook, no captured message gives an
// event; the one subscribed pair gives only its own.
func TestDecodeConsultsTheIndexFirst(t *testing.T) {
	scs := loadScenarios(t)
	for _, s := range scs {
		for _, raw := range s.Messages {
			d := Decode(raw, nobody{})
			assert.Contains(t, []Outcome{Ignored, Unsubscribed}, d.Outcome, s.Label)
		}
	}
	alice := scs[0].Users["alice"]
	var derived []webhook.Event
	for _, s := range scs {
		for _, raw := range s.Messages {
			if d := Decode(raw, only{alice, webhook.Follow}); d.Outcome == Derived {
				derived = append(derived, d.Event)
			}
		}
	}
	require.Len(t, derived, 2) // follow bob, follow dave after acceptance
	for _, e := range derived {
		assert.Equal(t, webhook.Follow, e.Type)
		assert.Equal(t, alice, e.UserID)
		assert.True(t, strings.HasPrefix(string(e.Body), `{"user":{"id":`))
	}
}

// TestDecodeUnknownShapes: messages of unknown shape on the channels we use
// are Malformed with a reason that quotes nothing of the message; other
// channels are Ignored after their name, however broken the rest is (their
// content, secrets included, is never parsed).
func TestDecodeUnknownShapes(t *testing.T) {
	cases := []struct {
		name string
		raw  string
		want Outcome
	}{
		{"not JSON", `hello`, Malformed},
		{"channel not a string", `{"channel":1,"message":{}}`, Malformed},
		{"internal with secrets, broken after the name", `{"channel":"internal","message":{"type":"userTokenRegenerated","body":{"token":"SECRET"`, Ignored},
		{"unknown channel", `{"channel":"antennaStream:x","message":{}}`, Ignored},
		{"mainStream notification", `{"channel":"mainStream:u1","message":{"type":"notification","body":{"id":"n"}}}`, Ignored},
		{"mainStream without type", `{"channel":"mainStream:u1","message":"x"}`, Ignored},
		{"mention body not an object", `{"channel":"mainStream:u1","message":{"type":"mention","body":"SECRET"}}`, Malformed},
		{"mention body without id", `{"channel":"mainStream:u1","message":{"type":"mention","body":{"text":"SECRET"}}}`, Malformed},
		{"mention truncated", `{"channel":"mainStream:u1","message":{"type":"mention","body":{"id":"n1","text":"SECRET"`, Malformed},
		{"mainStream with no user id", `{"channel":"mainStream:","message":{"type":"mention","body":{"id":"n1"}}}`, Unsubscribed},
		{"note without userId", `{"channel":"notesStream","message":{"id":"n1"}}`, Malformed},
		{"note of a remote author", `{"channel":"notesStream","message":{"id":"n1","userId":"u1","user":{"id":"u1","host":"remote.example"}}}`, Unsubscribed},
		{"note truncated", `{"channel":"notesStream","message":{"id":"n1","userId":"u1","text":"SECRET"`, Malformed},
		{"reacted without author", `{"channel":"noteStream:n1","message":{"type":"reacted","body":{"id":"n1","body":{"reaction":"x","userId":"u2"}}}}`, Malformed},
		{"reacted without reactor", `{"channel":"noteStream:n1","message":{"type":"reacted","body":{"id":"n1","userId":"u1","body":{"reaction":"x"}}}}`, Malformed},
		{"noteStream pollVoted", `{"channel":"noteStream:n1","message":{"type":"pollVoted","body":{}}}`, Ignored},
		{"good mention", `{"channel":"mainStream:u1","message":{"type":"mention","body":{"id":"n1","text":"hi"}}}`, Derived},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			d := Decode(tc.raw, everyone{})
			assert.Equal(t, tc.want, d.Outcome)
			assert.NotContains(t, d.Reason, "SECRET")
			if tc.want == Malformed {
				assert.NotEmpty(t, d.Reason)
			}
		})
	}
}
