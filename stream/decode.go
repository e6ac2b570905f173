// Package stream turns Ocean's event stream (its Redis pub/sub) into webhook
// events: it subscribes to the channel Ocean publishes on, keeps the
// subscription alive across outages, and maps each message that is the twin
// of a webhook to the event Ocean fired, with Ocean's own body.
package stream

import (
	"bytes"
	"strings"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// Subscriptions is the in-memory hook index.
type Subscriptions interface {
	// Subscribed reports whether userID has an active hook on eventType.
	Subscribed(userID, eventType string) bool
}

// Outcome says what became of one message; it labels the metrics.
type Outcome string

// Outcomes of Decode.
const (
	// Ignored: a channel or message type that is no webhook's twin. Such a
	// message is read no further than its channel name and type, so the
	// secrets some of them carry are never parsed.
	Ignored Outcome = "ignored"
	// Unsubscribed: a webhook's twin whose recipient has no hook for it.
	Unsubscribed Outcome = "unsubscribed"
	// Derived: the message gave an event (or a reaction to complete).
	Derived Outcome = "derived"
	// Malformed: a channel we use, with a shape we do not know.
	Malformed Outcome = "malformed"
)

// Channel names and prefixes Ocean publishes the webhooks' twins on.
const (
	chNotes       = "notesStream"
	chMainPfx     = "mainStream:"
	chNotePfx     = "noteStream:"
	typeReacted   = "reacted"
	typeUnreacted = "unreacted"
)

// mainTypes maps a mainStream message type to the key its body takes in the
// webhook body ({note} or {user}); no other type on mainStream is a webhook.
var mainTypes = map[string]string{
	webhook.Mention:  "note",
	webhook.Reply:    "note",
	webhook.Renote:   "note",
	webhook.Follow:   "user",
	webhook.Followed: "user",
	webhook.Unfollow: "user",
}

// Reacted is a reaction to a local user's note that the stream announced:
// the webhook body needs the note and the reacting user, which the message
// does not carry. Removed marks an `unreacted` (a reaction removed, or
// changed: Ocean removes the old one before it adds the new one): no event,
// but the next reaction of ReactorID to NoteID is a new one.
type Reacted struct {
	NoteID    string // the note reacted to
	AuthorID  string // the note's author: the recipient
	ReactorID string // who reacted
	Reaction  string // the reaction as Ocean stored it
	Removed   bool   // an unreacted
}

// Decoded is what one message gave.
type Decoded struct {
	Outcome Outcome
	Event   webhook.Event // when Outcome is Derived and Reaction is nil
	Reacted *Reacted      // a reaction to complete with reads, or removed
	Reason  string        // why a message is Malformed; never quotes the message
}

// Decode maps one published message (Ocean's {"channel","message"} string)
// to its event. It consults the hook index before reading anything but the
// channel and the message type, so traffic that concerns no hook costs a
// couple of short scans.
func Decode(raw string, subs Subscriptions) Decoded {
	ch := gjson.Get(raw, "channel")
	if ch.Type != gjson.String {
		return Decoded{Outcome: Malformed, Reason: "no channel"}
	}
	switch name := ch.Str; {
	case name == chNotes:
		return decodeNote(raw, subs)
	case strings.HasPrefix(name, chMainPfx):
		return decodeMain(raw, name[len(chMainPfx):], subs)
	case strings.HasPrefix(name, chNotePfx):
		return decodeNoteStream(raw, name[len(chNotePfx):], subs)
	default:
		return Decoded{Outcome: Ignored}
	}
}

// decodeNote: notesStream carries every note created, the bare packed note
// (as the `note` webhook has it); only local authors can have hooks.
func decodeNote(raw string, subs Subscriptions) Decoded {
	author := gjson.Get(raw, "message.userId")
	if author.Type != gjson.String || author.Str == "" {
		return Decoded{Outcome: Malformed, Reason: "note without userId"}
	}
	if !subs.Subscribed(author.Str, webhook.Note) {
		return Decoded{Outcome: Unsubscribed}
	}
	note := gjson.Get(raw, "message")
	if r := checkObject(raw, note); r != "" {
		return Decoded{Outcome: Malformed, Reason: "note: " + r}
	}
	if host := note.Get("user.host"); host.Exists() && host.Type != gjson.Null {
		return Decoded{Outcome: Unsubscribed} // a remote author owns no hook
	}
	return Decoded{Outcome: Derived, Event: webhook.Event{
		Type: webhook.Note, UserID: author.Str, Body: wrap("note", note.Raw)}}
}

// decodeMain: mainStream:<user id> carries the recipient's events, the six
// webhook twins as {type, body}.
func decodeMain(raw string, userID string, subs Subscriptions) Decoded {
	typ := gjson.Get(raw, "message.type")
	if typ.Type != gjson.String {
		return Decoded{Outcome: Ignored}
	}
	key, ok := mainTypes[typ.Str]
	if !ok {
		return Decoded{Outcome: Ignored}
	}
	if userID == "" || !subs.Subscribed(userID, typ.Str) {
		return Decoded{Outcome: Unsubscribed}
	}
	body := gjson.Get(raw, "message.body")
	if r := checkObject(raw, body); r != "" {
		return Decoded{Outcome: Malformed, Reason: typ.Str + ": " + r}
	}
	return Decoded{Outcome: Derived, Event: webhook.Event{
		Type: typ.Str, UserID: userID, Body: wrap(key, body.Raw)}}
}

// decodeNoteStream: noteStream:<note id> carries a note's live updates; a
// `reacted` one (this fork adds the author's userId) is a reaction event for
// the author, an `unreacted` one (of the same shape) the removal of one.
func decodeNoteStream(raw string, noteID string, subs Subscriptions) Decoded {
	typ := gjson.Get(raw, "message.type")
	if typ.Type != gjson.String || (typ.Str != typeReacted && typ.Str != typeUnreacted) {
		return Decoded{Outcome: Ignored}
	}
	author := gjson.Get(raw, "message.body.userId")
	if author.Type != gjson.String || author.Str == "" {
		return Decoded{Outcome: Malformed, Reason: typ.Str + " without the note's userId"}
	}
	if !subs.Subscribed(author.Str, webhook.Reaction) {
		return Decoded{Outcome: Unsubscribed}
	}
	if !gjson.Valid(raw) {
		return Decoded{Outcome: Malformed, Reason: typ.Str + ": invalid JSON"}
	}
	r := gjson.Get(raw, "message.body.body")
	reaction, reactor := r.Get("reaction"), r.Get("userId")
	if reaction.Type != gjson.String || reactor.Type != gjson.String || reactor.Str == "" || noteID == "" {
		return Decoded{Outcome: Malformed, Reason: typ.Str + " without reaction or userId"}
	}
	return Decoded{Outcome: Derived, Reacted: &Reacted{NoteID: noteID, AuthorID: author.Str,
		ReactorID: reactor.Str, Reaction: reaction.Str, Removed: typ.Str == typeUnreacted}}
}

// checkObject says what is wrong with v as an event's object, or "". The
// message is validated as a whole only here, once it concerns a hook.
func checkObject(raw string, v gjson.Result) string {
	switch {
	case !v.IsObject():
		return "not an object"
	case !gjson.Valid(raw):
		return "invalid JSON"
	case v.Get("id").Type != gjson.String:
		return "no id"
	}
	return ""
}

// wrap is {"<key>":<raw>}, the webhook body around the published object,
// whose bytes (and so its key order) are kept as they are.
func wrap(key, raw string) []byte {
	var b bytes.Buffer
	b.Grow(len(key) + len(raw) + 5)
	b.WriteString(`{"`)
	b.WriteString(key)
	b.WriteString(`":`)
	b.WriteString(raw)
	b.WriteByte('}')
	return b.Bytes()
}
