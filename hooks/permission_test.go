package hooks

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/ocean"
)

const permissionDenied = `{"error":{"message":"Your app does not have the necessary permissions to use this endpoint.",` +
	`"code":"PERMISSION_DENIED","id":"1370e5b7-d4eb-4566-bb1d-7748ee6a1838","kind":"permission"}}`

// writeCalls are one call of each endpoint that changes hooks, on hook id
// (delete last).
func writeCalls(id string) []struct {
	endpoint string
	params   map[string]any
} {
	return []struct {
		endpoint string
		params   map[string]any
	}{
		{"create", map[string]any{"name": "exfiltrate", "url": "https://evil.example/", "on": []string{"mention"}}},
		{"update", map[string]any{"webhookId": id, "url": "https://evil.example/"}},
		{"redeliver", map[string]any{"webhookId": id}},
		{"delete", map[string]any{"webhookId": id}},
	}
}

func TestReadOnlyAppTokenCannotChangeHooks(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "https://alice.example/", "on": []string{"note"}})
	before := h.all()

	t.Run("reads", func(t *testing.T) {
		res := h.call("list", oceantest.TokenAliceAppRead, nil)
		assert.Equal(t, http.StatusOK, res.status)
		assert.JSONEq(t, string(marshal([]hookView{v})), res.body)
		res = h.call("show", oceantest.TokenAliceAppRead, map[string]any{"webhookId": v.ID})
		assert.Equal(t, http.StatusOK, res.status)
		assert.JSONEq(t, string(marshal(v)), res.body)
		res = h.call("deliveries", oceantest.TokenAliceAppRead, map[string]any{"webhookId": v.ID})
		assert.Equal(t, http.StatusOK, res.status)
	})
	for _, c := range writeCalls(v.ID) {
		t.Run(c.endpoint, func(t *testing.T) {
			res := h.call(c.endpoint, oceantest.TokenAliceAppRead, c.params)
			assert.Equal(t, http.StatusForbidden, res.status)
			assert.JSONEq(t, permissionDenied, res.body, "Ocean's refusal as it is")
			assert.Contains(t, res.header.Get("WWW-Authenticate"), `error="insufficient_scope"`)
		})
	}
	t.Run("refused before the parameters are looked at", func(t *testing.T) {
		res := h.call("create", oceantest.TokenAliceAppRead, map[string]any{"name": 42})
		assert.Equal(t, http.StatusForbidden, res.status)
		assert.JSONEq(t, permissionDenied, res.body)
	})
	assert.Equal(t, before, h.all(), "nothing changed")
	assert.Empty(t, h.deliveries.cancelled)
	assert.Empty(t, h.deliveries.redelivered)
	assert.True(t, h.store.Subscribed(oceantest.AliceID, "note"))
}

func TestWriteAppTokenChangesHooks(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenAliceAppWrite, map[string]any{"name": "app", "url": "https://app.example/", "on": []string{"mention"}})
	assert.Equal(t, oceantest.AliceID, v.UserID)
	require.Len(t, h.all(), 1)

	for _, c := range writeCalls(v.ID)[1:] {
		t.Run(c.endpoint, func(t *testing.T) {
			res := h.call(c.endpoint, oceantest.TokenAliceAppWrite, c.params)
			assert.Equal(t, http.StatusNoContent, res.status, res.body)
		})
	}
	assert.Equal(t, [][2]string{{v.ID, ""}}, h.deliveries.redelivered)
	assert.Equal(t, []string{v.ID}, h.deliveries.cancelled)
	assert.Empty(t, h.all(), "deleted")

	t.Run("test stays for native tokens", func(t *testing.T) {
		w := h.create(oceantest.TokenAliceAppWrite, map[string]any{"name": "app", "url": "u", "on": []string{}})
		res := h.call("test", oceantest.TokenAliceAppWrite, map[string]any{"webhookId": w.ID, "type": "note"})
		assert.Equal(t, http.StatusBadRequest, res.status)
		assert.Contains(t, res.body, `"code":"ACCESS_DENIED"`)
		assert.Empty(t, h.deliveries.sent())
	})
}

func TestNativeTokensAreNotCheckedWithOcean(t *testing.T) {
	h := newHarness(t)
	v := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "u", "on": []string{"note"}})
	for _, c := range writeCalls(v.ID) {
		res := h.call(c.endpoint, oceantest.TokenAlice, c.params)
		assert.Less(t, res.status, 300, "%s: %s", c.endpoint, res.body)
	}
	assert.Zero(t, h.ocean.Calls("i/webhooks/update"), "a native token has every permission")
	assert.Equal(t, 1, h.ocean.Calls("i"))
}

func TestWriteVerdictIsCachedPerTTL(t *testing.T) {
	h := newHarness(t)
	update := func() {
		t.Helper()
		res := h.call("update", oceantest.TokenAliceAppRead, map[string]any{"webhookId": "au1lb5zz9jzs0zzz"})
		require.Equal(t, http.StatusForbidden, res.status)
	}
	v := h.create(oceantest.TokenAliceAppWrite, map[string]any{"name": "a", "url": "u", "on": []string{}})
	for range 3 {
		res := h.call("update", oceantest.TokenAliceAppWrite, map[string]any{"webhookId": v.ID, "name": "b"})
		require.Equal(t, http.StatusNoContent, res.status)
	}
	assert.Equal(t, 1, h.ocean.Calls("i/webhooks/update"), "allowed: asked once")

	for range 3 {
		update()
	}
	assert.Equal(t, 2, h.ocean.Calls("i/webhooks/update"), "refused: asked once")

	h.oceanClock.Advance(ocean.DefaultFailureTTL)
	update()
	assert.Equal(t, 3, h.ocean.Calls("i/webhooks/update"), "a refusal is asked again after FailureTTL")

	h.oceanClock.Advance(ocean.DefaultTTL - ocean.DefaultFailureTTL - time.Second)
	res := h.call("update", oceantest.TokenAliceAppWrite, map[string]any{"webhookId": v.ID, "name": "c"})
	require.Equal(t, http.StatusNoContent, res.status)
	assert.Equal(t, 3, h.ocean.Calls("i/webhooks/update"), "allowed, still within TTL")

	h.oceanClock.Advance(time.Second)
	res = h.call("update", oceantest.TokenAliceAppWrite, map[string]any{"webhookId": v.ID, "name": "d"})
	require.Equal(t, http.StatusNoContent, res.status)
	assert.Equal(t, 4, h.ocean.Calls("i/webhooks/update"), "asked again once the TTL is over")
}

func TestWriteCheckWithOceanDown(t *testing.T) {
	h := newHarness(t)
	h.ocean.Handle("i/webhooks/update", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusServiceUnavailable)
	})
	params := map[string]any{"name": "a", "url": "u", "on": []string{}}
	res := h.call("create", oceantest.TokenAliceAppWrite, params)
	assert.Equal(t, http.StatusBadGateway, res.status)
	assert.JSONEq(t, `{"error":{"message":"Ocean is not reachable through the oceanhooks sidecar.","code":"UPSTREAM_UNAVAILABLE","id":"9b0c7f1e-6a53-4c8e-a0f4-3d2b8e5c1a77","kind":"server"}}`, res.body)
	assert.Empty(t, h.all(), "never a silent success")

	h.ocean.Handle("i/webhooks/update", nil)
	h.create(oceantest.TokenAliceAppWrite, params)
	assert.Equal(t, 2, h.ocean.Calls("i/webhooks/update"), "the failure was not cached")
}

// countingAuth counts write checks; every token is bob's.
type countingAuth struct {
	writeErr error
	checks   int
}

func (c *countingAuth) Me(context.Context, string) (ocean.Me, error) {
	return ocean.Me{ID: oceantest.BobID, WebhookLimit: 3}, nil
}

func (c *countingAuth) CheckWriteAccount(context.Context, string) error {
	c.checks++
	return c.writeErr
}

func TestWriteCheckThroughTheAuthenticator(t *testing.T) {
	const appToken = "an-app-access-token-of-32-chars!"
	tests := []struct {
		name       string
		token      string
		writeErr   error
		wantStatus int
		wantCode   string
		wantChecks int
	}{
		{"native token: no check", oceantest.TokenBob, errors.New("must not be asked"), http.StatusOK, "", 0},
		{"app token allowed", appToken, nil, http.StatusOK, "", 1},
		{"app token refused", appToken, ocean.ErrPermissionDenied, http.StatusForbidden, "PERMISSION_DENIED", 1},
		{"a failure of the check's own", appToken, errors.New("boom"), http.StatusBadGateway, "UPSTREAM_UNAVAILABLE", 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, _ := newStore(t)
			auth := &countingAuth{writeErr: tt.writeErr}
			srv := httptest.NewServer(NewAPI(s, auth, &fakeDeliveries{store: s}, APIOptions{}))
			t.Cleanup(srv.Close)
			req, err := http.NewRequest(http.MethodPost, srv.URL+"/api/i/webhooks/create",
				strings.NewReader(`{"name":"n","url":"u","on":[]}`))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+tt.token)
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			var body strings.Builder
			_, err = io.Copy(&body, resp.Body)
			require.NoError(t, err)
			assert.Equal(t, tt.wantStatus, resp.StatusCode, body.String())
			if tt.wantCode != "" {
				assert.Contains(t, body.String(), `"code":"`+tt.wantCode+`"`)
			}
			assert.Equal(t, tt.wantChecks, auth.checks)
			n, err := s.Count(oceantest.BobID)
			require.NoError(t, err)
			if tt.wantStatus == http.StatusOK {
				assert.Equal(t, 1, n)
			} else {
				assert.Zero(t, n)
			}
		})
	}
}
