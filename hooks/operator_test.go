package hooks

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

func TestOperatorHandler(t *testing.T) {
	s, _ := newStore(t)
	a := mustCreate(t, s, Hook{UserID: alice, Name: "a", URL: "https://discord.example/api/webhooks/1/t0ken?x=1&y=2", Secret: "top-secret", On: []string{webhook.Note}, Active: true})
	b := mustCreate(t, s, Hook{UserID: bob, Name: "b", URL: "https://b.example", On: []string{webhook.Follow}, Active: true})
	s.Deactivate(b.ID)
	s.RecordAttempt(a.ID, time.Date(2026, 11, 26, 20, 49, 48, 202_000_000, time.UTC), 200)

	srv := httptest.NewServer(s.OperatorHandler())
	t.Cleanup(srv.Close)
	get := func(method, query string) (int, http.Header, string) {
		req, err := http.NewRequest(method, srv.URL+"/hooks"+query, nil)
		require.NoError(t, err)
		resp, err := http.DefaultClient.Do(req)
		require.NoError(t, err)
		defer resp.Body.Close()
		body, err := io.ReadAll(resp.Body)
		require.NoError(t, err)
		return resp.StatusCode, resp.Header, string(body)
	}

	wantA := `{"id":"` + a.ID + `","userId":"` + alice + `","name":"a","on":["note"],"url":"https://discord.example/…",` +
		`"secret":"****","active":true,"latestSentAt":"2026-11-26T20:49:48.202Z","latestStatus":200}`
	wantB := `{"id":"` + b.ID + `","userId":"` + bob + `","name":"b","on":["follow"],"url":"https://b.example/",` +
		`"secret":"","active":false,"latestSentAt":null,"latestStatus":null}`

	status, header, body := get(http.MethodGet, "")
	assert.Equal(t, http.StatusOK, status)
	assert.Equal(t, "application/json; charset=utf-8", header.Get("Content-Type"))
	assert.JSONEq(t, `[`+wantA+`,`+wantB+`]`, body)
	assert.NotContains(t, body, "top-secret")
	assert.NotContains(t, body, "t0ken", "hook URLs are masked: their path may be a credential")

	_, _, body = get(http.MethodGet, "?userId="+bob)
	assert.JSONEq(t, `[`+wantB+`]`, body)
	_, _, body = get(http.MethodGet, "?userId=au1nobody0000000")
	assert.Equal(t, `[]`, body)

	status, header, _ = get(http.MethodPut, "")
	assert.Equal(t, http.StatusMethodNotAllowed, status)
	assert.Equal(t, "GET, HEAD, POST", header.Get("Allow"))
}
