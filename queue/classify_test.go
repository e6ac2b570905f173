package queue

import (
	"context"
	"io"
	"math"
	"math/rand/v2"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// TestClassifyAttempts sends a real attempt for each case and checks the
// status recorded, the outcome and when the delivery is due next after its
// third failure, under a fixed clock and seeded jitter.
func TestClassifyAttempts(t *testing.T) {
	now := time.Date(2026, 1, 2, 3, 4, 5, 0, time.UTC)
	const base, limit = time.Minute, 8 * time.Hour
	const failed = 3 // backoff after the third failure: (2^3 − 1) × 1 min = 7 min
	redirected := 0
	target := httptest.NewServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) { redirected++ }))
	t.Cleanup(target.Close)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/301":
			http.Redirect(w, r, target.URL, http.StatusMovedPermanently)
			return
		case "/429":
			w.Header().Set("Retry-After", "120")
		case "/503":
			w.Header().Set("Retry-After", now.Add(30*time.Minute).Format(http.TimeFormat))
		case "/500-huge-retry-after":
			w.Header().Set("Retry-After", "999999")
		case "/hang":
			_, _ = io.Copy(io.Discard, r.Body) // so that the server notices the client leaving
			<-r.Context().Done()
			return
		}
		digits, _, _ := strings.Cut(r.URL.Path[1:], "-")
		code, _ := strconv.Atoi(digits)
		w.WriteHeader(code)
	}))
	t.Cleanup(srv.Close)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	refused := "http://" + ln.Addr().String() + "/"
	require.NoError(t, ln.Close())

	backoffOnly := func(d time.Duration) time.Duration { return d } // jitter added by the check below
	cases := []struct {
		name       string
		url        string
		guarded    bool // no allowlist: the SSRF guard applies to loopback
		status     int
		out        outcome
		retryAfter time.Duration
		errPart    string
		wait       func(time.Duration) time.Duration // expected backoff before jitter; nil: no retry
	}{
		{name: "200", url: srv.URL + "/200", status: 200, out: outSuccess},
		{name: "204", url: srv.URL + "/204", status: 204, out: outSuccess},
		{name: "301 not followed", url: srv.URL + "/301", status: 301, out: outRetry, wait: backoffOnly},
		{name: "400", url: srv.URL + "/400", status: 400, out: outFinal},
		{name: "404", url: srv.URL + "/404", status: 404, out: outFinal},
		{name: "408", url: srv.URL + "/408", status: 408, out: outRetry, wait: backoffOnly},
		{name: "410", url: srv.URL + "/410", status: 410, out: outGone},
		{name: "429 with Retry-After", url: srv.URL + "/429", status: 429, out: outRetry, retryAfter: 2 * time.Minute},
		{name: "500", url: srv.URL + "/500", status: 500, out: outRetry, wait: backoffOnly},
		{name: "500 with Retry-After over the cap", url: srv.URL + "/500-huge-retry-after", status: 500, out: outRetry, retryAfter: 999999 * time.Second},
		{name: "503 with Retry-After date", url: srv.URL + "/503", status: 503, out: outRetry, retryAfter: 30 * time.Minute},
		{name: "timeout", url: srv.URL + "/hang", status: 1, out: outRetry, errPart: "timeout after", wait: backoffOnly},
		{name: "connection refused", url: refused, status: 1, out: outRetry, errPart: "refused", wait: backoffOnly},
		{name: "DNS failure", url: "http://no-such-host.invalid/", status: 1, out: outRetry, errPart: "no-such-host.invalid", wait: backoffOnly},
		{name: "blocked address", url: srv.URL + "/200", guarded: true, status: 1, out: outRetry, errPart: "blocked address 127.0.0.1: loopback", wait: backoffOnly},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(nil)
			opts.AttemptTimeout = 300 * time.Millisecond
			if tc.guarded {
				opts.AllowedPrivateNetworks = nil
			}
			_, host, err := opts.withDefaults()
			require.NoError(t, err)
			s := newSender(&opts, host)
			res := s.send(context.Background(), s.quick, tc.url, "h1", "", "e1", []byte(`{}`), now)
			assert.Equal(t, tc.status, res.Status)
			if tc.errPart != "" {
				require.Error(t, res.Err)
				assert.Contains(t, res.Err.Error(), tc.errPart)
			} else {
				assert.NoError(t, res.Err)
			}

			out, ra := classify(res.Status, res.Err, res.Header, now)
			assert.Equal(t, tc.out, out)
			assert.Equal(t, tc.retryAfter, ra)

			if out != outRetry {
				return
			}
			due := nextDue(failed, now, base, limit, rand.New(rand.NewPCG(7, 7)), ra)
			if tc.retryAfter > 0 {
				assert.Equal(t, now.Add(min(tc.retryAfter, limit)), due, "Retry-After replaces the backoff, capped")
				return
			}
			r := rand.New(rand.NewPCG(7, 7)).Float64()
			d := tc.wait(7 * time.Minute)
			assert.Equal(t, now.Add(d+time.Duration(math.Round(float64(d)*r*0.2))), due)
		})
	}
	assert.Zero(t, redirected, "redirects are not followed")
}

func TestBackoffSchedule(t *testing.T) {
	const base, limit = time.Minute, 8 * time.Hour
	zero := rand.New(zeroSource{})
	cases := []struct {
		n    int
		want time.Duration
	}{
		{1, time.Minute}, {2, 3 * time.Minute}, {3, 7 * time.Minute}, {4, 15 * time.Minute},
		{8, 255 * time.Minute}, {9, limit}, {63, limit}, {1000, limit},
	}
	for _, tc := range cases {
		t.Run(strconv.Itoa(tc.n), func(t *testing.T) {
			assert.Equal(t, tc.want, backoff(tc.n, base, limit, zero, 0))
			// Jitter adds at most 20 %.
			r := rand.New(rand.NewPCG(uint64(tc.n), 1))
			for range 50 {
				d := backoff(tc.n, base, limit, r, 0)
				assert.GreaterOrEqual(t, d, tc.want)
				assert.LessOrEqual(t, d, tc.want+tc.want/5)
			}
		})
	}
}

// zeroSource makes Float64 return 0.
type zeroSource struct{}

func (zeroSource) Uint64() uint64 { return 0 }

// TestEveryTimeoutReadsTheSame: whichever of the attempt's deadline and the
// transport's header timeout fires first, the attempt timed out and says so
// in the same words (they are equal in production, so either may win).
func TestEveryTimeoutReadsTheSame(t *testing.T) {
	srv := newHangingReceiver(t)
	cases := []struct {
		name                string
		attempt, headerWait time.Duration
	}{
		{name: "attempt deadline first", attempt: 100 * time.Millisecond, headerWait: time.Minute},
		{name: "header timeout first", attempt: time.Minute, headerWait: 100 * time.Millisecond},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			opts := testOptions(nil)
			opts.AttemptTimeout = tc.attempt
			_, host, err := opts.withDefaults()
			require.NoError(t, err)
			s := newSender(&opts, host)
			s.quick.HTTPClient.Transport.(keepIdle).rt.(*http.Transport).ResponseHeaderTimeout = tc.headerWait
			res := s.send(context.Background(), s.quick, srv.URL, "h1", "", "e1", []byte(`{}`), time.Now())
			assert.Equal(t, 1, res.Status)
			require.Error(t, res.Err)
			assert.Equal(t, "timeout after "+tc.attempt.String(), res.Err.Error())
			out, _ := classify(res.Status, res.Err, res.Header, time.Now())
			assert.Equal(t, outRetry, out)
		})
	}
}
