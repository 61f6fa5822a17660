package verdict

import (
	"net/netip"
	"sync/atomic"
	"time"

	"github.com/pfw/pfw/rules"
)

// Engine runs the decision pipeline. The compiled Policy and Intel are
// held behind atomic pointers: a packet loads each once, so it sees the old
// config or the new one, never a mix, and reloads never stop the workers.
// Any number of goroutines may call Decide at once.
type Engine struct {
	policy atomic.Pointer[Policy]
	intel  atomic.Pointer[Intel]
	// replaced is the Intel SetIntel last swapped out, kept for
	// ReplacedIntelGrace so that drops the kernel reports late can still
	// name their feed (RecentIntel).
	replaced atomic.Pointer[Intel]
	grace    time.Duration // ReplacedIntelGrace; shorter in tests
	limiter  *RateLimiter
	counted  *countedFlows // the flows the limiter counted in the last window
	now      func() time.Time
	epoch    time.Time // Clock's zero, with a monotonic reading
	cut      cutFlows  // flows a rule change cut (cut.go)
}

// NewEngine returns an engine deciding by p, with a rate limiter tracking
// DefaultLimiterSources sources and no threat entries.
func NewEngine(p *Policy) *Engine {
	e := &Engine{limiter: NewRateLimiter(DefaultLimiterSources), counted: newCountedFlows(DefaultCountedFlows),
		now: time.Now, epoch: time.Now(), grace: ReplacedIntelGrace}
	e.policy.Store(p)
	return e
}

// SetPolicy swaps in a newly compiled config.
func (e *Engine) SetPolicy(p *Policy) { e.policy.Store(p) }

// Policy is the config in force.
func (e *Engine) Policy() *Policy { return e.policy.Load() }

// SetIntel swaps in newly compiled threat entries.
func (e *Engine) SetIntel(in *Intel) {
	old := e.intel.Swap(in)
	if old == nil || old == in {
		return
	}
	e.replaced.Store(old)
	time.AfterFunc(e.grace, func() { e.replaced.CompareAndSwap(old, nil) })
}

// ReplacedIntelGrace is how long threat entries stay known after an update
// replaced them: the kernel reports its drops through NFLOG up to about a
// second late, by when the entry that caused one may be gone.
const ReplacedIntelGrace = 3 * time.Second

// RecentIntel looks a remote address up in the threat entries in force,
// then in those replaced in the last ReplacedIntelGrace. It is for naming
// the feed of a drop the kernel made and reported late, not for deciding.
func (e *Engine) RecentIntel(remote netip.Addr) (Decision, bool) {
	if d, ok := e.intel.Load().Lookup(remote); ok {
		return d, true
	}
	return e.replaced.Load().Lookup(remote)
}

// Intel is the threat entries in force (nil when none).
func (e *Engine) Intel() *Intel { return e.intel.Load() }

// Limiter is the engine's rate limiter.
func (e *Engine) Limiter() *RateLimiter { return e.limiter }

// Decide runs the pipeline for a decoded packet travelling in dir and
// counts it against its source's rate limit when it opens a connection.
func (e *Engine) Decide(p *Packet, dir rules.Direction) Decision {
	return e.decide(p, dir, true, 0)
}

// Clock is the engine's time, in ns since it was made, for DecideAt and
// the limiter. It is monotonic: a wall clock stepped back by NTP or an RTC
// would stretch every source's window of the rate limit, and the life of
// cut flows, by the size of the step; one stepped forward would forget them.
func (e *Engine) Clock() int64 { return e.ClockAt(e.now()) }

// ClockAt is t on the engine's clock; t should come from time.Now, whose
// monotonic reading it uses.
func (e *Engine) ClockAt(t time.Time) int64 { return int64(t.Sub(e.epoch)) }

// DecideAt is Decide at a time the caller read (Clock), for a worker
// deciding a batch of packets that arrived together: reading the clock
// costs about as much as deciding a packet, so it is read once per batch.
func (e *Engine) DecideAt(p *Packet, dir rules.Direction, now int64) Decision {
	return e.decide(p, dir, true, now)
}

// Explain runs the pipeline without counting anything: the answer Decide
// would give, short of the rate limit, which depends on traffic history.
func (e *Engine) Explain(p *Packet, dir rules.Direction) Decision {
	return e.decide(p, dir, false, 0)
}

// decide runs the pipeline; now 0 means "read the clock if the rate limit
// needs it".
func (e *Engine) decide(p *Packet, dir rules.Direction, count bool, now int64) Decision {
	if count && e.cut.n.Load() > 0 {
		if now == 0 {
			now = e.Clock()
		}
		if orig, ok := e.cut.reply(p, now); ok {
			if d, ok := e.decideCut(p, orig); ok {
				return d
			}
		}
	}
	pol := e.policy.Load()
	remote := p.Remote(dir)
	if !remote.IsValid() {
		return decideMalformed
	}
	if pol.whitelist.Contains(remote) {
		return decideWhitelisted
	}
	if pol.blacklist.Contains(remote) {
		return decideBlacklisted
	}
	if d, ok := e.intel.Load().Lookup(remote); ok {
		return d
	}
	if !p.Decidable() {
		return decideMalformed
	}
	d := pol.ruleDecision(p, dir, remote)
	if count && dir == rules.DirIn && pol.rateWindow > 0 && opensConnection(p) {
		if now == 0 {
			now = e.Clock()
		}
		// Every new connection counts, once. A flow the rules block
		// is never confirmed in conntrack, and all its packets come
		// back as new: it is remembered (countedFlows) and counts once
		// a window. One they allow is confirmed, and only its UDP or
		// ICMP packets queued before that come back: it is remembered
		// for AllowedFlowMemory. The rules are looked up first for
		// that, but the rate limit, step 4, still decides before them.
		memo := d.Blocked() || mergedByConntrack(p)
		var h uint64
		if memo {
			var seen bool
			if h, seen = e.counted.seen(p, now, pol.rateWindow); seen {
				return d
			}
		}
		if !e.limiter.Allow(remote, now, pol.rateMax, pol.rateWindow) {
			return decideRateLimited
		}
		switch {
		case d.Blocked():
			e.counted.remember(h, now)
		case memo:
			e.counted.remember(h, now-max(pol.rateWindow-int64(AllowedFlowMemory), 0))
		}
	}
	return d
}

// ruleDecision is steps 5 and 6: the first enabled rule of dir that
// matches, or the default policy.
func (pol *Policy) ruleDecision(p *Packet, dir rules.Direction, remote netip.Addr) Decision {
	t := &pol.tables[dir]
	class := classOf(p.Proto)
	var cands []int32
	if p.HasPorts && class <= classUDP {
		cands = t.ports[class].lookup(p.DstPort)
	} else {
		cands = t.noPorts[class]
	}
	for _, i := range cands {
		r := &pol.rules[i]
		if r.src == nil || r.src.Contains(remote) {
			return r.decision
		}
	}
	return pol.defaults[dir]
}

// opensConnection reports whether p starts a new flow. Only packets that
// conntrack saw as new reach the queue, so every non-TCP packet may; for
// TCP only a SYN without ACK opens a connection. (A flow counts once all
// the same: see countedFlows.)
func opensConnection(p *Packet) bool {
	if p.Proto != ProtoTCP {
		return true
	}
	return p.HasPorts && p.TCPFlags&(TCPSyn|TCPAck) == TCPSyn
}
