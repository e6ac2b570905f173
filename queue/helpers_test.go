package queue

import (
	"context"
	"encoding/json"
	"io"
	"math/rand/v2"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// fakeHooks is an in-memory hook store.
type fakeHooks struct {
	mu          sync.Mutex
	targets     map[string]webhook.Target // by hook id
	subs        map[[2]string][]string    // (user, type) → hook ids
	recorded    []recorded
	batches     int // RecordAttempts calls
	refuse      int // RecordAttempts calls still to fail
	deactivated map[string]bool
}

type recorded struct {
	Hook   string
	At     time.Time
	Status int
}

func newFakeHooks() *fakeHooks {
	return &fakeHooks{targets: map[string]webhook.Target{}, subs: map[[2]string][]string{}, deactivated: map[string]bool{}}
}

// add registers an active hook of user for types.
func (f *fakeHooks) add(id, user, url, secret string, types ...string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.targets[id] = webhook.Target{HookID: id, UserID: user, URL: url, Secret: secret, Active: true}
	for _, t := range types {
		f.subs[[2]string{user, t}] = append(f.subs[[2]string{user, t}], id)
	}
}

func (f *fakeHooks) setURL(id, url string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t := f.targets[id]
	t.URL = url
	f.targets[id] = t
}

func (f *fakeHooks) remove(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	delete(f.targets, id)
}

func (f *fakeHooks) ActiveHooks(user, typ string) []webhook.Target {
	f.mu.Lock()
	defer f.mu.Unlock()
	var out []webhook.Target
	for _, id := range f.subs[[2]string{user, typ}] {
		if t, ok := f.targets[id]; ok && t.Active {
			out = append(out, t)
		}
	}
	return out
}

func (f *fakeHooks) Target(id string) (webhook.Target, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	t, ok := f.targets[id]
	return t, ok
}

func (f *fakeHooks) RecordAttempt(id string, at time.Time, status int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.recorded = append(f.recorded, recorded{id, at, status})
}

// RecordAttempts makes fakeHooks an attemptBatcher, as hooks.Store is.
func (f *fakeHooks) RecordAttempts(latest map[string]webhook.LatestAttempt) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.batches++
	if f.refuse > 0 {
		f.refuse--
		return errInjected
	}
	for id, a := range latest {
		f.recorded = append(f.recorded, recorded{id, a.At, a.Status})
	}
	return nil
}

// latest is the last recorded attempt of each hook.
func (f *fakeHooks) latest() map[string]recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	m := map[string]recorded{}
	for _, r := range f.recorded {
		m[r.Hook] = r
	}
	return m
}

func (f *fakeHooks) Deactivate(id string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.deactivated[id] = true
	t := f.targets[id]
	t.Active = false
	f.targets[id] = t
}

func (f *fakeHooks) attempts() []recorded {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]recorded(nil), f.recorded...)
}

func (f *fakeHooks) isDeactivated(id string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.deactivated[id]
}

// fakeClock is a settable clock.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock {
	return &fakeClock{now: time.Date(2026, 11, 26, 20, 49, 32, 0, time.UTC)}
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.now
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.now = c.now.Add(d)
}

// openDB opens Badger on a fresh directory with the production options made
// small for tests.
func openDB(t testing.TB, dir string) *badger.DB {
	t.Helper()
	if dir == "" {
		dir = t.TempDir()
	}
	db, err := badger.Open(testBadgerOptions(dir))
	require.NoError(t, err)
	t.Cleanup(func() { _ = db.Close() })
	return db
}

func testBadgerOptions(dir string) badger.Options {
	return BadgerOptions(dir).WithMemTableSize(4 << 20).WithValueLogFileSize(8 << 20).
		WithBlockCacheSize(1 << 20).WithNumCompactors(2)
}

var loopback = []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("::1/128")}

// testOptions are quick options: loopback allowed, no quick retries, fast
// polling, a seeded jitter source and the given clock.
func testOptions(clock *fakeClock) Options {
	o := Options{
		ServerURL:              "http://127.0.0.1:61812/",
		AllowedPrivateNetworks: loopback,
		QuickRetries:           -1,
		QuickRetryWait:         time.Millisecond,
		AttemptTimeout:         5 * time.Second,
		PollInterval:           5 * time.Millisecond,
		ShutdownGrace:          200 * time.Millisecond,
		Rand:                   rand.New(rand.NewPCG(1, 2)),
	}
	if clock != nil {
		o.Now = clock.Now
	}
	return o
}

func openQueue(t testing.TB, db *badger.DB, hooks Hooks, opts Options) *Queue {
	t.Helper()
	q, err := Open(db, hooks, opts)
	require.NoError(t, err)
	return q
}

// runQueue runs q until the test ends.
func runQueue(t testing.TB, q *Queue) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- q.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		require.NoError(t, <-done)
	})
}

// hit is one request a receiver saw.
type hit struct {
	Header http.Header
	Body   []byte
	Status int
}

// eventID is the envelope's eventId.
func (h hit) eventID() string {
	var env struct {
		EventID string `json:"eventId"`
	}
	_ = json.Unmarshal(h.Body, &env)
	return env.EventID
}

// receiver is a webhook receiver on loopback answering with status().
type receiver struct {
	*httptest.Server
	mu     sync.Mutex
	hits   []hit
	status func(r *http.Request) int
}

func newReceiver(t testing.TB, status func(r *http.Request) int) *receiver {
	t.Helper()
	rc := &receiver{status: status}
	rc.Server = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		code := http.StatusNoContent
		if rc.status != nil {
			code = rc.status(r)
		}
		rc.mu.Lock()
		rc.hits = append(rc.hits, hit{Header: r.Header.Clone(), Body: body, Status: code})
		rc.mu.Unlock()
		w.WriteHeader(code)
	}))
	t.Cleanup(rc.Close)
	return rc
}

func (rc *receiver) got() []hit {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return append([]hit(nil), rc.hits...)
}

func (rc *receiver) count() int {
	rc.mu.Lock()
	defer rc.mu.Unlock()
	return len(rc.hits)
}

func always(code int) func(*http.Request) int { return func(*http.Request) int { return code } }

func event(user, typ, body string) webhook.Event {
	return webhook.Event{Type: typ, UserID: user, Body: json.RawMessage(body)}
}

func enqueue(t testing.TB, q *Queue, events ...webhook.Event) int {
	t.Helper()
	n, err := q.Enqueue(context.Background(), events)
	require.NoError(t, err)
	return n
}

func list(t testing.TB, q *Queue, hook string) []webhook.Delivery {
	t.Helper()
	ds, err := q.List(context.Background(), hook, MaxListLimit, "")
	require.NoError(t, err)
	return ds
}

// allKeys lists every key in the database.
func allKeys(t testing.TB, q *Queue) []string {
	t.Helper()
	var keys []string
	require.NoError(t, q.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			keys = append(keys, string(it.Item().KeyCopy(nil)))
		}
		return nil
	}))
	return keys
}

// leaseDue leases up to n of hook's deliveries due now, as the dispatcher
// does, without attempting them; each lease holds its record.
func leaseDue(t testing.TB, q *Queue, hook string, n int) []*lease {
	t.Helper()
	now := q.opts.Now().UnixMilli()
	var got []*lease
	for len(got) < n {
		q.mu.Lock()
		st := q.stateLocked(hook)
		taken := q.takeLocked(st, now, n-len(got))
		if len(taken) > 0 {
			st.inflight += len(taken)
			q.busy += len(taken)
			q.placeLocked(st)
			q.mu.Unlock()
			got = append(got, taken...)
			continue
		}
		if st.next() > now {
			q.mu.Unlock()
			break
		}
		st.reading = true
		from := st.from
		q.mu.Unlock()
		refs, next, after, err := q.readReady(hook, from, now, readAhead)
		require.NoError(t, err)
		q.mu.Lock()
		q.mergeReadLocked(st, refs, next, after, nil, now)
		q.mu.Unlock()
	}
	for _, l := range got {
		rec, _, err := q.readDelivery(l)
		require.NoError(t, err)
		l.rec = rec
		q.release(hook) // the worker slot: these leases have no attempt
	}
	return got
}

// settleNow commits the outcome update of l at once and returns the state
// it left ("" when nothing was written or the delivery was removed).
func settleNow(t testing.TB, q *Queue, l *lease, update updateFunc) string {
	t.Helper()
	var res outcomeResult
	require.NoError(t, q.commits.wait(q.outcomeApply(l, update, &res), func() { q.outcomeDone(l, res) }))
	return res.state
}
