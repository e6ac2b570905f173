package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// TestKilledBetweenImportAndDeactivation: the program is killed (SIGKILL)
// while it switches alice's hooks off in Ocean, after it imported them.
// After a restart her next call imports nothing twice, finishes the
// switching off, and her next note is delivered once, by the sidecar.
func TestKilledBetweenImportAndDeactivation(t *testing.T) {
	oc := oceantest.New(t)
	var mu sync.Mutex
	var got []*http.Request
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		mu.Lock()
		got = append(got, r)
		mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }
	notes := oc.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "notes", On: []string{"note"}, URL: rc.URL, Active: true})
	follows := oc.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "follows", On: []string{"follow"}, URL: rc.URL, Active: true})

	cfg := writeConfig(t, `
listen: "127.0.0.1:0"
adminListen: "127.0.0.1:0"
upstream: "`+oc.URL+`"
dataDir: "`+filepath.Join(t.TempDir(), "data")+`"
log:
  format: json
delivery:
  allowedPrivateNetworks: ["127.0.0.0/8"]
`)
	p := startServe(t, cfg, false)
	killed := make(chan struct{})
	oc.Handle("i/webhooks/update", func(w http.ResponseWriter, r *http.Request) {
		p.kill() // the import is done; the switching off never is
		close(killed)
		w.WriteHeader(http.StatusInternalServerError)
	})
	req, err := http.NewRequest(http.MethodPost, "http://"+p.addr+"/api/i/webhooks/list", strings.NewReader("{}"))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+oceantest.TokenAlice)
	if res, err := http.DefaultClient.Do(req); err == nil {
		res.Body.Close()
		t.Fatalf("the sidecar answered (%s) before it was killed", res.Status)
	}
	<-killed
	for _, n := range oc.Webhooks(oceantest.AliceID) {
		require.True(t, n.Active, "not switched off before the kill")
	}
	oc.Handle("i/webhooks/update", nil)

	p = startServe(t, cfg, false)
	status, body := post(t, "http://"+p.addr+"/api/i/webhooks/list", oceantest.TokenAlice, `{}`)
	require.Equal(t, http.StatusOK, status, body)
	ids := gjson.Get(body, "#.id").Array()
	require.Len(t, ids, 2, "nothing imported twice: %s", body)
	assert.Equal(t, notes.ID, ids[0].Str)
	assert.Equal(t, follows.ID, ids[1].Str)
	for _, n := range oc.Webhooks(oceantest.AliceID) {
		assert.False(t, n.Active, "switched off after the restart")
	}

	status, body = post(t, "http://"+p.addr+"/api/notes/create", oceantest.TokenAlice, `{"text":"after the restart"}`)
	require.Equal(t, http.StatusOK, status, body)
	assert.Zero(t, oc.NativeDeliveries(), "Ocean fired nothing")
	require.Eventually(t, func() bool { return count() == 1 }, 30*time.Second, 20*time.Millisecond)
	assert.Never(t, func() bool { return count() > 1 }, time.Second, 50*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "Ocean-Hooks", got[0].Header.Get("User-Agent"))
	assert.Equal(t, notes.ID, got[0].Header.Get("X-Ocean-Hook-Id"))
}
