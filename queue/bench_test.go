package queue

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// BenchmarkEnqueue measures a durable enqueue of one event for one hook,
// alone and from 16×GOMAXPROCS concurrent callers, which share commits
// (commits/op: synced commits per enqueue).
func BenchmarkEnqueue(b *testing.B) {
	setup := func(b *testing.B) (*Queue, []webhook.Event) {
		hooks := newFakeHooks()
		hooks.add("h1", "u1", "http://example.invalid/", "secret", "note")
		q := openQueue(b, openDB(b, ""), hooks, testOptions(nil))
		body := `{"note":{"id":"abc","text":"hello world","user":{"id":"u1","username":"alice"}}}`
		return q, []webhook.Event{event("u1", "note", body)}
	}
	b.Run("serial", func(b *testing.B) {
		q, evs := setup(b)
		for b.Loop() {
			if _, err := q.Enqueue(context.Background(), evs); err != nil {
				b.Fatal(err)
			}
		}
		b.ReportMetric(float64(q.commits.rounds.Load())/float64(b.N), "commits/op")
	})
	b.Run("parallel", func(b *testing.B) {
		q, evs := setup(b)
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
		b.ReportMetric(float64(q.commits.rounds.Load())/float64(b.N), "commits/op")
	})
}

// BenchmarkDeliveryBookkeeping measures the store's share of one delivery
// without HTTP (ns/delivery): lease it (read ahead from the ready index),
// read its record and body, and commit its success, the outcomes of 16 hooks
// × 64 deliveries gathered as the committer gathers them (an op is one
// enqueue of 1,024 deliveries, untimed, and their bookkeeping). history is
// how many deliveries the same hooks already had (delivered and retained):
// the cost must not grow with it.
func BenchmarkDeliveryBookkeeping(b *testing.B) {
	for _, history := range []int{0, 100_000} {
		b.Run("history="+strconv.Itoa(history), func(b *testing.B) {
			hooks := newFakeHooks()
			for i := range 16 {
				hooks.add("h"+strconv.Itoa(i), "u1", "http://example.invalid/", "", "note")
			}
			q := openQueue(b, openDB(b, ""), hooks, testOptions(nil))
			evs := make([]webhook.Event, 0, 64)
			for range 64 {
				evs = append(evs, event("u1", "note", `{"note":{}}`))
			}
			round := func() int {
				n := 0
				var wg sync.WaitGroup
				for i := range 16 {
					for _, l := range leaseDue(b, q, "h"+strconv.Itoa(i), 64) {
						_, _, err := q.readDelivery(l)
						require.NoError(b, err)
						st := q.settlementOf(l, webhook.Attempt{At: time.Now(), Status: 200}, outSuccess, 0, time.Now())
						wg.Add(1)
						var res outcomeResult
						q.commits.submit(&op{apply: q.outcomeApply(l, st.update, &res), done: func(err error) {
							require.NoError(b, err)
							q.outcomeDone(l, res)
							wg.Done()
						}})
						n++
					}
				}
				require.NoError(b, q.commits.sync())
				wg.Wait()
				return n
			}
			for done := 0; done < history; {
				enqueue(b, q, evs...)
				done += round()
			}
			delivered := 0
			var spent time.Duration
			for b.Loop() { // the history above is built once
				enqueue(b, q, evs...)
				start := time.Now()
				delivered += round()
				spent += time.Since(start)
			}
			b.ReportMetric(float64(spent.Nanoseconds())/float64(delivered), "ns/delivery")
		})
	}
}
