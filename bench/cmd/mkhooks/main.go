// Command mkhooks creates the benchmarks' webhooks through the sidecar's
// Ocean-compatible API (POST /api/i/webhooks/create), as users tok-0 …
// tok-<users-1> of the fake upstream (or only -only-user): each user gets
// -per-user hooks whose `on` lists cycle through -on, all pointing at the
// receiver.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sync/errgroup"
)

func main() {
	sidecar := flag.String("sidecar", "http://127.0.0.1:18301", "sidecar base URL")
	receiver := flag.String("receiver", "http://127.0.0.1:18304", "receiver base URL the hooks point at")
	users := flag.Int("users", 1000, "users tok-0 … tok-<users-1>")
	perUser := flag.Int("per-user", 3, "hooks per user (the upstream's -webhook-limit must allow them)")
	on := flag.String("on", "note,reply,renote,mention;follow,followed,unfollow;reaction,mention",
		"semicolon-separated `on` lists; hook j of a user takes list j mod their number")
	secret := flag.String("secret", "bench-secret", "hook secret (non-empty: deliveries are signed)")
	parallel := flag.Int("parallel", 8, "concurrent create calls")
	only := flag.Int("only-user", -1, "when ≥ 0, create the hooks of this user only")
	flag.Parse()

	var sets [][]string
	for _, s := range strings.Split(*on, ";") {
		sets = append(sets, strings.Split(s, ","))
	}
	start := time.Now()
	var created atomic.Int64
	client := &http.Client{Timeout: 30 * time.Second}
	g, ctx := errgroup.WithContext(context.Background())
	g.SetLimit(*parallel)
	var once sync.Once
	for u := range *users {
		if *only >= 0 && u != *only {
			continue
		}
		for j := range *perUser {
			g.Go(func() error {
				params, _ := json.Marshal(map[string]any{
					"name":   fmt.Sprintf("bench %d/%d", u, j),
					"url":    fmt.Sprintf("%s/u%d/h%d", strings.TrimRight(*receiver, "/"), u, j),
					"secret": *secret,
					"on":     sets[j%len(sets)],
				})
				req, err := http.NewRequestWithContext(ctx, http.MethodPost, *sidecar+"/api/i/webhooks/create", bytes.NewReader(params))
				if err != nil {
					return err
				}
				req.Header.Set("Content-Type", "application/json")
				req.Header.Set("Authorization", fmt.Sprintf("Bearer tok-%d", u))
				resp, err := client.Do(req)
				if err != nil {
					return fmt.Errorf("create hook %d of user %d: %w", j, u, err)
				}
				body, _ := io.ReadAll(resp.Body)
				_ = resp.Body.Close()
				if resp.StatusCode != http.StatusOK {
					once.Do(func() { log.Printf("first failure: %s", body) })
					return fmt.Errorf("create hook %d of user %d: status %d", j, u, resp.StatusCode)
				}
				created.Add(1)
				return nil
			})
		}
	}
	if err := g.Wait(); err != nil {
		log.Fatal(err)
	}
	log.Printf("created %d hooks in %s", created.Load(), time.Since(start).Round(time.Millisecond))
}
