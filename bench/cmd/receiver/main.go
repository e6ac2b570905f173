// Command receiver is a fast webhook receiver for the benchmarks. Every POST
// is a delivery: it answers 200 at once and records the envelope's eventId
// (to count unique deliveries and duplicates), the latency from the
// envelope's createdAt (the enqueue time, in ms) to receipt, and, for `note`
// deliveries, the note's id.
//
//	GET  /stats   JSON: received, unique, duplicates, latency percentiles (ms), first/last receipt
//	GET  /notes   the unique note ids of `note` deliveries, one per line
//	POST /reset   forget everything
//	POST /pause   answer deliveries 503 (and record nothing) until /resume
//	POST /resume  accept deliveries again
package main

import (
	"encoding/hex"
	"encoding/json"
	"errors"
	"flag"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/tidwall/gjson"
)

func main() {
	listen := flag.String("listen", "127.0.0.1:18304", "comma-separated addresses to listen on (one shared record)")
	flag.Parse()
	rc := newReceiver()
	srv := &http.Server{Handler: rc, ReadHeaderTimeout: 10 * time.Second}
	var lns []net.Listener
	for _, addr := range strings.Split(*listen, ",") {
		ln, err := net.Listen("tcp", addr)
		if err != nil {
			log.Fatal(err)
		}
		lns = append(lns, ln)
	}
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		_ = srv.Close()
	}()
	errs := make(chan error, len(lns))
	for _, ln := range lns {
		go func() { errs <- srv.Serve(ln) }()
	}
	if err := <-errs; !errors.Is(err, http.ErrServerClosed) {
		log.Fatal(err)
	}
}

type receiver struct {
	paused     atomic.Bool
	mu         sync.Mutex
	received   int64
	malformed  int64
	events     map[[16]byte]struct{}
	latencies  []int32 // ms, one per first receipt of an event
	notes      map[string]struct{}
	types      map[string]int64
	first, end int64 // unix ms of the first and the latest receipt
}

func newReceiver() *receiver {
	rc := &receiver{}
	rc.resetLocked()
	return rc
}

func (rc *receiver) resetLocked() {
	rc.received, rc.malformed = 0, 0
	rc.events = make(map[[16]byte]struct{}, 1<<16)
	rc.latencies = make([]int32, 0, 1<<16)
	rc.notes = make(map[string]struct{})
	rc.types = make(map[string]int64)
	rc.first, rc.end = 0, 0
}

func (rc *receiver) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	switch {
	case r.Method == http.MethodGet && r.URL.Path == "/stats":
		rc.stats(w)
	case r.Method == http.MethodGet && r.URL.Path == "/notes":
		rc.noteIDs(w)
	case r.Method == http.MethodPost && r.URL.Path == "/reset":
		rc.mu.Lock()
		rc.resetLocked()
		rc.mu.Unlock()
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == "/pause":
		rc.paused.Store(true)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && r.URL.Path == "/resume":
		rc.paused.Store(false)
		w.WriteHeader(http.StatusNoContent)
	case r.Method == http.MethodPost && rc.paused.Load():
		_, _ = io.Copy(io.Discard, r.Body)
		w.WriteHeader(http.StatusServiceUnavailable)
	case r.Method == http.MethodPost:
		rc.deliver(w, r)
	default:
		w.WriteHeader(http.StatusNotFound)
	}
}

func (rc *receiver) deliver(w http.ResponseWriter, r *http.Request) {
	body, err := io.ReadAll(r.Body)
	if err != nil {
		w.WriteHeader(http.StatusBadRequest)
		return
	}
	now := time.Now().UnixMilli()
	f := gjson.GetManyBytes(body, "eventId", "createdAt", "type", "body.note.id")
	id, ok := parseUUID(f[0].Str)
	rc.mu.Lock()
	rc.received++
	if rc.first == 0 {
		rc.first = now
	}
	rc.end = now
	if !ok {
		rc.malformed++
	} else if _, dup := rc.events[id]; !dup {
		rc.events[id] = struct{}{}
		rc.latencies = append(rc.latencies, int32(now-f[1].Int()))
		rc.types[f[2].Str]++
		if f[2].Str == "note" && f[3].Str != "" {
			rc.notes[f[3].Str] = struct{}{}
		}
	}
	rc.mu.Unlock()
	w.WriteHeader(http.StatusOK)
}

func parseUUID(s string) ([16]byte, bool) {
	var id [16]byte
	s = strings.ReplaceAll(s, "-", "")
	if len(s) != 32 {
		return id, false
	}
	_, err := hex.Decode(id[:], []byte(s))
	return id, err == nil
}

// Stats is the /stats answer.
type Stats struct {
	Received   int64            `json:"received"`
	Unique     int64            `json:"unique"`
	Duplicates int64            `json:"duplicates"`
	Malformed  int64            `json:"malformed"`
	Types      map[string]int64 `json:"types"`
	Notes      int              `json:"notes"`
	FirstMs    int64            `json:"firstMs"`
	LastMs     int64            `json:"lastMs"`
	P50Ms      int32            `json:"p50Ms"`
	P90Ms      int32            `json:"p90Ms"`
	P99Ms      int32            `json:"p99Ms"`
	MaxMs      int32            `json:"maxMs"`
}

func (rc *receiver) stats(w http.ResponseWriter) {
	rc.mu.Lock()
	s := Stats{
		Received:  rc.received,
		Unique:    int64(len(rc.events)),
		Malformed: rc.malformed,
		Types:     make(map[string]int64, len(rc.types)),
		Notes:     len(rc.notes),
		FirstMs:   rc.first,
		LastMs:    rc.end,
	}
	s.Duplicates = s.Received - s.Unique - s.Malformed
	for k, v := range rc.types {
		s.Types[k] = v
	}
	lat := slices.Clone(rc.latencies)
	rc.mu.Unlock()
	slices.Sort(lat)
	s.P50Ms, s.P90Ms, s.P99Ms = pct(lat, 50), pct(lat, 90), pct(lat, 99)
	if len(lat) > 0 {
		s.MaxMs = lat[len(lat)-1]
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(s)
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []int32, p float64) int32 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func (rc *receiver) noteIDs(w http.ResponseWriter) {
	rc.mu.Lock()
	ids := make([]string, 0, len(rc.notes))
	for id := range rc.notes {
		ids = append(ids, id)
	}
	rc.mu.Unlock()
	slices.Sort(ids)
	w.Header().Set("Content-Type", "text/plain")
	for _, id := range ids {
		_, _ = io.WriteString(w, id+"\n")
	}
}
