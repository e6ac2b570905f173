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

// BadgerOptions are the options the server must open the shared database
// with: SyncWrites on (every commit is on disk before Commit returns, each
// commit with a sync of its own, see the package doc), values over
// 1 KiB (envelopes) in the value log so that the LSM tree stays small and
// value-log GC reclaims delivered bodies, and Badger's logger off (its chatter
// is not ours to print).
func BadgerOptions(dir string) badger.Options {
	return badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithValueThreshold(1 << 10).
		WithLogger(nil).
		WithMetricsEnabled(false)
}
