package daemon

import (
	"bufio"
	"maps"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// Status is what the control socket answers to fwctl status. It never
// waits for a reload or a feed update (they hold d.mu, and the nft
// Firewall's lock, for seconds with a million entries): it reads d.shown
// and other state kept for readers.
func (d *Daemon) Status() control.Status {
	shown := d.shown.snapshot()
	cfg := shown.cfg
	ws := d.writer.Stats()
	allowed, blocked := d.audit.allowed.Load(), d.audit.blocked.Load()
	st := control.Status{
		Running:        true,
		PID:            os.Getpid(),
		Version:        Version,
		StartedAt:      d.started,
		UptimeSeconds:  time.Since(d.started).Seconds(),
		ConfigPath:     d.opts.ConfigPath,
		ConfigLoadedAt: shown.loadedAt,
		ConfigDigest:   shown.digest,
		ReloadError:    shown.reloadErr,
		Reload:         shown.reload,
		Rules:          len(cfg.Rules),
		RulesEnabled:   cfg.EnabledRules(),
		QueueMode:      d.fw.QueueMode(),
		FastPath:       fastPathState(d.fw),
		Queues:         queueRange(d.opts.QueueNum, d.opts.Queues),
		FailClosed:     d.opts.FailClosed,
		Interfaces:     d.opts.Ifaces,
		Packets: control.PacketCounts{
			Seen:           allowed + blocked, // one reading of each, so that the three agree
			Allowed:        allowed,
			Blocked:        blocked,
			KernelBlocked:  d.audit.kernelBlocked.Load(),
			KernelUnlogged: d.dropsErr,
			VerdictErrors:  d.queues.C.VerdictErrors.Load(),
			QueueDrops:     queueDrops(d.opts.QueueNum, d.opts.Queues),
		},
		Sets:  d.fw.SetSizes(),
		Feeds: []control.FeedStatus{}, // [] rather than null for no feeds
		LogRows: control.LogCounts{Database: d.store.Path(), Fallback: d.dbFallback, Configured: d.dbConfigured(),
			Written: ws.Blocked + ws.Allowed, Suppressed: ws.Suppressed,
			Lost: ws.Lost, LastError: ws.LastError},
		RateLimiter: control.LimiterCounts{Tracked: d.engine.Limiter().Tracked(), Capacity: d.engine.Limiter().Capacity(),
			KernelHeld: int(d.guard.size.Load()), KernelDropped: d.guard.dropped.Load()},
	}
	urls := map[string]string{}
	for _, f := range cfg.ThreatFeeds {
		urls[f.Name] = f.URL
	}
	for _, fs := range d.feeds.States() {
		if why := shown.feedsRefused[fs.Name]; why != "" {
			// The manager's figures are of the list it fetched, which the
			// kernel refused: say so where users look for feed trouble.
			fs.LastError = "fetched but not in force, the kernel refused it (retrying): " + why
		}
		if why := shown.threatsUnsaved; why != "" {
			// A save writes every feed's entries: each may be stale in
			// the database, which fwctl threats and explain read and the
			// next start is seeded from.
			unsaved := "in force but not saved to the database (retrying): " + why
			if fs.LastError != "" {
				unsaved = fs.LastError + "; " + unsaved
			}
			fs.LastError = unsaved
		}
		st.Feeds = append(st.Feeds, control.FeedStatus{
			Name: fs.Name, URL: urls[fs.Name], Entries: fs.Entries, LastSuccess: fs.LastSuccess,
			LastAttempt: fs.LastAttempt, NextFetch: fs.NextFetch, LastError: fs.LastError, Failures: fs.Failures,
			FetchingSince: fs.FetchingSince,
			ApplyingSince: shown.feedsApplying[fs.Name],
		})
	}
	return st
}

// shownState is what Status reports of the config in force and of the
// changes under way. Its lock is held only to copy these fields, never
// across kernel or database work, so a status request answers at once
// while a large reload is being applied. The config is published once the
// kernel and the pipeline have it and the open flows it blocks are cut
// (Daemon.apply), so the digest fwctl waits for never names a config the
// kernel lacks yet, nor one whose blocked flows still pass.
type shownState struct {
	mu sync.Mutex
	v  shownView
}

// shownView is a copy of a shownState's fields.
type shownView struct {
	cfg           *rules.Config // in force; never changed once published
	digest        string        // rules.Digest(cfg)
	loadedAt      time.Time
	reloadErr     string
	reload        control.ReloadState
	feedsApplying map[string]time.Time // feed -> when its update began
	feedsRefused  map[string]string    // feed -> why the kernel refused its last update (retried)
	// threatsUnsaved is why the last save of the threat entries failed,
	// while the database's are stale (retried); "" once one succeeded.
	threatsUnsaved string
}

func (s *shownState) snapshot() shownView {
	s.mu.Lock()
	defer s.mu.Unlock()
	v := s.v
	v.feedsApplying = maps.Clone(v.feedsApplying)
	v.feedsRefused = maps.Clone(v.feedsRefused)
	return v
}

// inForce records cfg as the config the kernel and pipeline now hold.
func (s *shownState) inForce(cfg *rules.Config, digest string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v.cfg, s.v.digest, s.v.loadedAt, s.v.reloadErr = cfg, digest, at, ""
}

// setReloadError records why the last reload was refused ("": it was
// not), and reports whether that was already the error shown.
func (s *shownState) setReloadError(msg string) (same bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	same = s.v.reloadErr == msg
	s.v.reloadErr = msg
	return same
}

func (s *shownState) reloadStarted(why string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v.reload = control.ReloadState{InProgress: true, Since: at, Why: why}
}

func (s *shownState) reloadEnded() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v.reload = control.ReloadState{}
}

// feedApplying marks a feed's update as begun. Feed updates run one at a
// time (intel.Manager's callbacks), so one time per feed is enough.
func (s *shownState) feedApplying(feed string, at time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.v.feedsApplying == nil {
		s.v.feedsApplying = map[string]time.Time{}
	}
	s.v.feedsApplying[feed] = at
}

func (s *shownState) feedApplied(feed string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.v.feedsApplying, feed)
}

// feedRefused records why the kernel refused a feed's last update ("":
// it took it).
func (s *shownState) feedRefused(feed, why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if why == "" {
		delete(s.v.feedsRefused, feed)
		return
	}
	if s.v.feedsRefused == nil {
		s.v.feedsRefused = map[string]string{}
	}
	s.v.feedsRefused[feed] = why
}

// setThreatsUnsaved records why the threat entries' last save failed
// ("": the database holds those in force).
func (s *shownState) setThreatsUnsaved(why string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.v.threatsUnsaved = why
}

func (d *Daemon) logStats() {
	ws := d.writer.Stats()
	allowed, blocked := d.audit.allowed.Load(), d.audit.blocked.Load()
	d.log.Info("Statistics",
		"seen", allowed+blocked, "allowed", allowed, "blocked", blocked,
		"kernel_blocked", d.audit.kernelBlocked.Load(),
		"queue_drops", queueDrops(d.opts.QueueNum, d.opts.Queues),
		"verdict_errors", d.queues.C.VerdictErrors.Load(),
		"log_rows", ws.Blocked+ws.Allowed, "log_rows_suppressed", ws.Suppressed, "log_rows_lost", ws.Lost,
		"tracked_sources", d.engine.Limiter().Tracked())
	for _, g := range d.suppLog.grown(ws.SuppressedBy) {
		d.log.Info("Log rows counted instead of written", "type", g.Type, "reason", g.Reason,
			"count", g.Count, "total", g.Total)
	}
	if d.opts.LogFile != nil {
		// The file cannot say it lost its own lines; this line reaches
		// stderr or the journal, which has them all.
		if lost, err := d.opts.LogFile.Lost(); lost > d.logFileLost.Load() {
			d.log.Error("The log file could not store some lines (stderr or the journal has them)",
				"lost", lost-d.logFileLost.Load(), "total", lost, "err", err)
			d.logFileLost.Store(lost)
		}
	}
}

// suppressedLog remembers the suppressed-row counts the statistics line
// last reported, so each reason is logged only when it grew: a flood an
// hour ago must not repeat its line every interval for ever.
type suppressedLog struct {
	mu   sync.Mutex
	last map[suppressedKey]int64
}

// suppressedGrowth is one reason's growth since the last report.
type suppressedGrowth struct {
	Type, Reason string
	Count, Total int64
}

func (l *suppressedLog) grown(now []store.SuppressedCount) []suppressedGrowth {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last == nil {
		l.last = map[suppressedKey]int64{}
	}
	var out []suppressedGrowth
	for _, s := range now {
		k := suppressedKey{s.Type, s.Reason}
		if prev := l.last[k]; s.Count != prev {
			out = append(out, suppressedGrowth{Type: s.Type, Reason: s.Reason, Count: s.Count - prev, Total: s.Count})
			l.last[k] = s.Count
		}
	}
	return out
}

type suppressedKey struct{ typ, reason string }

// queueDrops sums what the kernel dropped on pfw's queues because they
// were full or the socket buffer was (queue_dropped + user_dropped in
// /proc/net/netfilter/nfnetlink_queue, which is per network namespace).
func queueDrops(first uint, n int) uint64 {
	f, err := os.Open("/proc/net/netfilter/nfnetlink_queue")
	if err != nil {
		return 0
	}
	defer f.Close()
	var total uint64
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) < 7 {
			continue
		}
		num, err := strconv.Atoi(fields[0])
		if err != nil || num < int(first) || num >= int(first)+n { // first <= 65535 (Options.Validate)
			continue
		}
		for _, col := range fields[5:7] {
			v, _ := strconv.ParseUint(col, 10, 64)
			total += v
		}
	}
	return total
}

// cutBlockedFlows deletes the conntrack entries of flows the rules now in
// force would block. Established flows never reach the queue again, so
// without this a new block rule would spare connections already open.
// Only this host's own flows are pfw's: the others it forwards (a VM's
// masqueraded connection, a container's published port) pass no chain of
// pfw's and are never cut.
//
// With --iface only flows through those interfaces are pfw's to cut, and
// conntrack does not record interfaces; but pfw's chains label every flow
// that passes them beyond the interface rule (nft's filteredBit, from its
// first packet on), so the labelled ones are those. Without the fast path
// (no conntrack labels) nothing is cut under --iface.
func (d *Daemon) cutBlockedFlows() {
	onlyLabelled := len(d.opts.Ifaces) > 0
	if armed, _ := d.fw.FastPath(); onlyLabelled && !armed {
		return
	}
	dests := localDests()
	var p verdict.Packet
	unremembered := 0
	walk := d.engine.BeginFlowWalk()
	n, err := d.fw.KillFlows(d.run, func(f nft.Flow) bool {
		var dir rules.Direction
		switch {
		case dests.own[f.Src] && dests.own[f.Dst], f.Src.IsLoopback(), f.Dst.IsLoopback():
			return false // host-local traffic (127.0.0.53 too): loopback is not filtered
		case dests.own[f.Src]:
			dir = rules.DirOut
		case dests.forHost(f.Dst):
			dir = rules.DirIn
		default:
			// Neither end is this host: a flow it forwards, NATed or
			// routed (containers, VMs), which passes the forward hook,
			// not pfw's input and output chains.
			return false
		}
		if onlyLabelled && !f.Labelled {
			return false // through an interface pfw does not filter
		}
		if orig, ok := d.engine.TurnedFlow(f.Proto, f.Src, f.SrcPort, f.Dst, f.DstPort, walk); ok {
			// A flow cut and let back in, whose entry conntrack made
			// from its reply: judged as the flow it is.
			dir = orig
			p = verdict.FirstPacket(f.Proto, f.Dst, f.Src, f.DstPort, f.SrcPort)
		} else {
			p = verdict.FirstPacket(f.Proto, f.Src, f.Dst, f.SrcPort, f.DstPort)
		}
		if !d.engine.Explain(&p, dir).Blocked() {
			return false
		}
		// Deleting the entry alone is not enough: the flow's next packet
		// the other way would look like a new flow in that direction
		// (verdict/cut.go). Remembered before the entry goes.
		if !d.engine.CutFlow(&p, dir) && (f.Proto == verdict.ProtoTCP || f.Proto == verdict.ProtoUDP) {
			unremembered++
		}
		return true
	})
	switch {
	case err != nil && d.run.Err() != nil:
		return // pfwd is stopping, and a stop does not wait for the walk
	case err != nil:
		d.log.Warn("Could not cut established flows that the new rules block", "err", err)
		return
	}
	d.engine.EndFlowWalk(walk)
	if n > 0 {
		d.log.Info("Cut established flows that the rules in force block", "flows", n)
		d.saveCutFlows()
	}
	if unremembered > 0 {
		d.log.Warn("Too many flows cut at once to remember them all: the replies of some may start over as new flows",
			"flows", unremembered, "max", verdict.MaxCutFlows)
	}
}

// fastPathState is the fast path's line of the status.
func fastPathState(fw *nft.Firewall) string {
	switch on, why := fw.FastPath(); {
	case on:
		return "on (conntrack labels)"
	case why != nil:
		return "off: " + why.Error()
	default:
		return "off"
	}
}
