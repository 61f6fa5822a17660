package intel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/pfw/pfw/rules"
)

// Scheduling limits.
const (
	// MinInterval is the shortest fetch interval SetFeeds accepts: the one
	// the config accepts.
	MinInterval = rules.MinFeedInterval
	// PoliteInterval is the interval below which an https feed draws a
	// warning: providers regenerate lists every 5 minutes at best and some
	// (Spamhaus) ask for one download an hour.
	PoliteInterval = 5 * time.Minute
	// ShrinkThreshold is the size from which a feed that suddenly comes back
	// empty is distrusted: the empty list is accepted only when the next
	// fetch is empty too.
	ShrinkThreshold = 10
	// maxFirstBackoff is the first retry delay after a failure; it doubles
	// per failure up to the interval, and shrinks to interval/4 for short
	// intervals.
	maxFirstBackoff = 30 * time.Second
)

// Feed is one configured threat feed.
type Feed struct {
	Name     string        // unique; the pipeline's reason is "Threat intel: <Name>"
	URL      string        // https, http or file:///absolute/path
	Interval time.Duration // between successful fetches, >= MinInterval
	Level    string        // threat level recorded with the entries, opaque here
}

// FeedState is what `fwctl status` shows of a feed.
type FeedState struct {
	Name        string
	Entries     int       // entries in force (seeded or last accepted)
	LastSuccess time.Time // last fetch that was accepted or not modified
	LastAttempt time.Time
	NextFetch   time.Time
	LastError   string // of the last attempt; empty after a success
	Failures    int    // consecutive failed or rejected attempts
	// FetchingSince is when the fetch under way began (zero when none):
	// a server that hangs holds one for up to the fetch timeout, with no
	// failure to show yet.
	FetchingSince time.Time
}

// Event is a line for the daemon's log; the Manager itself never logs.
// Levels: Debug for a 304, Info for updates, removals and URL changes, Warn
// for failed or rejected fetches, skipped or flagged entries and doubtful
// configurations.
type Event struct {
	Feed  string
	Level slog.Level
	Msg   string
}

// Options configure a Manager. Callbacks are optional.
type Options struct {
	// OnUpdate receives the complete, sanitized, sorted entry list of a
	// feed after each accepted fetch, after a change of the feed's Level
	// (same entries, new Feed), after entries in force were dropped
	// because what is protected grew (SetHostAddrs, SetProtected, a server
	// learned) or entries withheld came back because it shrank, and nil
	// entries when the feed is removed.
	// The slice is the callee's to keep.
	OnUpdate func(feed Feed, entries []netip.Prefix)
	// OnEvent receives what the daemon should log.
	OnEvent func(Event)
	// Fetcher downloads feeds; nil means a zero Fetcher (default client,
	// timeouts and size cap).
	Fetcher *Fetcher
	// OnFetch is called as a fetch begins; the function it returns is
	// called once the body has been read and parsed (or the fetch failed),
	// before the list is checked and handed to OnUpdate. A list of 250,000 entries is parsed in between: the
	// daemon uses it to ready its memory limit for that.
	OnFetch func() (done func())
	// Blocked, when set, says why this host's own firewall would block
	// an outbound connection to addr:port (proto 6, TCP, or 17, UDP), and
	// what to do about it, or "" when it would not. A fetch that timed
	// out on such a connection fails with an error that says so: with
	// outbound traffic blocked by default, the feed server or the
	// resolver is out of reach, and a bare timeout would not say why. It
	// is called without the Manager's lock, from the feeds' goroutines
	// and from RetryFailed.
	Blocked func(proto uint8, addr netip.Addr, port uint16) string
}

// Manager keeps the entries of a set of feeds current. See the package
// documentation for the rules it follows.
type Manager struct {
	onUpdate func(Feed, []netip.Prefix)
	onEvent  func(Event)
	onFetch  func() func()
	blocked  func(uint8, netip.Addr, uint16) string
	fetcher  *Fetcher

	mu      sync.Mutex
	feeds   map[string]*feed
	order   []string               // SetFeeds order, for States
	seeds   map[string]pendingSeed // Seed calls for feeds not configured yet
	protect []netip.Prefix
	host    []netip.Addr
	// needs are the addresses pfwd must reach to fetch feeds (see learn):
	// no feed may block one.
	needs map[netip.Addr]need
	// protectGen changes whenever what Sanitize protects does (protect,
	// host, needs), so that a list sanitized without the lock is known to
	// be out of date.
	protectGen  uint64
	resolvConfs []string        // tests point it elsewhere
	runCtx      context.Context // non-nil while Run runs
	wg          sync.WaitGroup  // feed goroutines

	callbacks callbackQueue
	// sanitize is Sanitize, for fetched lists and seeds alike; tests hold
	// it to look at the Manager while a list is being sanitized.
	sanitize func([]netip.Prefix, Protected) ([]netip.Prefix, []Skipped)
}

// pendingSeed is a sanitized seed waiting for SetFeeds to name its feed.
type pendingSeed struct {
	entries  []netip.Prefix
	withheld withheld
	// protectGen is Manager.protectGen when the seed was sanitized: the
	// seed is checked again when it is installed under another.
	protectGen uint64
}

// feed is the Manager's record of one Feed. Fields are guarded by Manager.mu.
type feed struct {
	cfg        Feed
	state      FeedState
	entries    []netip.Prefix // in force: seeded or last accepted
	withheld   withheld       // of the list that gave entries, for protection alone
	validators Validators     // of the body that gave entries
	format     string         // of the body that gave entries; "" for a seed
	emptySince time.Time      // the first of the empty bodies rejected since the last accepted one
	blockedBy  blockedWay     // what this host's firewall blocked of the last fetch, if it failed so

	// gen changes with the URL so that the result of a fetch of the old URL,
	// still in flight, is dropped.
	gen         uint64
	stop        context.CancelFunc // ends the feed's goroutine; nil when not running
	cancelFetch context.CancelFunc // aborts the fetch in flight, if any
	wake        chan struct{}      // reschedule now; capacity 1
}

// NewManager returns a Manager with no feeds. Configure it with SetFeeds,
// SetProtected and Seed, then call Run.
func NewManager(opts Options) *Manager {
	f := opts.Fetcher
	if f == nil {
		f = &Fetcher{}
	}
	return &Manager{
		onUpdate:    opts.OnUpdate,
		onEvent:     opts.OnEvent,
		onFetch:     opts.OnFetch,
		blocked:     opts.Blocked,
		fetcher:     f,
		feeds:       make(map[string]*feed),
		seeds:       make(map[string]pendingSeed),
		needs:       make(map[netip.Addr]need),
		resolvConfs: resolvConfs,
		sanitize:    Sanitize,
		callbacks:   callbackQueue{ready: make(chan struct{}, 1)},
	}
}

// SetFeeds replaces the feed list, as on a config reload. A feed is known by
// its Name: an unchanged feed keeps its entries, state and timer; a new URL
// makes it fetch at once (keeping its entries until the new source is
// accepted); a new Interval reschedules it; a new Level re-sends its entries
// through OnUpdate. Removed feeds stop (a fetch in flight is cancelled) and
// OnUpdate receives nil for them. New feeds fetch at once when running.
//
// An invalid list (empty or duplicate name, interval below MinInterval, a
// URL rules.ParseFeedURL refuses) is an error naming the feed, and nothing
// changes.
func (m *Manager) SetFeeds(feeds []Feed) error {
	if err := checkFeeds(feeds); err != nil {
		return fmt.Errorf("set feeds: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.reconfigure(feeds, time.Now())
	return nil
}

// checkFeeds says what makes feeds unusable, naming the feed, or nil.
func checkFeeds(feeds []Feed) error {
	names := make(map[string]bool, len(feeds))
	for i, f := range feeds {
		switch {
		case f.Name == "":
			return fmt.Errorf("feeds[%d]: empty name", i)
		case names[f.Name]:
			return fmt.Errorf("feeds[%d]: duplicate name %q", i, f.Name)
		case f.Interval < MinInterval:
			return fmt.Errorf("feed %q: interval %s is below the minimum of %s", f.Name, f.Interval, MinInterval)
		}
		if _, err := parseFeedURL(f.URL); err != nil {
			return fmt.Errorf("feed %q: %w", f.Name, err)
		}
		names[f.Name] = true
	}
	return nil
}

// reconfigure makes the checked feeds the Manager's: removed ones go, new
// ones are added, and kept ones take their new settings; m.mu is held.
func (m *Manager) reconfigure(feeds []Feed, now time.Time) {
	keep := make(map[string]bool, len(feeds))
	for _, cfg := range feeds {
		keep[cfg.Name] = true
	}
	// The servers a removed feed, or one moved to another host, no longer
	// needs are forgotten now, and the entries they alone refused given
	// back at the end, once what the new config needs is learned: an
	// address still needed is never given back only to be refused again.
	forgot := false
	heir := func(name, oldURL string) string { // a feed of the new config on the same host
		for _, cfg := range feeds {
			if cfg.Name != name && sameHost(oldURL, cfg.URL) {
				return cfg.Name
			}
		}
		return ""
	}
	for _, name := range m.order {
		if !keep[name] {
			oldURL := m.feeds[name].cfg.URL
			m.remove(name)
			forgot = m.forgetServersOf(name, heir(name, oldURL)) || forgot
		}
	}
	m.order = m.order[:0]
	for _, cfg := range feeds {
		m.order = append(m.order, cfg.Name)
		if f, ok := m.feeds[cfg.Name]; ok {
			if !sameHost(f.cfg.URL, cfg.URL) {
				forgot = m.forgetServersOf(cfg.Name, heir(cfg.Name, f.cfg.URL)) || forgot
			}
			m.change(f, cfg, now)
		} else {
			m.add(cfg, now)
		}
	}
	// After the loop: learn checks the entries of every feed in m.order.
	for _, cfg := range feeds {
		if a, ok := urlAddr(cfg.URL); ok {
			m.learn(cfg.Name, []netip.Addr{a}, now)
		}
	}
	if forgot {
		m.protectGen++
		m.reprotectEverywhere(Protected{}, true)
	}
}

// sameHost reports whether two feed URLs name the same host, whose
// addresses a fetch of either would reach.
func sameHost(a, b string) bool {
	ua, errA := url.Parse(a)
	ub, errB := url.Parse(b)
	return errA == nil && errB == nil && strings.EqualFold(ua.Hostname(), ub.Hostname())
}

// change gives a feed already tracked its new settings: a new URL
// fetches now, with fresh validators (reconfigure forgets the old host's
// addresses), a new Interval reschedules, a new Level re-sends the
// entries; m.mu is held.
func (m *Manager) change(f *feed, cfg Feed, now time.Time) {
	old := f.cfg
	f.cfg = cfg
	switch {
	case old.URL != cfg.URL:
		f.gen++
		f.validators = Validators{}
		f.format = ""
		f.emptySince, f.blockedBy = time.Time{}, blockedWay{}
		f.state.Failures, f.state.LastError = 0, ""
		f.state.NextFetch = now
		if f.cancelFetch != nil {
			f.cancelFetch()
		}
		f.poke()
		m.event(cfg.Name, slog.LevelInfo, "URL changed to %s: fetching now, keeping %s until it answers", shownURL(cfg.URL), entryCount(len(f.entries)))
	case old.Interval != cfg.Interval:
		if !f.state.LastAttempt.IsZero() {
			if due := f.state.LastAttempt.Add(cfg.Interval); due.Before(f.state.NextFetch) {
				f.state.NextFetch = due
			}
		}
		f.poke()
	}
	if old.URL == cfg.URL && old.Level != cfg.Level && (f.entries != nil || !f.state.LastSuccess.IsZero()) {
		m.update(cfg, f.entries)
	}
	if old.URL != cfg.URL || old.Interval != cfg.Interval {
		m.warnPolicy(cfg)
	}
}

// add starts tracking cfg; m.mu is held.
func (m *Manager) add(cfg Feed, now time.Time) {
	f := &feed{cfg: cfg, wake: make(chan struct{}, 1)}
	f.state.Name = cfg.Name
	f.state.NextFetch = now
	m.feeds[cfg.Name] = f
	if seed, ok := m.seeds[cfg.Name]; ok {
		delete(m.seeds, cfg.Name)
		m.install(f, seed)
	}
	m.warnPolicy(cfg)
	if m.runCtx != nil {
		m.start(f)
	}
}

// remove stops tracking a feed and tells OnUpdate to drop its entries; m.mu
// is held.
func (m *Manager) remove(name string) {
	f := m.feeds[name]
	if f.stop != nil {
		f.stop()
	}
	delete(m.feeds, name)
	m.event(name, slog.LevelInfo, "removed from the configuration: dropping its %s", entryCount(len(f.entries)))
	m.update(f.cfg, nil)
}

// warnPolicy reports configurations that work but probably should not be;
// m.mu is held.
func (m *Manager) warnPolicy(cfg Feed) {
	u, err := url.Parse(cfg.URL)
	if err != nil {
		return
	}
	if u.Scheme == "https" && cfg.Interval < PoliteInterval {
		m.event(cfg.Name, slog.LevelWarn, "interval %s is shorter than %s: providers regenerate lists every few minutes at best and may block clients that download more often (Spamhaus asks for at most one download an hour); check the provider's terms", cfg.Interval, PoliteInterval)
	}
	if u.Scheme == "http" && !isLoopbackHost(u.Hostname()) {
		m.event(cfg.Name, slog.LevelWarn, "fetched over plain http: anyone on the path can alter the list; use https if the provider offers it")
	}
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	a, err := netip.ParseAddr(host)
	return err == nil && a.IsLoopback()
}

// Seed installs entries a feed had before this start (from the database), so
// that an offline boot stays protected and the shrink rule has a baseline.
//
// The seed goes through Sanitize like a fetched list, against what is
// protected now: call SetProtected and SetHostAddrs first. A database is
// no more to be trusted than a feed (it may predate a check, or a change
// of the host's addresses, or have been edited), and an entry such as ::/0
// or one covering the host's own network must not be put in force at start
// any more than by a fetch. What it refuses or flags is reported through
// OnEvent like a fetch's skips, as "from the database: skipped N
// entries: ...". Seed returns the entries it kept: those, and only those,
// are what the caller puts in force (kernel sets, pipeline), so that they
// and the Manager agree; nil when the seed is ignored. Seeding does not
// call OnUpdate, since the caller installs the returned entries itself;
// but entries it kept that cover an address pfwd turns out to need (a
// feed server, a resolver), or that protection added later refuses, are
// dropped through OnUpdate as soon as the Manager knows, and entries it
// refused only for a protection (a whitelisted prefix, a host address)
// come back through OnUpdate as soon as that protection goes. A seed for a
// feed SetFeeds has not named yet is kept until it does (and checked again
// then if the protection changed meanwhile); a seed for a feed that
// already fetched successfully is ignored as older.
//
// Seed sanitizes under the Manager's lock (about 90 ms for 250,000
// entries): it is meant for start-up, before Run.
func (m *Manager) Seed(name string, entries []netip.Prefix) []netip.Prefix {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, configured := m.feeds[name]
	if configured && !f.state.LastSuccess.IsZero() {
		return nil
	}
	kept, skipped := m.sanitize(entries, m.protection())
	m.reportSkipped(name, "from the database: ", skipped)
	seed := pendingSeed{entries: kept, withheld: withheldOf(skipped), protectGen: m.protectGen}
	if !configured {
		m.seeds[name] = seed
		return slices.Clone(kept)
	}
	m.install(f, seed)
	return slices.Clone(f.entries)
}

// install puts a sanitized seed in force. When what is protected changed
// since the seed was sanitized, the entries the protection now refuses
// are dropped and those withheld that it no longer refuses restored
// (through OnUpdate, since the caller installed the seed as Seed returned
// it); m.mu is held.
func (m *Manager) install(f *feed, seed pendingSeed) {
	f.entries = seed.entries
	f.withheld = seed.withheld
	f.state.Entries = len(seed.entries)
	if seed.protectGen != m.protectGen {
		now := newRefusal(m.protection())
		m.reprotect(f, now, now)
	}
}

// SetProtected sets the prefixes no feed may block (the whitelist), applied by
// Sanitize to every list from now on, and to the lists in force at once.
// Entries in force that overlap a prefix new to the whitelist are dropped
// from every feed, through OnUpdate and a warning "dropped N entries in
// force: ...": they would otherwise stay until their feed's next accepted
// fetch, an interval away. Entries of the lists in force that were refused
// only for a prefix leaving the whitelist (or for any protection since
// gone) are restored, through OnUpdate and an info "restored N entries
// ...": the next fetch, a 304 while the feed's content is unchanged, would
// not bring them back.
func (m *Manager) SetProtected(protect []netip.Prefix) {
	setProtection(m, &m.protect, protect, func(p []netip.Prefix) Protected { return Protected{Whitelist: p} })
}

// SetHostAddrs sets this host's own addresses: a feed entry covering one is
// refused like one covering the whitelist, since it would cut the host off
// its own network, gateway and resolver included; and a feed's redirect to
// one is refused, as to loopback. Entries already in force that cover a new
// address are dropped at once, and those refused only for an address the
// host no longer has are restored at once, as SetProtected does. The
// daemon refreshes them as interfaces change.
func (m *Manager) SetHostAddrs(addrs []netip.Addr) {
	setProtection(m, &m.host, addrs, func(a []netip.Addr) Protected { return Protected{Host: a} })
}

// setProtection replaces one kind of protection, *field (guarded by m.mu),
// with next, and applies the change to the entries in force at once:
// grown makes the Protected of the newcomers (reprotectEverywhere).
func setProtection[T comparable](m *Manager, field *[]T, next []T, grown func([]T) Protected) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if slices.Equal(*field, next) {
		return
	}
	added := grown(newcomers(*field, next))
	shrank := len(newcomers(next, *field)) > 0
	*field = slices.Clone(next)
	m.protectGen++
	m.reprotectEverywhere(added, shrank)
}

// newcomers returns the elements of next missing from prev.
func newcomers[T comparable](prev, next []T) []T {
	var out []T
	for _, x := range next {
		if !slices.Contains(prev, x) {
			out = append(out, x)
		}
	}
	return out
}

// States returns the state of each feed, in SetFeeds order.
func (m *Manager) States() []FeedState {
	m.mu.Lock()
	defer m.mu.Unlock()
	states := make([]FeedState, 0, len(m.order))
	for _, name := range m.order {
		states = append(states, m.feeds[name].state)
	}
	return states
}

// Entries returns a copy of the entries in force for a feed, and whether the
// feed is configured.
func (m *Manager) Entries(name string) ([]netip.Prefix, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	f, ok := m.feeds[name]
	if !ok {
		return nil, false
	}
	return slices.Clone(f.entries), true
}

// Run fetches every feed at once and then on its schedule, and delivers the
// callbacks, until ctx is done. Callbacks run one at a time on Run's
// goroutine, in the order the Manager produced them, never while the
// Manager's lock is held: they may call States or SetFeeds. On return every
// request in flight has been cancelled, every feed goroutine has ended and no
// callback runs any more; callbacks still queued are dropped. Run may be
// called again later; calling it while it runs is an error.
func (m *Manager) Run(ctx context.Context) error {
	m.mu.Lock()
	if m.runCtx != nil {
		m.mu.Unlock()
		return errors.New("run feeds: already running")
	}
	m.runCtx = ctx
	for _, name := range m.order {
		m.start(m.feeds[name])
	}
	m.mu.Unlock()

	for ctx.Err() == nil {
		select {
		case <-ctx.Done():
		case <-m.callbacks.ready:
			for _, call := range m.callbacks.take() {
				if ctx.Err() != nil {
					break
				}
				call()
			}
		}
	}

	m.mu.Lock()
	m.runCtx = nil
	for _, f := range m.feeds {
		if f.stop != nil {
			f.stop()
			f.stop = nil
		}
	}
	m.mu.Unlock()
	m.wg.Wait()
	m.callbacks.take() // dropped: nobody is listening any more
	return nil
}

// start runs a feed's goroutine under Run's context; m.mu is held.
func (m *Manager) start(f *feed) {
	ctx, stop := context.WithCancel(m.runCtx)
	f.stop = stop
	m.wg.Add(1)
	go m.loop(ctx, f)
}

// RetryFailed fetches at once the feeds whose last fetch this host's own
// firewall blocked (see Options.Blocked) and whose way the rules in force
// now let through: the daemon calls it after a config change, so that an
// outbound rule added for a feed's server shows without waiting out the
// backoff. No other failing feed is asked again sooner (a script's burst
// of edits must not hammer a server that is down), nor one tried within
// the last minRetryAfterFix.
func (m *Manager) RetryFailed() {
	if m.blocked == nil {
		return
	}
	type candidate struct {
		f    *feed
		hint blockedWay
	}
	var cands []candidate
	now := time.Now()
	m.mu.Lock()
	for _, f := range m.feeds {
		if f.blockedBy.proto != 0 && f.state.FetchingSince.IsZero() && f.state.NextFetch.After(now) &&
			now.Sub(f.state.LastAttempt) >= minRetryAfterFix {
			cands = append(cands, candidate{f, f.blockedBy})
		}
	}
	m.mu.Unlock()
	for _, c := range cands {
		if m.blocked(c.hint.proto, c.hint.to.Addr(), c.hint.to.Port()) != "" {
			continue // still blocked: the backoff stands
		}
		m.mu.Lock()
		if c.f.blockedBy == c.hint && c.f.state.FetchingSince.IsZero() {
			c.f.state.NextFetch = now
			c.f.poke()
		}
		m.mu.Unlock()
	}
}

// minRetryAfterFix is the least time between two fetches of a feed that
// RetryFailed asks for.
const minRetryAfterFix = time.Second

// blockedWay is the connection of a fetch that this host's firewall
// blocked: proto 6 (TCP) or 17 (UDP), and where to; zero when none was.
type blockedWay struct {
	proto uint8
	to    netip.AddrPort
}

// blockedHere says, when a fetch of url failed with err and this host's
// own firewall (Options.Blocked) blocks the way to the feed, which
// connection it blocks, why and what to do: one to an address the fetch
// dialed or the URL names, on the URL's port, or, when none was dialed
// (the name did not resolve), one to a resolver. Only a timeout can be
// such a block: pfw drops, and never resets, so a refused connection, a
// TLS error or an HTTP answer got through. Called without m.mu.
func (m *Manager) blockedHere(err error, rawURL string, dialed, resolvers []netip.Addr) (string, blockedWay) {
	if m.blocked == nil || !timedOut(err) {
		return "", blockedWay{}
	}
	u, perr := url.Parse(rawURL)
	if perr != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return "", blockedWay{}
	}
	port := uint16(80)
	if u.Scheme == "https" {
		port = 443
	}
	if p, err := strconv.ParseUint(u.Port(), 10, 16); err == nil {
		port = uint16(p)
	}
	if a, ok := urlAddr(rawURL); ok {
		dialed = append([]netip.Addr{a}, dialed...)
	}
	for _, a := range dialed {
		if why := m.blocked(6, a, port); why != "" {
			to := netip.AddrPortFrom(a, port)
			return fmt.Sprintf("this firewall blocks pfwd's own connection to %s: %s", to, why), blockedWay{6, to}
		}
	}
	if len(dialed) > 0 {
		return "", blockedWay{}
	}
	for _, a := range resolvers {
		if why := m.blocked(17, a, 53); why != "" {
			to := netip.AddrPortFrom(a, 53)
			return fmt.Sprintf("this firewall blocks pfwd's DNS query to %s: %s", to, why), blockedWay{17, to}
		}
	}
	return "", blockedWay{}
}

// timedOut reports whether err is a fetch that timed out (the connect,
// the DNS query, or the whole request).
func timedOut(err error) bool {
	if err == nil {
		return false
	}
	if dnsErr := (*net.DNSError)(nil); errors.As(err, &dnsErr) {
		return dnsErr.IsTimeout
	}
	if ne := net.Error(nil); errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	return errors.Is(err, context.DeadlineExceeded)
}

// poke makes the feed's goroutine recompute its wait.
func (f *feed) poke() {
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (m *Manager) loop(ctx context.Context, f *feed) {
	defer m.wg.Done()
	timer := time.NewTimer(0)
	defer timer.Stop()
	for {
		m.mu.Lock()
		wait := time.Until(f.state.NextFetch)
		m.mu.Unlock()
		timer.Reset(max(wait, 0))
		select {
		case <-ctx.Done():
			return
		case <-f.wake:
			continue
		case <-timer.C:
		}
		m.fetch(ctx, f)
	}
}

// fetch runs one attempt and applies its outcome.
//
// The servers it needs are learned before a single entry of the answer is
// considered: the resolvers (read now) and a literal address of the URL
// before the fetch, every address it connected to or tried after it, on
// failure too, so that entries in force that block the way to the feed are
// dropped and the next attempt gets through.
func (m *Manager) fetch(ctx context.Context, f *feed) {
	fetched := func() {}
	if m.onFetch != nil {
		fetched = m.onFetch()
	}
	fetchCtx, cancel := context.WithCancel(ctx)
	defer cancel()
	resolvers := readResolvers(m.resolvConfs)
	m.mu.Lock()
	gen, cfg, prev, host := f.gen, f.cfg, f.validators, m.host
	f.cancelFetch = cancel
	f.state.LastAttempt = time.Now()
	f.state.FetchingSince = f.state.LastAttempt
	m.learn("", resolvers, f.state.LastAttempt)
	if a, ok := urlAddr(cfg.URL); ok {
		m.learn(cfg.Name, []netip.Addr{a}, f.state.LastAttempt)
	}
	m.mu.Unlock()

	var dialed dialLog
	resp, err := m.fetcher.fetch(fetchCtx, cfg.URL, prev, fetchOpts{host: host, dialed: dialed.add})
	fetched()
	hint, way := m.blockedHere(err, cfg.URL, dialed.list(), resolvers) // the daemon's callback: not under mu

	m.mu.Lock()
	defer m.mu.Unlock()
	f.cancelFetch = nil
	f.state.FetchingSince = time.Time{}
	if m.moot(ctx, f, gen) {
		return
	}
	now := time.Now()
	m.learn(cfg.Name, dialed.list(), now)
	switch {
	case err != nil:
		reason := err.Error()
		if hint != "" {
			reason += " (" + hint + ")"
		}
		f.blockedBy = way
		m.fail(f, now, reason)
	case resp.NotModified:
		// A 304 confirms the last accepted list, which was not empty-rejected.
		f.emptySince = time.Time{}
		if f.validators == prev {
			// Unless reprotect cleared them meanwhile to have the whole
			// list again: the next fetch must stay unconditional.
			f.validators = resp.Validators
		}
		m.succeed(f, now)
		m.event(cfg.Name, slog.LevelDebug, "not modified: %s", entryCount(len(f.entries)))
	default:
		m.accept(ctx, f, gen, cfg, resp, now)
	}
}

// moot reports whether the answer to a fetch of f started at generation
// gen no longer counts: the Manager shut down, the feed was removed (and
// perhaps added again, as another feed), or its URL changed. m.mu is held.
func (m *Manager) moot(ctx context.Context, f *feed, gen uint64) bool {
	return ctx.Err() != nil || gen != f.gen || m.feeds[f.cfg.Name] != f
}

// accept sanitizes a fetched list and puts it in force unless the shrink rule
// rejects it. m.mu is held on entry and on return, but released while the
// list is sanitized (see sanitizeUnlocked); nothing is applied when the
// answer became moot meanwhile.
func (m *Manager) accept(ctx context.Context, f *feed, gen uint64, cfg Feed, resp Response, now time.Time) {
	kept, skipped, ok := m.sanitizeUnlocked(ctx, f, gen, resp.Result.Entries)
	if !ok {
		return
	}
	if len(kept) == 0 {
		if why := distrustEmpty(f, resp.Result.Format); why != "" {
			if f.emptySince.IsZero() {
				f.emptySince = now
			}
			// Retried with the usual backoff, which soon reads a
			// rewritten file:// copy, but accepted only once the feed
			// has been empty for a whole interval: a provider's or a
			// CDN's empty answers for a minute must not lift every
			// entry with the first retry.
			if until := f.emptySince.Add(cfg.Interval); now.Before(until) {
				m.fail(f, now, fmt.Sprintf("%s: it is accepted if the feed is still empty after %v", why, cfg.Interval))
				return
			}
		}
	}
	f.emptySince = time.Time{}
	if f.format != "" && slices.Equal(f.entries, kept) {
		// The same list again, from a server that sends no validators
		// (or a file touched but not changed): like a 304, nothing to
		// apply. Applying it would rebuild the kernel set's diff, the
		// pipeline's intel and every database row for nothing, about a
		// second and tens of MiB for 100,000 entries. Only a list this
		// run fetched counts (format is set): the first fetch after a
		// Seed is applied whatever it holds, so the database takes the
		// level and the time of the fetch after a restart.
		f.withheld = withheldOf(skipped)
		f.validators = resp.Validators
		f.format = resp.Result.Format
		m.succeed(f, now)
		m.event(cfg.Name, slog.LevelDebug, "unchanged: %s", entryCount(len(kept)))
		return
	}
	added, removed := diffCount(f.entries, kept)
	f.entries = kept
	f.withheld = withheldOf(skipped)
	f.state.Entries = len(kept)
	f.validators = resp.Validators
	f.format = resp.Result.Format
	m.succeed(f, now)

	res := resp.Result
	msg := fmt.Sprintf("updated: %s (+%d -%d), format %s", entryCount(len(kept)), added, removed, res.Format)
	if res.Invalid > 0 {
		msg += fmt.Sprintf(", %d invalid lines skipped (first %s)", res.Invalid, res.FirstInvalid)
	}
	m.event(cfg.Name, slog.LevelInfo, "%s", msg)
	m.reportSkipped(cfg.Name, "", skipped)
	m.update(f.cfg, kept) // the feed as it is now: its Level may have changed during the fetch
}

// reportSkipped logs Sanitize's report on a list of the feed named name, one
// warning per kind (see Summarize), each line starting with origin; m.mu is
// held.
func (m *Manager) reportSkipped(name, origin string, skipped []Skipped) {
	refused, warnings := Summarize(skipped, 5)
	for _, line := range []string{refused, warnings} {
		if line != "" {
			m.event(name, slog.LevelWarn, "%s%s", origin, line)
		}
	}
}

// maxSanitizeTries is how many times sanitizeUnlocked sanitizes a list
// without the lock before it holds the lock for one last time: only a
// protection that changes again during every try (a flood of learned
// addresses) gets that far.
const maxSanitizeTries = 3

// sanitizeUnlocked runs Sanitize over a fetched list against what is
// protected now, with m.mu released: 250,000 entries take about 90 ms,
// and holding the lock that long would stall States (pfwd's status), the
// other feeds and SetFeeds. It takes the lock again before returning, and
// ok is false when the answer became moot meanwhile (see moot). The list
// is always sanitized against the protection in force when it is applied:
// when the whitelist, the host's addresses or the servers pfwd needs
// changed while it ran (protectGen), it runs again, the last try under the
// lock. m.mu is held on entry and on return.
func (m *Manager) sanitizeUnlocked(ctx context.Context, f *feed, gen uint64, entries []netip.Prefix) (kept []netip.Prefix, skipped []Skipped, ok bool) {
	for try := 1; try < maxSanitizeTries; try++ {
		protect, protectGen := m.protection(), m.protectGen
		m.mu.Unlock()
		kept, skipped = m.sanitize(entries, protect)
		m.mu.Lock()
		if m.moot(ctx, f, gen) {
			return nil, nil, false
		}
		if m.protectGen == protectGen {
			return kept, skipped, true
		}
	}
	kept, skipped = m.sanitize(entries, m.protection())
	return kept, skipped, true
}

// protection is what Sanitize must not let a feed block; m.mu is held.
// The slices are never changed in place (SetProtected and SetHostAddrs
// replace them, needed builds new ones), so Sanitize may read them after
// the lock is released.
func (m *Manager) protection() Protected {
	p := m.needed()
	p.Whitelist, p.Host = m.protect, m.host
	return p
}

// distrustEmpty says why an empty list of the given format should not
// replace f's entries at once, or "". A list that suddenly empties itself is
// more often a provider's or a writer's accident than news: ShrinkThreshold
// entries or more going at once is one sign; a change of format is the
// other, since a body cut before its first address is only comments (or
// nothing), which reads as an empty list of another format: a Feodo list
// caught while a tool rewrites its file:// copy is empty for a moment.
func distrustEmpty(f *feed, format string) string {
	switch {
	case len(f.entries) >= ShrinkThreshold:
		return fmt.Sprintf("rejected an empty list in place of %s", entryCount(len(f.entries)))
	case len(f.entries) > 0 && f.format != "" && format != f.format:
		return fmt.Sprintf("rejected an empty %s list in place of a %s list of %s", format, f.format, entryCount(len(f.entries)))
	}
	return ""
}

func (m *Manager) succeed(f *feed, now time.Time) {
	f.blockedBy = blockedWay{}
	f.state.LastSuccess = now
	f.state.LastError = ""
	f.state.Failures = 0
	f.state.NextFetch = now.Add(jitter(f.cfg.Interval))
}

func (m *Manager) fail(f *feed, now time.Time, reason string) {
	f.state.Failures++
	f.state.LastError = reason
	delay := jitter(backoff(f.cfg.Interval, f.state.Failures))
	f.state.NextFetch = now.Add(delay)
	m.event(f.cfg.Name, slog.LevelWarn, "fetch failed (%d in a row): %s; keeping %s, next try in %s",
		f.state.Failures, reason, entryCount(len(f.entries)), delay.Round(time.Millisecond))
}

// backoff is the delay before retry number failures (1 = first retry): it
// starts at 30 s (less for intervals under 2 min, so short test intervals
// retry quickly), doubles each time, and never exceeds the interval.
func backoff(interval time.Duration, failures int) time.Duration {
	d := min(maxFirstBackoff, interval/4)
	for i := 1; i < failures && d < interval; i++ {
		d *= 2
	}
	return min(d, interval)
}

// jitter spreads d by ±10% so that many clients (or many feeds of one
// provider) do not fetch in lockstep.
func jitter(d time.Duration) time.Duration {
	spread := int64(d) / 10
	if spread <= 0 {
		return d
	}
	return d + time.Duration(rand.Int64N(2*spread+1)-spread)
}

// diffCount counts entries of next missing from prev (added) and of prev
// missing from next (removed); both are sorted by comparePrefix.
func diffCount(prev, next []netip.Prefix) (added, removed int) {
	i, j := 0, 0
	for i < len(prev) && j < len(next) {
		switch c := comparePrefix(prev[i], next[j]); {
		case c < 0:
			removed++
			i++
		case c > 0:
			added++
			j++
		default:
			i++
			j++
		}
	}
	return added + len(next) - j, removed + len(prev) - i
}

// entryCount says "1 entry" or "n entries".
func entryCount(n int) string {
	if n == 1 {
		return "1 entry"
	}
	return fmt.Sprintf("%d entries", n)
}

// shownURL is displayURL for a URL string.
func shownURL(raw string) string {
	u, err := url.Parse(raw)
	if err != nil {
		return "(invalid URL)"
	}
	return displayURL(u)
}

// event queues a log line; m.mu is held.
func (m *Manager) event(name string, level slog.Level, format string, args ...any) {
	if m.onEvent == nil {
		return
	}
	ev := Event{Feed: name, Level: level, Msg: fmt.Sprintf(format, args...)}
	m.callbacks.push(func() { m.onEvent(ev) })
}

// update queues an OnUpdate with a copy of entries (nil stays nil); m.mu is
// held.
func (m *Manager) update(cfg Feed, entries []netip.Prefix) {
	if m.onUpdate == nil {
		return
	}
	entries = slices.Clone(entries)
	m.callbacks.push(func() { m.onUpdate(cfg, entries) })
}

// callbackQueue hands callbacks from the feed goroutines and SetFeeds to Run,
// so they run in order, one at a time, outside the Manager's lock.
type callbackQueue struct {
	mu    sync.Mutex
	items []func()
	ready chan struct{} // capacity 1: "items is not empty"
}

func (q *callbackQueue) push(call func()) {
	q.mu.Lock()
	q.items = append(q.items, call)
	q.mu.Unlock()
	select {
	case q.ready <- struct{}{}:
	default:
	}
}

func (q *callbackQueue) take() []func() {
	q.mu.Lock()
	defer q.mu.Unlock()
	items := q.items
	q.items = nil
	return items
}
