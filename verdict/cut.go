package verdict

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pfw/pfw/rules"
)

// A rule change cuts the established flows the new rules block by deleting
// their conntrack entries. The next packet of such a flow then looks new to
// conntrack, and if it travels the other way (the server side speaks next;
// TCP's loose pickup makes it an entry too, UDP always does) it is the first
// packet of a flow in the opposite direction: decided as that, an outbound
// packet to the client's ephemeral port, it would usually be let through,
// and the cut flow would live on facing the other way. So the engine
// remembers the reply direction of every cut flow for a while and decides
// its packets as what they are: packets of the original flow.

// CutFlowTTL is how long a cut flow is remembered after its last packet.
// A peer that keeps sending (retransmissions, a UDP stream) keeps it cut;
// one silent for longer comes back as a new flow in its own right.
const CutFlowTTL = 2 * time.Minute

// MaxCutFlows bounds the cut flows remembered at once (about 100 bytes
// each). A rule change cutting more than this leaves the rest to conntrack
// alone; CutFlow reports it.
const MaxCutFlows = 16384

// flowKey is a TCP or UDP flow in one direction.
type flowKey struct {
	src, dst         netip.Addr
	srcPort, dstPort uint16
	proto            uint8
}

// keyOf is the flow p travels; ok is false when p has none to remember (no
// ports, or neither TCP nor UDP).
func keyOf(p *Packet) (k flowKey, ok bool) {
	if !p.HasPorts || (p.Proto != ProtoTCP && p.Proto != ProtoUDP) {
		return k, false
	}
	return flowKey{src: p.Src, dst: p.Dst, srcPort: p.SrcPort, dstPort: p.DstPort, proto: p.Proto}, true
}

// reverse is the same flow the other way.
func (k flowKey) reverse() flowKey {
	return flowKey{src: k.dst, dst: k.src, srcPort: k.dstPort, dstPort: k.srcPort, proto: k.proto}
}

type cutFlow struct {
	dir     rules.Direction // of the original flow
	expires atomic.Int64    // engine Clock; pushed back by each packet, under the read lock
}

// cutFlows maps the reply direction of each cut flow to the original's
// direction. n lets the hot path skip the lock while nothing is cut, which
// is nearly always; latest is the last expiry of any entry, so that once
// all have expired the first packet past it empties the map and the hot
// path is back to one atomic load.
//
// A cut flow that a later change lets back in leaves m for turned: its
// packet that came back was let through as the first of the flow, so
// conntrack's new entry for it faces the wrong way (from the server's
// port to the client's), and will as long as the connection lasts. Its
// packets no longer reach the queue, but the walk that cuts flows after
// each change (the daemon's, through TurnedFlow) must judge that entry as
// the flow it is, not as an outbound one to the client's port, or the
// next block of the same flow would leave it running. A walk's end drops
// the turned flows it did not meet: their entries are gone.
type cutFlows struct {
	n      atomic.Int32
	latest atomic.Int64 // engine Clock
	mu     sync.RWMutex
	m      map[flowKey]*cutFlow
	turned map[flowKey]*turnedFlow
	nTurn  atomic.Int32
	walk   uint64 // the generation of the last walk begun
}

// turnedFlow is a cut flow let back in (see cutFlows).
type turnedFlow struct {
	dir  rules.Direction // of the original flow
	seen uint64          // the last walk that met its entry
}

// CutFlow remembers that the flow p opened in dir was cut, so that packets
// coming back the other way are decided as packets of this flow (see
// above). Only TCP and UDP flows with ports are remembered; it reports
// false when the flow was not (another protocol, or MaxCutFlows reached).
func (e *Engine) CutFlow(p *Packet, dir rules.Direction) bool {
	k, ok := keyOf(p)
	if !ok {
		return false
	}
	now := e.Clock()
	c := &e.cut
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.add(k, dir, now, now+int64(CutFlowTTL))
}

// add remembers the cut flow k, opened in dir, until expires. Caller holds
// mu for writing.
func (c *cutFlows) add(k flowKey, dir rules.Direction, now, expires int64) bool {
	if c.m == nil {
		c.m = make(map[flowKey]*cutFlow)
	}
	if len(c.m) >= MaxCutFlows {
		c.expire(now)
		if len(c.m) >= MaxCutFlows {
			return false
		}
	}
	if _, ok := c.turned[k.reverse()]; ok { // cut again
		delete(c.turned, k.reverse())
		c.nTurn.Store(int32(len(c.turned)))
	}
	f := &cutFlow{dir: dir}
	f.expires.Store(expires)
	c.m[k.reverse()] = f
	c.later(expires)
	c.n.Store(int32(len(c.m)))
	return true
}

// CutRecord is a remembered cut flow, for keeping the memory across a
// restart: the flow's packets come back to the next pfwd as new flows, and
// one that forgot the cut would let the flow live on facing the other way.
type CutRecord struct {
	Proto            uint8 // ProtoTCP or ProtoUDP
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16 // the original flow's, as CutFlow got it
	Dir              rules.Direction
	Left             time.Duration // until it is forgotten, unless a packet comes first
	// Turned: let back in by a later change, with its conntrack entry
	// facing the wrong way (see cutFlows). Kept, whatever Left says,
	// until a walk no longer meets the entry.
	Turned bool
}

// CutRecords lists the cut flows remembered now, leaving out expired ones.
func (e *Engine) CutRecords() []CutRecord {
	c := &e.cut
	if c.n.Load() == 0 && c.nTurn.Load() == 0 {
		return nil
	}
	now := e.Clock()
	c.mu.RLock()
	defer c.mu.RUnlock()
	out := make([]CutRecord, 0, len(c.m)+len(c.turned))
	record := func(k flowKey, dir rules.Direction) CutRecord {
		o := k.reverse()
		return CutRecord{Proto: o.proto, Src: o.src, Dst: o.dst, SrcPort: o.srcPort, DstPort: o.dstPort, Dir: dir}
	}
	for k, f := range c.m {
		left := f.expires.Load() - now
		if left <= 0 {
			continue
		}
		r := record(k, f.dir)
		r.Left = time.Duration(left)
		out = append(out, r)
	}
	for k, f := range c.turned {
		r := record(k, f.dir)
		r.Turned = true
		out = append(out, r)
	}
	return out
}

// RememberCut remembers a cut flow that a previous run recorded, for
// r.Left but never longer than CutFlowTTL. It reports false for a record
// that cannot be a cut flow (another protocol, an invalid address, no
// time left) or when MaxCutFlows are remembered already.
func (e *Engine) RememberCut(r CutRecord) bool {
	src, dst := r.Src.Unmap(), r.Dst.Unmap()
	if (r.Proto != ProtoTCP && r.Proto != ProtoUDP) || !src.IsValid() || !dst.IsValid() ||
		src.Is4() != dst.Is4() || (r.Left <= 0 && !r.Turned) || (r.Dir != rules.DirIn && r.Dir != rules.DirOut) {
		return false
	}
	k := flowKey{src: src, dst: dst, srcPort: r.SrcPort, dstPort: r.DstPort, proto: r.Proto}
	c := &e.cut
	c.mu.Lock()
	defer c.mu.Unlock()
	if r.Turned {
		return c.turn(k.reverse(), r.Dir)
	}
	now := e.Clock()
	return c.add(k, r.Dir, now, now+int64(min(r.Left, CutFlowTTL)))
}

// turn keeps the flow whose reply direction is k, opened in dir, as let
// back in (see cutFlows). Caller holds mu for writing.
func (c *cutFlows) turn(k flowKey, dir rules.Direction) bool {
	if _, ok := c.turned[k]; !ok && len(c.turned) >= MaxCutFlows {
		return false
	}
	if c.turned == nil {
		c.turned = make(map[flowKey]*turnedFlow)
	}
	c.turned[k] = &turnedFlow{dir: dir, seen: c.walk}
	c.nTurn.Store(int32(len(c.turned)))
	return true
}

// BeginFlowWalk starts a walk through the conntrack table that asks
// TurnedFlow about each entry; EndFlowWalk ends it.
func (e *Engine) BeginFlowWalk() uint64 {
	c := &e.cut
	c.mu.Lock()
	defer c.mu.Unlock()
	c.walk++
	return c.walk
}

// TurnedFlow reports whether the conntrack entry whose original tuple is
// src:sport → dst:dport is the wrong-way entry of a cut flow: one let back
// in (see cutFlows), or one still remembered as cut whose reply made an
// entry where pfwd did not decide it (while no pfwd ran, another table's
// conntrack tracked the flow, and nothing filtered it). Then the flow is
// dst:dport → src:sport, opened in dir, and the entry is to be judged as
// that. A cut flow found so is counted as turned from then on; the walk
// cuts it again (CutFlow) if the rules block it. walk is BeginFlowWalk's.
func (e *Engine) TurnedFlow(proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16, walk uint64) (rules.Direction, bool) {
	c := &e.cut
	if c.nTurn.Load() == 0 && c.n.Load() == 0 {
		return 0, false
	}
	k := flowKey{src: src.Unmap(), dst: dst.Unmap(), srcPort: sport, dstPort: dport, proto: proto}
	c.mu.Lock()
	defer c.mu.Unlock()
	if f, ok := c.turned[k]; ok {
		f.seen = walk
		return f.dir, true
	}
	f, ok := c.m[k]
	if !ok || e.Clock() >= f.expires.Load() || !c.turn(k, f.dir) {
		return 0, false // forgotten once its time is up: a new flow in its own right
	}
	delete(c.m, k)
	c.n.Store(int32(len(c.m)))
	c.turned[k].seen = walk
	return f.dir, true
}

// EndFlowWalk ends the walk begun as walk, which met every entry of the
// table: the turned flows it did not meet have no entry left, and are
// dropped. (A flow turned during the walk counts as met.)
func (e *Engine) EndFlowWalk(walk uint64) {
	c := &e.cut
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, f := range c.turned {
		if f.seen < walk {
			delete(c.turned, k)
		}
	}
	c.nTurn.Store(int32(len(c.turned)))
}

// CutFlows is how many cut flows are remembered (expired ones included
// until a packet or a new cut clears them).
func (e *Engine) CutFlows() int { return int(e.cut.n.Load()) }

// later raises latest to t.
func (c *cutFlows) later(t int64) {
	for {
		l := c.latest.Load()
		if t <= l || c.latest.CompareAndSwap(l, t) {
			return
		}
	}
}

// expire drops the flows whose time is up. Caller holds mu for writing.
func (c *cutFlows) expire(now int64) {
	for k, f := range c.m {
		if now >= f.expires.Load() {
			delete(c.m, k)
		}
	}
	c.n.Store(int32(len(c.m)))
}

// reply reports whether p travels back along a cut flow, and the original
// flow's direction; a hit keeps the flow remembered for another TTL.
// Lookups share the lock, so workers do not queue behind one another.
func (c *cutFlows) reply(p *Packet, now int64) (rules.Direction, bool) {
	if now >= c.latest.Load() {
		c.mu.Lock()
		if now >= c.latest.Load() { // all expired: back to the lock-free path
			clear(c.m)
			c.n.Store(0)
		}
		c.mu.Unlock()
		return 0, false
	}
	k, ok := keyOf(p)
	if !ok {
		return 0, false
	}
	c.mu.RLock()
	f, ok := c.m[k]
	c.mu.RUnlock()
	if !ok || now >= f.expires.Load() {
		return 0, false // an expired one goes with the next cut or the last expiry
	}
	f.expires.Store(now + int64(CutFlowTTL))
	c.later(now + int64(CutFlowTTL))
	return f.dir, true
}

// letBackIn moves p's cut flow, opened in dir, from the cut flows to the
// turned ones: the rules in force no longer block it, and p, let through,
// makes its conntrack entry face the wrong way (see cutFlows).
func (c *cutFlows) letBackIn(p *Packet, dir rules.Direction) {
	k, _ := keyOf(p) // reply found it, so it has one
	c.mu.Lock()
	delete(c.m, k)
	c.n.Store(int32(len(c.m)))
	c.turn(k, dir)
	c.mu.Unlock()
}

// decideCut decides p, which travels back along a cut flow opened in dir,
// as a packet of that flow: the flow's opening packet is decided (without
// counting it against any rate limit), and its verdict is p's. When the
// rules in force let the flow through now, it is let back in (letBackIn).
// ok is false when p's flow is no longer remembered as cut.
func (e *Engine) decideCut(p *Packet, dir rules.Direction) (d Decision, ok bool) {
	orig := Packet{Status: StatusOK, Version: p.Version, Proto: p.Proto, Src: p.Dst, Dst: p.Src,
		SrcPort: p.DstPort, DstPort: p.SrcPort, HasPorts: true}
	if p.Proto == ProtoTCP {
		orig.TCPFlags = TCPSyn
	}
	d = e.decide(&orig, dir, false, 0)
	if !d.Blocked() {
		e.cut.letBackIn(p, dir)
	}
	return d, true
}
