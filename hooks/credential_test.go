package hooks

import (
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// TestCredentialAsOcean: the management API acts as the account Ocean would
// read from the call, and as no account when Ocean could read another.
func TestCredentialAsOcean(t *testing.T) {
	h := newHarness(t)
	bobs := h.create(oceantest.TokenBob, map[string]any{"name": "b", "url": "u", "on": []string{"note"}})
	alices := h.create(oceantest.TokenAlice, map[string]any{"name": "a", "url": "u", "on": []string{"note"}})
	bobList := string(marshal([]hookView{bobs}))
	aliceList := string(marshal([]hookView{alices}))

	cases := []struct {
		name   string
		auth   []string
		body   string
		status int
		want   string // the list answered, or the error code
	}{
		{name: "lower-case bearer is not Ocean's: i wins", auth: []string{"bearer " + oceantest.TokenAlice},
			body: `{"i":"` + oceantest.TokenBob + `"}`, status: 200, want: bobList},
		{name: "upper-case BEARER is not Ocean's: i wins", auth: []string{"BEARER " + oceantest.TokenAlice},
			body: `{"i":"` + oceantest.TokenBob + `"}`, status: 200, want: bobList},
		{name: "escaped key is i", body: `{"\u0069":"` + oceantest.TokenAlice + `"}`, status: 200, want: aliceList},
		{name: "i twice", body: `{"i":"` + oceantest.TokenAlice + `","i":"` + oceantest.TokenBob + `"}`,
			status: 401, want: "AUTHENTICATION_FAILED"},
		{name: "i twice, once escaped", body: `{"i":"` + oceantest.TokenAlice + `","\u0069":"` + oceantest.TokenBob + `"}`,
			status: 401, want: "AUTHENTICATION_FAILED"},
		{name: "two Authorization headers", auth: []string{"Bearer " + oceantest.TokenAlice, "Bearer " + oceantest.TokenBob},
			body: `{}`, status: 401, want: "AUTHENTICATION_FAILED"},
		{name: "two spaces after Bearer", auth: []string{"Bearer  " + oceantest.TokenAlice},
			body: `{}`, status: 401, want: "AUTHENTICATION_FAILED"},
		{name: "a token with a space inside", body: `{"i":"` + oceantest.TokenAlice + ` x"}`,
			status: 401, want: "AUTHENTICATION_FAILED"},
		{name: "a token Ocean would decode otherwise", body: `{"i":"` + oceantest.TokenAlice + `\ud800"}`,
			status: 401, want: "AUTHENTICATION_FAILED"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, h.url+"/api/i/webhooks/list", strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			for _, v := range tc.auth {
				req.Header.Add("Authorization", v)
			}
			res := h.do(req)
			require.Equal(t, tc.status, res.status, res.body)
			if tc.status == http.StatusOK {
				assert.JSONEq(t, tc.want, res.body)
				return
			}
			assert.Contains(t, res.body, `"code":"`+tc.want+`"`)
		})
	}
}
