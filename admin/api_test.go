package admin

import (
	"encoding/json"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/webhook"
)

var bearer = map[string]string{"Authorization": "Bearer " + token}

func jsonBearer() map[string]string {
	return map[string]string{"Authorization": "Bearer " + token, "Content-Type": "application/json"}
}

// TestHooksAPI: every hook, or one user's, secrets masked and URLs cut to
// scheme://host/…, with auto-disable's bookkeeping when there is any.
func TestHooksAPI(t *testing.T) {
	f := newFixture(t)
	a := mustCreate(t, f.hooks, hooks.Hook{UserID: alice, Name: "a", URL: "https://discord.example/api/webhooks/1/t0ken?x=1&y=2", Secret: "top-secret", On: []string{webhook.Note}, Active: true})
	b := mustCreate(t, f.hooks, hooks.Hook{UserID: bob, Name: "b", URL: "https://b.example", On: []string{webhook.Follow}, Active: true})
	f.hooks.Deactivate(b.ID)
	f.hooks.RecordAttempt(a.ID, time.Date(2026, 11, 26, 20, 49, 48, 202_000_000, time.UTC), 200)
	c := mustCreate(t, f.hooks, hooks.Hook{UserID: carol, Name: "c", URL: "https://c.example/x", On: []string{webhook.Note}, Active: true})
	t0 := time.Date(2026, 3, 1, 0, 0, 0, 0, time.UTC)
	f.hooks.Attempted(c.ID, t0, true)
	require.NotEmpty(t, f.hooks.Attempted(c.ID, t0.Add(120*time.Hour), true))

	wantA := `{"id":"` + a.ID + `","userId":"` + alice + `","name":"a","on":["note"],"url":"https://discord.example/…",` +
		`"secret":"****","active":true,"latestSentAt":"2026-11-26T20:49:48.202Z","latestStatus":200}`
	wantB := `{"id":"` + b.ID + `","userId":"` + bob + `","name":"b","on":["follow"],"url":"https://b.example/",` +
		`"secret":"","active":false,"latestSentAt":null,"latestStatus":null}`

	resp := f.do(t, request{path: "/hooks", header: bearer})
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Equal(t, "application/json; charset=utf-8", resp.header.Get("Content-Type"))
	var all []map[string]any
	require.NoError(t, json.Unmarshal([]byte(resp.body), &all))
	require.Len(t, all, 3)
	first, _ := json.Marshal(all[0])
	second, _ := json.Marshal(all[1])
	assert.JSONEq(t, wantA, string(first))
	assert.JSONEq(t, wantB, string(second))
	assert.Equal(t, false, all[2]["active"])
	assert.Equal(t, "2026-03-01T00:00:00.000Z", all[2]["failingSince"])
	assert.EqualValues(t, 2, all[2]["failures"])
	assert.NotEmpty(t, all[2]["disabledAt"], "auto-disabled hooks say so")
	assert.NotContains(t, resp.body, "top-secret")
	assert.NotContains(t, resp.body, "t0ken", "hook URLs are masked: their path may be a credential")

	resp = f.do(t, request{path: "/hooks?userId=" + bob, header: bearer})
	assert.JSONEq(t, `[`+wantB+`]`, resp.body)
	resp = f.do(t, request{path: "/hooks?userId=au1nobody0000000", header: bearer})
	assert.JSONEq(t, `[]`, resp.body)

	resp = f.do(t, request{method: http.MethodPut, path: "/hooks", header: jsonBearer()})
	assert.Equal(t, http.StatusMethodNotAllowed, resp.status)
	assert.Equal(t, "GET, HEAD, POST", resp.header.Get("Allow"))
}

// TestImportAPI: POST /hooks imports hooks read from Ocean's database, once
// each; a dry run changes nothing; a request with a hook oceanhooks cannot
// take is refused whole.
func TestImportAPI(t *testing.T) {
	f := newFixture(t)
	const oceanHookA = "au1lb5cz9jzs0007"
	hooksJSON := `[{"oceanId":"` + oceanHookA + `","userId":"` + alice + `","name":"a","on":["note"],"url":"https://r.example/a","secret":"s","active":true,"latestSentAt":"2026-11-26T20:49:48.202Z","latestStatus":200},` +
		`{"oceanId":"au1lb5cr9jzs0006","userId":"` + bob + `","name":"b","on":["follow"],"url":"https://r.example/b","secret":"","active":false,"latestSentAt":null,"latestStatus":null}]`

	tests := []struct {
		name, body string
		status     int
		want       string
	}{
		{"dry run", `{"dryRun":true,"hooks":` + hooksJSON + `}`, 200,
			`{"results":[{"oceanId":"` + oceanHookA + `","outcome":"would import"},{"oceanId":"au1lb5cr9jzs0006","outcome":"would import"}]}`},
		{"import", `{"hooks":` + hooksJSON + `}`, 200,
			`{"results":[{"oceanId":"` + oceanHookA + `","hookId":"` + oceanHookA + `","outcome":"imported"},{"oceanId":"au1lb5cr9jzs0006","hookId":"au1lb5cr9jzs0006","outcome":"imported"}]}`},
		{"again", `{"hooks":` + hooksJSON + `}`, 200,
			`{"results":[{"oceanId":"` + oceanHookA + `","hookId":"` + oceanHookA + `","outcome":"already imported"},{"oceanId":"au1lb5cr9jzs0006","hookId":"au1lb5cr9jzs0006","outcome":"already imported"}]}`},
		{"dry run after", `{"dryRun":true,"hooks":` + hooksJSON + `}`, 200,
			`{"results":[{"oceanId":"` + oceanHookA + `","hookId":"` + oceanHookA + `","outcome":"already imported"},{"oceanId":"au1lb5cr9jzs0006","hookId":"au1lb5cr9jzs0006","outcome":"already imported"}]}`},
		{"admin-only events are refused, nothing stored", `{"hooks":[{"oceanId":"au1lb5d59jzs0008","userId":"` + carol + `","name":"r","on":["note"],"url":"u","active":true},{"oceanId":"au1lb5d59jzs0009","userId":"` + carol + `","name":"r","on":["reportCreated"],"url":"u","active":true}]}`, 400,
			`{"error":"hook au1lb5d59jzs0009 has event types oceanhooks does not send (reportCreated): leave it in Ocean"}`},
		{"bad ids", `{"hooks":[{"oceanId":"x-y","userId":"` + carol + `","on":[]}]}`, 400,
			`{"error":"hook \"x-y\" of user \"` + carol + `\": ids must be Ocean ids"}`},
		{"unknown field", `{"hook":[]}`, 400, ``},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, request{method: http.MethodPost, path: "/hooks", body: tt.body, header: jsonBearer()})
			assert.Equal(t, tt.status, resp.status, resp.body)
			if tt.want != "" {
				assert.JSONEq(t, tt.want, resp.body)
			}
		})
	}
	all, err := f.hooks.ListAll()
	require.NoError(t, err)
	require.Len(t, all, 2, "the refused requests stored nothing")
	require.NotNil(t, all[1].LatestSentAt)
	assert.Equal(t, "2026-11-26T20:49:48.202Z", *isoMillis(all[1].LatestSentAt))
}

// TestDeliveriesAPI: listing (URLs inside attempt texts masked), paging and
// its limits, and redelivery of one delivery or of every dead letter.
func TestDeliveriesAPI(t *testing.T) {
	f := newFixture(t)
	at := time.Date(2026, 3, 6, 11, 0, 0, 0, time.UTC)
	f.queue.ds = []webhook.Delivery{
		{ID: "d2", HookID: "h1", UserID: alice, EventID: "e2", Type: "note", CreatedAt: at, State: webhook.StateDead,
			Attempts: []webhook.Attempt{{At: at, Status: 400, Error: "HTTP 400 Bad Request",
				Response: `{"message":"Unknown Webhook","url":"https://discord.example/api/webhooks/1/t0ken-in-the-path?wait=true"}`}}},
		{ID: "d1", HookID: "h1", UserID: alice, EventID: "e1", Type: "note", CreatedAt: at, State: webhook.StateDelivered,
			Attempts: []webhook.Attempt{{At: at, Status: 200}}},
	}
	tests := []struct {
		name, method, query, body string
		status                    int
		want                      string
		contains                  []string
	}{
		{name: "list masks URLs", method: "GET", query: "?webhookId=h1", status: 200,
			contains: []string{`Unknown Webhook`, `https://discord.example/…`, `"d1"`}},
		{name: "list paged", method: "GET", query: "?webhookId=h1&limit=1&untilId=d2", status: 200, contains: []string{`"d1"`}},
		{name: "bad limit", method: "GET", query: "?limit=1000", status: 400, want: `{"error":"limit must be 1 to 100"}`},
		{name: "redeliver unknown", method: "POST", body: `{"webhookId":"h1","deliveryId":"0000000000000000"}`, status: 404, want: `{"error":"no such delivery"}`},
		{name: "redeliver without hook", method: "POST", body: `{}`, status: 400, want: `{"error":"body must be {\"webhookId\", \"deliveryId\"?}"}`},
		{name: "redeliver one", method: "POST", body: `{"webhookId":"h1","deliveryId":"d2"}`, status: 200, want: `{"redelivered":1}`},
		{name: "redeliver all", method: "POST", body: `{"webhookId":"h1"}`, status: 200, want: `{"started":true}`},
		{name: "method", method: "DELETE", status: 405, want: `{"error":"method not allowed"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			resp := f.do(t, request{method: tt.method, path: "/deliveries" + tt.query, body: tt.body, header: jsonBearer()})
			assert.Equal(t, tt.status, resp.status, resp.body)
			if tt.want != "" {
				assert.JSONEq(t, tt.want, resp.body)
			}
			for _, c := range tt.contains {
				assert.Contains(t, resp.body, c)
			}
			assert.NotContains(t, resp.body, "t0ken")
		})
	}
	assert.Equal(t, []string{"h1/d2", "h1/"}, f.queue.redeliveries())
}

func TestHostPolicy(t *testing.T) {
	tests := []struct {
		name     string
		listen   string
		bound    *net.TCPAddr
		accepted []string
		refused  []string
	}{
		{"loopback", "127.0.0.1:9464", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 9464},
			[]string{"127.0.0.1:9464", "localhost:9464", "[::ffff:127.0.0.1]:9464"},
			[]string{"127.0.0.2:9464", "[::1]:9464", "10.0.0.1:9464", "attacker.example:9464", "localhost:80", ""}},
		{"every address", ":9464", &net.TCPAddr{IP: net.IPv6unspecified, Port: 9464},
			[]string{"10.1.2.3:9464", "[fd00::1]:9464", "localhost:9464", "127.0.0.1:9464"},
			[]string{"oceanhooks:9464", "10.1.2.3:80", "attacker.example:9464"}},
		{"a named address", "admin.internal:9464", &net.TCPAddr{IP: net.IPv4(10, 0, 0, 5), Port: 9464},
			[]string{"admin.internal:9464", "10.0.0.5:9464", "Admin.Internal:9464"},
			[]string{"localhost:9464", "10.0.0.6:9464", "admin.internal:9465"}},
		{"port 80 may be left out", "127.0.0.1:80", &net.TCPAddr{IP: net.IPv4(127, 0, 0, 1), Port: 80},
			[]string{"127.0.0.1", "localhost", "localhost:80"},
			[]string{"localhost:8080", "attacker.example"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			p, err := newHostPolicy(tt.listen, tt.bound, nil)
			require.NoError(t, err)
			for _, h := range tt.accepted {
				assert.True(t, p.accepts(h), "accepts %q", h)
			}
			for _, h := range tt.refused {
				assert.False(t, p.accepts(h), "refuses %q", h)
			}
		})
	}
}
