package ocean

import (
	"math"
	"time"
	"unsafe"

	"github.com/tidwall/gjson"
)

// Viewer is what the sidecar knows of the user a note is packed for.
type Viewer struct {
	// ID is the viewer's user id; "" is an anonymous viewer.
	ID string
	// Follows reports whether the viewer follows the user authorID. It is
	// asked only for a followers-only note of authorID that neither replies to
	// nor mentions the viewer. It must answer true only when the follow is
	// established: false, also when unknown, hides the note. Nil: never known.
	Follows func(authorID string) bool
}

// HideFor returns a packed note as Ocean packs it for v, given the same note
// packed for another viewer (its author, usually): the note and each nested
// reply and renote, at any depth, that v may not see is hidden as Ocean's
// NoteEntityService hides it. A hidden note keeps its keys and their order,
// except that visibleUserIds and poll are removed, text and cw become null,
// fileIds and files become [], and "isHidden":true comes last.
//
// Ocean's rule (shouldHideNote after treatVisibility), for a note not
// written by v: hidden when its author's makeNotesHiddenBefore covers its
// createdAt, or the author requires sign-in and v is anonymous; a public or
// home note that the author's makeNotesFollowersOnlyBefore covers is a
// followers note (its visibility then reads "followers"); a specified note
// is hidden unless v is in visibleUserIds; a followers note is hidden unless
// it replies to v (replyUserId), mentions v, or v follows its author. Ocean
// also shows a followers note to a remote viewer of a remote author; webhook
// recipients are local, so that case never applies here.
//
// It fails closed: what it cannot establish from the note and v hides the
// note: a missing or malformed author, user, createdAt (when a time rule
// needs it), time setting, visibility or visibleUserIds. A note already
// hidden in the view it was given stays hidden: content that is not there
// cannot be shown. The time rules are judged at now, as Ocean judges them
// when it packs.
//
// note must be a JSON object; anything else is returned as it is. changed is
// false when nothing was hidden: hidden is then note itself.
func HideFor(note []byte, v Viewer, now time.Time) (hidden []byte, changed bool) {
	if len(note) == 0 {
		return note, false
	}
	// Read in place: note is only read during the call, and nothing read
	// from it is kept (what is written out is copied into a new slice).
	n := gjson.Parse(unsafe.String(unsafe.SliceData(note), len(note)))
	if !n.IsObject() {
		return note, false
	}
	out := hideNote(n, v, now)
	if out == nil {
		return note, false
	}
	return out, true
}

// hideNote returns n for v, or nil when nothing in it changes for v.
func hideNote(n gjson.Result, v Viewer, now time.Time) []byte {
	var f noteFields
	n.ForEach(func(k, val gjson.Result) bool {
		switch k.Str {
		case "userId":
			f.author = val
		case "user":
			f.user = val
		case "createdAt":
			f.createdAt = val
		case "visibility":
			f.visibility = val
		case "visibleUserIds":
			f.visibleUserIDs = val
		case "replyUserId":
			f.replyUserID = val
		case "mentions":
			f.mentions = val
		case "reply":
			f.reply = val
		case "renote":
			f.renote = val
		}
		return true
	})
	treat, hide := f.judge(v, now)
	var reply, renote []byte
	if f.reply.IsObject() {
		reply = hideNote(f.reply, v, now)
	}
	if f.renote.IsObject() {
		renote = hideNote(f.renote, v, now)
	}
	if !treat && !hide && reply == nil && renote == nil {
		return nil
	}
	return appendHidden(make([]byte, 0, len(n.Raw)+64), n, hide, treat, reply, renote)
}

// noteFields are the members of a packed note that the rule reads.
type noteFields struct {
	author, user, createdAt, visibility, visibleUserIDs gjson.Result
	replyUserID, mentions, reply, renote                gjson.Result
}

// judge applies Ocean's rule: treat reports that a public or home note reads
// as followers by its author's setting; hide that v may not see the note.
func (f *noteFields) judge(v Viewer, now time.Time) (treat, hide bool) {
	visibility := ""
	if f.visibility.Type == gjson.String {
		visibility = f.visibility.Str
	}
	user := f.user
	if (visibility == "public" || visibility == "home") && user.IsObject() &&
		hiddenByTime(user.Get("makeNotesFollowersOnlyBefore"), f.createdAt, now) {
		treat, visibility = true, "followers"
	}
	author := ""
	if f.author.Type == gjson.String {
		author = f.author.Str
	}
	switch {
	case author == "":
		return treat, true
	case author == v.ID:
		return treat, false
	case !user.IsObject():
		return treat, true
	case v.ID == "" && user.Get("requireSigninToViewContents").Type == gjson.True:
		return treat, true
	case hiddenByTime(user.Get("makeNotesHiddenBefore"), f.createdAt, now):
		return treat, true
	}
	switch visibility {
	case "public", "home":
		return treat, false
	case "specified":
		return treat, !hasID(f.visibleUserIDs, v.ID)
	case "followers":
		if v.ID == "" {
			return treat, true
		}
		visible := (f.replyUserID.Type == gjson.String && f.replyUserID.Str == v.ID) ||
			hasID(f.mentions, v.ID) ||
			(v.Follows != nil && v.Follows(author))
		return treat, !visible
	default:
		return treat, true
	}
}

// hiddenByTime is Ocean's shouldHideNoteByTime: setting null or absent
// hides nothing; a positive one (Unix seconds) hides notes created at or
// before it; zero or a negative one hides notes at least that many seconds
// old. A malformed setting or a createdAt it cannot read hides (fail closed).
func hiddenByTime(setting, createdAt gjson.Result, now time.Time) bool {
	switch setting.Type {
	case gjson.Null:
		return false
	case gjson.Number:
	default:
		return true
	}
	if createdAt.Type != gjson.String {
		return true
	}
	created, err := time.Parse(time.RFC3339Nano, createdAt.Str)
	if err != nil {
		return true
	}
	s := setting.Num
	if math.IsNaN(s) || math.IsInf(s, 0) {
		return true
	}
	if s <= 0 {
		return now.Sub(created).Seconds() >= -s
	}
	return float64(created.UnixMilli())/1000 <= s
}

// hasID reports whether ids is an array holding the string id ("" never).
func hasID(ids gjson.Result, id string) bool {
	if id == "" || !ids.IsArray() {
		return false
	}
	found := false
	ids.ForEach(func(_, x gjson.Result) bool {
		found = x.Type == gjson.String && x.Str == id
		return !found
	})
	return found
}

// hiddenMembers are what Ocean's hideNote sets, in the order it sets them: a
// member the note lacks is appended in this order.
var hiddenMembers = [...]struct{ key, raw string }{
	{"fileIds", "[]"}, {"files", "[]"}, {"text", "null"}, {"cw", "null"},
}

// appendHidden appends n with its keys in order: hidden as hideNote does when
// hide is set, visibility "followers" when treat is set, and the nested reply
// and renote replaced where they changed (non-nil).
func appendHidden(dst []byte, n gjson.Result, hide, treat bool, reply, renote []byte) []byte {
	var seen [len(hiddenMembers)]bool
	seenHidden := false
	first := true
	dst = append(dst, '{')
	key := func(raw string) {
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, raw...)
		dst = append(dst, ':')
	}
	n.ForEach(func(k, val gjson.Result) bool {
		switch {
		case hide && (k.Str == "visibleUserIds" || k.Str == "poll"):
		case hide && k.Str == "isHidden":
			seenHidden = true
			key(k.Raw)
			dst = append(dst, "true"...)
		case treat && k.Str == "visibility":
			key(k.Raw)
			dst = append(dst, `"followers"`...)
		case k.Str == "reply" && reply != nil:
			key(k.Raw)
			dst = append(dst, reply...)
		case k.Str == "renote" && renote != nil:
			key(k.Raw)
			dst = append(dst, renote...)
		default:
			key(k.Raw)
			if i := hiddenMember(k.Str); hide && i >= 0 {
				seen[i] = true
				dst = append(dst, hiddenMembers[i].raw...)
			} else {
				dst = append(dst, val.Raw...)
			}
		}
		return true
	})
	if hide {
		for i, m := range hiddenMembers {
			if !seen[i] {
				key(`"` + m.key + `"`)
				dst = append(dst, m.raw...)
			}
		}
		if !seenHidden {
			key(`"isHidden"`)
			dst = append(dst, "true"...)
		}
	}
	return append(dst, '}')
}

func hiddenMember(key string) int {
	for i, m := range hiddenMembers {
		if m.key == key {
			return i
		}
	}
	return -1
}
