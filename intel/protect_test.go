package intel

import (
	"fmt"
	"log/slog"
	"maps"
	"net/netip"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/go-cmp/cmp/cmpopts"
)

func addrs(ss ...string) []netip.Addr {
	var out []netip.Addr
	for _, s := range ss {
		out = append(out, netip.MustParseAddr(s))
	}
	return out
}

// logged returns the messages of rec's Info and Warn events of feed, in
// order.
func (r *recorder) logged(feed string) []string {
	return r.messages(feed, func(l slog.Level) bool { return l >= slog.LevelInfo })
}

// forgetUpdates drops the updates recorded so far.
func (r *recorder) forgetUpdates() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.updates = nil
}

// When protection shrinks (a whitelisted prefix or a host address goes, a
// server is forgotten), the entries of the lists in force that were
// refused only for it come back at once through OnUpdate, seeded or
// fetched, refused when the list came or dropped later. Before, they stayed
// out until the feed's content changed: the Manager kept only the filtered
// list and the validators, so the next fetch was a 304 confirming it, and
// `fwctl whitelist remove` left the address unblocked for a day.
func TestManagerProtectionShrinkRestores(t *testing.T) {
	t.Parallel()
	type feedWant struct {
		update []netip.Prefix // the one update; nil: none
		logged []string       // Info and Warn events
	}
	type step struct {
		change func(*Manager)
		// configure: SetFeeds names the feeds after change (the seeds
		// waited for it until then).
		configure bool
		want      map[string]feedWant // feeds left out: no update, nothing logged
	}
	unprotect := func(m *Manager) { m.SetProtected(nil) }
	tests := []struct {
		name      string
		host      []netip.Addr
		whitelist []netip.Prefix
		seeds     map[string][]netip.Prefix
		// pending: the seeds are given before SetFeeds, which a step does.
		pending bool
		steps   []step
	}{
		{
			name:      "whitelisted when seeded, then removed",
			whitelist: prefixes("10.214.0.3/32"),
			seeds:     map[string][]netip.Prefix{"A": prefixes("10.214.0.3/32", "10.214.0.99/32")},
			steps: []step{{change: unprotect, want: map[string]feedWant{"A": {
				update: prefixes("10.214.0.3/32", "10.214.0.99/32"),
				logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.3/32 (overlaps whitelisted 10.214.0.3/32)"},
			}}}},
		},
		{
			name:  "whitelist grows, then shrinks",
			seeds: map[string][]netip.Prefix{"A": prefixes("10.214.0.3/32", "10.214.0.99/32")},
			steps: []step{
				{change: func(m *Manager) { m.SetProtected(prefixes("10.214.0.3/32")) }, want: map[string]feedWant{"A": {
					update: prefixes("10.214.0.99/32"),
					logged: []string{"dropped 1 entry in force: 10.214.0.3/32 (overlaps whitelisted 10.214.0.3/32)"},
				}}},
				{change: unprotect, want: map[string]feedWant{"A": {
					update: prefixes("10.214.0.3/32", "10.214.0.99/32"),
					logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.3/32 (overlaps whitelisted 10.214.0.3/32)"},
				}}},
			},
		},
		{
			// A prefix leaves while another comes: one update drops and
			// restores.
			name:      "whitelist replaced",
			whitelist: prefixes("10.214.0.0/24"),
			seeds:     map[string][]netip.Prefix{"A": prefixes("10.214.0.3/32", "10.214.0.99/32", "198.51.100.7/32")},
			steps: []step{{change: func(m *Manager) { m.SetProtected(prefixes("198.51.100.0/24", "10.214.0.3/32")) }, want: map[string]feedWant{"A": {
				update: prefixes("10.214.0.99/32"),
				logged: []string{
					"dropped 1 entry in force: 198.51.100.7/32 (overlaps whitelisted 198.51.100.0/24)",
					"restored 1 entry refused for a protection now gone: 10.214.0.99/32 (overlaps whitelisted 10.214.0.0/24)",
				},
			}}}},
		},
		{
			name:  "a host address removed",
			host:  addrs("10.214.0.1", "2001:db8:14::1"),
			seeds: map[string][]netip.Prefix{"A": prefixes("10.214.0.0/24", "2001:db8:14::/48", "198.51.100.7/32")},
			steps: []step{
				{change: func(m *Manager) { m.SetHostAddrs(addrs("2001:db8:14::1")) }, want: map[string]feedWant{"A": {
					update: prefixes("10.214.0.0/24", "198.51.100.7/32"),
					logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.0/24 (covers this host's address 10.214.0.1)"},
				}}},
				// Moved, not removed: the entry covers the new one.
				{change: func(m *Manager) { m.SetHostAddrs(addrs("10.214.0.2")) }, want: map[string]feedWant{"A": {
					update: prefixes("198.51.100.7/32", "2001:db8:14::/48"),
					logged: []string{
						"dropped 1 entry in force: 10.214.0.0/24 (covers this host's address 10.214.0.2)",
						"restored 1 entry refused for a protection now gone: 2001:db8:14::/48 (covers this host's address 2001:db8:14::1)",
					},
				}}},
			},
		},
		{
			// 10.214.0.3 is refused as the host's first, the whitelist's
			// second: it comes back only when both are gone.
			name:      "refused for two protections",
			host:      addrs("10.214.0.3"),
			whitelist: prefixes("10.214.0.0/24"),
			seeds:     map[string][]netip.Prefix{"A": prefixes("10.214.0.3/32", "198.51.100.7/32")},
			steps: []step{
				{change: func(m *Manager) { m.SetHostAddrs(nil) }},
				{change: unprotect, want: map[string]feedWant{"A": {
					update: prefixes("10.214.0.3/32", "198.51.100.7/32"),
					logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.3/32 (overlaps whitelisted 10.214.0.0/24)"},
				}}},
			},
		},
		{
			// Each of these but 198.51.100.0/24 is refused for a protection
			// Sanitize checks first, but would be refused without it too.
			name:      "entries refused for reasons protection does not change",
			host:      addrs("127.0.0.1", "0.0.0.0", "198.51.100.1"),
			whitelist: prefixes("224.0.0.0/4", "::/0", "0.0.0.0/0", "198.0.0.0/7"),
			seeds: map[string][]netip.Prefix{"A": append(prefixes(
				"127.0.0.0/8", "::/0", "0.0.0.0/0", "198.0.0.0/7", "224.0.0.251/32", "0.0.0.0/32", "2002::/16", "198.51.100.0/24"),
				netip.Prefix{})},
			// Only the entry protection alone refused comes back.
			steps: []step{{change: func(m *Manager) { m.SetProtected(nil); m.SetHostAddrs(nil) }, want: map[string]feedWant{"A": {
				update: prefixes("198.51.100.0/24"),
				logged: []string{"restored 1 entry refused for a protection now gone: 198.51.100.0/24 (covers this host's address 198.51.100.1)"},
			}}}},
		},
		{
			name:      "two feeds",
			whitelist: prefixes("10.214.0.3/32", "203.0.113.0/24"),
			seeds: map[string][]netip.Prefix{
				"A": prefixes("10.214.0.3/32", "10.214.0.99/32"),
				"B": prefixes("10.214.0.0/24", "203.0.113.9/32", "192.0.2.1/32"),
			},
			steps: []step{{change: func(m *Manager) { m.SetProtected(prefixes("203.0.113.0/24")) }, want: map[string]feedWant{
				"A": {
					update: prefixes("10.214.0.3/32", "10.214.0.99/32"),
					logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.3/32 (overlaps whitelisted 10.214.0.3/32)"},
				},
				"B": {
					update: prefixes("10.214.0.0/24", "192.0.2.1/32"),
					logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.0/24 (overlaps whitelisted 10.214.0.3/32)"},
				},
			}}},
		},
		{
			// The seed waits for SetFeeds; the whitelist loses the prefix
			// meanwhile: the feed starts with the entry, through OnUpdate
			// since the caller installed what Seed returned.
			name:      "a seed waiting for SetFeeds",
			whitelist: prefixes("10.214.0.3/32"),
			seeds:     map[string][]netip.Prefix{"A": prefixes("10.214.0.3/32", "10.214.0.99/32")},
			pending:   true,
			steps: []step{{change: unprotect, configure: true, want: map[string]feedWant{"A": {
				update: prefixes("10.214.0.3/32", "10.214.0.99/32"),
				logged: []string{"restored 1 entry refused for a protection now gone: 10.214.0.3/32 (overlaps whitelisted 10.214.0.3/32)"},
			}}}},
		},
		{
			// The Manager remembers maxNeeds servers: the oldest one goes
			// when a new one comes, and so does what it alone refused.
			name:  "a feed server forgotten",
			seeds: map[string][]netip.Prefix{"A": prefixes("198.18.0.0/24", "203.0.113.9/32")},
			steps: []step{
				{change: func(m *Manager) { learnLocked(m, "X", time.Now(), addrs("198.18.0.1")...) }, want: map[string]feedWant{"A": {
					update: prefixes("203.0.113.9/32"),
					logged: []string{`dropped 1 entry in force: 198.18.0.0/24 (covers the feed server 198.18.0.1 of feed "X")`},
				}}},
				{change: func(m *Manager) { learnLocked(m, "X", time.Now().Add(time.Minute), manyAddrs(maxNeeds)...) }, want: map[string]feedWant{"A": {
					update: prefixes("198.18.0.0/24", "203.0.113.9/32"),
					logged: []string{`restored 1 entry refused for a protection now gone: 198.18.0.0/24 (covers the feed server 198.18.0.1 of feed "X")`},
				}}},
			},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			m := NewManager(rec.options())
			m.SetProtected(tt.whitelist)
			m.SetHostAddrs(tt.host)
			names := slices.Sorted(maps.Keys(tt.seeds))
			var feeds []Feed
			for _, name := range names {
				feeds = append(feeds, Feed{Name: name, URL: unfetchable(t), Interval: time.Hour})
			}
			configure := func() {
				if err := m.SetFeeds(feeds); err != nil {
					t.Fatal(err)
				}
			}
			if !tt.pending {
				configure()
			}
			inForce := make(map[string][]netip.Prefix)
			for _, name := range names {
				inForce[name] = m.Seed(name, tt.seeds[name])
			}
			deliver(m)
			rec.forget() // the seeds' reports
			for i, st := range tt.steps {
				st.change(m)
				if st.configure {
					configure()
				}
				deliver(m)
				for _, name := range names {
					want := st.want[name]
					if want.update != nil {
						inForce[name] = want.update
					}
					checkChange(t, fmt.Sprintf("step %d: feed %s", i+1, name), &rec, m, name, inForce[name], want.update, want.logged)
				}
				rec.forget()
				rec.forgetUpdates()
			}
		})
	}
}

// checkChange checks that feed name has the entries in force inForce, that
// update was its one OnUpdate (none when nil), and what it logged.
func checkChange(t *testing.T, what string, rec *recorder, m *Manager, name string, inForce, update []netip.Prefix, logged []string) {
	t.Helper()
	updates := rec.updatesOf(name)
	switch {
	case update == nil && len(updates) != 0:
		t.Errorf("%s: updates %v, want none", what, updates)
	case update != nil && len(updates) != 1:
		t.Errorf("%s: %d updates, want 1: %v", what, len(updates), updates)
	case update != nil:
		if diff := cmp.Diff(update, updates[0].entries, cmpPrefix); diff != "" {
			t.Errorf("%s: update (-want +got):\n%s", what, diff)
		}
	}
	if got, _ := m.Entries(name); !cmp.Equal(got, inForce, cmpPrefix, cmpopts.EquateEmpty()) {
		t.Errorf("%s: entries in force %v, want %v", what, got, inForce)
	}
	if s := state(m, name); s.Entries != len(inForce) {
		t.Errorf("%s: state counts %d entries, want %d", what, s.Entries, len(inForce))
	}
	if diff := cmp.Diff(logged, rec.logged(name)); diff != "" {
		t.Errorf("%s: logged (-want +got):\n%s", what, diff)
	}
}

func learnLocked(m *Manager, feed string, now time.Time, as ...netip.Addr) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.learn(feed, as, now)
}

// manyAddrs returns n addresses in 198.19.0.0/16, which no test entry
// covers.
func manyAddrs(n int) []netip.Addr {
	out := make([]netip.Addr, n)
	for i := range out {
		out[i] = netip.AddrFrom4([4]byte{198, 19, byte(i >> 8), byte(i)})
	}
	return out
}

// The audit's case end to end: a fetched list loses a whitelisted address;
// once the whitelist lets it go, it is blocked again at once, and the
// following fetches, 304s confirming the list, keep it blocked.
func TestManagerUnwhitelistedEntryBlockedDespiteNotModified(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, "10.214.0.3\n10.214.0.99\n")
	var rec recorder
	m := NewManager(rec.options())
	m.SetProtected(prefixes("10.214.0.3/32"))
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })
	if got := rec.updatesOf("A")[0].entries; !cmp.Equal(got, prefixes("10.214.0.99/32"), cmpPrefix) {
		t.Fatalf("first update %v, want the whitelisted entry refused", got)
	}
	requests := fs.count()
	m.SetProtected(nil)
	want := prefixes("10.214.0.3/32", "10.214.0.99/32")
	waitFor(t, 5*time.Second, "the restoring update", func() bool { return len(rec.updatesOf("A")) == 2 })
	if got := rec.updatesOf("A")[1].entries; !cmp.Equal(got, want, cmpPrefix) {
		t.Errorf("update after the whitelist shrank: %v, want %v", got, want)
	}
	if _, ok := rec.event("A", slog.LevelInfo, "restored 1 entry refused for a protection now gone: 10.214.0.3/32 (overlaps whitelisted 10.214.0.3/32)"); !ok {
		t.Errorf("no restore event:%s", rec.dump())
	}
	waitFor(t, 5*time.Second, "two more fetches", func() bool { return fs.count() >= requests+2 })
	if _, ok := rec.event("A", slog.LevelDebug, "not modified: 2 entries"); !ok {
		t.Errorf("no 304 keeping both entries:%s", rec.dump())
	}
	if n := len(rec.updatesOf("A")); n != 2 {
		t.Errorf("%d updates, want 2: a 304 changes nothing", n)
	}
	if got, _ := m.Entries("A"); !cmp.Equal(got, want, cmpPrefix) {
		t.Errorf("entries in force after 304s: %v, want %v", got, want)
	}
}

// A feed remembers at most maxWithheld entries refused for protection
// alone. Those beyond come back with the next fetch, which the shrink
// makes unconditional: a 304 would confirm the list without them.
func TestManagerWithheldIsBounded(t *testing.T) {
	t.Parallel()
	var body strings.Builder
	for i := range maxWithheld + 10 {
		fmt.Fprintf(&body, "10.214.%d.%d\n", i>>8, i&0xff)
	}
	body.WriteString("198.51.100.7\n")
	fs := newFeedServer(t, body.String())
	var rec recorder
	m := NewManager(rec.options())
	m.SetProtected(prefixes("10.214.0.0/16"))
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })
	m.mu.Lock()
	held, cut := len(m.feeds["A"].withheld.entries), m.feeds["A"].withheld.cut
	m.mu.Unlock()
	if held != maxWithheld || !cut {
		t.Fatalf("withheld %d entries (cut %v), want %d and cut", held, cut, maxWithheld)
	}
	m.SetProtected(nil)
	waitFor(t, 5*time.Second, "the restoring update", func() bool { return len(rec.updatesOf("A")) >= 2 })
	if n := len(rec.updatesOf("A")[1].entries); n != maxWithheld+1 {
		t.Errorf("restored update holds %d entries, want %d", n, maxWithheld+1)
	}
	waitFor(t, 5*time.Second, "the full list fetched again", func() bool {
		u := rec.updatesOf("A")
		return len(u) >= 3 && len(u[len(u)-1].entries) == maxWithheld+11
	})
	if _, ok := rec.event("A", slog.LevelInfo, fmt.Sprintf("more than %d entries were refused for protection alone", maxWithheld)); !ok {
		t.Errorf("no event about the entries not remembered:%s", rec.dump())
	}
}

// refusedForProtection tells the entries protection alone refused from
// those refused whatever is protected.
func TestRefusedForProtection(t *testing.T) {
	t.Parallel()
	protect := Protected{
		Whitelist:   prefixes("192.0.2.0/24", "224.0.0.0/4", "2002::/16"),
		Host:        addrs("10.1.0.1", "127.0.0.1", "::1"),
		FeedServers: []FeedServer{{Addr: netip.MustParseAddr("198.51.100.9"), Feed: "F"}},
		Resolvers:   addrs("203.0.113.53"),
	}
	entries := append(prefixes(
		"192.0.2.7/32", "10.1.0.0/16", "198.51.100.0/24", "203.0.113.53/32", // protection alone
		"127.0.0.0/8", "::1/128", "0.0.0.0/0", "0.0.0.0/1", "224.0.0.1/32", "64:ff9b::/96", "2002::/16", "ff02::1/128", // always
		"198.18.0.1/32", // kept
	), netip.Prefix{})
	_, skipped := Sanitize(entries, protect)
	var got []string
	for _, s := range skipped {
		if refusedForProtection(s) {
			got = append(got, s.Prefix.String())
		}
	}
	want := []string{"192.0.2.7/32", "10.1.0.0/16", "198.51.100.0/24", "203.0.113.53/32"}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("refused for protection alone (-want +got):\n%s", diff)
	}
}

// A feed whose withheld entries were cut clears its validators at the
// first shrink of protection after a fetch, and says so once: host
// addresses come and go (IPv6 temporary ones), and each shrink must not
// log again, nor matter, until the full fetch it asked for.
func TestWithheldCutClearsValidatorsOncePerFetch(t *testing.T) {
	t.Parallel()
	var rec recorder
	m := NewManager(rec.options())
	// A list that is not there: its fetch fails at once and touches
	// neither the validators nor the withheld entries.
	missing := "file://" + filepath.Join(t.TempDir(), "missing.txt")
	if err := m.SetFeeds([]Feed{{Name: "A", URL: missing, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	m.mu.Lock()
	f := m.feeds["A"]
	f.withheld.cut, f.validators = true, Validators{ETag: `"v1"`}
	for range 3 {
		m.reprotect(f, nil, newRefusal(Protected{}))
	}
	cleared := f.validators == Validators{}
	m.mu.Unlock()
	if !cleared {
		t.Error("the validators were kept: the next fetch would be a 304")
	}
	text := fmt.Sprintf("more than %d entries were refused for protection alone", maxWithheld)
	if _, ok := rec.event("A", slog.LevelInfo, text); !ok {
		t.Fatalf("no event:%s", rec.dump())
	}
	time.Sleep(50 * time.Millisecond) // the queue delivers in order; later ones would be here
	rec.mu.Lock()
	n := 0
	for _, e := range rec.events {
		if strings.Contains(e.Msg, text) {
			n++
		}
	}
	rec.mu.Unlock()
	if n != 1 {
		t.Errorf("%d events for three shrinks before a fetch, want 1:%s", n, rec.dump())
	}
}
