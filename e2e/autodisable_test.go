package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/config"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// TestAutoDisable: a hook whose deliveries all fail for
// delivery.disableAfter is deactivated; its owner sees active: false in
// i/webhooks/show and i/webhooks/list (what Ocean's web client shows), the
// attempt log says why, the metric counts it, operators see it; activated
// again by its owner with a receiver that is back, its queued delivery
// arrives and the failure clock is clear.
func TestAutoDisable(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	rc.setFail(func(*http.Request) int { return http.StatusBadGateway })
	cfg := baseConfig(t, fake.URL, t.TempDir())
	cfg.Delivery.DisableAfter = config.Duration(time.Second)
	cfg.Delivery.BackoffBase = config.Duration(50 * time.Millisecond)
	cfg.Delivery.BackoffCap = config.Duration(100 * time.Millisecond)
	cfg.Delivery.MaxAttempts = 1000
	cfg.Delivery.QuickRetries = 0
	sc := startSidecar(t, cfg)
	token := adminToken(t, cfg)
	hookID := createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "note")
	postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "into the void"}, http.StatusOK)

	show := func() []byte {
		status, body := call(t, sc.url(), "i/webhooks/show", oceantest.TokenAlice, map[string]any{"webhookId": hookID}, true)
		require.Equal(t, http.StatusOK, status, "%s", body)
		return body
	}
	require.Eventually(t, func() bool { return !gjson.GetBytes(show(), "active").Bool() }, 20*time.Second, 20*time.Millisecond,
		"the hook is deactivated after a second of failures")
	// The receiver is back: what was queued before still goes out, as for
	// any inactive hook.
	rc.setFail(nil)
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond)

	status, list := call(t, sc.url(), "i/webhooks/list", oceantest.TokenAlice, nil, true)
	require.Equal(t, http.StatusOK, status)
	assert.False(t, gjson.GetBytes(list, "0.active").Bool())
	assert.False(t, gjson.GetBytes(show(), "disabledAt").Exists(), "Ocean's answer keeps its shape")

	status, ds := call(t, sc.url(), "i/webhooks/deliveries", oceantest.TokenAlice, map[string]any{"webhookId": hookID}, true)
	require.Equal(t, http.StatusOK, status, "%s", ds)
	why := ""
	for _, a := range gjson.GetBytes(ds, "0.attempts").Array() {
		if e := a.Get("error").String(); strings.HasPrefix(e, "hook deactivated") {
			why = e
		}
	}
	assert.Contains(t, why, "delivery.disableAfter is 1s", "the attempt log says why: %s", ds)
	assert.Contains(t, why, "this attempt: HTTP 502 Bad Gateway")

	metrics := adminGet(t, sc, token, "/metrics")
	assert.Contains(t, metrics, "oceanhooks_hooks_auto_disabled_total 1\n")
	hs := operatorHooks(t, sc, token)
	require.Len(t, hs, 1)
	assert.Equal(t, false, hs[0]["active"])
	assert.NotEmpty(t, hs[0]["disabledAt"], "operators see it was auto-disabled")

	// Alice switches the hook on again: the clock is clear, and new events
	// reach her receiver.
	status, body := call(t, sc.url(), "i/webhooks/update", oceantest.TokenAlice, map[string]any{"webhookId": hookID, "active": true}, true)
	require.Equal(t, http.StatusNoContent, status, "%s", body)
	hs = operatorHooks(t, sc, token)
	assert.Equal(t, true, hs[0]["active"])
	assert.Nil(t, hs[0]["disabledAt"])
	assert.Nil(t, hs[0]["failingSince"])
	assert.True(t, gjson.GetBytes(show(), "active").Bool())
	postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "back again"}, http.StatusOK)
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 2 }, 10*time.Second, 10*time.Millisecond)
}

// adminGet reads path from the admin listener with the token.
func adminGet(t *testing.T, sc *sidecar, token, path string) string {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, "http://"+sc.AdminAddr().String()+path, nil)
	require.NoError(t, err)
	req.Header.Set("Authorization", "Bearer "+token)
	resp, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	require.NoError(t, err)
	require.Equal(t, http.StatusOK, resp.StatusCode)
	return string(body)
}
