// Command deliveries measures the delivery queue by itself: it opens Badger
// with the server's options (queue.BadgerOptions) and the real hook store
// (or, with -hooks fake, an in-memory stand-in for it), creates -hooks-n
// hooks of as many users, all subscribed to `note` and pointing at the
// receiver (bench/cmd/receiver), and then runs two phases:
//
//   - drain: with the workers stopped, enqueue -events events (one delivery
//     each, the hooks in turn, with the captured createdNote as body), start
//     queue.Run, and time until the receiver has every eventId;
//   - steady: for each rate in -rates, enqueue one event per Enqueue call at
//     that rate for -steady, and report the enqueue → receipt latency
//     percentiles the receiver computed from the envelopes' createdAt.
//
// It prints one JSON line per phase. No proxy or HTTP client is involved on
// the enqueue side: this is the queue's delivery capacity.
//
// With -postgres URL the store is PostgreSQL instead (a fresh schema,
// migrated, dropped at the end), shared by -sidecars hook stores and queues
// as that many sidecars would share it: the hooks are created through the
// first, the drain phase is filled through the first and drained by all,
// and the steady phases enqueue through each in turn.
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"log"
	"log/slog"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"os"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/jackc/pgx/v5"

	"github.com/oceanhooks/oceanhooks/bench/internal/fixture"
	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/pgstore"
	"github.com/oceanhooks/oceanhooks/queue"
	"github.com/oceanhooks/oceanhooks/webhook"
)

type options struct {
	dir        string
	receiver   string
	events     int
	hooksN     int
	hooksKind  string
	fillBatch  int
	rates      []float64
	steady     time.Duration
	timeout    time.Duration
	cpuProfile string
	hosts      int
	badgerMem  string
	fillOnly   bool
	memProfile string
	postgres   string
	sidecars   int
}

// Result is one printed JSON line.
type Result struct {
	Phase       string  `json:"phase"`
	Hooks       string  `json:"hooks"`
	HookCount   int     `json:"hookCount"`
	Events      int     `json:"events"`
	Rate        float64 `json:"rate,omitempty"`
	FillSeconds float64 `json:"fillSeconds,omitempty"`
	Seconds     float64 `json:"seconds"`
	PerSecond   float64 `json:"deliveriesPerSecond"`
	Received    int64   `json:"received"`
	Unique      int64   `json:"unique"`
	Duplicates  int64   `json:"duplicates"`
	P50Ms       int32   `json:"p50Ms"`
	P90Ms       int32   `json:"p90Ms"`
	P99Ms       int32   `json:"p99Ms"`
	MaxMs       int32   `json:"maxMs"`
	Badger      string  `json:"badger"`
	Store       string  `json:"store"`
	Sidecars    int     `json:"sidecars"`
	FillRSS     int     `json:"fillRssMiB,omitempty"`
	RSS         int     `json:"rssMiB"`
	PeakRSS     int     `json:"peakRssMiB"`
}

func main() {
	var o options
	var rates string
	flag.StringVar(&o.dir, "dir", "", "data directory (default: a new temporary one, removed at the end)")
	flag.StringVar(&o.receiver, "receiver", "http://127.0.0.1:18304", "receiver base URL")
	flag.IntVar(&o.events, "events", 100000, "events of the drain phase (one delivery each)")
	flag.IntVar(&o.hooksN, "hooks-n", 100, "hooks (one per user)")
	flag.StringVar(&o.hooksKind, "hooks", "store", "store: the real hook store in the same Badger; fake: in memory, no writes")
	flag.IntVar(&o.fillBatch, "fill-batch", 100, "events per Enqueue call while filling the drain phase")
	flag.StringVar(&rates, "rates", "1000", "comma-separated enqueue rates (events/s) of the steady phases; empty: none")
	flag.DurationVar(&o.steady, "steady", 10*time.Second, "duration of each steady phase")
	flag.DurationVar(&o.timeout, "timeout", 10*time.Minute, "give up waiting for the receiver after this long")
	flag.IntVar(&o.hosts, "hosts", 1, "spread the hooks over receiver hosts 127.0.0.1 … 127.0.0.<n> (same port; the receiver must listen on each)")
	flag.StringVar(&o.badgerMem, "badger", "shipped", "diagnostic: shipped (queue.BadgerOptions) or lowmem (smaller memtables, caches and fewer compactors)")
	flag.BoolVar(&o.fillOnly, "fill-only", false, "stop after the drain phase's fill (memory of the fill only)")
	flag.StringVar(&o.cpuProfile, "cpuprofile", "", "write a CPU profile of the drain phase to this file")
	flag.StringVar(&o.memProfile, "memprofile", "", "write a heap profile taken right after the fill to this file")
	flag.StringVar(&o.postgres, "postgres", "", "PostgreSQL `URL`: the store is a fresh schema there instead of Badger")
	flag.IntVar(&o.sidecars, "sidecars", 1, "with -postgres: hook stores and queues sharing the schema, as that many sidecars")
	flag.Parse()
	for _, r := range strings.Split(rates, ",") {
		if r = strings.TrimSpace(r); r == "" {
			continue
		}
		v, err := strconv.ParseFloat(r, 64)
		if err != nil || v <= 0 {
			log.Fatalf("deliveries: bad rate %q", r)
		}
		o.rates = append(o.rates, v)
	}
	if err := run(o); err != nil {
		log.Fatal(err)
	}
}

// deliveryQueue is what the benchmark uses of either queue.
type deliveryQueue interface {
	Enqueue(ctx context.Context, events []webhook.Event) (int, error)
	Run(ctx context.Context) error
}

func run(o options) error {
	logger := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	users := make([]string, o.hooksN)
	for i := range users {
		users[i] = "benchuser" + strconv.Itoa(i)
	}
	qopts := queue.Options{
		ServerURL:              "https://ocean.example",
		AllowedPrivateNetworks: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")},
		Logger:                 logger,
	}
	var (
		qs        []deliveryQueue
		cleanup   func()
		err       error
		storeName = "badger"
		sidecars  = 1
	)
	if o.postgres != "" {
		storeName, sidecars = "postgres", o.sidecars
		qs, cleanup, err = openPostgres(ctx, o, users, qopts, logger)
	} else {
		var q *queue.Queue
		q, cleanup, err = openBadger(o, users, qopts, logger)
		qs = []deliveryQueue{q}
	}
	defer cleanup()
	if err != nil {
		return err
	}
	q := qs[0]
	body, err := noteBody()
	if err != nil {
		return err
	}
	rc := &receiverClient{base: o.receiver}

	// Drain phase: fill with the workers stopped, then run them.
	if !o.fillOnly {
		if err := rc.reset(); err != nil {
			return err
		}
	}
	fillStart := time.Now()
	batch := make([]webhook.Event, 0, o.fillBatch)
	for i := range o.events {
		batch = append(batch, webhook.Event{Type: webhook.Note, UserID: users[i%len(users)], Body: body})
		if len(batch) == cap(batch) || i == o.events-1 {
			if _, err := q.Enqueue(ctx, batch); err != nil {
				return err
			}
			batch = batch[:0]
		}
	}
	fill := time.Since(fillStart)
	fillRSS, fillPeak := memory()
	if err := writeHeapProfile(o.memProfile); err != nil {
		return err
	}
	if o.fillOnly {
		emit(Result{Phase: "fill", Hooks: o.hooksKind, HookCount: o.hooksN, Events: o.events,
			FillSeconds: fill.Seconds(), Badger: o.badgerMem, Store: storeName, Sidecars: sidecars, RSS: fillRSS, PeakRSS: fillPeak})
		return nil
	}
	runDone := make(chan error, 1)
	start := time.Now()
	stopProfile, err := startProfile(o.cpuProfile)
	if err != nil {
		return err
	}
	for _, q := range qs {
		go func() { runDone <- q.Run(ctx) }()
	}
	st, err := rc.waitFor(int64(o.events), o.timeout)
	stopProfile()
	if err != nil {
		return err
	}
	secs := float64(st.LastMs-start.UnixMilli()) / 1000
	rss, peak := memory()
	emit(Result{Phase: "drain", Hooks: o.hooksKind, HookCount: o.hooksN, Events: o.events,
		FillSeconds: fill.Seconds(), Seconds: secs, PerSecond: float64(st.Unique) / secs,
		Received: st.Received, Unique: st.Unique, Duplicates: st.Duplicates,
		P50Ms: st.P50Ms, P90Ms: st.P90Ms, P99Ms: st.P99Ms, MaxMs: st.MaxMs,
		Badger: o.badgerMem, Store: storeName, Sidecars: sidecars, FillRSS: fillRSS, RSS: rss, PeakRSS: peak})

	// Steady phases: one event per Enqueue, as one notes/create call makes.
	for _, rate := range o.rates {
		if err := rc.reset(); err != nil {
			return err
		}
		n := int(rate * o.steady.Seconds())
		interval := time.Duration(float64(time.Second) / rate)
		var wg sync.WaitGroup
		var failed atomic.Int64
		begin := time.Now()
		for i := range n {
			if d := time.Until(begin.Add(time.Duration(i) * interval)); d > 0 {
				time.Sleep(d)
			}
			wg.Go(func() {
				ev := []webhook.Event{{Type: webhook.Note, UserID: users[i%len(users)], Body: body}}
				if _, err := qs[i%len(qs)].Enqueue(ctx, ev); err != nil {
					failed.Add(1)
				}
			})
		}
		wg.Wait()
		if f := failed.Load(); f > 0 {
			return fmt.Errorf("steady phase at %v/s: %d enqueues failed", rate, f)
		}
		st, err := rc.waitFor(int64(n), o.timeout)
		if err != nil {
			return err
		}
		secs := float64(st.LastMs-begin.UnixMilli()) / 1000
		rss, peak := memory()
		emit(Result{Phase: "steady", Hooks: o.hooksKind, HookCount: o.hooksN, Events: n, Rate: rate,
			Seconds: secs, PerSecond: float64(st.Unique) / secs,
			Received: st.Received, Unique: st.Unique, Duplicates: st.Duplicates,
			P50Ms: st.P50Ms, P90Ms: st.P90Ms, P99Ms: st.P99Ms, MaxMs: st.MaxMs,
			Badger: o.badgerMem, Store: storeName, Sidecars: sidecars, RSS: rss, PeakRSS: peak})
	}
	cancel()
	for range qs {
		if err := <-runDone; err != nil {
			return err
		}
	}
	return nil
}

// openBadger opens the Badger store in o.dir (a temporary one by default),
// its hook store (or the in-memory stand-in) with a hook per user, and the
// queue. The cleanup closes the store.
func openBadger(o options, users []string, qopts queue.Options, logger *slog.Logger) (*queue.Queue, func(), error) {
	var closers []func()
	cleanup := func() {
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	if o.dir == "" {
		dir, err := os.MkdirTemp("", "oceanhooks-deliveries-")
		if err != nil {
			return nil, cleanup, err
		}
		closers = append(closers, func() { _ = os.RemoveAll(dir) })
		o.dir = dir
	}
	bopts := queue.BadgerOptions(o.dir)
	switch o.badgerMem {
	case "shipped":
	case "lowmem":
		bopts = lowMem(bopts)
	default:
		return nil, cleanup, fmt.Errorf("-badger is shipped or lowmem, not %q", o.badgerMem)
	}
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, cleanup, fmt.Errorf("open badger: %w", err)
	}
	closers = append(closers, func() { _ = db.Close() })

	var hk queue.Hooks
	switch o.hooksKind {
	case "store":
		st, err := hooks.Open(db, hooks.Options{Logger: logger})
		if err != nil {
			return nil, cleanup, err
		}
		if err := createHooks(st, o, users); err != nil {
			return nil, cleanup, err
		}
		hk = st
	case "fake":
		f := &fakeHooks{byUser: map[string][]webhook.Target{}, byID: map[string]webhook.Target{}}
		for i := range users {
			t := webhook.Target{HookID: fmt.Sprintf("benchhook%07d", i), UserID: users[i],
				URL: hookURL(o, i), Secret: "bench-secret", Active: true}
			f.byUser[users[i]] = []webhook.Target{t}
			f.byID[t.HookID] = t
		}
		hk = f
	default:
		return nil, cleanup, fmt.Errorf("-hooks is store or fake, not %q", o.hooksKind)
	}
	q, err := queue.Open(db, hk, qopts)
	return q, cleanup, err
}

// openPostgres makes a fresh schema on the server at o.postgres, migrates
// it, and opens o.sidecars hook stores and queues on it (each on a pool of
// its own, its hook store following the others' changes); the hooks are
// created through the first. The cleanup closes them and drops the schema.
func openPostgres(ctx context.Context, o options, users []string, qopts queue.Options, logger *slog.Logger) ([]deliveryQueue, func(), error) {
	if o.hooksKind != "store" {
		return nil, func() {}, errors.New("-postgres takes the real hook store only (-hooks store)")
	}
	if o.sidecars < 1 {
		return nil, func() {}, errors.New("-sidecars must be at least 1")
	}
	schema := fmt.Sprintf("bench_%d", time.Now().UnixNano())
	follow, stop := context.WithCancel(ctx)
	var closers []func()
	var following sync.WaitGroup
	cleanup := func() {
		stop()
		following.Wait()
		for i := len(closers) - 1; i >= 0; i-- {
			closers[i]()
		}
	}
	closers = append(closers, func() { dropSchema(o.postgres, schema) })
	var qs []deliveryQueue
	for i := range o.sidecars {
		db, err := pgstore.Open(ctx, o.postgres, schema, logger)
		if err != nil {
			return nil, cleanup, err
		}
		closers = append(closers, db.Close)
		if i == 0 {
			if _, err := db.Migrate(ctx); err != nil {
				return nil, cleanup, err
			}
		}
		st, err := hooks.OpenPostgres(ctx, db, hooks.Options{Logger: logger})
		if err != nil {
			return nil, cleanup, err
		}
		following.Go(func() { _ = st.Run(follow) })
		if i == 0 {
			if err := createHooks(st, o, users); err != nil {
				return nil, cleanup, err
			}
		}
		q, err := queue.OpenPostgres(ctx, db, st, qopts)
		if err != nil {
			return nil, cleanup, err
		}
		qs = append(qs, q)
	}
	return qs, cleanup, nil
}

func dropSchema(url, schema string) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn, err := pgx.Connect(ctx, url)
	if err != nil {
		log.Printf("deliveries: drop schema %s: %v", schema, err)
		return
	}
	defer func() { _ = conn.Close(ctx) }()
	if _, err := conn.Exec(ctx, "DROP SCHEMA IF EXISTS "+pgx.Identifier{schema}.Sanitize()+" CASCADE"); err != nil {
		log.Printf("deliveries: drop schema %s: %v", schema, err)
	}
}

// createHooks creates one hook on `note` per user in st.
func createHooks(st *hooks.Store, o options, users []string) error {
	for i := range users {
		_, err := st.Create(hooks.Hook{UserID: users[i], Name: "bench", On: []string{webhook.Note},
			URL: hookURL(o, i), Secret: "bench-secret", Active: true}, 1)
		if err != nil {
			return err
		}
	}
	return nil
}

// lowMem is a candidate for a smaller resident set: memtables of 16 MiB (3,
// not 5), 2 compactors instead of 4, a 16 MiB block cache instead of 256,
// and L0 compaction starting at 3 tables.
func lowMem(o badger.Options) badger.Options {
	return o.WithMemTableSize(16 << 20).
		WithNumMemtables(3).
		WithNumCompactors(2).
		WithBlockCacheSize(16 << 20).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(8)
}

// memory reads the process's resident set and its peak (MiB) from /proc.
func memory() (rss, peak int) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(b), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		kib, _ := strconv.Atoi(f[1])
		switch f[0] {
		case "VmRSS:":
			rss = kib / 1024
		case "VmHWM:":
			peak = kib / 1024
		}
	}
	return rss, peak
}

// hookURL is hook i's receiver URL: the receiver's, on host 127.0.0.<1 + i mod
// hosts> when the hooks are spread.
func hookURL(o options, i int) string {
	u, err := url.Parse(o.receiver)
	if err != nil || o.hosts <= 1 {
		return fmt.Sprintf("%s/h%d", o.receiver, i)
	}
	u.Host = net.JoinHostPort(fmt.Sprintf("127.0.0.%d", 1+i%o.hosts), u.Port())
	return fmt.Sprintf("%s/h%d", u, i)
}

// startProfile starts a CPU profile into path ("" for none) and returns
// its stop function.
func startProfile(path string) (func(), error) {
	if path == "" {
		return func() {}, nil
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		_ = f.Close()
		return nil, fmt.Errorf("cpu profile: %w", err)
	}
	return func() {
		pprof.StopCPUProfile()
		_ = f.Close()
	}, nil
}

// noteBody is the `note` event body of the captured createdNote.
func noteBody() (json.RawMessage, error) {
	var v struct {
		CreatedNote json.RawMessage `json:"createdNote"`
	}
	if err := json.Unmarshal(fixture.CreatedNote, &v); err != nil {
		return nil, fmt.Errorf("fixture: %w", err)
	}
	return json.RawMessage(`{"note":` + string(v.CreatedNote) + `}`), nil
}

func emit(r Result) {
	b, _ := json.Marshal(r)
	fmt.Println(string(b))
}

// fakeHooks stands in for the hook store without any write.
type fakeHooks struct {
	byUser map[string][]webhook.Target
	byID   map[string]webhook.Target
}

func (f *fakeHooks) ActiveHooks(userID, eventType string) []webhook.Target {
	if eventType != webhook.Note {
		return nil
	}
	return f.byUser[userID]
}

func (f *fakeHooks) Target(hookID string) (webhook.Target, bool) {
	t, ok := f.byID[hookID]
	return t, ok
}

func (f *fakeHooks) RecordAttempt(string, time.Time, int) {}
func (f *fakeHooks) Deactivate(string)                    {}

// receiverClient reads and resets bench/cmd/receiver.
type receiverClient struct{ base string }

// stats mirrors the receiver's /stats answer.
type stats struct {
	Received   int64 `json:"received"`
	Unique     int64 `json:"unique"`
	Duplicates int64 `json:"duplicates"`
	LastMs     int64 `json:"lastMs"`
	P50Ms      int32 `json:"p50Ms"`
	P90Ms      int32 `json:"p90Ms"`
	P99Ms      int32 `json:"p99Ms"`
	MaxMs      int32 `json:"maxMs"`
}

func (rc *receiverClient) reset() error {
	resp, err := http.Post(rc.base+"/reset", "", nil)
	if err != nil {
		return fmt.Errorf("reset receiver: %w", err)
	}
	_ = resp.Body.Close()
	return nil
}

func (rc *receiverClient) stats() (stats, error) {
	var s stats
	resp, err := http.Get(rc.base + "/stats")
	if err != nil {
		return s, fmt.Errorf("receiver stats: %w", err)
	}
	defer func() { _ = resp.Body.Close() }()
	return s, json.NewDecoder(resp.Body).Decode(&s)
}

// waitFor polls the receiver until it has n unique deliveries.
func (rc *receiverClient) waitFor(n int64, timeout time.Duration) (stats, error) {
	deadline := time.Now().Add(timeout)
	for {
		s, err := rc.stats()
		if err != nil {
			return s, err
		}
		if s.Unique >= n {
			return s, nil
		}
		if time.Now().After(deadline) {
			return s, fmt.Errorf("receiver has %d of %d deliveries after %s", s.Unique, n, timeout)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// writeHeapProfile writes the live heap to path after a GC; "" does nothing.
func writeHeapProfile(path string) error {
	if path == "" {
		return nil
	}
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	defer f.Close()
	runtime.GC()
	if err := pprof.WriteHeapProfile(f); err != nil {
		return fmt.Errorf("heap profile: %w", err)
	}
	return nil
}
