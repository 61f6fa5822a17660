package daemon

import (
	"net/netip"
	"testing"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// The feeds learn from outboundBlocked why their fetch fails, and what to
// do: the advice fits the step that blocks. Loopback is named only when
// --iface filters lo, and with --iface nothing else is (the way out may
// not be filtered at all).
func TestOutboundBlockedNamesTheReason(t *testing.T) {
	cfg, err := rules.Parse([]byte(`{"default_outbound_policy": "block", "blacklist_ips": ["198.51.100.7"], "rules": [
		{"name": "no 8443", "action": "block", "protocol": "tcp", "ports": [8443], "direction": "out"},
		{"name": "feeds", "action": "allow", "protocol": "tcp", "ports": [443, 8443], "direction": "out"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		ifaces []string
		proto  uint8
		addr   string
		port   uint16
		want   string
	}{
		{nil, 6, "192.0.2.1", 8080, "blocked outbound by Default policy; allow it with an outbound rule (fwctl add NAME allow --direction out --protocol tcp --ports 8080)"},
		{nil, 17, "2001:db8::53", 53, "blocked outbound by Default policy; allow it with an outbound rule (fwctl add NAME allow --direction out --protocol udp --ports 53)"},
		{nil, 6, "192.0.2.1", 8443, "Rule: no 8443 blocks it outbound (fwctl list; an allow rule before it lets it through)"},
		{nil, 6, "198.51.100.7", 443, "the blacklist blocks 198.51.100.7 (fwctl blacklist remove, or fwctl whitelist add 198.51.100.7)"},
		{nil, 6, "192.0.2.1", 443, ""},
		{nil, 6, "127.0.0.1", 8080, ""},
		{nil, 17, "::1", 53, ""},
		{[]string{"eth0"}, 6, "192.0.2.1", 8080, ""},
		{[]string{"lo"}, 6, "127.0.0.1", 8080, "blocked outbound by Default policy; allow it with an outbound rule (fwctl add NAME allow --direction out --protocol tcp --ports 8080)"},
	} {
		d := &Daemon{engine: verdict.NewEngine(verdict.Compile(cfg)), opts: Options{Ifaces: tc.ifaces}}
		if got := d.outboundBlocked(tc.proto, netip.MustParseAddr(tc.addr), tc.port); got != tc.want {
			t.Errorf("ifaces %v: outboundBlocked(%d, %s, %d) = %q, want %q", tc.ifaces, tc.proto, tc.addr, tc.port, got, tc.want)
		}
	}
}
