package bench

import (
	"fmt"
	"testing"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/oceanhooks/oceanhooks/hooks"
	"github.com/oceanhooks/oceanhooks/queue"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// BenchmarkHookIndex measures the hook store's lookups on the hot path, with
// 1,000 users holding 3 hooks each (the overhead benchmark's setup):
// AnySubscribed is every tapped request's gate, Subscribed the derivation's
// per-recipient check, ActiveHooks the enqueue's fan-out (all in memory), and
// Target the read every delivery attempt makes (from Badger).
func BenchmarkHookIndex(b *testing.B) {
	db, err := badger.Open(queue.BadgerOptions(b.TempDir()))
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { _ = db.Close() })
	st, err := hooks.Open(db, hooks.Options{})
	if err != nil {
		b.Fatal(err)
	}
	ons := [][]string{
		{webhook.Note, webhook.Reply, webhook.Renote, webhook.Mention},
		{webhook.Follow, webhook.Followed, webhook.Unfollow},
		{webhook.Reaction, webhook.Mention},
	}
	var last hooks.Hook
	for u := range 1000 {
		for j, on := range ons {
			last, err = st.Create(hooks.Hook{UserID: fmt.Sprintf("user%d", u), Name: "bench", On: on,
				URL: fmt.Sprintf("https://example.com/u%d/h%d", u, j), Secret: "s", Active: true}, len(ons))
			if err != nil {
				b.Fatal(err)
			}
		}
	}
	b.Run("AnySubscribed notes/create gate", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !st.AnySubscribed(webhook.Note, webhook.Reply, webhook.Renote, webhook.Mention) {
				b.Fatal("not subscribed")
			}
		}
	})
	b.Run("Subscribed", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if !st.Subscribed("user517", webhook.Note) {
				b.Fatal("not subscribed")
			}
		}
	})
	b.Run("ActiveHooks", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if len(st.ActiveHooks("user517", webhook.Mention)) != 2 {
				b.Fatal("want 2 hooks")
			}
		}
	})
	b.Run("Target", func(b *testing.B) {
		b.ReportAllocs()
		for b.Loop() {
			if _, ok := st.Target(last.ID); !ok {
				b.Fatal("no target")
			}
		}
	})
}
