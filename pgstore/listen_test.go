package pgstore_test

import (
	"context"
	"net"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/internal/pgtest"
)

// silencer is a TCP proxy to a server whose connections open so far can be
// made to stop carrying anything while they stay open (a peer that
// vanished without closing: a dead host, a dropped NAT entry); later
// connections work.
type silencer struct {
	ln    net.Listener
	mu    sync.Mutex
	conns []*atomic.Bool // each open connection's silence
	all   []net.Conn
}

func newSilencer(t *testing.T, upstream string) *silencer {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	require.NoError(t, err)
	s := &silencer{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			up, err := net.Dial("tcp", upstream)
			if err != nil {
				_ = c.Close()
				continue
			}
			quiet := &atomic.Bool{}
			s.mu.Lock()
			s.conns = append(s.conns, quiet)
			s.all = append(s.all, c, up)
			s.mu.Unlock()
			go pipe(up, c, quiet)
			go pipe(c, up, quiet)
		}
	}()
	t.Cleanup(func() {
		_ = ln.Close()
		s.mu.Lock()
		defer s.mu.Unlock()
		for _, c := range s.all {
			_ = c.Close()
		}
	})
	return s
}

// pipe copies from src to dst until either closes, dropping what it reads
// once quiet.
func pipe(dst, src net.Conn, quiet *atomic.Bool) {
	buf := make([]byte, 32<<10)
	for {
		n, err := src.Read(buf)
		if n > 0 && !quiet.Load() {
			if _, werr := dst.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}

// silence makes every connection open now carry nothing more.
func (s *silencer) silence() {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, q := range s.conns {
		q.Store(true)
	}
}

// A listener whose connection goes silent without closing is not left
// waiting on it: it notices, reconnects, reloads, and hears later
// notifications; Connected is false meanwhile.
func TestListenNoticesASilentConnection(t *testing.T) {
	direct := pgtest.Open(t)
	u, err := url.Parse(pgtest.URLOf(t, direct))
	require.NoError(t, err)
	s := newSilencer(t, u.Host)
	u.Host = s.ln.Addr().String()
	db := pgtest.OpenSchema(t, u.String(), direct.Schema())
	ch := db.Channel("test")

	ctx, cancel := context.WithCancel(context.Background())
	var connects, heard atomic.Int32
	done := make(chan error, 1)
	go func() {
		done <- db.Listen(ctx, []string{ch}, func(context.Context) error {
			connects.Add(1)
			return nil
		}, func(string, string) { heard.Add(1) })
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			assert.NoError(t, err)
		case <-time.After(30 * time.Second):
			assert.Fail(t, "Listen did not return after its context ended")
		}
	})
	require.Eventually(t, db.Connected, 10*time.Second, 10*time.Millisecond)
	require.Equal(t, int32(1), connects.Load())

	s.silence()
	require.Eventually(t, func() bool { return connects.Load() >= 2 && db.Connected() }, 30*time.Second, 10*time.Millisecond,
		"reconnects and reloads after its connection went silent")
	require.Eventually(t, func() bool {
		_, err := direct.Pool().Exec(context.Background(), "SELECT pg_notify($1, 'x')", ch)
		return err == nil && heard.Load() > 0
	}, 10*time.Second, 50*time.Millisecond, "hears notifications again")
}
