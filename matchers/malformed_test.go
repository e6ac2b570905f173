package matchers

import (
	"context"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/proxy"
)

// Every endpoint whose 2xx answer is a JSON object gets no event from an
// answer that is not one (or names another user than the call did): no
// panic, no Ocean request after the answer, the response untouched, and a
// failure counted.
func TestMalformedAnswers(t *testing.T) {
	answers := map[string]string{
		"truncated JSON":  `{"id":"` + bob + `","name":`,
		"non-JSON 200":    `<html><body>502 Bad Gateway</body></html>`,
		"empty body":      ``,
		"JSON null":       `null`,
		"array":           `[{"id":"` + bob + `"}]`,
		"string":          `"` + bob + `"`,
		"number":          `42`,
		"invalid UTF-8":   "{\"id\":\"\xff\xfe\"}",
		"another user id": `{"id":"` + carol + `"}`,
	}
	for _, r := range table {
		if r.answers != answersObject {
			continue
		}
		for name, answer := range answers {
			if name == "another user id" && (r.endpoint == "notes/create" || r.endpoint == "following/invalidate") {
				continue // their answers are not the request's user
			}
			t.Run(r.endpoint+"/"+name, func(t *testing.T) {
				h := newHarness(t, allHooks(alice, bob))
				h.oc.answer("users/relation", "userId", bob, rel(bob, true, true, false, false))
				h.oc.answer("users/show", "userId", bob, userLiteOf(bob))
				h.oc.answer("users/show", "userId", alice, userLiteOf(alice))
				obs := &proxy.Observation{Endpoint: r.endpoint, Token: "tok-alice", Request: []byte(`{"userId":"` + bob + `"}`)}
				if r.before != nil {
					h.e.before(context.Background(), &r, obs)
				}
				before := len(h.oc.calls)
				obs.Status, obs.Response = 200, []byte(answer)

				var err error
				require.NotPanics(t, func() { err = h.e.Observe(context.Background(), obs) })
				assert.Error(t, err)
				assert.Equal(t, answer, string(obs.Response))
				assert.Empty(t, h.sink.batches)
				assert.Len(t, h.oc.calls, before, "no read after a malformed answer")
				assert.Equal(t, 1.0, h.failures(r.endpoint, "malformed"))
			})
		}
	}
}

// A 204 has no body; whatever bytes come with it are not looked at.
func TestNoContentBodyIgnored(t *testing.T) {
	h := newHarness(t, allHooks(alice, bob))
	h.oc.answer("users/relation", "userId", bob, rel(bob, false, true, false, false))
	h.oc.answer("users/show", "userId", alice, userLiteOf(alice))
	_, err := h.do(t, "following/requests/reject", "tok-alice", `{"userId":"`+bob+`"}`, 204, `<garbage`)
	require.NoError(t, err)
	assert.Len(t, h.sink.events(), 1)
}

// Requests the rule cannot read are malformed calls, not panics.
func TestMalformedRequests(t *testing.T) {
	requests := map[string]string{
		"not JSON":        `userId=` + bob,
		"userId a number": `{"userId":5}`,
		"no userId":       `{}`,
		"truncated":       `{"userId":"`,
		"empty":           ``,
	}
	for _, endpoint := range []string{"following/invalidate", "following/requests/accept", "following/requests/reject", "notes/reactions/create"} {
		for name, req := range requests {
			t.Run(endpoint+"/"+name, func(t *testing.T) {
				h := newHarness(t, allHooks(alice, bob))
				var err error
				require.NotPanics(t, func() {
					_, err = h.do(t, endpoint, "tok-alice", req, 204, "")
				})
				assert.Error(t, err)
				assert.Equal(t, 1.0, h.failures(endpoint, "malformed"))
				assert.Empty(t, h.sink.batches)
				assert.Empty(t, h.oc.calls)
			})
		}
	}
	t.Run("blocking/create without a userId reads nothing", func(t *testing.T) {
		h := newHarness(t, allHooks(alice, bob))
		_, err := h.do(t, "blocking/create", "tok-alice", `{}`, 200, userLiteOf(bob))
		require.NoError(t, err)
		assert.Empty(t, h.sink.batches)
		assert.Empty(t, h.oc.calls)
		assert.Zero(t, h.oc.meCalls)
	})
}
