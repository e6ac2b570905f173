package e2e

import (
	"context"
	"log/slog"
	"net/http"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"github.com/oceanhooks/oceanhooks/server"
)

// startSidecarLogging is startSidecar with its log kept in logs (debug and up).
func startSidecarLogging(t *testing.T, upstream string, logs *testlog.Buffer) *sidecar {
	t.Helper()
	cfg := baseConfig(t, upstream, t.TempDir())
	logger := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	s, err := server.New(cfg, logger)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	sc := &sidecar{Server: s, cancel: cancel, done: make(chan struct{})}
	go func() {
		sc.err = s.Run(ctx)
		close(sc.done)
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case <-sc.done:
		case <-time.After(time.Minute):
			t.Error("sidecar did not stop")
		}
	})
	return sc
}

// postNote posts notes/create through the sidecar and returns the created
// note's id ("" for a 204).
func postNote(t *testing.T, base, token string, params map[string]any, wantStatus int) string {
	t.Helper()
	status, body := call(t, base, "notes/create", token, params, true)
	require.Equal(t, wantStatus, status, "%s", body)
	return gjson.GetBytes(body, "createdNote.id").String()
}

// notesTo lists what the receiver got at path as "type note-id".
func notesTo(rc *receiver, path string) []string {
	var out []string
	for _, d := range rc.deliveries() {
		if d.Path == path {
			out = append(out, gjson.GetBytes(d.Body, "type").Str+" "+gjson.GetBytes(d.Body, "body.note.id").Str)
		}
	}
	return out
}

// waitFor waits until the receiver holds n deliveries.
func waitFor(t *testing.T, rc *receiver, n int) {
	t.Helper()
	require.Eventually(t, func() bool { return len(rc.deliveries()) >= n }, 10*time.Second, 10*time.Millisecond)
}

// Issue 9, defect 9: notes/create with scheduledAt and with noCreatedNote
// answers 204. The client gets it, nothing is sent, and nothing is logged as
// an error; a note posted afterwards still arrives (the tap is alive).
func TestNoteAnsweredNoContentIsNoError(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	var logs testlog.Buffer
	sc := startSidecarLogging(t, fake.URL, &logs)
	createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "note", "mention")
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "mention")

	postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "later @bob",
		"scheduledAt": time.Now().Add(time.Hour).UnixMilli()}, http.StatusNoContent)
	postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "quiet @bob", "noCreatedNote": true}, http.StatusNoContent)
	marker := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "marker"}, http.StatusOK)

	waitFor(t, rc, 1)
	assert.Equal(t, []string{"note " + marker}, notesTo(rc, "/alice"))
	assert.Empty(t, notesTo(rc, "/bob"))
	assert.NotContains(t, logs.String(), "level=ERROR")
	assert.NotContains(t, logs.String(), "malformed")
	assert.Contains(t, logs.String(), "reason=scheduled")
	assert.Contains(t, logs.String(), "reason=no_created_note")
}

// Issue 9, defect 10: Ocean answers the same notes/create again within 60 s
// with the earlier note and fires nothing; so does the sidecar: one set of
// deliveries for the note, however often the call is repeated.
func TestRepeatedNoteCreateFiresOnce(t *testing.T) {
	fake := oceantest.New(t)
	rc := newReceiver(t)
	sc := startSidecar(t, baseConfig(t, fake.URL, t.TempDir()))
	createHook(t, sc.url(), oceantest.TokenAlice, rc.URL+"/alice", "note", "reply", "renote", "mention")
	createHook(t, sc.url(), oceantest.TokenBob, rc.URL+"/bob", "note", "reply", "renote", "mention")

	target := postNote(t, sc.url(), oceantest.TokenBob, map[string]any{"text": "target"}, http.StatusOK)
	params := map[string]any{"text": "hello @bob", "replyId": target}
	first := postNote(t, sc.url(), oceantest.TokenAlice, params, http.StatusOK)
	again := postNote(t, sc.url(), oceantest.TokenAlice, params, http.StatusOK)
	require.Equal(t, first, again, "Ocean answered the repeat with the earlier note")
	postNote(t, sc.url(), oceantest.TokenAlice, params, http.StatusOK)
	marker := postNote(t, sc.url(), oceantest.TokenAlice, map[string]any{"text": "marker"}, http.StatusOK)

	waitFor(t, rc, 5)
	require.Eventually(t, func() bool {
		for _, n := range notesTo(rc, "/alice") {
			if n == "note "+marker {
				return true
			}
		}
		return false
	}, 10*time.Second, 10*time.Millisecond)
	assert.ElementsMatch(t, []string{"note " + first, "note " + marker}, notesTo(rc, "/alice"))
	assert.ElementsMatch(t, []string{"note " + target, "reply " + first, "mention " + first}, notesTo(rc, "/bob"))
}
