package oceantest

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/ocean"
)

// nativeReceiver records the native deliveries it gets.
type nativeReceiver struct {
	*httptest.Server
	mu  sync.Mutex
	got []*http.Request
	raw [][]byte
}

func newNativeReceiver(t *testing.T) *nativeReceiver {
	rc := &nativeReceiver{}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		rc.mu.Lock()
		rc.got = append(rc.got, r)
		rc.raw = append(rc.raw, b)
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *nativeReceiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.got)
}

func TestNativeWebhooksListShowUpdate(t *testing.T) {
	s := New(t)
	first := s.AddWebhook(Webhook{UserID: AliceID, Name: "one", On: []string{"note"}, URL: "https://r.example/1", Secret: "s1", Active: true})
	second := s.AddWebhook(Webhook{UserID: AliceID, Name: "two", On: []string{"follow", "mention"}, URL: "https://r.example/2", Active: false})
	bobs := s.AddWebhook(Webhook{UserID: BobID, Name: "bob", On: []string{"note"}, URL: "https://r.example/b", Active: true})
	require.NotEqual(t, first.ID, second.ID)

	t.Run("list: the caller's, Ocean's shape and order", func(t *testing.T) {
		body := mustPost(t, s, "i/webhooks/list", TokenAlice, map[string]any{}, 200)
		assert.Equal(t, `[{"id":"`+first.ID+`","userId":"`+AliceID+`","name":"one","on":["note"],"url":"https://r.example/1","secret":"s1","active":true,"latestSentAt":null,"latestStatus":null},`+
			`{"id":"`+second.ID+`","userId":"`+AliceID+`","name":"two","on":["follow","mention"],"url":"https://r.example/2","secret":"","active":false,"latestSentAt":null,"latestStatus":null}]`, string(body))
		assert.JSONEq(t, `[]`, string(mustPost(t, s, "i/webhooks/list", TokenCarol, map[string]any{}, 200)))
	})
	t.Run("show: own hook, another's is no such webhook", func(t *testing.T) {
		body := mustPost(t, s, "i/webhooks/show", TokenAlice, map[string]any{"webhookId": first.ID}, 200)
		assert.Equal(t, "one", gjson.GetBytes(body, "name").Str)
		code, body, _ := post(t, s, "i/webhooks/show", TokenAlice, map[string]any{"webhookId": bobs.ID})
		wantCode, _, wantBody := oceanError(ocean.ErrNoSuchWebhookShow)
		assert.Equal(t, wantCode, code)
		assert.JSONEq(t, wantBody, string(body))
	})
	t.Run("update: only what is given, 204", func(t *testing.T) {
		code, body, _ := post(t, s, "i/webhooks/update", TokenAlice, map[string]any{"webhookId": first.ID, "active": false})
		require.Equal(t, 204, code, "%s", body)
		assert.Empty(t, body)
		got := s.Webhooks(AliceID)[0]
		assert.False(t, got.Active)
		assert.Equal(t, "one", got.Name)
		assert.Equal(t, "s1", got.Secret)
		mustPost(t, s, "i/webhooks/update", TokenAlice, map[string]any{"webhookId": first.ID, "secret": nil, "name": "uno"}, 204)
		got = s.Webhooks(AliceID)[0]
		assert.Equal(t, "", got.Secret, "a null secret is empty")
		assert.Equal(t, "uno", got.Name)
	})
	t.Run("update: another's hook is no such webhook, unchanged", func(t *testing.T) {
		code, body, _ := post(t, s, "i/webhooks/update", TokenAlice, map[string]any{"webhookId": bobs.ID, "active": false})
		wantCode, _, wantBody := oceanError(ocean.ErrNoSuchWebhookUpdate)
		assert.Equal(t, wantCode, code)
		assert.JSONEq(t, wantBody, string(body))
		assert.True(t, s.Webhooks(BobID)[0].Active)
	})
}

func TestNativeWebhooksLimits(t *testing.T) {
	s := New(t)
	create := func(token, name string, on ...string) (int, []byte) {
		code, body, _ := post(t, s, "i/webhooks/create", token, map[string]any{"name": name, "url": "https://r.example/" + name, "on": on})
		return code, body
	}
	code, body := create(TokenBob, "reports", "note", "reportCreated")
	wantCode, _, wantBody := oceanError(ocean.ErrYouAreNotAdmin)
	assert.Equal(t, wantCode, code)
	assert.JSONEq(t, wantBody, string(body))
	code, body = create(TokenAdmin, "reports", "note", "reportCreated")
	assert.Equal(t, 200, code, "%s", body)

	for i := range 3 { // alice's captured policies.webhookLimit
		code, body = create(TokenAlice, "h"+string(rune('a'+i)), "note")
		require.Equal(t, 200, code, "%s", body)
	}
	code, body = create(TokenAlice, "one too many", "note")
	wantCode, _, wantBody = oceanError(ocean.ErrTooManyWebhooks)
	assert.Equal(t, wantCode, code)
	assert.JSONEq(t, wantBody, string(body))

	// A user holding more than the limit (it was lowered, or the hooks came
	// from elsewhere) can change none of them in this fork.
	over := s.AddWebhook(Webhook{UserID: AliceID, Name: "fourth", On: []string{"note"}, URL: "https://r.example/4", Active: true})
	code, body, _ = post(t, s, "i/webhooks/update", TokenAlice, map[string]any{"webhookId": over.ID, "active": false})
	wantCode, _, wantBody = oceanError(ocean.ErrWebhookLimitExceeded)
	assert.Equal(t, wantCode, code)
	assert.JSONEq(t, wantBody, string(body))
	assert.True(t, s.Webhooks(AliceID)[3].Active)
}

func TestNativeWebhooksFire(t *testing.T) {
	rc := newNativeReceiver(t)
	s := New(t)
	note := s.AddWebhook(Webhook{UserID: AliceID, Name: "notes", On: []string{"note"}, URL: rc.URL + "/notes", Secret: "s3cret", Active: true})
	s.AddWebhook(Webhook{UserID: AliceID, Name: "off", On: []string{"note"}, URL: rc.URL + "/off", Active: false})
	s.AddWebhook(Webhook{UserID: BobID, Name: "followed", On: []string{"followed"}, URL: rc.URL + "/followed", Active: true})
	s.AddWebhook(Webhook{UserID: AliceID, Name: "follow", On: []string{"follow"}, URL: rc.URL + "/follow", Active: true})

	created := mustPost(t, s, "notes/create", TokenAlice, map[string]any{"text": "fired natively"}, 200)
	assert.Equal(t, 1, s.NativeDeliveries(), "the active hook on note only, counted when the note was made")
	require.Eventually(t, func() bool { return rc.count() == 1 }, 10*time.Second, 10*time.Millisecond)
	rc.mu.Lock()
	r, raw := rc.got[0], rc.raw[0]
	rc.mu.Unlock()
	assert.Equal(t, "/notes", r.URL.Path)
	assert.Equal(t, "Misskey-Hooks", r.Header.Get("User-Agent"))
	assert.Equal(t, note.ID, r.Header.Get("X-Misskey-Hook-Id"))
	assert.Equal(t, "s3cret", r.Header.Get("X-Misskey-Hook-Secret"))
	var env map[string]json.RawMessage
	require.NoError(t, json.Unmarshal(raw, &env))
	assert.Equal(t, []string{"server", "hookId", "userId", "eventId", "createdAt", "type", "body"}, keysOf(t, raw))
	assert.Equal(t, "note", gjson.GetBytes(raw, "type").Str)
	assert.Equal(t, AliceID, gjson.GetBytes(raw, "userId").Str)
	assert.Equal(t, gjson.GetBytes(created, "createdNote.id").Str, gjson.GetBytes(raw, "body.note.id").Str)
	require.Eventually(t, func() bool {
		h := s.Webhooks(AliceID)[0]
		return h.LatestStatus != nil && *h.LatestStatus == http.StatusNoContent && h.LatestSentAt != nil
	}, 10*time.Second, 10*time.Millisecond, "Ocean's bookkeeping after the attempt")

	mustPost(t, s, "following/create", TokenAlice, map[string]any{"userId": BobID}, 200)
	assert.Equal(t, 3, s.NativeDeliveries(), "follow to alice, followed to bob")
	require.Eventually(t, func() bool { return rc.count() == 3 }, 10*time.Second, 10*time.Millisecond)
}

func TestWithoutNativeDeliveries(t *testing.T) {
	rc := newNativeReceiver(t)
	s := New(t, WithoutNativeDeliveries())
	s.AddWebhook(Webhook{UserID: AliceID, Name: "notes", On: []string{"note"}, URL: rc.URL, Active: true})
	mustPost(t, s, "notes/create", TokenAlice, map[string]any{"text": "not fired"}, 200)
	assert.Zero(t, s.NativeDeliveries())
	assert.Zero(t, rc.count())
}
