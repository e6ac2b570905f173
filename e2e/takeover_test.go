package e2e

import (
	"encoding/json"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// twoNativeHooks gives alice two active hooks in the fake Ocean, delivering
// to rc.
func twoNativeHooks(fake *oceantest.Server, rc *receiver) (notes, follows oceantest.Webhook) {
	notes = fake.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "notes", On: []string{"note"},
		URL: rc.URL + "/notes", Secret: "s3cret", Active: true})
	follows = fake.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "follows", On: []string{"follow"},
		URL: rc.URL + "/follows", Active: true})
	return notes, follows
}

// TestTakeoverOfHooksInOcean: alice has two hooks in Ocean when the sidecar
// is put in front of it. Her first call to the hook API lists both, as
// hers; Ocean's copies are switched off; a note she then posts is
// delivered once, by the sidecar.
func TestTakeoverOfHooksInOcean(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	notes, follows := twoNativeHooks(fake, rc)

	// Before the sidecar, Ocean fires them itself.
	status, body := call(t, fake.URL, "notes/create", oceantest.TokenAlice, map[string]any{"text": "before the sidecar"}, true)
	require.Equal(t, http.StatusOK, status, "%s", body)
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, "Misskey-Hooks", rc.deliveries()[0].Header.Get("User-Agent"), "from Ocean")

	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	status, body = call(t, sc.url(), "i/webhooks/list", oceantest.TokenAlice, nil, true)
	require.Equal(t, http.StatusOK, status, "%s", body)
	var list []map[string]any
	require.NoError(t, json.Unmarshal(body, &list))
	require.Len(t, list, 2, "both, as hers")
	for i, want := range []oceantest.Webhook{notes, follows} {
		assert.Equal(t, want.ID, list[i]["id"])
		assert.Equal(t, want.Name, list[i]["name"])
		assert.Equal(t, want.URL, list[i]["url"])
		assert.Equal(t, want.Secret, list[i]["secret"])
		assert.Equal(t, true, list[i]["active"])
	}
	assert.Equal(t, 1, fake.Calls("i/webhooks/list"), "read from Ocean itself, not through the sidecar")
	for _, n := range fake.Webhooks(oceantest.AliceID) {
		assert.False(t, n.Active, "Ocean's copy of %s is switched off", n.Name)
	}

	fired := fake.NativeDeliveries()
	status, body = call(t, sc.url(), "notes/create", oceantest.TokenAlice, map[string]any{"text": "after the takeover"}, true)
	require.Equal(t, http.StatusOK, status, "%s", body)
	assert.Equal(t, fired, fake.NativeDeliveries(), "Ocean fired nothing")
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 2 }, 20*time.Second, 10*time.Millisecond)
	assert.Never(t, func() bool { return len(rc.deliveries()) > 2 }, 500*time.Millisecond, 20*time.Millisecond, "once")
	d := rc.deliveries()[1]
	assert.Equal(t, "Ocean-Hooks", d.Header.Get("User-Agent"), "from the sidecar")
	assert.Equal(t, "/notes", d.Path)
	assert.Equal(t, notes.ID, d.Header.Get("X-Ocean-Hook-Id"), "the hook id receivers knew")
	assert.Equal(t, notes.ID, gjson.GetBytes(d.Body, "hookId").Str)
	assert.Equal(t, "after the takeover", gjson.GetBytes(d.Body, "body.note.text").Str)
	assert.True(t, verifySignature(d.Header, d.Body, "s3cret"), "signed with the secret it had in Ocean")
}

// TestTakeoverSwitchedOff: with hooks.takeOverNative false the sidecar
// leaves Ocean's hooks alone; they keep firing from Ocean.
func TestTakeoverSwitchedOff(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	twoNativeHooks(fake, rc)
	cfg := baseConfig(t, fake.URL, t.TempDir())
	cfg.Hooks.TakeOverNative = false
	sc := startSidecar(t, cfg)

	status, body := call(t, sc.url(), "i/webhooks/list", oceantest.TokenAlice, nil, true)
	require.Equal(t, http.StatusOK, status)
	assert.JSONEq(t, `[]`, string(body))
	assert.Zero(t, fake.Calls("i/webhooks/list"))
	status, _ = call(t, sc.url(), "notes/create", oceantest.TokenAlice, map[string]any{"text": "hi"}, true)
	require.Equal(t, http.StatusOK, status)
	assert.Equal(t, 1, fake.NativeDeliveries(), "Ocean still fires its own")
	require.Eventually(t, func() bool { return len(rc.deliveries()) == 1 }, 10*time.Second, 10*time.Millisecond)
	assert.Equal(t, "Misskey-Hooks", rc.deliveries()[0].Header.Get("User-Agent"))
}
