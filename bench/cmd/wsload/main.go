// Command wsload opens many WebSocket connections and holds them: each
// connection sends one message and waits for its echo, then stays open and
// idle until the program is stopped (SIGTERM or SIGINT), when every
// connection is closed. Once all are open (or failed) it prints one JSON
// line: {"label", "conns", "failed", "seconds"}. The websocket memory
// benchmark (bench/ws-memory.sh) reads the proxies' memory while the
// connections are held.
package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/coder/websocket"
)

func main() {
	url := flag.String("url", "ws://127.0.0.1:18301/streaming", "WebSocket URL")
	n := flag.Int("n", 1000, "connections to open")
	conc := flag.Int("c", 64, "connections being opened at a time")
	label := flag.String("label", "", "label of the JSON line")
	timeout := flag.Duration("timeout", 10*time.Second, "bound on opening one connection and its echo")
	flag.Parse()

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()

	// One transport per connection: a WebSocket takes its connection over.
	dialer := &net.Dialer{Timeout: *timeout}
	conns := make([]*websocket.Conn, *n)
	var failed atomic.Int64
	var firstErr sync.Once
	start := time.Now()
	next := make(chan int)
	var wg sync.WaitGroup
	for range *conc {
		wg.Go(func() {
			for i := range next {
				c, err := open(ctx, dialer, *url, *timeout, i)
				if err != nil {
					failed.Add(1)
					firstErr.Do(func() { log.Printf("connection %d: %v", i, err) })
					continue
				}
				conns[i] = c
			}
		})
	}
	for i := range *n {
		next <- i
	}
	close(next)
	wg.Wait()
	line, _ := json.Marshal(map[string]any{
		"label": *label, "conns": int64(*n) - failed.Load(), "failed": failed.Load(),
		"seconds": time.Since(start).Seconds(),
	})
	fmt.Println(string(line))

	<-ctx.Done()
	for _, c := range conns {
		if c != nil {
			_ = c.CloseNow()
		}
	}
}

// open dials one connection and checks that a message comes back.
func open(ctx context.Context, dialer *net.Dialer, url string, timeout time.Duration, i int) (*websocket.Conn, error) {
	ctx, cancel := context.WithTimeout(ctx, timeout)
	defer cancel()
	tr := &http.Transport{DialContext: dialer.DialContext, DisableKeepAlives: true}
	c, _, err := websocket.Dial(ctx, url, &websocket.DialOptions{
		HTTPClient:      &http.Client{Transport: tr},
		CompressionMode: websocket.CompressionDisabled,
	})
	if err != nil {
		return nil, err
	}
	msg := fmt.Appendf(nil, `{"type":"connect","body":{"channel":"homeTimeline","id":"%d"}}`, i)
	if err := c.Write(ctx, websocket.MessageText, msg); err != nil {
		_ = c.CloseNow()
		return nil, err
	}
	if _, got, err := c.Read(ctx); err != nil || string(got) != string(msg) {
		_ = c.CloseNow()
		return nil, fmt.Errorf("echo: %q, %v", got, err)
	}
	return c, nil
}
