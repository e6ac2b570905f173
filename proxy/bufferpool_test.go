package proxy

import (
	"bytes"
	"context"
	"encoding/hex"
	"fmt"
	"io"
	"net/http"
	"net/http/httputil"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

// trackingPool stands between ReverseProxy and the proxy's copy-buffer pool
// and notes which buffers are out.
type trackingPool struct {
	inner  httputil.BufferPool
	mu     sync.Mutex
	out    map[*byte]bool
	gets   int
	faults []string
}

func (tp *trackingPool) Get() []byte {
	b := tp.inner.Get()
	tp.mu.Lock()
	defer tp.mu.Unlock()
	tp.gets++
	if k := &b[:1][0]; tp.out[k] {
		tp.faults = append(tp.faults, "a buffer handed out while another response holds it")
	} else {
		tp.out[k] = true
	}
	return b
}

func (tp *trackingPool) Put(b []byte) {
	tp.mu.Lock()
	if k := &b[:1][0]; tp.out[k] {
		delete(tp.out, k)
	} else {
		tp.faults = append(tp.faults, "a buffer put back that was not out")
	}
	tp.mu.Unlock()
	tp.inner.Put(b)
}

func (tp *trackingPool) state() (outstanding, gets int, faults []string) {
	tp.mu.Lock()
	defer tp.mu.Unlock()
	return len(tp.out), tp.gets, append([]string(nil), tp.faults...)
}

// TestCopyBuffersAreNeverShared: the pooled copy buffers ReverseProxy copies
// responses through are in one response's hands at a time and all back once
// the responses are done, whatever happened to them (plain, tapped, streamed
// in flushed pieces, cut by the upstream, abandoned by the client), and
// every client gets its own bytes.
func TestCopyBuffersAreNeverShared(t *testing.T) {
	const size = 100 << 10 // several copy buffers' worth
	body := func(n int) []byte { return testBytes(size, uint64(n)+1) }
	tapped := func(n int) []byte { return []byte(`{"pad":"` + hex.EncodeToString(body(n)[:size/4]) + `"}`) }
	upstream := newUpstream(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		_, _ = io.Copy(io.Discard, r.Body)
		n, _ := strconv.Atoi(r.URL.Query().Get("n"))
		switch r.URL.Path {
		case "/api/notes/create":
			w.Header().Set("Content-Type", "application/json; charset=utf-8")
			_, _ = w.Write(tapped(n))
		case "/stream": // no length: ReverseProxy flushes as it copies
			b := body(n)
			for len(b) > 0 {
				k := min(len(b), 7000)
				_, _ = w.Write(b[:k])
				_ = http.NewResponseController(w).Flush()
				b = b[k:]
			}
		case "/cut":
			w.Header().Set("Content-Length", strconv.Itoa(size))
			_, _ = w.Write(body(n)[:size/2])
			_ = http.NewResponseController(w).Flush()
			panic(http.ErrAbortHandler)
		default:
			_, _ = w.Write(body(n))
		}
	}))
	sc := newSidecar(t, upstream.URL, tapOpts(&recorder{}, Tap{Endpoint: "notes/create"}))
	tp := &trackingPool{inner: sc.p.plain.BufferPool, out: map[*byte]bool{}}
	sc.p.plain.BufferPool = tp
	sc.p.tapped.BufferPool = tp

	type result struct {
		what string
		ok   bool
	}
	results := make(chan result, 1000)
	fetch := func(n int, method, path string, want []byte) {
		req, err := http.NewRequestWithContext(context.Background(), method, sc.url(path)+"?n="+strconv.Itoa(n), strings.NewReader(`{}`))
		if err != nil {
			results <- result{path + ": " + err.Error(), false}
			return
		}
		req.Header.Set("Content-Type", "application/json")
		resp, err := sc.client.Do(req)
		if err != nil {
			results <- result{path + ": " + err.Error(), false}
			return
		}
		defer resp.Body.Close()
		switch path {
		case "/gone": // the client leaves after the first bytes
			_, err = io.ReadFull(resp.Body, make([]byte, 1024))
			results <- result{path, err == nil}
		case "/cut":
			got, err := io.ReadAll(resp.Body)
			results <- result{path, err != nil && bytes.Equal(got, want[:len(got)])}
		default:
			got, err := io.ReadAll(resp.Body)
			results <- result{fmt.Sprintf("%s n=%d", path, n), err == nil && bytes.Equal(got, want)}
		}
	}
	var wg sync.WaitGroup
	for w := range 8 {
		wg.Go(func() {
			for i := range 6 {
				n := w*10 + i
				fetch(n, http.MethodGet, "/plain", body(n))
				fetch(n, http.MethodPost, "/api/notes/create", tapped(n))
				fetch(n, http.MethodGet, "/stream", body(n))
				fetch(n, http.MethodGet, "/cut", body(n))
				fetch(n, http.MethodGet, "/gone", body(n))
			}
		})
	}
	wg.Wait()
	close(results)
	for r := range results {
		assert.True(t, r.ok, "%s: the client got other bytes than its own", r.what)
	}
	require.Eventually(t, func() bool { out, _, _ := tp.state(); return out == 0 }, guard, 5*time.Millisecond,
		"every copy buffer comes back")
	_, gets, faults := tp.state()
	assert.Positive(t, gets)
	assert.Empty(t, faults)
}
