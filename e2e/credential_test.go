package e2e

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
)

// TestEventsGoToTheAccountOceanActedAs: a user who owns two tokens (alice's,
// X, who follows bob, and carol's, Y) sends a follow of bob that Ocean
// carries out as Y. Bob's hook must never report that X followed him: the
// sidecar either derives the event as Y, exactly as Ocean read the call, or
// derives nothing.
func TestEventsGoToTheAccountOceanActedAs(t *testing.T) {
	x, y := oceantest.TokenAlice, oceantest.TokenCarol
	follow := `"userId":"` + oceantest.BobID + `"`
	cases := []struct {
		name     string
		auth     string
		body     string
		followed []string // who bob's hook hears followed him
	}{
		{name: "lower-case bearer X, i Y: Ocean acts as Y", auth: "bearer " + x,
			body: `{"i":"` + y + `",` + follow + `}`, followed: []string{oceantest.CarolID, oceantest.AdminID}},
		{name: "i X then i Y: Ocean keeps the last, the sidecar derives nothing",
			body: `{"i":"` + x + `",` + follow + `,"i":"` + y + `"}`, followed: []string{oceantest.AdminID}},
		{name: "lower-case bearer X, i X then i Y", auth: "bearer " + x,
			body: `{"i":"` + x + `",` + follow + `,"i":"` + y + `"}`, followed: []string{oceantest.AdminID}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			fake := oceantest.New(t)
			rc := newReceiver(t)
			sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
			// X follows bob already, so a reading of the call as X finds a
			// follow to report.
			status, body := call(t, sc.url(), "following/create", x, map[string]any{"userId": oceantest.BobID}, true)
			require.Equal(t, http.StatusOK, status, "%s", body)
			createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "followed")

			req, err := http.NewRequest(http.MethodPost, sc.url()+"/api/following/create", strings.NewReader(tc.body))
			require.NoError(t, err)
			req.Header.Set("Content-Type", "application/json")
			if tc.auth != "" {
				req.Header.Set("Authorization", tc.auth)
			}
			resp, err := http.DefaultClient.Do(req)
			require.NoError(t, err)
			answer, err := io.ReadAll(resp.Body)
			require.NoError(t, err)
			require.NoError(t, resp.Body.Close())
			require.Equal(t, http.StatusOK, resp.StatusCode, "%s", answer)
			assert.Equal(t, oceantest.BobID, gjson.GetBytes(answer, "id").String())

			// A follow by the admin afterwards shows the queue flowing before
			// the deliveries are read.
			status, body = call(t, sc.url(), "following/create", oceantest.TokenAdmin, map[string]any{"userId": oceantest.BobID}, true)
			require.Equal(t, http.StatusOK, status, "%s", body)
			require.Eventually(t, func() bool {
				got := rc.deliveries()
				for _, d := range got {
					if gjson.GetBytes(d.Body, "body.user.id").String() == oceantest.AdminID {
						return len(got) >= len(tc.followed)
					}
				}
				return false
			}, 10*time.Second, 10*time.Millisecond)

			var followers []string
			for _, d := range rc.deliveries() {
				assert.Equal(t, "followed", gjson.GetBytes(d.Body, "type").String())
				followers = append(followers, gjson.GetBytes(d.Body, "body.user.id").String())
			}
			assert.ElementsMatch(t, tc.followed, followers)
			assert.NotContains(t, followers, oceantest.AliceID, "a follow Ocean carried out as Y is reported as X's")
		})
	}
}
