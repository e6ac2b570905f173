package queue

import (
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// outcome is what one attempt means for its delivery.
type outcome int

const (
	outSuccess outcome = iota // 2xx: delivered
	outRetry                  // try again after a backoff (dead letter when out of attempts)
	outFinal                  // a final failure: dead letter now
	outGone                   // 410: dead letter now and deactivate the hook
)

func (o outcome) String() string {
	switch o {
	case outSuccess:
		return "success"
	case outRetry:
		return "retry"
	case outFinal:
		return "final"
	case outGone:
		return "gone"
	}
	return "unknown"
}

// classify decides an attempt's outcome from its HTTP status (or the error
// that prevented one) and, for retryable answers, the wait the receiver asked
// for with Retry-After (0 when absent). Only 2xx succeeds; redirects are not
// followed, so a 3xx is a retryable failure like any non-2xx non-4xx answer;
// 4xx is final except 408 and 429; 410 also deactivates the hook.
func classify(status int, err error, header http.Header, now time.Time) (outcome, time.Duration) {
	switch {
	case err != nil:
		return outRetry, 0
	case status >= 200 && status <= 299:
		return outSuccess, 0
	case status == http.StatusGone:
		return outGone, 0
	case status == http.StatusRequestTimeout, status == http.StatusTooManyRequests:
		return outRetry, retryAfter(header, now)
	case status >= 400 && status <= 499:
		return outFinal, 0
	default:
		return outRetry, retryAfter(header, now)
	}
}

// retryAfter parses Retry-After as delay-seconds or an HTTP date; 0 when
// absent, unparsable or in the past.
func retryAfter(h http.Header, now time.Time) time.Duration {
	v := strings.TrimSpace(h.Get("Retry-After"))
	if v == "" {
		return 0
	}
	if s, err := strconv.ParseInt(v, 10, 64); err == nil {
		if s <= 0 {
			return 0
		}
		if s > int64(math.MaxInt64/time.Second) {
			return time.Duration(math.MaxInt64)
		}
		return time.Duration(s) * time.Second
	}
	if t, err := http.ParseTime(v); err == nil && t.After(now) {
		return t.Sub(now)
	}
	return 0
}

// backoff is the wait after the n-th failed attempt (n ≥ 1): Ocean's
// min((2^n − 1) × base, cap) plus round(d × U[0,1) × 0.2) of jitter. A
// Retry-After, when given, replaces it, capped at cap and without jitter.
func backoff(n int, base, limit time.Duration, jitter *rand.Rand, retryAfter time.Duration) time.Duration {
	if retryAfter > 0 {
		return min(retryAfter, limit)
	}
	d := limit
	if n < 62 {
		if f := float64(int64(1)<<n-1) * float64(base); f < float64(limit) {
			d = time.Duration(f)
		}
	}
	return d + time.Duration(math.Round(float64(d)*jitter.Float64()*0.2))
}

// nextDue is when a delivery that has failed n attempts is tried again.
func nextDue(n int, now time.Time, base, limit time.Duration, jitter *rand.Rand, retryAfter time.Duration) time.Time {
	return now.Add(backoff(n, base, limit, jitter, retryAfter))
}
