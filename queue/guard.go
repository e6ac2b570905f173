package queue

import (
	"fmt"
	"net"
	"net/netip"
	"syscall"
)

// BlockedError is the network error of an attempt whose target address the
// SSRF guard refused.
type BlockedError struct {
	Addr   netip.Addr
	Reason string
}

func (e *BlockedError) Error() string {
	return fmt.Sprintf("blocked address %s: %s (allow it with delivery.allowedPrivateNetworks)", e.Addr, e.Reason)
}

type blockedRange struct {
	prefix netip.Prefix
	reason string
}

// blockedRanges are checked in order, so the metadata addresses are named
// before the wider ranges that hold them.
var blockedRanges = func() []blockedRange {
	var rs []blockedRange
	add := func(reason string, prefixes ...string) {
		for _, p := range prefixes {
			rs = append(rs, blockedRange{netip.MustParsePrefix(p), reason})
		}
	}
	add("cloud metadata", "169.254.169.254/32", "fd00:ec2::254/128")
	add("unspecified", "0.0.0.0/8", "::/128")
	add("loopback", "127.0.0.0/8", "::1/128")
	add("private", "10.0.0.0/8", "172.16.0.0/12", "192.168.0.0/16")
	add("carrier-grade NAT", "100.64.0.0/10")
	add("link-local", "169.254.0.0/16", "fe80::/10")
	add("multicast", "224.0.0.0/4", "ff00::/8")
	add("reserved", "240.0.0.0/4")
	add("unique local", "fc00::/7")
	return rs
}()

// nat64 holds IPv4 addresses behind the well-known NAT64 prefix.
var nat64 = netip.MustParsePrefix("64:ff9b::/96")

// guard refuses connections to non-public addresses unless allowed.
type guard struct {
	allowed []netip.Prefix
}

// check returns a *BlockedError when addr may not be reached.
func (g guard) check(addr netip.Addr) error {
	addr = addr.Unmap().WithZone("")
	for _, p := range g.allowed {
		if p.Contains(addr) {
			return nil
		}
	}
	reason := blockedReason(addr)
	if reason == "" && nat64.Contains(addr) {
		b := addr.As16()
		reason = blockedReason(netip.AddrFrom4([4]byte(b[12:])))
	}
	if reason == "" {
		return nil
	}
	return &BlockedError{Addr: addr, Reason: reason}
}

func blockedReason(addr netip.Addr) string {
	for _, r := range blockedRanges {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	return ""
}

// control is a net.Dialer Control hook: it runs for every address the dialer
// actually connects to, after name resolution, so a DNS name that resolves to
// a private address is refused as surely as a literal one.
func (g guard) control(_, address string, _ syscall.RawConn) error {
	host, _, err := net.SplitHostPort(address)
	if err != nil {
		return fmt.Errorf("ssrf guard: %w", err)
	}
	addr, err := netip.ParseAddr(host)
	if err != nil {
		return fmt.Errorf("ssrf guard: %w", err)
	}
	return g.check(addr)
}
