package queue

import (
	"context"
	"encoding/json"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const remember = 10 * time.Minute

func keyed(user, typ, key, body string) webhook.Event {
	ev := event(user, typ, body)
	ev.Key = key
	return ev
}

func hold(t *testing.T, q *Queue, until time.Time, evs ...webhook.Event) int {
	t.Helper()
	n, err := q.Hold(context.Background(), evs, until, remember)
	require.NoError(t, err)
	return n
}

func confirm(t *testing.T, q *Queue, evs ...webhook.Event) ConfirmResult {
	t.Helper()
	r, err := q.Confirm(context.Background(), evs, remember)
	require.NoError(t, err)
	return r
}

type envelopeView struct {
	EventID string          `json:"eventId"`
	Body    json.RawMessage `json:"body"`
}

func envelopeOf(t *testing.T, h hit) envelopeView {
	t.Helper()
	var e envelopeView
	require.NoError(t, json.Unmarshal(h.Body, &e))
	return e
}

// heldQueue is a running queue with hooks h1 and h2 of u1 on `mention`,
// both delivering to one receiver.
func heldQueue(t *testing.T, clock *fakeClock) (*Queue, *receiver) {
	t.Helper()
	rc := newReceiver(t, always(http.StatusNoContent))
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "mention")
	fh.add("h2", "u1", rc.URL, "", "mention")
	q := openQueue(t, openDB(t, ""), fh, testOptions(clock))
	return q, rc
}

// TestHoldThenConfirm: held deliveries wait; the confirming body replaces the
// derived one and goes out at once, under the eventIds given at hold time.
func TestHoldThenConfirm(t *testing.T) {
	clock := newFakeClock()
	q, rc := heldQueue(t, clock)
	runQueue(t, q)

	assert.Equal(t, 2, hold(t, q, clock.Now().Add(time.Minute), keyed("u1", "mention", "k1", `{"note":{"id":"n1","text":"derived"}}`)))
	assert.Equal(t, int64(2), q.held.Load())
	held := list(t, q, "h1")
	require.Len(t, held, 1)
	assert.Equal(t, StateHeld, held[0].State)
	heldEventID := held[0].EventID

	r := confirm(t, q, keyed("u1", "mention", "k1", `{"note":{"id":"n1","text":null,"isHidden":true}}`))
	assert.Equal(t, ConfirmResult{Released: 2}, r)
	require.Eventually(t, func() bool { return rc.count() == 2 }, waitFor, tick)
	ids := map[string]bool{}
	for _, h := range rc.got() {
		e := envelopeOf(t, h)
		assert.JSONEq(t, `{"note":{"id":"n1","text":null,"isHidden":true}}`, string(e.Body))
		ids[e.EventID] = true
	}
	assert.True(t, ids[heldEventID], "the held delivery keeps its eventId")
	assert.Zero(t, q.held.Load())

	// The same event again (Ocean publishes a note twice) is a repeat.
	assert.Equal(t, ConfirmResult{Repeats: 1}, confirm(t, q, keyed("u1", "mention", "k1", `{"note":{"id":"n1"}}`)))
	// And the API deriving it once more holds nothing.
	assert.Zero(t, hold(t, q, clock.Now().Add(time.Minute), keyed("u1", "mention", "k1", `{}`)))
	assert.Never(t, func() bool { return rc.count() > 2 }, 100*time.Millisecond, tick)
	assertNoHoldLeftovers(t, q)
}

// TestConfirmThenHold: when the confirming source is first, its event is
// stored as new deliveries and a later hold of the same key stores nothing.
func TestConfirmThenHold(t *testing.T) {
	clock := newFakeClock()
	q, rc := heldQueue(t, clock)
	runQueue(t, q)
	assert.Equal(t, ConfirmResult{New: 2}, confirm(t, q, keyed("u1", "mention", "k1", `{"note":{"id":"n1","from":"stream"}}`)))
	assert.Zero(t, hold(t, q, clock.Now().Add(time.Minute), keyed("u1", "mention", "k1", `{"note":{"id":"n1","from":"api"}}`)))
	require.Eventually(t, func() bool { return rc.count() == 2 }, waitFor, tick)
	for _, h := range rc.got() {
		assert.JSONEq(t, `{"note":{"id":"n1","from":"stream"}}`, string(envelopeOf(t, h).Body))
	}
	assert.Zero(t, q.held.Load())
}

// TestSettle: a hold that ends unconfirmed is dropped or delivered with its
// own body, as the caller decides from when it was held; holds not yet due
// stay.
func TestSettle(t *testing.T) {
	clock := newFakeClock()
	q, rc := heldQueue(t, clock)
	runQueue(t, q)
	start := clock.Now()
	hold(t, q, start.Add(5*time.Second), keyed("u1", "mention", "drop-me", `{"note":{"id":"n1"}}`))
	clock.Advance(time.Second)
	hold(t, q, start.Add(6*time.Second), keyed("u1", "mention", "send-me", `{"note":{"id":"n2"}}`))
	clock.Advance(time.Second)
	hold(t, q, start.Add(60*time.Second), keyed("u1", "mention", "not-yet", `{"note":{"id":"n3"}}`))

	var asked []time.Time
	decide := func(heldAt time.Time) bool {
		asked = append(asked, heldAt)
		return heldAt.After(start) // the first was held while "the stream was down"
	}
	clock.Advance(8 * time.Second)
	released, dropped, err := q.Settle(clock.Now(), 100, decide)
	require.NoError(t, err)
	assert.Equal(t, 2, released)
	assert.Equal(t, 2, dropped)
	assert.Len(t, asked, 4)
	require.Eventually(t, func() bool { return rc.count() == 2 }, waitFor, tick)
	for _, h := range rc.got() {
		assert.JSONEq(t, `{"note":{"id":"n2"}}`, string(envelopeOf(t, h).Body))
	}
	assert.Equal(t, int64(2), q.held.Load())
	assert.Len(t, list(t, q, "h1"), 2, "the dropped delivery is gone, the sent and the waiting ones stay")

	// A confirmation after the drop is a new event for the stream: sent once.
	assert.Equal(t, ConfirmResult{New: 2}, confirm(t, q, keyed("u1", "mention", "drop-me", `{"note":{"id":"n1","late":true}}`)))
	require.Eventually(t, func() bool { return rc.count() == 4 }, waitFor, tick)
}

// TestHoldSurvivesRestart: held deliveries are on disk; after a restart they
// are counted and can be settled.
func TestHoldSurvivesRestart(t *testing.T) {
	clock := newFakeClock()
	dir := t.TempDir()
	rc := newReceiver(t, always(http.StatusNoContent))
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "note")
	db, err := badger.Open(testBadgerOptions(dir))
	require.NoError(t, err)
	q := openQueue(t, db, fh, testOptions(clock))
	hold(t, q, clock.Now().Add(5*time.Second), keyed("u1", "note", "n1", `{"note":{"id":"n1"}}`))
	require.NoError(t, db.Close())

	q = openQueue(t, openDB(t, dir), fh, testOptions(clock))
	assert.Equal(t, int64(1), q.held.Load())
	runQueue(t, q)
	clock.Advance(5 * time.Second)
	released, dropped, err := q.Settle(clock.Now(), 100, func(time.Time) bool { return true })
	require.NoError(t, err)
	assert.Equal(t, [2]int{1, 0}, [2]int{released, dropped})
	require.Eventually(t, func() bool { return rc.count() == 1 }, waitFor, tick)
	assertNoHoldLeftovers(t, q)
}

// TestHoldAndConfirmRace: whatever the order of concurrent Hold and Confirm
// of one key, exactly one delivery per hook is ready once holds are settled
// as dropped (the stream was up).
func TestHoldAndConfirmRace(t *testing.T) {
	clock := newFakeClock()
	q, rc := heldQueue(t, clock)
	runQueue(t, q)
	const n = 30
	var wg sync.WaitGroup
	for i := range n {
		k := "k" + string(rune('a'+i%26)) + string(rune('a'+i/26))
		wg.Go(func() { hold(t, q, clock.Now().Add(time.Second), keyed("u1", "mention", k, `{"from":"api"}`)) })
		wg.Go(func() { confirm(t, q, keyed("u1", "mention", k, `{"from":"stream"}`)) })
	}
	wg.Wait()
	clock.Advance(time.Second)
	_, _, err := q.Settle(clock.Now(), 1000, func(time.Time) bool { return false })
	require.NoError(t, err)
	require.Eventually(t, func() bool { return rc.count() == 2*n }, waitFor, tick)
	assert.Never(t, func() bool { return rc.count() > 2*n }, 100*time.Millisecond, tick)
	for _, h := range rc.got() {
		assert.JSONEq(t, `{"from":"stream"}`, string(envelopeOf(t, h).Body))
	}
}

// TestHoldNeedsKeys: an event without a key cannot be held or confirmed.
func TestHoldNeedsKeys(t *testing.T) {
	q, _ := heldQueue(t, nil)
	_, err := q.Hold(context.Background(), []webhook.Event{event("u1", "mention", `{}`)}, time.Now(), remember)
	assert.Error(t, err)
	_, err = q.Confirm(context.Background(), []webhook.Event{event("u1", "mention", `{}`)}, remember)
	assert.Error(t, err)
}

// assertNoHoldLeftovers: no hold index entry outlives its hold.
func assertNoHoldLeftovers(t *testing.T, q *Queue) {
	t.Helper()
	for _, k := range allKeys(t, q) {
		assert.False(t, strings.HasPrefix(k, pHeld) || strings.HasPrefix(k, pHeldByKey), "leftover %q", k)
	}
}

// TestRecurringKeys: a follow, an unfollow and a follow again share their
// keys; each occurrence is matched one to one across sources, none is
// taken for a repeat.
func TestRecurringKeys(t *testing.T) {
	clock := newFakeClock()
	rc := newReceiver(t, always(http.StatusNoContent))
	fh := newFakeHooks()
	fh.add("h1", "u1", rc.URL, "", "follow")
	q := openQueue(t, openDB(t, ""), fh, testOptions(clock))
	runQueue(t, q)
	follow := func(body string) webhook.Event {
		ev := keyed("u1", "follow", "follow|u1|u2", body)
		ev.Recurs = true
		return ev
	}
	until := clock.Now().Add(time.Minute)

	// Two follows held (the API saw both before the stream), one confirmed:
	// the older is released, the newer waits for its own twin.
	hold(t, q, until, follow(`{"n":1,"from":"api"}`))
	hold(t, q, until, follow(`{"n":2,"from":"api"}`))
	assert.Equal(t, ConfirmResult{Released: 1}, confirm(t, q, follow(`{"n":1,"from":"stream"}`)))
	assert.Equal(t, int64(1), q.held.Load())
	assert.Equal(t, ConfirmResult{Released: 1}, confirm(t, q, follow(`{"n":2,"from":"stream"}`)))
	// The stream first twice: both are new, and each later API copy uses up
	// one credit instead of being held.
	assert.Equal(t, ConfirmResult{New: 1}, confirm(t, q, follow(`{"n":3,"from":"stream"}`)))
	assert.Equal(t, ConfirmResult{New: 1}, confirm(t, q, follow(`{"n":4,"from":"stream"}`)))
	assert.Zero(t, hold(t, q, until, follow(`{"n":3,"from":"api"}`)))
	assert.Zero(t, hold(t, q, until, follow(`{"n":4,"from":"api"}`)))
	// A fifth, seen by the API only, is held.
	assert.Equal(t, 1, hold(t, q, until, follow(`{"n":5,"from":"api"}`)))

	require.Eventually(t, func() bool { return rc.count() == 4 }, waitFor, tick)
	var got []string
	for _, h := range rc.got() {
		got = append(got, string(envelopeOf(t, h).Body))
	}
	assert.ElementsMatch(t, []string{`{"n":1,"from":"stream"}`, `{"n":2,"from":"stream"}`, `{"n":3,"from":"stream"}`, `{"n":4,"from":"stream"}`}, got)
	assert.Equal(t, int64(1), q.held.Load())
}

// TestCancelHookEndsHolds: deleting a hook removes its held deliveries with
// their hold index entries.
func TestCancelHookEndsHolds(t *testing.T) {
	clock := newFakeClock()
	q, rc := heldQueue(t, clock)
	runQueue(t, q)
	hold(t, q, clock.Now().Add(time.Minute), keyed("u1", "mention", "k1", `{}`))
	require.NoError(t, q.CancelHook(context.Background(), "h1"))
	require.Eventually(t, func() bool { return q.held.Load() == 1 }, waitFor, tick)
	require.NoError(t, q.CancelHook(context.Background(), "h2"))
	require.Eventually(t, func() bool { return q.held.Load() == 0 }, waitFor, tick)
	assertNoHoldLeftovers(t, q)
	assert.Zero(t, rc.count())
	assert.Zero(t, confirm(t, q, keyed("u1", "mention", "k1", `{}`)).Released, "nothing is held any more")
}

// TestRedeliverLeavesHoldsAlone: a held delivery is not made ready by a
// redelivery; it goes out when its hold ends.
func TestRedeliverLeavesHoldsAlone(t *testing.T) {
	clock := newFakeClock()
	q, rc := heldQueue(t, clock)
	runQueue(t, q)
	hold(t, q, clock.Now().Add(time.Minute), keyed("u1", "mention", "k1", `{}`))
	held := list(t, q, "h1")
	require.Len(t, held, 1)
	_, _ = q.Redeliver(context.Background(), "h1", held[0].ID)
	assert.Equal(t, StateHeld, list(t, q, "h1")[0].State)
	assert.Equal(t, int64(2), q.held.Load())
	assert.Never(t, func() bool { return rc.count() > 0 }, 100*time.Millisecond, tick)
}

// TestHoldAndConfirmTooLargeForOneTransaction: a Hold or a Confirm whose
// deliveries do not fit in one Badger transaction (many events of users
// with many hooks: the stream hands up to 64 events at once) is written in
// several, each event whole in one, and answered once all are on disk: it
// does not fail as too big (the stream retried such a batch for ever).
func TestHoldAndConfirmTooLargeForOneTransaction(t *testing.T) {
	const events, hooksEach = 64, 40
	clock := newFakeClock()
	fh := newFakeHooks()
	for i := range hooksEach {
		fh.add("h"+strconv.Itoa(i), "u1", "http://example.invalid/", "", "mention")
	}
	q := openQueue(t, openDB(t, ""), fh, testOptions(clock))
	evs := func(prefix string) []webhook.Event {
		out := make([]webhook.Event, events)
		for i := range out {
			out[i] = keyed("u1", "mention", prefix+strconv.Itoa(i), `{"n":`+strconv.Itoa(i)+`}`)
		}
		return out
	}

	// Confirmed first: stored as new deliveries.
	r := confirm(t, q, evs("a")...)
	assert.Equal(t, ConfirmResult{New: events * hooksEach}, r)
	assert.Equal(t, int64(events*hooksEach), q.readyKeys.Load())

	// Held, then confirmed: released with the confirming body.
	assert.Equal(t, events*hooksEach, hold(t, q, clock.Now().Add(time.Minute), evs("b")...))
	assert.Equal(t, int64(events*hooksEach), q.held.Load())
	r = confirm(t, q, evs("b")...)
	assert.Equal(t, ConfirmResult{Released: events * hooksEach}, r)
	assert.Zero(t, q.held.Load())
	assert.Equal(t, int64(2*events*hooksEach), q.readyKeys.Load())

	// Repeats stay repeats.
	r = confirm(t, q, evs("a")...)
	assert.Equal(t, ConfirmResult{Repeats: events}, r)
	assert.Zero(t, hold(t, q, clock.Now().Add(time.Minute), evs("a")...))
}
