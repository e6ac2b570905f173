package queue

import (
	"context"
	"fmt"
	"io"
	"math"
	"net/http"
	"net/http/httptest"
	"sync"
	"sync/atomic"
	"testing"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// benchStores open a queue of each store for a benchmark.
var benchStores = []struct {
	name string
	open func(b *testing.B, hooks Hooks, opts Options) (q backend, commits func() int64)
}{
	{"badger", func(b *testing.B, hooks Hooks, opts Options) (backend, func() int64) {
		q := openQueue(b, openDB(b, ""), hooks, opts)
		return q, q.commits.rounds.Load
	}},
	{"postgres", func(b *testing.B, hooks Hooks, opts Options) (backend, func() int64) {
		q, err := OpenPostgres(context.Background(), pgtest.Open(b), hooks, opts)
		if err != nil {
			b.Fatal(err)
		}
		return q, q.writes.rounds.Load
	}},
}

// BenchmarkStoresEnqueue measures a durable enqueue of one event for one
// hook from 16×GOMAXPROCS concurrent callers on each store (commits/op:
// commits per enqueue; the callers share them).
func BenchmarkStoresEnqueue(b *testing.B) {
	for _, s := range benchStores {
		b.Run(s.name, func(b *testing.B) {
			hooks := newFakeHooks()
			hooks.add("h1", "u1", "http://example.invalid/", "secret", "note")
			q, commits := s.open(b, hooks, testOptions(nil))
			evs := []webhook.Event{event("u1", "note", `{"note":{"id":"abc","text":"hello world"}}`)}
			b.SetParallelism(16)
			b.ResetTimer()
			b.RunParallel(func(pb *testing.PB) {
				for pb.Next() {
					if _, err := q.Enqueue(context.Background(), evs); err != nil {
						b.Error(err)
						return
					}
				}
			})
			b.ReportMetric(float64(commits())/float64(b.N), "commits/op")
		})
	}
}

// BenchmarkStoresDeliver measures deliveries/s from each store to a local
// receiver answering 204: 16 hooks, about b.N deliveries enqueued first
// (not timed), then delivered with the default workers and per-hook limit.
func BenchmarkStoresDeliver(b *testing.B) {
	for _, s := range benchStores {
		b.Run(s.name, func(b *testing.B) {
			var (
				got  atomic.Int64
				want atomic.Int64
				all  = make(chan struct{})
				once sync.Once
			)
			want.Store(math.MaxInt64)
			rc := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				_, _ = io.Copy(io.Discard, r.Body)
				if got.Add(1) >= want.Load() {
					once.Do(func() { close(all) })
				}
				w.WriteHeader(http.StatusNoContent)
			}))
			b.Cleanup(rc.Close)
			hooks := newFakeHooks()
			for i := range 16 {
				hooks.add(fmt.Sprintf("h%d", i), "u1", rc.URL, "", "note")
			}
			opts := testOptions(nil)
			opts.Workers = DefaultWorkers
			q, _ := s.open(b, hooks, opts)
			evs := make([]webhook.Event, 0, 64)
			for range 64 {
				evs = append(evs, event("u1", "note", `{"note":{}}`))
			}
			stored := 0
			for stored < b.N {
				n, err := q.Enqueue(context.Background(), evs)
				if err != nil {
					b.Fatal(err)
				}
				stored += n
			}
			want.Store(int64(stored))
			b.ResetTimer()
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- q.Run(ctx) }()
			<-all
			b.StopTimer()
			cancel()
			if err := <-done; err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(stored)/b.Elapsed().Seconds(), "deliveries/s")
		})
	}
}
