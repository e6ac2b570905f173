package queue

import (
	"errors"
	"net/http"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// faults injects store errors into q through its fault seam: fail(op, n)
// says whether the n-th call (from 1) of op fails.
type faults struct {
	mu    sync.Mutex
	calls map[string]int
	fail  func(op string, n int) bool
}

var errInjected = errors.New("injected store error")

func inject(q *Queue, fail func(op string, n int) bool) *faults {
	f := &faults{calls: map[string]int{}, fail: fail}
	q.fault = func(op string) error {
		f.mu.Lock()
		defer f.mu.Unlock()
		f.calls[op]++
		if f.fail(op, f.calls[op]) {
			return errInjected
		}
		return nil
	}
	return f
}

func (f *faults) count(op string) int {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.calls[op]
}

// only delivery of hook h1, for the checks below.
func only(t *testing.T, q *Queue) webhook.Delivery {
	t.Helper()
	ds := list(t, q, "h1")
	require.Len(t, ds, 1)
	return ds[0]
}

// TestUnreadableBodyIsRetriedWithBackoffThenDead: a delivery whose stored
// body cannot be read is not claimed again at once (it was, forever): each
// failed read is a failed attempt with the reason in the attempt log, retried
// after the backoff, and the delivery ends dead after MaxAttempts. Nothing
// reaches the receiver or the hook's latestStatus.
func TestUnreadableBodyIsRetriedWithBackoffThenDead(t *testing.T) {
	clock := newFakeClock()
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	opts := testOptions(clock)
	opts.MaxAttempts = 3
	q := openQueue(t, openDB(t, ""), hooks, opts)
	f := inject(q, func(op string, _ int) bool { return op == "body" })
	runQueue(t, q)
	enqueue(t, q, event("u1", "note", `{}`))

	for n := 1; n <= 3; n++ {
		require.Eventually(t, func() bool { return len(only(t, q).Attempts) == n && q.leased.Load() == 0 }, waitFor, tick, "attempt %d", n)
		d := only(t, q)
		a := d.Attempts[n-1]
		assert.Equal(t, 0, a.Status, "nothing was sent")
		assert.Equal(t, "stored delivery could not be read: "+errInjected.Error(), a.Error)
		assert.Equal(t, n, f.count("body"))
		if n < 3 {
			assert.Equal(t, webhook.StateReady, d.State)
			require.NotNil(t, d.NextAt)
			assert.True(t, d.NextAt.After(clock.Now()), "due after a backoff, not at once")
			assert.Never(t, func() bool { return f.count("body") > n }, 50*time.Millisecond, tick, "not claimed again before it is due")
			clock.Advance(time.Duration(1<<n) * DefaultBackoffBase)
		} else {
			assert.Equal(t, webhook.StateDead, d.State)
			assert.Equal(t, int64(1), q.dead.Load())
		}
	}
	assert.Zero(t, rc.count())
	assert.Empty(t, hooks.attempts())
}

// TestMissingBodyIsDeadAtOnce: a body that is gone will not come back.
func TestMissingBodyIsDeadAtOnce(t *testing.T) {
	rc := newReceiver(t, always(http.StatusOK))
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, openDB(t, ""), hooks, testOptions(newFakeClock()))
	enqueue(t, q, event("u1", "note", `{}`))
	id := only(t, q).ID
	require.NoError(t, q.db.Update(func(txn *badger.Txn) error { return txn.Delete(keyBody(id)) }))
	runQueue(t, q)
	require.Eventually(t, func() bool { return only(t, q).State == webhook.StateDead }, waitFor, tick)
	a := only(t, q).Attempts
	require.Len(t, a, 1)
	assert.Contains(t, a[0].Error, "stored delivery could not be read: ")
	assert.Contains(t, a[0].Error, badger.ErrKeyNotFound.Error())
	assert.Zero(t, rc.count())
}

// TestFailedOutcomeCommitNeverLeavesALease: when the commit of an attempt's
// outcome fails, the delivery does not stay leased until a restart: a failed
// attempt is recorded instead (the reason in the attempt log), so it is
// retried after a backoff and, out of attempts, ends dead; when that commit
// fails too, Run commits it later.
func TestFailedOutcomeCommitNeverLeavesALease(t *testing.T) {
	cases := []struct {
		name   string
		status int
		fail   func(n int) bool // which settle commits fail
		state  string           // after the first attempt
	}{
		{name: "success not recorded is sent again", status: http.StatusOK, fail: func(n int) bool { return n == 1 }, state: webhook.StateReady},
		{name: "retry not recorded", status: http.StatusServiceUnavailable, fail: func(n int) bool { return n == 1 }, state: webhook.StateReady},
		{name: "final failure not recorded stays final", status: http.StatusForbidden, fail: func(n int) bool { return n == 1 }, state: webhook.StateDead},
		{name: "both commits fail: Run commits it later", status: http.StatusOK, fail: func(n int) bool { return n <= 3 }, state: webhook.StateReady},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := newFakeClock()
			rc := newReceiver(t, always(tc.status))
			hooks := newFakeHooks()
			hooks.add("h1", "u1", rc.URL, "", "note")
			q := openQueue(t, openDB(t, ""), hooks, testOptions(clock))
			inject(q, func(op string, n int) bool { return op == "settle" && tc.fail(n) })
			runQueue(t, q)
			enqueue(t, q, event("u1", "note", `{}`))
			require.Eventually(t, func() bool {
				d := only(t, q)
				return q.leased.Load() == 0 && d.State == tc.state && len(d.Attempts) == 1
			}, waitFor, tick)
			d := only(t, q)
			require.Len(t, d.Attempts, 1)
			assert.Equal(t, tc.status, d.Attempts[0].Status)
			assert.Contains(t, d.Attempts[0].Error, "outcome not recorded: settle delivery: "+errInjected.Error())
			assert.Empty(t, keysWithPrefix(t, q, pLease), "no lease is left")
			if tc.state == webhook.StateDead {
				return
			}
			require.NotNil(t, d.NextAt)
			assert.True(t, d.NextAt.After(clock.Now()), "retried after a backoff")
			if tc.status == http.StatusOK {
				clock.Advance(2 * time.Minute)
				require.Eventually(t, func() bool { return only(t, q).State == webhook.StateDelivered }, waitFor, tick)
				assert.Equal(t, 2, rc.count())
				assert.Equal(t, rc.got()[0].eventID(), rc.got()[1].eventID(), "sent again with the same eventId")
			}
		})
	}
	t.Run("every outcome commit fails: dead after MaxAttempts", func(t *testing.T) {
		clock := newFakeClock()
		rc := newReceiver(t, always(http.StatusOK))
		hooks := newFakeHooks()
		hooks.add("h1", "u1", rc.URL, "", "note")
		opts := testOptions(clock)
		opts.MaxAttempts = 2
		q := openQueue(t, openDB(t, ""), hooks, opts)
		// The first commit of each attempt (its real outcome) fails; the
		// failed attempt recorded instead goes through.
		inject(q, func(op string, n int) bool { return op == "settle" && n%2 == 1 })
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`))
		require.Eventually(t, func() bool {
			d := only(t, q)
			return d.State == webhook.StateReady && len(d.Attempts) == 1 && q.leased.Load() == 0
		}, waitFor, tick)
		clock.Advance(2 * time.Minute)
		require.Eventually(t, func() bool { return only(t, q).State == webhook.StateDead }, waitFor, tick)
		d := only(t, q)
		require.Len(t, d.Attempts, 2)
		for _, a := range d.Attempts {
			assert.Contains(t, a.Error, "outcome not recorded")
		}
		assert.Equal(t, int64(0), q.leased.Load())
		assert.Equal(t, int64(1), q.dead.Load())
	})
}

// keysWithPrefix lists the keys under prefix.
func keysWithPrefix(t *testing.T, q *Queue, prefix string) []string {
	t.Helper()
	var keys []string
	for _, k := range allKeys(t, q) {
		if len(k) >= len(prefix) && k[:len(prefix)] == prefix {
			keys = append(keys, k)
		}
	}
	return keys
}
