// Command report turns the JSON lines of the overhead benchmark (one per
// run, from wrk.lua or bench/cmd/load, with a "round" field added) into the
// Markdown tables of BENCHMARKS.md: for each mode (closed-loop, fixed rate)
// and configuration, the median over rounds of requests/s, p50 and p99, and
// the ratio to its baseline measured in the same round (median of the
// per-round ratios); then chosen throughput ratios (closed loop) and p99
// differences (fixed rate) between configurations, also per round.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log"
	"os"
	"slices"
	"strings"
)

// run is one measured run.
type run struct {
	Round  int     `json:"round"`
	Label  string  `json:"label"`
	Tool   string  `json:"tool"`
	Mode   string  `json:"mode"`
	Conc   int     `json:"conc"`
	Rate   float64 `json:"rate"`
	Reqs   int     `json:"requests"`
	Non2xx int     `json:"non2xx"`
	Errors int     `json:"errors"`
	RPS    float64 `json:"rps"`
	P50    float64 `json:"p50_us"`
	P99    float64 `json:"p99_us"`
}

func main() {
	order := flag.String("order", "direct,nginx,go-stock,untapped,untapped-stdlib,untapped-stdserver,untapped-base,direct-notes,notes-0,notes-3000", "configurations in table order")
	bases := flag.String("base", "nginx=direct,go-stock=direct,untapped=direct,untapped-stdlib=direct,untapped-stdserver=direct,untapped-base=direct,notes-0=direct-notes,notes-3000=direct-notes",
		"configuration=baseline pairs for the ratio columns")
	ratios := flag.String("ratios", "untapped/nginx,untapped-stdlib/nginx,untapped-stdserver/nginx,untapped-base/nginx,go-stock/nginx,untapped/untapped-stdlib,untapped/untapped-stdserver,untapped/untapped-base,untapped/go-stock,notes-3000/untapped,notes-0/untapped",
		"a/b pairs whose closed-loop throughput ratio is listed")
	p99s := flag.String("p99", "untapped/nginx,untapped-stdlib/nginx,untapped-stdserver/nginx,untapped-base/nginx,go-stock/nginx",
		"a/b pairs whose fixed-rate p99 difference is listed")
	flag.Parse()
	in := io.Reader(os.Stdin)
	if flag.NArg() > 0 {
		f, err := os.Open(flag.Arg(0))
		if err != nil {
			log.Fatal(err)
		}
		defer func() { _ = f.Close() }()
		in = f
	}
	runs, err := read(in)
	if err != nil {
		log.Fatal(err)
	}
	base := map[string]string{}
	for _, kv := range strings.Split(*bases, ",") {
		k, v, _ := strings.Cut(kv, "=")
		base[k] = v
	}
	labels := strings.Split(*order, ",")
	write(os.Stdout, runs, labels, base, pairs(*ratios), pairs(*p99s))
}

func pairs(s string) [][2]string {
	var out [][2]string
	for _, p := range strings.Split(s, ",") {
		if a, b, ok := strings.Cut(p, "/"); ok {
			out = append(out, [2]string{a, b})
		}
	}
	return out
}

func read(r io.Reader) ([]run, error) {
	var runs []run
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || line[0] != '{' {
			continue
		}
		var x run
		if err := json.Unmarshal([]byte(line), &x); err != nil {
			return nil, fmt.Errorf("%q: %w", line, err)
		}
		runs = append(runs, x)
	}
	return runs, sc.Err()
}

// series is the runs of one mode and label, by round.
type series map[int]run

func write(w io.Writer, runs []run, labels []string, base map[string]string, ratios, p99s [][2]string) {
	modes := map[string]map[string]series{}
	var modeOrder []string
	for _, r := range runs {
		key := r.Mode
		if r.Mode == "open" {
			key = fmt.Sprintf("open@%g", r.Rate)
		}
		if modes[key] == nil {
			modes[key] = map[string]series{}
			modeOrder = append(modeOrder, key)
		}
		if modes[key][r.Label] == nil {
			modes[key][r.Label] = series{}
		}
		modes[key][r.Label][r.Round] = r
	}
	for _, key := range modeOrder {
		byLabel := modes[key]
		mode, _, _ := strings.Cut(key, "@")
		var any run
		for _, s := range byLabel {
			for _, r := range s {
				any = r
			}
		}
		rounds := 0
		for _, s := range byLabel {
			rounds = max(rounds, len(s))
		}
		if mode == "open" {
			fmt.Fprintf(w, "Fixed rate, %g requests/s open-loop (%s, up to %d in flight), median of %d rounds:\n\n", any.Rate, any.Tool, any.Conc, rounds)
			fmt.Fprintln(w, "| configuration | achieved req/s | p50 ms | p99 ms | p50 added ms | p99 added ms | errors |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|---:|")
		} else {
			fmt.Fprintf(w, "Closed loop, %d connections (%s), median of %d rounds:\n\n", any.Conc, any.Tool, rounds)
			fmt.Fprintln(w, "| configuration | req/s | × baseline | p50 ms | p99 ms | errors |")
			fmt.Fprintln(w, "|---|---:|---:|---:|---:|---:|")
		}
		for _, label := range labels {
			s := byLabel[label]
			if s == nil {
				continue
			}
			rps := median(s, func(r run) float64 { return r.RPS })
			p50 := median(s, func(r run) float64 { return r.P50 }) / 1000
			p99 := median(s, func(r run) float64 { return r.P99 }) / 1000
			errs := 0
			for _, r := range s {
				errs += r.Errors + r.Non2xx
			}
			b := byLabel[base[label]]
			name := label
			if b != nil {
				name = fmt.Sprintf("%s (vs %s)", label, base[label])
			}
			if mode == "open" {
				add50, add99 := "", ""
				if b != nil {
					add50 = fmt.Sprintf("%+.2f", ratio(s, b, func(x, y run) float64 { return (x.P50 - y.P50) / 1000 }))
					add99 = fmt.Sprintf("%+.2f", ratio(s, b, func(x, y run) float64 { return (x.P99 - y.P99) / 1000 }))
				}
				fmt.Fprintf(w, "| %s | %.0f | %.2f | %.2f | %s | %s | %d |\n", name, rps, p50, p99, add50, add99, errs)
			} else {
				rel := ""
				if b != nil {
					rel = fmt.Sprintf("%.2f", ratio(s, b, func(x, y run) float64 { return x.RPS / y.RPS }))
				}
				fmt.Fprintf(w, "| %s | %.0f | %s | %.2f | %.2f | %d |\n", name, rps, rel, p50, p99, errs)
			}
		}
		fmt.Fprintln(w)
		listed := false
		if mode != "open" {
			for _, pair := range ratios {
				a, b := byLabel[pair[0]], byLabel[pair[1]]
				if a == nil || b == nil {
					continue
				}
				listed = true
				fmt.Fprintf(w, "- %s / %s throughput: %.2f (median of per-round ratios)\n", pair[0], pair[1],
					ratio(a, b, func(x, y run) float64 { return x.RPS / y.RPS }))
			}
		} else {
			for _, pair := range p99s {
				a, b := byLabel[pair[0]], byLabel[pair[1]]
				if a == nil || b == nil {
					continue
				}
				listed = true
				fmt.Fprintf(w, "- %s p99 − %s p99: %+.2f ms (median of per-round differences)\n", pair[0], pair[1],
					ratio(a, b, func(x, y run) float64 { return (x.P99 - y.P99) / 1000 }))
			}
		}
		if listed {
			fmt.Fprintln(w)
		}
	}
}

func median(s series, f func(run) float64) float64 {
	var v []float64
	for _, r := range s {
		v = append(v, f(r))
	}
	return mid(v)
}

// ratio is the median over rounds of f(run, baseline run of the same round).
func ratio(s, b series, f func(x, y run) float64) float64 {
	var v []float64
	for round, r := range s {
		if o, ok := b[round]; ok {
			v = append(v, f(r, o))
		}
	}
	return mid(v)
}

func mid(v []float64) float64 {
	if len(v) == 0 {
		return 0
	}
	slices.Sort(v)
	if len(v)%2 == 1 {
		return v[len(v)/2]
	}
	return (v[len(v)/2-1] + v[len(v)/2]) / 2
}
