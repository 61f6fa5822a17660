package daemon

import (
	"errors"
	"io"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// fakeGuardKernel is the kernel's ratelimit sets: held sources and their
// drop counters.
type fakeGuardKernel struct {
	counts map[netip.Addr]uint64
	fail   error
	reads  int // GuardCounts calls
}

func (k *fakeGuardKernel) Guard(addrs []netip.Addr) error {
	if k.fail != nil {
		return k.fail
	}
	for _, a := range addrs {
		if _, ok := k.counts[a]; !ok {
			k.counts[a] = 0
		}
	}
	return nil
}

func (k *fakeGuardKernel) Unguard(addrs []netip.Addr) error {
	for _, a := range addrs {
		if _, ok := k.counts[a]; !ok {
			return errors.New("no such element")
		}
	}
	for _, a := range addrs {
		delete(k.counts, a)
	}
	return nil
}

func (k *fakeGuardKernel) GuardCounts() (map[netip.Addr]uint64, error) {
	k.reads++
	return maps.Clone(k.counts), nil
}

// TestGuard: a refused source is held in the kernel; the attempts the
// kernel drops count in the limiter, so a source that keeps flooding stays
// held; once it stops it is released exactly when the limiter would let it
// in; drops the kernel did not log are counted as blocked and suppressed.
func TestGuard(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := rules.Parse([]byte(`{"rate_limit": {"max_connections": 10, "window_seconds": 10}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := verdict.NewEngine(verdict.Compile(cfg))
	w := st.NewWriter(store.WriterConfig{})
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	a := newAuditor(e, w, log)
	k := &fakeGuardKernel{counts: map[netip.Addr]uint64{}}
	g := newGuard(k, e, a, log, newLimitedLogger(log))
	a.setGuard(g)

	src := netip.MustParseAddr("192.0.2.1")
	t0 := time.Now()
	syn := verdict.Packet{Status: verdict.StatusOK, Version: 4, Proto: verdict.ProtoUDP, Src: src, Dst: netip.MustParseAddr("192.0.2.9"), HasPorts: true, DstPort: 53}
	var refused verdict.Decision
	for i := range 11 {
		syn.SrcPort = uint16(40000 + i) // a new flow each: one flow counts once
		refused = e.DecideAt(&syn, rules.DirIn, e.ClockAt(t0))
		a.Decided(&syn, rules.DirIn, refused, nil)
	}
	if refused.Step != verdict.StepRateLimit {
		t.Fatalf("11th connection in the window: %+v, want the rate limit", refused)
	}
	g.hold([]netip.Addr{<-g.notes})
	if _, ok := k.counts[src]; !ok || g.size.Load() != 1 {
		t.Fatalf("refused source not held in the kernel: %v", k.counts)
	}

	// It keeps flooding: 1,000 attempts dropped in the kernel, 50 logged.
	k.counts[src] = 1000
	g.logged.Add(50)
	g.sync(t0.Add(time.Second))
	if _, ok := k.counts[src]; !ok {
		t.Fatal("released while over the limit")
	}
	if got := g.dropped.Load(); got != 1000 {
		t.Errorf("dropped = %d, want 1000", got)
	}
	if got := a.kernelBlocked.Load(); got != 950 {
		t.Errorf("kernel-blocked = %d, want the 950 drops not logged", got)
	}
	if got := w.Stats().Suppressed; got != 950 {
		t.Errorf("suppressed rows = %d, want 950", got)
	}
	// 1,011 attempts in the first second: 9 s in they are all within the
	// 10 s window, so it stays; once the window has slid past them (a
	// slice, 1 s, at most later) it is let in.
	g.sync(t0.Add(9 * time.Second))
	if _, ok := k.counts[src]; !ok {
		t.Fatal("released 9 s in, while its attempts of the first second are in the window")
	}
	g.sync(t0.Add(12 * time.Second))
	if _, ok := k.counts[src]; ok || g.size.Load() != 0 {
		t.Fatalf("still held once the window slid past its attempts: %v", k.counts)
	}
	if d := e.DecideAt(&syn, rules.DirIn, e.ClockAt(t0.Add(12*time.Second))); d.Blocked() {
		t.Errorf("released, but the pipeline refuses it: %+v", d)
	}

	// A late note, for a source the limiter accepts again, holds nothing.
	g.hold([]netip.Addr{src})
	if len(k.counts) != 0 {
		t.Errorf("a source under the limit was held: %v", k.counts)
	}

	// A policy without a rate limit releases everyone at once.
	src2 := netip.MustParseAddr("192.0.2.3")
	p2 := syn
	p2.Src = src2
	for i := range 11 {
		p2.SrcPort = uint16(41000 + i)
		e.DecideAt(&p2, rules.DirIn, e.Clock())
	}
	g.hold([]netip.Addr{src2})
	if _, ok := k.counts[src2]; !ok {
		t.Fatalf("refused source not held: %v", k.counts)
	}
	off, _ := rules.Parse([]byte(`{"rate_limit": {"max_connections": 0, "window_seconds": 10}}`))
	e.SetPolicy(verdict.Compile(off))
	g.sync(time.Now())
	if len(k.counts) != 0 {
		t.Errorf("rate limit off, still held: %v", k.counts)
	}

	// A kernel that refuses: the source is not recorded as held.
	k.fail = errors.New("no room")
	e.SetPolicy(verdict.Compile(cfg))
	for i := range 11 {
		p2.SrcPort = uint16(42000 + i)
		e.DecideAt(&p2, rules.DirIn, e.Clock())
	}
	g.hold([]netip.Addr{src2})
	if len(g.held) != 0 {
		t.Errorf("held %v though the kernel refused", g.held)
	}
}

// slowKernel takes a while to read its counters, as a set of thousands of
// held sources does.
type slowKernel struct{ fakeGuardKernel }

func (k *slowKernel) GuardCounts() (map[netip.Addr]uint64, error) {
	time.Sleep(30 * time.Millisecond)
	return k.fakeGuardKernel.GuardCounts()
}

// The guard waits ten times as long as its last sync took before the
// next, so reading many counters never takes more than a tenth of a core.
func TestGuardPace(t *testing.T) {
	e := verdict.NewEngine(verdict.Compile(&rules.Config{}))
	discard := slog.New(slog.DiscardHandler)
	g := newGuard(&slowKernel{fakeGuardKernel{counts: map[netip.Addr]uint64{}}}, e, nil, discard, newLimitedLogger(discard))
	g.held[netip.MustParseAddr("192.0.2.1")] = 0
	start := time.Now()
	g.sync(start)
	g.pace(start)
	if wait := g.next.Sub(start); wait < 300*time.Millisecond {
		t.Errorf("a 30 ms sync: next one in %v, want at least 300 ms", wait)
	}
	g.held = map[netip.Addr]uint64{}
	quick := time.Now()
	g.pace(quick)
	if wait := g.next.Sub(quick); wait != g.every {
		t.Errorf("an instant sync: next one in %v, want the tick, %v", wait, g.every)
	}
}

// While a held source is not due for release, the kernel's counters are
// read once a second, not at every tick (a netlink dump per family, about
// a percent of a core at ten a second); a source due for release has its
// counters read at once, so that its last drops are counted before its
// element goes.
func TestGuardReadsCountersOnlyWhenNeeded(t *testing.T) {
	cfg, err := rules.Parse([]byte(`{"rate_limit": {"max_connections": 1, "window_seconds": 10}}`))
	if err != nil {
		t.Fatal(err)
	}
	e := verdict.NewEngine(verdict.Compile(cfg))
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(filepath.Join(t.TempDir(), "fw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	a := newAuditor(e, st.NewWriter(store.WriterConfig{}), log)
	k := &fakeGuardKernel{counts: map[netip.Addr]uint64{}}
	g := newGuard(k, e, a, log, newLimitedLogger(log))
	src := netip.MustParseAddr("192.0.2.1")
	t0 := time.Now()
	e.Limiter().Allow(src, e.ClockAt(t0), 1, int64(10*time.Second)) // at its limit
	g.hold([]netip.Addr{src})
	g.sync(t0) // the first sync reads
	for tick := 1; tick < 10; tick++ {
		k.counts[src] += 100
		g.sync(t0.Add(time.Duration(tick) * 100 * time.Millisecond))
	}
	if k.reads != 1 {
		t.Errorf("%d counter reads in the first second of a held source, want 1", k.reads)
	}
	g.sync(t0.Add(time.Second))
	if k.reads != 2 || g.dropped.Load() != 900 {
		t.Errorf("after a second: %d reads, %d drops counted; want 2 and 900", k.reads, g.dropped.Load())
	}
	g.sync(t0.Add(10*time.Second + 900*time.Millisecond)) // a read, still held
	k.counts[src] += 50
	g.sync(t0.Add(11*time.Second + 150*time.Millisecond)) // 250 ms on, due: the window slid past its connection
	if _, held := k.counts[src]; held || g.dropped.Load() != 950 || k.reads != 4 {
		t.Errorf("due for release: held %v, %d drops counted; want released with its last 50 counted", held, g.dropped.Load())
	}
}
