package queue

import (
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"net/url"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
	"github.com/prometheus/client_golang/prometheus"
)

// Defaults of Options.
const (
	DefaultHeaderPrefix       = "Ocean"
	DefaultWorkers            = 64
	DefaultPerHookConcurrency = 4
	DefaultMaxAttempts        = 10
	DefaultBackoffBase        = 60 * time.Second
	DefaultBackoffCap         = 8 * time.Hour
	DefaultAttemptTimeout     = 10 * time.Second
	DefaultQuickRetries       = 2
	DefaultQuickRetryWait     = 250 * time.Millisecond
	DefaultDeadLetterTTL      = 7 * 24 * time.Hour
	DefaultGCInterval         = 5 * time.Minute
	DefaultSweepInterval      = time.Minute
	DefaultPollInterval       = time.Second
	DefaultShutdownGrace      = 10 * time.Second
)

// Options configure a Queue. Zero values take the defaults named beside them.
type Options struct {
	// ServerURL is the public URL of the Ocean instance (required). The
	// envelope's "server" is it without a trailing slash; X-Ocean-Host is its
	// host[:port].
	ServerURL string
	// HeaderPrefix is "Ocean" (default) or "Misskey": it names User-Agent
	// (<prefix>-Hooks) and the X-<prefix>-Host/Hook-Id/Hook-Secret headers.
	HeaderPrefix string
	// Workers is the global number of concurrent attempts (default 64).
	Workers int
	// PerHookConcurrency is the number of concurrent attempts one hook may
	// have (default 4), so a hanging receiver occupies only its own slots.
	PerHookConcurrency int
	// MaxAttempts is the number of attempts before a delivery becomes a dead
	// letter (default 10).
	MaxAttempts int
	// BackoffBase and BackoffCap shape the wait after the n-th failed attempt:
	// min((2^n − 1) × base, cap) plus 0–20 % jitter (defaults 60 s, 8 h).
	// Retry-After is honoured up to BackoffCap.
	BackoffBase time.Duration
	BackoffCap  time.Duration
	// AttemptTimeout bounds one attempt, quick retries included (default 10 s).
	AttemptTimeout time.Duration
	// QuickRetries is the number of immediate retries inside one attempt on a
	// connection error or a 5xx (default 2; negative: none).
	QuickRetries int
	// QuickRetryWait is the first wait between quick retries; it doubles up
	// to 4× (default 250 ms).
	QuickRetryWait time.Duration
	// DeadLetterTTL is how long dead letters are kept for redelivery
	// (default 7 days).
	DeadLetterTTL time.Duration
	// Retention is how long delivered deliveries and their attempt logs stay
	// listable (default: DeadLetterTTL).
	Retention time.Duration
	// AllowedPrivateNetworks are ranges the SSRF guard lets deliveries reach
	// (delivery.allowedPrivateNetworks).
	AllowedPrivateNetworks []netip.Prefix
	// GCInterval is the period of Badger value-log GC (default 5 min).
	GCInterval time.Duration
	// SweepInterval is the period of the expiry sweep of dead letters and
	// delivered records (default 1 min).
	SweepInterval time.Duration
	// PollInterval is how often due retries are looked for (default 1 s); new
	// deliveries wake the workers at once.
	PollInterval time.Duration
	// ShutdownGrace is how long Run waits for in-flight attempts after its
	// context ends; then their leases return to ready (default 10 s).
	ShutdownGrace time.Duration
	// Logger receives the queue's logs (default: discarded).
	Logger *slog.Logger
	// Registerer, if set, registers the queue's metrics.
	Registerer prometheus.Registerer
	// MemoryBudget is the resident memory the process should stay within
	// (0: no bound kept by the queue). Run then checks the process's
	// resident set every 100 ms and, when it is above five eighths of the
	// budget, asks the kernel to drop the pages of the store's memory-mapped
	// table and value-log files from it (madvise MADV_PAGEOUT: they are read
	// from disk again when needed). Open the database with BadgerOptionsWithin
	// and set the Go limit to GoMemoryLimit of the same budget.
	MemoryBudget int64
	// Now and Rand are the clock and the jitter source (defaults: time.Now and
	// a randomly seeded generator). Rand is used under the queue's lock.
	Now  func() time.Time
	Rand *rand.Rand
}

func (o *Options) withDefaults() (serverURL, host string, err error) {
	u, err := url.Parse(o.ServerURL)
	if err != nil || u.Scheme == "" || u.Host == "" {
		return "", "", fmt.Errorf("queue: server URL %q is not an absolute URL", o.ServerURL)
	}
	switch o.HeaderPrefix {
	case "":
		o.HeaderPrefix = DefaultHeaderPrefix
	case "Ocean", "Misskey":
	default:
		return "", "", fmt.Errorf("queue: header prefix %q is neither Ocean nor Misskey", o.HeaderPrefix)
	}
	setDefault(&o.Workers, DefaultWorkers)
	setDefault(&o.PerHookConcurrency, DefaultPerHookConcurrency)
	setDefault(&o.MaxAttempts, DefaultMaxAttempts)
	setDefault(&o.BackoffBase, DefaultBackoffBase)
	setDefault(&o.BackoffCap, DefaultBackoffCap)
	setDefault(&o.AttemptTimeout, DefaultAttemptTimeout)
	setDefault(&o.QuickRetries, DefaultQuickRetries)
	if o.QuickRetries < 0 {
		o.QuickRetries = 0
	}
	setDefault(&o.QuickRetryWait, DefaultQuickRetryWait)
	setDefault(&o.DeadLetterTTL, DefaultDeadLetterTTL)
	setDefault(&o.Retention, o.DeadLetterTTL)
	setDefault(&o.GCInterval, DefaultGCInterval)
	setDefault(&o.SweepInterval, DefaultSweepInterval)
	setDefault(&o.PollInterval, DefaultPollInterval)
	setDefault(&o.ShutdownGrace, DefaultShutdownGrace)
	if o.Logger == nil {
		o.Logger = slog.New(slog.DiscardHandler)
	}
	if o.Now == nil {
		o.Now = time.Now
	}
	if o.Rand == nil {
		o.Rand = rand.New(rand.NewPCG(rand.Uint64(), rand.Uint64()))
	}
	return strings.TrimRight(o.ServerURL, "/"), u.Host, nil
}

func setDefault[T int | time.Duration](v *T, d T) {
	if *v == 0 {
		*v = d
	}
}

// DefaultMemoryBudget is the memory the store is sized for when none is
// configured (store.memoryBudget): 192 MiB.
const DefaultMemoryBudget = 192 << 20

// minMemoryBudget is the smallest budget the store's sizes are made for.
const minMemoryBudget = 64 << 20

// BadgerOptions are BadgerOptionsWithin(dir, DefaultMemoryBudget).
func BadgerOptions(dir string) badger.Options { return BadgerOptionsWithin(dir, DefaultMemoryBudget) }

// BadgerOptionsWithin are the options the server must open the shared
// database with, sized for a process that stays within budget bytes of
// resident memory (see GoMemoryLimit and Options.MemoryBudget for the other
// two parts of that budget):
//
//   - SyncWrites on: every commit is on disk when Commit returns (Open
//     requires it; the queue shares each commit among many callers);
//   - values of valueThreshold bytes or more (envelopes, large attempt
//     entries) in the value log, so that compactions move keys and small
//     records, not payloads, and value-log GC reclaims delivered bodies;
//   - memtables of budget/24 (at least 2 MiB), three of them, so that
//     memtables and their write-ahead logs take about a quarter of the
//     budget; tables of 2 MiB at every level (a table builder buffers
//     about twice its table) and two compactors; no compression (its
//     buffers were most of the memory a burst of writes cost);
//   - a block cache of budget/16 and an index cache of budget/32, so that
//     table indexes and bloom filters are bounded instead of all held;
//   - value-log files of budget/4 (16 MiB to 1 GiB): the file being written
//     is the one whose pages stay resident;
//   - Badger's logger off (its chatter is not ours to print).
func BadgerOptionsWithin(dir string, budget int64) badger.Options {
	budget = max(budget, minMemoryBudget)
	o := badger.DefaultOptions(dir)
	o.TableSizeMultiplier = 1 // no With method in Badger v4
	return o.
		WithSyncWrites(true).
		WithValueThreshold(valueThreshold).
		WithMemTableSize(max(budget/24, 2<<20)).
		WithNumMemtables(3).
		WithNumLevelZeroTables(3).
		WithNumLevelZeroTablesStall(10).
		WithBaseTableSize(2 << 20).
		WithNumCompactors(2).
		WithCompression(options.None).
		WithBlockCacheSize(budget / 16).
		WithIndexCacheSize(budget / 32).
		WithValueLogFileSize(min(max(budget/4, 16<<20), 1<<30-1)).
		WithLogger(nil).
		WithMetricsEnabled(false)
}

// valueThreshold is the value size from which Badger keeps a value in the
// value log: envelopes go there, delivery records and index keys stay in
// the LSM tree.
const valueThreshold = 512

// GoMemoryLimit is the Go runtime's soft memory limit the budget leaves
// (debug.SetMemoryLimit): half of it; the other half is for the pages of
// the store's files that are mapped in (write-ahead logs, the value log
// being written, tables read), which Run keeps below it (see
// Options.MemoryBudget).
func GoMemoryLimit(budget int64) int64 { return max(budget, minMemoryBudget) / 2 }
