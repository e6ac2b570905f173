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
