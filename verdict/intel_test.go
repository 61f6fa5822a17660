package verdict

import (
	"net/netip"
	"testing"

	"github.com/pfw/pfw/rules"
)

func TestCompileIntel(t *testing.T) {
	cfg := &rules.Config{ThreatFeeds: []rules.Feed{{Name: "First"}, {Name: "Second"}, {Name: "Empty"}}}
	bySource := map[string][]netip.Prefix{
		"First":   {netip.MustParsePrefix("192.0.2.0/24")},
		"Second":  {netip.MustParsePrefix("192.0.2.7/32"), netip.MustParsePrefix("2001:db8::/32")},
		"Empty":   nil,
		"Removed": {netip.MustParsePrefix("198.51.100.9/32")}, // no longer in the config
	}
	in := CompileIntel(cfg, bySource)
	if got, want := in.Len(), 3; got != want {
		t.Errorf("Len() = %d, want %d (the configured feeds' entries)", got, want)
	}
	tests := []struct {
		addr   string
		reason string // "" when no feed lists it
	}{
		{"192.0.2.7", "Threat intel: First"}, // both list it: the first in the config names it
		{"192.0.2.99", "Threat intel: First"},
		{"2001:db8::5", "Threat intel: Second"},
		{"198.51.100.9", ""}, // a removed feed's entry is dropped
		{"203.0.113.1", ""},
	}
	for _, tt := range tests {
		d, ok := in.Lookup(netip.MustParseAddr(tt.addr))
		switch {
		case ok != (tt.reason != ""):
			t.Errorf("Lookup(%s) = %v, %v; want listed=%v", tt.addr, d, ok, tt.reason != "")
		case ok && (d.Reason != tt.reason || d.Step != StepThreatIntel || d.Action != rules.ActionBlock || d.Rule != -1):
			t.Errorf("Lookup(%s) = %+v, want a block at the threat step with reason %q", tt.addr, d, tt.reason)
		}
	}

	// The config's order decides, not the map's: swapped, Second names it.
	cfg.ThreatFeeds[0], cfg.ThreatFeeds[1] = cfg.ThreatFeeds[1], cfg.ThreatFeeds[0]
	if d, _ := CompileIntel(cfg, bySource).Lookup(netip.MustParseAddr("192.0.2.7")); d.Reason != "Threat intel: Second" {
		t.Errorf("with Second listed first, 192.0.2.7 is %q", d.Reason)
	}
	if n := CompileIntel(cfg, nil).Len(); n != 0 {
		t.Errorf("no entries: Len() = %d", n)
	}
}
