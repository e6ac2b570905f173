// Command load is the benchmarks' HTTP load generator. It POSTs one JSON body
// to one URL, with a bearer token rotating over tok-0 … tok-<n-1>, either
// closed-loop (-c workers, each sending its next request when the previous
// one is answered, like wrk) or open-loop at a constant rate (-rate: request i
// is due at start + i/rate whether or not earlier ones were answered, and its
// latency is measured from that due time, so a stall is charged to every
// request it delays instead of being hidden by coordinated omission).
//
// It prints one JSON line: counts, requests/s and latency percentiles
// (nearest rank over every sample, in microseconds) of the requests started
// after the warm-up. With -ids it also writes the createdNote.id of every
// 200 answer (for the crash benchmark).
package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/tidwall/gjson"
)

type config struct {
	url         string
	body        []byte
	tokens      int
	tokenOffset int
	conc        int
	rate        float64
	duration    time.Duration
	warmup      time.Duration
	timeout     time.Duration
	retryWait   time.Duration
	label       string
	idsFile     string
	total       int
	slow        time.Duration
}

// Result is the JSON line printed at the end.
type Result struct {
	Label    string  `json:"label"`
	Tool     string  `json:"tool"`
	Mode     string  `json:"mode"` // closed or open
	Conc     int     `json:"conc"`
	Rate     float64 `json:"rate,omitempty"`
	Seconds  float64 `json:"seconds"`
	Requests int     `json:"requests"` // answered with 2xx
	Non2xx   int     `json:"non2xx"`
	Errors   int     `json:"errors"` // transport errors
	RPS      float64 `json:"rps"`
	P50us    int64   `json:"p50_us"`
	P90us    int64   `json:"p90_us"`
	P99us    int64   `json:"p99_us"`
	P999us   int64   `json:"p999_us"`
	MaxUs    int64   `json:"max_us"`
	MeanUs   float64 `json:"mean_us"`
	IDs      int     `json:"ids,omitempty"`
}

func main() {
	var c config
	var body string
	flag.StringVar(&c.url, "url", "http://127.0.0.1:18300/api/notes/timeline", "URL to POST to")
	flag.StringVar(&body, "body", `{"limit":10}`, "JSON request body")
	flag.IntVar(&c.tokens, "tokens", 1, "rotate Authorization: Bearer tok-<o> … tok-<o+n-1>, o the -token-offset (0: no token)")
	flag.IntVar(&c.tokenOffset, "token-offset", 0, "the first token's number")
	flag.IntVar(&c.conc, "c", 64, "workers (connections); open-loop: most requests in flight")
	flag.Float64Var(&c.rate, "rate", 0, "requests per second, open-loop (0: closed-loop)")
	flag.DurationVar(&c.duration, "d", 10*time.Second, "measured duration (after warm-up)")
	flag.DurationVar(&c.warmup, "warmup", time.Second, "unmeasured warm-up before the measured duration")
	flag.DurationVar(&c.timeout, "timeout", 30*time.Second, "per-request timeout")
	flag.DurationVar(&c.retryWait, "retry-wait", 10*time.Millisecond, "closed-loop pause after a transport error")
	flag.StringVar(&c.label, "label", "", "label copied into the result")
	flag.StringVar(&c.idsFile, "ids", "", "write createdNote.id of every 200 answer to this file")
	flag.DurationVar(&c.slow, "slow", 0, "print to stderr, per 100 ms of due time, the measured requests slower than this and their worst latency (0: off)")
	flag.IntVar(&c.total, "n", 0, "closed-loop: stop after this many requests (0: run for -d; -warmup is then ignored)")
	flag.Parse()
	c.body = []byte(body)
	if c.conc < 1 || c.duration <= 0 || c.rate < 0 || c.total < 0 || (c.total > 0 && c.rate > 0) {
		log.Fatal("load: -c must be ≥ 1, -d > 0, -rate ≥ 0, -n ≥ 0, and -n goes without -rate")
	}
	res, err := run(context.Background(), c)
	if err != nil {
		log.Fatal(err)
	}
	out, _ := json.Marshal(res)
	fmt.Println(string(out))
}

// worker state, merged at the end.
type tally struct {
	lat    []int64 // µs
	non2xx int
	errs   int
	ids    []string
	slow   []slowOne
}

// slowOne is a measured request slower than -slow: when it was due, how long it took.
type slowOne struct {
	at      time.Time
	elapsed time.Duration
}

func run(ctx context.Context, c config) (Result, error) {
	tr := &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 5 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConns:        c.conc,
		MaxIdleConnsPerHost: c.conc,
		IdleConnTimeout:     90 * time.Second,
		DisableCompression:  true,
	}
	defer tr.CloseIdleConnections()
	client := &http.Client{Transport: tr, Timeout: c.timeout}
	auth := make([]string, c.tokens)
	for i := range auth {
		auth[i] = "Bearer tok-" + strconv.Itoa(c.tokenOffset+i)
	}
	var next atomic.Uint64
	send := func(t *tally, measured bool, start time.Time) {
		req, err := http.NewRequestWithContext(ctx, http.MethodPost, c.url, bytes.NewReader(c.body))
		if err != nil {
			t.errs++
			return
		}
		req.Header["Content-Type"] = []string{"application/json"}
		if len(auth) > 0 {
			req.Header["Authorization"] = []string{auth[next.Add(1)%uint64(len(auth))]}
		}
		resp, err := client.Do(req)
		if err != nil {
			if measured {
				t.errs++
			}
			if c.rate == 0 {
				time.Sleep(c.retryWait)
			}
			return
		}
		var answer []byte
		if c.idsFile != "" && resp.StatusCode == http.StatusOK {
			answer, err = io.ReadAll(resp.Body)
		} else {
			_, err = io.Copy(io.Discard, resp.Body)
		}
		_ = resp.Body.Close()
		elapsed := time.Since(start)
		switch {
		case err != nil:
			if measured {
				t.errs++
			}
		case resp.StatusCode < 200 || resp.StatusCode > 299:
			if measured {
				t.non2xx++
			}
		default:
			// Every id the client was told about counts, warm-up included.
			if answer != nil {
				if id := gjson.GetBytes(answer, "createdNote.id").Str; id != "" {
					t.ids = append(t.ids, id)
				}
			}
			if measured {
				t.lat = append(t.lat, elapsed.Microseconds())
				if c.slow > 0 && elapsed >= c.slow {
					t.slow = append(t.slow, slowOne{start, elapsed})
				}
			}
		}
	}

	begin := time.Now()
	measureFrom := begin.Add(c.warmup)
	end := measureFrom.Add(c.duration)
	tallies := make([]tally, c.conc)
	var wg sync.WaitGroup
	var issued atomic.Int64
	if c.total > 0 {
		for w := range tallies {
			wg.Go(func() {
				t := &tallies[w]
				for issued.Add(1) <= int64(c.total) {
					send(t, true, time.Now())
				}
			})
		}
	} else if c.rate == 0 {
		for w := range tallies {
			wg.Go(func() {
				t := &tallies[w]
				for {
					start := time.Now()
					if !start.Before(end) {
						return
					}
					send(t, !start.Before(measureFrom), start)
				}
			})
		}
	} else {
		interval := time.Duration(float64(time.Second) / c.rate)
		total := int((c.warmup + c.duration) / interval)
		due := make(chan time.Time, total)
		for w := range tallies {
			wg.Go(func() {
				t := &tallies[w]
				for at := range due {
					send(t, !at.Before(measureFrom), at)
				}
			})
		}
		for i := range total {
			at := begin.Add(time.Duration(i) * interval)
			if d := time.Until(at); d > 0 {
				time.Sleep(d)
			}
			due <- at
		}
		close(due)
	}
	wg.Wait()

	res := Result{Label: c.label, Tool: "load", Mode: "closed", Conc: c.conc, Seconds: c.duration.Seconds()}
	if c.rate > 0 {
		res.Mode, res.Rate = "open", c.rate
	}
	if c.total > 0 {
		res.Seconds = time.Since(begin).Seconds()
	}
	var lat []int64
	var ids []string
	var slow []slowOne
	for _, t := range tallies {
		lat = append(lat, t.lat...)
		slow = append(slow, t.slow...)
		ids = append(ids, t.ids...)
		res.Non2xx += t.non2xx
		res.Errors += t.errs
	}
	slices.Sort(lat)
	res.Requests = len(lat)
	res.RPS = float64(len(lat)) / res.Seconds
	res.P50us, res.P90us, res.P99us, res.P999us = pct(lat, 50), pct(lat, 90), pct(lat, 99), pct(lat, 99.9)
	if len(lat) > 0 {
		res.MaxUs = lat[len(lat)-1]
		var sum int64
		for _, v := range lat {
			sum += v
		}
		res.MeanUs = float64(sum) / float64(len(lat))
	}
	printSlow(slow)
	if c.idsFile != "" {
		res.IDs = len(ids)
		if err := writeLines(c.idsFile, ids); err != nil {
			return res, err
		}
	}
	return res, nil
}

// printSlow writes the slow requests to stderr grouped by the 100 ms of due
// time they fell in (UTC), so a stall shows as one line to set beside the
// sidecar's log.
func printSlow(slow []slowOne) {
	slices.SortFunc(slow, func(a, b slowOne) int { return a.at.Compare(b.at) })
	for i := 0; i < len(slow); {
		bucket := slow[i].at.Truncate(100 * time.Millisecond)
		n, worst := 0, time.Duration(0)
		for ; i < len(slow) && slow[i].at.Truncate(100*time.Millisecond).Equal(bucket); i++ {
			n++
			worst = max(worst, slow[i].elapsed)
		}
		fmt.Fprintf(os.Stderr, "slow %s %d requests, worst %.1f ms\n", bucket.UTC().Format("15:04:05.0"), n, float64(worst.Microseconds())/1000)
	}
}

// pct is the p-th percentile of sorted (nearest rank).
func pct(sorted []int64, p float64) int64 {
	if len(sorted) == 0 {
		return 0
	}
	i := int(p/100*float64(len(sorted))+0.999999) - 1
	return sorted[min(max(i, 0), len(sorted)-1)]
}

func writeLines(path string, lines []string) error {
	f, err := os.Create(path)
	if err != nil {
		return fmt.Errorf("ids: %w", err)
	}
	w := bufio.NewWriter(f)
	for _, l := range lines {
		_, _ = w.WriteString(l)
		_ = w.WriteByte('\n')
	}
	if err := w.Flush(); err != nil {
		_ = f.Close()
		return fmt.Errorf("ids: %w", err)
	}
	return f.Close()
}
