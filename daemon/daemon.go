package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/intel"
	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/queue"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// hostAddrsEvery is how often the host's addresses are listed again for
// the feeds' check.
const hostAddrsEvery = 30 * time.Second

// Version is pfw's version, set at build time.
var Version = "dev"

// Daemon is a running pfwd.
type Daemon struct {
	opts    Options
	log     *slog.Logger
	started time.Time
	// logFileLost is the log file's lost lines the statistics line last
	// reported (logStats).
	logFileLost atomic.Uint64

	engine *verdict.Engine
	fw     *nft.Firewall
	queues *queue.Queues
	store  *store.Store
	// dbFallback says why the configured database could not be opened,
	// when pfwd logs to a temporary one instead; set once at start.
	dbFallback string
	dbTempDir  string   // the temporary database's directory, removed at stop
	dbTempLock *os.File // held on dbTempDir until it is removed (tempdb.go)
	dropsErr   string   // why the kernel's drops go unlogged; set once at start
	// cutFile keeps the flows a rule change cut across a restart
	// (cutmemory.go); cutSaveMu orders its writes and guards cutSaved,
	// whether the file may hold any, and cutWritten.
	cutFile    string
	cutSaveMu  sync.Mutex
	cutSaved   bool
	cutWritten []byte // what the last save wrote, so an unchanged memory is not written again
	// instanceLock is held from start to the end of shutdown (instance.go).
	instanceLock io.Closer
	writer       *store.Writer
	feeds        *intel.Manager
	audit        *auditor

	guard *guard

	// life is the daemon's lifetime: database work that may outlast Run's
	// context (threat saves) runs under it, and shutdown ends it
	// d.grace after it began. stops are the stops of what start set
	// going (lifecycle.go), called newest first by shutdown.
	life    context.Context
	endLife context.CancelFunc
	// run is Run's context, done once pfwd is told to stop: work that a
	// stop must not wait for (a walk through a conntrack table a flood
	// filled) ends early with it.
	run      context.Context
	stops    []func()
	grace    time.Duration // shutdownGrace; shorter in tests
	stopWait time.Duration // stopWait; shorter in tests

	reloadMu       sync.Mutex // one reload at a time; guards the four below
	retry          *time.Timer
	retryDelay     time.Duration
	reloadsStopped bool
	cfgData        []byte // the config as last applied, to skip no-op reloads

	saveMu  sync.Mutex     // orders the threat entries' writes to the database; taken before mu
	saves   gate           // threat saves running in the background (goSave), waited for at stop
	limited *limitedLogger // recurring errors' lines (logLimited)
	suppLog suppressedLog  // what the statistics line last said about suppressed rows

	// feedRetries are the feeds whose last update the kernel refused,
	// each applied again on a timer (feed updates are serialized by
	// saveMu, which guards these three).
	feedRetries  map[string]*feedRetry
	feedsStopped bool
	// unsaved is set while the database's threat entries are not those in
	// force, its last save having failed; saved again on a timer.
	unsaved *unsavedThreats

	// mu guards what follows, and is held across every change of the
	// kernel sets, from reading the lists to the kernel's answer, so
	// reloads, feed updates and repairs reach the kernel one at a time
	// and in the order they change the lists. A change of a million
	// entries holds it for seconds: status requests never take it.
	mu          sync.Mutex
	cfg         *rules.Config // in force in the kernel and the pipeline
	feedEntries map[string][]netip.Prefix

	shown shownState // what Status reports; published by apply, read without mu
}

// newDaemon returns a Daemon with nothing started.
func newDaemon(opts Options, log *slog.Logger) *Daemon {
	d := &Daemon{opts: opts, log: log, limited: newLimitedLogger(log), started: time.Now(),
		feedEntries: map[string][]netip.Prefix{}, grace: shutdownGrace, stopWait: stopWait}
	d.life, d.endLife = context.WithCancel(context.Background())
	d.run = context.Background()
	return d
}

// Run starts pfwd and blocks until ctx is done, then shuts down.
func Run(ctx context.Context, opts Options, log *slog.Logger) error {
	opts = opts.withDefaults()
	if err := opts.Validate(); err != nil {
		return err
	}
	d := newDaemon(opts, log)
	d.run = ctx
	defer d.shutdown()
	if err := d.start(ctx); err != nil {
		return err
	}
	d.loop(ctx)
	return nil
}

// start brings pfwd up: the control socket and the metrics listener
// before anything touches the kernel, the queues bound before the table
// that sends them packets is installed, the goroutines that use the table
// after it. What it started, shutdown stops, also after a start that
// failed halfway.
func (d *Daemon) start(ctx context.Context) error {
	// Start-up loads the threat entries and fills the kernel sets.
	loaded := beginLoad()
	defer loaded()
	ctl, metricsLn, err := d.listen()
	if err != nil {
		return err
	}
	d.removeStaleTempDBs()
	cfg, err := d.loadConfig()
	if err != nil {
		return err
	}
	if err := d.openStore(); err != nil {
		return err
	}
	// Made before the seed, which it checks, and before the writer, whose
	// reopen handler reads it; it runs later.
	d.feeds = intel.NewManager(intel.Options{OnUpdate: d.onFeedUpdate, OnEvent: d.onFeedEvent, OnFetch: beginLoad, Blocked: d.outboundBlocked})
	d.seedThreats(d.life, cfg) // a SIGTERM now must not make it fail: the check below stops the start

	d.engine = verdict.NewEngine(verdict.Compile(cfg))
	d.engine.SetIntel(d.compileIntel(cfg))
	d.cutFile = cutFilePath(d.opts.DBPath)
	d.restoreCutFlows()
	d.writer = d.store.NewWriter(store.WriterConfig{OnError: d.logWriterError, OnReopen: d.onStoreReopen, OnPrune: d.logPruned})
	d.audit = newAuditor(d.engine, d.writer, d.log)
	// The writer outlives ctx: it must flush after the queues stop.
	d.spawn(context.Background(), "the log writer", func(ctx context.Context) {
		if err := d.writer.Run(ctx); err != nil {
			d.log.Error("Log rows lost: the log writer's last flush failed", "err", err)
		}
	})

	if err := d.openQueues(); err != nil {
		return err
	}
	d.openKernelDrops()
	if ctx.Err() != nil {
		return nil // stopped while starting: no table to install and remove again, no "started"
	}
	if err := d.openTable(cfg); err != nil {
		return err
	}
	// Flows opened while no pfwd ran (fail-open, or under another table's
	// conntrack) were never judged, and the rules may have changed
	// meanwhile: those the rules block now are cut, as by a reload.
	d.cutBlockedFlows()
	loaded()
	d.log.Info("pfwd started", "version", Version, "config", d.opts.ConfigPath, "rules", len(cfg.Rules),
		"queues", queueRange(d.opts.QueueNum, d.opts.Queues), "queue_mode", d.fw.QueueMode(), "fast_path", fastPathState(d.fw),
		"fail_closed", d.opts.FailClosed, "db", d.store.Path()) // the temporary one, if pfwd fell back to it
	d.startBackground(ctx, cfg, ctl, metricsLn)
	if d.opts.Ready != nil {
		d.opts.Ready()
	}
	return nil
}

// listen makes the control socket, takes the single-instance lock of the
// network namespace and binds the metrics address, if any, so that a
// second pfwd or a taken address fails the start before anything touches
// the kernel. The control socket comes first: a second pfwd on the same
// socket hears that another answers on it, which names the one to stop.
func (d *Daemon) listen() (*controlSocket, net.Listener, error) {
	sock, err := control.Listen(d.opts.Socket)
	if err != nil {
		return nil, nil, err
	}
	ctl := newControlSocket(d.opts.Socket, sock, d.Status, d.log)
	d.onStop(ctl.close)
	lock, warning, err := lockInstance()
	if err != nil {
		return nil, nil, err
	}
	if warning != "" {
		d.log.Warn("Single-instance lock: " + warning)
	}
	d.instanceLock = lock
	if d.opts.MetricsAddr == "" {
		return ctl, nil, nil
	}
	ln, err := listenMetrics(d.opts.MetricsAddr)
	if err != nil {
		return nil, nil, err
	}
	d.onStop(func() { ln.Close() })
	return ctl, ln, nil
}

// loadConfig reads the config file, writing the default one when there
// is none, and makes it the config in force.
func (d *Daemon) loadConfig() (*rules.Config, error) {
	cfg, created, err := rules.LoadOrCreate(d.opts.ConfigPath)
	if err != nil {
		return nil, err
	}
	if created {
		d.log.Info("No config file: wrote the default one", "path", d.opts.ConfigPath)
	}
	d.cfg = cfg
	d.cfgData, _ = rules.Marshal(cfg)
	d.shown.inForce(cfg, rules.Digest(cfg), time.Now())
	return cfg, nil
}

// removeStaleTempDBs removes the temporary databases pfwds that did not
// stop cleanly left beside the control socket (tempdb.go), and says which.
// It runs once pfwd holds its single-instance lock, so none of them is
// this namespace's running pfwd's; the directories' own locks spare those
// of pfwds in other namespaces that share the socket's directory.
func (d *Daemon) removeStaleTempDBs() {
	for _, st := range removeStaleTempDBs(filepath.Dir(d.opts.Socket)) {
		if st.err != nil {
			d.log.Warn("Left alone a directory named like a temporary database that no pfwd uses", "dir", st.path, "why", st.err)
			continue
		}
		d.log.Warn("Removed the temporary database of a pfwd that did not stop cleanly", "dir", st.path)
	}
}

// openStore opens the database. A firewall must not stay down because its
// log cannot be written (a read-only file system, an immutable file): if
// the database cannot be opened, pfwd logs to a temporary one instead,
// and says so loudly and in status. The temporary one is beside the
// control socket: under the unit that is /run/personal-firewall, which
// fwctl sees (/tmp is private to the service).
func (d *Daemon) openStore() error {
	var err error
	if d.store, err = store.Open(d.opts.DBPath); err != nil {
		dir, lock, terr := makeTempDBDir(filepath.Dir(d.opts.Socket))
		if terr != nil {
			return errors.Join(err, fmt.Errorf("temporary database: %w", terr))
		}
		tmp := filepath.Join(dir, tempDBName)
		if d.store, terr = store.Open(tmp); terr != nil {
			os.RemoveAll(dir)
			lock.Close()
			return errors.Join(err, fmt.Errorf("temporary database: %w", terr))
		}
		d.dbFallback, d.dbTempDir, d.dbTempLock = err.Error(), dir, lock
		d.log.Error("Could not open the database: logging to a temporary one until pfwd stops (fwctl logs, stats and threats read it, or say how)",
			"err", err, "temporary_db", tmp)
	}
	if moved := d.store.MovedAside(); moved != "" {
		d.log.Error("The database could not be used: moved it aside and started a new one",
			"reason", d.store.MovedAsideReason(), "moved_to", moved, "db", d.opts.DBPath)
	}
	return nil
}

// dbConfigured is the database pfwd was given, when it logs to a
// temporary one instead; "" when it logs where it was told.
func (d *Daemon) dbConfigured() string {
	if d.dbFallback == "" {
		return ""
	}
	return d.opts.DBPath
}

// openQueues binds the queues and starts their workers. They are bound
// before the rules that feed them exist, so no packet is queued to a
// socket nobody reads.
func (d *Daemon) openQueues() error {
	var err error
	qcfg := queue.Config{QueueNum: uint16(d.opts.QueueNum), QueueCount: uint16(d.opts.Queues)}
	if d.queues, err = queue.Open(qcfg, d.engine, d.audit); err != nil {
		return err
	}
	d.onStop(func() { d.queues.Close() }) // no more packets taken; those in flight got their verdicts
	// Not ctx: the workers decide until Close unbinds the queues. Bound
	// and unread during shutdown (while a reload or a feed save ends),
	// a queue would hold new connections with no verdict, even fail-open.
	return d.queues.Start(context.Background())
}

// openKernelDrops listens for the kernel's own drops (lists, feeds, the
// rate-limit guard), which are logged through NFLOG. Without a listener
// they are still dropped, only not logged: anything else bound to the
// group (tcpdump -i nflog:27) must not keep the firewall down.
func (d *Daemon) openKernelDrops() {
	drops, err := queue.OpenKernelDrops(uint16(d.opts.LogGroup), d.engine, kernelAudit{d.audit})
	if err == nil {
		if err = drops.Start(context.Background()); err != nil { // logged until its stop, like the queues' decisions
			drops.Close()
		}
	}
	if err != nil {
		// Most likely another listener on the group; the error says.
		d.log.Error("Drops made in the kernel (lists, feeds, rate limit) will not be logged: no listener on their NFLOG group (--nflog-group picks another)",
			"group", d.opts.LogGroup, "err", err)
		d.dropsErr = err.Error()
		return
	}
	d.onStop(func() { drops.Close() })
}

// openTable installs pfw's nftables table, its sets filled for cfg.
func (d *Daemon) openTable(cfg *rules.Config) error {
	for _, name := range d.opts.Ifaces {
		if _, err := net.InterfaceByName(name); err != nil {
			d.log.Warn("No interface has this name now: its traffic is filtered once one appears (the rules match by name); check the spelling", "iface", name)
		}
	}
	var err error
	d.fw, err = nft.OpenContext(d.run, nft.Config{
		QueueNum: uint16(d.opts.QueueNum), QueueCount: uint16(d.opts.Queues), Ifaces: d.opts.Ifaces,
		FailClosed: d.opts.FailClosed, LogGroup: uint16(d.opts.LogGroup),
		InitialSets: d.kernelLists(cfg, true),
	})
	return err
}

// startBackground starts the goroutines that work beside the queues: the
// rate-limit guard and (fail-closed) the table keeper, which use the
// table; the threat feeds; the config watcher; and, last, the servers
// whose requests read every part: metrics (if ln is not nil) and the
// control socket.
func (d *Daemon) startBackground(ctx context.Context, cfg *rules.Config, ctl *controlSocket, metricsLn net.Listener) {
	d.guard = newGuard(d.fw, d.engine, d.audit, d.log, d.limited)
	d.audit.setGuard(d.guard)
	d.spawn(ctx, "the rate-limit guard", d.guard.run)
	if d.opts.FailClosed {
		d.spawn(ctx, "the table keeper", func(ctx context.Context) { d.keepTable(ctx, time.Second) })
	}

	// Seeded by seedThreats, which gave them the whitelist and the host's
	// addresses too.
	if err := d.feeds.SetFeeds(feedsOf(cfg)); err != nil {
		d.log.Error("Threat feeds not started", "err", err)
	}
	// Its stop waits for a feed update under way (onFeedUpdate), whose
	// save the grace cuts short.
	d.spawn(ctx, "the threat feeds", func(ctx context.Context) {
		if err := d.feeds.Run(ctx); err != nil {
			d.log.Error("Threat feeds not started", "err", err)
		}
	})

	if w, err := newWatcher(d.opts.ConfigPath); err != nil {
		d.log.Warn("Config changes will need a SIGHUP", "err", err)
	} else {
		d.spawn(ctx, "the config watcher", func(ctx context.Context) {
			w.run(ctx, 150*time.Millisecond, time.Second, func() { d.Reload(reloadFileChanged) })
		})
	}
	if metricsLn != nil {
		d.spawn(ctx, "the metrics server", func(ctx context.Context) { d.serveMetrics(ctx, metricsLn) })
	}
	d.spawn(ctx, "the control socket", func(ctx context.Context) { ctl.run(ctx, time.Second) })
}

// loop runs until ctx is done: reloads asked for through Options.Reload,
// the statistics line, and the host's addresses for the feeds' check.
func (d *Daemon) loop(ctx context.Context) {
	stats := time.NewTicker(d.opts.StatsEvery)
	defer stats.Stop()
	// Addresses come and go (DHCP, VPNs); a feed entry that covers a new
	// one is refused from then on. Not tied to --stats-every, which may be
	// an hour.
	addrs := time.NewTicker(hostAddrsEvery)
	defer addrs.Stop()
	cuts := time.NewTicker(cutSaveEvery)
	defer cuts.Stop()
	reload := d.opts.Reload
	for {
		select {
		case <-ctx.Done():
			d.log.Info("pfwd stopping")
			return
		case _, ok := <-reload:
			if !ok {
				reload = nil // closed: no more reloads asked, and no spinning
				continue
			}
			if ctx.Err() != nil {
				continue // stopping: the next turn says so
			}
			d.Reload(reloadSIGHUP)
			if d.opts.Ready != nil {
				d.opts.Ready()
			}
		case <-stats.C:
			d.logStats()
		case <-addrs.C:
			d.feeds.SetHostAddrs(hostAddrs())
		case <-cuts.C:
			d.saveCutFlows()
		}
	}
}

// shutdown stops what Run started, newest first (runStops): the control
// socket, metrics and watcher, the feeds, the table keeper and the guard,
// the kernel-drop listener and the queues (no more packets taken; those
// in flight already got their verdicts), the log writer (flushed, bounded
// by its timeout); then it waits for the threat saves, removes the table
// (kept when fail-closed) and closes the database. Each wait is bounded
// (lifecycle.go): database work begun earlier is cut short d.grace after
// shutdown began. It copes with a start-up that failed halfway.
func (d *Daemon) shutdown() {
	grace := time.AfterFunc(d.grace, d.endLife)
	defer grace.Stop()
	defer d.endLife()
	if d.fw != nil {
		d.fw.Stop() // a reload or feed update waiting for a conntrack walk goes on, so the stops below are not held up
	}
	d.stopReloads()
	d.stopFeedRetries()
	d.runStops()
	if d.engine != nil {
		d.saveCutFlowsAtStop() // the queues have stopped: the packets' last pushes are in
	}
	d.waitSaves() // they use the database; the writer, which may start one, has stopped
	if d.fw != nil {
		switch err := d.fw.Close(); {
		case err != nil:
			d.log.Error("Removing the nftables table failed", "err", err)
		case d.opts.FailClosed:
			d.log.Info("Fail-closed: the nftables table stays; queued traffic drops until pfwd returns")
		default:
			d.log.Info("Removed the nftables table")
		}
	}
	if d.fw != nil { // the final figures of a pfwd that ran; a start that failed has none
		d.logStats()
	}
	if d.store != nil {
		d.store.Close()
	}
	if d.dbTempDir != "" {
		os.RemoveAll(d.dbTempDir)
		d.dbTempLock.Close() // after: a starting pfwd must not take it for a stale one
	}
	if d.fw != nil {
		d.log.Info("pfwd stopped")
	}
	if d.instanceLock != nil { // last: the next pfwd may start once the table is gone
		d.instanceLock.Close()
	}
}

func queueRange(first uint, n int) string {
	if n <= 1 {
		return fmt.Sprint(first)
	}
	return fmt.Sprintf("%d-%d", first, first+uint(n)-1)
}

func feedsOf(cfg *rules.Config) []intel.Feed {
	out := make([]intel.Feed, 0, len(cfg.ThreatFeeds))
	for _, f := range cfg.ThreatFeeds {
		out = append(out, intel.Feed{Name: f.Name, URL: f.URL, Interval: f.Interval, Level: f.ThreatLevel})
	}
	return out
}

// seedThreats loads the threat entries kept in the database, so a host
// that boots offline is protected before any feed answers. Entries of
// feeds no longer configured are dropped. The rest go through the feed
// manager's checks, as a fetched list does (a database may predate a
// check or the host's addresses, or have been edited): what it keeps, and
// only that, is what the kernel sets (InitialSets) and the pipeline get,
// so the two agree with it; what it refuses it logs when the feeds start,
// and the database loses too, so that fwctl reads what pfwd holds.
func (d *Daemon) seedThreats(ctx context.Context, cfg *rules.Config) {
	// The whitelist is not handed to the feeds as protected: it is checked
	// before them, in the kernel and the pipeline alike, so a feed's
	// network around a whitelisted address blocks the rest of it.
	d.feeds.SetHostAddrs(hostAddrs())
	threats, err := d.store.LoadThreats(ctx)
	if err != nil {
		d.log.Error("Could not load threat entries from the database", "err", err)
		return
	}
	bySource := store.ThreatsBySource(threats)
	stale, dropped := 0, 0
	for source, entries := range bySource {
		if !slices.ContainsFunc(cfg.ThreatFeeds, func(f rules.Feed) bool { return f.Name == source }) {
			stale++
			continue
		}
		kept := d.feeds.Seed(source, entries)
		dropped += len(entries) - len(kept) // refused, or inside another entry
		d.feedEntries[source] = kept
	}
	if stale > 0 || dropped > 0 {
		d.saveMu.Lock() // for form: the feeds and the retries have not started
		d.storeThreats(nil, "Could not drop the entries of removed feeds, or those the checks dropped, from the database",
			"feeds", stale, "dropped", dropped)
		d.saveMu.Unlock()
	}
	n := 0
	for _, e := range d.feedEntries {
		n += len(e)
	}
	if n > 0 {
		d.log.Info("Loaded threat entries from the database", "entries", n, "feeds", len(d.feedEntries))
	}
}

// compileIntel builds the pipeline's threat entries, feeds in config order
// so the first listed names an overlapping block (verdict.CompileIntel,
// which fwctl explain uses too). Caller holds d.mu or is the only
// goroutine.
func (d *Daemon) compileIntel(cfg *rules.Config) *verdict.Intel {
	return verdict.CompileIntel(cfg, d.feedEntries)
}

// kernelLists is what the kernel sets must hold for cfg: every list, or
// with withIntel false the configured ones only (nft.Firewall.UpdateSets
// leaves a list it is not given alone).
func (d *Daemon) kernelLists(cfg *rules.Config, withIntel bool) map[nft.List][]netip.Prefix {
	lists := map[nft.List][]netip.Prefix{
		nft.Whitelist: cfg.WhitelistIPs,
		nft.Blacklist: cfg.BlacklistIPs,
	}
	if withIntel {
		lists[nft.Intel] = d.allIntel(cfg)
	}
	return lists
}

func (d *Daemon) allIntel(cfg *rules.Config) []netip.Prefix {
	var all []netip.Prefix
	for _, f := range cfg.ThreatFeeds {
		all = append(all, d.feedEntries[f.Name]...)
	}
	return all
}

// onFeedUpdate applies a feed's new entries: kernel set, pipeline, and
// database, in that order, so a packet the kernel lets through is not
// then blocked for a reason the log cannot show. Status shows the feed
// as applying from the start until the kernel and the pipeline hold its
// entries.
func (d *Daemon) onFeedUpdate(feed intel.Feed, entries []netip.Prefix) {
	d.applyFeed(feed, entries, nil)
}

// feedRetry is a feed update the kernel refused, to be applied again.
type feedRetry struct {
	timer *time.Timer
	delay time.Duration
	err   string // the last refusal: a retry refused alike stays quiet
}

// applyFeed is onFeedUpdate, or with retry the scheduled new attempt of
// one the kernel refused. The feed manager counts a list it fetched as
// taken and does not offer it again (the server answers "not modified"
// until the list changes, perhaps hours later), so pfwd itself tries
// again, with backoff from 1 s to 30 s, until the kernel takes it or the
// feed's next update supersedes it.
func (d *Daemon) applyFeed(feed intel.Feed, entries []netip.Prefix, retry *feedRetry) {
	d.saveMu.Lock() // the database gets the feeds' entries in the order memory did
	defer d.saveMu.Unlock()
	pending := d.feedRetries[feed.Name]
	if retry != nil && (pending != retry || d.feedsStopped) {
		return // superseded by a newer update of the feed, or pfwd stops
	}
	if pending != nil {
		pending.timer.Stop()
		delete(d.feedRetries, feed.Name)
	}
	d.shown.feedApplying(feed.Name, time.Now())
	loaded := beginLoad()
	d.mu.Lock()
	prev, had := d.feedEntries[feed.Name]
	old := len(prev)
	if entries == nil {
		delete(d.feedEntries, feed.Name)
	} else {
		d.feedEntries[feed.Name] = entries
	}
	cfg := d.cfg
	start := time.Now()
	err := d.fw.UpdateSets(map[nft.List][]netip.Prefix{nft.Intel: d.allIntel(cfg)})
	if err != nil {
		// The kernel keeps the entries in force: so do the pipeline and
		// the database, or the two would decide differently.
		if had {
			d.feedEntries[feed.Name] = prev
		} else {
			delete(d.feedEntries, feed.Name)
		}
		d.shown.feedApplied(feed.Name)
		d.mu.Unlock()
		loaded()
		d.retryFeed(feed, entries, retry, err)
		return
	}
	d.engine.SetIntel(d.compileIntel(cfg))
	d.shown.feedApplied(feed.Name)
	d.shown.feedRefused(feed.Name, "")
	d.mu.Unlock()
	if retry != nil {
		d.log.Info("Threat feed: the kernel took the update it had refused", "feed", feed.Name)
	}
	// last_seen is when the feed last listed its entries: its last good
	// fetch. Updates that are no fetch (a level change, entries dropped
	// because they now cover a server pfwd needs) leave it as it was.
	var fetched time.Time
	for _, st := range d.feeds.States() {
		if st.Name == feed.Name {
			fetched = st.LastSuccess
		}
	}
	d.storeThreats(map[string]time.Time{feed.Name: fetched}, "Threat feed: saving entries failed", "feed", feed.Name)
	loaded()
	d.log.Info("Threat feed updated", "feed", feed.Name, "entries", len(entries), "before", old,
		"applied_in", time.Since(start).Round(time.Millisecond))
}

// retryFeed schedules the update the kernel refused with err (retry: the
// attempt that failed, if it was one). d.saveMu is held.
func (d *Daemon) retryFeed(feed intel.Feed, entries []netip.Prefix, retry *feedRetry, err error) {
	r := retry
	if r == nil {
		r = new(feedRetry)
	}
	quiet := retry != nil && r.err == err.Error()
	r.err = err.Error()
	d.shown.feedRefused(feed.Name, r.err)
	if d.feedsStopped {
		return
	}
	r.delay = nextRetry(r.delay)
	r.timer = time.AfterFunc(r.delay, func() { d.applyFeed(feed, entries, r) })
	if d.feedRetries == nil {
		d.feedRetries = map[string]*feedRetry{}
	}
	d.feedRetries[feed.Name] = r
	if !quiet {
		d.log.Error("Threat feed: updating the kernel set failed; the entries in force stay", "feed", feed.Name,
			"err", err, "retry_in", r.delay)
	}
}

// stopFeedRetries ends the retries of refused feed updates and of failed
// threat saves, before shutdown takes the kernel table and the database
// away. A save under way holds saveMu, which the daemon's lifetime bounds.
func (d *Daemon) stopFeedRetries() {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	d.feedsStopped = true
	for _, r := range d.feedRetries {
		r.timer.Stop()
	}
	if u := d.unsaved; u != nil && u.timer != nil {
		u.timer.Stop()
	}
}

// outboundBlocked says why the rules in force would block an outbound
// connection of pfwd's own to addr:port, and what to do, or ""
// (intel.Options.Blocked): a feed fetch that fails under
// default_outbound_policy block says so. Loopback is filtered only when
// --iface names lo, and with --iface the way out may not be filtered at
// all: then nothing is said rather than a wrong cause.
func (d *Daemon) outboundBlocked(proto uint8, addr netip.Addr, port uint16) string {
	if d.engine == nil {
		return ""
	}
	addr = addr.Unmap()
	if loop := addr.IsLoopback() || localDests().own[addr]; loop != slices.Contains(d.opts.Ifaces, "lo") ||
		!loop && len(d.opts.Ifaces) > 0 {
		return ""
	}
	local := netip.IPv4Unspecified()
	if addr.Is6() {
		local = netip.IPv6Unspecified()
	}
	p := verdict.FirstPacket(proto, local, addr, 40000, port)
	dec := d.engine.Explain(&p, rules.DirOut)
	if !dec.Blocked() {
		return ""
	}
	switch dec.Step {
	case verdict.StepBlacklist:
		return fmt.Sprintf("the blacklist blocks %s (fwctl blacklist remove, or fwctl whitelist add %s)", addr, addr)
	case verdict.StepThreatIntel:
		return fmt.Sprintf("%s lists %s (fwctl whitelist add %s lets it through)", dec.Reason, addr, addr)
	case verdict.StepRule:
		return fmt.Sprintf("%s blocks it outbound (fwctl list; an allow rule before it lets it through)", dec.Reason)
	}
	return fmt.Sprintf("blocked outbound by %s; allow it with an outbound rule (fwctl add NAME allow --direction out --protocol %s --ports %d)",
		dec.Reason, store.ProtoName(proto), port)
}

func (d *Daemon) onFeedEvent(ev intel.Event) {
	d.log.Log(context.Background(), ev.Level, "Threat feed: "+ev.Msg, "feed", ev.Feed)
}

// Reload re-reads the config file and applies it whole, or not at all.
//
// A reload that fails for a reason other than the file's content (the
// file could not be read: out of descriptors, an I/O error; or the kernel
// refused the change) is retried with backoff, from 1 s to 30 s, until it
// succeeds or another reload supersedes it: an fwctl edit made while pfwd
// was short of descriptors must still reach the kernel. An invalid file
// is not retried; its next edit reloads it.
//
// Status shows the reload in progress from here to its end; its
// config_digest names the new config once the kernel holds it.
func (d *Daemon) Reload(why string) {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	if d.reloadsStopped {
		return
	}
	d.shown.reloadStarted(why, time.Now())
	defer d.shown.reloadEnded()
	defer beginLoad()() // a large list is parsed, compiled and put in the kernel
	if d.retry != nil {
		d.retry.Stop()
		d.retry = nil
	}
	invalid := false
	data, err := rules.ReadFile(d.opts.ConfigPath)
	if err == nil {
		var cfg *rules.Config
		if cfg, err = rules.Parse(data); err == nil {
			err = d.apply(cfg, why)
		} else {
			err, invalid = fmt.Errorf("%s: %w", d.opts.ConfigPath, err), true
		}
	}
	if err == nil {
		d.retryDelay = 0
		return
	}
	same := d.shown.setReloadError(err.Error())
	if why != reloadRetry || !same { // a retry failing alike stays quiet
		d.log.Error("Config not reloaded, the rules in force stay: "+err.Error(), "why", why)
	}
	if invalid {
		d.retryDelay = 0
		return
	}
	d.retryDelay = nextRetry(d.retryDelay)
	d.retry = time.AfterFunc(d.retryDelay, func() { d.Reload(reloadRetry) })
}

// stopReloads ends reloads and pending retries, before shutdown takes the
// parts they use away.
func (d *Daemon) stopReloads() {
	d.reloadMu.Lock()
	defer d.reloadMu.Unlock()
	d.reloadsStopped = true
	if d.retry != nil {
		d.retry.Stop()
	}
}

// Why a reload happens, as the log and status say.
const (
	reloadSIGHUP      = "SIGHUP"       // Options.Reload, which pfwd sends on for each SIGHUP
	reloadFileChanged = "file changed" // the config file's watcher
	reloadRetry       = "retry"        // a reload that failed for a reason other than the file's content
)

// apply puts cfg in force: kernel sets, then pipeline, then the threat
// feeds, so a config the kernel refuses leaves every feed as it was, then
// the cut of the open flows the new rules block, and only then what Status
// reports: fwctl, which waits for the new digest there, returns once no
// packet of a flow the change blocks gets through. Caller holds reloadMu.
func (d *Daemon) apply(cfg *rules.Config, why string) error {
	canon, _ := rules.Marshal(cfg)
	if string(canon) == string(d.cfgData) {
		hadError := !d.shown.setReloadError("") // the file is valid again, and already in force
		// An editor's touch passes in silence; an operator's SIGHUP
		// (systemctl reload) gets an answer, and so does a file mended
		// back to the rules in force, or the log's last word on it would
		// be the error.
		switch {
		case hadError:
			d.log.Info("Config file valid again: it holds the rules in force, which stay", "why", why)
		case why != reloadFileChanged:
			d.log.Info("Config unchanged: the rules in force stay", "why", why)
		}
		return nil
	}
	// Work on cfg alone is done before mu, which a feed update may be
	// waiting for.
	policy, digest := verdict.Compile(cfg), rules.Digest(cfg)
	d.mu.Lock()
	// The threat entries in force depend on the feeds' names and order
	// alone (their entries change through onFeedUpdate, under mu). When
	// those stay, the kernel's intel sets and the pipeline's copy are kept
	// as they are: rebuilding 100,000 entries to find nothing changed
	// doubled pfwd's heap for the length of every edit of a rule.
	reordered := !slices.Equal(feedNames(d.cfg), feedNames(cfg))
	if err := d.fw.UpdateSets(d.kernelLists(cfg, reordered)); err != nil {
		d.mu.Unlock()
		return fmt.Errorf("apply to the kernel: %w", err)
	}
	d.engine.SetPolicy(policy)
	if reordered {
		d.engine.SetIntel(d.compileIntel(cfg))
	}
	prev := d.cfg
	d.cfg, d.cfgData = cfg, canon
	appliedAt := time.Now()
	d.mu.Unlock()
	// The feeds follow only a config in force: the manager drops a removed
	// feed's entries (onFeedUpdate, which takes mu) at once, and a refused
	// config must leave them. After mu, since onFeedUpdate reads d.cfg: an
	// update the new feeds cause (a new feed's first fetch, a new level)
	// then finds their config in force. rules.Parse checked the feeds as
	// SetFeeds does, so this cannot fail on a parsed config.
	if err := d.feeds.SetFeeds(feedsOf(cfg)); err != nil {
		d.log.Error("Threat feeds not changed to the config's", "err", err)
	}
	if reordered {
		// An entry two feeds list now belongs to another feed first: the
		// database follows the pipeline. (A removed feed's rows also go
		// when the manager reports it empty; this is just sooner.)
		d.goSave(func() {
			d.saveMu.Lock()
			defer d.saveMu.Unlock()
			d.storeThreats(nil, "Threat feed: saving entries failed")
		})
	}
	d.guard.policyChanged() // a new limit may let held sources in
	d.audit.forgetRemovedRules(cfg)
	d.feeds.RetryFailed() // the change may let pfwd's own fetch out
	d.feeds.SetHostAddrs(hostAddrs())
	changes := rules.Changes(prev, cfg)
	if changes == nil {
		changes = []string{"nothing in effect (the order of list entries)"} // all Changes leaves out
	}
	if len(changes) > maxLoggedChanges { // a generated file may change thousands of rules
		changes = append(changes[:maxLoggedChanges], fmt.Sprintf("and %d more changes", len(changes)-maxLoggedChanges))
	}
	d.log.Info("Config reloaded: "+strings.Join(changes, "; "), "why", why, "rules", len(cfg.Rules), "enabled", cfg.EnabledRules(),
		"whitelist", len(cfg.WhitelistIPs), "blacklist", len(cfg.BlacklistIPs), "feeds", len(cfg.ThreatFeeds))
	d.cutBlockedFlows()
	d.shown.inForce(cfg, digest, appliedAt)
	return nil
}

// maxLoggedChanges bounds the changes a reload's log line names.
const maxLoggedChanges = 10

// keepTable puts the fail-closed table back whenever something else
// removed or changed it (nft.Firewall.Repair), checking every interval:
// `nft flush ruleset`, which nftables.service runs on every start, would
// otherwise turn fail-closed into unfiltered while pfwd runs on unaware.
// After a repair the lists are applied again, in case one changed while
// the table was gone (that change failed in the kernel then).
func (d *Daemon) keepTable(ctx context.Context, every time.Duration) {
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		repaired, err := d.fw.Repair()
		if err != nil {
			d.logLimited("table-repair", slog.LevelError, "Checking the nftables table failed", "err", err)
		}
		if !repaired {
			continue
		}
		if err == nil {
			d.log.Warn("The nftables table was removed or changed by something else (nft flush ruleset?): installed it again")
		}
		d.mu.Lock()
		err = d.fw.UpdateSets(d.kernelLists(d.cfg, true))
		d.mu.Unlock()
		if err != nil {
			d.log.Error("Applying the lists to the repaired table failed", "err", err)
		}
	}
}

// onStoreReopen follows the log writer's reopening of a database file
// that was deleted or replaced: the new file lacks the threat entries,
// which live in memory, so they are written again (from another
// goroutine: the writer must get back to its rows).
func (d *Daemon) onStoreReopen(err error) {
	if err != nil {
		d.logLimited("store-reopen", slog.LevelError, "The log database is gone and could not be made again; rows are lost until it can", "err", err)
		return
	}
	if moved := d.store.MovedAside(); moved != "" {
		// Damage found by the writer, or a file put in the database's
		// place that pfw cannot use: kept under another name.
		d.log.Error("The log database could not be used: moved it aside and started a new one",
			"reason", d.store.MovedAsideReason(), "moved_to", moved, "path", d.store.Path())
	} else {
		d.log.Warn("The log database was deleted, replaced or emptied while pfwd ran: opened it again", "path", d.store.Path())
	}
	d.goSave(d.resaveThreats)
}

// resaveThreats writes every feed's entries in force to the database.
func (d *Daemon) resaveThreats() {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	seen := map[string]time.Time{}
	for _, st := range d.feeds.States() {
		if !st.LastSuccess.IsZero() {
			seen[st.Name] = st.LastSuccess
		}
	}
	// Entries loaded from the old database and not fetched since have no
	// time: the new rows are stamped now.
	if d.storeThreats(seen, "Threat feed: saving entries to the new database failed") != nil {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, f := range d.cfg.ThreatFeeds {
		if n := len(d.feedEntries[f.Name]); n > 0 {
			d.log.Info("Threat feed: entries saved to the new database", "feed", f.Name, "entries", n)
		}
	}
}

func feedNames(cfg *rules.Config) []string {
	names := make([]string, len(cfg.ThreatFeeds))
	for i, f := range cfg.ThreatFeeds {
		names[i] = f.Name
	}
	return names
}

// saveThreats makes the database's threat entries those in force (see
// store.SetThreats), feeds in config order, so an entry two feeds list is
// saved as the first one's: the feed the pipeline names, and so the one
// fwctl explain names too. Feeds in fresh are stamped with its time; the
// others keep their rows' times. The caller holds saveMu, not mu.
//
// A quarter of a million rows take seconds: the save runs under the
// daemon's lifetime, and shutdown cuts it short after its grace.
func (d *Daemon) saveThreats(fresh map[string]time.Time) error {
	d.mu.Lock()
	feeds := make([]store.FeedThreats, 0, len(d.cfg.ThreatFeeds))
	for _, f := range d.cfg.ThreatFeeds {
		// feedEntries' slices are replaced, never changed in place, so
		// they may be read after the lock is released.
		feeds = append(feeds, store.FeedThreats{Source: f.Name, Level: f.ThreatLevel,
			Entries: d.feedEntries[f.Name], Seen: fresh[f.Name]})
	}
	d.mu.Unlock()
	err := d.store.SetThreats(d.life, feeds, time.Now())
	if err != nil && d.life.Err() != nil {
		return fmt.Errorf("cut short by shutdown after %v: %w", d.grace, err)
	}
	return err
}

// maxThreatSaveRetry caps the pause between tries of a threat save the
// database refused.
const maxThreatSaveRetry = 5 * time.Minute

// nextThreatSaveRetry is the pause after prev: from 1 s, doubling. Each
// try rewrites every entry (up to 250,000 rows, seconds under saveMu), so
// on a disk that stays full the tries thin out to one every
// maxThreatSaveRetry, not nextRetry's 30 s.
func nextThreatSaveRetry(prev time.Duration) time.Duration {
	return min(max(2*prev, time.Second), maxThreatSaveRetry)
}

// unsavedThreats is the database's copy of the threat entries gone stale:
// a save failed (a full disk, a database another program holds locked),
// and the entries in force, which the kernel and the pipeline hold, are
// not in threat_intel. Nothing else would write them again: a feed whose
// list did not change is not offered again, so fwctl threats and explain
// would read the old entries, and a restart with the feed's server down
// would seed the kernel with them, until the list changed. So pfwd saves
// again with backoff until the database takes them.
type unsavedThreats struct {
	// seen holds the fetch times the failed saves were to stamp, newest
	// per feed, for the save that succeeds.
	seen  map[string]time.Time
	err   string // the last failure: a retry failing alike stays quiet
	timer *time.Timer
	delay time.Duration
}

// storeThreats saves the threat entries in force (saveThreats, with
// fresh) and, if that fails, logs msg and args with the error and saves
// them again, with backoff from 1 s to 5 min, until a save succeeds or pfwd
// stops; fwctl status shows the error on the feeds meanwhile. Any save
// that succeeds writes every feed's entries, so it ends the retries. The
// caller holds saveMu, not mu.
func (d *Daemon) storeThreats(fresh map[string]time.Time, msg string, args ...any) error {
	return d.storeThreatsRetry(fresh, nil, msg, args...)
}

// storeThreatsRetry is storeThreats, or with retry the scheduled save
// after retry's failure. saveMu is held.
func (d *Daemon) storeThreatsRetry(fresh map[string]time.Time, retry *unsavedThreats, msg string, args ...any) error {
	u := d.unsaved
	if u != nil {
		stamps := maps.Clone(u.seen)
		if stamps == nil {
			stamps = map[string]time.Time{}
		}
		for name, t := range fresh {
			if t.After(stamps[name]) {
				stamps[name] = t
			}
		}
		fresh = stamps
	}
	err := d.saveThreats(fresh)
	if err == nil {
		if u != nil {
			if u.timer != nil {
				u.timer.Stop()
			}
			d.unsaved = nil
			d.shown.setThreatsUnsaved("")
			d.log.Info("Threat feed: saved the entries in force to the database, which had refused them")
		}
		return nil
	}
	if u == nil {
		u = &unsavedThreats{}
		d.unsaved = u
	}
	quiet := retry != nil && u.err == err.Error()
	u.err, u.seen = err.Error(), fresh
	d.shown.setThreatsUnsaved(u.err)
	if d.feedsStopped || d.life.Err() != nil {
		// Cut short by shutdown: the database keeps what it had.
		d.log.Error(msg, append(args, "err", err)...)
		return err
	}
	if u.timer == nil { // else the retry pending saves this update's entries too
		u.delay = nextThreatSaveRetry(u.delay)
		u.timer = time.AfterFunc(u.delay, func() { d.retryThreatSave(u) })
	}
	if !quiet {
		d.log.Error(msg+"; saving them again until the database takes them",
			append(args, "err", err, "retry_in", u.delay)...)
	}
	return err
}

// retryThreatSave is the scheduled new attempt of u's failed save.
func (d *Daemon) retryThreatSave(u *unsavedThreats) {
	d.saveMu.Lock()
	defer d.saveMu.Unlock()
	if d.unsaved != u || d.feedsStopped {
		return // saved meanwhile, or pfwd stops
	}
	u.timer = nil
	d.storeThreatsRetry(nil, u, "Threat feed: saving entries failed again")
}

// logLimited logs a line about a recurring condition, named by key, at
// most once per limitedEvery (see limitedLogger).
func (d *Daemon) logLimited(key string, level slog.Level, msg string, args ...any) {
	d.limited.log(key, level, msg, args...)
}

// logWriterError is the log writer's OnError: a full disk fails every
// flush, and a lock another program holds on the database every try of
// the rows waiting for it.
func (d *Daemon) logWriterError(err error) {
	d.logLimited("log-writer", slog.LevelError, "Log writer", "err", err)
}

// logPruned is the log writer's OnPrune.
func (d *Daemon) logPruned(p store.Pruned) {
	d.log.Info("Log rows deleted: the oldest beyond the newest 1,000,000 kept per table",
		"blocked", p.Blocked, "allowed", p.Allowed)
}

// nextRetry is the delay before the next try of something the kernel or
// the disk refused, after one of prev: 1 s, doubling, at most 30 s.
func nextRetry(prev time.Duration) time.Duration {
	return min(max(2*prev, time.Second), 30*time.Second)
}
