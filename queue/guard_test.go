package queue

import (
	"context"
	"errors"
	"net/http"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"github.com/oceanhooks/oceanhooks/webhook"
)

func TestGuardCheck(t *testing.T) {
	tenNet := []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
	cases := []struct {
		addr    string
		allowed []netip.Prefix
		reason  string // "" = allowed
	}{
		{addr: "127.0.0.1", reason: "loopback"},
		{addr: "127.255.0.9", reason: "loopback"},
		{addr: "::1", reason: "loopback"},
		{addr: "10.1.2.3", reason: "private"},
		{addr: "10.1.2.3", allowed: tenNet},
		{addr: "127.0.0.1", allowed: tenNet, reason: "loopback"},
		{addr: "172.16.0.1", reason: "private"},
		{addr: "172.31.255.255", reason: "private"},
		{addr: "172.32.0.1"},
		{addr: "192.168.1.1", reason: "private"},
		{addr: "169.254.169.254", reason: "cloud metadata"},
		{addr: "169.254.1.1", reason: "link-local"},
		{addr: "fe80::1", reason: "link-local"},
		{addr: "fe80::1%eth0", reason: "link-local"},
		{addr: "100.64.0.1", reason: "carrier-grade NAT"},
		{addr: "100.127.255.255", reason: "carrier-grade NAT"},
		{addr: "224.0.0.1", reason: "multicast"},
		{addr: "ff02::1", reason: "multicast"},
		{addr: "0.0.0.0", reason: "unspecified"},
		{addr: "::", reason: "unspecified"},
		{addr: "255.255.255.255", reason: "broadcast"},
		{addr: "240.0.0.1", reason: "reserved"},
		{addr: "254.1.2.3", reason: "reserved"},
		{addr: "192.0.0.8", reason: "IETF protocol assignments"},
		{addr: "192.0.2.1", reason: "documentation"},
		{addr: "198.51.100.7", reason: "documentation"},
		{addr: "203.0.113.9", reason: "documentation"},
		{addr: "198.18.0.1", reason: "benchmarking"},
		{addr: "198.19.255.255", reason: "benchmarking"},
		{addr: "198.20.0.1"},
		{addr: "192.88.99.1", reason: "anycast relay"},
		{addr: "2001:db8::1", reason: "documentation"},
		{addr: "3fff::1", reason: "documentation"},
		{addr: "100::1", reason: "discard-only"},
		{addr: "2001:4:112::1", reason: "IETF protocol assignments"},
		{addr: "2620:4f:8000::1", reason: "anycast relay"},
		{addr: "4000::1", reason: "reserved"},
		{addr: "::7f00:1", reason: "IPv4-compatible"},
		{addr: "::808:808", reason: "IPv4-compatible"},
		// Teredo is refused whatever it embeds.
		{addr: "2001::1", reason: "Teredo"},
		{addr: "2001:0:4136:e378:8000:63bf:f7f7:f7f7", reason: "Teredo"},
		// Addresses that embed an IPv4 address are judged by it.
		{addr: "2002:7f00:1::1", reason: "loopback behind 6to4"},
		{addr: "2002:a00:1::1", reason: "private behind 6to4"},
		{addr: "2002:808:808::1"},
		{addr: "64:ff9b::a00:1", reason: "private behind NAT64"},
		{addr: "64:ff9b::c0a8:1", reason: "private behind NAT64"},
		{addr: "64:ff9b::808:808"},
		{addr: "64:ff9b:1::7f00:1", reason: "loopback behind NAT64"},
		{addr: "64:ff9b:1::a9fe:a9fe", reason: "cloud metadata behind NAT64"},
		{addr: "64:ff9b:1:a08:8:808:808:808", reason: "private behind NAT64"}, // 10.8.8.8 in the /48 layout, 8.8.8.8 in the others
		{addr: "64:ff9b:1:808:8:808:808:808"},                                 // 8.8.8.8 in every layout
		{addr: "::ffff:0:7f00:1", reason: "loopback behind SIIT"},
		{addr: "::ffff:0:a9fe:a9fe", reason: "cloud metadata behind SIIT"},
		{addr: "::ffff:0:808:808"},
		{addr: "fc00::1", reason: "unique local"},
		{addr: "fd12:3456::1", reason: "unique local"},
		{addr: "fd00:ec2::254", reason: "cloud metadata"},
		{addr: "::ffff:127.0.0.1", reason: "loopback"},
		{addr: "::ffff:10.0.0.1", reason: "private"},
		{addr: "::ffff:10.0.0.1", allowed: tenNet},
		{addr: "::ffff:169.254.169.254", reason: "cloud metadata"},
		{addr: "64:ff9b::7f00:1", reason: "loopback behind NAT64"},
		{addr: "8.8.8.8"},
		{addr: "::ffff:8.8.8.8"},
		{addr: "2001:4860:4860::8888"},
	}
	for _, tc := range cases {
		name := tc.addr
		if tc.allowed != nil {
			name += " allowed " + tc.allowed[0].String()
		}
		t.Run(name, func(t *testing.T) {
			err := guard{allowed: tc.allowed}.check(netip.MustParseAddr(tc.addr))
			if tc.reason == "" {
				assert.NoError(t, err)
				return
			}
			var blocked *BlockedError
			require.ErrorAs(t, err, &blocked)
			assert.Equal(t, tc.reason, blocked.Reason)
			assert.Contains(t, err.Error(), "(allow it with delivery.allowedPrivateNetworks)")
		})
	}
}

// TestSSRFGuardAtDialTime sends real attempts: the guard sees the address
// actually dialled, after name resolution.
func TestSSRFGuardAtDialTime(t *testing.T) {
	rc := newReceiver(t, always(http.StatusOK))
	port := rc.URL[strings.LastIndex(rc.URL, ":"):]
	cases := []struct {
		name    string
		url     string
		allowed []netip.Prefix
		status  int
		errPart string
	}{
		{name: "loopback refused by default", url: rc.URL, status: 1, errPart: "blocked address 127.0.0.1: loopback"},
		{name: "loopback allowed by the allowlist", url: rc.URL, allowed: loopback, status: 200},
		{name: "a name resolving to loopback is refused", url: "http://localhost" + port + "/", status: 1, errPart: ": loopback (allow it with"},
		{name: "IPv4-mapped loopback is refused", url: "http://[::ffff:127.0.0.1]" + port + "/", status: 1, errPart: "blocked address 127.0.0.1: loopback"},
		{name: "10/8 refused by default", url: "http://10.255.255.1/", status: 1, errPart: "blocked address 10.255.255.1: private"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			before := rc.count()
			opts := testOptions(nil)
			opts.AllowedPrivateNetworks = tc.allowed
			hooks := newFakeHooks()
			q := openQueue(t, openDB(t, ""), hooks, opts)
			status, err := q.SendTest(context.Background(), webhook.TestSend{HookID: "h1", UserID: "u1", URL: tc.url, Type: "note", Body: []byte(`{}`)})
			assert.Equal(t, tc.status, status)
			if tc.errPart == "" {
				require.NoError(t, err)
				assert.Equal(t, before+1, rc.count())
				return
			}
			require.Error(t, err)
			assert.Contains(t, err.Error(), tc.errPart)
			assert.Equal(t, before, rc.count(), "the receiver is never reached")
			require.Len(t, hooks.attempts(), 1)
			assert.Equal(t, 1, hooks.attempts()[0].Status, "a blocked attempt records status 1")
		})
	}
	t.Run("10/8 allowed by the allowlist reaches the dial", func(t *testing.T) {
		opts := testOptions(nil)
		opts.AllowedPrivateNetworks = []netip.Prefix{netip.MustParsePrefix("10.0.0.0/8")}
		opts.AttemptTimeout = 200 * time.Millisecond
		q := openQueue(t, openDB(t, ""), newFakeHooks(), opts)
		// Whatever is (or is not) there answers; the guard lets the dial happen.
		_, err := q.SendTest(context.Background(), webhook.TestSend{URL: "http://10.255.255.1/", Type: "note"})
		var blocked *BlockedError
		assert.False(t, errors.As(err, &blocked), "not blocked: %v", err)
	})
	t.Run("a blocked queued delivery is retried with the reason in its attempt log", func(t *testing.T) {
		hooks := newFakeHooks()
		hooks.add("h1", "u1", rc.URL, "", "note")
		opts := testOptions(nil)
		opts.AllowedPrivateNetworks = nil
		q := openQueue(t, openDB(t, ""), hooks, opts)
		runQueue(t, q)
		enqueue(t, q, event("u1", "note", `{}`))
		require.Eventually(t, func() bool {
			ds := list(t, q, "h1")
			return len(ds) == 1 && len(ds[0].Attempts) == 1 && ds[0].State == webhook.StateReady
		}, waitFor, tick)
		a := list(t, q, "h1")[0].Attempts[0]
		assert.Equal(t, 1, a.Status)
		assert.Equal(t, "blocked address 127.0.0.1: loopback (allow it with delivery.allowedPrivateNetworks)", a.Error)
	})
}
