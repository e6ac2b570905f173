package hooks

import (
	"encoding/json"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/ocean"
)

func (h *harness) metric(vec string, outcome string) float64 {
	h.t.Helper()
	m := h.api.takeover.m
	switch vec {
	case "hooks":
		return testutil.ToFloat64(m.hooks.WithLabelValues(outcome))
	default:
		return testutil.ToFloat64(m.users.WithLabelValues(outcome))
	}
}

func (h *harness) list(token string) []hookView {
	h.t.Helper()
	res := h.call("list", token, nil)
	require.Equal(h.t, http.StatusOK, res.status, res.body)
	var views []hookView
	require.NoError(h.t, json.Unmarshal([]byte(res.body), &views))
	return views
}

// twoNative gives alice two hooks in Ocean: an active one with a secret
// and a delivery behind it, and an inactive one.
func twoNative(o *oceantest.Server) (oceantest.Webhook, oceantest.Webhook) {
	sent := time.Date(2026, 11, 20, 8, 0, 0, 123e6, time.UTC)
	a := o.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "notes", On: []string{"note", "reply"},
		URL: "https://receiver.example/notes", Secret: "s3cret", Active: true, LatestSentAt: &sent, LatestStatus: ptr(200)})
	b := o.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "follows", On: []string{"follow", "followed"},
		URL: "https://receiver.example/follows", Active: false})
	return a, b
}

func TestTakeoverImportsThenDeactivatesInOcean(t *testing.T) {
	h := newHarnessWith(t, true)
	a, b := twoNative(h.ocean)
	h.ocean.AddWebhook(oceantest.Webhook{UserID: oceantest.BobID, Name: "bob's", On: []string{"note"}, URL: "https://r.example/b", Active: true})

	views := h.list(oceantest.TokenAlice)
	require.Len(t, views, 2, "the caller sees one list: their hooks from Ocean, as theirs")
	assert.Equal(t, hookView{ID: a.ID, UserID: oceantest.AliceID, Name: "notes", On: []string{"note", "reply"},
		URL: "https://receiver.example/notes", Secret: "s3cret", Active: true,
		LatestSentAt: ptr("2026-11-20T08:00:00.123Z"), LatestStatus: ptr(200)}, views[0], "same id, name, URL, secret, events, active flag, latest status")
	assert.Equal(t, hookView{ID: b.ID, UserID: oceantest.AliceID, Name: "follows", On: []string{"follow", "followed"},
		URL: "https://receiver.example/follows", Active: false}, views[1])
	for _, v := range views {
		got, err := h.store.Get(v.ID)
		require.NoError(t, err)
		assert.Equal(t, v.ID, got.NativeID, "Ocean's id is kept on the hook")
	}
	assert.Len(t, h.store.ActiveHooks(oceantest.AliceID, "note"), 1, "the active one fires from the sidecar now")

	native := h.ocean.Webhooks(oceantest.AliceID)
	require.Len(t, native, 2, "Ocean's copies stay there, recoverable")
	assert.False(t, native[0].Active, "switched off in Ocean")
	assert.False(t, native[1].Active)
	assert.Equal(t, 1, h.ocean.Calls("i/webhooks/list"))
	assert.Equal(t, 1, h.ocean.Calls("i/webhooks/update"), "only the active one is switched off")
	assert.True(t, h.ocean.Webhooks(oceantest.BobID)[0].Active, "bob's are his to take over")

	assert.Equal(t, 2.0, h.metric("hooks", "imported"))
	assert.Equal(t, 1.0, h.metric("hooks", "deactivated"))
	assert.Equal(t, 1.0, h.metric("users", "complete"))

	t.Run("later calls cost no Ocean call", func(t *testing.T) {
		for _, ep := range []string{"list", "show"} {
			res := h.call(ep, oceantest.TokenAlice, map[string]any{"webhookId": a.ID})
			require.Equal(t, http.StatusOK, res.status, res.body)
			assert.Empty(t, res.header.Get(TakeoverHeader))
		}
		assert.Equal(t, 1, h.ocean.Calls("i/webhooks/list"))
		assert.Equal(t, 1, h.ocean.Calls("i/webhooks/update"))
	})
	t.Run("and none after a restart either", func(t *testing.T) {
		h.restart()
		assert.Len(t, h.list(oceantest.TokenAlice), 2)
		assert.Equal(t, 1, h.ocean.Calls("i/webhooks/list"))
	})
}

func TestTakeoverOnTheFirstCallWhateverItIs(t *testing.T) {
	h := newHarnessWith(t, true)
	for i := range 3 { // alice's webhookLimit
		h.ocean.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "n" + string(rune('a'+i)), On: []string{"note"}, URL: "https://r.example", Active: true})
	}
	res := h.call("create", oceantest.TokenAlice, map[string]any{"name": "fourth", "url": "https://r.example/4", "on": []string{"note"}})
	assert.Equal(t, http.StatusBadRequest, res.status, "the imported hooks count against the limit, as they did in Ocean")
	assert.Contains(t, res.body, ocean.ErrTooManyWebhooks.Code)
	assert.Len(t, h.all(), 3)
	for _, n := range h.ocean.Webhooks(oceantest.AliceID) {
		assert.False(t, n.Active)
	}
}

// A user with more hooks in Ocean than the webhook limit keeps them all;
// this Ocean then refuses to change any of them, so they stay active there
// (the answer says so) until `oceanhooks import --deactivate`.
func TestTakeoverBeyondTheLimitLosesNothing(t *testing.T) {
	h := newHarnessWith(t, true)
	for i := range 5 {
		h.ocean.AddWebhook(oceantest.Webhook{UserID: oceantest.AliceID, Name: "n" + string(rune('a'+i)), On: []string{"note"}, URL: "https://r.example", Active: true})
	}
	res := h.call("list", oceantest.TokenAlice, nil)
	require.Equal(t, http.StatusOK, res.status, res.body)
	var views []hookView
	require.NoError(t, json.Unmarshal([]byte(res.body), &views))
	assert.Len(t, views, 5, "imported beyond webhookLimit: nothing is lost")
	assert.Equal(t, TakeoverPending, res.header.Get(TakeoverHeader))
	assert.Equal(t, 1.0, h.metric("users", "failed"))
	assert.Contains(t, h.logs.String(), "oceanhooks import --deactivate")

	res = h.call("create", oceantest.TokenAlice, map[string]any{"name": "x", "url": "https://r.example/x", "on": []string{"note"}})
	assert.Contains(t, res.body, ocean.ErrTooManyWebhooks.Code, "and creates none until under the limit, as in Ocean")
}

func TestTakeoverWithAppTokens(t *testing.T) {
	t.Run("without write:account: imported, not deactivated; a native call finishes", func(t *testing.T) {
		h := newHarnessWith(t, true)
		a, _ := twoNative(h.ocean)
		res := h.call("list", oceantest.TokenAliceAppRead, nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Equal(t, TakeoverPending, res.header.Get(TakeoverHeader))
		assert.Equal(t, TakeoverHeader, res.header.Get("Access-Control-Expose-Headers"), "browsers may read it")
		assert.Len(t, h.all(), 2, "imported")
		assert.True(t, h.ocean.Webhooks(oceantest.AliceID)[0].Active, "not deactivated: the token may not")
		assert.Equal(t, 1.0, h.metric("users", "pending"))
		updates := h.ocean.Calls("i/webhooks/update")
		assert.Equal(t, 1, updates, "only the permission check, refused")

		res = h.call("show", oceantest.TokenAliceAppRead, map[string]any{"webhookId": a.ID})
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Equal(t, TakeoverPending, res.header.Get(TakeoverHeader), "still said")
		assert.Equal(t, 1, h.ocean.Calls("i/webhooks/list"), "and not asked again at every call")

		res = h.call("list", oceantest.TokenAlice, nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Empty(t, res.header.Get(TakeoverHeader))
		assert.False(t, h.ocean.Webhooks(oceantest.AliceID)[0].Active, "the next native call finished the job")
		assert.Len(t, h.all(), 2, "nothing imported twice")
		assert.Equal(t, 1.0, h.metric("users", "complete"))
	})
	t.Run("with write:account: deactivated at once", func(t *testing.T) {
		h := newHarnessWith(t, true)
		twoNative(h.ocean)
		res := h.call("list", oceantest.TokenAliceAppWrite, nil)
		require.Equal(t, http.StatusOK, res.status, res.body)
		assert.Empty(t, res.header.Get(TakeoverHeader))
		assert.False(t, h.ocean.Webhooks(oceantest.AliceID)[0].Active)
	})
}

func TestTakeoverKeepsHooksWithEventsWeDoNotSend(t *testing.T) {
	h := newHarnessWith(t, true)
	reports := h.ocean.AddWebhook(oceantest.Webhook{UserID: oceantest.AdminID, Name: "reports", On: []string{"note", "reportCreated"},
		URL: "https://r.example/reports", Active: true})
	plain := h.ocean.AddWebhook(oceantest.Webhook{UserID: oceantest.AdminID, Name: "notes", On: []string{"note"},
		URL: "https://r.example/notes", Active: true})

	views := h.list(oceantest.TokenAdmin)
	require.Len(t, views, 1)
	assert.Equal(t, plain.ID, views[0].ID)
	native := h.ocean.Webhooks(oceantest.AdminID)
	assert.Equal(t, reports, native[0], "untouched in Ocean")
	assert.False(t, native[1].Active)
	assert.Equal(t, 1.0, h.metric("hooks", "kept"))
	done, err := h.store.TakenOver(oceantest.AdminID)
	require.NoError(t, err)
	assert.True(t, done, "a hook that stays in Ocean by design leaves nothing to do")
}

// A takeover cut between the import and the deactivation (here Ocean fails
// the deactivation; a crash of the process is in the root package's tests)
// imports nothing twice when it runs again after a restart.
func TestTakeoverCutBetweenImportAndDeactivation(t *testing.T) {
	h := newHarnessWith(t, true)
	a, b := twoNative(h.ocean)
	h.ocean.Handle("i/webhooks/update", func(w http.ResponseWriter, r *http.Request) {
		ocean.Write(w, ocean.ErrInternal)
	})
	res := h.call("list", oceantest.TokenAlice, nil)
	require.Equal(t, http.StatusOK, res.status, res.body)
	assert.Equal(t, TakeoverPending, res.header.Get(TakeoverHeader))
	assert.Equal(t, 1.0, h.metric("users", "failed"))
	require.True(t, h.ocean.Webhooks(oceantest.AliceID)[0].Active)

	h.ocean.Handle("i/webhooks/update", nil)
	h.restart()
	views := h.list(oceantest.TokenAlice)
	require.Len(t, views, 2, "nothing imported twice")
	assert.Equal(t, []string{a.ID, b.ID}, []string{views[0].ID, views[1].ID})
	assert.Len(t, h.all(), 2)
	assert.False(t, h.ocean.Webhooks(oceantest.AliceID)[0].Active)
	assert.Zero(t, h.metric("hooks", "imported"), "the second run imported nothing")
	assert.Equal(t, 1.0, h.metric("hooks", "deactivated"))
}

func TestTakeoverOfConcurrentFirstCalls(t *testing.T) {
	h := newHarnessWith(t, true)
	twoNative(h.ocean)
	var wg sync.WaitGroup
	statuses := make([]int, 8)
	for i := range statuses {
		wg.Go(func() { statuses[i] = h.call("list", oceantest.TokenAlice, nil).status })
	}
	wg.Wait()
	for _, s := range statuses {
		assert.Equal(t, http.StatusOK, s)
	}
	assert.Len(t, h.all(), 2)
	assert.Equal(t, 1, h.ocean.Calls("i/webhooks/list"), "one takeover; the others waited for it")
}

func TestTakeoverWhenOceanCannotTell(t *testing.T) {
	h := newHarnessWith(t, true)
	twoNative(h.ocean)
	h.ocean.Handle("i/webhooks/list", func(w http.ResponseWriter, r *http.Request) {
		w.WriteHeader(http.StatusBadGateway)
	})
	res := h.call("list", oceantest.TokenAlice, nil)
	assert.Equal(t, http.StatusBadGateway, res.status, "never an empty list that invites creating every hook again")
	assert.Contains(t, res.body, ocean.ErrUpstreamUnavailable.Code)
	assert.Empty(t, h.all())
	assert.Equal(t, 1.0, h.metric("users", "failed"))

	h.ocean.Handle("i/webhooks/list", nil)
	assert.Len(t, h.list(oceantest.TokenAlice), 2, "the next call takes over")
}

func TestNoTakeoverWhenSwitchedOff(t *testing.T) {
	h := newHarnessWith(t, false)
	twoNative(h.ocean)
	assert.Empty(t, h.list(oceantest.TokenAlice))
	assert.Zero(t, h.ocean.Calls("i/webhooks/list"))
	assert.True(t, h.ocean.Webhooks(oceantest.AliceID)[0].Active)
}
