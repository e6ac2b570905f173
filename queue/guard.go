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

// blockedRanges are every address that is not global unicast, as Ocean's
// guard sees them (ipaddr.js: any range but "unicast") and more. They are
// checked in order, so the metadata addresses are named before the wider
// ranges that hold them. IPv6 outside 2000::/3 (the only global unicast
// block) is refused by check after these.
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
	add("broadcast", "255.255.255.255/32")
	add("reserved", "240.0.0.0/4")
	add("IETF protocol assignments", "192.0.0.0/24", "2001::/23")
	add("documentation", "192.0.2.0/24", "198.51.100.0/24", "203.0.113.0/24", "2001:db8::/32", "3fff::/20")
	add("benchmarking", "198.18.0.0/15")
	add("anycast relay", "192.88.99.0/24", "192.52.193.0/24", "192.31.196.0/24", "192.175.48.0/24", "2620:4f:8000::/48")
	add("discard-only", "100::/64")
	add("unique local", "fc00::/7")
	add("IPv4-compatible", "::/96")
	return rs
}()

// globalUnicast6 is the only IPv6 block with global unicast addresses.
var globalUnicast6 = netip.MustParsePrefix("2000::/3")

// Teredo (2001::/32) carries an IPv4 server and an obfuscated client address;
// it is refused outright, as Ocean refuses it.
var teredo = netip.MustParsePrefix("2001::/32")

// embedding is an IPv6 range whose addresses stand for an IPv4 address
// embedded in them: such an address is judged by the IPv4 address.
type embedding struct {
	prefix netip.Prefix
	name   string
	// at are the RFC 6052 prefix lengths whose layouts may hold the IPv4
	// address; every one is checked, in this order, and the address is
	// refused if any layout holds one that is refused.
	at []int
}

var embeddings = []embedding{
	// SIIT (RFC 6145/7915): ::ffff:0:a.b.c.d.
	{netip.MustParsePrefix("::ffff:0:0:0/96"), "SIIT", []int{96}},
	// The well-known NAT64 prefix (RFC 6052) is always a /96.
	{netip.MustParsePrefix("64:ff9b::/96"), "NAT64", []int{96}},
	// The local-use NAT64 prefix (RFC 8215) may be cut at /48 or longer.
	{netip.MustParsePrefix("64:ff9b:1::/48"), "NAT64", []int{96, 64, 56, 48}},
	// 6to4 (RFC 3056): 2002:a.b.c.d::/48.
	{netip.MustParsePrefix("2002::/16"), "6to4", []int{16}},
}

// embedded is the IPv4 address held by a after its first plen bits, in the
// RFC 6052 layout: bits 64 to 71 (the "u" octet) never carry address bits.
// A plen of 16 is the 6to4 layout (bits 16 to 47), which never reaches it.
func embedded(a netip.Addr, plen int) netip.Addr {
	b := a.As16()
	var v4 [4]byte
	i := plen / 8
	for n := 0; n < 4; i++ {
		if i == 8 {
			continue
		}
		v4[n] = b[i]
		n++
	}
	return netip.AddrFrom4(v4)
}

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
	reason := nonGlobal(addr)
	if reason == "" {
		return nil
	}
	return &BlockedError{Addr: addr, Reason: reason}
}

// nonGlobal says why addr (unmapped, without zone) is not a global unicast
// address; "" when it is one.
func nonGlobal(addr netip.Addr) string {
	if addr.Is6() {
		for _, e := range embeddings {
			if !e.prefix.Contains(addr) {
				continue
			}
			for _, plen := range e.at {
				if r := nonGlobal(embedded(addr, plen)); r != "" {
					return r + " behind " + e.name
				}
			}
			return ""
		}
		if teredo.Contains(addr) {
			return "Teredo"
		}
	}
	for _, r := range blockedRanges {
		if r.prefix.Contains(addr) {
			return r.reason
		}
	}
	if addr.Is6() && !globalUnicast6.Contains(addr) {
		return "reserved"
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
