package store

import (
	"context"
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

func TestReplaceThreats(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	t1, t2 := t0, t0.Add(time.Hour)
	if err := s.ReplaceThreats(ctx, "Feodo Tracker", "high",
		prefixes("203.0.113.7/32", "192.0.2.0/24", "2001:db8::/32", "198.51.100.9/24", "2001:db8::5/128"), t1); err != nil {
		t.Fatal(err)
	}
	if err := s.ReplaceThreats(ctx, "Other", "medium", prefixes("198.18.0.1/32"), t1.Add(time.Minute)); err != nil {
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

	// The feed's next version drops all but one entry and adds one: the
	// stale rows go, the other feed's rows stay.
	if err := s.ReplaceThreats(ctx, "Feodo Tracker", "high", prefixes("192.0.2.0/24", "203.0.113.99/32"), t2); err != nil {
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

	// An empty feed clears its source.
	if err := s.ReplaceThreats(ctx, "Other", "medium", nil, t2); err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "threat_intel"); n != 2 {
		t.Errorf("%d rows after emptying Other, want 2", n)
	}
}

func TestReplaceThreatsRejectsBadInput(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	if err := s.ReplaceThreats(ctx, "", "high", prefixes("192.0.2.0/24"), t0); err == nil {
		t.Error("empty source accepted")
	}
	err := s.ReplaceThreats(ctx, "feed", "high", []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24"), {}}, t0)
	if err == nil || !strings.Contains(err.Error(), "entries[1]") {
		t.Errorf("invalid prefix: %v, want an error naming entries[1]", err)
	}
	if n := count(t, s, "threat_intel"); n != 0 {
		t.Errorf("a rejected call wrote %d rows", n)
	}
}

func TestLoadThreats(t *testing.T) {
	s := openTemp(t)
	ctx := context.Background()
	in := prefixes("203.0.113.7/32", "192.0.2.0/24", "2001:db8::/32", "2001:db8::5/128")
	if err := s.ReplaceThreats(ctx, "Feodo Tracker", "high", in, t0); err != nil {
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
