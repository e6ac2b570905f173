package e2e

import (
	"encoding/json"
	"net/http"
	"reflect"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"
	"github.com/tidwall/sjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// capturedServer is the public URL of the Ocean server that recorded the
// capture; the sidecar is configured with it so `server` and X-Ocean-Host
// compare exactly.
const (
	capturedServer   = "http://127.0.0.1:61812"
	capturedReceiver = "http://127.0.0.1:61899"
	capturedSecret   = "testsecret"
)

// callerOf names the token of the user who made a captured call, from its label.
func callerOf(label string) string {
	switch {
	case strings.HasPrefix(label, "signup"), label == "create first admin":
		return ""
	case strings.HasPrefix(label, "A "), strings.HasSuffix(label, "as alice"),
		strings.HasPrefix(label, "list A "):
		return oceantest.TokenAlice
	case strings.HasPrefix(label, "B "), strings.HasSuffix(label, "as bob"),
		strings.HasPrefix(label, "list B "), strings.HasPrefix(label, "show B "),
		strings.HasSuffix(label, "(B)"):
		return oceantest.TokenBob
	default: // "admin …", "i as admin", "list admin …", "… (admin)"
		return oceantest.TokenAdmin
	}
}

var uuidV4 = regexp.MustCompile(`^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$`)

// TestCaptureReplay replays every recorded API call through the real sidecar
// in front of a fake Ocean answering from the same recording, with a real
// receiver behind it, and checks:
//   - every forwarded answer reaches the client byte for byte;
//   - the sidecar's own /api/i/webhooks/* answers equal Ocean's, hook ids and
//     delivery times aside;
//   - the receiver gets the same deliveries as deliveries.jsonl: same event
//     types to the same hooks, as a multiset, with equal envelopes and bodies
//     (fields ignored: listed and justified in normalize), and our
//     documented additions (reaction events) on top;
//   - every delivery carries Ocean's headers with our prefix and a valid
//     Standard Webhooks signature.
func TestCaptureReplay(t *testing.T) {
	calls, err := oceantest.LoadCalls()
	require.NoError(t, err)
	want, err := oceantest.LoadDeliveries()
	require.NoError(t, err)

	fake := oceantest.New(t)
	rc := newReceiver(t)
	rc.setFail(func(*http.Request) int { return 0 })
	cfg := baseConfig(t, fake.URL, t.TempDir())
	cfg.PublicURL = capturedServer
	sc := startSidecar(t, cfg)

	ourID := map[string]string{}      // captured hook id → ours
	capturedID := map[string]string{} // ours → captured
	rewrite := func(v any) any {
		switch x := v.(type) {
		case string:
			if id, ok := ourID[x]; ok {
				return id
			}
			return strings.Replace(x, capturedReceiver, rc.URL, 1)
		case map[string]any:
			out := map[string]any{}
			for k, e := range x {
				out[k] = e
				if k == "url" || k == "webhookId" {
					out[k] = strings.Replace(e.(string), capturedReceiver, rc.URL, 1)
					if id, ok := ourID[e.(string)]; ok {
						out[k] = id
					}
				}
			}
			return out
		}
		return v
	}

	// Deliveries the capture's "after deliveries" listings saw: Ocean's 18
	// plus the reaction event we send and Ocean does not (product.md §3).
	const beforeTests = 19

	for _, c := range calls {
		params := map[string]any{}
		for k, v := range c.Request {
			if k != "i" {
				params[k] = rewrite(v)
			}
		}
		if strings.HasSuffix(c.Label, "after deliveries") {
			require.Eventually(t, func() bool { return len(rc.deliveries()) >= beforeTests },
				20*time.Second, 20*time.Millisecond, "deliveries before %q", c.Label)
		}
		status, body := call(t, sc.url(), c.Endpoint, callerOf(c.Label), params, false)
		require.Equal(t, c.Status, status, "%s: %s", c.Label, body)
		if strings.HasSuffix(c.Label, "after deliveries") && c.Endpoint == "i/webhooks/list" {
			// latestSentAt/latestStatus follow an attempt in the queue's next
			// bookkeeping batch, as Ocean's follow its job: wait for them.
			want := normalizeHooks(t, c.Response, nil)
			require.Eventually(t, func() bool {
				status, body = call(t, sc.url(), c.Endpoint, callerOf(c.Label), params, false)
				got := strings.ReplaceAll(string(body), rc.URL, capturedReceiver)
				return status == c.Status && jsonEqual(want, normalizeHooks(t, []byte(got), capturedID))
			}, 20*time.Second, 20*time.Millisecond, "%s: the latest attempts are recorded", c.Label)
		}

		if !strings.HasPrefix(c.Endpoint, "i/webhooks/") {
			assert.Equal(t, string(c.Response), string(body), "%s: forwarded answer changed", c.Label)
			continue
		}
		if c.Endpoint == "i/webhooks/create" && status == http.StatusOK {
			capID, ours := gjson.GetBytes(c.Response, "id").String(), gjson.GetBytes(body, "id").String()
			require.NotEmpty(t, ours)
			ourID[capID], capturedID[ours] = ours, capID
		}
		body = []byte(strings.ReplaceAll(string(body), rc.URL, capturedReceiver))
		assert.JSONEq(t, normalizeHooks(t, c.Response, nil), normalizeHooks(t, body, capturedID),
			"%s: the sidecar's answer differs from Ocean's", c.Label)
	}

	// Every delivery, including the test send to the override URL.
	require.Eventually(t, func() bool { return len(rc.deliveries()) >= beforeTests+1 },
		20*time.Second, 20*time.Millisecond)
	time.Sleep(200 * time.Millisecond) // let a stray extra delivery show itself
	got := rc.deliveries()
	require.Len(t, got, beforeTests+1, "one delivery per event, no duplicates")

	var wantKeys, gotKeys []string
	for _, d := range want {
		wantKeys = append(wantKeys, d.Path+" "+normalize(t, []byte(d.BodyRaw), nil))
	}
	var extra []received
	for _, d := range got {
		require.True(t, verifySignature(d.Header, d.Body, capturedSecret), "signature of %s", d.Body)
		assertOceanHeaders(t, d, capturedID)
		typ := gjson.GetBytes(d.Body, "type").String()
		if typ == "reaction" {
			extra = append(extra, d)
			continue
		}
		gotKeys = append(gotKeys, d.Path+" "+normalize(t, d.Body, capturedID))
	}
	sort.Strings(wantKeys)
	sort.Strings(gotKeys)
	require.Equal(t, len(wantKeys), len(gotKeys))
	for i := range wantKeys {
		assert.JSONEq(t, after(wantKeys[i]), after(gotKeys[i]), "delivery %d", i)
		assert.Equal(t, before(wantKeys[i]), before(gotKeys[i]))
	}

	// Our additions: the reaction alice left on bob's note, and the test send.
	require.Len(t, extra, 2)
	sort.Slice(extra, func(i, j int) bool { return extra[i].Path < extra[j].Path })
	real, test := extra[0], extra[1]
	assert.Equal(t, "/hook/bob", real.Path)
	assert.Equal(t, oceantest.BobID, gjson.GetBytes(real.Body, "userId").String())
	assert.Equal(t, "\U0001F44D", gjson.GetBytes(real.Body, "body.reaction").String())
	assert.Equal(t, "au1lbcu39jzs000g", gjson.GetBytes(real.Body, "body.note.id").String())
	assert.Equal(t, oceantest.AliceID, gjson.GetBytes(real.Body, "body.user.id").String())
	assert.EqualValues(t, 1, gjson.GetBytes(real.Body, "body.note.reactionCount").Int())
	assert.False(t, strings.Contains(string(real.Body), "myReaction"), "viewer-only field leaked")
	assert.Equal(t, "/hook/bob-TEST", test.Path)
	assert.Equal(t, "reaction", gjson.GetBytes(test.Body, "type").String())
	assert.True(t, gjson.GetBytes(test.Body, "body.note").IsObject())
}

// normalize returns an envelope comparable across runs. Fields removed, and why:
//   - eventId: a fresh UUID v4 per hook per event (checked for format here);
//   - createdAt: the enqueue time in ms (checked to be a positive number);
//   - hookId: ours are generated; mapped back to the captured hook's id;
//   - body.user.updatedAt: Ocean stamps a user's updatedAt a few ms after
//     their note is stored, the fake uses the note's own time;
//   - body.user.followersCount / followingCount of an `unfollow`: Ocean packs
//     the user right after deleting the follow but before its counters are
//     updated, so it shows a stale count (ocean-webhooks.md §1.7); we read a
//     fresh view after the call. Counters of every other event are compared.
func normalize(t *testing.T, raw []byte, capturedID map[string]string) string {
	t.Helper()
	require.True(t, gjson.ValidBytes(raw), "delivery body is not JSON: %s", raw)
	env := gjson.ParseBytes(raw)
	require.Regexp(t, uuidV4, env.Get("eventId").String())
	require.Positive(t, env.Get("createdAt").Int())
	out := string(raw)
	var err error
	for _, k := range []string{"eventId", "createdAt", "body.user.updatedAt"} {
		out, err = sjson.Delete(out, k)
		require.NoError(t, err)
	}
	if env.Get("type").String() == "unfollow" {
		for _, k := range []string{"body.user.followersCount", "body.user.followingCount"} {
			out, err = sjson.Delete(out, k)
			require.NoError(t, err)
		}
	}
	if id, ok := capturedID[env.Get("hookId").String()]; ok {
		out, err = sjson.Set(out, "hookId", id)
		require.NoError(t, err)
	}
	return out
}

// normalizeHooks makes a management answer comparable: our hook ids mapped
// back to the captured ones (the caller mapped the receiver URL back),
// latestSentAt reduced to whether it is set (it is the time of the last
// delivery, which differs per run), and the occurrence id of an internal
// error removed (Ocean makes a fresh one per error: error.info.id).
func normalizeHooks(t *testing.T, raw []byte, capturedID map[string]string) string {
	t.Helper()
	if len(raw) == 0 {
		return "null"
	}
	if gjson.GetBytes(raw, "error.code").String() == "INTERNAL_ERROR" {
		out, err := sjson.DeleteBytes(raw, "error.info.id")
		require.NoError(t, err)
		return string(out)
	}
	v := gjson.ParseBytes(raw)
	fix := func(h gjson.Result) any {
		m, ok := h.Value().(map[string]any)
		if !ok {
			return h.Value()
		}
		if id, ok := capturedID[h.Get("id").String()]; ok {
			m["id"] = id
		}
		if _, ok := m["latestSentAt"]; ok {
			m["latestSentAt"] = h.Get("latestSentAt").Type != gjson.Null
		}
		return m
	}
	var out any
	if v.IsArray() {
		list := []any{}
		for _, h := range v.Array() {
			list = append(list, fix(h))
		}
		out = list
	} else {
		out = fix(v)
	}
	b, err := json.Marshal(out)
	require.NoError(t, err)
	return string(b)
}

// assertOceanHeaders checks that a delivery carries the headers Ocean sent in
// the capture, under our Ocean prefix.
func assertOceanHeaders(t *testing.T, d received, capturedID map[string]string) {
	t.Helper()
	assert.Equal(t, "Ocean-Hooks", d.Header.Get("User-Agent"))
	assert.Equal(t, "application/json", d.Header.Get("Content-Type"))
	assert.Equal(t, "127.0.0.1:61812", d.Header.Get("X-Ocean-Host"))
	assert.Equal(t, capturedSecret, d.Header.Get("X-Ocean-Hook-Secret"))
	hookID := gjson.GetBytes(d.Body, "hookId").String()
	assert.Equal(t, hookID, d.Header.Get("X-Ocean-Hook-Id"))
	if gjson.GetBytes(d.Body, "type").String() != "reaction" || !strings.HasSuffix(d.Path, "TEST") {
		assert.Contains(t, capturedID, hookID)
	}
	assert.Equal(t, gjson.GetBytes(d.Body, "eventId").String(), d.Header.Get("webhook-id"))
	for _, h := range []string{"X-Misskey-Host", "X-Misskey-Hook-Id", "X-Misskey-Hook-Secret"} {
		assert.Empty(t, d.Header.Get(h), h)
	}
}

func before(k string) string { p, _, _ := strings.Cut(k, " "); return p }
func after(k string) string  { _, s, _ := strings.Cut(k, " "); return s }

// jsonEqual reports whether a and b hold the same JSON value.
func jsonEqual(a, b string) bool {
	var x, y any
	return json.Unmarshal([]byte(a), &x) == nil && json.Unmarshal([]byte(b), &y) == nil && reflect.DeepEqual(x, y)
}
