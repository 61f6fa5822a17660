package intel

import (
	"fmt"
	"net/netip"
	"slices"
	"strings"
)

// Shortest prefixes a feed may hold. Anything shorter blocks a sizeable part of
// the internet (a /7 is 1/128 of IPv4), which no threat list means to do.
const (
	MinBitsIPv4 = 8
	MinBitsIPv6 = 16
)

// Skipped is an entry Sanitize refused (Kept false) or kept but flagged as
// probably harmful to the local network (Kept true).
type Skipped struct {
	Prefix netip.Prefix
	Reason string
	Kept   bool
}

func (s Skipped) String() string { return s.Prefix.String() + " (" + s.Reason + ")" }

// Protected is what Sanitize must never let a feed block besides the ranges
// every host needs (loopback, broadcast, multicast, NAT64, 6to4). The kernel
// applies feed entries in both directions, so an entry covering any of these
// addresses also drops pfwd's own traffic to it.
type Protected struct {
	// Whitelist: an entry overlapping one of these prefixes is refused.
	Whitelist []netip.Prefix
	// Host is this host's own addresses: an entry covering one would cut
	// the host off its network, gateway and resolver included.
	Host []netip.Addr
	// FeedServers are the addresses pfwd connects to for feeds: an entry
	// covering one would stop that feed (or another) for good, since the
	// fetch that could take the entry back could no longer connect.
	FeedServers []FeedServer
	// Resolvers are the DNS servers pfwd needs to resolve feed host names
	// (and the host needs for everything else).
	Resolvers []netip.Addr
}

// FeedServer is an address pfwd connected to, or tried, to fetch Feed: the
// address of a URL that names one, of a server a host name resolved to, of a
// redirect's target or of the proxy.
type FeedServer struct {
	Addr netip.Addr
	Feed string
}

type namedPrefix struct {
	prefix netip.Prefix
	name   string
	// reason is the Skipped.Reason of an overlap, built once: a hostile
	// feed may overlap a range with every one of its entries.
	reason string
}

func named(prefix, name string) namedPrefix {
	p := netip.MustParsePrefix(prefix)
	return namedPrefix{prefix: p, name: name, reason: "overlaps " + name + " " + p.String()}
}

// unblockable ranges are refused whether an entry covers them or lies inside
// them, like loopback always was: each is part of how any host reaches its
// network, and a feed has no reason to list one.
var unblockable = []namedPrefix{
	// Loopback: cutting it breaks the host itself (resolvers, local
	// daemons, the control socket's peers).
	named("127.0.0.0/8", "loopback"),
	named("::1/128", "loopback"),
	named("::ffff:127.0.0.0/104", "loopback"),
	// A DHCPv4 client has no address yet: it sends from 0.0.0.0 to
	// 255.255.255.255.
	named("0.0.0.0/8", "\"this network\" range"),
	named("255.255.255.255/32", "limited broadcast"),
	// Multicast carries mDNS, IGMP and, in IPv6, neighbour discovery
	// (solicited-node ff02::1:ff00:0/104), router advertisements and
	// DHCPv6 (ff02::1:2): an IPv6 host without it has no network.
	named("224.0.0.0/4", "IPv4 multicast"),
	named("ff00::/8", "IPv6 multicast"),
	// On a NAT64 network every IPv4 address is reached inside these, and
	// 6to4 embeds every IPv4 address too: such an entry blocks whatever
	// part of the IPv4 internet it maps.
	named("64:ff9b::/96", "NAT64 well-known prefix"),
	named("64:ff9b:1::/48", "NAT64 local-use prefix"),
	named("2002::/16", "6to4 range"),
}

// localRanges are kept, since a feed may have reasons to list them, but
// reported: lists like firehol_level1 carry bogons that, applied blindly, cut
// the host off its own LAN.
var localRanges = []namedPrefix{
	named("10.0.0.0/8", "private range"),
	named("172.16.0.0/12", "private range"),
	named("192.168.0.0/16", "private range"),
	named("100.64.0.0/10", "shared address space (CGNAT)"),
	named("169.254.0.0/16", "link-local range"),
	named("fc00::/7", "unique local range"),
	named("fe80::/10", "link-local range"),
}

// Sanitize drops the entries of a feed that would block everything, the host
// itself or what it needs, and flags those that look like the local network:
//
//   - skipped: an invalid prefix, 0.0.0.0/0 or ::/0, IPv4 prefixes shorter
//     than /8 (MinBitsIPv4), IPv6 shorter than /16 (MinBitsIPv6); anything
//     covering an address of protect.Host, protect.FeedServers or
//     protect.Resolvers; anything overlapping loopback (127.0.0.0/8, ::1),
//     0.0.0.0/8, 255.255.255.255, multicast (224.0.0.0/4, ff00::/8), NAT64
//     (64:ff9b::/96, 64:ff9b:1::/48) or 6to4 (2002::/16); anything
//     overlapping a prefix of protect.Whitelist;
//   - kept with a warning: anything overlapping a private, CGNAT, unique
//     local or link-local range.
//
// The first reason that applies, in that order, is the one reported: the
// addresses pfwd needs come before the ranges because they name the very
// thing that would break (a feed on 127.0.0.1 listing 127.0.0.1 is refused
// as covering its feed server).
//
// kept is a new slice (entries is not modified) ready for an interval set:
// masked, sorted, and without overlaps, an entry inside another kept one
// being dropped as redundant. That happens after the refusals, so that
// 192.0.2.77 stays blocked when a feed's 192.0.2.0/24 is refused for covering
// a whitelisted 192.0.2.5. skipped lists refused entries (Kept false) and
// warnings (Kept true) in input order. The cost is O(len(entries) ×
// (len(Whitelist) + log(addresses))), fine for whitelists of hundreds. Its
// memory is bounded by the entries: one copy in kept, and one Skipped each
// (sharing their Reason strings) at most.
func Sanitize(entries []netip.Prefix, protect Protected) (kept []netip.Prefix, skipped []Skipped) {
	kept = make([]netip.Prefix, 0, len(entries))
	r := newRefusal(protect)
	for _, p := range entries {
		if !p.IsValid() {
			skipped = append(skipped, Skipped{Prefix: p, Reason: "invalid prefix"})
			continue
		}
		p = canonical(p)
		if reason := r.reason(p); reason != "" {
			skipped = append(skipped, Skipped{Prefix: p, Reason: reason})
			continue
		}
		kept = append(kept, p)
		if r, ok := overlapping(p, localRanges); ok {
			skipped = append(skipped, Skipped{Prefix: p, Reason: r.reason, Kept: true})
		}
	}
	return normalize(kept), skipped
}

// refusal is what Sanitize checks each entry against, built once for a
// list. The Manager checks entries against one too when what it protects
// changes (reprotect: the entries in force when it grows, those it
// withheld when it shrinks), so that an entry is refused for the same
// reasons, in the same words, whenever it is refused.
type refusal struct {
	needed    addrIndex
	whitelist []guarded
}

// guarded is a whitelisted prefix; reason caches the text that refuses an
// entry for it, built on first use.
type guarded struct {
	prefix netip.Prefix
	reason string
}

func newRefusal(protect Protected) *refusal {
	r := &refusal{needed: newAddrIndex(protect), whitelist: make([]guarded, 0, len(protect.Whitelist))}
	for _, w := range protect.Whitelist {
		if w.IsValid() {
			r.whitelist = append(r.whitelist, guarded{prefix: w})
		}
	}
	return r
}

// reason says why p (valid and canonical) must not be blocked, or "" when
// it may be.
func (r *refusal) reason(p netip.Prefix) string {
	if reason := tooWide(p); reason != "" {
		return reason
	}
	if reason, ok := r.needed.covered(p); ok {
		return reason
	}
	if u, ok := overlapping(p, unblockable); ok {
		return u.reason
	}
	for i := range r.whitelist {
		if w := &r.whitelist[i]; p.Overlaps(w.prefix) {
			if w.reason == "" {
				w.reason = "overlaps whitelisted " + w.prefix.String()
			}
			return w.reason
		}
	}
	return ""
}

// tooWide says why p (valid) blocks too much of the internet to be a
// threat, or "".
func tooWide(p netip.Prefix) string {
	family, minBits := "IPv4", MinBitsIPv4
	if p.Addr().Is6() {
		family, minBits = "IPv6", MinBitsIPv6
	}
	switch {
	case p.Bits() == 0:
		return "would block all " + family + " traffic"
	case p.Bits() < minBits:
		return fmt.Sprintf("%s prefix shorter than /%d", family, minBits)
	}
	return ""
}

// refusedForProtection reports whether s, one of Sanitize's reports, is
// an entry refused only because of what a Protected held: with nothing
// protected it would have been kept. Such an entry is the feed's to block
// again once that protection goes; the others (invalid, too wide, a range
// every host needs) never are.
func refusedForProtection(s Skipped) bool {
	if s.Kept || !s.Prefix.IsValid() || tooWide(s.Prefix) != "" {
		return false
	}
	_, always := overlapping(s.Prefix, unblockable)
	return !always
}

func overlapping(p netip.Prefix, ranges []namedPrefix) (namedPrefix, bool) {
	for _, r := range ranges {
		if p.Overlaps(r.prefix) {
			return r, true
		}
	}
	return namedPrefix{}, false
}

// addrIndex holds single addresses no entry may cover, sorted and unique, so
// that an entry is checked in O(log n): feed servers pile up over a
// daemon's life, and a feed has up to DefaultMaxEntries entries.
type addrIndex []indexedAddr

type indexedAddr struct {
	addr   netip.Addr
	reason string
}

// newAddrIndex indexes the addresses of p, unmapped and without zones. An
// address listed twice keeps its first reason, host before feed server
// before resolver.
func newAddrIndex(p Protected) addrIndex {
	ix := make(addrIndex, 0, len(p.Host)+len(p.FeedServers)+len(p.Resolvers))
	add := func(a netip.Addr, reason func(netip.Addr) string) {
		if a = a.Unmap().WithZone(""); a.IsValid() {
			ix = append(ix, indexedAddr{addr: a, reason: reason(a)})
		}
	}
	for _, a := range p.Host {
		add(a, hostReason)
	}
	for _, s := range p.FeedServers {
		add(s.Addr, func(a netip.Addr) string { return feedServerReason(a, s.Feed) })
	}
	for _, a := range p.Resolvers {
		add(a, resolverReason)
	}
	slices.SortStableFunc(ix, func(x, y indexedAddr) int { return x.addr.Compare(y.addr) })
	return slices.CompactFunc(ix, func(x, y indexedAddr) bool { return x.addr == y.addr })
}

func hostReason(a netip.Addr) string { return "covers this host's address " + a.String() }

func feedServerReason(a netip.Addr, feed string) string {
	return fmt.Sprintf("covers the feed server %s of feed %q", a, feed)
}

func resolverReason(a netip.Addr) string {
	return "covers the DNS resolver " + a.String()
}

// covered reports the reason of the lowest indexed address inside p, if any.
// p is canonical: masked, IPv4 unmapped.
func (ix addrIndex) covered(p netip.Prefix) (string, bool) {
	first := p.Masked().Addr()
	i, _ := slices.BinarySearchFunc(ix, first, func(n indexedAddr, a netip.Addr) int { return n.addr.Compare(a) })
	if i < len(ix) && p.Contains(ix[i].addr) {
		return ix[i].reason, true
	}
	return "", false
}

// Summarize renders Sanitize's report for one log line per kind, naming at
// most limit entries of each (none when limit is 0): "skipped 2 entries: 0.0.0.0/0 (would block all
// IPv4 traffic), 127.0.0.0/8 (overlaps loopback 127.0.0.0/8)" and "kept 1
// entry overlapping local ranges: 10.0.0.0/8 (overlaps private range
// 10.0.0.0/8)". Either string is empty when there is nothing to say.
func Summarize(skipped []Skipped, limit int) (refused, warnings string) {
	var r, w []Skipped
	for _, s := range skipped {
		if s.Kept {
			w = append(w, s)
		} else {
			r = append(r, s)
		}
	}
	return describe("skipped %d %s", r, limit), describe("kept %d %s overlapping local ranges", w, limit)
}
func describe(format string, list []Skipped, limit int) string {
	if len(list) == 0 {
		return ""
	}
	noun := "entries"
	if len(list) == 1 {
		noun = "entry"
	}
	var b strings.Builder
	fmt.Fprintf(&b, format, len(list), noun)
	for i, s := range list {
		if i == limit {
			fmt.Fprintf(&b, ", and %d more", len(list)-limit)
			break
		}
		if i == 0 {
			b.WriteString(": ")
		} else {
			b.WriteString(", ")
		}
		b.WriteString(s.String())
	}
	return b.String()
}
