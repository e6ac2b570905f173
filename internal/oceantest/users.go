package oceantest

import (
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"time"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// userDefs are the capture's users and the test token of each.
var userDefs = []struct{ id, username, token string }{
	{AdminID, "admin", TokenAdmin},
	{AliceID, "alice", TokenAlice},
	{BobID, "bob", TokenBob},
	{CarolID, "carol", TokenCarol},
}

// appDefs are the test app tokens: whose they are and what they may do.
var appDefs = []struct {
	token, userID string
	permission    []string
}{
	{TokenAliceAppRead, AliceID, []string{"read:account"}},
	{TokenAliceAppWrite, AliceID, []string{"read:account", "write:account"}},
}

// appToken is an access token of an app: its user and its permissions.
type appToken struct {
	user       *user
	permission []string
}

// Key lists of Ocean's packed users, in Ocean's order (as in the captured
// follow delivery; the tests check them against the capture).
var (
	userLiteKeys = []string{"id", "name", "username", "host", "avatarUrl", "avatarBlurhash",
		"avatarDecorations", "isBot", "isCat", "emojis", "onlineStatus", "badgeRoles"}
	userDetailedKeys = []string{"url", "uri", "movedTo", "alsoKnownAs", "createdAt", "updatedAt",
		"lastFetchedAt", "bannerUrl", "bannerBlurhash", "isLocked", "isSilenced", "isLimited",
		"isSuspended", "description", "location", "birthday", "lang", "fields", "verifiedLinks",
		"mutualLinkSections", "followersCount", "followingCount", "notesCount", "pinnedNoteIds",
		"pinnedNotes", "pinnedPageId", "pinnedPage", "publicReactions", "followersVisibility",
		"followingVisibility", "chatScope", "canChat", "roles", "memo"}
	// moderatorKeys follow memo when a moderator looks at another user (the
	// captured admin/abuse-user-reports shows them); values come from the
	// user's MeDetailed.
	moderatorKeys = []string{"moderationNote", "twoFactorEnabled", "usePasswordLessLogin",
		"securityKeys", "avatarId", "bannerId", "isModerator", "isAdmin", "injectFeaturedNote",
		"receiveAnnouncementEmail", "alwaysMarkNsfw", "autoSensitive", "carefulBot",
		"autoAcceptFollowed", "noCrawle", "preventAiLearning", "isExplorable", "isDeleted",
		"twoFactorBackupCodesStock", "hideOnlineStatus", "hasUnreadSpecifiedNotes",
		"hasUnreadMentions", "hasUnreadChatMessages", "hasUnreadAnnouncement",
		"unreadAnnouncements", "hasUnreadAntenna", "hasUnreadChannel",
		"hasPendingReceivedFollowRequest", "postingLang", "viewingLangs",
		"showMediaInAllLanguages", "showHashtagsInAllLanguages", "mutedWords", "mutedInstances",
		"mutingNotificationTypes", "notificationRecieveConfig", "emailNotificationTypes",
		"achievements", "loggedInDays", "policies"}
	// secretKeys are in /api/i (a native token) but not in users/show of oneself.
	secretKeys = []string{"email", "emailVerified", "securityKeysList"}
)

// userTemplate is what the capture says of a user; shared, never modified.
type userTemplate struct {
	id, username, token string
	detailed            *object // UserLite + detailed keys, as captured at creation
	followedMessage     json.RawMessage
	me                  *object // the captured /api/i answer (MeDetailed)
}

// user is a user of one Server: the template and the state's changes.
type user struct {
	*userTemplate
	locked     bool
	notesCount int
	updatedAt  *time.Time
}

type edge struct{ from, to string }

type followInfo struct{ withReplies bool }

// state is the fake's model of the Ocean database.
type state struct {
	users    map[string]*user
	byToken  map[string]*user     // native tokens
	apps     map[string]*appToken // app tokens
	follows  map[edge]followInfo  // follower → followee
	requests map[edge]followInfo  // requester → followee
	blocks   map[edge]bool        // blocker → blockee
	notes    map[string]*note
	repeats  map[string]created // notes/create request → the note it made
	webhooks []*Webhook         // native hooks, creation order
	seq      int
	now      func() time.Time
}

// newState starts with the capture's users and nothing else.
func newState(templates map[string]*userTemplate, now func() time.Time) *state {
	st := &state{now: now, users: map[string]*user{}, byToken: map[string]*user{}, apps: map[string]*appToken{},
		follows: map[edge]followInfo{}, requests: map[edge]followInfo{},
		blocks: map[edge]bool{}, notes: map[string]*note{}, repeats: map[string]created{}}
	for _, t := range templates {
		u := &user{userTemplate: t}
		st.users[u.id] = u
		st.byToken[u.token] = u
	}
	for _, a := range appDefs {
		if u := st.users[a.userID]; u != nil {
			st.apps[a.token] = &appToken{user: u, permission: a.permission}
		}
	}
	return st
}

// userTemplates builds the users from the capture: their detailed objects
// from admin/accounts/create and signup, their /api/i answers from "i as …"
// (carol, who has none, gets her signup answer without its token).
func userTemplates(calls []Call) (map[string]*userTemplate, error) {
	out := map[string]*userTemplate{}
	created := map[string]*object{}
	mes := map[string]*object{}
	for _, c := range calls {
		if c.Status != http.StatusOK || c.Response == nil {
			continue
		}
		switch c.Endpoint {
		case "admin/accounts/create", "signup", "i":
		default:
			continue
		}
		o, err := parseObject(c.Response)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", c.Label, err)
		}
		var id string
		if err := json.Unmarshal(o.vals["id"], &id); err != nil {
			return nil, fmt.Errorf("%s: id: %w", c.Label, err)
		}
		if c.Endpoint == "i" {
			mes[id] = o
			continue
		}
		created[id] = o
		if _, ok := mes[id]; !ok && c.Endpoint == "signup" {
			me := o.clone()
			me.del("token")
			mes[id] = me
		}
	}
	for _, d := range userDefs {
		c, me := created[d.id], mes[d.id]
		if c == nil || me == nil {
			return nil, fmt.Errorf("capture lacks user %s (%s)", d.username, d.id)
		}
		u := &userTemplate{id: d.id, username: d.username, token: d.token,
			detailed:        c.pick(append(slices.Clone(userLiteKeys), userDetailedKeys...)),
			followedMessage: c.vals["followedMessage"], me: me}
		if u.followedMessage == nil {
			u.followedMessage = json.RawMessage("null")
		}
		out[u.id] = u
	}
	return out, nil
}

func (st *state) userByName(name string) *user {
	for _, u := range st.users {
		if equalFoldASCII(u.username, name) {
			return u
		}
	}
	return nil
}

func equalFoldASCII(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func (st *state) count(followee bool, id string) int {
	n := 0
	for e := range st.follows {
		if (followee && e.to == id) || (!followee && e.from == id) {
			n++
		}
	}
	return n
}

// relation is what users/relation says about target as seen by viewer.
type relation struct {
	ID                             string `json:"id"`
	IsFollowing                    bool   `json:"isFollowing"`
	HasPendingFollowRequestFromYou bool   `json:"hasPendingFollowRequestFromYou"`
	HasPendingFollowRequestToYou   bool   `json:"hasPendingFollowRequestToYou"`
	IsFollowed                     bool   `json:"isFollowed"`
	IsBlocking                     bool   `json:"isBlocking"`
	IsBlocked                      bool   `json:"isBlocked"`
	IsMuted                        bool   `json:"isMuted"`
	IsRenoteMuted                  bool   `json:"isRenoteMuted"`
}

func (st *state) relation(viewer, target string) relation {
	_, following := st.follows[edge{viewer, target}]
	_, followed := st.follows[edge{target, viewer}]
	_, reqFrom := st.requests[edge{viewer, target}]
	_, reqTo := st.requests[edge{target, viewer}]
	return relation{ID: target, IsFollowing: following, IsFollowed: followed,
		HasPendingFollowRequestFromYou: reqFrom, HasPendingFollowRequestToYou: reqTo,
		IsBlocking: st.blocks[edge{viewer, target}], IsBlocked: st.blocks[edge{target, viewer}]}
}

// live overwrites the captured values that the fake's state changes.
func (st *state) live(o *object, u *user) {
	o.set("isLocked", u.locked)
	if u.updatedAt != nil {
		o.set("updatedAt", isoTime(*u.updatedAt))
	}
	o.set("followersCount", st.count(true, u.id))
	o.set("followingCount", st.count(false, u.id))
	o.set("notesCount", u.notesCount)
}

// lite packs u as UserLite.
func (st *state) lite(u *user) *object { return u.detailed.pick(userLiteKeys) }

// isModerator reports whether u is a moderator or an administrator.
func (u *user) isModerator() bool {
	for _, k := range []string{"isModerator", "isAdmin"} {
		if v, ok := u.me.get(k); ok && string(v) == "true" {
			return true
		}
	}
	return false
}

// detailed packs u as seen by viewer: MeDetailed (without the secrets) for
// the user themself, UserDetailedNotMe with relation flags for another user
// (with the moderator's extra keys when viewer is one), and without relation
// flags for an anonymous viewer.
func (st *state) detailed(u, viewer *user) *object {
	if viewer != nil && viewer.id == u.id {
		o := st.meDetailed(u)
		for _, k := range secretKeys {
			o.del(k)
		}
		return o
	}
	o := u.detailed.clone()
	st.live(o, u)
	if viewer == nil {
		return o
	}
	if viewer.isModerator() {
		me := st.meDetailed(u)
		for _, k := range moderatorKeys {
			v, ok := me.get(k)
			switch {
			case k == "moderationNote" && !ok:
				o.set(k, "")
			case k == "unreadAnnouncements":
				o.set(k, nil)
			case ok:
				o.setRaw(k, v)
			}
		}
	}
	rel := st.relation(viewer.id, u.id)
	o.set("isFollowing", rel.IsFollowing)
	o.set("isFollowed", rel.IsFollowed)
	o.set("hasPendingFollowRequestFromYou", rel.HasPendingFollowRequestFromYou)
	o.set("hasPendingFollowRequestToYou", rel.HasPendingFollowRequestToYou)
	o.set("isBlocking", rel.IsBlocking)
	o.set("isBlocked", rel.IsBlocked)
	o.set("isMuted", rel.IsMuted)
	o.set("isRenoteMuted", rel.IsRenoteMuted)
	o.set("notify", "none")
	f, following := st.follows[edge{viewer.id, u.id}]
	o.set("withReplies", following && f.withReplies)
	if following {
		o.setRaw("followedMessage", u.followedMessage)
	}
	return o
}

// meDetailed is the /api/i answer of u.
func (st *state) meDetailed(u *user) *object {
	o := u.me.clone()
	st.live(o, u)
	pending := false
	for e := range st.requests {
		if e.to == u.id {
			pending = true
		}
	}
	o.set("hasPendingReceivedFollowRequest", pending)
	return o
}

func isoTime(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

// Endpoint errors (Ocean's code, message and id of each endpoint).
func apiErr(code, message, id string) *ocean.Error {
	return &ocean.Error{Message: message, Code: code, ID: id, Kind: "client"}
}

var (
	errShowNoSuchUser        = &ocean.Error{Message: "No such user.", Code: "NO_SUCH_USER", ID: "4362f8dc-731f-4ad8-a694-be5a88922a24", Kind: "client", Status: http.StatusNotFound}
	errFollowNoSuchUser      = apiErr("NO_SUCH_USER", "No such user.", "fcd2eef9-a9b2-4c4f-8624-038099e90aa5")
	errFolloweeIsYourself    = apiErr("FOLLOWEE_IS_YOURSELF", "Followee is yourself.", "26fbe7bb-a331-4857-af17-205b426669a9")
	errAlreadyFollowing      = apiErr("ALREADY_FOLLOWING", "You are already following that user.", "35387507-38c7-4cb9-9197-300b93783fa0")
	errFollowBlocking        = apiErr("BLOCKING", "You are blocking that user.", "4e2206ec-aa4f-4960-b865-6c23ac38e2d9")
	errFollowBlocked         = apiErr("BLOCKED", "You are blocked by that user.", "c4ab57cc-4e41-45e9-bfd9-584f61e35ce0")
	errUnfollowNoSuchUser    = apiErr("NO_SUCH_USER", "No such user.", "5b12c78d-2b28-4dca-99d2-f56139b42ff8")
	errUnfollowYourself      = apiErr("FOLLOWEE_IS_YOURSELF", "Followee is yourself.", "d9e400b9-36b0-4808-b1d8-79e707f1296c")
	errNotFollowing          = apiErr("NOT_FOLLOWING", "You are not following that user.", "5dbf82f5-c92b-40b1-87d1-6c8c0741fd09")
	errInvalidateNoSuchUser  = apiErr("NO_SUCH_USER", "No such user.", "b77e6ae6-a3e5-40da-9cc8-c240115479cc")
	errFollowerIsYourself    = apiErr("FOLLOWER_IS_YOURSELF", "Follower is yourself.", "07dc03b9-03da-422d-885b-438313707662")
	errNotFollowedBy         = apiErr("NOT_FOLLOWING", "The other use is not following you.", "918faac3-074f-41ae-9c43-ed5d2946770d")
	errAcceptNoSuchUser      = apiErr("NO_SUCH_USER", "No such user.", "66ce1645-d66c-46bb-8b79-96739af885bd")
	errNoFollowRequest       = apiErr("NO_FOLLOW_REQUEST", "No follow request.", "bcde4f8b-0913-4614-8881-614e522fb041")
	errRejectNoSuchUser      = apiErr("NO_SUCH_USER", "No such user.", "abc2ffa6-25b2-4380-ba99-321ff3a94555")
	errCancelNoSuchUser      = apiErr("NO_SUCH_USER", "No such user.", "4e68c551-fc4c-4e46-bb41-7d4a37bf9dab")
	errFollowRequestNotFound = apiErr("FOLLOW_REQUEST_NOT_FOUND", "Follow request not found.", "089b125b-d338-482a-9a09-e2622ac9f8d4")
	errBlockNoSuchUser       = apiErr("NO_SUCH_USER", "No such user.", "7cc4f851-e2f1-4621-9633-ec9e1d00c01e")
	errBlockeeIsYourself     = apiErr("BLOCKEE_IS_YOURSELF", "Blockee is yourself.", "88b19138-f28d-42c0-8499-6a31bbd0fdc6")
	errAlreadyBlocking       = apiErr("ALREADY_BLOCKING", "You are already blocking that user.", "787fed64-acb9-464a-82eb-afbd745b9614")
)

// userParam reads the userId parameter and resolves it; a missing or
// non-string one is INVALID_PARAM, an unknown one notFound.
func (s *Server) userParam(r *request, notFound *ocean.Error) (*user, *ocean.Error) {
	id, ok := r.params["userId"].(string)
	if !ok || id == "" {
		return nil, ocean.ErrInvalidParam
	}
	u := s.st.users[id]
	if u == nil {
		return nil, notFound
	}
	return u, nil
}

func (s *Server) apiI(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	o := s.st.meDetailed(r.caller)
	if r.app != nil {
		// Ocean's i packs secrets only for a native token.
		for _, k := range secretKeys {
			o.del(k)
		}
	}
	return ok(o)
}

func (s *Server) apiUsersShow(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if ids, has := r.params["userIds"]; has {
		list, isList := ids.([]any)
		if !isList {
			return fail(ocean.ErrInvalidParam)
		}
		out := []*object{}
		for _, v := range list {
			id, _ := v.(string)
			if u := s.st.users[id]; u != nil {
				out = append(out, s.st.detailed(u, r.caller))
			}
		}
		return ok(out)
	}
	var u *user
	if id, isStr := r.params["userId"].(string); isStr {
		u = s.st.users[id]
	} else if name, isStr := r.params["username"].(string); isStr {
		if host, _ := r.params["host"].(string); host == "" {
			u = s.st.userByName(name)
		}
	} else {
		return fail(ocean.ErrInvalidParam)
	}
	if u == nil {
		return fail(errShowNoSuchUser)
	}
	return ok(s.st.detailed(u, r.caller))
}

func (s *Server) apiUsersRelation(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch v := r.params["userId"].(type) {
	case string:
		return ok(s.st.relation(r.caller.id, v))
	case []any:
		out := make([]relation, 0, len(v))
		for _, x := range v {
			id, isStr := x.(string)
			if !isStr {
				return fail(ocean.ErrInvalidParam)
			}
			out = append(out, s.st.relation(r.caller.id, id))
		}
		return ok(out)
	default:
		return fail(ocean.ErrInvalidParam)
	}
}

func (s *Server) apiFollowingCreate(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	me := r.caller
	if id, _ := r.params["userId"].(string); id == me.id {
		return fail(errFolloweeIsYourself)
	}
	followee, e := s.userParam(r, errFollowNoSuchUser)
	if e != nil {
		return fail(e)
	}
	st := s.st
	if st.blocks[edge{me.id, followee.id}] {
		return fail(errFollowBlocking)
	}
	if st.blocks[edge{followee.id, me.id}] {
		return fail(errFollowBlocked)
	}
	if _, has := st.follows[edge{me.id, followee.id}]; has {
		return fail(errAlreadyFollowing)
	}
	withReplies, _ := r.params["withReplies"].(bool)
	info := followInfo{withReplies: withReplies}
	// A locked account takes a request, unless it auto-accepts the users it
	// follows itself (autoAcceptFollowed, on for every captured user).
	_, followsBack := st.follows[edge{followee.id, me.id}]
	if followee.locked && !followsBack {
		if _, has := st.requests[edge{me.id, followee.id}]; !has {
			st.requests[edge{me.id, followee.id}] = info
		}
		return ok(st.lite(followee))
	}
	delete(st.requests, edge{me.id, followee.id})
	st.follows[edge{me.id, followee.id}] = info
	s.fire(me.id, "follow", map[string]any{"user": st.detailed(followee, me)})
	s.fire(followee.id, "followed", map[string]any{"user": st.lite(me)})
	return ok(st.lite(followee))
}

func (s *Server) apiFollowingDelete(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, _ := r.params["userId"].(string); id == r.caller.id {
		return fail(errUnfollowYourself)
	}
	followee, e := s.userParam(r, errUnfollowNoSuchUser)
	if e != nil {
		return fail(e)
	}
	k := edge{r.caller.id, followee.id}
	if _, has := s.st.follows[k]; !has {
		return fail(errNotFollowing)
	}
	delete(s.st.follows, k)
	return ok(s.st.lite(followee))
}

func (s *Server) apiFollowingInvalidate(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, _ := r.params["userId"].(string); id == r.caller.id {
		return fail(errFollowerIsYourself)
	}
	follower, e := s.userParam(r, errInvalidateNoSuchUser)
	if e != nil {
		return fail(e)
	}
	k := edge{follower.id, r.caller.id}
	if _, has := s.st.follows[k]; !has {
		return fail(errNotFollowedBy)
	}
	delete(s.st.follows, k)
	// Ocean packs the followee, i.e. the caller.
	return ok(s.st.lite(r.caller))
}

func (s *Server) apiRequestsAccept(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	requester, e := s.userParam(r, errAcceptNoSuchUser)
	if e != nil {
		return fail(e)
	}
	k := edge{requester.id, r.caller.id}
	info, has := s.st.requests[k]
	if !has {
		return fail(errNoFollowRequest)
	}
	delete(s.st.requests, k)
	s.st.follows[k] = info
	return noContent()
}

func (s *Server) apiRequestsReject(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	requester, e := s.userParam(r, errRejectNoSuchUser)
	if e != nil {
		return fail(e)
	}
	delete(s.st.requests, edge{requester.id, r.caller.id})
	return noContent()
}

func (s *Server) apiRequestsCancel(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	followee, e := s.userParam(r, errCancelNoSuchUser)
	if e != nil {
		return fail(e)
	}
	k := edge{r.caller.id, followee.id}
	if _, has := s.st.requests[k]; !has {
		return fail(errFollowRequestNotFound)
	}
	delete(s.st.requests, k)
	return ok(s.st.lite(followee))
}

func (s *Server) apiBlockingCreate(r *request) reply {
	s.mu.Lock()
	defer s.mu.Unlock()
	me := r.caller
	if id, _ := r.params["userId"].(string); id == me.id {
		return fail(errBlockeeIsYourself)
	}
	blockee, e := s.userParam(r, errBlockNoSuchUser)
	if e != nil {
		return fail(e)
	}
	st := s.st
	if st.blocks[edge{me.id, blockee.id}] {
		return fail(errAlreadyBlocking)
	}
	for _, k := range []edge{{me.id, blockee.id}, {blockee.id, me.id}} {
		delete(st.follows, k)
		delete(st.requests, k)
	}
	st.blocks[edge{me.id, blockee.id}] = true
	return ok(st.detailed(blockee, me))
}
