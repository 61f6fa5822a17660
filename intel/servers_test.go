package intel

import (
	"io"
	"log/slog"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// resolvConf writes a resolv.conf for a test and returns the paths a Manager
// should read: it, and one that does not exist.
func resolvConf(t *testing.T, content string) []string {
	t.Helper()
	dir := t.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	if err := os.WriteFile(path, []byte(content), 0o644); err != nil {
		t.Fatal(err)
	}
	return []string{path, filepath.Join(dir, "missing.conf")}
}

func TestReadResolvers(t *testing.T) {
	tests := []struct {
		name, content string
		want          []netip.Addr
	}{
		{name: "empty"},
		{
			name: "nameservers among the rest",
			content: "# generated\nsearch example.com\nnameserver 192.0.2.53\n  nameserver\t2001:db8::53 # v6\n" +
				"nameserver fe80::1%eth0\noptions edns0\n",
			want: []netip.Addr{netip.MustParseAddr("192.0.2.53"), netip.MustParseAddr("2001:db8::53"), netip.MustParseAddr("fe80::1%eth0")},
		},
		{
			name:    "odd lines are skipped",
			content: "nameserver\nnameserver ns1.example\n#nameserver 192.0.2.1\n;nameserver 192.0.2.2\nnameservers 192.0.2.3\nnameserver 192.0.2.4\n\x00\xff",
			want:    []netip.Addr{netip.MustParseAddr("192.0.2.4")},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := readResolvers(resolvConf(t, tt.content))
			if !slices.Equal(got, tt.want) {
				t.Errorf("readResolvers = %v, want %v", got, tt.want)
			}
		})
	}
}

// TestManagerRefusesFeedServers: a feed may block neither its own server nor
// another feed's, nor a DNS resolver.
func TestManagerRefusesFeedServers(t *testing.T) {
	t.Parallel()
	b := listenOn(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("198.51.100.2\n"))
	}))
	a := listenOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("127.0.0.2\n198.51.100.1\n198.51.100.53\n127.0.0.1\n"))
	}))
	var rec recorder
	m := NewManager(rec.options())
	m.resolvConfs = resolvConf(t, "nameserver 198.51.100.53\n")
	feedB := Feed{Name: "B", URL: b.URL, Interval: time.Hour}
	if err := m.SetFeeds([]Feed{feedB}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	// B first, so that its server is known when A lists it.
	waitFor(t, 5*time.Second, "B's update", func() bool { return len(rec.updatesOf("B")) == 1 })
	if err := m.SetFeeds([]Feed{feedB, {Name: "A", URL: a.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A's update", func() bool { return len(rec.updatesOf("A")) == 1 })

	if diff := cmp.Diff(prefixes("198.51.100.1/32"), rec.updatesOf("A")[0].entries, cmpPrefix); diff != "" {
		t.Errorf("A's entries (-want +got):\n%s", diff)
	}
	want := `skipped 3 entries: 127.0.0.1/32 (covers the feed server 127.0.0.1 of feed "A"), 127.0.0.2/32 (covers the feed server 127.0.0.2 of feed "B"), 198.51.100.53/32 (covers the DNS resolver 198.51.100.53)`
	if _, ok := rec.event("A", slog.LevelWarn, want); !ok {
		t.Errorf("no event %q:%s", want, rec.dump())
	}
}

// TestManagerDropsEntriesInForce: entries accepted (here seeded) before the
// address they cover was known are dropped once it is, even when the feed's
// own fetch fails, which such an entry would make it do for ever.
//
// The test's servers are on loopback, which Seed itself refuses to block
// now: Sanitize is bypassed so that the seeds stand for entries accepted
// while the servers they cover were unknown (a real server is not on
// loopback, and passes Sanitize until learned).
func TestManagerDropsEntriesInForce(t *testing.T) {
	t.Parallel()
	unavailable := listenOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "down", http.StatusServiceUnavailable)
	}))
	missingFile := "file://" + filepath.Join(t.TempDir(), "missing.txt")
	tests := []struct {
		name   string
		url    string // of the seeded feed, "S"
		other  string // of a feed "O" beside it, if any
		resolv string
		seed   []netip.Prefix
		want   string
	}{
		{
			name:  "the address in another feed's URL",
			url:   missingFile,
			other: "http://127.0.0.4:9/list", // nothing listens there
			seed:  prefixes("127.0.0.4/32", "198.51.100.7/32"),
			want:  `dropped 1 entry in force: 127.0.0.4/32 (covers the feed server 127.0.0.4 of feed "O")`,
		},
		{
			name: "its own server, learned from a failed fetch",
			url:  strings.Replace(unavailable.URL, "127.0.0.1", "localhost", 1),
			seed: prefixes("127.0.0.1/32", "198.51.100.7/32"),
			want: `dropped 1 entry in force: 127.0.0.1/32 (covers the feed server 127.0.0.1 of feed "S")`,
		},
		{
			name:   "a resolver",
			url:    missingFile,
			resolv: "nameserver 198.51.100.53\n",
			seed:   prefixes("198.51.100.0/24", "203.0.113.7/32"),
			want:   `dropped 1 entry in force: 198.51.100.0/24 (covers the DNS resolver 198.51.100.53)`,
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var rec recorder
			m := NewManager(rec.options())
			m.resolvConfs = resolvConf(t, tt.resolv)
			m.sanitize = func(entries []netip.Prefix, _ Protected) ([]netip.Prefix, []Skipped) {
				return normalize(slices.Clone(entries)), nil
			}
			m.Seed("S", tt.seed)
			feeds := []Feed{{Name: "S", URL: tt.url, Interval: time.Hour}}
			if tt.other != "" {
				feeds = append(feeds, Feed{Name: "O", URL: tt.other, Interval: time.Hour})
			}
			if err := m.SetFeeds(feeds); err != nil {
				t.Fatal(err)
			}
			run(t, m)
			waitFor(t, 5*time.Second, "S's update", func() bool { return len(rec.updatesOf("S")) > 0 })
			if diff := cmp.Diff(tt.seed[1:], rec.updatesOf("S")[0].entries, cmpPrefix); diff != "" {
				t.Errorf("S's entries (-want +got):\n%s", diff)
			}
			if _, ok := rec.event("S", slog.LevelWarn, tt.want); !ok {
				t.Errorf("no event %q:%s", tt.want, rec.dump())
			}
			if got, _ := m.Entries("S"); len(got) != len(tt.seed)-1 {
				t.Errorf("Entries(S) = %v", got)
			}
		})
	}
}

// TestManagerRefusesRedirectToHost: the Manager hands SetHostAddrs to the
// redirect check.
func TestManagerRefusesRedirectToHost(t *testing.T) {
	t.Parallel()
	rt := &redirectTransport{from: "http://feed.example/list", to: "http://10.77.0.1:9999/x"}
	var rec recorder
	opts := rec.options()
	opts.Fetcher = &Fetcher{Client: &http.Client{Transport: rt}}
	m := NewManager(opts)
	m.SetHostAddrs([]netip.Addr{netip.MustParseAddr("10.77.0.1")})
	if err := m.SetFeeds([]Feed{{Name: "A", URL: rt.from, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	want := "refusing redirect to http://10.77.0.1:9999/x: 10.77.0.1 is this host's address"
	waitFor(t, 5*time.Second, "the failure", func() bool { _, ok := rec.event("A", slog.LevelWarn, want); return ok })
	if rt.wasAsked(rt.to) {
		t.Errorf("the redirect target was requested")
	}
}

// TestManagerForgetsOldestNeeds: the memory of needed addresses is bounded,
// and what goes is what was seen least recently.
func TestManagerForgetsOldestNeeds(t *testing.T) {
	m := NewManager(Options{})
	start := time.Now()
	m.mu.Lock()
	defer m.mu.Unlock()
	m.learn("", []netip.Addr{netip.MustParseAddr("192.0.2.53")}, start)
	for i := range maxNeeds {
		a := netip.AddrFrom4([4]byte{198, 18, byte(i >> 8), byte(i)})
		m.learn("A", []netip.Addr{a}, start.Add(time.Duration(i+1)*time.Second))
		if i == maxNeeds/2 { // the resolver is seen again: it stays
			m.learn("", []netip.Addr{netip.MustParseAddr("192.0.2.53")}, start.Add(time.Duration(i+1)*time.Second))
		}
	}
	if len(m.needs) != maxNeeds {
		t.Fatalf("%d needs, want %d", len(m.needs), maxNeeds)
	}
	if _, ok := m.needs[netip.MustParseAddr("198.18.0.0")]; ok {
		t.Errorf("the oldest address is still remembered")
	}
	if _, ok := m.needs[netip.MustParseAddr("192.0.2.53")]; !ok {
		t.Errorf("the resolver seen recently was forgotten")
	}
}

// mapTransport answers each URL with its body from a map, 404 otherwise,
// and dials nothing.
type mapTransport map[string]string

func (mt mapTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	body, ok := mt[req.URL.String()]
	status := http.StatusOK
	if !ok {
		status = http.StatusNotFound
	}
	return &http.Response{StatusCode: status, Header: http.Header{}, Request: req, Body: io.NopCloser(strings.NewReader(body))}, nil
}

// TestManagerForgetsServersOfFeedsGone: a server is protected while a feed
// in the config is fetched from it. Once the last such feed is removed, or
// moved to another host, another feed may block it, at once, without
// waiting for that feed's next fetch.
func TestManagerForgetsServersOfFeedsGone(t *testing.T) {
	const (
		oldURL   = "http://198.51.100.40/old.txt"
		otherURL = "http://198.51.100.40/other.txt" // the same server
		movedURL = "http://feeds.example/other.txt"
		newURL   = "http://feeds.example/new.txt"
	)
	var rec recorder
	opts := rec.options()
	opts.Fetcher = &Fetcher{Client: &http.Client{Transport: mapTransport{
		oldURL: "203.0.113.1\n", otherURL: "203.0.113.2\n", movedURL: "203.0.113.2\n",
		newURL: "198.51.100.40\n198.51.100.88\n",
	}}}
	m := NewManager(opts)
	m.resolvConfs = resolvConf(t, "")
	feedNew := Feed{Name: "New", URL: newURL, Interval: time.Hour}
	feedOther := Feed{Name: "Other", URL: otherURL, Interval: time.Hour}
	if err := m.SetFeeds([]Feed{{Name: "Old", URL: oldURL, Interval: time.Hour}, feedOther, feedNew}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "New's update", func() bool { return len(rec.updatesOf("New")) == 1 })
	entriesOfNew := func() []netip.Prefix { got, _ := m.Entries("New"); return got }
	if diff := cmp.Diff(prefixes("198.51.100.88/32"), entriesOfNew(), cmpPrefix); diff != "" {
		t.Fatalf("New's entries while two feeds use 198.51.100.40 (-want +got):\n%s", diff)
	}

	// Old goes, but Other still fetches from the same server.
	if err := m.SetFeeds([]Feed{feedOther, feedNew}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(prefixes("198.51.100.88/32"), entriesOfNew(), cmpPrefix); diff != "" {
		t.Errorf("New's entries while Other still uses 198.51.100.40 (-want +got):\n%s", diff)
	}

	// Other moves to another host: nobody needs 198.51.100.40 any more.
	feedOther.URL = movedURL
	if err := m.SetFeeds([]Feed{feedOther, feedNew}); err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(prefixes("198.51.100.40/32", "198.51.100.88/32"), entriesOfNew(), cmpPrefix); diff != "" {
		t.Errorf("New's entries once no feed uses 198.51.100.40 (-want +got):\n%s", diff)
	}
	want := `restored 1 entry refused for a protection now gone: 198.51.100.40/32`
	if _, ok := rec.event("New", slog.LevelInfo, want); !ok {
		t.Errorf("no event %q:%s", want, rec.dump())
	}
	if ups := rec.updatesOf("New"); len(ups) != 2 {
		t.Errorf("New was sent %d updates, want 2: the first fetch, then the restore", len(ups))
	}
}

// A feed renamed, or replaced by another on the same host, hands the
// servers it learned by dialing to its heir: they stay protected, where
// forgetting them would give back entries that block them until the
// heir's own fetch dials them again.
func TestManagerServersPassToAFeedOnTheSameHost(t *testing.T) {
	m := NewManager(Options{Fetcher: &Fetcher{Client: &http.Client{Transport: mapTransport{}}}})
	m.resolvConfs = resolvConf(t, "")
	server := netip.MustParseAddr("198.51.100.40")
	if err := m.SetFeeds([]Feed{{Name: "Old", URL: "http://feeds.example/list.txt", Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	m.learn("Old", []netip.Addr{server}, time.Now()) // as its fetch's dial would
	m.mu.Unlock()
	feedsOf := func() []string {
		m.mu.Lock()
		defer m.mu.Unlock()
		return m.needs[server].feeds
	}
	if err := m.SetFeeds([]Feed{{Name: "Renamed", URL: "http://FEEDS.example/other.txt", Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if got := feedsOf(); !slices.Equal(got, []string{"Renamed"}) {
		t.Errorf("after the rename, %s serves %v, want [Renamed]", server, got)
	}
	if err := m.SetFeeds([]Feed{{Name: "Renamed", URL: "http://elsewhere.example/list.txt", Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	if got := feedsOf(); got != nil {
		t.Errorf("after the move to another host, %s still serves %v", server, got)
	}
}
