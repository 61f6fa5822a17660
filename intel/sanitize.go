package intel

import (
	"fmt"
	"net/netip"
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

// loopback is never blocked: cutting it breaks the host itself (resolvers,
// local daemons, the control socket's peers).
var loopback = []namedPrefix{
	named("127.0.0.0/8", "loopback"),
	named("::1/128", "loopback"),
	named("::ffff:127.0.0.0/104", "loopback"),
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

// Sanitize drops the entries of a feed that would block everything or the
// host itself, and flags those that look like the local network:
//
//   - skipped: an invalid prefix, 0.0.0.0/0 or ::/0, IPv4 prefixes shorter
//     than /8 (MinBitsIPv4), IPv6 shorter than /16 (MinBitsIPv6), anything
//     overlapping loopback (127.0.0.0/8, ::1), anything overlapping a prefix
//     in protect (the whitelist), anything covering one of host (this
//     host's own addresses: such an entry blocks its whole network,
//     gateway and resolver included);
//   - kept with a warning: anything overlapping a private, CGNAT, unique
//     local or link-local range.
//
// kept is a new slice (entries is not modified) ready for an interval set:
// masked, sorted, and without overlaps, an entry inside another kept one
// being dropped as redundant. That happens after the refusals, so that
// 192.0.2.77 stays blocked when a feed's 192.0.2.0/24 is refused for covering
// a whitelisted 192.0.2.5. skipped lists refused entries (Kept false) and
// warnings (Kept true) in input order. The cost is O(len(entries) ×
// (len(protect)+len(host))), fine for whitelists of hundreds. Its memory is bounded by
// the entries: one copy in kept, and one Skipped each (sharing their Reason
// strings) at most.
func Sanitize(entries []netip.Prefix, protect []netip.Prefix, host ...netip.Addr) (kept []netip.Prefix, skipped []Skipped) {
	kept = make([]netip.Prefix, 0, len(entries))
	// A host address is refused like a whitelisted one, with its own words.
	guard := make([]guarded, 0, len(protect)+len(host))
	for _, w := range protect {
		if w.IsValid() {
			guard = append(guard, guarded{prefix: w, what: "overlaps whitelisted "})
		}
	}
	for _, a := range host {
		if a = a.Unmap().WithZone(""); a.IsValid() {
			guard = append(guard, guarded{prefix: netip.PrefixFrom(a, a.BitLen()), reason: "covers this host's address " + a.String()})
		}
	}
	for _, p := range entries {
		if !p.IsValid() {
			skipped = append(skipped, Skipped{Prefix: p, Reason: "invalid prefix"})
			continue
		}
		p = canonical(p)
		if reason := refuse(p, guard); reason != "" {
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

// guarded is a prefix no entry may overlap, with the words that say why;
// reason caches the whole text, built on first use.
type guarded struct {
	prefix       netip.Prefix
	what, reason string
}

// refuse says why p must not be blocked, or "" when it may be.
func refuse(p netip.Prefix, guard []guarded) string {
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
	if r, ok := overlapping(p, loopback); ok {
		return r.reason
	}
	for i := range guard {
		if g := &guard[i]; p.Overlaps(g.prefix) {
			if g.reason == "" {
				g.reason = g.what + g.prefix.String()
			}
			return g.reason
		}
	}
	return ""
}

func overlapping(p netip.Prefix, ranges []namedPrefix) (namedPrefix, bool) {
	for _, r := range ranges {
		if p.Overlaps(r.prefix) {
			return r, true
		}
	}
	return namedPrefix{}, false
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
