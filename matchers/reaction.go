package matchers

import (
	"fmt"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// noteIDParam is the parameter of notes/show.
type noteIDParam struct {
	NoteID string `json:"noteId"`
}

// deriveReactionCreate (beyond Ocean, which never fires `reaction`): a 2xx
// notes/reactions/create fires `reaction` to the note's author, self-reactions
// included, with {note, reaction, user}: the note as of after the reaction
// without the caller's own fields, the reaction string as the caller gave it,
// and the caller as UserLite. The author is not in the call, so this rule
// reads notes/show whenever anyone subscribes to `reaction`.
func deriveReactionCreate(c *call) error {
	if !gjson.ValidBytes(c.obs.Request) {
		return fmt.Errorf("request is not JSON: %w", errMalformed)
	}
	req := gjson.ParseBytes(c.obs.Request)
	noteID := stringField(req, "noteId")
	reaction := req.Get("reaction")
	if noteID == "" || reaction.Type != gjson.String {
		return fmt.Errorf("request lacks noteId or reaction: %w", errMalformed)
	}
	note, err := c.readObject("notes/show", noteIDParam{NoteID: noteID})
	if err == nil && stringField(note, "id") != noteID {
		err = fmt.Errorf("notes/show: answer is another note: %w", errMalformed)
	}
	if err != nil {
		c.skip(1, "notes/show", err)
		return nil
	}
	author := stringField(note, "userId")
	if author == "" || !isLocal(note.Get("user")) || !c.wants(author, webhook.Reaction) {
		return nil
	}
	caller, err := c.callerID()
	if err != nil {
		c.skip(1, "me", err)
		return nil
	}
	self, err := c.userView(caller)
	if err != nil {
		c.skip(1, "users/show", err)
		return nil
	}
	user := userLite(self)
	// The caller's view of the note, hidden where its author may not see a
	// nested note.
	view, _ := c.hideNote(appendNote(nil, note, nil), author, caller)
	body := make([]byte, 0, len(view)+len(reaction.Raw)+len(user)+32)
	body = append(body, `{"note":`...)
	body = append(body, view...)
	body = append(body, `,"reaction":`...)
	body = append(body, reaction.Raw...)
	body = append(body, `,"user":`...)
	body = append(body, user...)
	body = append(body, '}')
	c.emit(webhook.Reaction, author, body)
	return nil
}
