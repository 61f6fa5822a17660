package rules

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestChanges(t *testing.T) {
	const base = `{"default_policy": "allow",
		"rules": [
			{"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [23]},
			{"name": "Block SMB", "action": "block", "protocol": "tcp", "ports": [445]},
			{"name": "Games", "action": "allow", "protocol": "udp", "ports": ["27000-27050"]}],
		"whitelist_ips": ["127.0.0.1", "::1"],
		"blacklist_ips": ["203.0.113.7"],
		"rate_limit": {"max_connections": 100, "window_seconds": 10},
		"threat_feeds": [{"name": "Feodo", "url": "https://feeds.example/a", "interval": "1h", "threat_level": "high"}]}`
	tests := []struct {
		name string
		next string
		want []string
	}{
		{"nothing", base, nil},
		{"a rule's port", `{"default_policy": "allow",
			"rules": [
				{"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [2323]},
				{"name": "Block SMB", "action": "block", "protocol": "tcp", "ports": [445]},
				{"name": "Games", "action": "allow", "protocol": "udp", "ports": ["27000-27050"]}],
			"whitelist_ips": ["127.0.0.1", "::1"], "blacklist_ips": ["203.0.113.7"],
			"rate_limit": {"max_connections": 100, "window_seconds": 10},
			"threat_feeds": [{"name": "Feodo", "url": "https://feeds.example/a", "interval": "1h", "threat_level": "high"}]}`,
			[]string{`rule "Block Telnet" changed`}},
		{"everything", `{"default_policy": "block", "default_outbound_policy": "block",
			"rules": [
				{"name": "Games", "action": "allow", "protocol": "udp", "ports": ["27000-27050"]},
				{"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [23], "enabled": false},
				{"name": "SSH", "action": "allow", "protocol": "tcp", "ports": [22]}],
			"whitelist_ips": ["127.0.0.1", "::1", "10.0.0.5"], "blacklist_ips": [],
			"rate_limit": {"max_connections": 50, "window_seconds": 10}, "allowed_sample_rate": 0.5,
			"threat_feeds": [{"name": "Spamhaus", "url": "https://feeds.example/b", "interval": "1h", "threat_level": "high"}]}`,
			[]string{
				"default_policy allow -> block",
				"default_outbound_policy allow -> block",
				`rule "Block Telnet" changed`,
				`rule "SSH" added`,
				`rule "Block SMB" removed`,
				`rule "Games" moved to 1`,
				"whitelist +1 -0 (+10.0.0.5)",
				"blacklist +0 -1 (-203.0.113.7)",
				"rate_limit 100/10s -> 50/10s",
				"allowed_sample_rate 0 -> 0.5",
				`feed "Spamhaus" added`,
				`feed "Feodo" removed`,
			}},
	}
	prev, err := Parse([]byte(base))
	if err != nil {
		t.Fatal(err)
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			next, err := Parse([]byte(tt.next))
			if err != nil {
				t.Fatal(err)
			}
			if diff := cmp.Diff(tt.want, Changes(prev, next)); diff != "" {
				t.Errorf("Changes (-want +got):\n%s", diff)
			}
		})
	}
}

// Lists too long to diff for a log line are counted.
func TestChangesOfLongLists(t *testing.T) {
	prev, next := Default(), Default()
	for i := range maxDiffedList + 1 {
		next.BlacklistIPs = append(next.BlacklistIPs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)}), 32))
	}
	if diff := cmp.Diff([]string{"blacklist 0 -> 20001 entries"}, Changes(prev, next)); diff != "" {
		t.Errorf("Changes (-want +got):\n%s", diff)
	}
	if c := Changes(next, next.Clone()); c != nil {
		t.Errorf("Changes of a long list and its copy: %q", c)
	}
}

// A move names the fewest rules whose moves explain the new order.
func TestChangesMoves(t *testing.T) {
	config := func(names ...string) *Config {
		c := Default()
		c.Rules = nil
		for _, n := range names {
			c.Rules = append(c.Rules, Rule{Name: n, Action: ActionBlock, Protocol: ProtoTCP, Direction: DirIn, Enabled: true})
		}
		return c
	}
	for _, tt := range []struct {
		prev, next []string
		want       []string
	}{
		{[]string{"A", "B", "C", "D"}, []string{"D", "A", "B", "C"}, []string{`rule "D" moved to 1`}},
		{[]string{"A", "B", "C", "D"}, []string{"B", "C", "D", "A"}, []string{`rule "A" moved to 4`}},
		{[]string{"A", "B", "C", "D"}, []string{"B", "A", "D", "C"}, []string{`rule "B" moved to 1`, `rule "D" moved to 3`}},
		{[]string{"A", "B", "C"}, []string{"C", "X", "A"}, []string{`rule "X" added`, `rule "B" removed`, `rule "C" moved to 1`}},
	} {
		if diff := cmp.Diff(tt.want, Changes(config(tt.prev...), config(tt.next...))); diff != "" {
			t.Errorf("%v -> %v (-want +got):\n%s", tt.prev, tt.next, diff)
		}
	}
}
