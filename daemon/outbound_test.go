package daemon

import (
	"net/netip"
	"testing"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// The feeds learn from outboundBlocked why their fetch fails under
// default_outbound_policy block; loopback, which pfw never filters, is
// never named.
func TestOutboundBlockedNamesTheReason(t *testing.T) {
	cfg, err := rules.Parse([]byte(`{"default_outbound_policy": "block", "rules": [
		{"name": "feeds", "action": "allow", "protocol": "tcp", "ports": [443], "direction": "out"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{engine: verdict.NewEngine(verdict.Compile(cfg))}
	for _, tc := range []struct {
		proto uint8
		addr  string
		port  uint16
		want  string
	}{
		{6, "192.0.2.1", 8080, "blocked outbound by Default policy"},
		{17, "2001:db8::53", 53, "blocked outbound by Default policy"},
		{6, "192.0.2.1", 443, ""},
		{6, "127.0.0.1", 8080, ""},
		{17, "::1", 53, ""},
	} {
		if got := d.outboundBlocked(tc.proto, netip.MustParseAddr(tc.addr), tc.port); got != tc.want {
			t.Errorf("outboundBlocked(%d, %s, %d) = %q, want %q", tc.proto, tc.addr, tc.port, got, tc.want)
		}
	}
}
