package hooks

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"

	"github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

// BenchmarkRecordAttempts: the queue's hand-over of one interval's latest
// attempts, 1,000 hooks each with one, on a Badger database with synced
// writes and the server's value threshold (ns/op is per hand-over; the
// hook/op figure divides it by the hooks).
func BenchmarkRecordAttempts(b *testing.B) {
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithLogger(nil).WithSyncWrites(true).WithValueThreshold(512))
	require.NoError(b, err)
	b.Cleanup(func() { _ = db.Close() })
	s, err := Open(db, Options{Now: time.Now, Rand: rand.New(rand.NewPCG(7, 8))})
	require.NoError(b, err)
	const hooks = 1000
	ids := make([]string, 0, hooks)
	for u := range hooks / 10 {
		for i := range 10 {
			h, err := s.Create(Hook{UserID: fmt.Sprintf("user%04d", u), Name: fmt.Sprintf("hook %d", i),
				URL: "https://bot.example.com/hooks/" + fmt.Sprint(i), Secret: "whsec_c2VjcmV0IHNlY3JldCBzZWNyZXQ=",
				On: []string{webhook.Note, webhook.Reply, webhook.Renote, webhook.Mention}, Active: true}, 10)
			require.NoError(b, err)
			ids = append(ids, h.ID)
		}
	}
	at := time.Now()
	b.ResetTimer()
	for i := range b.N {
		latest := make(map[string]webhook.LatestAttempt, hooks)
		for _, id := range ids {
			latest[id] = webhook.LatestAttempt{At: at.Add(time.Duration(i) * time.Second), Status: 200}
		}
		if err := s.RecordAttempts(latest); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*hooks), "ns/hook")
}
