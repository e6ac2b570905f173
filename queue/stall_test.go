package queue

import (
	"bytes"
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/testlog"
	"github.com/oceanhooks/oceanhooks/matchers"
	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// stall makes every commit of q wait until the returned release is called,
// as a hung disk would; started receives once per commit that began (when
// nobody takes it, later ones are not announced). release is idempotent and
// runs at cleanup.
func stall(t *testing.T, q *Queue) (started <-chan struct{}, release func()) {
	t.Helper()
	gate := make(chan struct{})
	begun := make(chan struct{}, 16)
	started = begun
	q.commits.before = func() {
		select {
		case begun <- struct{}{}:
		default:
		}
		<-gate
	}
	closed := false
	release = func() {
		if !closed {
			closed = true
			close(gate)
		}
	}
	t.Cleanup(release)
	return started, release
}

// TestEnqueueGivesUpOnStalledDisk: a caller whose context ends while the disk
// hangs gets its context's error at once, the abandoned deliveries are
// counted, and the write that was under way still delivers them once the
// disk comes back: nothing it stored is lost.
func TestEnqueueGivesUpOnStalledDisk(t *testing.T) {
	rc := newReceiver(t, always(http.StatusNoContent))
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), fh, testOptions(nil))
	started, release := stall(t, q)
	runQueue(t, q)

	ctx, cancel := context.WithCancel(context.Background())
	type answer struct {
		n   int
		err error
	}
	done := make(chan answer, 1)
	go func() {
		n, err := q.Enqueue(ctx, []webhook.Event{event("u1", "note", `{"note":{"id":"n1"}}`)})
		done <- answer{n, err}
	}()
	<-started
	cancel()
	var got answer
	require.Eventually(t, func() bool {
		select {
		case got = <-done:
			return true
		default:
			return false
		}
	}, 5*time.Second, time.Millisecond, "Enqueue must not wait for a stalled disk past its context")
	assert.ErrorIs(t, got.err, context.Canceled)
	assert.Zero(t, got.n)
	assert.Equal(t, 1.0, testutil.ToFloat64(q.m.abandoned))
	assert.Zero(t, rc.count())

	release()
	require.Eventually(t, func() bool { return rc.count() == 1 }, 5*time.Second, 5*time.Millisecond,
		"the write the caller gave up on must still be delivered when it lands")
	var env struct{ Body json.RawMessage }
	require.NoError(t, json.Unmarshal(rc.got()[0].Body, &env))
	assert.JSONEq(t, `{"note":{"id":"n1"}}`, string(env.Body))
}

// TestTapGivesUpOnStalledDisk runs the real chain (proxy → matchers → hooks
// store → queue) in front of the fake Ocean with the disk hung: the client
// gets Ocean's answer when the tap's own timeout ends, the failure is counted
// as lost events and logged, and the proxy keeps serving.
func TestTapGivesUpOnStalledDisk(t *testing.T) {
	oc := oceantest.New(t)
	upstream, err := url.Parse(oc.URL)
	require.NoError(t, err)
	rc := newReceiver(t, always(http.StatusNoContent))

	db := openDB(t, "")
	store, err := hooks.Open(db, hooks.Options{})
	require.NoError(t, err)
	_, err = store.Create(hooks.Hook{UserID: oceantest.AliceID, Name: "n", URL: rc.URL, On: []string{"note"}, Active: true}, 10)
	require.NoError(t, err)
	q := openQueue(t, db, store, testOptions(nil))
	_, release := stall(t, q)
	runQueue(t, q)

	reg := prometheus.NewRegistry()
	logs := &testlog.Buffer{}
	logger := slog.New(slog.NewTextHandler(logs, nil))
	client := ocean.NewClient(upstream, ocean.ClientOptions{})
	engine := matchers.New(store, client, q, matchers.Options{Logger: logger, Registerer: reg})
	p, err := proxy.New(proxy.Options{
		Upstream:       upstream,
		Taps:           engine.Taps(),
		Consumer:       engine,
		ObserveTimeout: 50 * time.Millisecond,
		Logger:         logger,
		Registerer:     reg,
	})
	require.NoError(t, err)
	front := httptest.NewServer(p)
	t.Cleanup(front.Close)
	t.Cleanup(release) // before front.Close: a handler stuck on the disk must end

	type answer struct {
		status int
		body   []byte
		err    error
	}
	post := func() <-chan answer {
		out := make(chan answer, 1)
		go func() {
			req, _ := http.NewRequest(http.MethodPost, front.URL+"/api/notes/create", bytes.NewReader([]byte(`{"text":"stalled"}`)))
			req.Header.Set("Content-Type", "application/json")
			req.Header.Set("Authorization", "Bearer "+oceantest.TokenAlice)
			res, err := http.DefaultClient.Do(req)
			if err != nil {
				out <- answer{err: err}
				return
			}
			defer res.Body.Close()
			b, err := io.ReadAll(res.Body)
			out <- answer{status: res.StatusCode, body: b, err: err}
		}()
		return out
	}
	var got answer
	pending := post()
	require.Eventually(t, func() bool {
		select {
		case got = <-pending:
			return true
		default:
			return false
		}
	}, 10*time.Second, 5*time.Millisecond, "a hung disk must not hang the client past the tap's timeout")
	require.NoError(t, got.err)
	assert.Equal(t, http.StatusOK, got.status)
	assert.Contains(t, string(got.body), `"text":"stalled"`)

	assert.Equal(t, 1.0, testutil.ToFloat64(q.m.abandoned))
	lost, err := testutil.GatherAndCount(reg, "oceanhooks_derive_skipped_total")
	require.NoError(t, err)
	assert.Positive(t, lost, "the events the tap gave up on are counted as lost")
	assert.Contains(t, logs.String(), "gave up waiting for the disk")

	release()
	require.Eventually(t, func() bool { return rc.count() == 1 }, 5*time.Second, 5*time.Millisecond)
}
