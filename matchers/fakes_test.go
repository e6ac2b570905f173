package matchers

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"slices"
	"sync"
	"testing"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/ocean"
	"github.com/oceanhooks/oceanhooks/proxy"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// User ids of the capture.
const (
	admin = "au1lb50u9jzs0003"
	alice = "au1lb55h9jzs0004"
	bob   = "au1lb5al9jzs0005"
	carol = "au1lbzzz9jzs0099" // a local user that is not in the capture
	remo  = "au1remote9jzs001" // a remote user
)

// hook is one hook as the index sees it.
type hook struct {
	user   string
	on     []string
	active bool
}

// fakeSubs answers like hooks.Store's index: only active hooks count.
type fakeSubs struct{ hooks []hook }

func (f *fakeSubs) Subscribed(userID, eventType string) bool {
	for _, h := range f.hooks {
		if h.active && h.user == userID && slices.Contains(h.on, eventType) {
			return true
		}
	}
	return false
}

func (f *fakeSubs) AnySubscribed(eventTypes ...string) bool {
	for _, h := range f.hooks {
		if !h.active {
			continue
		}
		for _, t := range eventTypes {
			if slices.Contains(h.on, t) {
				return true
			}
		}
	}
	return false
}

// allHooks subscribes each user to every user event type, as in the capture.
func allHooks(users ...string) *fakeSubs {
	f := &fakeSubs{}
	for _, u := range users {
		f.hooks = append(f.hooks, hook{user: u, on: webhook.UserEventTypes, active: true})
	}
	return f
}

// oceanCall is one request the engine made of the fake Ocean.
type oceanCall struct {
	endpoint string
	token    string
	params   string // JSON
}

// fakeOcean answers Me from a token map and Call from canned answers keyed
// by "endpoint params-json". Unknown requests fail like Ocean's 400.
type fakeOcean struct {
	mu      sync.Mutex
	users   map[string]string // token → user id
	answers map[string]string
	errs    map[string]error
	meErr   error
	calls   []oceanCall
	meCalls int
	// sawDeadline is false if any request came without a deadline.
	sawDeadline bool
}

func newFakeOcean() *fakeOcean {
	return &fakeOcean{
		users:       map[string]string{"tok-alice": alice, "tok-bob": bob, "tok-admin": admin, "tok-carol": carol},
		answers:     map[string]string{},
		errs:        map[string]error{},
		sawDeadline: true,
	}
}

func key(endpoint string, params any) string {
	b, err := json.Marshal(params)
	if err != nil {
		panic(err)
	}
	return endpoint + " " + string(b)
}

// answer registers Ocean's answer to endpoint with {field: id}.
func (f *fakeOcean) answer(endpoint, field, id, body string) {
	f.answers[key(endpoint, map[string]string{field: id})] = body
}

func (f *fakeOcean) fail(endpoint, field, id string, err error) {
	f.errs[key(endpoint, map[string]string{field: id})] = err
}

func (f *fakeOcean) Me(ctx context.Context, token string) (ocean.Me, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.meCalls++
	if _, ok := ctx.Deadline(); !ok {
		f.sawDeadline = false
	}
	if f.meErr != nil {
		return ocean.Me{}, f.meErr
	}
	id, ok := f.users[token]
	if !ok {
		return ocean.Me{}, ocean.ErrAuthenticationFailed
	}
	return ocean.Me{ID: id, WebhookLimit: 3}, nil
}

func (f *fakeOcean) Call(ctx context.Context, endpoint, token string, params any) ([]byte, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if _, ok := ctx.Deadline(); !ok {
		f.sawDeadline = false
	}
	b, err := json.Marshal(params)
	if err != nil {
		return nil, err
	}
	f.calls = append(f.calls, oceanCall{endpoint: endpoint, token: token, params: string(b)})
	k := endpoint + " " + string(b)
	if err := f.errs[k]; err != nil {
		return nil, err
	}
	if a, ok := f.answers[k]; ok {
		return []byte(a), nil
	}
	return nil, ocean.ErrInvalidParam
}

func (f *fakeOcean) endpoints() []string {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []string
	for _, c := range f.calls {
		out = append(out, c.endpoint+" "+c.params)
	}
	return out
}

// fakeSink records every Enqueue call.
type fakeSink struct {
	mu      sync.Mutex
	batches [][]webhook.Event
	err     error
}

func (s *fakeSink) Enqueue(_ context.Context, events []webhook.Event) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.err != nil {
		return 0, s.err
	}
	s.batches = append(s.batches, slices.Clone(events))
	return len(events), nil
}

func (s *fakeSink) events() []webhook.Event {
	s.mu.Lock()
	defer s.mu.Unlock()
	var out []webhook.Event
	for _, b := range s.batches {
		out = append(out, b...)
	}
	return out
}

// harness is an engine over fakes, with its own metrics registry.
type harness struct {
	e    *Engine
	subs *fakeSubs
	oc   *fakeOcean
	sink *fakeSink
}

func newHarness(t *testing.T, subs *fakeSubs) *harness {
	t.Helper()
	h := &harness{subs: subs, oc: newFakeOcean(), sink: &fakeSink{}}
	h.e = New(subs, h.oc, h.sink, Options{
		Logger:     slog.New(slog.NewTextHandler(io.Discard, nil)),
		Registerer: prometheus.NewRegistry(),
	})
	return h
}

// do plays one call the way the proxy does: the Wanted gate, Before before
// forwarding, then Observe with Ocean's answer. It reports whether the tap
// wanted the call and returns Observe's error.
func (h *harness) do(t *testing.T, endpoint, token, request string, status int, response string) (bool, error) {
	t.Helper()
	var tap *proxy.Tap
	for _, tp := range h.e.Taps() {
		if tp.Endpoint == endpoint {
			tap = &tp
		}
	}
	require.NotNil(t, tap, "no tap for %s", endpoint)
	if tap.Wanted != nil && !tap.Wanted() {
		return false, nil
	}
	obs := &proxy.Observation{Endpoint: endpoint, Request: []byte(request), Token: token}
	if tap.Before != nil {
		tap.Before(context.Background(), obs)
	}
	obs.Status = status
	obs.Response = []byte(response)
	return true, h.e.Observe(context.Background(), obs)
}

func (h *harness) skipped(endpoint, reason string) float64 {
	return value(h.e.m.skipped.WithLabelValues(endpoint, reason))
}

func (h *harness) failures(endpoint, reason string) float64 {
	return value(h.e.m.failures.WithLabelValues(endpoint, reason))
}

func (h *harness) nothing(endpoint, reason string) float64 {
	return value(h.e.m.nothing.WithLabelValues(endpoint, reason))
}

func (h *harness) derived(typ string) float64 {
	return value(h.e.m.derived.WithLabelValues(typ))
}

// value reads a counter.
func value(c prometheus.Counter) float64 {
	var m dto.Metric
	if err := c.Write(&m); err != nil {
		panic(err)
	}
	return m.GetCounter().GetValue()
}

// got is an event as (type, recipient) for comparisons.
type got struct{ Type, UserID string }

func kinds(events []webhook.Event) []got {
	var out []got
	for _, ev := range events {
		out = append(out, got{ev.Type, ev.UserID})
	}
	return out
}

var errDown = errors.New("dial tcp 127.0.0.1:3000: connection refused")

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	require.NoError(t, err)
	return string(b)
}

// observation is a call as the proxy hands it to Observe.
func observation(endpoint, token, request string, status int, response string) *proxy.Observation {
	return &proxy.Observation{Endpoint: endpoint, Token: token, Request: []byte(request),
		Status: status, Response: []byte(response)}
}
