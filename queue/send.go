package queue

import (
	"context"
	"crypto/hmac"
	"crypto/sha256"
	"encoding/base64"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/hashicorp/go-retryablehttp"
)

const (
	// responseLogCap is how much of a response body the attempt log keeps.
	responseLogCap = 4 << 10
	// responseDrainCap is how much more is read to let the connection be
	// reused; a larger body closes the connection instead.
	responseDrainCap = 64 << 10
	// errorLogCap is how much of an attempt's error the attempt log keeps.
	errorLogCap = 512
)

// sender makes the HTTP requests of attempts.
type sender struct {
	quick   *retryablehttp.Client // with quick retries, for queued deliveries
	single  *retryablehttp.Client // one try, for test sends
	prefix  string
	host    string
	timeout time.Duration
	// private tells whether the address an answer came from is an internal
	// one (reachable only through delivery.allowedPrivateNetworks): its
	// body is not kept, so that a hook cannot read an internal service's
	// answers through the attempt log. Tests replace it.
	private func(netip.Addr) bool
}

// isPrivate reports whether addr is not a global unicast address.
func isPrivate(addr netip.Addr) bool {
	return !addr.IsValid() || nonGlobal(addr.Unmap().WithZone("")) != ""
}

// result is what one attempt saw.
type result struct {
	Status   int // HTTP status; 1 for a network error or timeout
	Err      error
	Header   http.Header
	Response string // first 4 KiB of the response body; none from an internal address
	Duration time.Duration
}

func newSender(o *Options, host string) *sender {
	g := guard{allowed: o.AllowedPrivateNetworks}
	dialer := &net.Dialer{Timeout: o.AttemptTimeout, KeepAlive: 30 * time.Second, Control: g.control}
	transport := &http.Transport{
		Proxy:             nil, // a proxy would be the only address the guard sees
		DialContext:       dialer.DialContext,
		ForceAttemptHTTP2: true,
		MaxIdleConns:      max(256, o.Workers),
		// Many hooks often share one receiver host (a bot's server): keep a
		// connection per worker alive to it, or busy hooks redial each time.
		MaxIdleConnsPerHost:   o.Workers,
		IdleConnTimeout:       90 * time.Second,
		TLSHandshakeTimeout:   o.AttemptTimeout,
		ResponseHeaderTimeout: o.AttemptTimeout,
	}
	hc := &http.Client{
		Transport:     keepIdle{transport},
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	mk := func(retries int) *retryablehttp.Client {
		return &retryablehttp.Client{
			HTTPClient:   hc,
			RetryWaitMin: o.QuickRetryWait,
			RetryWaitMax: 4 * o.QuickRetryWait,
			RetryMax:     retries,
			CheckRetry:   quickRetryPolicy,
			Backoff:      retryablehttp.DefaultBackoff,
			ErrorHandler: retryablehttp.PassthroughErrorHandler,
		}
	}
	return &sender{quick: mk(o.QuickRetries), single: mk(0), prefix: o.HeaderPrefix, host: host,
		timeout: o.AttemptTimeout, private: isPrivate}
}

// keepIdle hides the transport's CloseIdleConnections from http.Client:
// go-retryablehttp closes the client's idle connections whenever a request
// fails for good, which would make one failing receiver cost every healthy
// one its keep-alive connections.
type keepIdle struct{ rt http.RoundTripper }

func (k keepIdle) RoundTrip(r *http.Request) (*http.Response, error) { return k.rt.RoundTrip(r) }

// quickRetryPolicy retries inside one attempt only what a moment may fix: a
// connection error that is not the SSRF guard, or a 5xx without Retry-After
// (a receiver that names its wait gets it from the queue's backoff instead).
func quickRetryPolicy(ctx context.Context, resp *http.Response, err error) (bool, error) {
	if ctx.Err() != nil {
		return false, ctx.Err()
	}
	if err != nil {
		var blocked *BlockedError
		return !errors.As(err, &blocked), nil
	}
	return resp.StatusCode >= 500 && resp.Header.Get("Retry-After") == "", nil
}

// send makes one attempt: POST body to target with the hook headers and, for
// a non-empty secret, the Standard Webhooks signature stamped at now.
func (s *sender) send(ctx context.Context, c *retryablehttp.Client, to, hookID, secret, eventID string, body []byte, now time.Time) result {
	start := time.Now()
	ctx, cancel := context.WithTimeout(ctx, s.timeout)
	defer cancel()
	res := s.do(ctx, c, to, hookID, secret, eventID, body, now)
	res.Duration = time.Since(start)
	if res.Err != nil {
		res.Status = 1
		var (
			blocked *BlockedError
			ne      net.Error
		)
		switch {
		case errors.As(res.Err, &blocked):
			res.Err = blocked
		case errors.Is(res.Err, context.DeadlineExceeded) && ctx.Err() != nil,
			errors.As(res.Err, &ne) && ne.Timeout():
			// The attempt's deadline and the transport's own timeouts (dial,
			// TLS handshake, response headers) are all the attempt timeout:
			// whichever fires first, the attempt timed out.
			res.Err = fmt.Errorf("timeout after %s", s.timeout)
		}
	}
	return res
}

func (s *sender) do(ctx context.Context, c *retryablehttp.Client, to, hookID, secret, eventID string, body []byte, now time.Time) result {
	// The address of the connection the answer came on (the last try's).
	var (
		mu     sync.Mutex
		remote netip.Addr
	)
	ctx = httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{GotConn: func(info httptrace.GotConnInfo) {
		var addr netip.Addr
		if a, ok := info.Conn.RemoteAddr().(*net.TCPAddr); ok {
			addr = a.AddrPort().Addr()
		}
		mu.Lock()
		remote = addr
		mu.Unlock()
	}})
	req, err := retryablehttp.NewRequestWithContext(ctx, http.MethodPost, to, body)
	if err != nil {
		return result{Err: fmt.Errorf("bad URL: %w", unwrapURLError(err))}
	}
	h := req.Header
	h.Set("User-Agent", s.prefix+"-Hooks")
	h.Set("X-"+s.prefix+"-Host", s.host)
	h.Set("X-"+s.prefix+"-Hook-Id", hookID)
	h["X-"+s.prefix+"-Hook-Secret"] = []string{secret} // verbatim, even empty
	h.Set("Content-Type", "application/json")
	h.Set("Accept", "*/*")
	if secret != "" {
		ts := strconv.FormatInt(now.Unix(), 10)
		h.Set("Webhook-Id", eventID)
		h.Set("Webhook-Timestamp", ts)
		h.Set("Webhook-Signature", sign(secret, eventID, ts, body))
	}
	resp, err := c.Do(req)
	if err != nil {
		return result{Err: unwrapURLError(err)}
	}
	defer resp.Body.Close()
	head, _ := io.ReadAll(io.LimitReader(resp.Body, responseLogCap))
	_, _ = io.Copy(io.Discard, io.LimitReader(resp.Body, responseDrainCap))
	mu.Lock()
	from := remote
	mu.Unlock()
	if s.private(from) {
		head = nil
	}
	return result{Status: resp.StatusCode, Header: resp.Header, Response: string(head)}
}

// sign is the Standard Webhooks v1 signature: base64 of HMAC-SHA256 keyed by
// the secret's signing key (signingKey) over "id.timestamp.body".
func sign(secret, id, ts string, body []byte) string {
	m := hmac.New(sha256.New, signingKey(secret))
	m.Write([]byte(id))
	m.Write([]byte{'.'})
	m.Write([]byte(ts))
	m.Write([]byte{'.'})
	m.Write(body)
	return "v1," + base64.StdEncoding.EncodeToString(m.Sum(nil))
}

// whsecPrefix marks a secret in the Standard Webhooks format: "whsec_"
// followed by the base64 of the signing key.
const whsecPrefix = "whsec_"

// signingKey is the HMAC key of a hook secret: the decoded key of a
// "whsec_<base64>" secret (what the Standard Webhooks libraries take by
// default), else the secret's own bytes (what they take with the raw
// format). X-…-Hook-Secret carries the secret as it is either way.
func signingKey(secret string) []byte {
	if enc, ok := strings.CutPrefix(secret, whsecPrefix); ok {
		if key, err := base64.StdEncoding.DecodeString(enc); err == nil && len(key) > 0 {
			return key
		}
	}
	return []byte(secret)
}

// unwrapURLError drops *url.Error's "Post <url>:" wrapper: a hook URL may
// carry a credential and must not reach logs.
func unwrapURLError(err error) error {
	var ue *url.Error
	for errors.As(err, &ue) {
		err = ue.Err
	}
	return err
}
