package intel

import (
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// deliver runs the callbacks m has queued, as Run would, on the test's
// goroutine: the tests below need no fetch, and see every callback.
func deliver(m *Manager) {
	for _, call := range m.callbacks.take() {
		call()
	}
}

// warnings returns the messages of rec's Warn events of feed.
func (r *recorder) warnings(feed string) []string {
	return r.messages(feed, func(l slog.Level) bool { return l == slog.LevelWarn })
}

// messages returns the messages of rec's events of feed whose level keep
// accepts, in order.
func (r *recorder) messages(feed string, keep func(slog.Level) bool) []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []string
	for _, e := range r.events {
		if e.Feed == feed && keep(e.Level) {
			out = append(out, e.Msg)
		}
	}
	return out
}

// forget drops the events recorded so far.
func (r *recorder) forget() {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.events = nil
}

// unfetchable is a feed URL whose fetch fails: nothing but the tests' calls
// changes the feed's entries.
func unfetchable(t *testing.T) string {
	return "file://" + filepath.Join(t.TempDir(), "missing.txt")
}

// A seed from the database goes through Sanitize like a fetched list: a
// database row is no more trusted than a feed's line. Before, Seed only
// dropped entries covering a feed server or resolver, so ::/0 or an entry
// covering the host's own network went into the kernel at start and stayed
// until the feed fetched again (never, offline).
func TestManagerSeedSanitizes(t *testing.T) {
	t.Parallel()
	host := []netip.Addr{netip.MustParseAddr("10.14.0.1"), netip.MustParseAddr("2001:db8:14::1")}
	whitelist := prefixes("203.0.113.10/32")
	tests := []struct {
		name     string
		seed     []netip.Prefix
		want     []netip.Prefix // in force, and returned by Seed
		warnings []string       // Warn events of the feed, in order
	}{
		{
			name:     "all traffic",
			seed:     prefixes("::/0", "0.0.0.0/0", "198.51.100.7/32"),
			want:     prefixes("198.51.100.7/32"),
			warnings: []string{"from the database: skipped 2 entries: ::/0 (would block all IPv6 traffic), 0.0.0.0/0 (would block all IPv4 traffic)"},
		},
		{
			name:     "prefixes shorter than a fetch allows",
			seed:     prefixes("198.0.0.0/7", "2000::/15", "198.51.100.0/24"),
			want:     prefixes("198.51.100.0/24"),
			warnings: []string{"from the database: skipped 2 entries: 198.0.0.0/7 (IPv4 prefix shorter than /8), 2000::/15 (IPv6 prefix shorter than /16)"},
		},
		{
			// The /32 inside the refused /24 stays: nothing valid is lost.
			name: "the host's own addresses",
			seed: prefixes("10.14.0.0/24", "10.14.0.77/32", "2001:db8:14::/48"),
			want: prefixes("10.14.0.77/32"),
			warnings: []string{
				"from the database: skipped 2 entries: 10.14.0.0/24 (covers this host's address 10.14.0.1), 2001:db8:14::/48 (covers this host's address 2001:db8:14::1)",
				"from the database: kept 1 entry overlapping local ranges: 10.14.0.77/32 (overlaps private range 10.0.0.0/8)",
			},
		},
		{
			name:     "the whitelist",
			seed:     prefixes("203.0.113.0/24", "192.0.2.1/32"),
			want:     prefixes("192.0.2.1/32"),
			warnings: []string{"from the database: skipped 1 entry: 203.0.113.0/24 (overlaps whitelisted 203.0.113.10/32)"},
		},
		{
			name:     "ranges every host needs, and an invalid prefix",
			seed:     []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8"), netip.MustParsePrefix("ff02::/16"), {}, netip.MustParsePrefix("192.0.2.1/32")},
			want:     prefixes("192.0.2.1/32"),
			warnings: []string{"from the database: skipped 3 entries: 127.0.0.0/8 (overlaps loopback 127.0.0.0/8), ff02::/16 (overlaps IPv6 multicast ff00::/8), invalid Prefix (invalid prefix)"},
		},
		{
			name: "valid entries, all kept",
			seed: prefixes("2001:db8:bad::/48", "198.51.100.9/32", "198.51.100.0/24", "192.0.2.1/32", "192.0.2.1/32"),
			want: prefixes("192.0.2.1/32", "198.51.100.0/24", "2001:db8:bad::/48"),
		},
	}
	for _, tt := range tests {
		// A seed is kept for a feed SetFeeds has not named yet: both ways
		// must check it.
		for _, configuredFirst := range []bool{false, true} {
			name := tt.name + ", seeded before SetFeeds"
			if configuredFirst {
				name = tt.name + ", seeded after SetFeeds"
			}
			t.Run(name, func(t *testing.T) {
				t.Parallel()
				var rec recorder
				m := NewManager(rec.options())
				m.SetProtected(whitelist)
				m.SetHostAddrs(host)
				feeds := []Feed{{Name: "Dead", URL: unfetchable(t), Interval: time.Hour}}
				if configuredFirst {
					if err := m.SetFeeds(feeds); err != nil {
						t.Fatal(err)
					}
				}
				got := m.Seed("Dead", tt.seed)
				if !configuredFirst {
					if err := m.SetFeeds(feeds); err != nil {
						t.Fatal(err)
					}
				}
				deliver(m)
				if diff := cmp.Diff(tt.want, got, cmpPrefix); diff != "" {
					t.Errorf("Seed returned (-want +got):\n%s", diff)
				}
				if inForce, _ := m.Entries("Dead"); !cmp.Equal(inForce, tt.want, cmpPrefix) {
					t.Errorf("entries in force %v, want %v", inForce, tt.want)
				}
				if s := state(m, "Dead"); s.Entries != len(tt.want) {
					t.Errorf("state counts %d entries, want %d", s.Entries, len(tt.want))
				}
				// The caller installs what Seed returned: no update.
				if u := rec.updatesOf("Dead"); len(u) != 0 {
					t.Errorf("%d updates, want none: %v", len(u), u)
				}
				if diff := cmp.Diff(tt.warnings, rec.warnings("Dead")); diff != "" {
					t.Errorf("warnings (-want +got):\n%s", diff)
				}
			})
		}
	}
}

// A seed waiting for SetFeeds was sanitized against the protection of its
// Seed call: when that protection grows before SetFeeds names the feed,
// the entries it now refuses are dropped as the feed is added, through
// OnUpdate, since the caller installed the seed as Seed returned it.
func TestManagerSeedCheckedAgainWhenInstalledLater(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		protect func(*Manager)
		want    []netip.Prefix // the update; nil: no update
		warning string
	}{
		{
			name:    "a new host address",
			protect: func(m *Manager) { m.SetHostAddrs([]netip.Addr{netip.MustParseAddr("10.14.0.1")}) },
			want:    prefixes("198.51.100.7/32"),
			warning: "dropped 1 entry in force: 10.14.0.0/24 (covers this host's address 10.14.0.1)",
		},
		{
			name:    "a new whitelisted prefix",
			protect: func(m *Manager) { m.SetProtected(prefixes("198.51.100.0/24")) },
			want:    prefixes("10.14.0.0/24"),
			warning: "dropped 1 entry in force: 198.51.100.7/32 (overlaps whitelisted 198.51.100.0/24)",
		},
		{
			name:    "a change that refuses nothing",
			protect: func(m *Manager) { m.SetHostAddrs([]netip.Addr{netip.MustParseAddr("192.0.2.1")}) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			m := NewManager(rec.options())
			seed := prefixes("10.14.0.0/24", "198.51.100.7/32")
			if got := m.Seed("Dead", seed); !cmp.Equal(got, seed, cmpPrefix) {
				t.Fatalf("Seed returned %v, want %v", got, seed)
			}
			deliver(m)
			rec.forget() // the seed's local-range warning
			tt.protect(m)
			if err := m.SetFeeds([]Feed{{Name: "Dead", URL: unfetchable(t), Interval: time.Hour}}); err != nil {
				t.Fatal(err)
			}
			deliver(m)
			checkDrop(t, &rec, m, "Dead", seed, tt.want, tt.warning)
		})
	}
}

// checkDrop checks that feed name, seeded with seed, had its entries in
// force replaced by want through one update and the warning, or, with
// want nil, kept its seed without an update or a warning.
func checkDrop(t *testing.T, rec *recorder, m *Manager, name string, seed, want []netip.Prefix, warning string) {
	t.Helper()
	updates := rec.updatesOf(name)
	if want == nil {
		if len(updates) != 0 || len(rec.warnings(name)) != 0 {
			t.Errorf("feed %s: updates %v, warnings %q; want neither", name, updates, rec.warnings(name))
		}
		if got, _ := m.Entries(name); !cmp.Equal(got, seed, cmpPrefix) {
			t.Errorf("feed %s: entries in force %v, want the seed %v", name, got, seed)
		}
		return
	}
	if len(updates) != 1 {
		t.Fatalf("feed %s: %d updates, want 1:%s", name, len(updates), rec.dump())
	}
	if diff := cmp.Diff(want, updates[0].entries, cmpPrefix); diff != "" {
		t.Errorf("feed %s: update (-want +got):\n%s", name, diff)
	}
	if got, _ := m.Entries(name); !cmp.Equal(got, want, cmpPrefix) {
		t.Errorf("feed %s: entries in force %v, want %v", name, got, want)
	}
	if s := state(m, name); s.Entries != len(want) {
		t.Errorf("feed %s: state counts %d entries, want %d", name, s.Entries, len(want))
	}
	if diff := cmp.Diff([]string{warning}, rec.warnings(name)); diff != "" {
		t.Errorf("feed %s: warnings (-want +got):\n%s", name, diff)
	}
}

// When the host's addresses or the whitelist grow, the entries in force
// that the new protection refuses are dropped at once, from every feed,
// through OnUpdate and a warning giving Sanitize's reason. Before, they
// stayed until the feed's next accepted fetch, up to its interval (an hour
// by default): a new address on a blocked network stayed cut off that long.
func TestManagerProtectionChangeDropsEntriesInForce(t *testing.T) {
	t.Parallel()
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	seedA := prefixes("10.14.0.0/24", "192.0.2.0/24", "2001:db8:14::/48")
	seedB := prefixes("10.14.0.0/16", "198.51.100.7/32")
	tests := []struct {
		name           string
		change         func(*Manager)
		wantA, wantB   []netip.Prefix // updates; nil: none
		warnA, warnB   string
		startHost      []netip.Addr
		startWhitelist []netip.Prefix
	}{
		{
			name:   "a new host address",
			change: func(m *Manager) { m.SetHostAddrs(addrs("10.14.0.1")) },
			wantA:  prefixes("192.0.2.0/24", "2001:db8:14::/48"),
			warnA:  "dropped 1 entry in force: 10.14.0.0/24 (covers this host's address 10.14.0.1)",
			wantB:  prefixes("198.51.100.7/32"),
			warnB:  "dropped 1 entry in force: 10.14.0.0/16 (covers this host's address 10.14.0.1)",
		},
		{
			name:      "an IPv6 address added beside one that was there",
			startHost: addrs("172.16.9.1"),
			change:    func(m *Manager) { m.SetHostAddrs(addrs("172.16.9.1", "2001:db8:14::9")) },
			wantA:     prefixes("10.14.0.0/24", "192.0.2.0/24"),
			warnA:     "dropped 1 entry in force: 2001:db8:14::/48 (covers this host's address 2001:db8:14::9)",
		},
		{
			name:   "a new whitelisted prefix",
			change: func(m *Manager) { m.SetProtected(prefixes("192.0.2.128/25", "198.51.100.0/24")) },
			wantA:  prefixes("10.14.0.0/24", "2001:db8:14::/48"),
			warnA:  "dropped 1 entry in force: 192.0.2.0/24 (overlaps whitelisted 192.0.2.128/25)",
			wantB:  prefixes("10.14.0.0/16"),
			warnB:  "dropped 1 entry in force: 198.51.100.7/32 (overlaps whitelisted 198.51.100.0/24)",
		},
		{
			name:      "addresses that no entry covers",
			startHost: addrs("10.99.0.1"),
			change:    func(m *Manager) { m.SetHostAddrs(addrs("10.99.0.1", "203.0.113.5")) },
		},
		{
			// The seeds had nothing refused for it: nothing comes back
			// (see TestManagerProtectionShrinkRestores).
			name:           "a whitelisted prefix removed",
			startWhitelist: prefixes("203.0.113.0/24"),
			change:         func(m *Manager) { m.SetProtected(nil) },
		},
		{
			name:      "the same addresses again",
			startHost: addrs("10.99.0.1"),
			change:    func(m *Manager) { m.SetHostAddrs(addrs("10.99.0.1")) },
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			m := NewManager(rec.options())
			m.SetHostAddrs(tt.startHost)
			m.SetProtected(tt.startWhitelist)
			if err := m.SetFeeds([]Feed{
				{Name: "A", URL: unfetchable(t), Interval: time.Hour},
				{Name: "B", URL: unfetchable(t), Interval: time.Hour},
			}); err != nil {
				t.Fatal(err)
			}
			for name, seed := range map[string][]netip.Prefix{"A": seedA, "B": seedB} {
				if got := m.Seed(name, seed); !cmp.Equal(got, seed, cmpPrefix) {
					t.Fatalf("Seed(%s) returned %v, want the seed %v:%s", name, got, seed, rec.dump())
				}
			}
			deliver(m)
			rec.forget() // the seeds' local-range warnings
			tt.change(m)
			deliver(m)
			checkDrop(t, &rec, m, "A", seedA, tt.wantA, tt.warnA)
			checkDrop(t, &rec, m, "B", seedB, tt.wantB, tt.warnB)
		})
	}
}
