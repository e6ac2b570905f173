package main

import (
	"bufio"
	"bytes"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/redistest"
)

// process is a running oceanhooks program.
type process struct {
	addr string
	logs *lockedBuffer
	kill func()
}

// startServe runs `oceanhooks serve --config cfg` and waits until it listens
// and, when wantStream, its event stream is connected.
func startServe(t *testing.T, cfg string, wantStream bool) *process {
	t.Helper()
	cmd := command(t, "serve", "--config", cfg)
	stderr, err := cmd.StderrPipe()
	require.NoError(t, err)
	require.NoError(t, cmd.Start())
	logs := &lockedBuffer{}
	var gone atomic.Bool
	done := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stderr)
		sc.Buffer(nil, 1<<20)
		for sc.Scan() {
			logs.add(sc.Text())
		}
		_ = cmd.Wait()
		gone.Store(true)
		close(done)
	}()
	var once sync.Once
	kill := func() {
		once.Do(func() {
			_ = cmd.Process.Kill() // SIGKILL: no shutdown of any kind
			<-done
		})
	}
	t.Cleanup(kill)
	p := &process{logs: logs, kill: kill}
	require.Eventually(t, func() bool {
		if rec := logs.find("proxy listening"); rec != nil {
			p.addr, _ = rec["addr"].(string)
		}
		return (p.addr != "" && (!wantStream || logs.find("event stream connected") != nil)) || gone.Load()
	}, 60*time.Second, 20*time.Millisecond)
	require.False(t, gone.Load(), "oceanhooks exited; logs:\n%s", logs)
	return p
}

func post(t *testing.T, url, token, body string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodPost, url, bytes.NewReader([]byte(body)))
	require.NoError(t, err)
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+token)
	res, err := http.DefaultClient.Do(req)
	require.NoError(t, err)
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	require.NoError(t, err)
	return res.StatusCode, string(b)
}

// TestKilledBeforeTheStreamsTwin: the program is killed (SIGKILL) right after
// the client got Ocean's answer and before the event's twin came on the
// stream (here it never comes: the twin was published while the sidecar was
// gone). After a restart the event is delivered exactly once, as derived.
func TestKilledBeforeTheStreamsTwin(t *testing.T) {
	rs := redistest.Start(t)
	oc := oceantest.New(t)
	var mu sync.Mutex
	var got []string
	rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		mu.Lock()
		got = append(got, string(b))
		mu.Unlock()
	}))
	t.Cleanup(rc.Close)
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(got) }

	cfg := writeConfig(t, `
listen: "127.0.0.1:0"
adminListen: "127.0.0.1:0"
upstream: "`+oc.URL+`"
dataDir: "`+filepath.Join(t.TempDir(), "data")+`"
log:
  format: json
ocean:
  redis:
    url: "`+rs.URL()+`"
events:
  confirmWindow: 1s
delivery:
  allowedPrivateNetworks: ["127.0.0.0/8"]
`)
	p := startServe(t, cfg, true)
	status, body := post(t, "http://"+p.addr+"/api/i/webhooks/create", oceantest.TokenAlice,
		`{"name":"n","url":"`+rc.URL+`","on":["note"]}`)
	require.Equal(t, http.StatusOK, status, body)
	status, body = post(t, "http://"+p.addr+"/api/notes/create", oceantest.TokenAlice, `{"text":"before the kill"}`)
	require.Equal(t, http.StatusOK, status, body)
	noteID := gjson.Get(body, "createdNote.id").Str
	p.kill()
	require.Zero(t, count(), "the event was still held for its twin")

	startServe(t, cfg, true)
	require.Eventually(t, func() bool { return count() == 1 }, 30*time.Second, 20*time.Millisecond)
	assert.Never(t, func() bool { return count() > 1 }, 3*time.Second, 50*time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	assert.Equal(t, "note", gjson.Get(got[0], "type").Str)
	assert.Equal(t, noteID, gjson.Get(got[0], "body.note.id").Str)
}
