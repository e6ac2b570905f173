package queue

import (
	"bufio"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// captured is one delivery real Ocean sent (deliveries.jsonl).
type captured struct {
	Headers [][2]string `json:"headers"`
	BodyRaw string      `json:"bodyRaw"`
	Body    struct {
		Server    string          `json:"server"`
		HookID    string          `json:"hookId"`
		UserID    string          `json:"userId"`
		EventID   string          `json:"eventId"`
		CreatedAt int64           `json:"createdAt"`
		Type      string          `json:"type"`
		Body      json.RawMessage `json:"body"`
	} `json:"body"`
}

func loadCapture(t *testing.T) []captured {
	t.Helper()
	f, err := os.Open("../../shared/fixtures/ocean-capture/deliveries.jsonl")
	require.NoError(t, err)
	t.Cleanup(func() { _ = f.Close() })
	var out []captured
	sc := bufio.NewScanner(f)
	sc.Buffer(nil, 1<<22)
	for sc.Scan() {
		var c captured
		require.NoError(t, json.Unmarshal(sc.Bytes(), &c))
		out = append(out, c)
	}
	require.NoError(t, sc.Err())
	require.NotEmpty(t, out)
	return out
}

func TestDeliveryMatchesOceanCapture(t *testing.T) {
	caps := loadCapture(t)
	for _, prefix := range []string{"Ocean", "Misskey"} {
		t.Run(prefix, func(t *testing.T) {
			for _, c := range []captured{caps[0], caps[1]} {
				secret := ""
				for _, h := range c.Headers {
					if strings.EqualFold(h[0], "x-misskey-hook-secret") {
						secret = h[1]
					}
				}
				clock := newFakeClock()
				clock.now = time.UnixMilli(c.Body.CreatedAt)
				rc := newReceiver(t, always(http.StatusOK))
				hooks := newFakeHooks()
				hooks.add(c.Body.HookID, c.Body.UserID, rc.URL+"/hook", secret, c.Body.Type)
				opts := testOptions(clock)
				opts.ServerURL = c.Body.Server + "/"
				if prefix == "Misskey" {
					opts.HeaderPrefix = "Misskey"
				}
				q := openQueue(t, openDB(t, ""), hooks, opts)
				runQueue(t, q)
				require.Equal(t, 1, enqueue(t, q, event(c.Body.UserID, c.Body.Type, string(c.Body.Body))))
				require.Eventually(t, func() bool { return rc.count() == 1 }, 5*time.Second, 5*time.Millisecond)
				got := rc.got()[0]

				// The body is Ocean's byte for byte, keys in order, but for the
				// eventId, which is ours.
				id := got.eventID()
				assert.Len(t, id, 36)
				assert.Equal(t, c.BodyRaw, strings.Replace(string(got.Body), id, c.Body.EventID, 1))

				// Every header Ocean's client sent is there (the connection's own
				// Host/Connection aside), with the prefix of our choice.
				lower := strings.ToLower(prefix)
				want := map[string]string{}
				for _, h := range c.Headers {
					name := strings.ToLower(h[0])
					if name == "host" || name == "connection" {
						continue
					}
					want[strings.Replace(name, "x-misskey-", "x-"+lower+"-", 1)] = h[1]
				}
				for name := range want {
					assert.Contains(t, got.Header, http.CanonicalHeaderKey(name), name)
				}
				for name := range got.Header {
					_, ok := want[strings.ToLower(name)]
					assert.True(t, ok || strings.HasPrefix(strings.ToLower(name), "webhook-"), "unexpected header %s", name)
				}
				for _, name := range []string{"content-type", "x-" + lower + "-hook-id", "x-" + lower + "-hook-secret", "x-" + lower + "-host", "accept"} {
					assert.Equal(t, want[name], got.Header.Get(name), name)
				}
				assert.Equal(t, prefix+"-Hooks", got.Header.Get("User-Agent"))
			}
		})
	}
}

// verifySignature checks a Standard Webhooks v1 signature keyed by key,
// written from the scheme's description rather than from sign().
func verifySignature(key string, h http.Header, body []byte, now time.Time) bool {
	id, ts := h.Get("webhook-id"), h.Get("webhook-timestamp")
	sec, err := strconv.ParseInt(ts, 10, 64)
	if err != nil || id == "" || now.Sub(time.Unix(sec, 0)).Abs() > 5*time.Minute {
		return false
	}
	mac := hmac.New(sha256.New, []byte(key))
	mac.Write([]byte(id + "." + ts + "." + string(body)))
	expected := mac.Sum(nil)
	for _, sig := range strings.Fields(h.Get("webhook-signature")) {
		version, b64, ok := strings.Cut(sig, ",")
		if !ok || version != "v1" {
			continue
		}
		raw, err := base64.StdEncoding.DecodeString(b64)
		if err == nil && hmac.Equal(raw, expected) {
			return true
		}
	}
	return false
}

func TestSignature(t *testing.T) {
	clock := newFakeClock()
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("hsigned", "u1", rc.URL, "s3cr3t-ß", "note")
	hooks.add("hplain", "u1", rc.URL, "", "note")
	// Standard Webhooks secrets: the key is the base64 after "whsec_"; a
	// secret that only looks like one is used as it is.
	whsecKey := "\x00k\xffey-bytes"
	whsec := "whsec_" + base64.StdEncoding.EncodeToString([]byte(whsecKey))
	hooks.add("hwhsec", "u1", rc.URL, whsec, "note")
	hooks.add("hnotb64", "u1", rc.URL, "whsec_not base64!", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
	runQueue(t, q)
	require.Equal(t, 4, enqueue(t, q, event("u1", "note", `{"note":{"text":"<b>&</b>"}}`)))
	require.Eventually(t, func() bool { return rc.count() == 4 }, 5*time.Second, 5*time.Millisecond)

	for _, h := range rc.got() {
		switch h.Header.Get("X-Ocean-Hook-Id") {
		case "hsigned":
			assert.Equal(t, h.eventID(), h.Header.Get("webhook-id"))
			assert.Equal(t, strconv.FormatInt(clock.Now().Unix(), 10), h.Header.Get("webhook-timestamp"))
			assert.True(t, verifySignature("s3cr3t-ß", h.Header, h.Body, clock.Now()), "signature verifies")
			tampered := []byte(strings.Replace(string(h.Body), `"note"`, `"renote"`, 1))
			assert.False(t, verifySignature("s3cr3t-ß", h.Header, tampered, clock.Now()), "tampered body is rejected")
			assert.False(t, verifySignature("other", h.Header, h.Body, clock.Now()), "wrong secret is rejected")
			assert.Contains(t, string(h.Body), `"text":"<b>&</b>"`, "HTML characters are not escaped")
		case "hwhsec":
			assert.True(t, verifySignature(whsecKey, h.Header, h.Body, clock.Now()), "signed with the decoded key")
			assert.False(t, verifySignature(whsec, h.Header, h.Body, clock.Now()), "not with the secret's text")
			assert.Equal(t, whsec, h.Header.Get("X-Ocean-Hook-Secret"), "the secret header carries it as it is")
		case "hnotb64":
			assert.True(t, verifySignature("whsec_not base64!", h.Header, h.Body, clock.Now()))
		case "hplain":
			assert.Empty(t, h.Header.Get("webhook-signature"))
			assert.Empty(t, h.Header.Get("webhook-id"))
			assert.Contains(t, h.Header, "X-Ocean-Hook-Secret", "an empty secret is still sent")
			assert.Equal(t, "", h.Header.Get("X-Ocean-Hook-Secret"))
		default:
			t.Errorf("unexpected hook %q", h.Header.Get("X-Ocean-Hook-Id"))
		}
	}
}
