package verdict

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
)

const testConfig = `{
  "default_policy": "allow",
  "default_outbound_policy": "allow",
  "rules": [
    {"name": "Block Telnet and SMB", "action": "block", "protocol": "tcp", "ports": [23, 445]},
    {"name": "Game servers", "action": "allow", "protocol": "udp", "ports": ["27000-27050"],
     "src_ips": ["198.51.100.0/24", "2001:db8::/32"]},
    {"name": "No other games", "action": "block", "protocol": "udp", "ports": ["27000-27050"]},
    {"name": "Disabled", "action": "block", "protocol": "tcp", "ports": [80], "enabled": false},
    {"name": "No ping", "action": "block", "protocol": "icmp"},
    {"name": "No ping6 from docs", "action": "block", "protocol": "icmpv6", "src_ips": ["2001:db8::/32"]},
    {"name": "No outbound SMTP", "action": "block", "protocol": "tcp", "ports": [25], "direction": "out"},
    {"name": "Outbound to bad net", "action": "block", "src_ips": ["192.0.2.128/25"], "direction": "out"},
    {"name": "Range", "action": "block", "protocol": "any", "ports": ["8000-8100"]}
  ],
  "whitelist_ips": ["127.0.0.1", "::1", "10.9.9.9"],
  "blacklist_ips": ["203.0.113.7", "192.0.2.0/25", "10.9.0.0/16"],
  "rate_limit": {"max_connections": 100, "window_seconds": 10}
}`

func mustEngine(t testing.TB, doc string) *Engine {
	t.Helper()
	cfg, err := rules.Parse([]byte(doc))
	if err != nil {
		t.Fatal(err)
	}
	return NewEngine(Compile(cfg))
}

func decoded(b []byte) *Packet {
	var p Packet
	p.Decode(b)
	return &p
}

func TestPipeline(t *testing.T) {
	e := mustEngine(t, testConfig)
	e.SetIntel(NewIntel([]FeedEntries{
		{Name: "Feodo Tracker", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.66/32"), netip.MustParsePrefix("2001:db8:bad::/48")}},
		{Name: "Other", Prefixes: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/26")}},
	}))
	const host, host6 = "192.168.50.1", "fd00::1"
	tests := []struct {
		name   string
		pkt    []byte
		dir    rules.Direction
		action rules.Action
		step   Step
		reason string
	}{
		{"whitelist beats blacklist", tcp4("10.9.9.9", host, 1000, 23, TCPSyn), rules.DirIn, rules.ActionAllow, StepWhitelist, "Whitelisted IP"},
		{"blacklisted address", tcp4("203.0.113.7", host, 1000, 22, TCPSyn), rules.DirIn, rules.ActionBlock, StepBlacklist, "Blacklisted IP"},
		{"blacklisted cidr", udp4("10.9.1.2", host, 1000, 53), rules.DirIn, rules.ActionBlock, StepBlacklist, "Blacklisted IP"},
		{"blacklist outbound by destination", tcp4(host, "203.0.113.7", 40000, 443, TCPSyn), rules.DirOut, rules.ActionBlock, StepBlacklist, "Blacklisted IP"},
		{"blacklist is remote only", tcp4(host, "198.51.100.9", 40000, 443, TCPSyn), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"threat intel inbound", tcp4("198.51.100.66", host, 1000, 443, TCPSyn), rules.DirIn, rules.ActionBlock, StepThreatIntel, "Threat intel: Feodo Tracker"},
		{"threat intel outbound", tcp4(host, "198.51.100.66", 40000, 443, TCPSyn), rules.DirOut, rules.ActionBlock, StepThreatIntel, "Threat intel: Feodo Tracker"},
		{"threat intel second feed", udp4("198.51.100.3", host, 1000, 27001), rules.DirIn, rules.ActionBlock, StepThreatIntel, "Threat intel: Other"},
		{"threat intel v6", tcp6("2001:db8:bad::1", host6, 1000, 443, TCPSyn), rules.DirIn, rules.ActionBlock, StepThreatIntel, "Threat intel: Feodo Tracker"},
		{"rule port list", tcp4("192.0.2.200", host, 1000, 445, TCPSyn), rules.DirIn, rules.ActionBlock, StepRule, "Rule: Block Telnet and SMB"},
		{"rule protocol mismatch", udp4("192.0.2.200", host, 1000, 23), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"rule with sources, inside", udp4("198.51.100.200", host, 1000, 27050), rules.DirIn, rules.ActionAllow, StepRule, "Rule: Game servers"},
		{"rule with sources v6", udp6("2001:db8::5", host6, 1000, 27000), rules.DirIn, rules.ActionAllow, StepRule, "Rule: Game servers"},
		{"rule with sources, outside falls through", udp4("192.0.2.200", host, 1000, 27010), rules.DirIn, rules.ActionBlock, StepRule, "Rule: No other games"},
		{"range edge below", udp4("192.0.2.200", host, 1000, 26999), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"range edge above", udp4("192.0.2.200", host, 1000, 27051), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"disabled rule skipped", tcp4("192.0.2.200", host, 1000, 80, TCPSyn), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"icmp rule", icmp4("192.0.2.200", host, 8, 0), rules.DirIn, rules.ActionBlock, StepRule, "Rule: No ping"},
		{"icmp rule is inbound only", icmp4(host, "198.18.0.5", 8, 0), rules.DirOut, rules.ActionAllow, StepDefault, "Default policy"},
		{"icmpv6 rule with sources", icmp6("2001:db8::9", host6, 128, 0), rules.DirIn, rules.ActionBlock, StepRule, "Rule: No ping6 from docs"},
		{"icmpv6 other source", icmp6("fd00::9", host6, 128, 0), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"outbound rule", tcp4(host, "192.0.2.200", 40000, 25, TCPSyn), rules.DirOut, rules.ActionBlock, StepRule, "Rule: No outbound SMTP"},
		{"outbound rule not inbound", tcp4("192.0.2.200", host, 40000, 25, TCPSyn), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"outbound src_ips means remote", udp4(host, "192.0.2.130", 40000, 53), rules.DirOut, rules.ActionBlock, StepRule, "Rule: Outbound to bad net"},
		{"any-protocol port range tcp", tcp4("192.0.2.200", host, 1, 8050, TCPSyn), rules.DirIn, rules.ActionBlock, StepRule, "Rule: Range"},
		{"any-protocol port range udp", udp6("fd00::2", host6, 1, 8100), rules.DirIn, rules.ActionBlock, StepRule, "Rule: Range"},
		{"port rule never matches icmp", icmp6("fd00::2", host6, 1, 0), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"non-first fragment has no ports", ipv4Fragment("192.0.2.200", host, ProtoTCP, 64, false, make([]byte, 32)), rules.DirIn, rules.ActionAllow, StepDefault, "Default policy"},
		{"truncated tcp header", tcp4("192.0.2.200", host, 1, 23, TCPSyn)[:30], rules.DirIn, rules.ActionBlock, StepMalformed, "Malformed packet"},
		{"garbage", []byte{0x45, 1, 2}, rules.DirIn, rules.ActionBlock, StepMalformed, "Malformed packet"},
		// A 248-byte Destination Options header pushes the TCP header past
		// NFQUEUE's 256-byte copy: cut there, the packet must not pass for
		// a protocol without ports (the Telnet rule would never see it).
		{"ipv6 cut inside padded extension headers", paddedDstOpts6("fd00::2", host6, 248, tcpSegment(1000, 23, TCPSyn))[:256],
			rules.DirIn, rules.ActionBlock, StepMalformed, "Malformed packet"},
		// An IPv4-mapped address on the wire reaches a dual-stack socket as
		// the IPv4 address: it must meet neither the IPv6 lists nor the
		// defaults as a stranger, nor the IPv4 whitelist as loopback.
		{"ipv4-mapped source of a blacklisted address", udp6("::ffff:203.0.113.7", host6, 1000, 53), rules.DirIn, rules.ActionBlock, StepMalformed, "Malformed packet"},
		{"ipv4-mapped loopback is not whitelisted", udp6("::ffff:127.0.0.1", host6, 1000, 53), rules.DirIn, rules.ActionBlock, StepMalformed, "Malformed packet"},
		{"ipv4-mapped destination outbound", tcp6(host6, "::ffff:198.18.0.5", 40000, 443, TCPSyn), rules.DirOut, rules.ActionBlock, StepMalformed, "Malformed packet"},
		{"ipv6 padded extension headers, whole", paddedDstOpts6("fd00::2", host6, 248, tcpSegment(1000, 23, TCPSyn)),
			rules.DirIn, rules.ActionBlock, StepRule, "Rule: Block Telnet and SMB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := e.Decide(decoded(tt.pkt), tt.dir)
			if got.Action != tt.action || got.Step != tt.step || got.Reason != tt.reason {
				t.Errorf("Decide = %v / %v / %q, want %v / %v / %q", got.Action, got.Step, got.Reason, tt.action, tt.step, tt.reason)
			}
			if ex := e.Explain(decoded(tt.pkt), tt.dir); ex != got {
				t.Errorf("Explain = %+v, Decide = %+v", ex, got)
			}
		})
	}
}

func TestDefaultPolicies(t *testing.T) {
	e := mustEngine(t, `{"default_policy":"block","default_outbound_policy":"block","rules":[{"name":"ssh","action":"allow","protocol":"tcp","ports":[22]}]}`)
	if d := e.Decide(decoded(tcp4("192.0.2.1", "192.0.2.2", 1, 22, TCPSyn)), rules.DirIn); d.Blocked() || d.Reason != "Rule: ssh" {
		t.Errorf("ssh: %+v", d)
	}
	if d := e.Decide(decoded(tcp4("192.0.2.1", "192.0.2.2", 1, 80, TCPSyn)), rules.DirIn); !d.Blocked() || d.Reason != "Default policy" {
		t.Errorf("inbound default: %+v", d)
	}
	if d := e.Decide(decoded(udp4("192.0.2.2", "192.0.2.1", 1, 53)), rules.DirOut); !d.Blocked() || d.Step != StepDefault {
		t.Errorf("outbound default: %+v", d)
	}
	e = mustEngine(t, `{"default_policy":"block"}`)
	if d := e.Decide(decoded(udp4("192.0.2.2", "192.0.2.1", 1, 53)), rules.DirOut); d.Blocked() {
		t.Errorf("outbound policy left out must allow: %+v", d)
	}
}

func TestRateLimitInPipeline(t *testing.T) {
	e := mustEngine(t, testConfig)
	clock := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return clock }
	synFrom := func(port uint16) *Packet { return decoded(tcp4("192.0.2.200", "192.168.50.1", port, 22, TCPSyn)) }
	for i := 1; i <= 100; i++ {
		if d := e.Decide(synFrom(uint16(1000+i)), rules.DirIn); d.Blocked() {
			t.Fatalf("connection %d blocked: %+v", i, d)
		}
		clock = clock.Add(10 * time.Millisecond)
	}
	syn := synFrom(1101)
	if d := e.Decide(syn, rules.DirIn); d.Step != StepRateLimit || d.Reason != "Rate limited" {
		t.Fatalf("101st connection: %+v, want Rate limited", d)
	}
	other := decoded(tcp4("192.0.2.201", "192.168.50.1", 1000, 22, TCPSyn))
	if d := e.Decide(other, rules.DirIn); d.Blocked() {
		t.Errorf("another source blocked: %+v", d)
	}
	ack := decoded(tcp4("192.0.2.200", "192.168.50.1", 1000, 22, TCPAck))
	if d := e.Decide(ack, rules.DirIn); d.Blocked() {
		t.Errorf("a non-SYN TCP packet is no new connection, got %+v", d)
	}
	if d := e.Explain(syn, rules.DirIn); d.Blocked() {
		t.Errorf("Explain does not consult traffic history, got %+v", d)
	}
	out := decoded(tcp4("192.168.50.1", "198.18.0.5", 1000, 22, TCPSyn))
	if d := e.Decide(out, rules.DirOut); d.Blocked() {
		t.Errorf("outbound connections are not rate limited, got %+v", d)
	}
	wl := decoded(tcp4("10.9.9.9", "192.168.50.1", 1000, 22, TCPSyn))
	for range 200 {
		if d := e.Decide(wl, rules.DirIn); d.Blocked() {
			t.Fatalf("whitelisted source rate limited: %+v", d)
		}
	}
	clock = clock.Add(25 * time.Second)
	if d := e.Decide(syn, rules.DirIn); d.Blocked() {
		t.Errorf("after two quiet windows the source is allowed again, got %+v", d)
	}
}

// A flow counts once against the rate limit, however many of its packets
// come to be decided: a flow the rules block is never confirmed, so each
// of its packets reaches the pipeline as new. A device streaming to a
// blocked port must not be locked out of the ports it may use.
func TestRateLimitCountsAFlowOnce(t *testing.T) {
	e := mustEngine(t, `{"rate_limit": {"max_connections": 3, "window_seconds": 10},
		"rules": [{"name": "syslog", "action": "block", "protocol": "udp", "ports": [514]},
		          {"name": "telnet", "action": "block", "protocol": "tcp", "ports": [23]}]}`)
	clock := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return clock }
	const src, dst = "192.0.2.7", "192.168.50.1"
	stream := decoded(udp4(src, dst, 5140, 514))
	retried := decoded(tcp4(src, dst, 40000, 23, TCPSyn))
	for i := range 150 { // 15 s of a syslog stream, and SYN retries of a blocked connection
		if d := e.Decide(stream, rules.DirIn); d.Reason != "Rule: syslog" {
			t.Fatalf("stream packet %d: %+v, want Rule: syslog", i, d)
		}
		if i < 5 {
			if d := e.Decide(retried, rules.DirIn); d.Reason != "Rule: telnet" {
				t.Fatalf("SYN retry %d: %+v, want Rule: telnet", i, d)
			}
		}
		clock = clock.Add(100 * time.Millisecond)
	}
	// The stream counts once a window (at 0 s and just before 10 s), the
	// SYN retries once (at 0 s): at 15 s, the last window holds one count,
	// so the source may open two more connections.
	allowed := 0
	for port := uint16(40001); port < 40010; port++ {
		if e.Decide(decoded(tcp4(src, dst, port, 22, TCPSyn)), rules.DirIn).Blocked() {
			break
		}
		allowed++
	}
	if allowed != 2 {
		t.Errorf("%d new connections let in after the stream, want 2 (the limit of 3, less the stream)", allowed)
	}
	// The stream was let in by the limiter: its packets stay the rule's.
	// (The kernel's guard, once it holds the source, drops them before
	// they reach the pipeline.)
	if d := e.Decide(stream, rules.DirIn); d.Reason != "Rule: syslog" {
		t.Errorf("the stream while its source is over the limit: %+v, want Rule: syslog", d)
	}
	// A refused flow is not remembered: each retry is refused (and, being
	// refused, not counted).
	refused := decoded(tcp4(src, dst, 40003, 22, TCPSyn))
	for range 3 {
		if d := e.Decide(refused, rules.DirIn); d.Reason != "Rate limited" {
			t.Errorf("a refused connection's retry: %+v, want Rate limited", d)
		}
	}
	// A flow the rules allow is not remembered: conntrack confirms it, so
	// the same tuple back in the queue is a new connection (a TCP
	// connection closed and reopened from the same port), and counts.
	e4 := mustEngine(t, `{"rate_limit": {"max_connections": 3, "window_seconds": 10}}`)
	e4.now = e.now
	reopened := decoded(tcp4(src, dst, 40000, 22, TCPSyn))
	for i := range 3 {
		if d := e4.Decide(reopened, rules.DirIn); d.Blocked() {
			t.Fatalf("connection %d from one port: %+v", i+1, d)
		}
	}
	if d := e4.Decide(reopened, rules.DirIn); d.Reason != "Rate limited" {
		t.Errorf("the fourth connection from one reused port: %+v, want Rate limited", d)
	}
	// Distinct flows each count: a flood of new flows is still one.
	e2 := mustEngine(t, `{"rate_limit": {"max_connections": 3, "window_seconds": 10}}`)
	e2.now = e.now
	for port := uint16(1); port <= 3; port++ {
		if d := e2.Decide(decoded(udp4(src, dst, port, 53)), rules.DirIn); d.Blocked() {
			t.Fatalf("flow %d: %+v", port, d)
		}
	}
	if d := e2.Decide(decoded(udp4(src, dst, 4, 53)), rules.DirIn); d.Reason != "Rate limited" {
		t.Errorf("fourth new flow: %+v, want Rate limited", d)
	}
	ping := func(id uint16) *Packet {
		b := icmp4(src, dst, 8, 0)
		binary.BigEndian.PutUint16(b[20+4:], id) // the echo identifier
		p := decoded(b)
		if p.ICMPID != id {
			t.Fatalf("echo identifier decoded as %d, want %d", p.ICMPID, id)
		}
		return p
	}
	e3 := mustEngine(t, `{"rate_limit": {"max_connections": 1, "window_seconds": 10}}`)
	e3.now = e.now
	e3.Decide(ping(1), rules.DirIn)
	if d := e3.Decide(ping(2), rules.DirIn); d.Reason != "Rate limited" {
		t.Errorf("a second echo identifier is a second flow: %+v, want Rate limited", d)
	}
}

func TestPolicySwapIsWhole(t *testing.T) {
	e := mustEngine(t, `{"rules":[{"name":"a","action":"block","protocol":"tcp","ports":[22]}]}`)
	pkt := decoded(tcp4("192.0.2.1", "192.0.2.2", 1, 22, TCPSyn))
	if d := e.Decide(pkt, rules.DirIn); d.Reason != "Rule: a" {
		t.Fatalf("before: %+v", d)
	}
	cfg, _ := rules.Parse([]byte(`{"rules":[{"name":"b","action":"allow","protocol":"tcp","ports":[22]}]}`))
	e.SetPolicy(Compile(cfg))
	if d := e.Decide(pkt, rules.DirIn); d.Reason != "Rule: b" || d.Blocked() {
		t.Fatalf("after: %+v", d)
	}
}

// bigConfig has nRules rules on distinct ports (with sources, so none ends
// a candidate list early) and nPrefixes blacklist entries. Its rate limit
// is on but out of reach, so that a benchmark's packets, each a new
// connection, take the path of one let in (a limit of a million was
// reached within a second, and the benchmarks then measured refusals).
func bigConfig(nRules, nPrefixes int) *rules.Config {
	cfg := &rules.Config{DefaultPolicy: rules.ActionAllow, RateLimit: rules.RateLimit{MaxConnections: 1 << 31, WindowSeconds: 10}}
	for i := range nRules {
		port := uint16(10000 + i*3)
		cfg.Rules = append(cfg.Rules, rules.Rule{
			Name: fmt.Sprintf("rule %d", i), Action: rules.ActionBlock, Protocol: rules.ProtoTCP, Enabled: true,
			Ports:  []rules.PortRange{{First: port, Last: port + 1}},
			SrcIPs: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{172, 16, byte(i >> 8), byte(i)}), 32)},
		})
	}
	cfg.BlacklistIPs = spreadPrefixes(nPrefixes, 7)
	return cfg
}

// spreadPrefixes returns n distinct /32s scattered over 1.0.0.0-126.255.255.255.
func spreadPrefixes(n int, salt uint32) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	x := salt
	for range n {
		x = x*1664525 + 1013904223
		a := (x % (126 << 24)) + 1<<24
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(a >> 24), byte(a >> 16), byte(a >> 8), byte(a)}), 32))
	}
	return out
}

func loadedEngine(tb testing.TB) *Engine {
	e := NewEngine(Compile(bigConfig(1000, 100_000)))
	e.SetIntel(NewIntel([]FeedEntries{{Name: "feed", Prefixes: spreadPrefixes(100_000, 99)}}))
	return e
}

func TestDecodeDecideDoesNotAllocate(t *testing.T) {
	e := loadedEngine(t)
	pkts := [][]byte{
		tcp4("192.0.2.1", "192.0.2.2", 40000, 10900, TCPSyn),
		udp6("2001:db8::1", "2001:db8::2", 5353, 53),
		icmp4("192.0.2.1", "192.0.2.2", 8, 0),
	}
	var p Packet
	for _, b := range pkts {
		allocs := testing.AllocsPerRun(1000, func() {
			p.Decode(b)
			_ = e.Decide(&p, rules.DirIn)
		})
		if allocs != 0 {
			t.Errorf("decode+decide of %x: %v allocs per packet, want 0", b[:20], allocs)
		}
	}
}

// BenchmarkDecide measures the pipeline on realistic packets with 1,000
// rules and 200,000 prefixes loaded. decode+decide is the queue worker's
// path: the clock is read once per batch of 64 packets (DecideAt), its cost
// spread over the batch; decide-with-clock reads it for every packet.
func BenchmarkDecide(b *testing.B) {
	e := loadedEngine(b)
	cases := []struct {
		name string
		pkt  []byte
	}{
		{"tcp4-default", tcp4("192.0.2.1", "192.0.2.2", 40000, 443, TCPSyn)},
		{"tcp4-rule-miss-source", tcp4("192.0.2.1", "192.0.2.2", 40000, 10900, TCPSyn)},
		{"udp6-default", udp6("2001:db8::1", "2001:db8::2", 5353, 53)},
	}
	for _, c := range cases {
		var p Packet
		p.Decode(c.pkt)
		b.Run("decide-with-clock/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				_ = e.Decide(&p, rules.DirIn)
			}
		})
		b.Run("decode+decide/"+c.name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(c.pkt)))
			var now int64
			i := 0
			for b.Loop() {
				if i%64 == 0 {
					now = e.Clock()
				}
				i++
				p.Decode(c.pkt)
				_ = e.DecideAt(&p, rules.DirIn, now)
			}
		})
	}
}

func BenchmarkCompile(b *testing.B) {
	cfg := bigConfig(1000, 100_000)
	b.ReportAllocs()
	for b.Loop() {
		Compile(cfg)
	}
}

// Threat entries an update replaced still name their feed for a moment,
// for drops the kernel reports late; the pipeline itself never uses them.
func TestRecentIntel(t *testing.T) {
	e := mustEngine(t, testConfig)
	e.grace = 50 * time.Millisecond
	listed := netip.MustParseAddr("198.51.100.66")
	e.SetIntel(NewIntel([]FeedEntries{{Name: "Feodo Tracker", Prefixes: []netip.Prefix{netip.PrefixFrom(listed, 32)}}}))
	e.SetIntel(NewIntel(nil)) // the feed dropped it
	if d := e.Explain(decoded(tcp4(listed.String(), "192.168.50.1", 1000, 443, TCPSyn)), rules.DirIn); d.Step == StepThreatIntel {
		t.Errorf("the pipeline still blocks a replaced entry: %+v", d)
	}
	if d, ok := e.RecentIntel(listed); !ok || d.Reason != "Threat intel: Feodo Tracker" {
		t.Errorf("RecentIntel right after the update = %+v, %v; want the feed", d, ok)
	}
	time.Sleep(200 * time.Millisecond)
	if d, ok := e.RecentIntel(listed); ok {
		t.Errorf("RecentIntel after the grace = %+v; want nothing", d)
	}
}

// The packets of an allowed UDP or ICMP flow queued before its first
// verdict confirmed it each reach the pipeline as new; they count once
// (a burst to an allowed port at a device's boot must not put it over
// the limit). The same tuple after AllowedFlowMemory is a new flow.
func TestRateLimitCountsAnAllowedBurstOnce(t *testing.T) {
	e := mustEngine(t, `{"rate_limit": {"max_connections": 3, "window_seconds": 10}}`)
	clock := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return clock }
	const src, dst = "192.0.2.7", "192.168.50.1"
	burst := decoded(udp4(src, dst, 5140, 514))
	for i := range 5 {
		if d := e.Decide(burst, rules.DirIn); d.Blocked() {
			t.Fatalf("packet %d of one allowed flow: %+v", i+1, d)
		}
	}
	for port := uint16(1); port <= 2; port++ { // the limit of 3, less the burst's one
		if d := e.Decide(decoded(udp4(src, dst, port, 53)), rules.DirIn); d.Blocked() {
			t.Fatalf("new flow %d after the burst: %+v", port, d)
		}
	}
	if d := e.Decide(decoded(udp4(src, dst, 3, 53)), rules.DirIn); d.Reason != "Rate limited" {
		t.Errorf("the fourth flow: %+v, want Rate limited", d)
	}
	clock = clock.Add(AllowedFlowMemory + time.Millisecond)
	if d := e.Decide(burst, rules.DirIn); d.Reason != "Rate limited" {
		t.Errorf("the burst's tuple %v later, with the source at its limit: %+v, want it counted (Rate limited)", AllowedFlowMemory, d)
	}
}

// A blocked flow counts again only once its window is over, to the
// millisecond, for a window of a second as for ten.
func TestRateLimitBlockedFlowRecountedAfterTheWindow(t *testing.T) {
	for _, window := range []int{1, 10} {
		e := mustEngine(t, fmt.Sprintf(`{"rate_limit": {"max_connections": 1, "window_seconds": %d},
			"rules": [{"name": "syslog", "action": "block", "protocol": "udp", "ports": [514]}]}`, window))
		clock := time.Unix(1_800_000_000, 0)
		e.now = func() time.Time { return clock }
		stream := decoded(udp4("192.0.2.7", "192.168.50.1", 5140, 514))
		e.Decide(stream, rules.DirIn) // counted: the source is at its limit of 1
		w := time.Duration(window) * time.Second
		clock = clock.Add(w - 5*time.Millisecond)
		if d := e.Decide(stream, rules.DirIn); d.Reason != "Rule: syslog" {
			t.Errorf("window %v: the blocked stream %v later: %+v, want it still counted (Rule: syslog)", w, w-5*time.Millisecond, d)
		}
	}
}
