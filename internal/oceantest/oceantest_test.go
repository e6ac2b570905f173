package oceantest

import (
	"bytes"
	"compress/gzip"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// post calls endpoint with body; token goes in the Authorization header.
func post(t *testing.T, s *Server, endpoint, token string, body any) (int, []byte, http.Header) {
	t.Helper()
	raw, err := json.Marshal(body)
	require.NoError(t, err)
	req, err := http.NewRequest(http.MethodPost, s.URL+"/api/"+endpoint, bytes.NewReader(raw))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	out, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	return resp.StatusCode, out, resp.Header
}

// mustPost is post that requires the status.
func mustPost(t *testing.T, s *Server, endpoint, token string, body any, status int) []byte {
	t.Helper()
	code, out, _ := post(t, s, endpoint, token, body)
	require.Equal(t, status, code, "%s: %s", endpoint, out)
	return out
}

func loadCalls(t *testing.T) []Call {
	t.Helper()
	calls, err := LoadCalls()
	require.NoError(t, err)
	return calls
}

func callByLabel(t *testing.T, label string) Call {
	t.Helper()
	for _, c := range loadCalls(t) {
		if c.Label == label {
			return c
		}
	}
	require.FailNow(t, "no call labelled "+label)
	return Call{}
}

// deliveryBody returns body.user / body.note of the i-th captured delivery.
func deliveryBody(t *testing.T, i int, field string) json.RawMessage {
	t.Helper()
	ds, err := LoadDeliveries()
	require.NoError(t, err)
	var env struct {
		Body map[string]json.RawMessage `json:"body"`
	}
	require.NoError(t, json.Unmarshal(ds[i].Body, &env))
	return env.Body[field]
}

func keysOf(t *testing.T, raw []byte) []string {
	t.Helper()
	o, err := parseObject(raw)
	require.NoError(t, err)
	return o.keys
}

func TestLoadFixtures(t *testing.T) {
	calls := loadCalls(t)
	assert.Len(t, calls, 41)
	assert.Equal(t, "admin/accounts/create", calls[0].Endpoint)
	assert.Equal(t, "create first admin", calls[0].Label)
	assert.Equal(t, time.Date(2026, 11, 26, 20, 49, 28, 0, time.UTC), calls[0].TS.UTC())
	react := callByLabel(t, "A reacts to B's note")
	assert.Equal(t, 204, react.Status)
	assert.Nil(t, react.Response)
	assert.Equal(t, "👍", react.Request["reaction"])

	ds, err := LoadDeliveries()
	require.NoError(t, err)
	require.Len(t, ds, 18)
	for _, d := range ds {
		// Our normalised JSON is byte-identical to what Ocean sent.
		assert.Equal(t, d.BodyRaw, string(d.Body))
		assert.Equal(t, "POST", d.Method)
	}
	ua, found := ds[0].Header("User-Agent")
	assert.True(t, found)
	assert.Equal(t, "Misskey-Hooks", ua)
	assert.Equal(t, "/hook/bob", ds[0].Path)
}

func TestFixturesDirFromAnyWorkingDirectory(t *testing.T) {
	want := FixturesDir()
	require.NotEmpty(t, want)
	assert.True(t, filepath.IsAbs(want))
	assert.FileExists(t, filepath.Join(want, "api-responses.jsonl"))

	t.Chdir(filepath.Join("..", "..", "ocean"))
	assert.Equal(t, want, FixturesDir())

	t.Chdir(t.TempDir())
	assert.Empty(t, FixturesDir())
	_, err := LoadCalls()
	assert.ErrorContains(t, err, "fixtures not found")
}

func TestIAnswersTheCapturedMe(t *testing.T) {
	s := New(t)
	carol := callByLabel(t, "signup carol (registration open)")
	carolMe, err := parseObject(carol.Response)
	require.NoError(t, err)
	carolMe.del("token")
	tests := []struct {
		name, token, id string
		want            []byte
		admin           bool
	}{
		{"admin", TokenAdmin, AdminID, callByLabel(t, "i as admin").Response, true},
		{"alice", TokenAlice, AliceID, callByLabel(t, "i as alice").Response, false},
		{"bob", TokenBob, BobID, callByLabel(t, "i as bob").Response, false},
		{"carol", TokenCarol, CarolID, encode(carolMe), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := mustPost(t, s, "i", tt.token, map[string]any{}, 200)
			assert.JSONEq(t, string(tt.want), string(got))
			assert.Equal(t, keysOf(t, tt.want), keysOf(t, got), "key order")
			var me struct {
				ID       string
				IsAdmin  bool
				Policies struct{ WebhookLimit int }
			}
			require.NoError(t, json.Unmarshal(got, &me))
			assert.Equal(t, tt.id, me.ID)
			assert.Equal(t, tt.admin, me.IsAdmin)
			assert.Equal(t, 3, me.Policies.WebhookLimit)
			assert.Equal(t, tt.id, UserID(tt.token))
		})
	}
}

// oceanError is what ocean.Write sends for e: status, WWW-Authenticate, body.
func oceanError(e *ocean.Error) (int, string, string) {
	rec := httptest.NewRecorder()
	ocean.Write(rec, e)
	return rec.Code, rec.Header().Get("WWW-Authenticate"), rec.Body.String()
}

func TestAuthentication(t *testing.T) {
	s := New(t)
	tests := []struct {
		name     string
		endpoint string
		header   string
		body     map[string]any
		err      *ocean.Error // nil: 200
	}{
		{"no token", "i", "", map[string]any{}, ocean.ErrCredentialRequired},
		{"unknown bearer", "i", "token-nobody-000", map[string]any{}, ocean.ErrAuthenticationFailed},
		{"unknown body token", "i", "", map[string]any{"i": "token-nobody-000"}, ocean.ErrAuthenticationFailed},
		{"unknown token on an optional endpoint", "users/show", "token-nobody-000",
			map[string]any{"userId": BobID}, ocean.ErrAuthenticationFailed},
		{"no token on a replayed endpoint that needs one", "i/webhooks/list", "", map[string]any{},
			ocean.ErrCredentialRequired},
		{"body token", "i", "", map[string]any{"i": TokenBob}, nil},
		{"bearer wins over body", "i", TokenAlice, map[string]any{"i": "token-nobody-000"}, nil},
		{"no token on an optional endpoint", "users/show", "", map[string]any{"userId": BobID}, nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := post(t, s, tt.endpoint, tt.header, tt.body)
			assert.Equal(t, "application/json; charset=utf-8", h.Get("Content-Type"))
			assert.Equal(t, "private, max-age=0, must-revalidate", h.Get("Cache-Control"))
			if tt.err == nil {
				assert.Equal(t, 200, code)
				return
			}
			wantCode, wantAuth, wantBody := oceanError(tt.err)
			assert.Equal(t, 401, wantCode)
			assert.NotEmpty(t, wantAuth)
			assert.Equal(t, wantCode, code)
			assert.Equal(t, wantAuth, h.Get("WWW-Authenticate"))
			assert.Equal(t, wantBody, string(body))
		})
	}
	t.Run("bearer alice is alice", func(t *testing.T) {
		got := mustPost(t, s, "i", TokenAlice, map[string]any{"i": TokenBob}, 200)
		var me struct{ ID string }
		require.NoError(t, json.Unmarshal(got, &me))
		assert.Equal(t, AliceID, me.ID)
	})
}

func TestUnknownEndpointAndMethod(t *testing.T) {
	s := New(t)
	code, body, h := post(t, s, "no/such/endpoint", TokenAlice, map[string]any{})
	assert.Equal(t, 404, code)
	assert.Contains(t, string(body), `"code":"UNKNOWN_API_ENDPOINT"`)
	assert.Equal(t, "private, max-age=0, must-revalidate", h.Get("Cache-Control"))

	resp, err := http.Get(s.URL + "/api/i")
	require.NoError(t, err)
	defer resp.Body.Close()
	assert.Equal(t, 405, resp.StatusCode)
}

func TestUsersShowEqualsTheCapturedFollowBody(t *testing.T) {
	s := New(t)
	// Capture: "A follows B" → delivery 1 is alice's follow with bob as seen by alice.
	mustPost(t, s, "following/create", TokenAlice, map[string]any{"userId": BobID}, 200)
	want := deliveryBody(t, 1, "user")
	got := mustPost(t, s, "users/show", TokenAlice, map[string]any{"userId": BobID}, 200)
	assert.Equal(t, keysOf(t, want), keysOf(t, got), "UserDetailedNotMe keys in Ocean's order")
	assert.JSONEq(t, string(want), string(got))

	// "A unfollows B" → delivery 2 (its followersCount is stale in Ocean).
	mustPost(t, s, "following/delete", TokenAlice, map[string]any{"userId": BobID}, 200)
	got = mustPost(t, s, "users/show", TokenAlice, map[string]any{"userId": BobID}, 200)
	assert.Equal(t, keysOf(t, deliveryBody(t, 2, "user")), keysOf(t, got))
	var flags map[string]any
	require.NoError(t, json.Unmarshal(got, &flags))
	assert.Equal(t, false, flags["isFollowing"])
	assert.EqualValues(t, 0, flags["followersCount"])

	// "B follows A" → delivery 4 is bob's follow with alice as seen by bob.
	mustPost(t, s, "following/create", TokenBob, map[string]any{"userId": AliceID}, 200)
	got = mustPost(t, s, "users/show", TokenBob, map[string]any{"userId": AliceID}, 200)
	assert.JSONEq(t, string(deliveryBody(t, 4, "user")), string(got))
}

func TestUsersShowViews(t *testing.T) {
	s := New(t)
	mustPost(t, s, "following/create", TokenAlice, map[string]any{"userId": BobID}, 200)

	t.Run("relation flags both ways", func(t *testing.T) {
		var fromBob map[string]any
		require.NoError(t, json.Unmarshal(
			mustPost(t, s, "users/show", TokenBob, map[string]any{"userId": AliceID}, 200), &fromBob))
		assert.Equal(t, false, fromBob["isFollowing"])
		assert.Equal(t, true, fromBob["isFollowed"])
		assert.NotContains(t, fromBob, "followedMessage")
		assert.EqualValues(t, 1, fromBob["followingCount"])
	})
	t.Run("anonymous has no relation keys", func(t *testing.T) {
		got := mustPost(t, s, "users/show", "", map[string]any{"userId": BobID}, 200)
		want := append(append([]string{}, userLiteKeys...), userDetailedKeys...)
		assert.Equal(t, want, keysOf(t, got))
	})
	t.Run("self is MeDetailed without the secrets", func(t *testing.T) {
		got := mustPost(t, s, "users/show", TokenBob, map[string]any{"userId": BobID}, 200)
		want := keysOf(t, callByLabel(t, "i as bob").Response)
		require.Equal(t, []string{"email", "emailVerified", "securityKeysList"}, want[len(want)-3:])
		assert.Equal(t, want[:len(want)-3], keysOf(t, got))
	})
	t.Run("by username", func(t *testing.T) {
		got := mustPost(t, s, "users/show", TokenAlice, map[string]any{"username": "Carol"}, 200)
		assert.Contains(t, string(got), `"id":"`+CarolID+`"`)
	})
	t.Run("userIds gives an array, unknown ids skipped", func(t *testing.T) {
		got := mustPost(t, s, "users/show", TokenAlice,
			map[string]any{"userIds": []string{BobID, "nobody", CarolID}}, 200)
		var users []map[string]any
		require.NoError(t, json.Unmarshal(got, &users))
		require.Len(t, users, 2)
		assert.Equal(t, BobID, users[0]["id"])
		assert.Equal(t, true, users[0]["isFollowing"])
		assert.Equal(t, CarolID, users[1]["id"])
		assert.Equal(t, false, users[1]["isFollowing"])
	})
	t.Run("unknown user", func(t *testing.T) {
		got := mustPost(t, s, "users/show", TokenAlice, map[string]any{"userId": "nobody"}, 404)
		assert.Contains(t, string(got), `"code":"NO_SUCH_USER"`)
	})
}

func TestUserKeyListsMatchTheCapture(t *testing.T) {
	// followed body = UserLite; follow body = UserDetailedNotMe.
	assert.Equal(t, userLiteKeys, keysOf(t, deliveryBody(t, 0, "user")))
	keys := keysOf(t, deliveryBody(t, 1, "user"))
	n := len(userLiteKeys) + len(userDetailedKeys)
	assert.Equal(t, append(append([]string{}, userLiteKeys...), userDetailedKeys...), keys[:n])
	assert.Equal(t, []string{"isFollowing", "isFollowed", "hasPendingFollowRequestFromYou",
		"hasPendingFollowRequestToYou", "isBlocking", "isBlocked", "isMuted", "isRenoteMuted",
		"notify", "withReplies", "followedMessage"}, keys[n:])
	assert.Equal(t, userLiteKeys, keysOf(t, callByLabel(t, "A follows B").Response))
}

type rel struct {
	ID                             string
	IsFollowing, IsFollowed        bool
	HasPendingFollowRequestFromYou bool
	HasPendingFollowRequestToYou   bool
	IsBlocking, IsBlocked          bool
	IsMuted, IsRenoteMuted         bool
}

func relationOf(t *testing.T, s *Server, token, id string) rel {
	t.Helper()
	var r rel
	require.NoError(t, json.Unmarshal(mustPost(t, s, "users/relation", token, map[string]any{"userId": id}, 200), &r))
	return r
}

func TestFollowingTransitions(t *testing.T) {
	type step struct {
		token, endpoint, userID string
		status                  int
		errCode                 string
	}
	tests := []struct {
		name      string
		locked    []string
		steps     []step
		aliceBob  rel // relation of bob as seen by alice after the steps
		bobAlice  rel
		wantLists []string // sorted nothing: just for readability
	}{
		{
			name:     "follow",
			steps:    []step{{TokenAlice, "following/create", BobID, 200, ""}},
			aliceBob: rel{ID: BobID, IsFollowing: true},
			bobAlice: rel{ID: AliceID, IsFollowed: true},
		},
		{
			name: "follow twice",
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenAlice, "following/create", BobID, 400, "ALREADY_FOLLOWING"}},
			aliceBob: rel{ID: BobID, IsFollowing: true},
			bobAlice: rel{ID: AliceID, IsFollowed: true},
		},
		{
			name:   "locked: request then accept",
			locked: []string{BobID},
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenBob, "following/requests/accept", AliceID, 204, ""}},
			aliceBob: rel{ID: BobID, IsFollowing: true},
			bobAlice: rel{ID: AliceID, IsFollowed: true},
		},
		{
			name:     "locked: pending",
			locked:   []string{BobID},
			steps:    []step{{TokenAlice, "following/create", BobID, 200, ""}},
			aliceBob: rel{ID: BobID, HasPendingFollowRequestFromYou: true},
			bobAlice: rel{ID: AliceID, HasPendingFollowRequestToYou: true},
		},
		{
			name:   "locked: reject",
			locked: []string{BobID},
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenBob, "following/requests/reject", AliceID, 204, ""},
				{TokenBob, "following/requests/accept", AliceID, 400, "NO_FOLLOW_REQUEST"}},
			aliceBob: rel{ID: BobID},
			bobAlice: rel{ID: AliceID},
		},
		{
			name:   "locked: cancel",
			locked: []string{BobID},
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenAlice, "following/requests/cancel", BobID, 200, ""},
				{TokenAlice, "following/requests/cancel", BobID, 400, "FOLLOW_REQUEST_NOT_FOUND"}},
			aliceBob: rel{ID: BobID},
			bobAlice: rel{ID: AliceID},
		},
		{
			name:   "locked account auto-accepts a user it follows",
			locked: []string{BobID},
			steps: []step{{TokenBob, "following/create", AliceID, 200, ""},
				{TokenAlice, "following/create", BobID, 200, ""}},
			aliceBob: rel{ID: BobID, IsFollowing: true, IsFollowed: true},
			bobAlice: rel{ID: AliceID, IsFollowing: true, IsFollowed: true},
		},
		{
			name: "unfollow",
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenAlice, "following/delete", BobID, 200, ""},
				{TokenAlice, "following/delete", BobID, 400, "NOT_FOLLOWING"}},
			aliceBob: rel{ID: BobID},
			bobAlice: rel{ID: AliceID},
		},
		{
			name: "invalidate a follower",
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenBob, "following/invalidate", AliceID, 200, ""},
				{TokenBob, "following/invalidate", AliceID, 400, "NOT_FOLLOWING"}},
			aliceBob: rel{ID: BobID},
			bobAlice: rel{ID: AliceID},
		},
		{
			name: "block removes follows both ways",
			steps: []step{{TokenAlice, "following/create", BobID, 200, ""},
				{TokenBob, "following/create", AliceID, 200, ""},
				{TokenAlice, "blocking/create", BobID, 200, ""},
				{TokenAlice, "blocking/create", BobID, 400, "ALREADY_BLOCKING"},
				{TokenBob, "following/create", AliceID, 400, "BLOCKED"},
				{TokenAlice, "following/create", BobID, 400, "BLOCKING"}},
			aliceBob: rel{ID: BobID, IsBlocking: true},
			bobAlice: rel{ID: AliceID, IsBlocked: true},
		},
		{
			name:   "block removes a pending request",
			locked: []string{AliceID},
			steps: []step{{TokenBob, "following/create", AliceID, 200, ""},
				{TokenAlice, "blocking/create", BobID, 200, ""}},
			aliceBob: rel{ID: BobID, IsBlocking: true},
			bobAlice: rel{ID: AliceID, IsBlocked: true},
		},
		{
			name: "errors",
			steps: []step{{TokenAlice, "following/create", AliceID, 400, "FOLLOWEE_IS_YOURSELF"},
				{TokenAlice, "following/create", "nobody", 400, "NO_SUCH_USER"},
				{TokenAlice, "blocking/create", AliceID, 400, "BLOCKEE_IS_YOURSELF"},
				{TokenAlice, "following/requests/accept", BobID, 400, "NO_FOLLOW_REQUEST"},
				{"", "following/create", BobID, 401, "CREDENTIAL_REQUIRED"}},
			aliceBob: rel{ID: BobID},
			bobAlice: rel{ID: AliceID},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := New(t, WithLocked(tt.locked...))
			for i, st := range tt.steps {
				code, body, _ := post(t, s, st.endpoint, st.token, map[string]any{"userId": st.userID})
				require.Equal(t, st.status, code, "step %d %s: %s", i, st.endpoint, body)
				if st.errCode != "" {
					assert.Contains(t, string(body), `"code":"`+st.errCode+`"`, "step %d", i)
				}
				if code == 204 {
					assert.Empty(t, body, "step %d", i)
				}
			}
			assert.Equal(t, tt.aliceBob, relationOf(t, s, TokenAlice, BobID))
			assert.Equal(t, tt.bobAlice, relationOf(t, s, TokenBob, AliceID))
		})
	}
}

func TestFollowingAnswers(t *testing.T) {
	s := New(t)
	bobLite := callByLabel(t, "A follows B").Response
	aliceLite := callByLabel(t, "B follows A").Response
	assert.JSONEq(t, string(bobLite),
		string(mustPost(t, s, "following/create", TokenAlice, map[string]any{"userId": BobID}, 200)))
	assert.JSONEq(t, string(callByLabel(t, "A unfollows B").Response),
		string(mustPost(t, s, "following/delete", TokenAlice, map[string]any{"userId": BobID}, 200)))
	mustPost(t, s, "following/create", TokenAlice, map[string]any{"userId": BobID}, 200)
	// invalidate answers the caller (the followee) as UserLite.
	assert.JSONEq(t, string(bobLite),
		string(mustPost(t, s, "following/invalidate", TokenBob, map[string]any{"userId": AliceID}, 200)))

	s.SetLocked(AliceID, true)
	assert.JSONEq(t, string(aliceLite),
		string(mustPost(t, s, "following/create", TokenBob, map[string]any{"userId": AliceID}, 200)))
	var me map[string]any
	require.NoError(t, json.Unmarshal(mustPost(t, s, "i", TokenAlice, map[string]any{}, 200), &me))
	assert.Equal(t, true, me["isLocked"])
	assert.Equal(t, true, me["hasPendingReceivedFollowRequest"])

	blocked := mustPost(t, s, "blocking/create", TokenAlice, map[string]any{"userId": BobID}, 200)
	assert.Equal(t, keysOf(t, deliveryBody(t, 2, "user")), keysOf(t, blocked), "UserDetailedNotMe, not following")
	assert.Contains(t, string(blocked), `"isBlocking":true`)

	t.Run("relation of several users", func(t *testing.T) {
		var rs []rel
		require.NoError(t, json.Unmarshal(mustPost(t, s, "users/relation", TokenAlice,
			map[string]any{"userId": []string{BobID, CarolID}}, 200), &rs))
		assert.Equal(t, []rel{{ID: BobID, IsBlocking: true}, {ID: CarolID}}, rs)
		raw := mustPost(t, s, "users/relation", TokenAlice, map[string]any{"userId": CarolID}, 200)
		assert.Equal(t, []string{"id", "isFollowing", "hasPendingFollowRequestFromYou",
			"hasPendingFollowRequestToYou", "isFollowed", "isBlocking", "isBlocked", "isMuted",
			"isRenoteMuted"}, keysOf(t, raw))
	})
}

// noteDelivery is the body.note of the captured "note" delivery to userID's
// hook for noteID.
func noteDelivery(t *testing.T, userID, noteID string) json.RawMessage {
	t.Helper()
	ds, err := LoadDeliveries()
	require.NoError(t, err)
	for _, d := range ds {
		var env struct {
			UserID, Type string
			Body         struct{ Note json.RawMessage }
		}
		require.NoError(t, json.Unmarshal(d.Body, &env))
		if env.Type != "note" {
			continue
		}
		var n struct{ ID string }
		require.NoError(t, json.Unmarshal(env.Body.Note, &n))
		if env.Type == "note" && env.UserID == userID && n.ID == noteID {
			return env.Body.Note
		}
	}
	require.FailNow(t, "no note delivery for "+noteID)
	return nil
}

var tokenOf = map[string]string{AdminID: TokenAdmin, AliceID: TokenAlice, BobID: TokenBob, CarolID: TokenCarol}

func TestNotesCreateReplaysTheCapture(t *testing.T) {
	s := New(t)
	n := 0
	for _, c := range loadCalls(t) {
		if c.Endpoint != "notes/create" {
			continue
		}
		n++
		var resp struct{ CreatedNote struct{ ID, UserID string } }
		require.NoError(t, json.Unmarshal(c.Response, &resp))
		req := map[string]any{}
		for k, v := range c.Request {
			req[k] = v
		}
		req["i"] = tokenOf[resp.CreatedNote.UserID]
		got := mustPost(t, s, "notes/create", "", req, 200)
		assert.JSONEq(t, string(c.Response), string(got), c.Label)
		assert.Equal(t, string(c.Response), string(got), "byte for byte: "+c.Label)

		// notes/show by the author right away equals the note Ocean sent to
		// the author's hook (both carry reactionAndUserPairCache).
		shown := mustPost(t, s, "notes/show", tokenOf[resp.CreatedNote.UserID], map[string]any{"noteId": resp.CreatedNote.ID}, 200)
		hooked := noteDelivery(t, resp.CreatedNote.UserID, resp.CreatedNote.ID)
		assert.Equal(t, keysOf(t, hooked), keysOf(t, shown), c.Label)
		assert.JSONEq(t, string(hooked), string(shown), c.Label)
	}
	assert.Equal(t, 6, n)
	assert.Equal(t, 6, s.Calls("notes/create"))

	// The state followed: bob's note was replied to once and renoted twice.
	var bobNote map[string]any
	require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", TokenAlice,
		map[string]any{"noteId": "au1lbcu39jzs000g"}, 200), &bobNote))
	assert.EqualValues(t, 1, bobNote["repliesCount"])
	assert.EqualValues(t, 2, bobNote["renoteCount"])
	var alice map[string]any
	require.NoError(t, json.Unmarshal(mustPost(t, s, "users/show", TokenBob, map[string]any{"userId": AliceID}, 200), &alice))
	assert.EqualValues(t, 5, alice["notesCount"])
}

func TestNotesCreateReplayNeedsTheRecordedAuthor(t *testing.T) {
	s := New(t, WithNow(func() time.Time { return time.Date(2027, 1, 2, 3, 4, 5, 6e6, time.UTC) }))
	c := callByLabel(t, "A posts a note")
	got := mustPost(t, s, "notes/create", TokenBob, map[string]any{"text": c.Request["text"]}, 200)
	var created struct{ CreatedNote map[string]any }
	require.NoError(t, json.Unmarshal(got, &created))
	assert.Equal(t, BobID, created.CreatedNote["userId"])
	assert.Equal(t, "2027-01-02T03:04:05.006Z", created.CreatedNote["createdAt"])
	assert.Len(t, created.CreatedNote["id"], 16)
	assert.NotEqual(t, "au1lbbnl9jzs000f", created.CreatedNote["id"])
}

// synthNote creates a note and returns createdNote.
func synthNote(t *testing.T, s *Server, token string, params map[string]any) map[string]any {
	t.Helper()
	var created struct{ CreatedNote map[string]any }
	require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/create", token, params, 200), &created))
	return created.CreatedNote
}

func TestNotesCreateSynthesises(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	s := New(t, WithNow(func() time.Time { now = now.Add(time.Second); return now }))

	t.Run("same shape as the capture", func(t *testing.T) {
		plain := mustPost(t, s, "notes/create", TokenAlice, map[string]any{"text": "a fresh note <b>&"}, 200)
		assert.Equal(t, keysOf(t, callByLabel(t, "A posts a note").Response), keysOf(t, plain))
		assert.Contains(t, string(plain), `"text":"a fresh note <b>&"`, "no HTML escaping, like JSON.stringify")
		var created struct{ CreatedNote json.RawMessage }
		require.NoError(t, json.Unmarshal(plain, &created))
		wantNote, err := parseObject(callByLabel(t, "A posts a note").Response)
		require.NoError(t, err)
		var want struct{ CreatedNote json.RawMessage }
		require.NoError(t, json.Unmarshal(encode(wantNote), &want))
		assert.Equal(t, keysOf(t, want.CreatedNote), keysOf(t, created.CreatedNote))
		// The id is Ocean's aidx of the creation time.
		var n struct{ ID, CreatedAt string }
		require.NoError(t, json.Unmarshal(created.CreatedNote, &n))
		assert.Equal(t, "2027-01-02T03:04:06.000Z", n.CreatedAt)
		assert.Regexp(t, `^[0-9a-z]{8}fake[0-9a-z]{4}$`, n.ID)
	})

	target := synthNote(t, s, TokenBob, map[string]any{"text": "target"})
	t.Run("reply nests the target and mentions its author", func(t *testing.T) {
		n := synthNote(t, s, TokenAlice, map[string]any{"text": "re", "replyId": target["id"]})
		assert.Equal(t, []any{BobID}, n["mentions"])
		assert.Equal(t, BobID, n["replyUserId"])
		reply := n["reply"].(map[string]any)
		assert.Equal(t, target["id"], reply["id"])
		assert.EqualValues(t, 1, reply["repliesCount"])
		assert.NotContains(t, reply, "clippedCount", "nested reply is not detailed")
	})
	t.Run("self reply mentions nobody", func(t *testing.T) {
		n := synthNote(t, s, TokenBob, map[string]any{"text": "me again", "replyId": target["id"]})
		assert.NotContains(t, n, "mentions")
	})
	t.Run("renote and quote nest the target", func(t *testing.T) {
		pure := synthNote(t, s, TokenAlice, map[string]any{"renoteId": target["id"]})
		assert.Nil(t, pure["text"])
		assert.EqualValues(t, 1, pure["renote"].(map[string]any)["renoteCount"])
		quote := synthNote(t, s, TokenCarol, map[string]any{"text": "q", "renoteId": target["id"]})
		assert.EqualValues(t, 2, quote["renote"].(map[string]any)["renoteCount"])
		assert.Contains(t, quote["renote"], "clippedCount", "nested renote is detailed")
		code, body, _ := post(t, s, "notes/create", TokenCarol, map[string]any{"renoteId": pure["id"]})
		assert.Equal(t, 400, code)
		assert.Contains(t, string(body), "CANNOT_RENOTE_TO_A_PURE_RENOTE")
	})
	t.Run("mentions of local users in order, remote and unknown skipped", func(t *testing.T) {
		n := synthNote(t, s, TokenAlice, map[string]any{
			"text": "hi @Carol and @bob@remote.example and @nobody, @bob!", "cw": "for @admin"})
		assert.Equal(t, []any{AdminID, CarolID, BobID}, n["mentions"])
	})
	t.Run("specified note", func(t *testing.T) {
		n := synthNote(t, s, TokenAlice, map[string]any{"text": "secret", "visibility": "specified",
			"visibleUserIds": []string{CarolID}})
		assert.Equal(t, []any{CarolID}, n["visibleUserIds"])
		assert.Equal(t, []any{CarolID}, n["mentions"])
		var forBob, forCarol map[string]any
		require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", TokenBob, map[string]any{"noteId": n["id"]}, 200), &forBob))
		assert.Equal(t, true, forBob["isHidden"])
		assert.Nil(t, forBob["text"])
		assert.NotContains(t, forBob, "visibleUserIds")
		require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", TokenCarol, map[string]any{"noteId": n["id"]}, 200), &forCarol))
		assert.Equal(t, "secret", forCarol["text"])
		assert.NotContains(t, forCarol, "isHidden")
	})
	t.Run("followers note", func(t *testing.T) {
		n := synthNote(t, s, TokenBob, map[string]any{"text": "fans only", "visibility": "followers"})
		var got map[string]any
		require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", TokenCarol, map[string]any{"noteId": n["id"]}, 200), &got))
		assert.Equal(t, true, got["isHidden"])
		mustPost(t, s, "following/create", TokenCarol, map[string]any{"userId": BobID}, 200)
		got = nil
		require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", TokenCarol, map[string]any{"noteId": n["id"]}, 200), &got))
		assert.Equal(t, "fans only", got["text"])
	})
	t.Run("errors", func(t *testing.T) {
		tests := []struct {
			name   string
			params map[string]any
			code   string
		}{
			{"no content", map[string]any{}, "INVALID_PARAM"},
			{"unknown reply", map[string]any{"text": "x", "replyId": "nope"}, "NO_SUCH_REPLY_TARGET"},
			{"unknown renote", map[string]any{"renoteId": "nope"}, "NO_SUCH_RENOTE_TARGET"},
			{"bad visibility", map[string]any{"text": "x", "visibility": "everyone"}, "INVALID_PARAM"},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, body, _ := post(t, s, "notes/create", TokenAlice, tt.params)
				assert.Equal(t, 400, code)
				assert.Contains(t, string(body), `"code":"`+tt.code+`"`)
			})
		}
		code, body, _ := post(t, s, "notes/show", TokenAlice, map[string]any{"noteId": "nope"})
		assert.Equal(t, 400, code)
		assert.Contains(t, string(body), `"code":"NO_SUCH_NOTE"`)
	})
}

func TestReactions(t *testing.T) {
	now := time.Date(2027, 1, 2, 3, 4, 5, 0, time.UTC)
	var clock sync.Mutex
	advance := func(d time.Duration) {
		clock.Lock()
		defer clock.Unlock()
		now = now.Add(d)
	}
	s := New(t, WithNow(func() time.Time {
		clock.Lock()
		defer clock.Unlock()
		return now
	}))
	n := synthNote(t, s, TokenBob, map[string]any{"text": "react to me"})
	react := func(token, reaction string) (int, []byte) {
		code, body, _ := post(t, s, "notes/reactions/create", token, map[string]any{"noteId": n["id"], "reaction": reaction})
		return code, body
	}
	show := func(token string) map[string]any {
		var shown map[string]any
		require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", token, map[string]any{"noteId": n["id"]}, 200), &shown))
		return shown
	}
	code, body := react(TokenAlice, "👍")
	require.Equal(t, 204, code)
	assert.Empty(t, body)
	assert.NotContains(t, show(TokenAlice), "myReaction", "Ocean skips myReaction on notes younger than 2 s")

	code, _ = react(TokenCarol, "like")
	require.Equal(t, 204, code)
	code, _ = react(TokenBob, "🎉")
	require.Equal(t, 204, code)
	code, body = react(TokenAlice, "👍")
	assert.Equal(t, 400, code)
	assert.Contains(t, string(body), "ALREADY_REACTED")

	advance(2 * time.Second)
	shown := show(TokenAlice)
	assert.EqualValues(t, 3, shown["reactionCount"])
	assert.Equal(t, map[string]any{"👍": 2.0, "🎉": 1.0}, shown["reactions"])
	assert.Equal(t, "👍", shown["myReaction"])
	assert.Equal(t, []any{AliceID + "/👍", CarolID + "/👍", BobID + "/🎉"}, shown["reactionAndUserPairCache"])

	// Changing one's reaction replaces it.
	code, _ = react(TokenAlice, "🎉")
	require.Equal(t, 204, code)
	shown = show("")
	assert.Equal(t, map[string]any{"👍": 1.0, "🎉": 2.0}, shown["reactions"])
	assert.NotContains(t, shown, "myReaction")
	assert.NotContains(t, shown, "reactionAndUserPairCache", "anonymous notes/show drops the cache")
	assert.Equal(t, []any{CarolID + "/👍", BobID + "/🎉", AliceID + "/🎉"}, show(TokenCarol)["reactionAndUserPairCache"])

	t.Run("errors", func(t *testing.T) {
		pure := synthNote(t, s, TokenAlice, map[string]any{"renoteId": n["id"]})
		tests := []struct {
			name, token, noteID, code string
			status                    int
		}{
			{"unknown note", TokenAlice, "nope", "NO_SUCH_NOTE", 400},
			{"pure renote", TokenCarol, pure["id"].(string), "CANNOT_REACT_TO_RENOTE", 400},
			{"no credential", "", n["id"].(string), "CREDENTIAL_REQUIRED", 401},
		}
		for _, tt := range tests {
			t.Run(tt.name, func(t *testing.T) {
				code, body, _ := post(t, s, "notes/reactions/create", tt.token, map[string]any{"noteId": tt.noteID, "reaction": "👍"})
				assert.Equal(t, tt.status, code)
				assert.Contains(t, string(body), `"code":"`+tt.code+`"`)
			})
		}
	})
	t.Run("likeOnly note takes only ❤", func(t *testing.T) {
		liked := synthNote(t, s, TokenBob, map[string]any{"text": "likes only", "reactionAcceptance": "likeOnly"})
		assert.Equal(t, "likeOnly", liked["reactionAcceptance"])
		mustPost(t, s, "notes/reactions/create", TokenAlice, map[string]any{"noteId": liked["id"], "reaction": "🎉"}, 204)
		var got map[string]any
		require.NoError(t, json.Unmarshal(mustPost(t, s, "notes/show", "", map[string]any{"noteId": liked["id"]}, 200), &got))
		assert.Equal(t, map[string]any{"❤": 1.0}, got["reactions"])
	})
}

func TestNormalizeReaction(t *testing.T) {
	tests := []struct{ name, in, want string }{
		{"emoji", "👍", "👍"},
		{"legacy name", "pudding", "🍮"},
		{"variation selector dropped", "❤️", "❤"},
		{"ZWJ sequence kept whole", "👨‍👩‍👧", "👨‍👩‍👧"},
		{"skin tone kept", "👍🏽", "👍🏽"},
		{"flag", "🇯🇵", "🇯🇵"},
		{"first emoji of a string", "wow🎉🎉", "🎉"},
		{"unknown custom emoji", ":blobcat:", "❤"},
		{"text", "nice", "❤"},
		{"empty", "", "❤"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			assert.Equal(t, tt.want, normalizeReaction(tt.in))
		})
	}
}

func TestReplayOfOtherEndpoints(t *testing.T) {
	s := New(t)
	tests := []struct {
		name, endpoint, token string
		params                map[string]any
		label                 string
	}{
		{"non-admin with admin types", "i/webhooks/create", TokenBob,
			callByLabel(t, "B webhook with ALL 11 types (non-admin)").Request, "B webhook with ALL 11 types (non-admin)"},
		{"500 of the test endpoint", "i/webhooks/test", TokenAdmin,
			callByLabel(t, "webhook TEST delivery type=reportCreated (admin)").Request,
			"webhook TEST delivery type=reportCreated (admin)"},
		{"204", "users/report-abuse", TokenAlice, callByLabel(t, "A reports B").Request, "A reports B"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := callByLabel(t, tt.label)
			params := map[string]any{}
			for k, v := range tt.params {
				if k != "i" {
					params[k] = v
				}
			}
			code, body, _ := post(t, s, tt.endpoint, tt.token, params)
			assert.Equal(t, want.Status, code)
			if want.Response == nil {
				assert.Empty(t, body)
				return
			}
			assert.Equal(t, string(want.Response), string(body))
		})
	}
	t.Run("unmatched request", func(t *testing.T) {
		code, body, _ := post(t, s, "i/webhooks/test", TokenBob, map[string]any{"webhookId": "other", "type": "note"})
		assert.Equal(t, 500, code)
		assert.Contains(t, string(body), "no recorded i/webhooks/test call")
	})
}

func TestCountersAndOverrides(t *testing.T) {
	s := New(t)
	var wg sync.WaitGroup
	for range 20 {
		wg.Go(func() {
			resp, err := http.Post(s.URL+"/api/i", "application/json", strings.NewReader(`{"i":"`+TokenAlice+`"}`))
			if err == nil {
				resp.Body.Close()
			}
		})
	}
	wg.Wait()
	assert.Equal(t, 20, s.Calls("i"))
	assert.Equal(t, 0, s.Calls("users/show"))

	s.Handle("users/show", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_, _ = io.WriteString(w, `{"id":"trunc`)
	})
	code, body, _ := post(t, s, "users/show", TokenAlice, map[string]any{"userId": BobID})
	assert.Equal(t, 200, code)
	assert.Equal(t, `{"id":"trunc`, string(body))
	assert.Equal(t, 1, s.Calls("users/show"), "overridden calls count too")

	s.Handle("users/show", nil)
	mustPost(t, s, "users/show", TokenAlice, map[string]any{"userId": BobID}, 200)
	assert.Equal(t, 2, s.Calls("users/show"))

	s.ResetCounts()
	assert.Equal(t, 0, s.Calls("i"))
	assert.Equal(t, 0, s.Calls("users/show"))
}

func TestGzip(t *testing.T) {
	s := New(t, WithGzip())
	tr := &http.Transport{DisableCompression: true}
	t.Cleanup(tr.CloseIdleConnections)
	client := &http.Client{Transport: tr}
	do := func(acceptEncoding string) (*http.Response, []byte) {
		req, err := http.NewRequest(http.MethodPost, s.URL+"/api/i", strings.NewReader(`{}`))
		require.NoError(t, err)
		req.Header.Set("Authorization", "Bearer "+TokenBob)
		if acceptEncoding != "" {
			req.Header.Set("Accept-Encoding", acceptEncoding)
		}
		resp, err := client.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp, body
	}
	want := callByLabel(t, "i as bob").Response

	resp, body := do("gzip, deflate, br")
	assert.Equal(t, "gzip", resp.Header.Get("Content-Encoding"))
	zr, err := gzip.NewReader(bytes.NewReader(body))
	require.NoError(t, err)
	plain, err := io.ReadAll(zr)
	require.NoError(t, err)
	assert.Equal(t, string(want), string(plain))

	for _, ae := range []string{"", "identity", "gzip;q=0"} {
		resp, body = do(ae)
		assert.Empty(t, resp.Header.Get("Content-Encoding"), ae)
		assert.Equal(t, string(want), string(body), ae)
	}
}

func TestLoadCallsGivesACopy(t *testing.T) {
	calls := loadCalls(t)
	for i := range calls {
		calls[i].Request["text"] = "changed"
		if len(calls[i].Response) > 0 {
			calls[i].Response[0] = 'X'
		}
	}
	assert.Equal(t, "Hello from alice (plain note)", callByLabel(t, "A posts a note").Request["text"])
	s := New(t)
	got := mustPost(t, s, "notes/create", TokenAlice, map[string]any{"text": "Hello from alice (plain note)"}, 200)
	assert.Equal(t, string(callByLabel(t, "A posts a note").Response), string(got))
}

// withoutKey returns the JSON object raw without key.
func withoutKey(t *testing.T, raw []byte, key string) string {
	t.Helper()
	o, err := parseObject(raw)
	require.NoError(t, err)
	o.del(key)
	return string(encode(o))
}

// TestWholeCaptureReplays runs the capture's 41 calls in order, each as its
// recorded caller, and gets Ocean's answers back byte for byte; the state it
// leaves shows users exactly as Ocean showed them at the end.
func TestWholeCaptureReplays(t *testing.T) {
	// The capture's hooks point at the capture's receiver, which is gone.
	s := New(t, WithoutNativeDeliveries())
	for i, c := range loadCalls(t) {
		params := map[string]any{}
		token := ""
		for k, v := range c.Request {
			if k == "i" {
				token = tokenOf[recordedCaller(c.Label)]
				require.NotEmpty(t, token, c.Label)
				continue
			}
			params[k] = v
		}
		// A repeated request is answered like its first recording (the
		// capture's later webhook lists differ only in what Ocean's delivery
		// bookkeeping changed in between).
		want := c
		for _, e := range loadCalls(t)[:i] {
			if e.Endpoint == c.Endpoint && recordedCaller(e.Label) == recordedCaller(c.Label) && sameParams(e.Request, params) {
				want = e
				break
			}
		}
		code, body, h := post(t, s, c.Endpoint, token, params)
		assert.Equal(t, want.Status, code, "%d %s", i, c.Label)
		assert.Equal(t, string(want.Response), string(body), "%d %s", i, c.Label)
		assert.Equal(t, "private, max-age=0, must-revalidate", h.Get("Cache-Control"))
	}

	// The moderator's view of alice and bob, as in "admin lists reports".
	var reports []struct{ Reporter, TargetUser json.RawMessage }
	require.NoError(t, json.Unmarshal(callByLabel(t, "admin lists reports").Response, &reports))
	require.Len(t, reports, 1)
	for _, tt := range []struct {
		name, id string
		want     []byte
	}{{"alice", AliceID, reports[0].Reporter}, {"bob", BobID, reports[0].TargetUser}} {
		t.Run("admin sees "+tt.name, func(t *testing.T) {
			got := mustPost(t, s, "users/show", TokenAdmin, map[string]any{"userId": tt.id}, 200)
			assert.Equal(t, keysOf(t, tt.want), keysOf(t, got))
			// updatedAt: Ocean stamps it a few ms after the note; the fake uses the note's time.
			assert.JSONEq(t, withoutKey(t, tt.want, "updatedAt"), withoutKey(t, got, "updatedAt"))
		})
	}
	t.Run("alice sees bob as in the last follow delivery", func(t *testing.T) {
		got := mustPost(t, s, "users/show", TokenAlice, map[string]any{"userId": BobID}, 200)
		want := deliveryBody(t, 17, "user")
		assert.Equal(t, keysOf(t, want), keysOf(t, got))
		assert.JSONEq(t, withoutKey(t, want, "updatedAt"), withoutKey(t, got, "updatedAt"))
	})
}
