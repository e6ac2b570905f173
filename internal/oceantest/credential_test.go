package oceantest

import (
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestCredentialAsOcean: the fake reads a credential the way Ocean's
// ApiCallService does, so it cannot hide a sidecar that reads it otherwise.
func TestCredentialAsOcean(t *testing.T) {
	s := New(t)
	cases := []struct {
		name   string
		auth   []string
		body   string
		status int
		me     string // the id /api/i answers with, or the error code
	}{
		{name: "Bearer header", auth: []string{"Bearer " + TokenAlice}, body: `{}`, status: 200, me: AliceID},
		{name: "body i", body: `{"i":"` + TokenBob + `"}`, status: 200, me: BobID},
		{name: "Bearer wins over i", auth: []string{"Bearer " + TokenAlice}, body: `{"i":"` + TokenBob + `"}`, status: 200, me: AliceID},
		{name: "lower-case bearer is not Ocean's: i wins", auth: []string{"bearer " + TokenAlice}, body: `{"i":"` + TokenBob + `"}`, status: 200, me: BobID},
		{name: "upper-case BEARER alone is no credential", auth: []string{"BEARER " + TokenAlice}, body: `{}`, status: 401, me: "CREDENTIAL_REQUIRED"},
		{name: "two spaces: the token starts with one", auth: []string{"Bearer  " + TokenAlice}, body: `{}`, status: 401, me: "AUTHENTICATION_FAILED"},
		{name: "the first of two Authorization headers", auth: []string{"Bearer " + TokenAlice, "Bearer " + TokenBob}, body: `{}`, status: 200, me: AliceID},
		{name: "i twice: the last wins", body: `{"i":"` + TokenAlice + `","i":"` + TokenBob + `"}`, status: 200, me: BobID},
		{name: "escaped key is i", body: `{"\u0069":"` + TokenBob + `"}`, status: 200, me: BobID},
		{name: "empty i is a failed credential", body: `{"i":""}`, status: 401, me: "AUTHENTICATION_FAILED"},
		{name: "null i is none", body: `{"i":null}`, status: 401, me: "CREDENTIAL_REQUIRED"},
		{name: "numeric i: a bare 400", body: `{"i":1}`, status: 400},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			req, err := http.NewRequest(http.MethodPost, s.URL+"/api/i", strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			for _, v := range tc.auth {
				req.Header.Add("Authorization", v)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			defer resp.Body.Close()
			body, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.Equal(t, tc.status, resp.StatusCode, "%s", body)
			switch tc.status {
			case 200:
				var me struct{ ID string }
				require.NoError(t, json.Unmarshal(body, &me))
				assert.Equal(t, tc.me, me.ID)
			case 401:
				assert.Contains(t, string(body), `"code":"`+tc.me+`"`)
			case 400:
				assert.Empty(t, body)
			}
		})
	}
}
