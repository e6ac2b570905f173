package matchers

import (
	"fmt"
	"net/http"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// deriveNotesCreate: `note` to the author; `reply` to the replied-to author if
// local (self-replies included); `renote` to the renoted author if local and
// not the author (pure renotes and quotes alike); `mention` to each id in
// createdNote.mentions (which already holds the reply target when it is
// someone else and every addressee of a specified note). Every recipient id
// is in the answer; the only extra Ocean read is users/relation, when a
// recipient other than the author may see a followers-only note of the
// author only as a follower (see hideNote). A note already derived (Ocean's
// answer to a repeated call) derives nothing.
func deriveNotesCreate(c *call) error {
	if c.obs.Status == http.StatusNoContent {
		// Ocean answers 204 when it shows no note: a scheduled note (posted
		// later by Ocean's queue, which fires its events then) or a note
		// created with noCreatedNote (its events fired, the id unseen).
		c.nothing(noNoteReason(c))
		return nil
	}
	answer, err := c.response()
	if err != nil {
		return err
	}
	note := answer.Get("createdNote")
	switch {
	case note.Type == gjson.Null && note.Exists():
		// Forks with scheduled notes answer createdNote:null; the note is
		// posted later by a job, which the sidecar cannot see.
		return nil
	case !note.IsObject():
		return fmt.Errorf("createdNote missing or not an object: %w", errMalformed)
	}
	// One pass over the note for every member the rule looks at.
	var id, author, replyUserID string
	var reply, renote, mentions gjson.Result
	note.ForEach(func(k, v gjson.Result) bool {
		switch k.Str {
		case "id":
			if v.Type == gjson.String {
				id = v.Str
			}
		case "userId":
			if v.Type == gjson.String {
				author = v.Str
			}
		case "replyUserId":
			if v.Type == gjson.String {
				replyUserID = v.Str
			}
		case "reply":
			reply = v
		case "renote":
			renote = v
		case "mentions":
			mentions = v
		}
		return true
	})
	if id == "" || author == "" {
		return fmt.Errorf("createdNote.id or createdNote.userId missing: %w", errMalformed)
	}
	if !c.e.recent.first(id, c.e.now()) {
		// Ocean answers a notes/create repeated within its window with the
		// earlier note, and fires nothing for it: the events of that note
		// were derived from the first answer.
		c.nothing("repeated")
		return nil
	}

	wantNote := c.wants(author, webhook.Note)

	replyTo := replyUserID
	if reply.IsObject() {
		replyTo = ""
		if isLocal(reply.Get("user")) {
			replyTo = stringField(reply, "userId")
		}
	}
	// Without a packed reply (it could not be packed for the caller) Ocean's
	// replyUserId still names the author. Only local users own hooks, so the
	// subscription check stands in for the host check.
	wantReply := c.wants(replyTo, webhook.Reply)

	var renoteOf string
	if renote.IsObject() && isLocal(renote.Get("user")) {
		renoteOf = stringField(renote, "userId")
	}
	wantRenote := renoteOf != author && c.wants(renoteOf, webhook.Renote)

	// A mentioned id can be a remote user's, and telling would cost a
	// users/show. It is not needed: only local users can own hooks (they are
	// created through the authenticated API), so an id that has an active
	// hook listing `mention` is local by construction, and a remote id never
	// passes the check.
	var mentioned []string
	if mentions.IsArray() {
		mentions.ForEach(func(_, id gjson.Result) bool {
			if id.Type == gjson.String && !slices.Contains(mentioned, id.Str) && c.wants(id.Str, webhook.Mention) {
				mentioned = append(mentioned, id.Str)
			}
			return true
		})
	}

	full, mention := noteBodies(note, wantNote || wantReply || wantRenote, len(mentioned) > 0)
	// One body for note, reply and renote: Ocean packs the note once, for
	// no viewer. The answer is the author's view, which is all the author
	// may see. The replied-to and the renoted author get it hidden where
	// they may not see it, which Ocean does not do (it packs these bodies
	// without hiding): a webhook must not show a user what Ocean would not.
	if wantNote {
		c.emit(webhook.Note, author, full)
	}
	if wantReply {
		c.emit(webhook.Reply, replyTo, c.hideNoteBody(full, replyTo, author))
	}
	if wantRenote {
		c.emit(webhook.Renote, renoteOf, c.hideNoteBody(full, renoteOf, author))
	}
	// Ocean packs a mention for the mentioned user, without the pair cache,
	// hiding what that user may not see. We have the author's view: without
	// what is the author's own (myReaction, poll votes), and hidden for the
	// mentioned user, it is what they see.
	for _, id := range mentioned {
		c.emit(webhook.Mention, id, c.hideNoteBody(mention, id, author))
	}
	return nil
}

// noNoteReason says why notes/create answered 204, from its request.
func noNoteReason(c *call) string {
	if !gjson.ValidBytes(c.obs.Request) {
		return "no_content"
	}
	req := gjson.ParseBytes(c.obs.Request)
	// Ocean schedules when scheduledAt is truthy (a number other than 0).
	if at := req.Get("scheduledAt"); at.Type == gjson.Number && at.Num != 0 {
		return "scheduled"
	}
	if req.Get("noCreatedNote").Type == gjson.True {
		return "no_created_note"
	}
	return "no_content"
}

// cacheMember is what appendNote inserts into a note for a note, reply or
// renote body.
const cacheMember = `,"reactionAndUserPairCache":[]`

// noteBodies builds {"note":…} bodies of a created note: full for note,
// reply and renote (with the pair cache), mention for mention (without). The
// note is walked once: the mention body is the full one minus the members
// inserted. Bodies are shared by events and must not be modified.
func noteBodies(note gjson.Result, full, mention bool) (fullBody, mentionBody []byte) {
	if !full && !mention {
		return nil, nil
	}
	var at [4]int
	inserted := at[:0]
	var ins *[]int
	if full {
		ins = &inserted
	}
	fullBody = make([]byte, 0, len(note.Raw)+3*len(cacheMember)+10)
	fullBody = append(fullBody, `{"note":`...)
	fullBody = appendNote(fullBody, note, ins)
	fullBody = append(fullBody, '}')
	if !full {
		return nil, fullBody
	}
	if !mention {
		return fullBody, nil
	}
	mentionBody = make([]byte, 0, len(fullBody)-len(inserted)*len(cacheMember))
	from := 0
	for _, i := range inserted {
		mentionBody = append(mentionBody, fullBody[from:i]...)
		from = i + len(cacheMember)
	}
	return fullBody, append(mentionBody, fullBody[from:]...)
}

// appendNote appends a packed note without what only its viewer may see, as
// Ocean packs it for a webhook: no myReaction and every poll choice
// isVoted:false. With inserted non-nil it also puts an empty
// reactionAndUserPairCache right after reactionEmojis (where Ocean's packer
// puts it) unless the note has its own there or before (one further on is
// dropped rather than repeated), and records where in dst each insertion
// starts. Nested reply and renote get the same treatment. Keys keep their
// order; the note must be an object.
//
// The pair cache of a nested note holds its latest reactions as
// "userId/reaction" strings, which no API exposes; [] is what it is for a
// note nobody reacted to.
func appendNote(dst []byte, note gjson.Result, inserted *[]int) []byte {
	const cacheKey = "reactionAndUserPairCache"
	due := false  // the cache goes before the next member
	seen := false // the note has its own
	added := false
	dst = append(dst, '{')
	first := true
	insert := func() {
		*inserted = append(*inserted, len(dst))
		dst = append(dst, cacheMember...)
		added = true
	}
	note.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "myReaction" || (added && k.Str == cacheKey) {
			return true
		}
		if k.Str == cacheKey {
			seen = true
		}
		if due {
			due = false
			if !seen {
				insert()
			}
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		switch {
		case (k.Str == "reply" || k.Str == "renote") && v.IsObject():
			dst = appendNote(dst, v, inserted)
		case k.Str == "poll" && v.IsObject():
			dst = appendPoll(dst, v)
		default:
			dst = append(dst, v.Raw...)
		}
		if inserted != nil && k.Str == "reactionEmojis" {
			due = true
		}
		return true
	})
	if due && !seen {
		insert()
	}
	return append(dst, '}')
}

// appendPoll appends a packed poll with every choice's isVoted false.
func appendPoll(dst []byte, poll gjson.Result) []byte {
	dst = append(dst, '{')
	first := true
	poll.ForEach(func(k, v gjson.Result) bool {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		if k.Str != "choices" || !v.IsArray() {
			dst = append(dst, v.Raw...)
			return true
		}
		dst = append(dst, '[')
		i := 0
		v.ForEach(func(_, choice gjson.Result) bool {
			if i > 0 {
				dst = append(dst, ',')
			}
			i++
			if choice.IsObject() {
				dst = appendWith(dst, choice, "isVoted", "false")
			} else {
				dst = append(dst, choice.Raw...)
			}
			return true
		})
		dst = append(dst, ']')
		return true
	})
	return append(dst, '}')
}

// appendWith appends obj with the value of key (if present) replaced by raw.
func appendWith(dst []byte, obj gjson.Result, key, raw string) []byte {
	dst = append(dst, '{')
	first := true
	obj.ForEach(func(k, v gjson.Result) bool {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		if k.Str == key {
			dst = append(dst, raw...)
		} else {
			dst = append(dst, v.Raw...)
		}
		return true
	})
	return append(dst, '}')
}

// isLocal reports whether a packed user is local (host null). A missing user
// counts as local: the subscription check is what keeps remote users out.
func isLocal(user gjson.Result) bool {
	host := user.Get("host")
	return !host.Exists() || host.Type == gjson.Null
}

// stringField returns obj[key] if it is a string, else "".
func stringField(obj gjson.Result, key string) string {
	v := obj.Get(key)
	if v.Type != gjson.String {
		return ""
	}
	return v.Str
}
