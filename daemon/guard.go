package daemon

import (
	"context"
	"log/slog"
	"net/netip"
	"slices"
	"sync/atomic"
	"time"

	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/verdict"
)

// guardKernel is what the guard needs of the kernel (nft.Firewall).
type guardKernel interface {
	Guard(addrs []netip.Addr) error
	Unguard(addrs []netip.Addr) error
	GuardCounts() (map[netip.Addr]uint64, error)
}

// guard holds in the kernel (nft's ratelimit sets) the sources the rate
// limiter refused, so their further connection attempts are dropped before
// the queue instead of costing a verdict each. The verdicts stay the
// pipeline's: every tick it reads how many attempts the kernel dropped per
// source (for the counts and the log; refused attempts do not count in the
// limiter), and lets a source back into the queue as soon as the limiter
// would accept it. The kernel may so
// refuse a source up to one tick longer than the pipeline would (longer
// when thousands of sources are held: see pace).
type guard struct {
	kernel  guardKernel
	engine  *verdict.Engine
	audit   *auditor
	log     *slog.Logger
	limited *limitedLogger // its errors recur every tick while the kernel refuses
	every   time.Duration
	// countEvery is how often the kernel's counters are read while no
	// held source is due for release: a read is a netlink dump per family,
	// about a percent of a core at every tick.
	countEvery time.Duration
	lastRead   time.Time // the loop's own

	notes chan netip.Addr // sources the pipeline refused, from the workers
	kick  chan struct{}   // the policy changed: look again now

	held    map[netip.Addr]uint64 // guarded source → its kernel count already counted; the loop's own
	next    time.Time             // no sync on a tick before this; the loop's own
	debt    int64                 // kernel drops counted minus those NFLOG reported
	logged  atomic.Uint64         // guard drops NFLOG reported since the last tick
	size    atomic.Int64          // len(held), for status
	dropped atomic.Uint64         // attempts the kernel dropped, since start
}

func newGuard(k guardKernel, e *verdict.Engine, a *auditor, log *slog.Logger, limited *limitedLogger) *guard {
	return &guard{
		kernel: k, engine: e, audit: a, log: log, limited: limited, every: 100 * time.Millisecond, countEvery: time.Second,
		notes: make(chan netip.Addr, 1024), kick: make(chan struct{}, 1),
		held: make(map[netip.Addr]uint64),
	}
}

// note tells the guard the pipeline refused src. It never blocks: when
// the guard is behind, src is noted again at its next refusal.
func (g *guard) note(src netip.Addr) {
	select {
	case g.notes <- src:
	default:
	}
}

// policyChanged makes the guard look at every source again.
func (g *guard) policyChanged() {
	select {
	case g.kick <- struct{}{}:
	default:
	}
}

func (g *guard) run(ctx context.Context) {
	// The ticker runs only while there is something to sync: with no
	// source held, the guard costs no wakeup at all (a tick every 100 ms
	// was a sixth of idle pfwd's wakeups). Drops NFLOG reports after the
	// last release are still counted, at the next sync: g.debt carries
	// the difference.
	t := time.NewTicker(g.every)
	t.Stop()
	ticking := false
	defer t.Stop()
	batch := make([]netip.Addr, 0, 256)
	for {
		select {
		case <-ctx.Done():
			return
		case a := <-g.notes:
			batch = append(batch[:0], a)
		drain:
			for len(batch) < cap(batch) {
				select {
				case a := <-g.notes:
					batch = append(batch, a)
				default:
					break drain
				}
			}
			g.hold(batch)
		case <-g.kick:
			g.sync(time.Now())
		case now := <-t.C:
			if (len(g.held) > 0 || g.logged.Load() > 0) && !now.Before(g.next) {
				g.sync(now)
				g.pace(now)
			}
		}
		switch busy := len(g.held) > 0 || g.logged.Load() > 0; {
		case busy && !ticking:
			t.Reset(g.every)
			ticking = true
		case !busy && ticking:
			t.Stop()
			ticking = false
		}
	}
}

// pace sets when the next tick may sync: reading the counters of many
// held sources (a flood from thousands of addresses) takes a while, and
// the guard keeps to about a tenth of a core by waiting ten times as long
// as the last sync took.
func (g *guard) pace(started time.Time) {
	g.next = started.Add(max(g.every, 10*time.Since(started)))
}

// hold puts into the kernel's sets the sources not yet there that the
// limiter still refuses (a note can be late).
func (g *guard) hold(batch []netip.Addr) {
	max, window := g.engine.Policy().RateLimit()
	now := g.engine.Clock()
	var add []netip.Addr
	for _, a := range batch {
		a = a.Unmap()
		if _, ok := g.held[a]; ok || !a.IsValid() || len(g.held)+len(add) >= nft.GuardMax {
			continue
		}
		if window == 0 || !g.engine.Limiter().Exceeded(a, now, max, window) {
			continue
		}
		if !slices.Contains(add, a) {
			add = append(add, a)
		}
	}
	if len(add) == 0 {
		return
	}
	if err := g.kernel.Guard(add); err != nil {
		g.warn("Could not hold sources over the rate limit in the kernel; pfwd keeps refusing them itself", err)
		return
	}
	for _, a := range add {
		g.held[a] = 0
	}
	g.size.Store(int64(len(g.held)))
	g.log.Debug("Holding sources over the rate limit in the kernel", "sources", len(add))
}

// sync releases the sources the limiter would accept again, and reads the
// kernel's drops from the held sources (counted for the status and the
// log, not in the limiter). The limiter alone says whether one is due, so
// the counters are read only then (its last drops count before its
// element goes), when nothing is held (drops NFLOG reported after the
// last release), or every countEvery.
func (g *guard) sync(now time.Time) {
	max, window := g.engine.Policy().RateLimit()
	at := g.engine.ClockAt(now)
	lim := g.engine.Limiter()
	due := len(g.held) == 0 || now.Sub(g.lastRead) >= g.countEvery
	for a := range g.held {
		if due {
			break
		}
		due = window == 0 || !lim.Exceeded(a, at, max, window)
	}
	if !due {
		return
	}
	g.lastRead = now
	var counts map[netip.Addr]uint64
	if len(g.held) > 0 {
		var err error
		if counts, err = g.kernel.GuardCounts(); err != nil {
			g.warn("Could not read the kernel's rate-limit counters", err)
			return
		}
	}
	var total uint64
	var release []netip.Addr
	for a, seen := range g.held {
		n, ok := counts[a]
		if !ok { // gone from the kernel: nothing to release
			delete(g.held, a)
			continue
		}
		if n > seen {
			total += n - seen
			g.held[a] = n
		}
		if window == 0 || !lim.Exceeded(a, at, max, window) {
			release = append(release, a)
		}
	}
	for a := range counts {
		if _, ok := g.held[a]; !ok {
			release = append(release, a) // not ours to keep (a failed release)
		}
	}
	if len(release) > 0 {
		if err := g.kernel.Unguard(release); err != nil {
			g.warn("Could not release sources from the kernel's rate-limit sets", err)
		} else {
			for _, a := range release {
				delete(g.held, a)
			}
		}
	}
	g.size.Store(int64(len(g.held)))
	g.dropped.Add(total)

	// The kernel logs its drops at a bounded rate, like the lists' drops;
	// the rest are counted as blocked, and as log rows suppressed.
	g.debt += int64(total) - int64(g.logged.Swap(0))
	if g.debt > 0 {
		g.audit.unlogged(verdict.ReasonRateLimited, uint64(g.debt))
		g.debt = 0
	}
}

func (g *guard) warn(msg string, err error) {
	g.limited.log("guard", slog.LevelWarn, msg, "err", err)
}
