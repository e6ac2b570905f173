package queue

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// The contract suite: every test here runs against both queues, Badger (in
// a temporary directory) and PostgreSQL (a schema of its own, pgtest), with
// a real receiver.

// contractQueue is what the suite drives: the shared method set, and the
// expiry sweep both queues run.
type contractQueue interface {
	backend
	sweep(now time.Time) (int, error)
}

// store opens a queue of one backend, and opens it again (a restart: the
// previous one must have stopped running).
type store struct {
	name string
	open func(t *testing.T, hooks Hooks, opts Options) (q contractQueue, reopen func() contractQueue)
}

var stores = []store{
	{"badger", func(t *testing.T, hooks Hooks, opts Options) (contractQueue, func() contractQueue) {
		dir := t.TempDir()
		var db *badger.DB
		open := func() contractQueue {
			if db != nil {
				require.NoError(t, db.Close())
			}
			var err error
			db, err = badger.Open(testBadgerOptions(dir))
			require.NoError(t, err)
			return openQueue(t, db, hooks, opts)
		}
		t.Cleanup(func() { _ = db.Close() })
		return open(), open
	}},
	{"postgres", func(t *testing.T, hooks Hooks, opts Options) (contractQueue, func() contractQueue) {
		db := pgtest.Open(t)
		open := func() contractQueue {
			q, err := OpenPostgres(context.Background(), pgtest.Again(t, db), hooks, opts)
			require.NoError(t, err)
			return q
		}
		return open(), open
	}},
}

// eachStore runs test against every backend.
func eachStore(t *testing.T, test func(t *testing.T, s store)) {
	for _, s := range stores {
		t.Run(s.name, func(t *testing.T) { test(t, s) })
	}
}

// start runs q until stop (or the test's end) and returns stop, which
// waits for Run to return.
func start(t *testing.T, q contractQueue) (stop func()) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	var once sync.Once
	stop = func() {
		once.Do(func() {
			cancel()
			assert.NoError(t, <-done)
		})
	}
	t.Cleanup(stop)
	return stop
}

// scripted is a receiver whose answers the test sets per hook (by the hook
// id header), default 204; it records every request.
type scripted struct {
	*httptest.Server
	mu      sync.Mutex
	answers map[string]answer
	hits    []hit
}

type answer struct {
	status     int
	retryAfter string
}

func newScripted(t *testing.T) *scripted {
	s := &scripted{answers: map[string]answer{}}
	s.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		s.mu.Lock()
		a, ok := s.answers[r.Header.Get("X-Ocean-Hook-Id")]
		if !ok {
			a = answer{status: http.StatusNoContent}
		}
		s.hits = append(s.hits, hit{Header: r.Header.Clone(), Body: body, Status: a.status})
		s.mu.Unlock()
		if a.retryAfter != "" {
			w.Header().Set("Retry-After", a.retryAfter)
		}
		w.WriteHeader(a.status)
	}))
	t.Cleanup(s.Close)
	return s
}

func (s *scripted) answer(hook string, a answer) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answers[hook] = a
}

func (s *scripted) got() []hit {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]hit(nil), s.hits...)
}

// listed is q.List of hook, all of it.
func listed(t *testing.T, q contractQueue, hook string) []webhook.Delivery {
	t.Helper()
	ds, err := q.List(context.Background(), hook, MaxListLimit, "")
	require.NoError(t, err)
	return ds
}

// stateOf is the state of hook's only delivery ("" when it has none, or
// several).
func stateOf(t *testing.T, q contractQueue, hook string) string {
	ds := listed(t, q, hook)
	if len(ds) != 1 {
		return ""
	}
	return ds[0].State
}

func put(t *testing.T, q contractQueue, evs ...webhook.Event) int {
	t.Helper()
	n, err := q.Enqueue(context.Background(), evs)
	require.NoError(t, err)
	return n
}

const wait, poll = 10 * time.Second, 5 * time.Millisecond

// TestContractDelivers: an enqueued event reaches the receiver once, with
// Ocean's headers, envelope and Standard Webhooks signature, and is listed
// delivered with its attempt.
func TestContractDelivers(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		rc := newScripted(t)
		fh := newFakeHooks()
		fh.add("h1", "u1", rc.URL+"/hook?token=x", "s3cret", "note")
		q, _ := s.open(t, fh, testOptions(nil))
		start(t, q)
		require.Equal(t, 1, put(t, q, event("u1", "note", `{"note":{"id":"n1"}}`)))

		require.Eventually(t, func() bool { return stateOf(t, q, "h1") == webhook.StateDelivered }, wait, poll)
		hits := rc.got()
		require.Len(t, hits, 1)
		h := hits[0]
		assert.Equal(t, "h1", h.Header.Get("X-Ocean-Hook-Id"))
		assert.Equal(t, "s3cret", h.Header.Get("X-Ocean-Hook-Secret"))
		assert.Equal(t, "127.0.0.1:61812", h.Header.Get("X-Ocean-Host"))
		assert.Equal(t, "Ocean-Hooks", h.Header.Get("User-Agent"))
		var env struct {
			Server, HookID, UserID, EventID, Type string
			Body                                  json.RawMessage
		}
		require.NoError(t, json.Unmarshal(h.Body, &env))
		assert.Equal(t, "http://127.0.0.1:61812", env.Server)
		assert.Equal(t, "h1", env.HookID)
		assert.Equal(t, "u1", env.UserID)
		assert.Equal(t, "note", env.Type)
		assert.JSONEq(t, `{"note":{"id":"n1"}}`, string(env.Body))
		assert.Equal(t, env.EventID, h.Header.Get("Webhook-Id"))
		assert.Equal(t, sign("s3cret", env.EventID, h.Header.Get("Webhook-Timestamp"), h.Body), h.Header.Get("Webhook-Signature"))

		d := listed(t, q, "h1")[0]
		assert.Equal(t, env.EventID, d.EventID)
		require.Len(t, d.Attempts, 1)
		assert.Equal(t, http.StatusNoContent, d.Attempts[0].Status)
		assert.Nil(t, d.NextAt)
	})
}

// TestContractRetries: a failed attempt is retried after the receiver's
// Retry-After (exactly, no jitter) or, without one, after the backoff
// (base plus up to 20 % jitter), with each attempt in the log; the
// delivery then succeeds.
func TestContractRetries(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		clock := newFakeClock()
		rc := newScripted(t)
		fh := newFakeHooks()
		fh.add("h1", "u1", rc.URL, "", "note")
		rc.answer("h1", answer{status: http.StatusServiceUnavailable, retryAfter: "120"})
		opts := testOptions(clock)
		opts.BackoffBase = time.Minute
		q, _ := s.open(t, fh, opts)
		start(t, q)
		put(t, q, event("u1", "note", `{}`))

		readyAfter := func(n int) webhook.Delivery {
			var d webhook.Delivery
			require.Eventually(t, func() bool {
				ds := listed(t, q, "h1")
				if len(ds) != 1 || len(ds[0].Attempts) != n || ds[0].State != webhook.StateReady {
					return false
				}
				d = ds[0]
				return true
			}, wait, poll)
			return d
		}
		d := readyAfter(1)
		assert.Equal(t, http.StatusServiceUnavailable, d.Attempts[0].Status)
		assert.Equal(t, "HTTP 503 Service Unavailable", d.Attempts[0].Error)
		require.NotNil(t, d.NextAt)
		assert.Equal(t, clock.Now().Add(120*time.Second), *d.NextAt, "Retry-After, without jitter")

		rc.answer("h1", answer{status: http.StatusInternalServerError})
		clock.Advance(120 * time.Second)
		d = readyAfter(2)
		require.NotNil(t, d.NextAt)
		wait2 := d.NextAt.Sub(clock.Now())
		assert.GreaterOrEqual(t, wait2, 3*time.Minute, "(2^2-1) × base")
		assert.LessOrEqual(t, wait2, 3*time.Minute*12/10)

		rc.answer("h1", answer{status: http.StatusOK})
		clock.Advance(wait2)
		require.Eventually(t, func() bool { return stateOf(t, q, "h1") == webhook.StateDelivered }, wait, poll)
		assert.Len(t, listed(t, q, "h1")[0].Attempts, 3)
		assert.Len(t, rc.got(), 3)
	})
}

// TestContractDeadLetters: a delivery out of attempts, or refused for good,
// is a dead letter: listed with its attempts, counted per hook, removed by
// the sweep once DeadLetterTTL has passed.
func TestContractDeadLetters(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		clock := newFakeClock()
		rc := newScripted(t)
		fh := newFakeHooks()
		fh.add("h1", "u1", rc.URL, "", "note")
		fh.add("h2", "u1", rc.URL, "", "note")
		rc.answer("h1", answer{status: http.StatusInternalServerError})
		rc.answer("h2", answer{status: http.StatusBadRequest})
		opts := testOptions(clock)
		opts.MaxAttempts = 2
		opts.DeadLetterTTL = time.Hour
		q, _ := s.open(t, fh, opts)
		start(t, q)
		put(t, q, event("u1", "note", `{}`))

		require.Eventually(t, func() bool { return stateOf(t, q, "h2") == webhook.StateDead }, wait, poll)
		require.Eventually(t, func() bool { return len(listed(t, q, "h1")[0].Attempts) == 1 }, wait, poll)
		clock.Advance(time.Hour)
		require.Eventually(t, func() bool { return stateOf(t, q, "h1") == webhook.StateDead }, wait, poll)
		assert.Len(t, listed(t, q, "h1")[0].Attempts, 2)
		assert.Len(t, listed(t, q, "h2")[0].Attempts, 1, "a 400 is final")
		assert.Equal(t, map[string]int{"h1": 1, "h2": 1}, q.DeadLetters())

		n, err := q.sweep(clock.Now())
		require.NoError(t, err)
		assert.Equal(t, 1, n, "h2's dead letter expired, h1's (an hour younger) not yet")
		assert.Empty(t, listed(t, q, "h2"))
		clock.Advance(time.Hour)
		n, err = q.sweep(clock.Now())
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		assert.Empty(t, listed(t, q, ""))
		assert.Empty(t, q.DeadLetters())
	})
}

// TestContractRedeliver: one dead letter is redelivered by id (same
// eventId, attempts reset), then all of a hook's in the background; an id
// of another hook is no such delivery.
func TestContractRedeliver(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		rc := newScripted(t)
		fh := newFakeHooks()
		fh.add("h1", "u1", rc.URL, "", "note")
		rc.answer("h1", answer{status: http.StatusNotFound})
		q, _ := s.open(t, fh, testOptions(nil))
		start(t, q)
		for range 3 {
			put(t, q, event("u1", "note", `{}`))
		}
		allDead := func() bool {
			ds := listed(t, q, "h1")
			for _, d := range ds {
				if d.State != webhook.StateDead {
					return false
				}
			}
			return len(ds) == 3
		}
		require.Eventually(t, allDead, wait, poll)
		rc.answer("h1", answer{status: http.StatusOK})
		ds := listed(t, q, "h1")

		_, err := q.Redeliver(context.Background(), "h2", ds[0].ID)
		assert.ErrorIs(t, err, webhook.ErrNoSuchDelivery)
		n, err := q.Redeliver(context.Background(), "h1", ds[0].ID)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		require.Eventually(t, func() bool { return listed(t, q, "h1")[0].State == webhook.StateDelivered }, wait, poll)
		assert.Equal(t, ds[0].EventID, listed(t, q, "h1")[0].EventID)
		assert.Equal(t, map[string]int{"h1": 2}, q.DeadLetters())

		_, err = q.Redeliver(context.Background(), "h1", "")
		require.NoError(t, err)
		require.Eventually(t, func() bool {
			for _, d := range listed(t, q, "h1") {
				if d.State != webhook.StateDelivered {
					return false
				}
			}
			return true
		}, wait, poll)
		assert.Empty(t, q.DeadLetters())
		assert.Len(t, rc.got(), 6)
	})
}

// TestContractCancel: a deleted hook's deliveries, waiting and dead, are
// removed in the background.
func TestContractCancel(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		clock := newFakeClock()
		rc := newScripted(t)
		fh := newFakeHooks()
		fh.add("h1", "u1", rc.URL, "", "note", "follow")
		fh.add("h2", "u1", rc.URL, "", "note")
		rc.answer("h1", answer{status: http.StatusServiceUnavailable})
		q, _ := s.open(t, fh, testOptions(clock))
		start(t, q)
		for range 5 {
			put(t, q, event("u1", "note", `{}`))
		}
		put(t, q, event("u1", "follow", `{}`))
		require.Eventually(t, func() bool {
			ds := listed(t, q, "h1")
			return len(ds) == 6 && ds[5].State == webhook.StateReady && len(ds[5].Attempts) == 1
		}, wait, poll)

		fh.remove("h1")
		require.NoError(t, q.CancelHook(context.Background(), "h1"))
		require.Eventually(t, func() bool { return len(listed(t, q, "h1")) == 0 }, wait, poll)
		assert.Len(t, listed(t, q, "h2"), 5, "other hooks keep theirs")
	})
}

// TestContractRestart: a queue opened again on the same store keeps what
// was waiting (with its attempts), what was dead and what was delivered,
// and goes on delivering.
func TestContractRestart(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		clock := newFakeClock()
		rc := newScripted(t)
		fh := newFakeHooks()
		fh.add("ok", "u1", rc.URL, "", "note")
		fh.add("retry", "u1", rc.URL, "", "note")
		fh.add("dead", "u1", rc.URL, "", "note")
		rc.answer("retry", answer{status: http.StatusBadGateway})
		rc.answer("dead", answer{status: http.StatusForbidden})
		q, reopen := s.open(t, fh, testOptions(clock))
		stop := start(t, q)
		put(t, q, event("u1", "note", `{}`))
		require.Eventually(t, func() bool {
			return stateOf(t, q, "ok") == webhook.StateDelivered && stateOf(t, q, "dead") == webhook.StateDead &&
				len(listed(t, q, "retry")[0].Attempts) == 1
		}, wait, poll)
		before := map[string]webhook.Delivery{}
		for _, h := range []string{"ok", "retry", "dead"} {
			before[h] = listed(t, q, h)[0]
		}
		stop()

		q = reopen()
		for h, d := range before {
			assert.Equal(t, []webhook.Delivery{d}, listed(t, q, h), h)
		}
		assert.Equal(t, map[string]int{"dead": 1}, q.DeadLetters())
		start(t, q)
		rc.answer("retry", answer{status: http.StatusOK})
		clock.Advance(time.Hour)
		require.Eventually(t, func() bool { return stateOf(t, q, "retry") == webhook.StateDelivered }, wait, poll)
		assert.Len(t, listed(t, q, "retry")[0].Attempts, 2)
	})
}

// TestContractHoldConfirmSettle: held deliveries wait; the confirming body
// replaces the held one under the same eventIds; a second confirmation is
// a repeat and a hold after it stores nothing; a confirmation nobody held
// is stored new; Settle releases or drops the holds whose time is up.
func TestContractHoldConfirmSettle(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		clock, rc, q := keyedQueue(t, s)
		ctx := context.Background()
		keyedEv := func(key, body string) webhook.Event { return keyed("u1", "mention", key, body) }

		n, err := q.Hold(ctx, []webhook.Event{keyedEv("k1", `{"v":"held"}`)}, clock.Now().Add(time.Minute), time.Hour)
		require.NoError(t, err)
		assert.Equal(t, 1, n)
		held := listed(t, q, "h1")
		require.Len(t, held, 1)
		assert.Equal(t, StateHeld, held[0].State)

		r, err := q.Confirm(ctx, []webhook.Event{keyedEv("k1", `{"v":"confirmed"}`)}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, ConfirmResult{Released: 1}, r)
		require.Eventually(t, func() bool { return len(rc.got()) == 1 }, wait, poll)
		var env envelopeView
		require.NoError(t, json.Unmarshal(rc.got()[0].Body, &env))
		assert.JSONEq(t, `{"v":"confirmed"}`, string(env.Body))
		assert.Equal(t, held[0].EventID, env.EventID)

		r, err = q.Confirm(ctx, []webhook.Event{keyedEv("k1", `{}`)}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, ConfirmResult{Repeats: 1}, r)
		n, err = q.Hold(ctx, []webhook.Event{keyedEv("k1", `{}`)}, clock.Now().Add(time.Minute), time.Hour)
		require.NoError(t, err)
		assert.Zero(t, n, "its twin was confirmed")

		r, err = q.Confirm(ctx, []webhook.Event{keyedEv("k2", `{"v":"new"}`)}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, ConfirmResult{New: 1}, r)
		require.Eventually(t, func() bool { return len(rc.got()) == 2 }, wait, poll)

		_, err = q.Hold(ctx, []webhook.Event{keyedEv("k3", `{"v":"k3"}`)}, clock.Now().Add(time.Minute), time.Hour)
		require.NoError(t, err)
		_, err = q.Hold(ctx, []webhook.Event{keyedEv("k4", `{"v":"k4"}`)}, clock.Now().Add(time.Minute), time.Hour)
		require.NoError(t, err)
		released, dropped, err := q.Settle(clock.Now(), 10, func(time.Time) bool { return true })
		require.NoError(t, err)
		assert.Equal(t, [2]int{0, 0}, [2]int{released, dropped}, "not due yet")
		first := true
		clock.Advance(time.Minute)
		released, dropped, err = q.Settle(clock.Now(), 10, func(time.Time) bool {
			keep := first
			first = false
			return keep
		})
		require.NoError(t, err)
		assert.Equal(t, [2]int{1, 1}, [2]int{released, dropped})
		require.Eventually(t, func() bool { return len(rc.got()) == 3 }, wait, poll)
		require.NoError(t, json.Unmarshal(rc.got()[2].Body, &env))
		assert.JSONEq(t, `{"v":"k3"}`, string(env.Body), "released with the body it was held with")
		assert.Len(t, listed(t, q, "h1"), 3)
	})
}

// TestContractForget: a confirmed key forgotten is unknown again, so the
// next Confirm of it stores its event as new (a reaction removed and made
// again); a held key and a key with credits are left as they are.
func TestContractForget(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		clock, rc, q := keyedQueue(t, s)
		ctx := context.Background()
		keyedEv := func(key, body string, recurs bool) webhook.Event {
			ev := keyed("u1", "mention", key, body)
			ev.Recurs = recurs
			return ev
		}

		r, err := q.Confirm(ctx, []webhook.Event{keyedEv("c", `{"v":"c1"}`, false)}, time.Hour)
		require.NoError(t, err)
		require.Equal(t, ConfirmResult{New: 1}, r)
		require.NoError(t, q.Forget(ctx, []string{"c", "unknown"}))
		r, err = q.Confirm(ctx, []webhook.Event{keyedEv("c", `{"v":"c2"}`, false)}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, ConfirmResult{New: 1}, r, "forgotten: a new event")
		r, err = q.Confirm(ctx, []webhook.Event{keyedEv("c", `{"v":"c3"}`, false)}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, ConfirmResult{Repeats: 1}, r, "confirmed again by the new event")

		n, err := q.Hold(ctx, []webhook.Event{keyedEv("h", `{"v":"held"}`, false)}, clock.Now().Add(time.Minute), time.Hour)
		require.NoError(t, err)
		require.Equal(t, 1, n)
		r, err = q.Confirm(ctx, []webhook.Event{keyedEv("n", `{"v":"credit"}`, true)}, time.Hour)
		require.NoError(t, err)
		require.Equal(t, ConfirmResult{New: 1}, r)
		require.NoError(t, q.Forget(ctx, []string{"h", "n"}))
		r, err = q.Confirm(ctx, []webhook.Event{keyedEv("h", `{"v":"confirmed"}`, false)}, time.Hour)
		require.NoError(t, err)
		assert.Equal(t, ConfirmResult{Released: 1}, r, "the hold is still there")
		n, err = q.Hold(ctx, []webhook.Event{keyedEv("n", `{}`, true)}, clock.Now().Add(time.Minute), time.Hour)
		require.NoError(t, err)
		assert.Zero(t, n, "the credit is still there")

		require.Eventually(t, func() bool { return len(rc.got()) == 4 }, wait, poll)
		var bodies []string
		for _, h := range rc.got() {
			var env envelopeView
			require.NoError(t, json.Unmarshal(h.Body, &env))
			bodies = append(bodies, string(env.Body))
		}
		assert.ElementsMatch(t, []string{`{"v":"c1"}`, `{"v":"c2"}`, `{"v":"confirmed"}`, `{"v":"credit"}`}, bodies)
	})
}

// TestContractListPages: a listing is newest first, limit at a time, the
// next page older than the last id listed; one hook's or every hook's.
func TestContractListPages(t *testing.T) {
	eachStore(t, func(t *testing.T, s store) {
		fh := newFakeHooks()
		fh.add("h1", "u1", "http://127.0.0.1:1/", "", "note")
		fh.add("h2", "u1", "http://127.0.0.1:1/", "", "note")
		q, _ := s.open(t, fh, testOptions(nil))
		for range 3 {
			put(t, q, event("u1", "note", `{}`))
		}
		ctx := context.Background()
		all := listed(t, q, "")
		require.Len(t, all, 6)
		for i := 1; i < len(all); i++ {
			assert.Greater(t, all[i-1].ID, all[i].ID, "newest first")
		}
		page, err := q.List(ctx, "h1", 2, "")
		require.NoError(t, err)
		require.Len(t, page, 2)
		rest, err := q.List(ctx, "h1", 2, page[1].ID)
		require.NoError(t, err)
		require.Len(t, rest, 1)
		assert.Less(t, rest[0].ID, page[1].ID)
		for _, d := range append(page, rest...) {
			assert.Equal(t, "h1", d.HookID)
		}
		older, err := q.List(ctx, "", 10, all[3].ID)
		require.NoError(t, err)
		assert.Equal(t, all[4:], older)
	})
}

// keyedQueue opens and runs a queue of s with one hook, h1 of u1 on
// `mention`, whose receiver answers as scripted.
func keyedQueue(t *testing.T, s store) (*fakeClock, *scripted, contractQueue) {
	t.Helper()
	clock := newFakeClock()
	rc := newScripted(t)
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "mention")
	q, _ := s.open(t, fh, testOptions(clock))
	start(t, q)
	return clock, rc, q
}
