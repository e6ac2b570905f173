package matchers

import (
	"fmt"
	"strconv"
	"time"

	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// userLiteKeys are the keys of Ocean's packed UserLite. A projection keeps
// them in the order of its source, which is the order Ocean packs them in.
var userLiteKeys = keySet(
	"id", "name", "username", "host", "avatarUrl", "avatarBlurhash",
	"avatarDecorations", "isBot", "isCat", "requireSigninToViewContents",
	"makeNotesFollowersOnlyBefore", "makeNotesHiddenBefore", "instance",
	"emojis", "onlineStatus", "badgeRoles",
)

// publicDetailedKeys are the keys of UserDetailedNotMe that any other user
// sees, before the relation flags: UserLite plus the public profile. Left out
// on purpose: what only the user sees of themselves (avatarId, isAdmin,
// mutedWords, policies, email, …), what only moderators see (moderationNote,
// twoFactorEnabled, usePasswordLessLogin, securityKeys) and the relation flags,
// which are written afresh for the viewer.
var publicDetailedKeys = keySet(
	"id", "name", "username", "host", "avatarUrl", "avatarBlurhash",
	"avatarDecorations", "isBot", "isCat", "requireSigninToViewContents",
	"makeNotesFollowersOnlyBefore", "makeNotesHiddenBefore", "instance",
	"emojis", "onlineStatus", "badgeRoles",
	"url", "uri", "movedTo", "alsoKnownAs", "createdAt", "updatedAt",
	"lastFetchedAt", "bannerUrl", "bannerBlurhash", "isLocked", "isSilenced",
	"isLimited", "isSuspended", "description", "location", "birthday", "lang",
	"fields", "verifiedLinks", "mutualLinkSections", "followersCount",
	"followingCount", "notesCount", "pinnedNoteIds", "pinnedNotes",
	"pinnedPageId", "pinnedPage", "publicReactions", "followersVisibility",
	"followingVisibility", "chatScope", "canChat", "roles", "memo",
)

func keySet(keys ...string) map[string]bool {
	m := make(map[string]bool, len(keys))
	for _, k := range keys {
		m[k] = true
	}
	return m
}

// userBody is {"user":<user>}.
func userBody(user []byte) []byte {
	dst := make([]byte, 0, len(user)+9)
	dst = append(dst, `{"user":`...)
	dst = append(dst, user...)
	return append(dst, '}')
}

// userLite projects a packed user (any detail, any viewer) onto UserLite,
// which looks the same to every viewer.
func userLite(view gjson.Result) []byte {
	dst := make([]byte, 0, 512)
	dst = append(dst, '{')
	first := true
	view.ForEach(func(k, v gjson.Result) bool {
		if !userLiteKeys[k.Str] {
			return true
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		dst = append(dst, v.Raw...)
		return true
	})
	return append(dst, '}')
}

// relation is users/relation as seen from one side: "you" is the viewer.
type relation struct {
	following      bool // the viewer follows the user
	followed       bool // the user follows the viewer
	requestFromYou bool // the viewer asked to follow the user
	requestToYou   bool // the user asked to follow the viewer
	blocking       bool // the viewer blocks the user
	blocked        bool // the user blocks the viewer
	muted          bool // the viewer mutes the user
	renoteMuted    bool // the viewer mutes the user's renotes
}

// mirrored is the same relation seen from the other side. Mutes are private
// to the muter and cannot be mirrored: the other side's are unknown (false).
func (r relation) mirrored() relation {
	return relation{
		following:      r.followed,
		followed:       r.following,
		requestFromYou: r.requestToYou,
		requestToYou:   r.requestFromYou,
		blocking:       r.blocked,
		blocked:        r.blocking,
	}
}

// parseRelation reads the relation flags of userID from a users/relation
// answer (an object, or an array of them) or from a packed UserDetailedNotMe.
func parseRelation(res gjson.Result, userID string) (relation, error) {
	if res.IsArray() {
		var found gjson.Result
		res.ForEach(func(_, v gjson.Result) bool {
			if v.IsObject() && stringField(v, "id") == userID {
				found = v
				return false
			}
			return true
		})
		res = found
	}
	if !res.IsObject() {
		return relation{}, fmt.Errorf("no relation for the user: %w", errMalformed)
	}
	if id := res.Get("id"); id.Exists() && id.Str != userID {
		return relation{}, fmt.Errorf("relation of another user: %w", errMalformed)
	}
	var r relation
	flags := []struct {
		key      string
		dst      *bool
		required bool
	}{
		{"isFollowing", &r.following, true},
		{"isFollowed", &r.followed, true},
		{"hasPendingFollowRequestFromYou", &r.requestFromYou, true},
		{"hasPendingFollowRequestToYou", &r.requestToYou, true},
		{"isBlocking", &r.blocking, false},
		{"isBlocked", &r.blocked, false},
		{"isMuted", &r.muted, false},
		{"isRenoteMuted", &r.renoteMuted, false},
	}
	for _, f := range flags {
		v := res.Get(f.key)
		switch {
		case v.Type == gjson.True || v.Type == gjson.False:
			*f.dst = v.Bool()
		case f.required || v.Exists():
			return relation{}, fmt.Errorf("relation flag %s is not a boolean: %w", f.key, errMalformed)
		}
	}
	return r, nil
}

// seenBy builds UserDetailedNotMe of a user as another user would see it,
// from the user's own view of themselves (users/show of their own id) and the
// relation as the viewer sees it. Approximations, because the sidecar has no
// token of the viewer: the viewer's private memo about the user is unknown
// (null), and so are the viewer's notification settings for a follow ("none",
// withReplies false). Follower and following counts are hidden as Ocean hides
// them for that viewer (followersVisibility/followingVisibility), and pinned
// notes lose what only the user could see of them (myReaction, poll votes)
// and are hidden where the viewer may not see them (ocean.HideFor, judged at
// now).
func seenBy(self gjson.Result, rel relation, viewer ocean.Viewer, now time.Time) []byte {
	dst := make([]byte, 0, len(self.Raw)+256)
	dst = append(dst, '{')
	first := true
	self.ForEach(func(k, v gjson.Result) bool {
		if !publicDetailedKeys[k.Str] {
			return true
		}
		if !first {
			dst = append(dst, ',')
		}
		first = false
		dst = append(dst, k.Raw...)
		dst = append(dst, ':')
		switch k.Str {
		case "memo":
			dst = append(dst, "null"...)
		case "followersCount":
			dst = appendCount(dst, v, self.Get("followersVisibility").Str, rel.following)
		case "followingCount":
			dst = appendCount(dst, v, self.Get("followingVisibility").Str, rel.following)
		case "pinnedNotes":
			dst = appendNotes(dst, v, viewer, now)
		default:
			dst = append(dst, v.Raw...)
		}
		return true
	})
	if !first {
		dst = append(dst, ',')
	}
	dst = appendFlag(dst, "isFollowing", rel.following, false)
	dst = appendFlag(dst, "isFollowed", rel.followed, true)
	dst = appendFlag(dst, "hasPendingFollowRequestFromYou", rel.requestFromYou, true)
	dst = appendFlag(dst, "hasPendingFollowRequestToYou", rel.requestToYou, true)
	dst = appendFlag(dst, "isBlocking", rel.blocking, true)
	dst = appendFlag(dst, "isBlocked", rel.blocked, true)
	dst = appendFlag(dst, "isMuted", rel.muted, true)
	dst = appendFlag(dst, "isRenoteMuted", rel.renoteMuted, true)
	dst = append(dst, `,"notify":"none","withReplies":false`...)
	if rel.following {
		// Ocean shows a user's followedMessage to their followers only.
		dst = append(dst, `,"followedMessage":`...)
		if m := self.Get("followedMessage"); m.Exists() {
			dst = append(dst, m.Raw...)
		} else {
			dst = append(dst, "null"...)
		}
	}
	return append(dst, '}')
}

// appendCount writes a follow count as Ocean shows it to a viewer who is not
// the user, not a moderator, and follows the user or not.
func appendCount(dst []byte, v gjson.Result, visibility string, viewerFollows bool) []byte {
	if visibility == "public" || (visibility == "followers" && viewerFollows) {
		return append(dst, v.Raw...)
	}
	return append(dst, "null"...)
}

// appendNotes writes an array of packed notes without their viewer's fields,
// as Ocean packs them for viewer.
func appendNotes(dst []byte, notes gjson.Result, viewer ocean.Viewer, now time.Time) []byte {
	if !notes.IsArray() {
		return append(dst, notes.Raw...)
	}
	dst = append(dst, '[')
	i := 0
	notes.ForEach(func(_, n gjson.Result) bool {
		if i > 0 {
			dst = append(dst, ',')
		}
		i++
		if n.IsObject() {
			start := len(dst)
			dst = appendNote(dst, n, nil)
			if hidden, changed := ocean.HideFor(dst[start:], viewer, now); changed {
				dst = append(dst[:start], hidden...)
			}
		} else {
			dst = append(dst, n.Raw...)
		}
		return true
	})
	return append(dst, ']')
}

func appendFlag(dst []byte, key string, v, comma bool) []byte {
	if comma {
		dst = append(dst, ',')
	}
	dst = append(dst, '"')
	dst = append(dst, key...)
	dst = append(dst, `":`...)
	return strconv.AppendBool(dst, v)
}
