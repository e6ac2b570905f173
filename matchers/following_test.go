package matchers

import (
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// rel is a users/relation answer about id, as the caller sees it.
func rel(id string, following, followed, reqFromYou, reqToYou bool) string {
	s := `{"id":"` + id + `","isFollowing":false,"hasPendingFollowRequestFromYou":false,` +
		`"hasPendingFollowRequestToYou":false,"isFollowed":false,"isBlocking":false,"isBlocked":false,` +
		`"isMuted":false,"isRenoteMuted":false}`
	s, _ = sjson.Set(s, "isFollowing", following)
	s, _ = sjson.Set(s, "isFollowed", followed)
	s, _ = sjson.Set(s, "hasPendingFollowRequestFromYou", reqFromYou)
	s, _ = sjson.Set(s, "hasPendingFollowRequestToYou", reqToYou)
	return s
}

func edit(t *testing.T, s string, kv ...any) string {
	t.Helper()
	for i := 0; i < len(kv); i += 2 {
		var err error
		s, err = sjson.Set(s, kv[i].(string), kv[i+1])
		require.NoError(t, err)
	}
	return s
}

// userOf is the "user" member of a captured delivery.
func userOf(d delivery) string { return gjson.Get(d.Body, "user").Raw }

// The captured follows, replayed in front of a fake Ocean that answers the
// reads the rule makes, yield exactly the deliveries Ocean sent: `follow` to
// the follower with the followee as users/show gives it to the follower, and
// `followed` to the followee with the follower projected onto UserLite from
// their own view (here /api/i, the richest self-view, secrets included).
func TestFollowingCreateMatchesCapture(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	tests := []struct {
		label            string
		token            string
		caller, followee string
		followed, follow delivery
	}{
		{"A follows B", "tok-alice", alice, bob, dl[0], dl[1]},
		{"B follows A", "tok-bob", bob, alice, dl[3], dl[4]},
		{"A follows B again", "tok-alice", alice, bob, dl[16], dl[17]},
	}
	for _, tt := range tests {
		t.Run(tt.label, func(t *testing.T) {
			c := callByLabel(t, calls, tt.label)
			require.Equal(t, webhook.Followed, tt.followed.Type)
			require.Equal(t, webhook.Follow, tt.follow.Type)

			h := newHarness(t, allHooks(admin, alice, bob))
			h.oc.answer("users/relation", "userId", tt.followee, rel(tt.followee, true, false, false, false))
			h.oc.answer("users/show", "userId", tt.followee, userOf(tt.follow))
			h.oc.answer("users/show", "userId", tt.caller, selfView(t, calls, map[string]string{alice: "alice", bob: "bob"}[tt.caller]))

			wanted, err := h.do(t, c.Endpoint, tt.token, string(c.Request), c.Status, string(c.Response))
			require.True(t, wanted)
			require.NoError(t, err)
			require.Len(t, h.sink.batches, 1)
			events := h.sink.batches[0]
			require.ElementsMatch(t, []got{{webhook.Follow, tt.caller}, {webhook.Followed, tt.followee}}, kinds(events))
			for _, ev := range events {
				want := tt.follow
				if ev.Type == webhook.Followed {
					want = tt.followed
				}
				assert.Equal(t, want.UserID, ev.UserID)
				assert.JSONEq(t, want.Body, string(ev.Body), ev.Type)
				assert.Equal(t, want.Body, string(ev.Body), "%s: same bytes, same key order", ev.Type)
			}
			for _, c := range h.oc.calls {
				assert.Equal(t, tt.token, c.token, "extra reads use the caller's token")
			}
			assert.True(t, h.oc.sawDeadline, "extra reads run under the read deadline")
		})
	}
}

func TestFollowingCreateCases(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	bobSeenByAlice := userOf(dl[1])
	aliceSelf := selfView(t, calls, "alice")

	tests := []struct {
		name      string
		hooks     *fakeSubs
		setup     func(o *fakeOcean)
		status    int
		want      []got
		wantCalls []string
		wantMe    int
		skipped   map[string]float64 // reason → events
	}{
		{
			name:  "pending follow request: nothing, and no user views read",
			hooks: allHooks(alice, bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, false, false, true, false))
			},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`},
			wantMe:    1,
		},
		{
			name:  "neither following nor pending after the call: nothing",
			hooks: allHooks(alice, bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, false, false, false, false))
			},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`},
			wantMe:    1,
		},
		{
			name:  "only the followee subscribes: followed alone, the followee's view is not read",
			hooks: allHooks(bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, true, false, false, false))
			},
			want:      []got{{webhook.Followed, bob}},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`, `users/show {"userId":"` + alice + `"}`},
			wantMe:    1,
		},
		{
			name:  "only the caller subscribes: follow alone",
			hooks: &fakeSubs{hooks: []hook{{user: alice, on: []string{webhook.Follow}, active: true}}},
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, true, false, false, false))
			},
			want:      []got{{webhook.Follow, alice}},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`, `users/show {"userId":"` + bob + `"}`},
			wantMe:    1,
		},
		{
			name: "no possible recipient (someone else wants followed): no Ocean request at all",
			hooks: &fakeSubs{hooks: []hook{
				{user: carol, on: []string{webhook.Followed}, active: true},
				{user: bob, on: []string{webhook.Followed}, active: false},
			}},
		},
		{
			name:   "someone else wants follow: only the cached identity lookup",
			hooks:  &fakeSubs{hooks: []hook{{user: carol, on: []string{webhook.Follow}, active: true}}},
			wantMe: 1,
		},
		{
			name:  "relation read fails: both events skipped and counted",
			hooks: allHooks(alice, bob),
			setup: func(o *fakeOcean) {
				o.fail("users/relation", "userId", bob, ocean.ErrUpstreamUnavailable)
			},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`},
			wantMe:    1,
			skipped:   map[string]float64{"unavailable": 2},
		},
		{
			name:  "relation answer malformed: skipped",
			hooks: allHooks(alice, bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, `{"id":"`+bob+`","isFollowing":"yes"}`)
			},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`},
			wantMe:    1,
			skipped:   map[string]float64{"malformed": 2},
		},
		{
			name:  "relation answered as an array",
			hooks: allHooks(bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, `[`+rel(carol, false, false, false, false)+`,`+rel(bob, true, false, false, false)+`]`)
			},
			want:      []got{{webhook.Followed, bob}},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`, `users/show {"userId":"` + alice + `"}`},
			wantMe:    1,
		},
		{
			name:  "followee's view fails: follow skipped, followed still sent",
			hooks: allHooks(alice, bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, true, false, false, false))
				o.fail("users/show", "userId", bob, ocean.ErrUpstreamTimeout)
			},
			want:      []got{{webhook.Followed, bob}},
			wantCalls: []string{`users/relation {"userId":"` + bob + `"}`, `users/show {"userId":"` + bob + `"}`, `users/show {"userId":"` + alice + `"}`},
			wantMe:    1,
			skipped:   map[string]float64{"timeout": 1},
		},
		{
			name:    "identity lookup fails: skipped",
			hooks:   allHooks(alice, bob),
			setup:   func(o *fakeOcean) { o.meErr = ocean.ErrUpstreamUnavailable },
			wantMe:  1,
			skipped: map[string]float64{"unavailable": 2},
		},
		{
			name:   "Ocean refused the follow: nothing, no request",
			hooks:  allHooks(alice, bob),
			status: 400,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			h.oc.answer("users/show", "userId", bob, bobSeenByAlice)
			h.oc.answer("users/show", "userId", alice, aliceSelf)
			if tt.setup != nil {
				tt.setup(h.oc)
			}
			status := tt.status
			if status == 0 {
				status = 200
			}
			_, err := h.do(t, "following/create", "tok-alice", `{"userId":"`+bob+`"}`, status, userLiteOf(bob))
			require.NoError(t, err)
			assert.ElementsMatch(t, tt.want, kinds(h.sink.events()))
			assert.Equal(t, tt.wantCalls, h.oc.endpoints())
			assert.Equal(t, tt.wantMe, h.oc.meCalls)
			for _, reason := range []string{"unavailable", "timeout", "malformed", "ocean_error"} {
				assert.Equal(t, tt.skipped[reason], h.skipped("following/create", reason), reason)
			}
		})
	}
}

func TestFollowingCreateSelfFollow(t *testing.T) {
	h := newHarness(t, allHooks(alice))
	_, err := h.do(t, "following/create", "tok-alice", `{"userId":"`+alice+`"}`, 200, userLiteOf(alice))
	require.NoError(t, err)
	assert.Empty(t, h.sink.events())
	assert.Empty(t, h.oc.endpoints())
}

// The captured unfollow: the former followee as the caller sees them after
// the change is exactly what Ocean delivered.
func TestFollowingDeleteMatchesCapture(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	c := callByLabel(t, calls, "A unfollows B")
	want := dl[2]
	require.Equal(t, webhook.Unfollow, want.Type)

	h := newHarness(t, allHooks(admin, alice, bob))
	h.oc.answer("users/show", "userId", bob, userOf(want))
	_, err := h.do(t, c.Endpoint, "tok-alice", string(c.Request), c.Status, string(c.Response))
	require.NoError(t, err)
	events := h.sink.events()
	require.Equal(t, []got{{webhook.Unfollow, alice}}, kinds(events))
	assert.JSONEq(t, want.Body, string(events[0].Body))
	assert.Equal(t, want.Body, string(events[0].Body))
}

func TestFollowingDeleteCases(t *testing.T) {
	tests := []struct {
		name      string
		hooks     *fakeSubs
		fail      error
		want      []got
		wantCalls int
		skipped   string
	}{
		{name: "caller subscribed", hooks: allHooks(alice), want: []got{{webhook.Unfollow, alice}}, wantCalls: 1},
		{
			name:  "only the other side subscribes: no read beyond the identity",
			hooks: &fakeSubs{hooks: []hook{{user: bob, on: []string{webhook.Unfollow}, active: true}}},
		},
		{name: "view read fails", hooks: allHooks(alice), fail: ocean.ErrUpstreamTimeout, wantCalls: 1, skipped: "timeout"},
		{name: "view is of someone else", hooks: allHooks(alice), fail: errWrongUser, wantCalls: 1, skipped: "malformed"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			switch tt.fail {
			case nil:
				h.oc.answer("users/show", "userId", bob, userLiteOf(bob))
			case errWrongUser:
				h.oc.answer("users/show", "userId", bob, userLiteOf(carol))
			default:
				h.oc.fail("users/show", "userId", bob, tt.fail)
			}
			_, err := h.do(t, "following/delete", "tok-alice", `{"userId":"`+bob+`"}`, 200, userLiteOf(bob))
			require.NoError(t, err)
			assert.Equal(t, tt.want, kinds(h.sink.events()))
			assert.Len(t, h.oc.calls, tt.wantCalls)
			assert.Equal(t, 1, h.oc.meCalls)
			if tt.skipped != "" {
				assert.Equal(t, 1.0, h.skipped("following/delete", tt.skipped))
			}
		})
	}
}

var errWrongUser = &ocean.Error{Code: "TEST_WRONG_USER"}

// Where Ocean packs the caller for a user whose token we lack, the body is
// the caller's own view projected onto what others see, with the relation
// mirrored from the caller's side. Checked against the capture: the
// projection of /api/i gives byte for byte what Ocean delivered.
func TestCallerSeenByOtherMatchesCapture(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	// Counts moved since /api/i was captured; the rest is as Ocean had it.
	aliceSelf := edit(t, selfView(t, calls, "alice"), "followersCount", 1)
	bobSelf := edit(t, selfView(t, calls, "bob"), "followersCount", 1)
	aliceSeenByBobFollowing := dl[4] // follow to bob: alice, bob following her
	bobSeenByAliceNot := dl[2]       // unfollow to alice: bob, alice not following
	require.Equal(t, bob, aliceSeenByBobFollowing.UserID)
	require.Equal(t, alice, bobSeenByAliceNot.UserID)

	tests := []struct {
		name     string
		endpoint string
		token    string
		setup    func(o *fakeOcean)
		want     []got
		bodies   map[got]string
	}{
		{
			name:     "requests/accept: follow to the requester, followed to the caller",
			endpoint: "following/requests/accept",
			token:    "tok-alice",
			setup: func(o *fakeOcean) {
				o.answer("users/show", "userId", alice, aliceSelf)
				// bob as alice sees him, now following her.
				o.answer("users/show", "userId", bob, edit(t, userOf(bobSeenByAliceNot), "isFollowed", true))
			},
			want: []got{{webhook.Follow, bob}, {webhook.Followed, alice}},
			bodies: map[got]string{
				{webhook.Follow, bob}:     aliceSeenByBobFollowing.Body,
				{webhook.Followed, alice}: dl[3].Body, // bob as UserLite
			},
		},
		{
			name:     "requests/reject: unfollow to the requester",
			endpoint: "following/requests/reject",
			token:    "tok-bob",
			setup: func(o *fakeOcean) {
				o.answer("users/show", "userId", bob, bobSelf)
				o.answer("users/relation", "userId", alice, rel(alice, false, false, false, false))
			},
			want:   []got{{webhook.Unfollow, alice}},
			bodies: map[got]string{{webhook.Unfollow, alice}: bobSeenByAliceNot.Body},
		},
		{
			name:     "invalidate: unfollow to the removed follower",
			endpoint: "following/invalidate",
			token:    "tok-bob",
			setup: func(o *fakeOcean) {
				o.answer("users/show", "userId", bob, bobSelf)
				o.answer("users/relation", "userId", alice, rel(alice, false, false, false, false))
			},
			want:   []got{{webhook.Unfollow, alice}},
			bodies: map[got]string{{webhook.Unfollow, alice}: bobSeenByAliceNot.Body},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allHooks(alice, bob))
			tt.setup(h.oc)
			other := alice
			if tt.token == "tok-alice" {
				other = bob
			}
			status, answer := 204, ""
			if tt.endpoint == "following/invalidate" {
				// Ocean answers a UserLite (older versions: of the caller).
				status, answer = 200, userOf(dl[3])
			}
			wanted, err := h.do(t, tt.endpoint, tt.token, `{"userId":"`+other+`"}`, status, answer)
			require.True(t, wanted)
			require.NoError(t, err)
			events := h.sink.events()
			require.ElementsMatch(t, tt.want, kinds(events))
			for _, ev := range events {
				want := tt.bodies[got{ev.Type, ev.UserID}]
				assert.JSONEq(t, want, string(ev.Body), ev.Type)
				assert.Equal(t, want, string(ev.Body), "%s: same bytes, same key order", ev.Type)
			}
			assert.Len(t, h.sink.batches, 1)
		})
	}
}

// The projection never carries what only the user or a moderator sees.
func TestSeenByDropsPrivateFields(t *testing.T) {
	calls := loadCalls(t)
	self := edit(t, selfView(t, calls, "admin"),
		"memo", "admin's note to self",
		"followersVisibility", "followers", "followingVisibility", "private",
		"followersCount", 7, "followingCount", 3,
		"followedMessage", "thanks for following")
	self, _ = sjson.SetRaw(self, "pinnedNotes", `[{"id":"p1","userId":"`+admin+`","user":{"id":"`+admin+`","host":null},"visibility":"public","myReaction":"👍","poll":{"choices":[{"text":"a","votes":1,"isVoted":true}]}}]`)
	v := gjson.Parse(self)
	require.True(t, v.Get("moderationNote").Exists() && v.Get("policies").Exists() && v.Get("email").Exists())

	for _, tc := range []struct {
		name      string
		following bool
	}{{"viewer not following", false}, {"viewer following", true}} {
		t.Run(tc.name, func(t *testing.T) {
			out := gjson.ParseBytes(seenBy(v, relation{following: tc.following}, ocean.Viewer{ID: bob}, time.Now()))
			require.True(t, out.IsObject())
			for _, k := range []string{"moderationNote", "twoFactorEnabled", "usePasswordLessLogin", "securityKeys",
				"avatarId", "bannerId", "isModerator", "isAdmin", "mutedWords", "mutedInstances", "policies",
				"email", "emailVerified", "securityKeysList", "notificationRecieveConfig", "achievements",
				"loggedInDays", "hasUnreadNotification", "unreadNotificationsCount", "carefulBot"} {
				assert.False(t, out.Get(k).Exists(), "%s leaked", k)
			}
			assert.Equal(t, gjson.Null, out.Get("memo").Type, "the viewer's memo is not the user's own")
			assert.Equal(t, gjson.Null, out.Get("followingCount").Type, "private following count")
			if tc.following {
				assert.Equal(t, int64(7), out.Get("followersCount").Int(), "followers see a followers-only count")
				assert.Equal(t, "thanks for following", out.Get("followedMessage").Str)
			} else {
				assert.Equal(t, gjson.Null, out.Get("followersCount").Type)
				assert.False(t, out.Get("followedMessage").Exists(), "only followers see followedMessage")
			}
			assert.JSONEq(t, `[{"id":"p1","userId":"`+admin+`","user":{"id":"`+admin+`","host":null},"visibility":"public","poll":{"choices":[{"text":"a","votes":1,"isVoted":false}]}}]`, out.Get("pinnedNotes").Raw)
			assert.Equal(t, "unknown", out.Get("onlineStatus").Str)
		})
	}
}

func TestRequestAcceptCases(t *testing.T) {
	tests := []struct {
		name      string
		hooks     *fakeSubs
		setup     func(o *fakeOcean)
		want      []got
		wantCalls []string
		wantMe    int
	}{
		{
			name:  "only the requester subscribes: caller's view and relation read",
			hooks: allHooks(bob),
			setup: func(o *fakeOcean) {
				o.answer("users/relation", "userId", bob, rel(bob, false, true, false, false))
			},
			want:      []got{{webhook.Follow, bob}},
			wantCalls: []string{`users/show {"userId":"` + alice + `"}`, `users/relation {"userId":"` + bob + `"}`},
			wantMe:    1,
		},
		{
			name:      "only the caller subscribes: the requester's view alone",
			hooks:     allHooks(alice),
			want:      []got{{webhook.Followed, alice}},
			wantCalls: []string{`users/show {"userId":"` + bob + `"}`},
			wantMe:    1,
		},
		{
			name:  "no possible recipient: nothing read",
			hooks: &fakeSubs{hooks: []hook{{user: carol, on: []string{webhook.Follow}, active: true}}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			h.oc.answer("users/show", "userId", alice, userLiteOf(alice))
			h.oc.answer("users/show", "userId", bob, edit(t, userLiteOf(bob), "isFollowing", false,
				"isFollowed", true, "hasPendingFollowRequestFromYou", false, "hasPendingFollowRequestToYou", false))
			if tt.setup != nil {
				tt.setup(h.oc)
			}
			_, err := h.do(t, "following/requests/accept", "tok-alice", `{"userId":"`+bob+`"}`, 204, "")
			require.NoError(t, err)
			assert.ElementsMatch(t, tt.want, kinds(h.sink.events()))
			assert.Equal(t, tt.wantCalls, h.oc.endpoints())
			assert.Equal(t, tt.wantMe, h.oc.meCalls)
			for _, ev := range h.sink.events() {
				if ev.Type == webhook.Follow {
					u := gjson.GetBytes(ev.Body, "user")
					assert.True(t, u.Get("isFollowing").Bool(), "the requester now follows the caller")
					assert.False(t, u.Get("hasPendingFollowRequestFromYou").Bool())
				}
			}
		})
	}
}

func TestUnfollowToOtherCases(t *testing.T) {
	for _, endpoint := range []string{"following/invalidate", "following/requests/reject"} {
		t.Run(endpoint, func(t *testing.T) {
			tests := []struct {
				name    string
				hooks   *fakeSubs
				fail    bool
				want    []got
				calls   int
				me      int
				skipped float64
			}{
				{name: "the other user subscribes", hooks: allHooks(bob), want: []got{{webhook.Unfollow, bob}}, calls: 2, me: 1},
				{name: "only the caller subscribes: nothing read", hooks: allHooks(alice)},
				{name: "a read fails: skipped", hooks: allHooks(bob), fail: true, calls: 2, me: 1, skipped: 1},
			}
			for _, tt := range tests {
				t.Run(tt.name, func(t *testing.T) {
					h := newHarness(t, tt.hooks)
					h.oc.answer("users/show", "userId", alice, userLiteOf(alice))
					if tt.fail {
						h.oc.fail("users/relation", "userId", bob, &ocean.Error{Code: "NO_SUCH_USER", Kind: "client"})
					} else {
						h.oc.answer("users/relation", "userId", bob, rel(bob, true, false, false, false))
					}
					_, err := h.do(t, endpoint, "tok-alice", `{"userId":"`+bob+`"}`, 200, userLiteOf(alice))
					require.NoError(t, err)
					assert.Equal(t, tt.want, kinds(h.sink.events()))
					assert.Len(t, h.oc.calls, tt.calls)
					assert.Equal(t, tt.me, h.oc.meCalls)
					assert.Equal(t, tt.skipped, h.skipped(endpoint, "ocean_error"))
					for _, ev := range h.sink.events() {
						u := gjson.GetBytes(ev.Body, "user")
						assert.Equal(t, alice, u.Get("id").Str)
						assert.False(t, u.Get("isFollowing").Bool(), "the relation is gone")
						assert.True(t, u.Get("isFollowed").Bool(), "mirrored: alice still follows bob")
					}
				})
			}
		})
	}
}

func TestBlockingCreate(t *testing.T) {
	calls := loadCalls(t)
	dl := loadDeliveries(t)
	// bob as alice sees him after she blocked him.
	blockAnswer := edit(t, userOf(dl[2]), "isBlocking", true)
	aliceSelf := selfView(t, calls, "alice")
	// alice as bob sees her after the block: from the capture's view of
	// alice by bob, with the relation the block left.
	aliceSeenByBob := edit(t, userOf(dl[4]), "followersCount", 0, "isFollowing", false, "isBlocked", true)
	aliceSeenByBob, _ = sjson.Delete(aliceSeenByBob, "followedMessage")

	tests := []struct {
		name      string
		hooks     *fakeSubs
		relation  string // users/relation of bob as alice sees him before the block; "" fails
		status    int
		noBefore  bool
		answer    string
		want      map[got]string
		wantCalls int
		wantMe    int
		skipped   float64
		failure   bool
	}{
		{
			name:      "caller followed the blockee: unfollow to the caller with Ocean's answer",
			hooks:     allHooks(alice, bob),
			relation:  rel(bob, true, false, false, false),
			want:      map[got]string{{webhook.Unfollow, alice}: `{"user":` + blockAnswer + `}`},
			wantCalls: 1,
			wantMe:    1,
		},
		{
			name:      "blockee followed the caller: unfollow to the blockee",
			hooks:     allHooks(alice, bob),
			relation:  rel(bob, false, true, false, false),
			want:      map[got]string{{webhook.Unfollow, bob}: `{"user":` + aliceSeenByBob + `}`},
			wantCalls: 2,
			wantMe:    1,
		},
		{
			name:     "pending requests both ways: one unfollow each",
			hooks:    allHooks(alice, bob),
			relation: rel(bob, false, false, true, true),
			want: map[got]string{
				{webhook.Unfollow, alice}: `{"user":` + blockAnswer + `}`,
				{webhook.Unfollow, bob}:   `{"user":` + aliceSeenByBob + `}`,
			},
			wantCalls: 2,
			wantMe:    1,
		},
		{
			name:      "no relation: nothing",
			hooks:     allHooks(alice, bob),
			relation:  rel(bob, false, false, false, false),
			wantCalls: 1,
			wantMe:    1,
		},
		{
			name:     "nobody involved subscribes: no relation read",
			hooks:    &fakeSubs{hooks: []hook{{user: carol, on: []string{webhook.Unfollow}, active: true}}},
			relation: rel(bob, true, true, false, false),
			wantMe:   1,
		},
		{
			name:      "only the blockee subscribes and only the caller followed: nothing",
			hooks:     &fakeSubs{hooks: []hook{{user: bob, on: []string{webhook.Unfollow}, active: true}}},
			relation:  rel(bob, true, false, false, false),
			wantCalls: 1,
			wantMe:    1,
		},
		{
			name:      "relation read before the block failed: skipped and counted",
			hooks:     allHooks(alice, bob),
			wantCalls: 1,
			wantMe:    1,
			skipped:   2,
		},
		{
			name:      "relation read failed but Ocean refused the block: nothing counted",
			hooks:     allHooks(alice, bob),
			status:    400,
			wantCalls: 1,
			wantMe:    1,
		},
		{
			name:     "Before did not run: nothing",
			hooks:    allHooks(alice, bob),
			relation: rel(bob, true, true, false, false),
			noBefore: true,
		},
		{
			name:      "malformed answer when the caller's unfollow needs it",
			hooks:     allHooks(alice, bob),
			relation:  rel(bob, true, false, false, false),
			answer:    `{"id":`,
			wantCalls: 1,
			wantMe:    1,
			failure:   true,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, tt.hooks)
			h.oc.answer("users/show", "userId", alice, aliceSelf)
			if tt.relation != "" {
				h.oc.answer("users/relation", "userId", bob, tt.relation)
			} else {
				h.oc.fail("users/relation", "userId", bob, errDown)
			}
			status, answer := tt.status, tt.answer
			if status == 0 {
				status = 200
			}
			if answer == "" {
				answer = blockAnswer
			}
			var err error
			if tt.noBefore {
				err = h.e.Observe(t.Context(), observation("blocking/create", "tok-alice", `{"userId":"`+bob+`"}`, status, answer))
			} else {
				_, err = h.do(t, "blocking/create", "tok-alice", `{"userId":"`+bob+`"}`, status, answer)
			}
			if tt.failure {
				assert.Error(t, err)
				assert.Equal(t, 1.0, h.failures("blocking/create", "malformed"))
			} else {
				assert.NoError(t, err)
			}
			events := h.sink.events()
			gotBodies := map[got]string{}
			for _, ev := range events {
				gotBodies[got{ev.Type, ev.UserID}] = string(ev.Body)
			}
			if len(tt.want) == 0 {
				assert.Empty(t, gotBodies)
			} else {
				assert.Equal(t, tt.want, gotBodies)
				assert.Len(t, h.sink.batches, 1)
			}
			assert.Len(t, h.oc.calls, tt.wantCalls)
			assert.Equal(t, tt.wantMe, h.oc.meCalls)
			assert.Equal(t, tt.skipped, h.skipped("blocking/create", "unavailable"))
		})
	}
}

func TestBlockingCreateSelf(t *testing.T) {
	h := newHarness(t, allHooks(alice))
	_, err := h.do(t, "blocking/create", "tok-alice", `{"userId":"`+alice+`"}`, 200, userLiteOf(alice))
	require.NoError(t, err)
	assert.Empty(t, h.sink.events())
	assert.Empty(t, h.oc.calls)
}
