package matchers

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"

	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// streamReactions is the pseudo-endpoint that labels the reads and metrics of
// reactions announced by Ocean's event stream.
const streamReactions = "stream:reacted"

// ReactionBody builds the body of a `reaction` event that Ocean's event stream
// announced (someone, possibly on another server, reacted to a local user's
// note): {note, reaction, user} as the API tap builds it, with the note as the
// public sees it (one notes/show with no credential), hidden where its author
// may not see a nested note, and the reactor as UserLite. ok is false when the
// note is gone or its author is not local.
func (e *Engine) ReactionBody(ctx context.Context, noteID, reactorID, reaction string) (body []byte, ok bool, err error) {
	c := &call{ctx: ctx, e: e, r: &rule{endpoint: streamReactions}, obs: &proxy.Observation{Endpoint: streamReactions}}
	defer c.close()
	note, err := c.readObject("notes/show", noteIDParam{NoteID: noteID})
	if err == nil && stringField(note, "id") != noteID {
		err = fmt.Errorf("notes/show: answer is another note: %w", errMalformed)
	}
	if err != nil {
		return nil, false, err
	}
	author := stringField(note, "userId")
	if author == "" || !isLocal(note.Get("user")) {
		return nil, false, nil
	}
	reactor, err := c.userView(reactorID)
	if err != nil {
		return nil, false, err
	}
	user := userLite(reactor)
	view, _ := c.hideNote(appendNote(nil, note, nil), author, "")
	quoted, err := jsonString(reaction)
	if err != nil {
		return nil, false, err
	}
	body = make([]byte, 0, len(view)+len(quoted)+len(user)+32)
	body = append(body, noteOpen...)
	body = append(body, view...)
	body = append(body, `,"reaction":`...)
	body = append(body, quoted...)
	body = append(body, `,"user":`...)
	body = append(body, user...)
	body = append(body, '}')
	e.m.derived.WithLabelValues(webhook.Reaction).Inc()
	return body, true, nil
}

// jsonString is s as a JSON string, with <, > and & left as they are, as
// JSON.stringify leaves them.
func jsonString(s string) ([]byte, error) {
	var b bytes.Buffer
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)
	if err := enc.Encode(s); err != nil {
		return nil, err
	}
	return bytes.TrimSuffix(b.Bytes(), []byte("\n")), nil
}
