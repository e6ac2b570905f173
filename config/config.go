// Package config defines oceanhooks' settings: one struct that documents every
// key, strict YAML loading, environment and flag overrides, and validation
// that reports every problem at once.
//
// Precedence, lowest first: the defaults below, the YAML file, environment
// variables (OCEANHOOKS_<KEY>), command-line flags.
package config

import "time"

// Defaults. Each key of Config documents which of these it uses.
const (
	DefaultListen              = ":3001"
	DefaultUpstream            = "http://127.0.0.1:3000"
	DefaultDataDir             = "./data"
	DefaultAdminListen         = "127.0.0.1:9464"
	DefaultTapBodyCap          = 1 << 20 // bytes (1 MiB)
	DefaultShutdownGrace       = 30 * time.Second
	DefaultLogLevel            = "info"
	DefaultLogFormat           = "text"
	DefaultDialTimeout         = 5 * time.Second
	DefaultUpstreamTimeout     = 60 * time.Second
	DefaultMaxIdleConnsPerHost = 1024
	DefaultProxyTransport      = "lean"
	DefaultProxyServer         = "lean"
	DefaultAuthCacheTTL        = 30 * time.Second
	DefaultAuthFailureTTL      = 5 * time.Second
	DefaultAuthTimeout         = 5 * time.Second
	DefaultEventsReadTimeout   = 3 * time.Second
	DefaultHeaderPrefix        = "Ocean"
	DefaultWorkers             = 64
	DefaultPerHookConcurrency  = 4
	DefaultMaxAttempts         = 10
	DefaultBackoffBase         = 60 * time.Second
	DefaultBackoffCap          = 8 * time.Hour
	DefaultAttemptTimeout      = 10 * time.Second
	DefaultQuickRetries        = 2
	DefaultDeadLetterTTL       = 7 * 24 * time.Hour
	DefaultDisableAfter        = 5 * 24 * time.Hour
	DefaultGCInterval          = 5 * time.Minute
	DefaultStoreBackend        = BackendBadger
	DefaultPostgresSchema      = "oceanhooks"
	DefaultMemoryBudget        = 192 << 20 // bytes (192 MiB)
	DefaultObserveTimeout      = 10 * time.Second
	DefaultConfirmWindow       = 5 * time.Second
	// DefaultAdminTokenFile is empty: the token lives in AdminTokenFileName
	// inside dataDir, generated at the first start.
	DefaultAdminTokenFile     = ""
	DefaultAdminMetricsPublic = false
	DefaultTakeOverNative     = true
)

// AdminTokenFileName is the admin token's file in dataDir when
// admin.tokenFile is not set.
const AdminTokenFileName = "admin.token"

// Config is every setting of oceanhooks. The yaml tag is the key in the
// config file; the environment variable is OCEANHOOKS_ followed by the key
// path in upper snake case (delivery.maxAttempts → OCEANHOOKS_DELIVERY_MAX_ATTEMPTS).
type Config struct {
	// Listen is the address the proxy listens on for clients (nginx), host:port.
	// Default ":3001".
	Listen string `yaml:"listen"`
	// Upstream is Ocean's base URL, http or https, where every request that the
	// sidecar does not answer itself is forwarded. Default "http://127.0.0.1:3000".
	Upstream string `yaml:"upstream"`
	// PublicURL is the public URL of the Ocean instance, sent as the `server`
	// field of every delivery and in the X-…-Host header. Default: empty, which
	// means the Upstream URL.
	PublicURL string `yaml:"publicURL"`
	// DataDir is the directory of the embedded store (hooks, queue, attempt
	// log). Only one process may hold it. Default "./data".
	DataDir string `yaml:"dataDir"`
	// AdminListen is the address of the admin listener (/healthz, /readyz,
	// /metrics, operator API), host:port. Keep it private. Default "127.0.0.1:9464".
	AdminListen string `yaml:"adminListen"`
	// TapBodyCap is the largest request or response body, in bytes, that is
	// inspected for a tapped endpoint; larger bodies pass through untapped and
	// are counted. An integer or a size such as "1MiB". Default 1 MiB.
	TapBodyCap ByteSize `yaml:"tapBodyCap"`
	// ShutdownGrace is how long in-flight requests, WebSockets and delivery
	// attempts get to finish after SIGTERM/SIGINT. Default 30s.
	ShutdownGrace Duration `yaml:"shutdownGrace"`

	Ocean    Ocean    `yaml:"ocean"`
	Admin    Admin    `yaml:"admin"`
	Log      Log      `yaml:"log"`
	Proxy    Proxy    `yaml:"proxy"`
	Auth     Auth     `yaml:"auth"`
	Events   Events   `yaml:"events"`
	Hooks    Hooks    `yaml:"hooks"`
	Delivery Delivery `yaml:"delivery"`
	Store    Store    `yaml:"store"`
}

// Ocean configures what oceanhooks reads from Ocean besides its API.
type Ocean struct {
	Redis Redis `yaml:"redis"`
}

// Redis is the Redis that Ocean publishes its events on: Ocean's
// redisForPubsub section, else its redis section. With it, every event Ocean
// fires is taken from Ocean's own event stream (federation, scheduled notes
// and thread mutes included); without it, the API tap alone is used.
type Redis struct {
	// URL is redis://[user[:password]@]host:port[/db], or rediss:// for TLS.
	// Default: empty, which turns the event stream off.
	URL string `yaml:"url"`
	// Password replaces the URL's password when set; give it through
	// OCEANHOOKS_OCEAN_REDIS_PASSWORD to keep it out of the file. Default empty.
	Password string `yaml:"password"`
	// DB is the database number; it does not matter to pub/sub, but is
	// accepted as Ocean's config has it. Default 0 (or the URL's).
	DB int `yaml:"db"`
	// TLS connects with TLS even with a redis:// URL. Default false.
	TLS bool `yaml:"tls"`
	// Channel is the pub/sub channel Ocean publishes on: Ocean's config.host,
	// the host of its url with the port if it has one ("ocean.example",
	// "127.0.0.1:3000"). Default: the host of publicURL (or of upstream).
	Channel string `yaml:"channel"`
}

// Admin configures who may use the admin listener (adminListen).
type Admin struct {
	// TokenFile is the file holding the bearer token that every admin request
	// needs, except GET /healthz, /readyz and (with MetricsPublic) /metrics.
	// Its whole content, surrounding whitespace trimmed, is the token: at
	// least 32 visible ASCII characters. It must not be readable or writable
	// by group or others (mode 0600 or 0400). The operator commands read the
	// same file. Default: empty, which means dataDir/admin.token, created with
	// 32 random bytes (hex) at the first start, which logs it once.
	TokenFile string `yaml:"tokenFile"`
	// MetricsPublic serves GET /metrics without the token (for a scraper
	// that cannot send one). The metrics hold counts and timings only, no
	// hook, user or URL. Default false.
	MetricsPublic bool `yaml:"metricsPublic"`
	// AllowedHosts lists further Host header values the admin listener
	// accepts (it always accepts its listen address's host with its port,
	// and localhost or any IP address when it listens on a loopback or an
	// unspecified address): a name ("oceanhooks") for any port, or
	// name:port. Any other Host is refused (DNS rebinding). Default none.
	AllowedHosts []string `yaml:"allowedHosts"`
}

// Log configures the process log (log/slog on stderr).
type Log struct {
	// Level is the lowest level written: debug, info, warn or error. Default info.
	Level string `yaml:"level"`
	// Format is text (logfmt-like) or json. Default text.
	Format string `yaml:"format"`
}

// Proxy configures the reverse proxy to Ocean.
type Proxy struct {
	// DialTimeout bounds connecting to the upstream. Default 5s.
	DialTimeout Duration `yaml:"dialTimeout"`
	// UpstreamTimeout bounds the wait for the upstream's response headers;
	// past it the client gets an Ocean-style 504. Bodies may stream longer.
	// Default 60s.
	UpstreamTimeout Duration `yaml:"upstreamTimeout"`
	// TrustedProxies lists the networks (CIDRs, or single IPs) whose incoming
	// X-Forwarded-For/-Proto/-Host headers are kept and extended; from any other
	// peer they are replaced. An RFC 7239 Forwarded header is removed from
	// every request. Default none (nginx on another host must be listed).
	TrustedProxies []string `yaml:"trustedProxies"`
	// MaxIdleConnsPerHost is how many idle keep-alive connections to the
	// upstream are kept. Default 1024.
	MaxIdleConnsPerHost int `yaml:"maxIdleConnsPerHost"`
	// Transport is what carries requests to Ocean: "lean", the proxy's own
	// HTTP/1.1 connection pool (one write per small request, WebSockets
	// relayed without idle copy buffers), or "stdlib", Go's net/http
	// Transport, as before the lean one existed (for operators who need it).
	// Timeouts and idle connections above apply to both. Default lean.
	Transport string `yaml:"transport"`
	// Server is what serves the clients' connections: "lean", the sidecar's
	// own HTTP/1.1 server (package front: no per-request background read,
	// deadline changes or second buffer), or "stdlib", Go's net/http server
	// (for operators who need it). The listener's timeouts apply to both.
	// Default lean.
	Server string `yaml:"server"`
	// ObserveTimeout bounds deriving and storing the events of one tapped
	// call (the extra Ocean reads included), after Ocean answered and before
	// the client gets the answer; past it the call's events are lost (counted
	// and logged) and the client gets Ocean's answer. At shutdown, the store
	// waits this long (and a little more) for such calls. At least
	// events.readTimeout. Default 10s.
	ObserveTimeout Duration `yaml:"observeTimeout"`
}

// Auth configures how caller tokens are resolved through Ocean's /api/i.
type Auth struct {
	// CacheTTL is how long a token → user answer is kept in memory (under the
	// token's SHA-256; the token itself is never stored). Default 30s.
	CacheTTL Duration `yaml:"cacheTTL"`
	// FailureTTL is how long a rejected token is remembered. Default 5s.
	FailureTTL Duration `yaml:"failureTTL"`
	// Timeout bounds each request the sidecar makes to Ocean's API: /api/i,
	// and each extra read while deriving events. Default 5s.
	Timeout Duration `yaml:"timeout"`
}

// Events configures event derivation.
type Events struct {
	// ReadTimeout bounds, all together, the extra reads of Ocean that one
	// tapped API call needs while its events are derived (the caller's
	// identity, relations, public user views). Default 3s.
	ReadTimeout Duration `yaml:"readTimeout"`
	// ConfirmWindow is how long, with Ocean's event stream configured, an
	// event the API tap derived waits for its twin on the stream. A twin
	// arriving sends the event at once with Ocean's body; without one, the
	// event is dropped if the stream was up all along (Ocean chose not to
	// fire it) and sent as derived if it was not. Default 5s.
	ConfirmWindow Duration `yaml:"confirmWindow"`
}

// Hooks configures the hook management API (/api/i/webhooks/*).
type Hooks struct {
	// TakeOverNative moves a user's hooks that already exist in Ocean into
	// oceanhooks the first time the user reaches the hook management API
	// through the sidecar: they are read from Ocean with the caller's token,
	// stored with the same name, URL, secret, events and active flag, then
	// switched off in Ocean (kept there, inactive), so that each event fires
	// once, from oceanhooks. Hooks with event types oceanhooks does not send
	// (Ocean's admin-only report events) stay in Ocean. false leaves Ocean's
	// hooks alone: they keep firing from Ocean and are not listed by the
	// sidecar. Default true.
	TakeOverNative bool `yaml:"takeOverNative"`
}

// Delivery configures the delivery queue and its HTTP client.
type Delivery struct {
	// HeaderPrefix names the delivery headers: "Ocean" (X-Ocean-Hook-Id, …) or
	// "Misskey" (X-Misskey-Hook-Id, …) for receivers written for Misskey.
	// Default "Ocean".
	HeaderPrefix string `yaml:"headerPrefix"`
	// Workers is the number of concurrent delivery attempts in total. Default 64.
	Workers int `yaml:"workers"`
	// PerHookConcurrency is the most concurrent attempts to one hook, so a slow
	// receiver cannot hold more than its own slots. Default 4.
	PerHookConcurrency int `yaml:"perHookConcurrency"`
	// MaxAttempts is how many attempts a delivery gets before it becomes a dead
	// letter. Default 10.
	MaxAttempts int `yaml:"maxAttempts"`
	// BackoffBase is the base of the retry delay min((2^n−1)×base, cap) plus up
	// to 20 % jitter. Default 60s.
	BackoffBase Duration `yaml:"backoffBase"`
	// BackoffCap is the longest delay between attempts, Retry-After included.
	// Default 8h.
	BackoffCap Duration `yaml:"backoffCap"`
	// AttemptTimeout bounds one attempt to a receiver, its quick retries
	// included. Default 10s.
	AttemptTimeout Duration `yaml:"attemptTimeout"`
	// QuickRetries is how many immediate retries (after 250 ms, then longer)
	// one attempt makes on a connection error or a 5xx before it counts as
	// failed; the long backoff lives in the queue. Default 2.
	QuickRetries int `yaml:"quickRetries"`
	// DeadLetterTTL is how long dead letters (and the attempt log of delivered
	// deliveries) are kept for inspection and redelivery. Default 168h (7 days).
	DeadLetterTTL Duration `yaml:"deadLetterTTL"`
	// DisableAfter deactivates a hook whose delivery attempts have all failed
	// for this long (from its first failed attempt after a success or after
	// it was activated): its owner sees it inactive, and activating it again
	// starts the clock afresh. 0 never deactivates. Default 120h (5 days).
	DisableAfter Duration `yaml:"disableAfter"`
	// AllowedPrivateNetworks lists networks (CIDRs, or single IPs) that
	// deliveries may connect to although they are loopback, private,
	// link-local or otherwise internal (Ocean's option of the same name).
	// The attempt log keeps only the status and duration of an answer from
	// such an address, never its body. Default none.
	AllowedPrivateNetworks []string `yaml:"allowedPrivateNetworks"`
}

// Store configures where hooks and the delivery queue are kept.
type Store struct {
	// Backend is badger (the embedded store in DataDir, for one process) or
	// postgres (a PostgreSQL database that several sidecars share). Default
	// badger.
	Backend string `yaml:"backend"`
	// Postgres configures the postgres backend.
	Postgres Postgres `yaml:"postgres"`
	// GCInterval is how often the value log is garbage-collected. Default 5m.
	GCInterval Duration `yaml:"gcInterval"`
	// MemoryBudget is the resident memory, in bytes, the process is sized to
	// stay within, whatever the backlog: the store's memtables, caches and
	// files are sized from it, Go's soft memory limit is set to half of it
	// (unless GOMEMLIMIT is set in the environment), and the pages of the
	// store's mapped files are dropped from memory when the resident set
	// passes five eighths of it. At least 64MiB. Default 192MiB.
	MemoryBudget ByteSize `yaml:"memoryBudget"`
}

// The values of store.backend.
const (
	BackendBadger   = "badger"
	BackendPostgres = "postgres"
)

// Postgres configures the PostgreSQL store (store.backend: postgres).
type Postgres struct {
	// URL is the server and database: a libpq URL
	// (postgres://user:password@host:5432/db?sslmode=verify-full) or a
	// key=value DSN. Set it through OCEANHOOKS_STORE_POSTGRES_URL to keep the
	// password out of the file. Required for the postgres backend; never
	// logged. Default empty.
	URL string `yaml:"url"`
	// Schema holds every table of the store, so it can share Ocean's
	// database or use one of its own; created by the migrations if missing.
	// A lower-case identifier. Default oceanhooks.
	Schema string `yaml:"schema"`
}

// Default returns the configuration used when nothing is set.
func Default() Config {
	return Config{
		Listen:        DefaultListen,
		Upstream:      DefaultUpstream,
		DataDir:       DefaultDataDir,
		AdminListen:   DefaultAdminListen,
		TapBodyCap:    DefaultTapBodyCap,
		ShutdownGrace: Duration(DefaultShutdownGrace),
		Admin: Admin{
			TokenFile:     DefaultAdminTokenFile,
			MetricsPublic: DefaultAdminMetricsPublic,
			AllowedHosts:  []string{},
		},
		Log: Log{Level: DefaultLogLevel, Format: DefaultLogFormat},
		Proxy: Proxy{
			DialTimeout:         Duration(DefaultDialTimeout),
			UpstreamTimeout:     Duration(DefaultUpstreamTimeout),
			TrustedProxies:      []string{},
			MaxIdleConnsPerHost: DefaultMaxIdleConnsPerHost,
			Transport:           DefaultProxyTransport,
			Server:              DefaultProxyServer,
			ObserveTimeout:      Duration(DefaultObserveTimeout),
		},
		Auth: Auth{
			CacheTTL:   Duration(DefaultAuthCacheTTL),
			FailureTTL: Duration(DefaultAuthFailureTTL),
			Timeout:    Duration(DefaultAuthTimeout),
		},
		Events: Events{
			ReadTimeout:   Duration(DefaultEventsReadTimeout),
			ConfirmWindow: Duration(DefaultConfirmWindow),
		},
		Hooks: Hooks{TakeOverNative: DefaultTakeOverNative},
		Delivery: Delivery{
			HeaderPrefix:           DefaultHeaderPrefix,
			Workers:                DefaultWorkers,
			PerHookConcurrency:     DefaultPerHookConcurrency,
			MaxAttempts:            DefaultMaxAttempts,
			BackoffBase:            Duration(DefaultBackoffBase),
			BackoffCap:             Duration(DefaultBackoffCap),
			AttemptTimeout:         Duration(DefaultAttemptTimeout),
			QuickRetries:           DefaultQuickRetries,
			DeadLetterTTL:          Duration(DefaultDeadLetterTTL),
			DisableAfter:           Duration(DefaultDisableAfter),
			AllowedPrivateNetworks: []string{},
		},
		Store: Store{Backend: DefaultStoreBackend, Postgres: Postgres{Schema: DefaultPostgresSchema},
			GCInterval: Duration(DefaultGCInterval), MemoryBudget: DefaultMemoryBudget},
	}
}
