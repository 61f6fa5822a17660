package intel

import (
	"math/rand/v2"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var cmpPrefix = cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })

func TestSanitize(t *testing.T) {
	tests := []struct {
		name        string
		entries     []netip.Prefix
		protect     []netip.Prefix
		host        []netip.Addr
		servers     []FeedServer
		resolvers   []netip.Addr
		wantKept    []netip.Prefix
		wantSkipped []Skipped
	}{
		{
			name:     "ordinary entries pass, sorted",
			entries:  prefixes("203.0.113.0/24", "192.0.2.1/32", "2001:db8::/32"),
			wantKept: prefixes("192.0.2.1/32", "203.0.113.0/24", "2001:db8::/32"),
		},
		{
			name:     "everything",
			entries:  prefixes("0.0.0.0/0", "::/0", "192.0.2.1/32"),
			wantKept: prefixes("192.0.2.1/32"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Reason: "would block all IPv4 traffic"},
				{Prefix: netip.MustParsePrefix("::/0"), Reason: "would block all IPv6 traffic"},
			},
		},
		{
			name:     "too short",
			entries:  prefixes("8.0.0.0/7", "8.0.0.0/8", "2000::/15", "2001::/16"),
			wantKept: prefixes("8.0.0.0/8", "2001::/16"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("8.0.0.0/7"), Reason: "IPv4 prefix shorter than /8"},
				{Prefix: netip.MustParsePrefix("2000::/15"), Reason: "IPv6 prefix shorter than /16"},
			},
		},
		{
			name:    "loopback, including IPv4-mapped and prefixes covering it",
			entries: prefixes("127.0.0.53/32", "126.0.0.0/7", "::1/128", "::/16", "::ffff:127.0.0.1/128"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("127.0.0.53/32"), Reason: "overlaps loopback 127.0.0.0/8"},
				{Prefix: netip.MustParsePrefix("126.0.0.0/7"), Reason: "IPv4 prefix shorter than /8"},
				{Prefix: netip.MustParsePrefix("::1/128"), Reason: "overlaps loopback ::1/128"},
				{Prefix: netip.MustParsePrefix("::/16"), Reason: "overlaps loopback ::1/128"},
				// canonical() turned the mapped address into IPv4 first.
				{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Reason: "overlaps loopback 127.0.0.0/8"},
			},
			wantKept: prefixes(),
		},
		{
			name:     "protected: covering and inside, but not a neighbour",
			entries:  prefixes("198.51.100.0/24", "203.0.113.7/32", "203.0.113.8/32", "2001:db8::/32"),
			protect:  prefixes("198.51.100.10/32", "203.0.113.0/29", "2001:db8:1::1/128"),
			wantKept: prefixes("203.0.113.8/32"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Reason: "overlaps whitelisted 198.51.100.10/32"},
				{Prefix: netip.MustParsePrefix("203.0.113.7/32"), Reason: "overlaps whitelisted 203.0.113.0/29"},
				{Prefix: netip.MustParsePrefix("2001:db8::/32"), Reason: "overlaps whitelisted 2001:db8:1::1/128"},
			},
		},
		{
			name:     "an address inside a refused prefix stays blocked",
			entries:  prefixes("192.0.2.0/24", "192.0.2.77/32"),
			protect:  prefixes("192.0.2.5/32"),
			wantKept: prefixes("192.0.2.77/32"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("192.0.2.0/24"), Reason: "overlaps whitelisted 192.0.2.5/32"},
			},
		},
		{
			name:     "covered entries are dropped from kept, duplicates too",
			entries:  prefixes("192.0.2.77/32", "192.0.2.0/24", "192.0.2.0/24", "2001:db8::1/128", "2001:db8::/32"),
			wantKept: prefixes("192.0.2.0/24", "2001:db8::/32"),
		},
		{
			name:     "private and link-local: kept with a warning",
			entries:  prefixes("10.0.0.0/8", "172.20.1.1/32", "192.168.0.0/16", "100.64.0.0/10", "169.254.1.0/24", "fd12:3456::/32", "fe80::/64", "11.0.0.0/8"),
			wantKept: prefixes("10.0.0.0/8", "11.0.0.0/8", "100.64.0.0/10", "169.254.1.0/24", "172.20.1.1/32", "192.168.0.0/16", "fd12:3456::/32", "fe80::/64"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("10.0.0.0/8"), Reason: "overlaps private range 10.0.0.0/8", Kept: true},
				{Prefix: netip.MustParsePrefix("172.20.1.1/32"), Reason: "overlaps private range 172.16.0.0/12", Kept: true},
				{Prefix: netip.MustParsePrefix("192.168.0.0/16"), Reason: "overlaps private range 192.168.0.0/16", Kept: true},
				{Prefix: netip.MustParsePrefix("100.64.0.0/10"), Reason: "overlaps shared address space (CGNAT) 100.64.0.0/10", Kept: true},
				{Prefix: netip.MustParsePrefix("169.254.1.0/24"), Reason: "overlaps link-local range 169.254.0.0/16", Kept: true},
				{Prefix: netip.MustParsePrefix("fd12:3456::/32"), Reason: "overlaps unique local range fc00::/7", Kept: true},
				{Prefix: netip.MustParsePrefix("fe80::/64"), Reason: "overlaps link-local range fe80::/10", Kept: true},
			},
		},
		{
			name:     "unmasked input is masked",
			entries:  []netip.Prefix{netip.PrefixFrom(netip.MustParseAddr("203.0.113.9"), 24)},
			wantKept: prefixes("203.0.113.0/24"),
		},
		{
			// The host's network would go with such an entry; a narrower
			// one inside it that spares the host stays.
			name:    "covering this host's own address",
			entries: prefixes("198.51.100.0/24", "198.51.100.0/31", "198.51.100.128/25", "2001:db8::/32", "2001:db8:1::7/128"),
			host: []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("::ffff:198.51.100.77"),
				netip.MustParseAddr("2001:db8::1"), netip.MustParseAddr("fe80::1%eth0")},
			wantKept: prefixes("198.51.100.128/25", "2001:db8:1::7/128"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("198.51.100.0/24"), Reason: "covers this host's address 198.51.100.1"},
				{Prefix: netip.MustParsePrefix("198.51.100.0/31"), Reason: "covers this host's address 198.51.100.1"},
				{Prefix: netip.MustParsePrefix("2001:db8::/32"), Reason: "covers this host's address 2001:db8::1"},
			},
		},
		{
			// Inside or covering, like loopback: the host needs every
			// address of these ranges, whatever its network.
			name: "ranges every host needs",
			entries: prefixes("255.255.255.255/32", "::ffff:255.255.255.255/128", "255.0.0.0/8", "0.0.0.0/32", "0.0.0.0/8",
				"224.0.0.251/32", "239.0.0.0/8", "ff02::1:2/128", "ff02::1:ff00:0/104", "ff00::/8",
				"64:ff9b::c000:207/128", "64:ff9b::/96", "64::/16", "64:ff9b:1:2::/64", "2002:c000:204::/48", "2002::/16",
				"1.0.0.0/8", "223.255.255.0/24", "240.0.0.0/8", "64:ff9b:2::/48", "2003::/16"),
			wantKept: prefixes("1.0.0.0/8", "223.255.255.0/24", "240.0.0.0/8", "64:ff9b:2::/48", "2003::/16"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("255.255.255.255/32"), Reason: "overlaps limited broadcast 255.255.255.255/32"},
				{Prefix: netip.MustParsePrefix("255.255.255.255/32"), Reason: "overlaps limited broadcast 255.255.255.255/32"},
				{Prefix: netip.MustParsePrefix("255.0.0.0/8"), Reason: "overlaps limited broadcast 255.255.255.255/32"},
				{Prefix: netip.MustParsePrefix("0.0.0.0/32"), Reason: `overlaps "this network" range 0.0.0.0/8`},
				{Prefix: netip.MustParsePrefix("0.0.0.0/8"), Reason: `overlaps "this network" range 0.0.0.0/8`},
				{Prefix: netip.MustParsePrefix("224.0.0.251/32"), Reason: "overlaps IPv4 multicast 224.0.0.0/4"},
				{Prefix: netip.MustParsePrefix("239.0.0.0/8"), Reason: "overlaps IPv4 multicast 224.0.0.0/4"},
				{Prefix: netip.MustParsePrefix("ff02::1:2/128"), Reason: "overlaps IPv6 multicast ff00::/8"},
				{Prefix: netip.MustParsePrefix("ff02::1:ff00:0/104"), Reason: "overlaps IPv6 multicast ff00::/8"},
				{Prefix: netip.MustParsePrefix("ff00::/8"), Reason: "IPv6 prefix shorter than /16"},
				{Prefix: netip.MustParsePrefix("64:ff9b::c000:207/128"), Reason: "overlaps NAT64 well-known prefix 64:ff9b::/96"},
				{Prefix: netip.MustParsePrefix("64:ff9b::/96"), Reason: "overlaps NAT64 well-known prefix 64:ff9b::/96"},
				{Prefix: netip.MustParsePrefix("64::/16"), Reason: "overlaps NAT64 well-known prefix 64:ff9b::/96"},
				{Prefix: netip.MustParsePrefix("64:ff9b:1:2::/64"), Reason: "overlaps NAT64 local-use prefix 64:ff9b:1::/48"},
				{Prefix: netip.MustParsePrefix("2002:c000:204::/48"), Reason: "overlaps 6to4 range 2002::/16"},
				{Prefix: netip.MustParsePrefix("2002::/16"), Reason: "overlaps 6to4 range 2002::/16"},
			},
		},
		{
			// pfwd must reach them to fetch: an entry covering one would
			// stop a feed for good. The lowest address inside an entry
			// names it; an address listed twice keeps its first reason.
			name: "feed servers and resolvers",
			entries: prefixes("10.77.0.0/24", "10.77.0.9/32", "10.77.0.10/32", "203.0.113.0/24", "2001:db8:53::/48",
				"198.51.100.53/32", "192.0.2.1/32", "127.0.0.1/32", "127.0.0.0/8", "2001:db8:54::/48"),
			host: []netip.Addr{netip.MustParseAddr("192.0.2.1"), netip.MustParseAddr("203.0.113.9")},
			servers: []FeedServer{
				{Addr: netip.MustParseAddr("10.77.0.9"), Feed: "A"},
				{Addr: netip.MustParseAddr("203.0.113.5"), Feed: "Feodo Tracker"},
				{Addr: netip.MustParseAddr("192.0.2.1"), Feed: "A"},
				{Addr: netip.MustParseAddr("127.0.0.1"), Feed: "local"},
			},
			resolvers: []netip.Addr{netip.MustParseAddr("::ffff:198.51.100.53"), netip.MustParseAddr("2001:db8:53::1%eth0")},
			wantKept:  prefixes("10.77.0.10/32", "2001:db8:54::/48"),
			wantSkipped: []Skipped{
				{Prefix: netip.MustParsePrefix("10.77.0.0/24"), Reason: `covers the feed server 10.77.0.9 of feed "A"`},
				{Prefix: netip.MustParsePrefix("10.77.0.9/32"), Reason: `covers the feed server 10.77.0.9 of feed "A"`},
				{Prefix: netip.MustParsePrefix("10.77.0.10/32"), Reason: "overlaps private range 10.0.0.0/8", Kept: true},
				{Prefix: netip.MustParsePrefix("203.0.113.0/24"), Reason: `covers the feed server 203.0.113.5 of feed "Feodo Tracker"`},
				{Prefix: netip.MustParsePrefix("2001:db8:53::/48"), Reason: "covers the DNS resolver 2001:db8:53::1"},
				{Prefix: netip.MustParsePrefix("198.51.100.53/32"), Reason: "covers the DNS resolver 198.51.100.53"},
				{Prefix: netip.MustParsePrefix("192.0.2.1/32"), Reason: "covers this host's address 192.0.2.1"},
				{Prefix: netip.MustParsePrefix("127.0.0.1/32"), Reason: `covers the feed server 127.0.0.1 of feed "local"`},
				{Prefix: netip.MustParsePrefix("127.0.0.0/8"), Reason: `covers the feed server 127.0.0.1 of feed "local"`},
			},
		},
		{
			name:        "the zero prefix is invalid",
			entries:     []netip.Prefix{{}},
			wantKept:    prefixes(),
			wantSkipped: []Skipped{{Reason: "invalid prefix"}},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			input := append([]netip.Prefix(nil), tt.entries...)
			kept, skipped := Sanitize(input, Protected{Whitelist: tt.protect, Host: tt.host, FeedServers: tt.servers, Resolvers: tt.resolvers})
			if diff := cmp.Diff(tt.wantKept, kept, cmpPrefix); diff != "" {
				t.Errorf("kept mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.wantSkipped, skipped, cmpPrefix); diff != "" {
				t.Errorf("skipped mismatch (-want +got):\n%s", diff)
			}
			if diff := cmp.Diff(tt.entries, input, cmpPrefix); diff != "" {
				t.Errorf("Sanitize modified its input (-before +after):\n%s", diff)
			}
		})
	}
}

// TestSanitizeFireHOLLevel1 runs the whole path on a list with bogons: none
// of loopback or 0.0.0.0/8 survives, nor 224.0.0.0/3 (too wide), private ranges are
// flagged, the rest is blocked.
func TestSanitizeFireHOLLevel1(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "firehol_level1.netset"))
	if err != nil {
		t.Fatal(err)
	}
	res, err := Parse(strings.NewReader(string(data)))
	if err != nil {
		t.Fatal(err)
	}
	kept, skipped := Sanitize(res.Entries, Protected{Whitelist: prefixes("192.0.2.10/32")})
	want := prefixes("10.0.0.0/8", "100.64.0.0/10", "169.254.0.0/16", "172.16.0.0/12",
		"192.168.0.0/16", "198.51.100.17/32", "203.0.113.0/25", "203.0.113.200/32")
	if diff := cmp.Diff(want, kept, cmpPrefix); diff != "" {
		t.Errorf("kept mismatch (-want +got):\n%s", diff)
	}
	refused, warnings := Summarize(skipped, 3)
	if want := `skipped 4 entries: 0.0.0.0/8 (overlaps "this network" range 0.0.0.0/8), 127.0.0.0/8 (overlaps loopback 127.0.0.0/8), 192.0.2.0/24 (overlaps whitelisted 192.0.2.10/32), and 1 more`; refused != want {
		t.Errorf("refused summary:\n got %s\nwant %s", refused, want)
	}
	if want := "kept 5 entries overlapping local ranges: 10.0.0.0/8 (overlaps private range 10.0.0.0/8), 100.64.0.0/10 (overlaps shared address space (CGNAT) 100.64.0.0/10), 169.254.0.0/16 (overlaps link-local range 169.254.0.0/16), and 2 more"; warnings != want {
		t.Errorf("warnings summary:\n got %s\nwant %s", warnings, want)
	}
}

func TestSummarize(t *testing.T) {
	one := []Skipped{{Prefix: netip.MustParsePrefix("0.0.0.0/0"), Reason: "would block all IPv4 traffic"}}
	tests := []struct {
		name         string
		skipped      []Skipped
		limit        int
		wantRefused  string
		wantWarnings string
	}{
		{name: "nothing"},
		{name: "one", skipped: one, limit: 5, wantRefused: "skipped 1 entry: 0.0.0.0/0 (would block all IPv4 traffic)"},
		{name: "limit 0 only counts", skipped: one, limit: 0, wantRefused: "skipped 1 entry, and 1 more"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			refused, warnings := Summarize(tt.skipped, tt.limit)
			if refused != tt.wantRefused || warnings != tt.wantWarnings {
				t.Errorf("Summarize = %q, %q; want %q, %q", refused, warnings, tt.wantRefused, tt.wantWarnings)
			}
		})
	}
}

// TestAddrIndexCovered checks the binary search against a plain scan, over
// both families and their boundary (IPv4 sorts before IPv6).
func TestAddrIndexCovered(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	randAddr := func() netip.Addr {
		if r.IntN(2) == 0 {
			return netip.AddrFrom4([4]byte{byte(r.IntN(4)), byte(r.IntN(4)), byte(r.IntN(256)), byte(r.IntN(256))})
		}
		var b [16]byte
		b[0], b[15] = byte(r.IntN(2)), byte(r.IntN(256))
		return netip.AddrFrom16(b)
	}
	var servers []FeedServer
	for range 200 {
		servers = append(servers, FeedServer{Addr: randAddr(), Feed: "f"})
	}
	ix := newAddrIndex(Protected{FeedServers: servers})
	for range 20000 {
		a := randAddr()
		p := netip.PrefixFrom(a, r.IntN(a.BitLen()+1)).Masked()
		want := ""
		for _, s := range ix { // sorted: the first one inside is the lowest
			if p.Contains(s.addr) {
				want = s.reason
				break
			}
		}
		if got, _ := ix.covered(p); got != want {
			t.Fatalf("covered(%v) = %q, want %q", p, got, want)
		}
	}
}
