package matchers

import (
	"fmt"
	"slices"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// deriveNotesCreate: `note` to the author; `reply` to the replied-to author if
// local (self-replies included); `renote` to the renoted author if local and
// not the author (pure renotes and quotes alike); `mention` to each id in
// createdNote.mentions (which already holds the reply target when it is
// someone else and every addressee of a specified note). It needs no extra
// Ocean read: every recipient id is in the answer.
func deriveNotesCreate(c *call) error {
	res, err := c.response()
	if err != nil {
		return err
	}
	note := res.Get("createdNote")
	switch {
	case note.Type == gjson.Null && note.Exists():
		// Forks with scheduled notes answer createdNote:null; the note is
		// posted later by a job, which the sidecar cannot see.
		return nil
	case !note.IsObject():
		return fmt.Errorf("createdNote missing or not an object: %w", errMalformed)
	}
	author := stringField(note, "userId")
	if author == "" {
		return fmt.Errorf("createdNote.userId missing: %w", errMalformed)
	}

	wantNote := c.wants(author, webhook.Note)

	var replyTo string
	if reply := note.Get("reply"); reply.IsObject() {
		if isLocal(reply.Get("user")) {
			replyTo = stringField(reply, "userId")
		}
	} else {
		// No packed reply (it could not be packed for the caller): Ocean's
		// replyUserId still names the author. Only local users own hooks,
		// so the subscription check below stands in for the host check.
		replyTo = stringField(note, "replyUserId")
	}
	wantReply := c.wants(replyTo, webhook.Reply)

	var renoteOf string
	if renote := note.Get("renote"); renote.IsObject() && isLocal(renote.Get("user")) {
		renoteOf = stringField(renote, "userId")
	}
	wantRenote := renoteOf != author && c.wants(renoteOf, webhook.Renote)

	// A mentioned id can be a remote user's, and telling would cost a
	// users/show. It is not needed: only local users can own hooks (they are
	// created through the authenticated API), so an id that has an active
	// hook listing `mention` is local by construction, and a remote id never
	// passes the check.
	var mentioned []string
	if ms := note.Get("mentions"); ms.IsArray() {
		ms.ForEach(func(_, id gjson.Result) bool {
			if id.Type == gjson.String && !slices.Contains(mentioned, id.Str) && c.wants(id.Str, webhook.Mention) {
				mentioned = append(mentioned, id.Str)
			}
			return true
		})
	}

	if wantNote || wantReply || wantRenote {
		// One body for the three: Ocean packs the note once, for no viewer.
		body := noteBody(note, true)
		if wantNote {
			c.emit(webhook.Note, author, body)
		}
		if wantReply {
			c.emit(webhook.Reply, replyTo, body)
		}
		if wantRenote {
			c.emit(webhook.Renote, renoteOf, body)
		}
	}
	if len(mentioned) > 0 {
		// Ocean packs the mention for the mentioned user, without the pair
		// cache. We have the author's view: drop what is the author's own
		// (myReaction, poll votes) and keep the rest.
		body := noteBody(note, false)
		for _, id := range mentioned {
			c.emit(webhook.Mention, id, body)
		}
	}
	return nil
}

// noteBody is {"note":<note>} with the note rewritten by appendNote.
func noteBody(note gjson.Result, pairCache bool) []byte {
	dst := make([]byte, 0, len(note.Raw)+96)
	dst = append(dst, `{"note":`...)
	dst = appendNote(dst, note, pairCache)
	return append(dst, '}')
}

// appendNote appends a packed note without what only its viewer may see, as
// Ocean packs it for a webhook: no myReaction, every poll choice isVoted:false,
// and, with pairCache, an empty reactionAndUserPairCache right after
// reactionEmojis (where Ocean's packer puts it). Nested reply and renote get
// the same treatment. Keys keep their order; the note must be an object.
//
// The pair cache of a nested note holds its latest reactions as
// "userId/reaction" strings, which no API exposes; [] is what it is for a
// note nobody reacted to.
func appendNote(dst []byte, note gjson.Result, pairCache bool) []byte {
	insertCache := pairCache && !note.Get("reactionAndUserPairCache").Exists()
	dst = append(dst, '{')
	first := true
	note.ForEach(func(k, v gjson.Result) bool {
		if k.Str == "myReaction" {
			return true
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		switch {
		case (k.Str == "reply" || k.Str == "renote") && v.IsObject():
			dst = appendNote(dst, v, pairCache)
		case k.Str == "poll" && v.IsObject():
			dst = appendPoll(dst, v)
		default:
			dst = append(dst, v.Raw...)
		}
		if insertCache && k.Str == "reactionEmojis" {
			dst = append(dst, `,"reactionAndUserPairCache":[]`...)
			insertCache = false
		}
		return true
	})
	if insertCache {
		if !first {
			dst = append(dst, ',')
		}
		dst = append(dst, `"reactionAndUserPairCache":[]`...)
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
