package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func prefixes(ss ...string) []netip.Prefix {
	var out []netip.Prefix
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestThreatRows checks what SetThreats writes: one row per entry in
// PrefixText's spelling, each feed's level and time, newest first.
func TestThreatRows(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	t1, t2 := t0, t0.Add(time.Hour)
	feodo := FeedThreats{Source: "Feodo Tracker", Level: "high", Seen: t1,
		Entries: prefixes("203.0.113.7/32", "192.0.2.0/24", "2001:db8::/32", "198.51.100.9/24", "2001:db8::5/128")}
	other := FeedThreats{Source: "Other", Level: "medium", Seen: t1.Add(time.Minute), Entries: prefixes("198.18.0.1/32")}
	if err := s.SetThreats(ctx, []FeedThreats{feodo, other}, t1); err != nil {
		t.Fatal(err)
	}
	got, err := s.Threats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want := []ThreatRow{
		{"198.18.0.1", "medium", "2026-11-25 15:05:05.123", "Other"},
		{"192.0.2.0/24", "high", "2026-11-25 15:04:05.123", "Feodo Tracker"},
		{"198.51.100.0/24", "high", "2026-11-25 15:04:05.123", "Feodo Tracker"}, // host bits cleared
		{"2001:db8::/32", "high", "2026-11-25 15:04:05.123", "Feodo Tracker"},
		{"2001:db8::5", "high", "2026-11-25 15:04:05.123", "Feodo Tracker"},
		{"203.0.113.7", "high", "2026-11-25 15:04:05.123", "Feodo Tracker"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Threats (-want +got):\n%s", diff)
	}

	// Feodo's next version drops all but one entry and adds one: the
	// stale rows go, Other's rows (not refreshed) stay as they were.
	feodo.Entries, feodo.Seen, other.Seen = prefixes("192.0.2.0/24", "203.0.113.99/32"), t2, time.Time{}
	if err := s.SetThreats(ctx, []FeedThreats{feodo, other}, t2); err != nil {
		t.Fatal(err)
	}
	got, err = s.Threats(ctx, 0)
	if err != nil {
		t.Fatal(err)
	}
	want = []ThreatRow{
		{"192.0.2.0/24", "high", "2026-11-25 16:04:05.123", "Feodo Tracker"},
		{"203.0.113.99", "high", "2026-11-25 16:04:05.123", "Feodo Tracker"},
		{"198.18.0.1", "medium", "2026-11-25 15:05:05.123", "Other"},
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Threats after the refresh (-want +got):\n%s", diff)
	}
	if got, _ := s.Threats(ctx, 1); len(got) != 1 || got[0].IP != "192.0.2.0/24" {
		t.Errorf("Threats(limit 1) = %v", got)
	}

	// A feed with no entries has no rows.
	other.Entries = nil
	if err := s.SetThreats(ctx, []FeedThreats{feodo, other}, t2); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "threat_intel"); n != 2 {
		t.Errorf("%d rows after emptying Other, want 2", n)
	}
}

func TestLoadThreats(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	in := prefixes("203.0.113.7/32", "192.0.2.0/24", "2001:db8::/32", "2001:db8::5/128")
	if err := s.SetThreats(ctx, []FeedThreats{{Source: "Feodo Tracker", Level: "high", Entries: in, Seen: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(`INSERT INTO threat_intel VALUES ('not an ip', 'high', 'yesterday', 'hand edit')`); err != nil {
		t.Fatal(err)
	}
	got, err := s.LoadThreats(ctx)
	if err != nil {
		t.Fatal(err)
	}
	byPrefix := func(a, b Threat) int { return strings.Compare(a.IP.String(), b.IP.String()) }
	slices.SortFunc(got, byPrefix)
	var want []Threat
	for _, p := range in {
		want = append(want, Threat{IP: p, Level: "high", LastSeen: t0.UTC(), Source: "Feodo Tracker"})
	}
	slices.SortFunc(want, byPrefix)
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("LoadThreats (-want +got):\n%s", diff)
	}
}

// threatsOf reads threat_intel as ip → "level source seen".
func threatsOf(t *testing.T, s *Store) map[string]string {
	t.Helper()
	rows, err := s.Threats(context.Background(), 0)
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]string{}
	for _, r := range rows {
		out[r.IP] = r.ThreatLevel + " " + r.Source + " " + r.LastSeen
	}
	return out
}

func TestSetThreats(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	t1, t2, t3 := t0.UTC(), t0.Add(time.Hour).UTC(), t0.Add(2*time.Hour).UTC()
	ts := func(t time.Time) string { return formatTime(t) }
	feodo := FeedThreats{Source: "Feodo", Level: "high", Entries: prefixes("203.0.113.7/32", "198.51.100.0/24", "2001:db8::5/128"), Seen: t1}
	other := FeedThreats{Source: "Other", Level: "medium", Entries: prefixes("203.0.113.7/32", "192.0.2.9/32"), Seen: t1}

	steps := []struct {
		name  string
		feeds []FeedThreats
		now   time.Time
		want  map[string]string
	}{{
		// The first feed that lists an entry owns its row: the one the
		// pipeline names.
		"two feeds, one shared entry", []FeedThreats{feodo, other}, t1,
		map[string]string{
			"203.0.113.7":     "high Feodo " + ts(t1),
			"198.51.100.0/24": "high Feodo " + ts(t1),
			"2001:db8::5":     "high Feodo " + ts(t1),
			"192.0.2.9":       "medium Other " + ts(t1),
		},
	}, {
		// Other refreshed, Feodo not: Feodo's rows keep their time.
		"one feed refreshed", []FeedThreats{{Source: "Feodo", Level: "high", Entries: feodo.Entries},
			{Source: "Other", Level: "medium", Entries: other.Entries, Seen: t2}}, t2,
		map[string]string{
			"203.0.113.7":     "high Feodo " + ts(t1),
			"198.51.100.0/24": "high Feodo " + ts(t1),
			"2001:db8::5":     "high Feodo " + ts(t1),
			"192.0.2.9":       "medium Other " + ts(t2),
		},
	}, {
		// Feodo drops the shared entry: it stays, as Other's (stamped now,
		// since Other was not refreshed), and the rest of Feodo's is kept.
		"the owner drops a shared entry", []FeedThreats{{Source: "Feodo", Level: "high", Entries: prefixes("198.51.100.0/24", "2001:db8::5/128"), Seen: t3},
			{Source: "Other", Level: "medium", Entries: other.Entries}}, t3,
		map[string]string{
			"203.0.113.7":     "medium Other " + ts(t3),
			"198.51.100.0/24": "high Feodo " + ts(t3),
			"2001:db8::5":     "high Feodo " + ts(t3),
			"192.0.2.9":       "medium Other " + ts(t2),
		},
	}, {
		// A feed removed from the config: its rows go; a level change is
		// written without a new time.
		"a feed removed, a level changed", []FeedThreats{{Source: "Other", Level: "critical", Entries: other.Entries}}, t3.Add(time.Minute),
		map[string]string{
			"203.0.113.7": "critical Other " + ts(t3),
			"192.0.2.9":   "critical Other " + ts(t2),
		},
	}, {
		"no feeds", nil, t3, map[string]string{},
	}}
	for _, st := range steps {
		if err := s.SetThreats(ctx, st.feeds, st.now); err != nil {
			t.Fatalf("%s: %v", st.name, err)
		}
		if diff := cmp.Diff(st.want, threatsOf(t, s)); diff != "" {
			t.Errorf("%s (-want +got):\n%s", st.name, diff)
		}
	}
}

func TestSetThreatsRejectsBadInput(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	good := FeedThreats{Source: "Feodo", Level: "high", Entries: prefixes("192.0.2.0/24")}
	if err := s.SetThreats(ctx, []FeedThreats{good}, t0); err != nil {
		t.Fatal(err)
	}
	for name, feeds := range map[string][]FeedThreats{
		"feeds[1] has an empty source": {good, {Level: "high", Entries: prefixes("192.0.2.1/32")}},
		"entries[1]":                   {{Source: "x", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("192.0.2.1/32"), {}}}},
	} {
		err := s.SetThreats(ctx, feeds, t0)
		if err == nil || !strings.Contains(err.Error(), name) {
			t.Errorf("SetThreats: %v, want an error naming %s", err, name)
		}
	}
	if got := threatsOf(t, s); len(got) != 1 {
		t.Errorf("a rejected call changed the rows: %v", got)
	}
	r, err := OpenReader(s.path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	if err := r.SetThreats(ctx, nil, t0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("SetThreats on a reader: %v, want ErrReadOnly", err)
	}
}

// BenchmarkSetThreats is a feed refresh of 100,000 entries against a
// table that already holds them (the hourly case: nothing but the time
// changes).
func BenchmarkSetThreats(b *testing.B) {
	s := openTemp(b)
	ctx := context.Background()
	entries := make([]netip.Prefix, 100_000)
	for i := range entries {
		entries[i] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32)
	}
	f := FeedThreats{Source: "Feodo", Level: "high", Entries: entries, Seen: t0}
	if err := s.SetThreats(ctx, []FeedThreats{f}, t0); err != nil {
		b.Fatal(err)
	}
	for i := 0; b.Loop(); i++ {
		f.Seen = t0.Add(time.Duration(i+1) * time.Hour)
		if err := s.SetThreats(ctx, []FeedThreats{f}, f.Seen); err != nil {
			b.Fatal(err)
		}
	}
}

// threat_intel.ip as pfw writes it, and as hand-made rows may spell it: an
// IPv4-mapped address is the IPv4 one, or it would never match a packet.
func TestParsePrefixText(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"203.0.113.7", "203.0.113.7/32"},
		{"192.0.2.0/24", "192.0.2.0/24"},
		{"192.0.2.9/24", "192.0.2.0/24"},
		{"2001:db8::1", "2001:db8::1/128"},
		{"::ffff:203.0.113.7", "203.0.113.7/32"},
		{"::ffff:203.0.113.0/120", "203.0.113.0/24"},
		{"::ffff:0:0/90", "::ffc0:0:0/90"}, // wider than the mapped range: stays IPv6
		{"fe80::1%eth0", ""},
		{"not an ip", ""},
	} {
		got, err := parsePrefixText(c.in)
		if c.want == "" {
			if err == nil {
				t.Errorf("parsePrefixText(%q) = %v, want an error", c.in, got)
			}
			continue
		}
		if err != nil || got.String() != c.want {
			t.Errorf("parsePrefixText(%q) = %v, %v; want %s", c.in, got, err, c.want)
		}
	}
}

// Ports are read leniently too: text, reals and blobs that hold a whole
// number are that port, anything else no port, and the listing never
// fails over them.
func TestLogsReadsOddPorts(t *testing.T) {
	s := openTemp(t)
	if _, err := s.write.Exec(`INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, reason)
		VALUES ('2026-11-25 15:04:05', '203.0.113.7', '192.0.2.1', '40000', 23.0, 'tcp', 'a'),
		       ('2026-11-25 15:04:06', '203.0.113.7', '192.0.2.1', 'http', 22.5, 'tcp', 'b'),
		       ('2026-11-25 15:04:07', '203.0.113.7', '192.0.2.1', X'3435', NULL, 'tcp', 'c')`); err != nil {
		t.Fatal(err)
	}
	rows, err := s.Logs(context.Background(), LogQuery{Follow: true})
	if err != nil || len(rows) != 3 {
		t.Fatalf("Logs: %+v, %v", rows, err)
	}
	show := func(p *int) string {
		if p == nil {
			return "-"
		}
		return fmt.Sprint(*p)
	}
	var got []string
	for _, r := range rows {
		got = append(got, show(r.SrcPort)+" "+show(r.DstPort))
	}
	if want := []string{"40000 23", "- -", "45 -"}; !slices.Equal(got, want) {
		t.Errorf("ports = %q, want %q", got, want)
	}
}

func TestThreatsBySource(t *testing.T) {
	row := func(ip, source string) Threat {
		return Threat{IP: netip.MustParsePrefix(ip), Level: "high", Source: source}
	}
	tests := []struct {
		name string
		rows []Threat
		want map[string][]netip.Prefix
	}{
		{"no rows", nil, map[string][]netip.Prefix{}},
		{"one feed", []Threat{row("203.0.113.7/32", "Feodo"), row("192.0.2.0/24", "Feodo")},
			map[string][]netip.Prefix{"Feodo": prefixes("203.0.113.7/32", "192.0.2.0/24")}},
		{"feeds interleaved keep their order", []Threat{
			row("203.0.113.7/32", "Feodo"), row("2001:db8::/32", "Other"),
			row("192.0.2.0/24", "Feodo"), row("198.51.100.1/32", "Other")},
			map[string][]netip.Prefix{
				"Feodo": prefixes("203.0.113.7/32", "192.0.2.0/24"),
				"Other": prefixes("2001:db8::/32", "198.51.100.1/32"),
			}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := ThreatsBySource(tt.rows)
			if got == nil {
				t.Fatal("ThreatsBySource returned a nil map")
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("ThreatsBySource (-want +got):\n%s", diff)
			}
		})
	}
}
