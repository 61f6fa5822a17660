package verdict

import (
	crand "crypto/rand"
	"encoding/binary"
	"sync/atomic"
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
// everything, allowed ports included. A flow the rules allow is confirmed
// and never comes back while it lives, so it is not remembered: the same
// tuple opened again (a TCP connection closed and reopened from the same
// port) is a new connection and counts.
//
// It is a direct-mapped table of atomic words, each a 40-bit fingerprint
// of a flow and the window, and the 24-bit coarse time it was counted:
// lock-free, fixed in size, allocation-free. Two flows that share a slot
// evict each other, so a spoofed flood that churns the table makes flows
// count again: the error only ever counts more, never less.
type countedFlows struct {
	seed  uint64
	mask  uint64
	slots []atomic.Uint64
}

const (
	flowTimeShift = 27 // time unit: 2^27 ns, about 134 ms
	flowTimeBits  = 24 // 2^24 units: about 26 days before a stamp wraps
	flowTimeMask  = 1<<flowTimeBits - 1
)

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
	// Strictly less than the window, in whole units, so that a flow is
	// never taken as seen past it. An age that wrapped (the time field
	// runs out after 26 days) only makes it count again.
	age := (uint64(now>>flowTimeShift) - v) & flowTimeMask
	return h, age < uint64(window>>flowTimeShift)
}

// remember records the flow of hash h as counted and let in at now.
func (c *countedFlows) remember(h uint64, now int64) {
	c.slots[h&c.mask].Store(h>>flowTimeBits<<flowTimeBits | uint64(now>>flowTimeShift)&flowTimeMask)
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
