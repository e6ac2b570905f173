package matchers

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"slices"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// The rule table, as the proxy sees it through Taps.
func TestTaps(t *testing.T) {
	want := map[string][]string{
		"notes/create":              {webhook.Note, webhook.Reply, webhook.Renote, webhook.Mention},
		"following/create":          {webhook.Follow, webhook.Followed},
		"following/delete":          {webhook.Unfollow},
		"following/invalidate":      {webhook.Unfollow},
		"following/requests/accept": {webhook.Follow, webhook.Followed},
		"following/requests/reject": {webhook.Unfollow},
		"blocking/create":           {webhook.Unfollow},
		"notes/reactions/create":    {webhook.Reaction},
	}
	h := newHarness(t, &fakeSubs{})
	taps := h.e.Taps()
	require.Len(t, taps, len(want))
	for _, tap := range taps {
		t.Run(tap.Endpoint, func(t *testing.T) {
			causes, ok := want[tap.Endpoint]
			require.True(t, ok, "unexpected tap")
			require.NotNil(t, tap.Wanted)
			assert.Equal(t, tap.Endpoint == "blocking/create", tap.Before != nil, "only a block reads before forwarding")

			h.subs.hooks = nil
			assert.False(t, tap.Wanted(), "no hook at all")
			for _, typ := range webhook.UserEventTypes {
				h.subs.hooks = []hook{{user: carol, on: []string{typ}, active: true}}
				assert.Equal(t, slices.Contains(causes, typ), tap.Wanted(), "a hook on %s", typ)
				h.subs.hooks[0].active = false
				assert.False(t, tap.Wanted(), "an inactive hook on %s", typ)
			}
		})
	}
}

// A call no active hook could care about costs nothing: the gate is false,
// so the proxy neither buffers nor parses it, and even an Observe that gets
// it anyway returns before reading the body (garbage here would count as a
// failure if it were parsed) or asking Ocean anything.
func TestUnwantedCallCostsNothing(t *testing.T) {
	hooks := &fakeSubs{hooks: []hook{
		{user: alice, on: webhook.UserEventTypes, active: false},
		{user: bob, on: []string{webhook.ReportCreated}, active: true},
	}}
	for _, r := range table {
		t.Run(r.endpoint, func(t *testing.T) {
			h := newHarness(t, hooks)
			wanted, err := h.do(t, r.endpoint, "tok-alice", `{"userId":"`+bob+`"}`, 200, `{"createdNote":`)
			require.NoError(t, err)
			assert.False(t, wanted, "gate")

			obs := observation(r.endpoint, "tok-alice", `{"userId":"`+bob+`"}`, 200, `{"createdNote":`)
			require.NoError(t, h.e.Observe(context.Background(), obs))
			assert.Zero(t, h.failures(r.endpoint, "malformed"), "not parsed")
			assert.Empty(t, h.oc.calls)
			assert.Zero(t, h.oc.meCalls)
			assert.Empty(t, h.sink.batches)
		})
	}
}

func TestObserveIgnores(t *testing.T) {
	created := `{"createdNote":` + note(t, "n1", alice) + `}`
	tests := []struct {
		name     string
		endpoint string
		status   int
	}{
		{name: "an endpoint without a rule", endpoint: "notes/delete", status: 200},
		{name: "Ocean's error answer", endpoint: "notes/create", status: 400},
		{name: "Ocean's server error", endpoint: "notes/create", status: 500},
		{name: "a redirect", endpoint: "notes/create", status: 302},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allHooks(alice))
			require.NoError(t, h.e.Observe(context.Background(), observation(tt.endpoint, "tok-alice", `{}`, tt.status, created)))
			assert.Empty(t, h.sink.batches)
		})
	}
}

// All events of one call reach the sink in one Enqueue, before Observe
// returns, and are counted by type.
func TestOneEnqueuePerCall(t *testing.T) {
	h := newHarness(t, allHooks(alice, bob))
	created := `{"createdNote":` + note(t, "n1", alice, replyTo(t, bob), mentions(bob)) + `}`
	require.NoError(t, h.e.Observe(context.Background(), observation("notes/create", "tok-alice", `{}`, 200, created)))
	require.Len(t, h.sink.batches, 1)
	assert.ElementsMatch(t, []got{{webhook.Note, alice}, {webhook.Reply, bob}, {webhook.Mention, bob}}, kinds(h.sink.batches[0]))
	assert.Equal(t, 1.0, h.derived(webhook.Note))
	assert.Equal(t, 1.0, h.derived(webhook.Reply))
	assert.Equal(t, 1.0, h.derived(webhook.Mention))
	assert.Zero(t, h.derived(webhook.Renote))
}

func TestEnqueueFailure(t *testing.T) {
	h := newHarness(t, allHooks(alice))
	h.sink.err = errors.New("disk full")
	created := `{"createdNote":` + note(t, "n1", alice) + `}`
	err := h.e.Observe(context.Background(), observation("notes/create", "tok-alice", `{}`, 200, created))
	require.Error(t, err)
	assert.ErrorIs(t, err, h.sink.err)
	assert.Equal(t, 1.0, h.failures("notes/create", "enqueue"))
	assert.Zero(t, h.derived(webhook.Note), "nothing counted as derived that was not stored")
}

// Extra reads share one deadline of ReadTimeout; their failures are
// labelled by cause.
func TestReadDeadlineAndReasons(t *testing.T) {
	tests := []struct {
		name   string
		err    error
		reason string
	}{
		{name: "Ocean too slow (client)", err: ocean.ErrUpstreamTimeout, reason: "timeout"},
		{name: "our deadline", err: fmt.Errorf("post: %w", context.DeadlineExceeded), reason: "timeout"},
		{name: "client went away", err: context.Canceled, reason: "canceled"},
		{name: "Ocean unreachable", err: ocean.ErrUpstreamUnavailable, reason: "unavailable"},
		{name: "transport error", err: errDown, reason: "unavailable"},
		{name: "Ocean's refusal", err: ocean.ErrPermissionDenied, reason: "ocean_error"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			h := newHarness(t, allHooks(alice))
			h.oc.fail("users/show", "userId", bob, tt.err)
			_, err := h.do(t, "following/delete", "tok-alice", `{"userId":"`+bob+`"}`, 200, userLiteOf(bob))
			require.NoError(t, err, "a failed read is no failure of the call")
			assert.Equal(t, 1.0, h.skipped("following/delete", tt.reason))
			assert.Empty(t, h.sink.batches)
		})
	}

	t.Run("deadline", func(t *testing.T) {
		oc := &deadlineOcean{fakeOcean: newFakeOcean()}
		oc.answer("users/show", "userId", bob, userLiteOf(bob))
		e := New(allHooks(alice), oc, &fakeSink{}, Options{ReadTimeout: 250 * time.Millisecond})
		start := time.Now()
		require.NoError(t, e.Observe(context.Background(), observation("following/delete", "tok-alice", `{"userId":"`+bob+`"}`, 200, userLiteOf(bob))))
		end := time.Now()
		require.Len(t, oc.deadlines, 2, "Me and users/show")
		for _, d := range oc.deadlines {
			assert.WithinRange(t, d, start.Add(250*time.Millisecond), end.Add(250*time.Millisecond))
		}
		assert.Equal(t, oc.deadlines[0], oc.deadlines[1], "one deadline for all reads of a call")
		assert.Equal(t, DefaultReadTimeout, New(nil, nil, nil, Options{}).readTimeout)
	})
}

// deadlineOcean records the deadline of each read.
type deadlineOcean struct {
	*fakeOcean
	deadlines []time.Time
}

func (o *deadlineOcean) Me(ctx context.Context, token string) (ocean.Me, error) {
	d, _ := ctx.Deadline()
	o.deadlines = append(o.deadlines, d)
	return o.fakeOcean.Me(ctx, token)
}

func (o *deadlineOcean) Call(ctx context.Context, endpoint, token string, params any) ([]byte, error) {
	d, _ := ctx.Deadline()
	o.deadlines = append(o.deadlines, d)
	return o.fakeOcean.Call(ctx, endpoint, token, params)
}

// Logs of skipped events say what and why, never the token or a body.
func TestLogsCarryNoSecrets(t *testing.T) {
	var buf bytes.Buffer
	oc := newFakeOcean()
	oc.users["s3cr3t-token"] = alice
	oc.fail("users/show", "userId", bob, errDown)
	e := New(allHooks(alice), oc, &fakeSink{}, Options{
		Logger:     slog.New(slog.NewTextHandler(&buf, &slog.HandlerOptions{Level: slog.LevelDebug})),
		Registerer: prometheus.NewRegistry(),
	})
	obs := observation("following/delete", "s3cr3t-token", `{"userId":"`+bob+`","i":"s3cr3t-token"}`, 200, userLiteOf(bob))
	require.NoError(t, e.Observe(context.Background(), obs))
	require.Contains(t, buf.String(), "event skipped")
	assert.NotContains(t, buf.String(), "s3cr3t")
}

func TestMetricsRegistered(t *testing.T) {
	reg := prometheus.NewRegistry()
	h := newHarness(t, allHooks(alice))
	e := New(h.subs, h.oc, h.sink, Options{Registerer: reg})
	created := `{"createdNote":` + note(t, "n1", alice) + `}`
	require.NoError(t, e.Observe(context.Background(), observation("notes/create", "tok-alice", `{}`, 200, created)))
	require.Error(t, e.Observe(context.Background(), observation("notes/create", "tok-alice", `{}`, 200, `x`)))
	families, err := reg.Gather()
	require.NoError(t, err)
	var names []string
	for _, f := range families {
		names = append(names, f.GetName())
	}
	assert.Contains(t, names, "oceanhooks_events_derived_total")
	assert.Contains(t, names, "oceanhooks_derive_failures_total")
}

var _ proxy.Consumer = (*Engine)(nil)
