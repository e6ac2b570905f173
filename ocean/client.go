package ocean

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"time"

	"github.com/tidwall/gjson"
	"golang.org/x/sync/singleflight"
)

// Client defaults.
const (
	DefaultTimeout      = 10 * time.Second
	DefaultTTL          = 30 * time.Second
	DefaultFailureTTL   = 5 * time.Second
	DefaultWebhookLimit = 3 // Ocean's default role policy webhookLimit
	// MaxResponseBytes caps what the client reads of one answer of Ocean.
	MaxResponseBytes = 4 << 20
	// maxCacheEntries caps the token cache; beyond it expired entries are
	// swept and then arbitrary ones dropped.
	maxCacheEntries = 10000
)

// Me is what the sidecar keeps of Ocean's answer to POST /api/i: nothing else
// of the caller's private profile is kept.
type Me struct {
	ID           string
	IsAdmin      bool
	WebhookLimit int // policies.webhookLimit, DefaultWebhookLimit when absent
}

// ClientOptions configure a Client. Zero values take the defaults.
type ClientOptions struct {
	// Timeout bounds each request to Ocean. Default 10s.
	Timeout time.Duration
	// TTL is how long a token's Me is cached. Default 30s.
	TTL time.Duration
	// FailureTTL is how long Ocean's 401/403 for a token is cached. Default 5s.
	FailureTTL time.Duration
	// HTTPClient sends the requests. Default: a client with no timeout of its
	// own (Timeout applies per request).
	HTTPClient *http.Client
	// Logger gets request failures; tokens and bodies are never logged.
	Logger *slog.Logger
	// Now is the clock of the caches. Default time.Now.
	Now func() time.Time
}

// Client reads from Ocean with a caller's token: who the token belongs to
// and whether it may change account settings (both cached in memory under
// the token's SHA-256, never the token itself), and the public reads the
// sidecar needs.
type Client struct {
	base       *url.URL
	hc         *http.Client
	timeout    time.Duration
	ttl        time.Duration
	failureTTL time.Duration
	log        *slog.Logger

	now        func() time.Time
	maxEntries int

	flights singleflight.Group
	mu      sync.Mutex
	// cache holds Me answers keyed by the hex SHA-256 of the token, and
	// CheckWriteAccount verdicts keyed by writeKeyPrefix and that hash.
	cache map[string]cacheEntry
}

type cacheEntry struct {
	me      Me     // zero for a write verdict
	err     *Error // Ocean's refusal, or nil
	expires time.Time
}

// NewClient returns a client for the Ocean at base (scheme, host and any path
// prefix; "/api/<endpoint>" is appended).
func NewClient(base *url.URL, opts ClientOptions) *Client {
	c := &Client{
		base:       base,
		hc:         opts.HTTPClient,
		timeout:    opts.Timeout,
		ttl:        opts.TTL,
		failureTTL: opts.FailureTTL,
		log:        opts.Logger,
		now:        opts.Now,
		maxEntries: maxCacheEntries,
		cache:      map[string]cacheEntry{},
	}
	if c.hc == nil {
		c.hc = &http.Client{}
	}
	if c.timeout <= 0 {
		c.timeout = DefaultTimeout
	}
	if c.ttl <= 0 {
		c.ttl = DefaultTTL
	}
	if c.failureTTL <= 0 {
		c.failureTTL = DefaultFailureTTL
	}
	if c.log == nil {
		c.log = slog.New(slog.DiscardHandler)
	}
	if c.now == nil {
		c.now = time.Now
	}
	return c
}

// tokenKey is the cache key of a token: its hex SHA-256.
func tokenKey(token string) string {
	sum := sha256.Sum256([]byte(token))
	return hex.EncodeToString(sum[:])
}

// Me tells who token belongs to, asking Ocean (POST /api/i) at most once per
// TTL per token; concurrent first lookups of one token share one request.
// Ocean's refusal comes back as the *Error Ocean gave (status included) and
// is remembered for FailureTTL; an Ocean that cannot be reached gives
// ErrUpstreamUnavailable or ErrUpstreamTimeout, never cached.
func (c *Client) Me(ctx context.Context, token string) (Me, error) {
	if token == "" {
		return Me{}, ErrCredentialRequired
	}
	key := tokenKey(token)
	return c.lookup(ctx, key, func(ctx context.Context) (Me, error) {
		me, err := c.fetchMe(ctx, token)
		c.remember(key, me, err)
		return me, err
	})
}

// CheckWriteAccount asks Ocean whether token may change the account's
// settings (permission write:account, which Ocean demands of an app's token
// for i/webhooks/create, update and delete): nil means it may. It changes
// nothing: it calls Ocean's own i/webhooks/update for webhook "0", which no
// user has.
//
// Why that answers the question: Ocean's ApiCallService authenticates the
// token (handleRequest), then call() checks, in this order, `secure`, the
// rate limit, requireCredential, the roles, and then the endpoint's kind
// against an app token's permissions (PERMISSION_DENIED) before it runs
// ep.exec, where Endpoint (endpoint-base.ts) validates the parameters and
// only then calls the handler. So a token without write:account gets
// PERMISSION_DENIED, and one with it (or a native token, which has no
// permission list to check) gets the handler's NO_SUCH_WEBHOOK. See
// misskey-dev/misskey packages/backend/src/server/api/ApiCallService.ts
// (read at 025d1a82 and c561808f; current versions keep the order and add
// kind "permission", hence 403, to the error) and endpoint-base.ts.
//
// A refusal comes back as the *Error Ocean gave (PERMISSION_DENIED, or a
// 401/403 for the token itself) and is remembered for FailureTTL, a verdict
// of allowed for TTL, both keyed by the token's SHA-256. An unreachable or
// failing Ocean, or an answer that is neither verdict, is
// ErrUpstreamUnavailable or ErrUpstreamTimeout, never cached. Concurrent
// first checks of one token share one request.
func (c *Client) CheckWriteAccount(ctx context.Context, token string) error {
	if token == "" {
		return ErrCredentialRequired
	}
	key := writeKeyPrefix + tokenKey(token)
	_, err := c.lookup(ctx, key, func(ctx context.Context) (Me, error) {
		err := c.probeWrite(ctx, token)
		c.rememberVerdict(key, err)
		return Me{}, err
	})
	return err
}

// writeKeyPrefix keeps CheckWriteAccount's verdicts apart from Me's answers
// in the one cache.
const writeKeyPrefix = "write:account/"

// The request CheckWriteAccount makes. "0" is a valid misskey:id (Ocean's
// parameter check passes) that no id generator of Ocean ever yields.
const (
	writeProbeEndpoint = "i/webhooks/update"
	writeProbeParams   = `{"webhookId":"0"}`
)

// probeWrite makes CheckWriteAccount's request and reads Ocean's verdict.
func (c *Client) probeWrite(ctx context.Context, token string) error {
	body, err := c.post(ctx, writeProbeEndpoint, token, []byte(writeProbeParams))
	var oe *Error
	switch {
	case err == nil && body == nil:
		// The update's own 204: past the permission check, with nothing
		// to change.
		return nil
	case err == nil:
		c.log.Warn("ocean answered the write permission check with a body", "endpoint", writeProbeEndpoint)
		return ErrUpstreamUnavailable
	case !errors.As(err, &oe):
		c.log.Warn("ocean write permission check failed", "endpoint", writeProbeEndpoint, "err", redactURLError(err))
		return ErrUpstreamUnavailable
	case (oe.Code == ErrNoSuchWebhookUpdate.Code || oe.Code == ErrWebhookLimitExceeded.Code) && oe.HTTPStatus() < 500:
		// The update's handler ran, so the permission check passed; this
		// fork's handler refuses any update first for a user over the
		// webhook limit in Ocean.
		return nil
	case IsRefusal(oe):
		return oe
	case oe == ErrUpstreamUnavailable || oe == ErrUpstreamTimeout:
		return oe
	default:
		c.log.Warn("ocean answered the write permission check with neither verdict",
			"endpoint", writeProbeEndpoint, "status", oe.HTTPStatus(), "code", oe.Code)
		return ErrUpstreamUnavailable
	}
}

// IsRefusal tells Ocean's refusals of a token: a 401 or 403 (authentication
// failed, account suspended, permission denied), and PERMISSION_DENIED
// whatever its status (older versions, e.g. at c561808f, send it with kind
// client, so 400).
func IsRefusal(oe *Error) bool {
	s := oe.HTTPStatus()
	return s == http.StatusUnauthorized || s == http.StatusForbidden || oe.Code == ErrPermissionDenied.Code
}

// lookup returns key's cached answer, or runs fetch (which caches what it
// should) once for all concurrent callers of key.
func (c *Client) lookup(ctx context.Context, key string, fetch func(context.Context) (Me, error)) (Me, error) {
	if me, err, ok := c.cached(key); ok {
		return me, err
	}
	ch := c.flights.DoChan(key, func() (any, error) {
		if me, err, ok := c.cached(key); ok {
			return me, err
		}
		// The request outlives any one waiter: a caller that gives up must
		// not fail the others sharing the flight.
		ctx, cancel := context.WithTimeout(context.Background(), c.timeout)
		defer cancel()
		return fetch(ctx)
	})
	select {
	case <-ctx.Done():
		return Me{}, ctx.Err()
	case r := <-ch:
		if r.Err != nil {
			return Me{}, r.Err
		}
		return r.Val.(Me), nil
	}
}

// cached returns the live cache entry of key, if any.
func (c *Client) cached(key string) (Me, error, bool) {
	c.mu.Lock()
	defer c.mu.Unlock()
	e, ok := c.cache[key]
	if !ok {
		return Me{}, nil, false
	}
	if !c.now().Before(e.expires) {
		delete(c.cache, key)
		return Me{}, nil, false
	}
	if e.err != nil {
		return Me{}, e.err, true
	}
	return e.me, nil, true
}

// remember caches a success for TTL and Ocean's 401/403 for FailureTTL;
// anything else is not cached.
func (c *Client) remember(key string, me Me, err error) {
	e := cacheEntry{me: me, expires: c.now().Add(c.ttl)}
	if err != nil {
		var oe *Error
		if !errors.As(err, &oe) || (oe.Status != http.StatusUnauthorized && oe.Status != http.StatusForbidden) {
			return
		}
		e.err, e.expires = oe, c.now().Add(c.failureTTL)
	}
	c.store(key, e)
}

// rememberVerdict caches a write permission verdict: allowed for TTL,
// Ocean's refusal for FailureTTL; anything else is not cached.
func (c *Client) rememberVerdict(key string, err error) {
	e := cacheEntry{expires: c.now().Add(c.ttl)}
	if err != nil {
		var oe *Error
		if !errors.As(err, &oe) || !IsRefusal(oe) {
			return
		}
		e.err, e.expires = oe, c.now().Add(c.failureTTL)
	}
	c.store(key, e)
}

func (c *Client) store(key string, e cacheEntry) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, ok := c.cache[key]; !ok && len(c.cache) >= c.maxEntries {
		c.evictLocked()
	}
	c.cache[key] = e
}

// evictLocked makes room: every expired entry goes, then, if the cache is
// still full, arbitrary entries until a tenth of it is free.
func (c *Client) evictLocked() {
	now := c.now()
	for k, e := range c.cache {
		if !now.Before(e.expires) {
			delete(c.cache, k)
		}
	}
	for k := range c.cache {
		if len(c.cache) < c.maxEntries-c.maxEntries/10 {
			break
		}
		delete(c.cache, k)
	}
}

func (c *Client) fetchMe(ctx context.Context, token string) (Me, error) {
	body, err := c.post(ctx, "i", token, []byte("{}"))
	if err != nil {
		return Me{}, err
	}
	if !gjson.ValidBytes(body) {
		c.log.Warn("ocean answered i with a body that is not JSON")
		return Me{}, ErrUpstreamUnavailable
	}
	id := gjson.GetBytes(body, "id")
	if id.Type != gjson.String || id.Str == "" {
		c.log.Warn("ocean answered i without a user id")
		return Me{}, ErrUpstreamUnavailable
	}
	me := Me{ID: id.Str, IsAdmin: gjson.GetBytes(body, "isAdmin").Type == gjson.True, WebhookLimit: DefaultWebhookLimit}
	if l := gjson.GetBytes(body, "policies.webhookLimit"); l.Type == gjson.Number {
		me.WebhookLimit = max(int(l.Int()), 0)
	}
	return me, nil
}

// Call POSTs params (JSON-encoded; []byte and json.RawMessage are sent as
// they are, nil as {}) to /api/<endpoint> with token as Bearer credential and
// returns the answer's body (nil for 204). A non-2xx answer is an *Error with
// Ocean's status; an unreachable Ocean is ErrUpstreamUnavailable, a slow one
// ErrUpstreamTimeout.
func (c *Client) Call(ctx context.Context, endpoint, token string, params any) ([]byte, error) {
	var body []byte
	switch p := params.(type) {
	case nil:
		body = []byte("{}")
	case []byte:
		body = p
	case json.RawMessage:
		body = p
	default:
		b, err := json.Marshal(p)
		if err != nil {
			return nil, fmt.Errorf("ocean %s: encode params: %w", endpoint, err)
		}
		body = b
	}
	ctx, cancel := context.WithTimeout(ctx, c.timeout)
	defer cancel()
	return c.post(ctx, endpoint, token, body)
}

// post sends one request; ctx carries the per-request deadline.
func (c *Client) post(ctx context.Context, endpoint, token string, body []byte) ([]byte, error) {
	u := c.base.JoinPath("api", endpoint)
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, u.String(), bytes.NewReader(body))
	if err != nil {
		return nil, fmt.Errorf("ocean %s: %w", endpoint, err)
	}
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("Accept", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	start := c.now()
	resp, err := c.hc.Do(req)
	if err != nil {
		return nil, c.transportError(ctx, endpoint, err)
	}
	defer resp.Body.Close()
	data, err := io.ReadAll(io.LimitReader(resp.Body, MaxResponseBytes+1))
	if err != nil {
		return nil, c.transportError(ctx, endpoint, err)
	}
	if len(data) > MaxResponseBytes {
		c.log.Warn("ocean answer too large", "endpoint", endpoint, "status", resp.StatusCode, "limit", MaxResponseBytes)
		return nil, fmt.Errorf("ocean %s: answer larger than %d bytes", endpoint, MaxResponseBytes)
	}
	c.log.Debug("ocean call", "endpoint", endpoint, "status", resp.StatusCode, "duration", c.now().Sub(start))
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return nil, parseError(resp.StatusCode, resp.Header, data)
	}
	if resp.StatusCode == http.StatusNoContent {
		return nil, nil
	}
	return data, nil
}

// transportError maps a failed exchange to the sidecar's own errors. A
// caller that went away gets its context's error.
func (c *Client) transportError(ctx context.Context, endpoint string, err error) error {
	if cause := context.Cause(ctx); cause != nil && !errors.Is(cause, context.DeadlineExceeded) {
		return fmt.Errorf("ocean %s: %w", endpoint, cause)
	}
	if errors.Is(err, context.DeadlineExceeded) || errors.Is(ctx.Err(), context.DeadlineExceeded) {
		c.log.Warn("ocean did not answer in time", "endpoint", endpoint, "timeout", c.timeout)
		return ErrUpstreamTimeout
	}
	c.log.Warn("ocean unreachable", "endpoint", endpoint, "err", redactURLError(err))
	return ErrUpstreamUnavailable
}

// redactURLError drops the request URL's query from a *url.Error's text; our
// URLs carry none today, but a transport error must never become a channel
// for anything secret.
func redactURLError(err error) string {
	var ue *url.Error
	if errors.As(err, &ue) {
		u := ue.URL
		if i := strings.IndexByte(u, '?'); i >= 0 {
			u = u[:i]
		}
		return ue.Op + " " + u + ": " + ue.Err.Error()
	}
	return err.Error()
}

// parseError turns a non-2xx answer into an *Error: Ocean's own
// {"error":{…}} when it sent one, otherwise a generic error with its status.
func parseError(status int, h http.Header, body []byte) *Error {
	var env struct {
		Error *Error `json:"error"`
	}
	e := &Error{}
	if json.Unmarshal(body, &env) == nil && env.Error != nil && env.Error.Code != "" {
		e = env.Error
	} else {
		e.Code = "UPSTREAM_ERROR"
		e.Message = fmt.Sprintf("Ocean answered %d %s.", status, http.StatusText(status))
		e.Kind = "client"
		if status >= 500 {
			e.Kind = "server"
		}
	}
	e.Status = status
	if v := h.Values("Www-Authenticate"); len(v) > 0 {
		e.Header = http.Header{"Www-Authenticate": v}
	}
	if v := h.Get("Retry-After"); v != "" {
		if e.Header == nil {
			e.Header = http.Header{}
		}
		e.Header.Set("Retry-After", v)
	}
	return e
}
