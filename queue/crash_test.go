package queue

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

const (
	helperDirEnv   = "QUEUE_CRASH_DIR"
	helperStartEnv = "QUEUE_CRASH_START"
	helperURLEnv   = "QUEUE_CRASH_URL"
	helperModeEnv  = "QUEUE_CRASH_MODE" // "" (TestCrashSafety), "group" or "unpersisted"
)

// TestHelperProcess is the process TestCrashSafety kills: it opens the store,
// runs the queue against a receiver that keeps failing (so that leases and
// retries are on disk too) and enqueues events numbered from START, printing
// each number once Enqueue has returned. It does nothing in a normal run.
func TestHelperProcess(t *testing.T) {
	dir := os.Getenv(helperDirEnv)
	if dir == "" {
		return
	}
	start, err := strconv.Atoi(os.Getenv(helperStartEnv))
	require.NoError(t, err)
	db, err := badger.Open(testBadgerOptions(dir))
	require.NoError(t, err)
	switch os.Getenv(helperModeEnv) {
	case "group":
		groupHelper(t, db, start)
		return
	case "unpersisted":
		unpersistedHelper(t, db)
		return
	}
	hooks := newFakeHooks()
	hooks.add("hcrash", "u1", os.Getenv(helperURLEnv), "", "note")
	opts := testOptions(nil)
	opts.BackoffBase = time.Millisecond
	opts.BackoffCap = 5 * time.Millisecond
	opts.MaxAttempts = math.MaxInt32 // retried, never dead: each must be delivered after the restart
	q, err := Open(db, hooks, opts)
	require.NoError(t, err)
	go func() { _ = q.Run(context.Background()) }()
	out := bufio.NewWriter(os.Stdout)
	for i := start; ; i++ {
		if _, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{"n":`+strconv.Itoa(i)+`}`)}); err != nil {
			fmt.Fprintln(os.Stderr, "enqueue:", err)
			os.Exit(3)
		}
		fmt.Fprintf(out, "ok %d\n", i)
		_ = out.Flush()
	}
}

// TestCrashSafety kills a process that enqueues with SIGKILL at random
// moments, several times, then delivers from the same directory: every event
// whose Enqueue returned reaches the receiver.
func TestCrashSafety(t *testing.T) {
	dir := t.TempDir()
	failing := newReceiver(t, always(http.StatusServiceUnavailable))
	rnd := rand.New(rand.NewPCG(42, 42))
	acked := map[int]bool{}
	next := 0
	for round := range 4 {
		cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
		cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperStartEnv+"="+strconv.Itoa(next), helperURLEnv+"="+failing.URL)
		stdout, err := cmd.StdoutPipe()
		require.NoError(t, err)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		require.NoError(t, cmd.Start())
		var mu sync.Mutex
		count := 0
		done := make(chan struct{})
		go func() {
			defer close(done)
			sc := bufio.NewScanner(stdout)
			for sc.Scan() {
				if n, ok := strings.CutPrefix(sc.Text(), "ok "); ok {
					i, err := strconv.Atoi(n)
					if err == nil {
						mu.Lock()
						acked[i] = true
						next = max(next, i+1)
						count++
						mu.Unlock()
					}
				}
			}
		}()
		// Kill after a random number of acknowledged enqueues, mid-stream.
		target := 20 + rnd.IntN(200)
		require.Eventually(t, func() bool { mu.Lock(); defer mu.Unlock(); return count >= target }, 60*time.Second, time.Millisecond,
			"round %d: helper stderr: %s", round, &stderr)
		time.Sleep(time.Duration(rnd.IntN(3000)) * time.Microsecond) // a random point in the next enqueue
		require.NoError(t, cmd.Process.Kill())
		<-done
		_ = cmd.Wait()
		t.Logf("round %d: %d events acknowledged before SIGKILL", round, count)
	}
	require.NotEmpty(t, acked)

	// Restart: every acknowledged event is delivered.
	var mu sync.Mutex
	got := map[int]bool{}
	ok := newReceiver(t, func(r *http.Request) int { return http.StatusOK })
	db := openDB(t, dir)
	hooks := newFakeHooks()
	hooks.add("hcrash", "u1", ok.URL, "", "note")
	clock := newFakeClock()
	clock.now = time.Now().Add(24 * time.Hour) // every retry is due
	q := openQueue(t, db, hooks, testOptions(clock))
	for _, k := range allKeys(t, q) {
		assert.False(t, strings.HasPrefix(k, pLease), "lease %q returned at Open", k)
	}
	runQueue(t, q)
	require.Eventually(t, func() bool {
		for _, h := range ok.got() {
			var env struct {
				EventID string          `json:"eventId"`
				Body    json.RawMessage `json:"body"`
			}
			if json.Unmarshal(h.Body, &env) != nil {
				continue
			}
			var b struct{ N int }
			if json.Unmarshal(env.Body, &b) == nil {
				mu.Lock()
				got[b.N] = true
				mu.Unlock()
			}
		}
		mu.Lock()
		defer mu.Unlock()
		for i := range acked {
			if !got[i] {
				return false
			}
		}
		return true
	}, 60*time.Second, 20*time.Millisecond)
	t.Logf("%d acknowledged events all delivered after %d kills", len(acked), 4)
}

// groupHelper is the process TestCrashDuringGroupCommit kills: 8 callers
// enqueue events numbered from start for two hooks each (no Run: the
// deliveries stay stored), each number printed once its Enqueue returned.
// Every commit takes a little longer than the disk alone would, so that a
// kill falls in a commit in flight more often than not.
func groupHelper(t *testing.T, db *badger.DB, start int) {
	hooks := newFakeHooks()
	hooks.add("ha", "u1", "http://example.invalid/", "", "note")
	hooks.add("hb", "u1", "http://example.invalid/", "", "note")
	q, err := Open(db, hooks, testOptions(nil))
	require.NoError(t, err)
	q.commits.before = func() { time.Sleep(time.Millisecond) }
	var mu sync.Mutex
	out := bufio.NewWriter(os.Stdout)
	var next atomic.Int64
	next.Store(int64(start))
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for {
				i := next.Add(1) - 1
				if _, err := q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{"n":`+strconv.FormatInt(i, 10)+`}`)}); err != nil {
					fmt.Fprintln(os.Stderr, "enqueue:", err)
					os.Exit(3)
				}
				mu.Lock()
				fmt.Fprintf(out, "ok %d\n", i)
				_ = out.Flush()
				mu.Unlock()
			}
		})
	}
	wg.Wait()
}

// unpersistedHelper is the process TestCrashAfterUnpersistedSuccess kills:
// it enqueues one event, then delivers it while no commit can complete (as
// if the process died before the outcome's commit), printing "sent" once
// the attempt ended.
func unpersistedHelper(t *testing.T, db *badger.DB) {
	hooks := newFakeHooks()
	hooks.add("h1", "u1", os.Getenv(helperURLEnv), "", "note")
	q, err := Open(db, hooks, testOptions(nil))
	require.NoError(t, err)
	if len(list(t, q, "h1")) == 0 {
		_, err = q.Enqueue(context.Background(), []webhook.Event{event("u1", "note", `{"n":1}`)})
		require.NoError(t, err)
	}
	q.commits.before = func() { select {} } // no outcome reaches the disk
	go func() { _ = q.Run(context.Background()) }()
	require.Eventually(t, func() bool {
		q.mu.Lock()
		defer q.mu.Unlock()
		return q.busy == 0 && len(q.leases) == 1
	}, waitFor, tick)
	fmt.Println("sent")
	select {}
}

// runHelper starts TestHelperProcess in mode with dir and url, and returns
// it with a channel of its stdout lines.
func runHelper(t *testing.T, mode, dir, url string, start int) (*exec.Cmd, <-chan string, *strings.Builder) {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1", "-test.timeout=5m")
	cmd.Env = append(os.Environ(), helperDirEnv+"="+dir, helperStartEnv+"="+strconv.Itoa(start),
		helperURLEnv+"="+url, helperModeEnv+"="+mode)
	stdout, err := cmd.StdoutPipe()
	require.NoError(t, err)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	require.NoError(t, cmd.Start())
	lines := make(chan string, 1<<16)
	go func() {
		defer close(lines)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
	}()
	t.Cleanup(func() { _ = cmd.Process.Kill(); _ = cmd.Wait() })
	return cmd, lines, &stderr
}

// TestCrashDuringGroupCommit kills with SIGKILL, several times, a process in
// which 8 callers enqueue at once (so every commit holds several callers'
// events and one is nearly always in flight), then checks the store: every
// event whose Enqueue returned is there; an event whose caller got no answer
// is there or not, but never in part (each has one delivery per hook, all
// its keys or none); and every stored delivery is delivered.
func TestCrashDuringGroupCommit(t *testing.T) {
	dir := t.TempDir()
	rnd := rand.New(rand.NewPCG(7, 7))
	acked := map[int]bool{}
	next := 0
	for round := range 4 {
		cmd, lines, stderr := runHelper(t, "group", dir, "", next)
		target := 50 + rnd.IntN(300)
		count := 0
		for count < target {
			line, ok := <-lines
			require.True(t, ok, "round %d: helper ended: %s", round, stderr)
			if n, found := strings.CutPrefix(line, "ok "); found {
				i, err := strconv.Atoi(n)
				require.NoError(t, err)
				acked[i] = true
				count++
			}
		}
		time.Sleep(time.Duration(rnd.IntN(2000)) * time.Microsecond)
		require.NoError(t, cmd.Process.Kill())
		for line := range lines { // answers printed before the kill
			if n, found := strings.CutPrefix(line, "ok "); found {
				i, err := strconv.Atoi(n)
				require.NoError(t, err)
				acked[i] = true
			}
		}
		_ = cmd.Wait()
		for i := range acked {
			next = max(next, i+1)
		}
		next += 100 // numbers a killed caller may have used are not reused
		t.Logf("round %d: %d answered before SIGKILL", round, count)
	}

	rc := newReceiver(t, always(http.StatusOK))
	db := openDB(t, dir)
	hooks := newFakeHooks()
	hooks.add("ha", "u1", rc.URL, "", "note")
	hooks.add("hb", "u1", rc.URL, "", "note")
	q := openQueue(t, db, hooks, testOptions(nil))
	perEvent := map[int]int{}
	bodies := map[string]int{}
	for _, hook := range []string{"ha", "hb"} {
		for _, k := range keysWithPrefix(t, q, pHook+hook+"/") {
			id := strings.TrimPrefix(k, pHook+hook+"/")
			var n struct{ N int }
			require.NoError(t, q.db.View(func(txn *badger.Txn) error {
				rec, err := getRecord(txn, id)
				require.NoError(t, err, "a delivery without its record")
				assert.Equal(t, webhook.StateReady, rec.State)
				_, err = txn.Get(keyReady(hook, rec.Due, id))
				require.NoError(t, err, "a delivery without its ready key")
				item, err := txn.Get(keyBody(id))
				require.NoError(t, err, "a delivery without its body")
				return item.Value(func(v []byte) error {
					var env struct{ Body json.RawMessage }
					require.NoError(t, json.Unmarshal(v, &env))
					return json.Unmarshal(env.Body, &n)
				})
			}))
			perEvent[n.N]++
			bodies[hook+"/"+strconv.Itoa(n.N)]++
		}
	}
	assert.Equal(t, int64(len(keysWithPrefix(t, q, pReady))), q.readyNow(), "every ready key belongs to a stored delivery")
	for i := range acked {
		assert.Equal(t, 2, perEvent[i], "answered event %d: both deliveries stored", i)
	}
	for i, n := range perEvent {
		assert.Equal(t, 2, n, "event %d is stored whole or not at all", i)
	}
	for k, n := range bodies {
		assert.Equal(t, 1, n, "%s stored once", k)
	}
	runQueue(t, q)
	require.Eventually(t, func() bool { return rc.count() == 2*len(perEvent) }, waitFor, tick)
	t.Logf("%d answered events stored whole; %d stored in all", len(acked), len(perEvent))
}

// TestCrashAfterUnpersistedSuccess: a receiver accepted a delivery, and the
// process died before the commit that records it: after the restart the
// delivery is sent once more (one duplicate, same eventId) and ends
// delivered, never lost and never dead.
func TestCrashAfterUnpersistedSuccess(t *testing.T) {
	dir := t.TempDir()
	rc := newReceiver(t, always(http.StatusOK))
	cmd, lines, stderr := runHelper(t, "unpersisted", dir, rc.URL, 0)
	select {
	case line, ok := <-lines:
		require.True(t, ok, "helper ended: %s", stderr)
		require.Equal(t, "sent", line)
	case <-time.After(waitFor):
		t.Fatalf("helper sent nothing: %s", stderr)
	}
	require.Equal(t, 1, rc.count())
	require.NoError(t, cmd.Process.Kill())
	_ = cmd.Wait()

	db := openDB(t, dir)
	hooks := newFakeHooks()
	hooks.add("h1", "u1", rc.URL, "", "note")
	q := openQueue(t, db, hooks, testOptions(nil))
	ds := list(t, q, "h1")
	require.Len(t, ds, 1)
	assert.Equal(t, webhook.StateReady, ds[0].State, "the success was not recorded: the delivery is ready again")
	assert.Empty(t, ds[0].Attempts)
	runQueue(t, q)
	require.Eventually(t, func() bool {
		ds := list(t, q, "h1")
		return len(ds) == 1 && ds[0].State == webhook.StateDelivered
	}, waitFor, tick)
	assert.Equal(t, 2, rc.count(), "one duplicate")
	assert.Equal(t, rc.got()[0].eventID(), rc.got()[1].eventID())
	assert.Zero(t, q.dead.Load())
	assert.Len(t, list(t, q, "h1")[0].Attempts, 1)
}
