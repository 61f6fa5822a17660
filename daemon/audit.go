package daemon

import (
	"fmt"
	"log/slog"
	"maps"
	"math/rand/v2"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// auditor is the queues' Observer: it counts every decision per verdict
// and reason, writes a row for every block and a sample of allows, and
// logs blocks at a bounded rate. It runs on the queue workers, so nothing
// here waits: the writer's enqueue never blocks and counters are atomic.
type auditor struct {
	engine     *verdict.Engine
	writer     *store.Writer
	log        *slog.Logger
	blockLines *sampler // spaces out the "Blocked packet" lines

	// Seen is allowed plus blocked (Status, logStats): one shared counter
	// fewer for the workers to bump on every packet.
	allowed, blocked, kernelBlocked atomic.Uint64

	// byReason maps a verdict and reason to its counter. The workers read
	// it on every packet without a lock; a reason seen for the first time
	// replaces the map with a copy that has it (under mu), which happens
	// once per reason.
	mu       sync.Mutex
	byReason atomic.Pointer[map[reasonKey]*atomic.Uint64]

	guard atomic.Pointer[guard] // set once the kernel's table exists; told of rate-limit refusals
}

type reasonKey struct {
	blocked bool
	reason  string
}

func newAuditor(e *verdict.Engine, w *store.Writer, log *slog.Logger) *auditor {
	a := &auditor{engine: e, writer: w, log: log, blockLines: newSampler(time.Second, 5)}
	a.byReason.Store(&map[reasonKey]*atomic.Uint64{})
	return a
}

// Decided implements queue.Observer.
func (a *auditor) Decided(p *verdict.Packet, dir rules.Direction, d verdict.Decision, payload []byte) {
	a.decided(p, dir, d, payload, true)
}

// decided counts and logs one decision; queued says it is the pipeline's
// own (not a drop the kernel reported), which alone tells the guard of a
// refused source.
func (a *auditor) decided(p *verdict.Packet, dir rules.Direction, d verdict.Decision, payload []byte, queued bool) {
	a.reasonCounter(d).Add(1)
	if !d.Blocked() {
		a.allowed.Add(1)
		if rate := a.engine.Policy().SampleRate(); rate > 0 && rand.Float64() < rate {
			// The reason is not stored for allowed rows, but rows over the
			// writer's cap are counted under it, as blocked ones are.
			a.writer.Allowed(rowOf(p, dir, d.Reason, 0, time.Now()))
		}
		return
	}
	a.blocked.Add(1)
	if queued && d.Step == verdict.StepRateLimit {
		if g := a.guardRef(); g != nil {
			g.note(p.Src)
		}
	}
	// Stamped now, not when the writer takes the row: under load its
	// queue holds rows for a while.
	now := time.Now()
	a.writer.Blocked(rowOf(p, dir, d.Reason, packetHash(payload), now))
	if ok, missed := a.blockLines.allow(d.Reason, now); ok {
		args := []any{"reason", d.Reason, "proto", store.ProtoName(p.Proto), "src", endpoint(p, true), "dst", endpoint(p, false), "dir", dir.String()}
		if missed > 0 {
			args = append(args, "similar_not_logged", missed)
		}
		a.log.Info("Blocked packet", args...)
	}
}

// unlogged counts n packets the kernel dropped for reason without logging
// them (its log rule is rate-limited): blocked, and their rows suppressed.
func (a *auditor) unlogged(reason string, n uint64) {
	a.blocked.Add(n)
	a.kernelBlocked.Add(n)
	a.reasonCounter(verdict.Decision{Action: rules.ActionBlock, Reason: reason}).Add(n)
	a.writer.BlockedNotLogged(reason, n)
}

func (a *auditor) setGuard(g *guard) { a.guard.Store(g) }

func (a *auditor) guardRef() *guard { return a.guard.Load() }

func (a *auditor) reasonCounter(d verdict.Decision) *atomic.Uint64 {
	k := reasonKey{d.Blocked(), d.Reason}
	if c := (*a.byReason.Load())[k]; c != nil {
		return c
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.byReason.Load()
	if c := old[k]; c != nil {
		return c
	}
	m := make(map[reasonKey]*atomic.Uint64, len(old)+1)
	maps.Copy(m, old)
	c := new(atomic.Uint64)
	m[k] = c
	a.byReason.Store(&m)
	return c
}

// forgetRemovedRules drops the counts of the rules cfg no longer has: the
// per-reason counts (and pfw_packets_total's series) would otherwise grow
// with every rule ever added and removed, until pfwd restarts. A packet
// such a rule decided just before the change counts it once more.
func (a *auditor) forgetRemovedRules(cfg *rules.Config) {
	names := make(map[string]bool, len(cfg.Rules))
	for _, r := range cfg.Rules {
		names[r.Name] = true
	}
	a.mu.Lock()
	defer a.mu.Unlock()
	old := *a.byReason.Load()
	var m map[reasonKey]*atomic.Uint64
	for k := range old {
		if name, ok := verdict.RuleOfReason(k.reason); ok && !names[name] {
			if m == nil {
				m = maps.Clone(old)
			}
			delete(m, k)
		}
	}
	if m != nil {
		a.byReason.Store(&m)
	}
}

// reasonCount is the number of packets decided one way for one reason.
type reasonCount struct {
	Verdict string
	Reason  string
	Count   uint64
}

// reasons returns the per-reason counts, sorted.
func (a *auditor) reasons() []reasonCount {
	byReason := *a.byReason.Load()
	out := make([]reasonCount, 0, len(byReason))
	for k, c := range byReason {
		v := "allow"
		if k.blocked {
			v = "block"
		}
		out = append(out, reasonCount{v, k.reason, c.Load()})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].Verdict != out[j].Verdict {
			return out[i].Verdict < out[j].Verdict
		}
		return out[i].Reason < out[j].Reason
	})
	return out
}

// kernelAudit reports the kernel's own drops (blacklist and intel sets,
// and the rate-limit guard).
type kernelAudit struct{ *auditor }

func (k kernelAudit) Decided(p *verdict.Packet, dir rules.Direction, d verdict.Decision, payload []byte) {
	k.kernelBlocked.Add(1)
	if d.Step == verdict.StepRateLimit {
		if g := k.guardRef(); g != nil {
			g.logged.Add(1)
		}
	}
	k.auditor.decided(p, dir, d, payload, false)
}

func rowOf(p *verdict.Packet, dir rules.Direction, reason string, hash uint64, at time.Time) store.Row {
	return store.Row{
		Time: at, Src: p.Src, Dst: p.Dst, SrcPort: p.SrcPort, DstPort: p.DstPort, HasPorts: p.HasPorts,
		Proto: p.Proto, Reason: reason, Hash: hash, Outbound: dir == rules.DirOut,
	}
}

// packetHash fingerprints the copied headers, so repeated packets of one
// flow can be grouped in the log.
func packetHash(b []byte) uint64 {
	h := uint64(14695981039346656037) // FNV-1a, inline: hash/fnv's interface would allocate
	for _, c := range b {
		h ^= uint64(c)
		h *= 1099511628211
	}
	return h
}

func endpoint(p *verdict.Packet, src bool) string {
	a, port := p.Dst, p.DstPort
	if src {
		a, port = p.Src, p.SrcPort
	}
	if !p.HasPorts {
		return a.String()
	}
	if a.Is6() {
		return fmt.Sprintf("[%s]:%d", a, port)
	}
	return fmt.Sprintf("%s:%d", a, port)
}
