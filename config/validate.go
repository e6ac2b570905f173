package config

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/oceanhooks/oceanhooks/pgstore"
)

// validate returns every problem with c, keyed by dotted key.
func (c Config) validate() []Problem {
	var ps []Problem
	bad := func(key, format string, args ...any) {
		ps = append(ps, Problem{Key: key, Msg: fmt.Sprintf(format, args...)})
	}

	if err := checkAddr(c.Listen); err != nil {
		bad("listen", "%v", err)
	}
	if err := checkAddr(c.AdminListen); err != nil {
		bad("adminListen", "%v", err)
	}
	if _, port, err := net.SplitHostPort(c.Listen); err == nil && port != "0" && c.Listen == c.AdminListen {
		bad("adminListen", "must differ from listen (%s)", c.Listen)
	}
	if err := checkURL(c.Upstream); err != nil {
		bad("upstream", "%v", err)
	}
	if c.PublicURL != "" {
		if err := checkURL(c.PublicURL); err != nil {
			bad("publicURL", "%v", err)
		}
	}
	if strings.TrimSpace(c.DataDir) == "" {
		bad("dataDir", "must not be empty")
	}
	switch c.Store.Backend {
	case BackendBadger:
	case BackendPostgres:
		if strings.TrimSpace(c.Store.Postgres.URL) == "" {
			bad("store.postgres.url", "must be set for the postgres backend (or OCEANHOOKS_STORE_POSTGRES_URL)")
		}
		if !pgstore.ValidSchema(c.Store.Postgres.Schema) {
			bad("store.postgres.schema", "must be a lower-case identifier (letters, digits, _; at most 63 bytes), got %q", c.Store.Postgres.Schema)
		}
	default:
		bad("store.backend", "must be badger or postgres, got %q", c.Store.Backend)
	}
	if c.Store.MemoryBudget < 64<<20 {
		bad("store.memoryBudget", "must be at least 64MiB, got %d bytes", int64(c.Store.MemoryBudget))
	}
	if c.TapBodyCap <= 0 {
		bad("tapBodyCap", "must be more than 0 bytes")
	}
	if _, err := ParseLevel(c.Log.Level); err != nil {
		bad("log.level", "%v", err)
	}
	if c.Log.Format != "text" && c.Log.Format != "json" {
		bad("log.format", "must be text or json, got %q", c.Log.Format)
	}
	if _, err := ParsePrefixes(c.Proxy.TrustedProxies); err != nil {
		bad("proxy.trustedProxies", "%v", err)
	}
	if c.Proxy.Transport != "lean" && c.Proxy.Transport != "stdlib" {
		bad("proxy.transport", "must be lean or stdlib, got %q", c.Proxy.Transport)
	}
	if c.Proxy.Server != "lean" && c.Proxy.Server != "stdlib" {
		bad("proxy.server", "must be lean or stdlib, got %q", c.Proxy.Server)
	}
	if _, err := ParsePrefixes(c.Delivery.AllowedPrivateNetworks); err != nil {
		bad("delivery.allowedPrivateNetworks", "%v", err)
	}
	if c.Admin.TokenFile != "" && strings.TrimSpace(c.Admin.TokenFile) != c.Admin.TokenFile {
		bad("admin.tokenFile", "must not start or end with a space, got %q", c.Admin.TokenFile)
	}
	for _, h := range c.Admin.AllowedHosts {
		if err := checkAllowedHost(h); err != nil {
			bad("admin.allowedHosts", "%v", err)
		}
	}
	if c.Ocean.Redis.URL != "" {
		if err := checkRedisURL(c.Ocean.Redis.URL); err != nil {
			bad("ocean.redis.url", "%v", err)
		}
	}
	if c.Ocean.Redis.DB < 0 {
		bad("ocean.redis.db", "must be 0 or more, got %d", c.Ocean.Redis.DB)
	}
	if ch := c.Ocean.Redis.Channel; ch != "" && (strings.TrimSpace(ch) != ch || strings.ContainsAny(ch, "*?[")) {
		bad("ocean.redis.channel", "must be Ocean's host as it is (no spaces, no pattern characters), got %q", ch)
	}
	if c.Delivery.HeaderPrefix != "Ocean" && c.Delivery.HeaderPrefix != "Misskey" {
		bad("delivery.headerPrefix", "must be Ocean or Misskey, got %q", c.Delivery.HeaderPrefix)
	}

	positive := []struct {
		key string
		d   Duration
	}{
		{"shutdownGrace", c.ShutdownGrace},
		{"proxy.dialTimeout", c.Proxy.DialTimeout},
		{"proxy.upstreamTimeout", c.Proxy.UpstreamTimeout},
		{"proxy.observeTimeout", c.Proxy.ObserveTimeout},
		{"auth.cacheTTL", c.Auth.CacheTTL},
		{"auth.failureTTL", c.Auth.FailureTTL},
		{"auth.timeout", c.Auth.Timeout},
		{"events.readTimeout", c.Events.ReadTimeout},
		{"events.confirmWindow", c.Events.ConfirmWindow},
		{"delivery.backoffBase", c.Delivery.BackoffBase},
		{"delivery.backoffCap", c.Delivery.BackoffCap},
		{"delivery.attemptTimeout", c.Delivery.AttemptTimeout},
		{"delivery.deadLetterTTL", c.Delivery.DeadLetterTTL},
		{"store.gcInterval", c.Store.GCInterval},
	}
	for _, p := range positive {
		if p.d <= 0 {
			bad(p.key, "must be a positive duration, got %s", p.d)
		}
	}
	if c.Proxy.ObserveTimeout > 0 && c.Proxy.ObserveTimeout < c.Events.ReadTimeout {
		bad("proxy.observeTimeout", "must be at least events.readTimeout (%s), got %s", c.Events.ReadTimeout, c.Proxy.ObserveTimeout)
	}
	if c.Delivery.DisableAfter < 0 {
		bad("delivery.disableAfter", "must be 0 (never) or a positive duration, got %s", c.Delivery.DisableAfter)
	}
	if c.Delivery.BackoffCap > 0 && c.Delivery.BackoffCap < c.Delivery.BackoffBase {
		bad("delivery.backoffCap", "must be at least delivery.backoffBase (%s), got %s", c.Delivery.BackoffBase, c.Delivery.BackoffCap)
	}

	atLeast := []struct {
		key      string
		n, least int
	}{
		{"proxy.maxIdleConnsPerHost", c.Proxy.MaxIdleConnsPerHost, 1},
		{"delivery.workers", c.Delivery.Workers, 1},
		{"delivery.perHookConcurrency", c.Delivery.PerHookConcurrency, 1},
		{"delivery.maxAttempts", c.Delivery.MaxAttempts, 1},
		{"delivery.quickRetries", c.Delivery.QuickRetries, 0},
	}
	for _, a := range atLeast {
		if a.n < a.least {
			bad(a.key, "must be at least %d, got %d", a.least, a.n)
		}
	}
	if c.Delivery.QuickRetries > 10 {
		bad("delivery.quickRetries", "must be at most 10 (the long backoff lives in the queue), got %d", c.Delivery.QuickRetries)
	}
	return ps
}

func checkAddr(addr string) error {
	if addr == "" {
		return fmt.Errorf("must not be empty; want host:port such as \":3001\"")
	}
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return fmt.Errorf("invalid address %q: want host:port such as \":3001\"", addr)
	}
	if n, err := strconv.Atoi(port); err != nil || n < 0 || n > 65535 {
		return fmt.Errorf("invalid port in %q", addr)
	}
	return nil
}

// checkAllowedHost checks an admin.allowedHosts entry: a host name or IP
// address, optionally with a port; no scheme, path or wildcard.
func checkAllowedHost(h string) error {
	host := h
	if hp, port, err := net.SplitHostPort(h); err == nil {
		if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
			return fmt.Errorf("invalid port in %q", h)
		}
		host = hp
	}
	if host == "" {
		return fmt.Errorf("invalid host %q: want a name such as \"oceanhooks\" or name:port", h)
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return nil
	}
	for _, label := range strings.Split(host, ".") {
		if label == "" || len(label) > 63 {
			return fmt.Errorf("invalid host %q: want a name such as \"oceanhooks\" or name:port", h)
		}
		for _, r := range label {
			if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '-' || r == '_') {
				return fmt.Errorf("invalid host %q: want a name such as \"oceanhooks\" or name:port (no scheme, path or wildcard)", h)
			}
		}
	}
	return nil
}

func checkURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return fmt.Errorf("invalid URL %q", s)
	}
	if u.Scheme != "http" && u.Scheme != "https" {
		return fmt.Errorf("invalid URL %q: want an http:// or https:// URL", s)
	}
	if u.Host == "" {
		return fmt.Errorf("invalid URL %q: no host", s)
	}
	if u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("invalid URL %q: want no user, query or fragment", s)
	}
	return nil
}

// ParseLevel reads a log level name: debug, info, warn or error.
func ParseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("must be debug, info, warn or error, got %q", s)
}

// ParsePrefixes reads a list of CIDRs; a single IP stands for itself alone.
func ParsePrefixes(list []string) ([]netip.Prefix, error) {
	out := make([]netip.Prefix, 0, len(list))
	var bad []string
	for _, s := range list {
		s = strings.TrimSpace(s)
		if p, err := netip.ParsePrefix(s); err == nil {
			out = append(out, p.Masked())
			continue
		}
		if a, err := netip.ParseAddr(s); err == nil {
			out = append(out, netip.PrefixFrom(a, a.BitLen()))
			continue
		}
		bad = append(bad, strconv.Quote(s))
	}
	if len(bad) > 0 {
		return nil, fmt.Errorf("not a CIDR or IP: %s", strings.Join(bad, ", "))
	}
	return out, nil
}

// UpstreamURL returns Upstream parsed. It fails only on a config that did
// not pass validation.
func (c Config) UpstreamURL() (*url.URL, error) {
	if err := checkURL(c.Upstream); err != nil {
		return nil, fmt.Errorf("upstream: %w", err)
	}
	return url.Parse(c.Upstream)
}

// AdminTokenPath is the file of the admin listener's bearer token:
// admin.tokenFile, else AdminTokenFileName in dataDir.
func (c Config) AdminTokenPath() string {
	if c.Admin.TokenFile != "" {
		return c.Admin.TokenFile
	}
	return filepath.Join(c.DataDir, AdminTokenFileName)
}

// checkRedisURL accepts redis:// and rediss:// URLs with a host. The error
// never quotes the URL, which may hold a password.
func checkRedisURL(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a URL (redis://host:port or rediss://host:port)")
	}
	if u.Scheme != "redis" && u.Scheme != "rediss" {
		return fmt.Errorf("scheme must be redis or rediss, got %q", u.Scheme)
	}
	if u.Hostname() == "" {
		return errors.New("has no host")
	}
	return nil
}

// StreamChannel is the pub/sub channel of Ocean's event stream:
// ocean.redis.channel, else the host (with port) of publicURL or upstream.
func (c Config) StreamChannel() string {
	if c.Ocean.Redis.Channel != "" {
		return c.Ocean.Redis.Channel
	}
	u, err := url.Parse(c.ServerURL())
	if err != nil {
		return ""
	}
	return u.Host
}

// ServerURL is the `server` field of deliveries: PublicURL, else Upstream,
// without a trailing slash (Ocean sends "https://example.com").
func (c Config) ServerURL() string {
	s := c.PublicURL
	if s == "" {
		s = c.Upstream
	}
	return strings.TrimRight(s, "/")
}
