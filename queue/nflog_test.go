package queue

import (
	"net/netip"
	"testing"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// A drop of the intel rule that NFLOG delivers after an update took its
// entry out of the pipeline still names the feed; a blacklisted one and a
// guard drop are named by the pipeline and the prefix.
func TestKernelDropReason(t *testing.T) {
	cfg, err := rules.Parse([]byte(`{"blacklist_ips": ["203.0.113.7"]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := verdict.NewEngine(verdict.Compile(cfg))
	listed := netip.MustParseAddr("198.51.100.66")
	e.SetIntel(verdict.NewIntel([]verdict.FeedEntries{{Name: "Feodo Tracker", Prefixes: []netip.Prefix{netip.PrefixFrom(listed, 32)}}}))
	e.SetIntel(verdict.NewIntel(nil))
	k := &KernelDrops{engine: e}
	pkt := func(src, dst string) *verdict.Packet {
		return &verdict.Packet{Status: verdict.StatusOK, Version: 4, Proto: verdict.ProtoUDP,
			Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst), HasPorts: true, SrcPort: 5000, DstPort: 53}
	}
	for _, tt := range []struct {
		name   string
		p      *verdict.Packet
		dir    rules.Direction
		prefix string
		want   string
	}{
		{"intel, inbound, entry just replaced", pkt("198.51.100.66", "192.168.50.1"), rules.DirIn, PrefixIntel, "Threat intel: Feodo Tracker"},
		{"intel, outbound, entry just replaced", pkt("192.168.50.1", "198.51.100.66"), rules.DirOut, PrefixIntel, "Threat intel: Feodo Tracker"},
		{"intel, entry unknown", pkt("198.51.100.99", "192.168.50.1"), rules.DirIn, PrefixIntel, verdict.ReasonIntelWithdrawn},
		{"blacklist", pkt("203.0.113.7", "192.168.50.1"), rules.DirIn, "pfw blacklist", "Blacklisted IP"},
		{"rate-limit guard", pkt("198.51.100.1", "192.168.50.1"), rules.DirIn, PrefixRateLimit, "Rate limited"},
	} {
		if d := k.reason(tt.p, tt.dir, tt.prefix); d.Reason != tt.want || !d.Blocked() {
			t.Errorf("%s: %+v, want block / %q", tt.name, d, tt.want)
		}
	}
}
