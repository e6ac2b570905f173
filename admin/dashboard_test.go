package admin

import (
	"net/http"
	"net/url"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/webhook"
)

var formType = map[string]string{"Content-Type": "application/x-www-form-urlencoded"}

func withHeader(base map[string]string, kv ...string) map[string]string {
	out := map[string]string{}
	for k, v := range base {
		out[k] = v
	}
	for i := 0; i+1 < len(kv); i += 2 {
		out[kv[i]] = kv[i+1]
	}
	return out
}

// TestDashboardLogin: the pages send a browser without a session to the
// login form; the token answers with a session cookie that holds no token,
// is HttpOnly, SameSite=Strict and scoped to the dashboard, and opens the
// pages until it expires; a wrong token, a forged, tampered or expired
// cookie, or one from another token opens nothing.
func TestDashboardLogin(t *testing.T) {
	f := newFixture(t)

	resp := f.do(t, request{path: "/"})
	assert.Equal(t, http.StatusSeeOther, resp.status)
	assert.Equal(t, "/dash/", resp.header.Get("Location"))
	resp = f.do(t, request{path: "/dash/hooks/x?until=y"})
	assert.Equal(t, http.StatusSeeOther, resp.status)
	assert.Equal(t, "/dash/login?next="+url.QueryEscape("/dash/hooks/x?until=y"), resp.header.Get("Location"))

	resp = f.do(t, request{path: loginPath})
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Contains(t, resp.body, `type="password"`)
	assert.Contains(t, resp.body, "Private admin listener")

	resp = f.do(t, request{method: http.MethodPost, path: loginPath, body: "token=wrong-token&next=/dash/", header: withHeader(formType, "Origin", f.origin())})
	assert.Equal(t, http.StatusUnauthorized, resp.status)
	assert.Contains(t, resp.body, "not the admin token")
	assert.Empty(t, resp.header.Values("Set-Cookie"))

	resp = f.do(t, request{method: http.MethodPost, path: loginPath, body: url.Values{"token": {token}, "next": {"/dash/hooks/x"}}.Encode(),
		header: withHeader(formType, "Origin", f.origin())})
	require.Equal(t, http.StatusSeeOther, resp.status)
	assert.Equal(t, "/dash/hooks/x", resp.header.Get("Location"))
	cookies := (&http.Response{Header: resp.header}).Cookies()
	require.Len(t, cookies, 1)
	c := cookies[0]
	assert.Equal(t, sessionCookie, c.Name)
	assert.True(t, c.HttpOnly)
	assert.Equal(t, http.SameSiteStrictMode, c.SameSite)
	assert.Equal(t, "/dash/", c.Path)
	assert.Equal(t, int(SessionLifetime.Seconds()), c.MaxAge)
	assert.False(t, c.Secure, "plain HTTP: a Secure cookie would never come back")
	assert.NotContains(t, c.Value, token)
	assert.NotContains(t, c.Value, strings.ToLower(token[:16]))

	resp = f.do(t, request{path: "/dash/", session: c.Value})
	assert.Equal(t, http.StatusOK, resp.status)
	assert.Contains(t, resp.body, "Log out")

	tampered := c.Value[:len(c.Value)-2] + "AA"
	exp, rest, _ := strings.Cut(c.Value, ".")
	later := exp + "0." + rest // a later expiry under the old MAC
	other := newSessions("another-token-another-token-another", f.clock.Now).issue()
	for name, v := range map[string]string{"tampered": tampered, "later expiry": later, "another token's": other, "garbage": "x.y"} {
		resp = f.do(t, request{path: "/dash/", session: v})
		assert.Equal(t, http.StatusSeeOther, resp.status, name)
	}

	for _, next := range []string{"//evil.example/", "https://evil.example/", "/hooks", "/dash/\\evil"} {
		resp = f.do(t, request{method: http.MethodPost, path: loginPath, body: url.Values{"token": {token}, "next": {next}}.Encode(),
			header: withHeader(formType, "Origin", f.origin())})
		assert.Equal(t, "/dash/", resp.header.Get("Location"), "next %q stays on the dashboard", next)
	}

	f.clock.Advance(SessionLifetime)
	resp = f.do(t, request{path: "/dash/", session: c.Value})
	assert.Equal(t, http.StatusSeeOther, resp.status, "an expired session opens nothing")

	resp = f.do(t, request{path: "/dash/", header: bearer})
	assert.Equal(t, http.StatusOK, resp.status, "the bearer token opens the pages too")
	assert.NotContains(t, resp.body, "Log out")
}

// TestDashboardFormsRefuseCrossSiteRequests: a dashboard form POST needs the
// session's CSRF token and proof that it came from the listener's own pages
// (Origin, or Sec-Fetch-Site: same-origin); the JSON API never takes a form
// nor a session cookie.
func TestDashboardFormsRefuseCrossSiteRequests(t *testing.T) {
	f := newFixture(t)
	h := mustCreate(t, f.hooks, hooks.Hook{UserID: alice, Name: "a", URL: "https://a.example/x", On: []string{webhook.Note}, Active: true})
	session := f.login(t)
	path := "/dash/hooks/" + h.ID + "/active"
	good := url.Values{"active": {"false"}, csrfField: {f.admin.sessions.csrf(session)}}.Encode()
	tests := []struct {
		name    string
		req     request
		status  int
		changed bool
	}{
		{"no CSRF token", request{body: "active=false", header: withHeader(formType, "Origin", f.origin()), session: session}, http.StatusForbidden, false},
		{"a wrong CSRF token", request{body: "active=false&csrf=x", header: withHeader(formType, "Origin", f.origin()), session: session}, http.StatusForbidden, false},
		{"another session's CSRF token", request{body: url.Values{"active": {"false"}, csrfField: {f.admin.sessions.csrf(f.admin.sessions.issue())}}.Encode(),
			header: withHeader(formType, "Origin", f.origin()), session: session}, http.StatusForbidden, false},
		{"no Origin and no Sec-Fetch-Site", request{body: good, header: formType, session: session}, http.StatusForbidden, false},
		{"Sec-Fetch-Site: cross-site", request{body: good, header: withHeader(formType, "Sec-Fetch-Site", "cross-site"), session: session}, http.StatusForbidden, false},
		{"a foreign Origin", request{body: good, header: withHeader(formType, "Origin", "http://evil.example"), session: session}, http.StatusForbidden, false},
		{"JSON instead of a form", request{body: `{"active":false}`, header: map[string]string{"Content-Type": "application/json", "Origin": f.origin()}, session: session}, http.StatusUnsupportedMediaType, false},
		{"no session", request{body: good, header: withHeader(formType, "Origin", f.origin())}, http.StatusSeeOther, false},
		{"the session's form from the dashboard", request{body: good, header: withHeader(formType, "Origin", f.origin()), session: session}, http.StatusSeeOther, true},
		{"Sec-Fetch-Site: same-origin without Origin", request{body: good, header: withHeader(formType, "Sec-Fetch-Site", "same-origin"), session: session}, http.StatusSeeOther, true},
		{"a bearer needs no CSRF token", request{body: "active=false", header: withHeader(formType, "Authorization", "Bearer "+token, "Origin", f.origin())}, http.StatusSeeOther, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			_, err := f.hooks.SetActive(h.ID, true)
			require.NoError(t, err)
			tt.req.method, tt.req.path = http.MethodPost, path
			resp := f.do(t, tt.req)
			assert.Equal(t, tt.status, resp.status, resp.body)
			got, err := f.hooks.Get(h.ID)
			require.NoError(t, err)
			assert.Equal(t, !tt.changed, got.Active)
		})
	}

	t.Run("the JSON API takes no form and no session", func(t *testing.T) {
		resp := f.do(t, request{method: http.MethodPost, path: "/deliveries", body: "webhookId=h1", session: session,
			header: withHeader(formType, "Origin", f.origin())})
		assert.Equal(t, http.StatusUnauthorized, resp.status)
		resp = f.do(t, request{path: "/hooks", session: session})
		assert.Equal(t, http.StatusUnauthorized, resp.status)
		resp = f.do(t, request{method: http.MethodPost, path: "/deliveries", body: "webhookId=h1", header: withHeader(formType, "Authorization", "Bearer "+token)})
		assert.Equal(t, http.StatusUnsupportedMediaType, resp.status)
	})
}

// rowOrder returns the hook ids in the order the overview's table lists them.
func rowOrder(body string) []string {
	var ids []string
	for _, m := range regexp.MustCompile(`data-hook="([^"]+)"`).FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
	}
	return ids
}

// TestDashboardOverview: the queue's figures are the registry's; the hooks
// table lists failing hooks first, the longest failing first, and shows
// owner, host, events, state and dead letters, never a secret or a URL's
// path; the other orders work.
func TestDashboardOverview(t *testing.T) {
	f := newFixture(t)
	healthy := mustCreate(t, f.hooks, hooks.Hook{UserID: alice, Name: "healthy", URL: "https://ok.example/p4th-secret", Secret: "sekrit-value", On: []string{webhook.Note}, Active: true})
	recent := mustCreate(t, f.hooks, hooks.Hook{UserID: bob, Name: "recent", URL: "https://recent.example:8443/x", On: []string{webhook.Follow, webhook.Note}, Active: true})
	long := mustCreate(t, f.hooks, hooks.Hook{UserID: carol, Name: "long", URL: "https://long.example/x", On: []string{webhook.Mention}, Active: true})
	t0 := f.clock.Now().Add(-200 * time.Hour)
	f.hooks.Attempted(healthy.ID, t0, false)
	f.hooks.Attempted(recent.ID, t0.Add(100*time.Hour), true)
	f.hooks.Attempted(long.ID, t0, true)
	require.NotEmpty(t, f.hooks.Attempted(long.ID, t0.Add(130*time.Hour), true))
	f.hooks.RecordAttempts(map[string]webhook.LatestAttempt{
		healthy.ID: {At: t0, Status: 200}, recent.ID: {At: t0.Add(100 * time.Hour), Status: 503}, long.ID: {At: t0.Add(130 * time.Hour), Status: 1},
	})
	f.queue.dead = map[string]int{recent.ID: 7, long.ID: 2}
	f.metrics.ready.Set(12)
	f.metrics.leased.Set(3)
	f.metrics.dead.Set(9)
	f.metrics.held.Set(1)
	f.metrics.oldest.Set(95)

	resp := f.do(t, request{path: "/dash/", header: bearer})
	require.Equal(t, http.StatusOK, resp.status)
	for id, want := range map[string]string{"q-ready": "12", "q-leased": "3", "q-dead": "9", "q-held": "1", "q-oldest": "1m35s"} {
		assert.Regexp(t, `id="`+id+`">`+regexp.QuoteMeta(want)+`<`, resp.body)
	}
	assert.Equal(t, []string{long.ID, recent.ID, healthy.ID}, rowOrder(resp.body), "failing first, the longest failing first")
	assert.Contains(t, resp.body, "auto-disabled")
	assert.Contains(t, resp.body, "recent.example:8443")
	assert.Contains(t, resp.body, "follow, note")
	assert.Contains(t, resp.body, "Private admin listener")
	assert.NotContains(t, resp.body, "p4th-secret")
	assert.NotContains(t, resp.body, "sekrit-value")
	assert.Equal(t, csp, resp.header.Get("Content-Security-Policy"))
	assert.Equal(t, "DENY", resp.header.Get("X-Frame-Options"))
	assert.Equal(t, "no-store", resp.header.Get("Cache-Control"))

	resp = f.do(t, request{path: "/dash/?sort=dead", header: bearer})
	assert.Equal(t, []string{recent.ID, long.ID, healthy.ID}, rowOrder(resp.body))
	resp = f.do(t, request{path: "/dash/?sort=owner", header: bearer})
	assert.Equal(t, []string{carol, alice, bob}, []string{long.UserID, healthy.UserID, recent.UserID}, "precondition: owner order")
	assert.Equal(t, []string{long.ID, healthy.ID, recent.ID}, rowOrder(resp.body))
	resp = f.do(t, request{path: "/dash/?sort=recent", header: bearer})
	assert.Equal(t, []string{long.ID, recent.ID, healthy.ID}, rowOrder(resp.body))
	resp = f.do(t, request{path: "/dash/?sort=%3Cscript%3E", header: bearer})
	assert.Equal(t, []string{long.ID, recent.ID, healthy.ID}, rowOrder(resp.body), "an unknown order is the default")
	assert.NotContains(t, resp.body, "<script>")
}

// TestDashboardHookPage: one hook's deliveries with their attempts (status,
// duration, error, the receiver's answer with URLs masked), a redeliver
// button on dead letters that redelivers, and activate/deactivate.
func TestDashboardHookPage(t *testing.T) {
	f := newFixture(t)
	h := mustCreate(t, f.hooks, hooks.Hook{UserID: alice, Name: "a", URL: "https://a.example/p4th", Secret: "sekrit-value", On: []string{webhook.Note}, Active: true})
	at := f.clock.Now().Add(-time.Hour)
	f.queue.ds = []webhook.Delivery{
		{ID: "d2", HookID: h.ID, UserID: alice, Type: "note", CreatedAt: at, State: webhook.StateDead, Attempts: []webhook.Attempt{
			{At: at, Status: 1, Duration: 10000, Error: "Post \"https://a.example/p4th\": context deadline exceeded"},
			{At: at.Add(time.Minute), Status: 502, Duration: 42, Error: "HTTP 502 Bad Gateway", Response: "<h1>bad gateway</h1>"},
		}},
		{ID: "d1", HookID: h.ID, UserID: alice, Type: "note", CreatedAt: at, State: webhook.StateDelivered, Attempts: []webhook.Attempt{{At: at, Status: 200, Duration: 7}}},
	}
	f.queue.dead = map[string]int{h.ID: 1}
	session := f.login(t)

	resp := f.do(t, request{path: "/dash/hooks/" + h.ID, session: session})
	require.Equal(t, http.StatusOK, resp.status)
	body := resp.body
	assert.Contains(t, body, "502 Bad Gateway")
	assert.Contains(t, body, "no answer")
	assert.Contains(t, body, "42ms")
	assert.Contains(t, body, "10s")
	assert.Contains(t, body, "&lt;h1&gt;bad gateway&lt;/h1&gt;", "the receiver's answer is escaped")
	assert.Contains(t, body, `https://a.example/…`)
	assert.NotContains(t, body, "p4th")
	assert.NotContains(t, body, "sekrit-value")
	assert.Equal(t, 1, strings.Count(body, `name="delivery" value="d2"`), "a redeliver button on the dead letter only")
	assert.Contains(t, body, "Redeliver all 1 dead letters")
	assert.Contains(t, body, `value="`+f.admin.sessions.csrf(session)+`"`)

	resp = f.form(t, session, "/dash/hooks/"+h.ID+"/redeliver", url.Values{"delivery": {"d2"}})
	require.Equal(t, http.StatusSeeOther, resp.status, resp.body)
	assert.Equal(t, "/dash/hooks/"+h.ID+"?done=redelivered", resp.header.Get("Location"))
	resp = f.form(t, session, "/dash/hooks/"+h.ID+"/redeliver", url.Values{})
	assert.Equal(t, "/dash/hooks/"+h.ID+"?done=redelivering", resp.header.Get("Location"))
	resp = f.form(t, session, "/dash/hooks/"+h.ID+"/redeliver", url.Values{"delivery": {"nope"}})
	assert.Equal(t, "/dash/hooks/"+h.ID+"?done=missing", resp.header.Get("Location"))
	assert.Equal(t, []string{h.ID + "/d2", h.ID + "/"}, f.queue.redeliveries())
	resp = f.do(t, request{path: "/dash/hooks/" + h.ID + "?done=redelivered", session: session})
	assert.Contains(t, resp.body, "queued again")

	resp = f.form(t, session, "/dash/hooks/"+h.ID+"/active", url.Values{"active": {"false"}})
	assert.Equal(t, "/dash/hooks/"+h.ID+"?done=deactivated", resp.header.Get("Location"))
	got, err := f.hooks.Get(h.ID)
	require.NoError(t, err)
	assert.False(t, got.Active)
	resp = f.do(t, request{path: "/dash/hooks/" + h.ID, session: session})
	assert.Contains(t, resp.body, ">Activate</button>")
	resp = f.form(t, session, "/dash/hooks/"+h.ID+"/active", url.Values{"active": {"true"}})
	assert.Equal(t, "/dash/hooks/"+h.ID+"?done=activated", resp.header.Get("Location"))
	got, err = f.hooks.Get(h.ID)
	require.NoError(t, err)
	assert.True(t, got.Active)
	resp = f.form(t, session, "/dash/hooks/"+h.ID+"/active", url.Values{"active": {"maybe"}})
	assert.Equal(t, http.StatusBadRequest, resp.status)

	resp = f.do(t, request{path: "/dash/hooks/au1nobody0000000", session: session})
	assert.Equal(t, http.StatusNotFound, resp.status)
	assert.Contains(t, resp.body, "no hook with that id")
}

// TestRates: the rates are the counters' growth over the window, from the
// oldest kept sample inside it, per second.
func TestRates(t *testing.T) {
	t0 := time.Date(2026, 3, 6, 12, 0, 0, 0, time.UTC)
	var kept []sample
	for i := range 13 {
		kept = append(kept, sample{at: t0.Add(time.Duration(i) * 30 * time.Second), delivered: float64(i * 60), failed: float64(i * 3), tapped: float64(i * 300)})
	}
	now := sample{at: t0.Add(6*time.Minute + 10*time.Second), delivered: 12*60 + 20, failed: 36, tapped: 3600}
	r := rateOver(kept, now, time.Minute)
	assert.Equal(t, 40*time.Second, r.Window)
	assert.InDelta(t, (12*60+20-11*60)/40.0, r.Delivered, 1e-9)
	assert.InDelta(t, 3/40.0, r.Failed, 1e-9)
	r = rateOver(kept, now, 5*time.Minute)
	assert.Equal(t, 4*time.Minute+40*time.Second, r.Window)
	assert.InDelta(t, (740-180)/280.0, r.Delivered, 1e-9)
	assert.Equal(t, rates{}, rateOver(nil, now, time.Minute), "no samples, no rates")

	c := chartOf(kept)
	assert.Equal(t, 2.0, c.Max)
	assert.Equal(t, 6*time.Minute, c.Span)
	assert.Len(t, strings.Fields(c.Delivered), 12)
}
