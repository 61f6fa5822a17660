// Package verdict decodes the packets NFQUEUE hands to pfwd and decides
// them: whitelist, blacklist, threat intel, rate limit, rules, default
// policy — the first match decides, in that order.
//
// Invariant: the per-packet path allocates nothing and takes no lock but
// the rate limiter's per-bucket one and, only while flows a rule change
// cut are remembered (below), the cut flows' lock: its read side, and its
// write side for the packet that finds them all expired or a cut flow the
// rules now allow. Packet.Decode fills a caller-owned struct and never
// fails (bad input becomes a Status); the config is
// compiled once (Compile, CompileIntel) into immutable prefix sets and port
// indexes that an Engine swaps in atomically, so a packet sees one whole
// config, old or new, and reloads never pause the workers.
//
// One packet, start to finish:
//
//	var p verdict.Packet        // one per worker, reused
//	p.Decode(payload)           // IPv4/IPv6, extension headers, TCP/UDP/ICMP
//	d := engine.Decide(&p, dir) // Decision{Action, Step, Reason, Rule}
//
// A flow known only by its addresses, protocol and ports (a conntrack
// entry, `fwctl explain`) is decided as its first packet, FirstPacket.
//
// Reasons are the strings pfw logs: "Whitelisted IP", "Blacklisted IP",
// "Threat intel: <feed>", "Rate limited", "Rule: <name>", "Default
// policy", and "Malformed packet" for a TCP or UDP header cut before its
// ports, an IPv6 packet cut inside its extension headers, or one carrying
// an IPv4-mapped address (::ffff:a.b.c.d), which never belongs on the wire
// and would reach a dual-stack socket as the IPv4 address. The remote
// address is the source of an inbound packet and the destination of an
// outbound one; the rate limit counts new inbound connections per source
// in a sliding window never exceeded (see RateLimiter for how, and for
// its memory bound).
//
// Flows a rule change cuts (Engine.CutFlow, when the daemon deletes their
// conntrack entries) are remembered for CutFlowTTL after their last packet:
// a packet coming back along one looks to conntrack like a new flow the
// other way, and is decided as a packet of the cut flow instead (cut.go).
// While nothing is cut this costs one atomic load per packet.
//
// The package is pure: it imports rules and the standard library only.
package verdict
