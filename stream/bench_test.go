package stream

import (
	"bufio"
	"context"
	"fmt"
	"log/slog"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/oceanhooks/oceanhooks/internal/redistest"
	"github.com/oceanhooks/oceanhooks/webhook"
)

// benchMessages are the captured messages, as the stream carries them: most
// of them concern no webhook (notifications, timelines, internal).
func benchMessages(b *testing.B) []string {
	var msgs []string
	for _, s := range loadScenarios(b) {
		msgs = append(msgs, s.Messages...)
	}
	return msgs
}

// BenchmarkDecode measures Decode alone over the captured messages: with no
// hook at all (the common case: every message is dismissed after its channel,
// its type or one index lookup), and with every user subscribed to everything.
func BenchmarkDecode(b *testing.B) {
	msgs := benchMessages(b)
	for _, bc := range []struct {
		name string
		subs Subscriptions
	}{{"no-hook", nobody{}}, {"every-hook", everyone{}}} {
		b.Run(bc.name, func(b *testing.B) {
			b.ReportAllocs()
			n := 0
			for b.Loop() {
				d := Decode(msgs[n%len(msgs)], bc.subs)
				_ = d
				n++
			}
			b.ReportMetric(float64(n)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// countingSink counts events and drops them.
type countingSink struct{ n atomic.Int64 }

func (c *countingSink) Stream(_ context.Context, evs []webhook.Event) error {
	c.n.Add(int64(len(evs)))
	return nil
}

func (c *countingSink) Unreacted(context.Context, []webhook.Event) error { return nil }

// BenchmarkSubscriber measures messages per second through a real Redis and
// the whole subscriber (go-redis's reader, Decode, hand-off), with a sink that
// costs nothing: the captured messages published in pipelined batches.
func BenchmarkSubscriber(b *testing.B) {
	rs := redistest.Start(b)
	msgs := benchMessages(b)
	for _, bc := range []struct {
		name string
		subs Subscriptions
	}{{"no-hook", nobody{}}, {"every-hook", everyone{}}} {
		b.Run(bc.name, func(b *testing.B) {
			sink := &countingSink{}
			sub, err := New(Options{URL: rs.URL(), Channel: channel, PingInterval: time.Second,
				Logger: slog.New(slog.DiscardHandler)}, bc.subs, sink, reactions{})
			if err != nil {
				b.Fatal(err)
			}
			ctx, cancel := context.WithCancel(context.Background())
			done := make(chan error, 1)
			go func() { done <- sub.Run(ctx) }()
			defer func() { cancel(); <-done }()
			for !sub.Health().Connected {
				time.Sleep(5 * time.Millisecond)
			}
			conn, err := net.Dial("tcp", rs.Addr)
			if err != nil {
				b.Fatal(err)
			}
			defer conn.Close()
			w := bufio.NewWriterSize(conn, 1<<20)
			go func() { // drain PUBLISH replies
				r := bufio.NewReader(conn)
				for {
					if _, err := r.ReadString('\n'); err != nil {
						return
					}
				}
			}()
			read := func() float64 {
				total := 0.0
				for _, o := range []Outcome{Ignored, Unsubscribed, Derived, Malformed} {
					total += testutil.ToFloat64(sub.m.messages.WithLabelValues(string(o)))
				}
				return total
			}
			base := read()
			b.ResetTimer()
			for i := range b.N {
				m := msgs[i%len(msgs)]
				fmt.Fprintf(w, "*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%d\r\n%s\r\n", len(channel), channel, len(m), m)
				if i%256 == 255 {
					_ = w.Flush()
					for read()-base < float64(i+1)-4096 { // keep Redis's output buffer bounded
						time.Sleep(100 * time.Microsecond)
					}
				}
			}
			_ = w.Flush()
			for read()-base < float64(b.N) {
				time.Sleep(100 * time.Microsecond)
			}
			b.StopTimer()
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			for wait := 0; strings.HasPrefix(bc.name, "every") && sink.n.Load() == 0 && wait < 500; wait++ {
				time.Sleep(10 * time.Millisecond) // the hand-off to the sink is asynchronous
			}
			if strings.HasPrefix(bc.name, "every") && b.N >= len(msgs) && sink.n.Load() == 0 {
				b.Fatalf("no event reached the sink (N=%d, derived=%v)", b.N, testutil.ToFloat64(sub.m.messages.WithLabelValues(string(Derived))))
			}
		})
	}
}
