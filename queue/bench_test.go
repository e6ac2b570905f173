package queue

import (
	"context"
	"strconv"
	"sync"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// BenchmarkEnqueue measures a synced enqueue of one event for one hook,
// alone and from 16×GOMAXPROCS concurrent callers, with Badger's SyncWrites
// (the default, BadgerOptions) and with SyncWrites=false plus the queue's own
// group commit. The figures and the choice are in the package doc.
func BenchmarkEnqueue(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts func(dir string) badger.Options
	}{
		{"syncwrites", testBadgerOptions},
		{"groupcommit", func(dir string) badger.Options { return testBadgerOptions(dir).WithSyncWrites(false) }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			setup := func(b *testing.B) (*Queue, []webhook.Event) {
				db, err := badger.Open(mode.opts(b.TempDir()))
				require.NoError(b, err)
				b.Cleanup(func() { _ = db.Close() })
				hooks := newFakeHooks()
				hooks.add("h1", "u1", "http://example.invalid/", "secret", "note")
				q := openQueue(b, db, hooks, testOptions(nil))
				body := `{"note":{"id":"abc","text":"` + string(make([]byte, 0)) + `hello world","user":{"id":"u1","username":"alice"}}}`
				return q, []webhook.Event{event("u1", "note", body)}
			}
			b.Run("serial", func(b *testing.B) {
				q, evs := setup(b)
				for b.Loop() {
					if _, err := q.Enqueue(context.Background(), evs); err != nil {
						b.Fatal(err)
					}
				}
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
				if q.syncer != nil {
					b.ReportMetric(float64(q.syncer.syncs.Load())/float64(b.N), "syncs/op")
				}
			})
		})
	}
}

// BenchmarkDeliveryBookkeeping measures the store's share of one delivery
// (claim, then record a success), without HTTP, in both durability modes.
func BenchmarkDeliveryBookkeeping(b *testing.B) {
	for _, mode := range []struct {
		name string
		opts func(dir string) badger.Options
	}{
		{"syncwrites", testBadgerOptions},
		{"groupcommit", func(dir string) badger.Options { return testBadgerOptions(dir).WithSyncWrites(false) }},
	} {
		b.Run(mode.name, func(b *testing.B) {
			db, err := badger.Open(mode.opts(b.TempDir()))
			require.NoError(b, err)
			b.Cleanup(func() { _ = db.Close() })
			hooks := newFakeHooks()
			for i := range 16 {
				hooks.add("h"+strconv.Itoa(i), "u1", "http://example.invalid/", "", "note")
			}
			q := openQueue(b, db, hooks, testOptions(nil))
			evs := make([]webhook.Event, 0, 64)
			for range 64 {
				evs = append(evs, event("u1", "note", `{"note":{}}`))
			}
			b.ResetTimer()
			n := 0
			for n < b.N {
				b.StopTimer()
				enqueue(b, q, evs...)
				b.StartTimer()
				var wg sync.WaitGroup
				for i := range 16 {
					got, _, err := q.claim("h"+strconv.Itoa(i), time.Now().UnixMilli()+1000, 1000)
					require.NoError(b, err)
					for _, c := range got {
						wg.Go(func() {
							q.settle(c, func(txn *badger.Txn, rec *record) (string, error) {
								return webhook.StateDelivered, retire(txn, c.id, rec, webhook.StateDelivered, time.Now().Add(time.Hour).UnixMilli())
							})
						})
						n++
					}
				}
				wg.Wait()
			}
		})
	}
}
