package verdict

import (
	crand "crypto/rand"
	"encoding/binary"
	"sync/atomic"
	"time"
)

// DefaultCountedFlows is how many flows the rate limit remembers having
// counted (8 bytes each: 512 KiB).
const DefaultCountedFlows = 1 << 16

// countedFlows remembers the flows counted against the rate limit in the
// last window that the rules block, so that such a flow counts once
// however many of its packets come to be decided. Only conntrack-new
// packets reach the queue, and a flow the pipeline blocks is never
// confirmed: every packet of a blocked UDP stream (a device sending syslog
// to a blocked port ten times a second), and every retransmitted SYN of a
// blocked connection, comes back as new. Counted each, they put the source
// over the limit within seconds, and from then on it was refused
// everything, allowed ports included.
//
// A flow the rules allow is confirmed and does not come back while it
// lives: the same tuple opened again (a TCP connection closed and reopened
// from the same port) is a new connection and counts. Only the packets of
// a UDP or ICMP flow queued before its first verdict confirmed it come
// back, each with a conntrack entry of its own that conntrack then merges
// into the first: such a flow is remembered for AllowedFlowMemory, so that
// a burst to an allowed port counts once (a confirmed UDP or ICMP entry
// lives 30 s, so its tuple back within that time is such a packet).
//
// It is a direct-mapped table of atomic words, each a 32-bit fingerprint
// of a flow and the window, and the 32-bit time it was counted in units of
// about a millisecond: lock-free, fixed in size, allocation-free. Two
// flows that share a slot evict each other, so a spoofed flood that
// churns the table makes flows count again: the error only ever counts
// more, never less.
type countedFlows struct {
	seed  uint64
	mask  uint64
	slots []atomic.Uint64
}

const (
	flowTimeShift = 20 // time unit: 2^20 ns, about a millisecond
	flowTimeBits  = 32 // 2^32 units: about 52 days before a stamp wraps
	flowTimeMask  = 1<<flowTimeBits - 1
)

// AllowedFlowMemory is how long an allowed UDP or ICMP flow is remembered
// as counted (see countedFlows).
const AllowedFlowMemory = 2 * time.Second

func newCountedFlows(n int) *countedFlows {
	size := 1
	for size < n {
		size <<= 1
	}
	var seed [8]byte
	_, _ = crand.Read(seed[:]) // keeps a sender from aiming its flows at one slot
	return &countedFlows{seed: binary.LittleEndian.Uint64(seed[:]), mask: uint64(size - 1), slots: make([]atomic.Uint64, size)}
}

// seen reports whether p's flow was counted, let in and blocked by the
// rules in the window before now (the engine's Clock); h is the flow's
// hash, for remember. A flow counted under another window length is not
// seen: the limiter starts its counts over when the window changes.
func (c *countedFlows) seen(p *Packet, now, window int64) (h uint64, ok bool) {
	h = c.hash(p, window)
	v := c.slots[h&c.mask].Load()
	if v>>flowTimeBits != h>>flowTimeBits {
		return h, false
	}
	// Less than the window, in whole units of a millisecond. An age
	// that wrapped (the time field runs out after 52 days) only makes it
	// count again.
	age := (uint64(now>>flowTimeShift) - v) & flowTimeMask
	return h, age < uint64(window>>flowTimeShift)
}

// remember records the flow of hash h as counted and let in at now; a
// flow remembered at a time before now is forgotten that much sooner.
func (c *countedFlows) remember(h uint64, now int64) {
	c.slots[h&c.mask].Store(h>>flowTimeBits<<flowTimeBits | uint64(now>>flowTimeShift)&flowTimeMask)
}

// mergedByConntrack reports whether p's flow is one whose packets queued
// before its first verdict each reach the pipeline as new: UDP with its
// ports, ICMP and ICMPv6 (with an echo identifier when it has one). Not
// TCP, whose later packets are no SYNs, nor protocols pfw reads no ports
// of, whose flows it cannot tell apart.
func mergedByConntrack(p *Packet) bool {
	switch p.Proto {
	case ProtoUDP:
		return p.HasPorts
	case ProtoICMP, ProtoICMPv6:
		return true
	}
	return false
}

// hash mixes what tells one flow from another as conntrack does (the
// protocol, both addresses, and the ports, or an ICMP message's type, code
// and echo identifier) with the window it is counted in. Each part gets a
// multiply and shift of its own, so that no two parts cancel out whatever
// the seed.
func (c *countedFlows) hash(p *Packet, window int64) uint64 {
	src, dst := limiterKey(p.Src), limiterKey(p.Dst)
	var l4 uint64
	switch {
	case p.HasPorts:
		l4 = uint64(p.SrcPort)<<16 | uint64(p.DstPort)
	case p.Proto == ProtoICMP || p.Proto == ProtoICMPv6:
		l4 = uint64(p.ICMPType)<<24 | uint64(p.ICMPCode)<<16 | uint64(p.ICMPID)
	}
	h := c.seed
	for _, w := range [...]uint64{uint64(p.Proto), uint64(window), l4, src.hi, src.lo, dst.hi, dst.lo} {
		h = (h ^ w) * 0x9e3779b97f4a7c15
		h ^= h >> 32
	}
	h *= 0xbf58476d1ce4e5b9
	return h ^ h>>29
}
