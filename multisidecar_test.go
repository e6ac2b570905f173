package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"github.com/tidwall/gjson"

	"github.com/oceanhooks/oceanhooks/internal/oceantest"
	"github.com/oceanhooks/oceanhooks/internal/pgtest"
)

// deliveryLog is a webhook receiver that records every delivery's event and
// note, counts attempts of one event that overlapped in time (two sidecars
// sending the same delivery at once), and can hold the attempts of one
// sidecar (told apart by the X-Ocean-Host header of its publicURL) until
// released. An attempt whose sender went away before it was answered is
// not recorded: that sidecar never learnt of the delivery.
type deliveryLog struct {
	*httptest.Server

	mu       sync.Mutex
	inFlight map[string]int // eventId → attempts being received
	events   map[string]int // eventId → attempts received
	notes    map[string]bool
	overlaps []string
	holdFrom string        // X-Ocean-Host whose attempts wait for release
	held     int           // attempts waiting now
	release  chan struct{} // closed to let held attempts go on
	gone     int           // attempts whose sender went away
}

func newDeliveryLog(t *testing.T) *deliveryLog {
	d := &deliveryLog{inFlight: map[string]int{}, events: map[string]int{}, notes: map[string]bool{}}
	d.Server = httptest.NewServer(http.HandlerFunc(d.serve))
	t.Cleanup(d.Close)
	t.Cleanup(d.letGo)
	return d
}

func (d *deliveryLog) serve(w http.ResponseWriter, r *http.Request) {
	b, err := io.ReadAll(r.Body)
	if err != nil {
		return
	}
	event := gjson.GetBytes(b, "eventId").Str
	d.mu.Lock()
	if d.inFlight[event] > 0 {
		d.overlaps = append(d.overlaps, event)
	}
	d.inFlight[event]++
	var release chan struct{}
	if d.holdFrom != "" && r.Header.Get("X-Ocean-Host") == d.holdFrom {
		release = d.release
		d.held++
	}
	d.mu.Unlock()
	if release != nil {
		<-release
	}
	// A receiver that takes a moment to answer, so that a second attempt of
	// the same delivery made meanwhile is seen overlapping.
	time.Sleep(2 * time.Millisecond)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.inFlight[event]--
	if r.Context().Err() != nil {
		d.gone++
		return
	}
	d.events[event]++
	d.notes[gjson.GetBytes(b, "body.note.id").Str] = true
}

// hold makes the attempts of the sidecar whose publicURL has host wait.
func (d *deliveryLog) hold(host string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.holdFrom, d.held, d.release = host, 0, make(chan struct{})
}

func (d *deliveryLog) holding() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.held
}

// letGo releases the held attempts and holds no more.
func (d *deliveryLog) letGo() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.release != nil {
		close(d.release)
	}
	d.holdFrom, d.release = "", nil
}

func (d *deliveryLog) hasAny(noteIDs []string) bool {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range noteIDs {
		if d.notes[id] {
			return true
		}
	}
	return false
}

// missing returns how many of noteIDs were not delivered.
func (d *deliveryLog) missing(noteIDs []string) int {
	d.mu.Lock()
	defer d.mu.Unlock()
	n := 0
	for _, id := range noteIDs {
		if !d.notes[id] {
			n++
		}
	}
	return n
}

// sidecarConfig writes the config of sidecar i of a group sharing schema on
// the PostgreSQL server at url; its publicURL, sidecar-<i>.example, names it
// in its deliveries' X-Ocean-Host header.
func sidecarConfig(t *testing.T, upstream, url, schema string, i int) string {
	t.Helper()
	return writeConfig(t, `
listen: "127.0.0.1:0"
adminListen: "127.0.0.1:0"
upstream: "`+upstream+`"
publicURL: "https://sidecar-`+strconv.Itoa(i)+`.example"
dataDir: "`+filepath.Join(t.TempDir(), fmt.Sprintf("data-%d", i))+`"
shutdownGrace: 1s
log:
  format: json
store:
  backend: postgres
  postgres:
    url: "`+url+`"
    schema: "`+schema+`"
delivery:
  allowedPrivateNetworks: ["127.0.0.0/8"]
  attemptTimeout: 2s
`)
}

// roundRobin sends each call to the next live sidecar.
type roundRobin struct {
	mu    sync.Mutex
	addrs []string // "" for a sidecar that is down
	next  int
}

func (rr *roundRobin) pick() string {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	for range rr.addrs {
		a := rr.addrs[rr.next%len(rr.addrs)]
		rr.next++
		if a != "" {
			return a
		}
	}
	return ""
}

func (rr *roundRobin) set(i int, addr string) {
	rr.mu.Lock()
	defer rr.mu.Unlock()
	rr.addrs[i] = addr
}

// TestThreeSidecarsOnOnePostgres runs three oceanhooks processes on one
// PostgreSQL schema behind a round-robin client. A hook created through
// sidecar 1 fires for calls through sidecar 3. Then a few thousand notes go
// through all three, and sidecar 2 is killed (SIGKILL) mid-run, while calls
// are in flight and while it is sending deliveries (held by the receiver, so
// they are never answered), and started again: every note whose call was
// answered is delivered (those sidecar 2 was sending by the others, once its
// leases expired), and no delivery is ever sent by two sidecars at once.
func TestThreeSidecarsOnOnePostgres(t *testing.T) {
	const (
		notes   = 3000
		workers = 8
	)
	oc := oceantest.New(t, oceantest.WithoutNativeDeliveries())
	rc := newDeliveryLog(t)
	url := pgtest.ServerURL(t)
	schema := pgtest.NewSchema(t, url)
	cfgs := make([]string, 3)
	procs := make([]*process, 3)
	for i := range procs {
		cfgs[i] = sidecarConfig(t, oc.URL, url, schema, i+1)
		procs[i] = startServe(t, cfgs[i], false)
	}

	status, body := post(t, "http://"+procs[0].addr+"/api/i/webhooks/create", oceantest.TokenAlice,
		`{"name":"all","url":"`+rc.URL+`/hook","on":["note"]}`)
	require.Equal(t, http.StatusOK, status, body)
	// The hook reaches sidecar 3 through PostgreSQL's notifications; calls
	// before that concern no hook there and fire nothing. A note through
	// sidecar 3 at every tick until one of them is delivered.
	client := &http.Client{Timeout: 30 * time.Second}
	var probes []string
	probe := 0
	require.Eventually(t, func() bool {
		probe++
		if id, err := createNote(context.Background(), client, procs[2].addr, fmt.Sprintf("probe %d", probe)); err == nil {
			probes = append(probes, id)
		}
		return rc.hasAny(probes)
	}, 30*time.Second, 50*time.Millisecond, "a hook created through sidecar 1 fires for a call through sidecar 3")

	rr := &roundRobin{addrs: []string{procs[0].addr, procs[1].addr, procs[2].addr}}
	var (
		sent     atomic.Int64
		mu       sync.Mutex
		acked    []string
		failures int
	)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			for n := sent.Add(1); n <= notes && ctx.Err() == nil; n = sent.Add(1) {
				id, err := createNote(ctx, client, rr.pick(), fmt.Sprintf("note %d", n))
				mu.Lock()
				if err != nil {
					failures++
				} else {
					acked = append(acked, id)
				}
				mu.Unlock()
			}
		})
	}
	ackedCount := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }

	require.Eventually(t, func() bool { return ackedCount() >= notes/3 }, 60*time.Second, 5*time.Millisecond)
	rc.hold("sidecar-2.example")
	require.Eventually(t, func() bool { return rc.holding() > 0 }, 30*time.Second, 5*time.Millisecond,
		"sidecar 2 is sending")
	procs[1].kill()
	rr.set(1, "")
	killedAt := ackedCount()
	rc.letGo()
	require.Eventually(t, func() bool { return ackedCount() >= killedAt+notes/10 }, 60*time.Second, 5*time.Millisecond,
		"the other two go on")
	procs[1] = startServe(t, cfgs[1], false)
	rr.set(1, procs[1].addr)
	wg.Wait()

	mu.Lock()
	all := append([]string(nil), acked...)
	t.Logf("%d notes answered, %d calls failed (sidecar 2 killed after %d)", len(all), failures, killedAt)
	mu.Unlock()
	require.Greater(t, len(all), notes*9/10)
	require.Eventually(t, func() bool { return rc.missing(all) == 0 }, 60*time.Second, 20*time.Millisecond,
		"every answered note is delivered")

	rc.mu.Lock()
	defer rc.mu.Unlock()
	assert.Zero(t, len(rc.overlaps), "no delivery is sent by two sidecars at once; overlapping: %v", rc.overlaps[:min(len(rc.overlaps), 5)])
	dups := 0
	for _, n := range rc.events {
		dups += n - 1
	}
	assert.Positive(t, rc.gone, "sidecar 2 died while sending")
	t.Logf("%d deliveries received, %d of them again (attempts not yet recorded at the kill), %d attempts of sidecar 2 unanswered",
		len(rc.events), dups, rc.gone)
}

// createNote posts notes/create as alice to the sidecar at addr and returns
// the note's id once the call was answered with 200.
func createNote(ctx context.Context, client *http.Client, addr, text string) (string, error) {
	if addr == "" {
		return "", errors.New("no sidecar up")
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, "http://"+addr+"/api/notes/create",
		strings.NewReader(`{"text":"`+text+`"}`))
	if err != nil {
		return "", err
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Authorization", "Bearer "+oceantest.TokenAlice)
	res, err := client.Do(req)
	if err != nil {
		return "", err
	}
	defer res.Body.Close()
	b, err := io.ReadAll(res.Body)
	if err != nil {
		return "", err
	}
	if res.StatusCode != http.StatusOK {
		return "", fmt.Errorf("%s: %s", res.Status, b)
	}
	id := gjson.GetBytes(b, "createdNote.id").Str
	if id == "" {
		return "", fmt.Errorf("no createdNote.id in %s", b)
	}
	return id, nil
}
