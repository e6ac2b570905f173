package matchers

import (
	"github.com/oceanhooks/oceanhooks/ocean"
)

// noteOpen is how every {"note":…} body this package builds begins.
const noteOpen = `{"note":`

// hideNoteBody returns body ({"note":<note>}, the note as the caller saw it)
// as it must reach recipient: the note and each nested note that recipient
// may not see hidden (ocean.HideFor). The caller's own view needs nothing.
// body is returned itself when nothing changes, so that recipients who see
// it all share one body.
func (c *call) hideNoteBody(body []byte, recipient, callerID string) []byte {
	if recipient == callerID {
		return body
	}
	hidden, changed := c.hideNote(body[len(noteOpen):len(body)-1], recipient, callerID)
	if !changed {
		return body
	}
	out := make([]byte, 0, len(hidden)+len(noteOpen)+1)
	out = append(out, noteOpen...)
	out = append(out, hidden...)
	return append(out, '}')
}

// hideNote returns note (a packed note as the caller saw it) as Ocean packs
// it for recipient; changed is false when nothing is hidden (hidden is then
// note itself). What the sidecar
// knows of the recipient: its id (author, addressees, mentions, the replied
// user are in the note), and, for notes written by the caller only, whether
// the recipient follows the caller (users/relation with the caller's token,
// read once per call and recipient, and only when a followers-only note
// depends on it). Whom else the recipient follows it cannot know, so such
// notes are hidden (ocean.HideFor fails closed).
func (c *call) hideNote(note []byte, recipient, callerID string) (hidden []byte, changed bool) {
	v := ocean.Viewer{ID: recipient, Follows: func(author string) bool {
		return author == callerID && c.followsCaller(recipient)
	}}
	return ocean.HideFor(note, v, c.e.now())
}

// followsCaller reports whether user follows the caller, by the caller's
// users/relation to user. A failed read answers false (the note is then
// hidden) and is logged once per call and user.
func (c *call) followsCaller(user string) bool {
	if f, known := c.followers[user]; known {
		return f
	}
	rel, err := c.relationTo(user)
	if err != nil {
		c.e.log.WarnContext(c.ctx, "note sent hidden: relation read failed",
			"endpoint", c.r.endpoint, "read", "users/relation", "reason", readFailureReason(err), "err", err)
	}
	if c.followers == nil {
		c.followers = map[string]bool{}
	}
	c.followers[user] = rel.followed
	return rel.followed
}
