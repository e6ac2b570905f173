package hooks

import (
	"encoding/json"
	"time"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// The bodies of i/webhooks/test: dummy users and notes shaped like Ocean's
// packed objects (its WebhookTestService), which exist nowhere in Ocean's
// database. Field order follows Ocean's packers.

type dummyUserLite struct {
	ID                string            `json:"id"`
	Name              string            `json:"name"`
	Username          string            `json:"username"`
	Host              *string           `json:"host"`
	AvatarURL         *string           `json:"avatarUrl"`
	AvatarBlurhash    *string           `json:"avatarBlurhash"`
	AvatarDecorations []any             `json:"avatarDecorations"`
	IsBot             bool              `json:"isBot"`
	IsCat             bool              `json:"isCat"`
	Emojis            map[string]string `json:"emojis"`
	OnlineStatus      string            `json:"onlineStatus"`
	BadgeRoles        []any             `json:"badgeRoles"`
}

type dummyUserDetailed struct {
	dummyUserLite
	URL                            *string  `json:"url"`
	URI                            *string  `json:"uri"`
	MovedTo                        *string  `json:"movedTo"`
	AlsoKnownAs                    []string `json:"alsoKnownAs"`
	CreatedAt                      string   `json:"createdAt"`
	UpdatedAt                      *string  `json:"updatedAt"`
	LastFetchedAt                  *string  `json:"lastFetchedAt"`
	BannerURL                      *string  `json:"bannerUrl"`
	BannerBlurhash                 *string  `json:"bannerBlurhash"`
	IsLocked                       bool     `json:"isLocked"`
	IsSilenced                     bool     `json:"isSilenced"`
	IsSuspended                    bool     `json:"isSuspended"`
	Description                    *string  `json:"description"`
	Location                       *string  `json:"location"`
	Birthday                       *string  `json:"birthday"`
	Lang                           *string  `json:"lang"`
	Fields                         []any    `json:"fields"`
	VerifiedLinks                  []string `json:"verifiedLinks"`
	FollowersCount                 int      `json:"followersCount"`
	FollowingCount                 int      `json:"followingCount"`
	NotesCount                     int      `json:"notesCount"`
	PinnedNoteIDs                  []string `json:"pinnedNoteIds"`
	PinnedNotes                    []any    `json:"pinnedNotes"`
	PinnedPageID                   *string  `json:"pinnedPageId"`
	PinnedPage                     *string  `json:"pinnedPage"`
	PublicReactions                bool     `json:"publicReactions"`
	FollowersVisibility            string   `json:"followersVisibility"`
	FollowingVisibility            string   `json:"followingVisibility"`
	ChatScope                      string   `json:"chatScope"`
	CanChat                        bool     `json:"canChat"`
	TwoFactorEnabled               bool     `json:"twoFactorEnabled"`
	UsePasswordLessLogin           bool     `json:"usePasswordLessLogin"`
	SecurityKeys                   bool     `json:"securityKeys"`
	Roles                          []any    `json:"roles"`
	Memo                           *string  `json:"memo"`
	IsFollowing                    bool     `json:"isFollowing"`
	IsFollowed                     bool     `json:"isFollowed"`
	HasPendingFollowRequestFromYou bool     `json:"hasPendingFollowRequestFromYou"`
	HasPendingFollowRequestToYou   bool     `json:"hasPendingFollowRequestToYou"`
	IsBlocking                     bool     `json:"isBlocking"`
	IsBlocked                      bool     `json:"isBlocked"`
	IsMuted                        bool     `json:"isMuted"`
	IsRenoteMuted                  bool     `json:"isRenoteMuted"`
	Notify                         string   `json:"notify"`
	WithReplies                    bool     `json:"withReplies"`
}

type dummyNote struct {
	ID                       string            `json:"id"`
	CreatedAt                string            `json:"createdAt"`
	DeletedAt                *string           `json:"deletedAt"`
	Text                     *string           `json:"text"`
	CW                       *string           `json:"cw"`
	UserID                   string            `json:"userId"`
	User                     dummyUserLite     `json:"user"`
	ReplyID                  *string           `json:"replyId"`
	RenoteID                 *string           `json:"renoteId"`
	IsHidden                 bool              `json:"isHidden"`
	Visibility               string            `json:"visibility"`
	Mentions                 []string          `json:"mentions"`
	VisibleUserIDs           []string          `json:"visibleUserIds"`
	FileIDs                  []string          `json:"fileIds"`
	Files                    []any             `json:"files"`
	Tags                     []string          `json:"tags"`
	Poll                     *struct{}         `json:"poll"`
	Emojis                   map[string]string `json:"emojis"`
	ChannelID                *string           `json:"channelId"`
	Channel                  *struct{}         `json:"channel"`
	LocalOnly                bool              `json:"localOnly"`
	ReactionAcceptance       string            `json:"reactionAcceptance"`
	ReactionEmojis           map[string]string `json:"reactionEmojis"`
	Reactions                map[string]int    `json:"reactions"`
	ReactionCount            int               `json:"reactionCount"`
	RenoteCount              int               `json:"renoteCount"`
	RepliesCount             int               `json:"repliesCount"`
	ReactionAndUserPairCache []string          `json:"reactionAndUserPairCache"`
	*dummyNoteDetail
}

// dummyNoteDetail is present only on notes packed with detail.
type dummyNoteDetail struct {
	ClippedCount int        `json:"clippedCount"`
	Reply        *dummyNote `json:"reply"`
	Renote       *dummyNote `json:"renote"`
	MyReaction   *string    `json:"myReaction"`
}

// dummyUser is the raw material of a dummy user.
type dummyUser struct {
	id, username, name                 string
	followers, following, notes        int
	updatedDaysAgo, lastFetchedDaysAgo int
}

var (
	dummyUser1 = dummyUser{"dummy-user-1", "dummy1", "DummyUser1", 10, 5, 30, 7, 5}
	dummyUser2 = dummyUser{"dummy-user-2", "dummy2", "DummyUser2", 40, 50, 900, 30, 1}
	dummyUser3 = dummyUser{"dummy-user-3", "dummy3", "DummyUser3", 60, 70, 15900, 15, 2}
)

// dummyReaction is what the reaction test reacts with: the dummy note only
// accepts likes, which Ocean stores as a heart.
const dummyReaction = "❤"

func isoMillis(t time.Time) string { return t.UTC().Format("2006-01-02T15:04:05.000Z") }

func (u dummyUser) lite() dummyUserLite {
	return dummyUserLite{ID: u.id, Name: u.name, Username: u.username, AvatarDecorations: []any{},
		IsCat: true, Emojis: map[string]string{}, OnlineStatus: "active", BadgeRoles: []any{}}
}

func (u dummyUser) detailed(now time.Time) dummyUserDetailed {
	const day = 24 * time.Hour
	updated := isoMillis(now.Add(-time.Duration(u.updatedDaysAgo) * day))
	fetched := isoMillis(now.Add(-time.Duration(u.lastFetchedDaysAgo) * day))
	return dummyUserDetailed{dummyUserLite: u.lite(), AlsoKnownAs: []string{}, CreatedAt: isoMillis(now),
		UpdatedAt: &updated, LastFetchedAt: &fetched, Fields: []any{}, VerifiedLinks: []string{},
		FollowersCount: u.followers, FollowingCount: u.following, NotesCount: u.notes,
		PinnedNoteIDs: []string{}, PinnedNotes: []any{}, PublicReactions: true,
		FollowersVisibility: "public", FollowingVisibility: "public", ChatScope: "mutual", CanChat: true,
		Roles: []any{}, Notify: "none", WithReplies: true}
}

func dummyNoteOf(id string, u dummyUser, text *string, now time.Time) *dummyNote {
	return &dummyNote{ID: id, CreatedAt: isoMillis(now), Text: text, UserID: u.id, User: u.lite(),
		Visibility: "public", Mentions: []string{}, VisibleUserIDs: []string{}, FileIDs: []string{},
		Files: []any{}, Tags: []string{}, Emojis: map[string]string{}, LocalOnly: true,
		ReactionAcceptance: "likeOnly", ReactionEmojis: map[string]string{}, Reactions: map[string]int{},
		RenoteCount: 10, RepliesCount: 5, ReactionAndUserPairCache: []string{}}
}

func withDetail(n *dummyNote, reply, renote *dummyNote) *dummyNote {
	n.dummyNoteDetail = &dummyNoteDetail{Reply: reply, Renote: renote}
	return n
}

func ptrString(s string) *string { return &s }

// testBody returns the body of a test delivery of type t, wrapped as real
// deliveries are ({note}, {user}; {note, reaction, user} for reactions).
// Admin types have no test body, as in Ocean: ok is false.
func testBody(t string, now time.Time) (body json.RawMessage, ok bool) {
	text := ptrString("This is a dummy note for testing purposes.")
	note1 := func() *dummyNote { return dummyNoteOf("dummy-note-1", dummyUser1, text, now) }
	var v any
	switch t {
	case webhook.Note:
		v = map[string]any{"note": withDetail(note1(), nil, nil)}
	case webhook.Reply:
		n := withDetail(dummyNoteOf("dummy-reply-1", dummyUser1, text, now), note1(), nil)
		n.ReplyID = ptrString("dummy-note-1")
		v = map[string]any{"note": n}
	case webhook.Renote:
		n := withDetail(dummyNoteOf("dummy-renote-1", dummyUser2, nil, now), nil, withDetail(note1(), nil, nil))
		n.RenoteID = ptrString("dummy-note-1")
		v = map[string]any{"note": n}
	case webhook.Mention:
		n := withDetail(dummyNoteOf("dummy-mention-1", dummyUser1,
			ptrString("@"+dummyUser2.username+" This is a mention to you."), now), nil, nil)
		n.Mentions = []string{dummyUser2.id}
		v = map[string]any{"note": n}
	case webhook.Follow:
		v = map[string]any{"user": dummyUser1.detailed(now)}
	case webhook.Followed:
		v = map[string]any{"user": dummyUser2.lite()}
	case webhook.Unfollow:
		v = map[string]any{"user": dummyUser3.detailed(now)}
	case webhook.Reaction:
		n := withDetail(note1(), nil, nil)
		n.Reactions = map[string]int{dummyReaction: 1}
		n.ReactionCount = 1
		v = struct {
			Note     *dummyNote    `json:"note"`
			Reaction string        `json:"reaction"`
			User     dummyUserLite `json:"user"`
		}{n, dummyReaction, dummyUser2.lite()}
	default:
		return nil, false
	}
	return marshal(v), true
}
