package oceantest

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
)

func TestAppTokensAreAlicesAndNotNative(t *testing.T) {
	for _, token := range []string{TokenAliceAppRead, TokenAliceAppWrite} {
		assert.Len(t, token, 32, "an access token, not a native one")
		assert.Equal(t, AliceID, UserID(token))
	}
	assert.NotEqual(t, TokenAliceAppRead, TokenAliceAppWrite)
}

func TestAppTokensNeedTheEndpointsKind(t *testing.T) {
	s := New(t)
	listA := callByLabel(t, "list A webhooks")
	tests := []struct {
		name, endpoint, token string
		params                map[string]any
		err                   *ocean.Error // nil: 200
	}{
		{"i needs read:account: read app", "i", TokenAliceAppRead, map[string]any{}, nil},
		{"i needs read:account: write app", "i", TokenAliceAppWrite, map[string]any{}, nil},
		{"users/relation needs read:account", "users/relation", TokenAliceAppRead, map[string]any{"userId": BobID}, nil},
		{"users/show has no kind", "users/show", TokenAliceAppRead, map[string]any{"userId": BobID}, nil},
		{"update without write:account", "i/webhooks/update", TokenAliceAppRead, map[string]any{"webhookId": "x1"},
			ocean.ErrPermissionDenied},
		{"the permission is checked before the parameters", "i/webhooks/update", TokenAliceAppRead, map[string]any{},
			ocean.ErrPermissionDenied},
		{"update with write:account", "i/webhooks/update", TokenAliceAppWrite, map[string]any{"webhookId": "x1"},
			ocean.ErrNoSuchWebhookUpdate},
		{"update with a native token", "i/webhooks/update", TokenAlice, map[string]any{"webhookId": "0"},
			ocean.ErrNoSuchWebhookUpdate},
		{"update without a token", "i/webhooks/update", "", map[string]any{"webhookId": "0"},
			ocean.ErrCredentialRequired},
		{"follow needs write:following", "following/create", TokenAliceAppWrite, map[string]any{"userId": BobID},
			ocean.ErrPermissionDenied},
		{"note needs write:notes", "notes/create", TokenAliceAppWrite, map[string]any{"text": "hi"},
			ocean.ErrPermissionDenied},
		{"reaction needs write:reactions", "notes/reactions/create", TokenAliceAppRead,
			map[string]any{"noteId": "n1", "reaction": "👍"}, ocean.ErrPermissionDenied},
		{"create needs write:account", "i/webhooks/create", TokenAliceAppRead,
			map[string]any{"name": "x", "url": "u", "on": []string{}}, ocean.ErrPermissionDenied},
		{"list needs read:account", "i/webhooks/list", TokenAliceAppRead, map[string]any{}, nil},
		{"unknown access token", "i", "app-token-nobody-0000000000000001", map[string]any{}, ocean.ErrAuthenticationFailed},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, h := post(t, s, tt.endpoint, tt.token, tt.params)
			if tt.err == nil {
				assert.Equal(t, 200, code, "%s", body)
				return
			}
			wantCode, wantAuth, wantBody := oceanError(tt.err)
			assert.Equal(t, wantCode, code)
			assert.Equal(t, wantAuth, h.Get("WWW-Authenticate"))
			assert.JSONEq(t, wantBody, string(body))
		})
	}

	t.Run("a refused call changes nothing", func(t *testing.T) {
		var rel struct{ IsFollowing bool }
		require.NoError(t, json.Unmarshal(mustPost(t, s, "users/relation", TokenAlice, map[string]any{"userId": BobID}, 200), &rel))
		assert.False(t, rel.IsFollowing)
	})
	t.Run("the list is alice's, as captured after her create", func(t *testing.T) {
		create := callByLabel(t, "A webhook, 8 user event types")
		params := map[string]any{}
		for k, v := range create.Request {
			if k != "i" {
				params[k] = v
			}
		}
		mustPost(t, s, "i/webhooks/create", TokenAlice, params, 200)
		body := mustPost(t, s, "i/webhooks/list", TokenAliceAppRead, map[string]any{}, 200)
		assert.Equal(t, string(listA.Response), string(body))
	})
	t.Run("PERMISSION_DENIED exactly as Ocean writes it", func(t *testing.T) {
		code, body, h := post(t, s, "i/webhooks/update", TokenAliceAppRead, map[string]any{"webhookId": "x1"})
		assert.Equal(t, 403, code)
		assert.JSONEq(t, `{"error":{"message":"Your app does not have the necessary permissions to use this endpoint.","code":"PERMISSION_DENIED","id":"1370e5b7-d4eb-4566-bb1d-7748ee6a1838","kind":"permission"}}`, string(body))
		assert.Contains(t, h.Get("WWW-Authenticate"), `error="insufficient_scope"`)
	})
}

func TestIForAnAppTokenHasNoSecrets(t *testing.T) {
	s := New(t)
	want, err := parseObject(callByLabel(t, "i as alice").Response)
	require.NoError(t, err)
	for _, k := range secretKeys {
		_, has := want.get(k)
		require.True(t, has, "the captured i has %s", k)
		want.del(k)
	}
	got := mustPost(t, s, "i", TokenAliceAppRead, map[string]any{}, 200)
	assert.JSONEq(t, string(encode(want)), string(got))
	assert.Equal(t, want.keys, keysOf(t, got), "key order")
}

func TestWebhooksUpdateParams(t *testing.T) {
	s := New(t)
	tests := []struct {
		name          string
		params        map[string]any
		param, reason string // "": NO_SUCH_WEBHOOK
	}{
		{"any well-formed id", map[string]any{"webhookId": "au1lb5al9jzs0005", "name": "n"}, "", ""},
		{"missing", map[string]any{"name": "n"}, "#/required", "must have required property 'webhookId'"},
		{"not a string", map[string]any{"webhookId": 7}, "#/properties/webhookId/type", "must be string"},
		{"not a misskey:id", map[string]any{"webhookId": "a-b"}, "#/properties/webhookId/format", `must match format "misskey:id"`},
		{"empty", map[string]any{"webhookId": ""}, "#/properties/webhookId/format", `must match format "misskey:id"`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			code, body, _ := post(t, s, "i/webhooks/update", TokenAliceAppWrite, tt.params)
			want := ocean.ErrNoSuchWebhookUpdate
			if tt.param != "" {
				want = ocean.ErrInvalidParam.With(map[string]any{"param": tt.param, "reason": tt.reason})
			}
			wantCode, _, wantBody := oceanError(want)
			assert.Equal(t, 400, code)
			assert.Equal(t, wantCode, code)
			assert.JSONEq(t, wantBody, string(body))
		})
	}
}
