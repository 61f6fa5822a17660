package verdict

import (
	"net/netip"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
)

const cutConfig = `{
  "default_policy": "allow",
  "rules": [
    {"name": "No 7000", "action": "block", "protocol": "tcp", "ports": [7000]},
    {"name": "No 7500", "action": "block", "protocol": "udp", "ports": [7500]},
    {"name": "No out 7100", "action": "block", "protocol": "tcp", "ports": [7100], "direction": "out"}
  ],
  "whitelist_ips": ["127.0.0.1"]
}`

// A cut flow's packets that come back the other way, which conntrack then
// takes for a new flow in the opposite direction, are decided as packets
// of the cut flow; everything else is decided as before.
func TestCutFlowReplies(t *testing.T) {
	const host, client, host6, client6 = "10.66.0.1", "10.66.0.2", "fd66::1", "fd66::2"
	tests := []struct {
		name   string
		opened []byte // the cut flow's first packet
		dir    rules.Direction
		reply  []byte // a packet back along it, as the queue sees it
		reason string
	}{
		{"tcp inbound, the server speaks next", tcp4(client, host, 46421, 7000, TCPSyn), rules.DirIn,
			tcp4(host, client, 7000, 46421, TCPAck|0x08), "Rule: No 7000"},
		{"tcp inbound over IPv6", tcp6(client6, host6, 46421, 7000, TCPSyn), rules.DirIn,
			tcp6(host6, client6, 7000, 46421, TCPAck), "Rule: No 7000"},
		{"udp inbound, the server pushes", udp4(client, host, 50000, 7500), rules.DirIn,
			udp4(host, client, 7500, 50000), "Rule: No 7500"},
		{"udp inbound over IPv6", udp6(client6, host6, 50000, 7500), rules.DirIn,
			udp6(host6, client6, 7500, 50000), "Rule: No 7500"},
		{"tcp outbound, the remote speaks next", tcp4(host, client, 40000, 7100, TCPSyn), rules.DirOut,
			tcp4(client, host, 7100, 40000, TCPAck), "Rule: No out 7100"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := mustEngine(t, cutConfig)
			reply := decoded(tt.reply)
			replyDir := rules.DirOut
			if tt.dir == rules.DirOut {
				replyDir = rules.DirIn
			}
			if d := e.Decide(reply, replyDir); d.Blocked() {
				t.Fatalf("before the cut the reply is decided as its own flow and let through; got %+v", d)
			}
			if !e.CutFlow(decoded(tt.opened), tt.dir) {
				t.Fatal("CutFlow refused a TCP/UDP flow")
			}
			if d := e.Decide(reply, replyDir); !d.Blocked() || d.Reason != tt.reason || d.Step != StepRule {
				t.Errorf("reply of the cut flow: %+v, want block / %s", d, tt.reason)
			}
			// The cut flow's own direction is decided as ever (the rule
			// blocks it), and other flows are untouched.
			if d := e.Decide(decoded(tt.opened), tt.dir); !d.Blocked() {
				t.Errorf("the cut flow's own direction: %+v, want block", d)
			}
			other := *reply
			other.DstPort++
			if d := e.Decide(&other, replyDir); d.Blocked() {
				t.Errorf("another flow: %+v, want allow", d)
			}
			// Explain (fwctl's, no traffic history) does not use it.
			if d := e.Explain(reply, replyDir); d.Blocked() {
				t.Errorf("Explain of the reply: %+v, want it decided as its own flow", d)
			}
		})
	}
}

// When the rules no longer block the cut flow, its packets pass again and
// the flow is no longer remembered as cut.
func TestCutFlowForgottenWhenUnblocked(t *testing.T) {
	e := mustEngine(t, cutConfig)
	e.CutFlow(decoded(tcp4("10.66.0.2", "10.66.0.1", 46421, 7000, TCPSyn)), rules.DirIn)
	reply := decoded(tcp4("10.66.0.1", "10.66.0.2", 7000, 46421, TCPAck))
	if !e.Decide(reply, rules.DirOut).Blocked() {
		t.Fatal("reply not blocked")
	}
	cfg, err := rules.Parse([]byte(`{"rules": []}`))
	if err != nil {
		t.Fatal(err)
	}
	e.SetPolicy(Compile(cfg))
	if d := e.Decide(reply, rules.DirOut); d.Blocked() {
		t.Errorf("reply after the rule went: %+v, want allow", d)
	}
	if n := e.CutFlows(); n != 0 {
		t.Errorf("%d cut flows remembered, want 0", n)
	}
}

// A cut flow is remembered CutFlowTTL after its last packet.
func TestCutFlowExpires(t *testing.T) {
	e := mustEngine(t, cutConfig)
	now := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return now }
	e.CutFlow(decoded(udp4("10.66.0.2", "10.66.0.1", 50000, 7500)), rules.DirIn)
	reply := decoded(udp4("10.66.0.1", "10.66.0.2", 7500, 50000))
	for range 3 { // each packet keeps it for another TTL
		now = now.Add(CutFlowTTL - time.Second)
		if !e.Decide(reply, rules.DirOut).Blocked() {
			t.Fatalf("reply %v after the last one not blocked", CutFlowTTL-time.Second)
		}
	}
	now = now.Add(CutFlowTTL)
	if d := e.Decide(reply, rules.DirOut); d.Blocked() {
		t.Errorf("reply a TTL after the last one: %+v, want it decided as a new flow", d)
	}
	if n := e.CutFlows(); n != 0 {
		t.Errorf("%d cut flows remembered, want 0", n)
	}

	// A cut flow whose peer never speaks again is cleared by any packet
	// once its time is up, so the hot path is lock-free again.
	e.CutFlow(decoded(udp4("10.66.0.2", "10.66.0.1", 50001, 7500)), rules.DirIn)
	other := decoded(udp4("10.66.0.7", "10.66.0.1", 1234, 53))
	e.Decide(other, rules.DirIn)
	if n := e.CutFlows(); n != 1 {
		t.Fatalf("%d cut flows remembered before expiry, want 1", n)
	}
	now = now.Add(CutFlowTTL)
	e.Decide(other, rules.DirIn)
	if n := e.CutFlows(); n != 0 {
		t.Errorf("%d cut flows remembered after an unrelated packet past their expiry, want 0", n)
	}
}

// A cut flow let back in leaves a conntrack entry made from its reply, the
// wrong way round; the walk that cuts flows after the next change meets
// that entry and must judge it as the flow it is (TurnedFlow), so that
// blocking the flow again cuts it again. A walk that no longer meets the
// entry forgets it.
func TestCutFlowLetBackInIsJudgedAsItself(t *testing.T) {
	e := mustEngine(t, cutConfig)
	host, client := netip.MustParseAddr("10.66.0.1"), netip.MustParseAddr("10.66.0.2")
	opened := decoded(tcp4("10.66.0.2", "10.66.0.1", 46421, 7000, TCPSyn))
	e.CutFlow(opened, rules.DirIn)
	walk := e.BeginFlowWalk()
	if _, ok := e.TurnedFlow(ProtoTCP, client, 46421, host, 7000, walk); ok {
		t.Error("an entry of a cut flow the right way round is reported turned")
	}
	// The rule goes; the server speaks next, and its packet, decided as
	// one of the inbound flow, is let through.
	allowAll, err := rules.Parse([]byte(`{"rules": [{"name": "out", "action": "block", "protocol": "tcp", "ports": [46421], "direction": "out"}]}`))
	if err != nil {
		t.Fatal(err)
	}
	e.SetPolicy(Compile(allowAll))
	reply := decoded(tcp4("10.66.0.1", "10.66.0.2", 7000, 46421, TCPAck))
	if d := e.Decide(reply, rules.DirOut); d.Blocked() {
		t.Errorf("the server's packet once the flow is allowed: %+v, want it let through as a packet of the inbound flow (an outbound rule for the client's port is not its)", d)
	}
	walk = e.BeginFlowWalk()
	dir, ok := e.TurnedFlow(ProtoTCP, host, 7000, client, 46421, walk)
	if !ok || dir != rules.DirIn {
		t.Fatalf("TurnedFlow of the wrong-way entry = %v, %v; want in, true", dir, ok)
	}
	if _, ok := e.TurnedFlow(ProtoTCP, client, 46421, host, 7000, walk); ok {
		t.Error("an entry the right way round is reported turned")
	}
	e.EndFlowWalk(walk)
	if recs := e.CutRecords(); len(recs) != 1 || !recs[0].Turned || recs[0].DstPort != 7000 {
		t.Errorf("records %+v, want the turned flow as opened", recs)
	}
	// Cut again: it is a cut flow once more, not a turned one.
	e.CutFlow(opened, rules.DirIn)
	if recs := e.CutRecords(); len(recs) != 1 || recs[0].Turned {
		t.Errorf("records after it was cut again: %+v, want it cut, not turned", recs)
	}
	// Let back in again, then a walk that does not meet its entry.
	e.Decide(reply, rules.DirOut)
	e.EndFlowWalk(e.BeginFlowWalk())
	if recs := e.CutRecords(); len(recs) != 0 {
		t.Errorf("records after a walk that did not meet the entry: %+v, want none", recs)
	}
}

// A cut flow whose reply made a conntrack entry that pfwd never decided
// (while no pfwd ran, another table's conntrack tracked it and nothing
// filtered) is judged as the flow it is by the next walk, from the memory
// a restart restored: cut again if the rules block it, kept as turned if
// they let it in.
func TestRestoredCutFlowWrongWayEntry(t *testing.T) {
	host, client := netip.MustParseAddr("10.66.0.1"), netip.MustParseAddr("10.66.0.2")
	rec := CutRecord{Proto: ProtoTCP, Src: client, SrcPort: 46421, Dst: host, DstPort: 7000, Dir: rules.DirIn, Left: time.Minute}

	e := mustEngine(t, cutConfig)
	e.RememberCut(rec)
	dir, ok := e.TurnedFlow(ProtoTCP, host, 7000, client, 46421, e.BeginFlowWalk())
	if !ok || dir != rules.DirIn {
		t.Fatalf("TurnedFlow of the wrong-way entry of a restored cut flow = %v, %v; want in, true", dir, ok)
	}
	orig := FirstPacket(ProtoTCP, client, host, 46421, 7000)
	if !e.Explain(&orig, dir).Blocked() {
		t.Fatal("the flow as opened is not blocked: the test shows nothing")
	}
	e.CutFlow(&orig, dir) // the walk cuts it
	if recs := e.CutRecords(); len(recs) != 1 || recs[0].Turned || recs[0].Left < CutFlowTTL-time.Second {
		t.Errorf("records after the walk cut it again: %+v, want it cut, for a whole TTL", recs)
	}

	// Rules that let it in: the entry stays, and is known as turned.
	allow := mustEngine(t, `{"rules": []}`)
	allow.RememberCut(rec)
	walk := allow.BeginFlowWalk()
	if _, ok := allow.TurnedFlow(ProtoTCP, host, 7000, client, 46421, walk); !ok {
		t.Fatal("TurnedFlow missed the wrong-way entry")
	}
	allow.EndFlowWalk(walk)
	if recs := allow.CutRecords(); len(recs) != 1 || !recs[0].Turned {
		t.Errorf("records after a walk that let it be: %+v, want it turned", recs)
	}
}

// A cut flow whose time is up is a new flow in its own right, for the
// walk as for the packets: TurnedFlow does not judge its entry as the old
// one. And a flow cut again when MaxCutFlows are remembered stays turned,
// known to the walk, rather than forgotten.
func TestTurnedFlowEdges(t *testing.T) {
	e := mustEngine(t, cutConfig)
	now := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return now }
	host, client := netip.MustParseAddr("10.66.0.1"), netip.MustParseAddr("10.66.0.2")
	opened := decoded(tcp4("10.66.0.2", "10.66.0.1", 46421, 7000, TCPSyn))
	e.CutFlow(opened, rules.DirIn)
	e.CutFlow(decoded(tcp4("10.66.0.9", "10.66.0.1", 1, 7000, TCPSyn)), rules.DirIn) // keeps latest ahead
	now = now.Add(CutFlowTTL)
	e.CutFlow(decoded(tcp4("10.66.0.9", "10.66.0.1", 2, 7000, TCPSyn)), rules.DirIn)
	if _, ok := e.TurnedFlow(ProtoTCP, host, 7000, client, 46421, e.BeginFlowWalk()); ok {
		t.Error("an expired cut flow's entry is judged as the old flow")
	}

	full := mustEngine(t, `{"rules": []}`)
	full.now = func() time.Time { return now }
	full.CutFlow(opened, rules.DirIn)
	full.Decide(decoded(tcp4("10.66.0.1", "10.66.0.2", 7000, 46421, TCPAck)), rules.DirOut) // let back in: turned
	p := decoded(udp4("10.66.0.2", "10.66.0.1", 1, 7500))
	for i := range MaxCutFlows {
		p.SrcPort = uint16(i + 1)
		p.Src = netip.AddrFrom4([4]byte{10, 67, byte(i >> 8), byte(i)})
		full.CutFlow(p, rules.DirIn)
	}
	if full.CutFlow(opened, rules.DirIn) {
		t.Fatal("a flow past MaxCutFlows was remembered")
	}
	if _, ok := full.TurnedFlow(ProtoTCP, host, 7000, client, 46421, full.BeginFlowWalk()); !ok {
		t.Error("a turned flow refused a new cut past MaxCutFlows was forgotten")
	}
}

// The cut flows handed over to the next run (CutRecords, RememberCut)
// keep their replies blocked there, for the time they had left.
func TestCutRecordsCarryOverToANewEngine(t *testing.T) {
	old := mustEngine(t, cutConfig)
	now := time.Unix(1_800_000_000, 0)
	old.now = func() time.Time { return now }
	old.CutFlow(decoded(tcp6("fd66::2", "fd66::1", 46421, 7000, TCPSyn)), rules.DirIn)
	old.CutFlow(decoded(udp4("10.66.0.2", "10.66.0.1", 50000, 7500)), rules.DirIn)
	now = now.Add(30 * time.Second)
	recs := old.CutRecords()
	if len(recs) != 2 {
		t.Fatalf("%d records, want 2: %+v", len(recs), recs)
	}
	for _, r := range recs {
		if r.Left != CutFlowTTL-30*time.Second || r.Dir != rules.DirIn || r.DstPort != 7000 && r.DstPort != 7500 {
			t.Errorf("record %+v, want the original flow, inbound, with %v left", r, CutFlowTTL-30*time.Second)
		}
	}

	e := mustEngine(t, cutConfig)
	now2 := time.Unix(1_900_000_000, 0)
	e.now = func() time.Time { return now2 }
	for _, r := range recs {
		if !e.RememberCut(r) {
			t.Fatalf("RememberCut(%+v) refused", r)
		}
	}
	replies := []*Packet{decoded(tcp6("fd66::1", "fd66::2", 7000, 46421, TCPAck)), decoded(udp4("10.66.0.1", "10.66.0.2", 7500, 50000))}
	for _, p := range replies {
		if d := e.Decide(p, rules.DirOut); !d.Blocked() {
			t.Errorf("reply %v:%d → %v:%d in the new engine: %+v, want blocked", p.Src, p.SrcPort, p.Dst, p.DstPort, d)
		}
	}
	// Each packet pushes a flow back a TTL, as in the old engine; one
	// silent for the time its record had left is forgotten.
	fresh := mustEngine(t, cutConfig)
	fresh.now = func() time.Time { return now2 }
	fresh.RememberCut(recs[0])
	now2 = now2.Add(CutFlowTTL - 30*time.Second + time.Second)
	if n := len(fresh.CutRecords()); n != 0 {
		t.Errorf("%d records once the time they had left is up, want 0", n)
	}

	for _, bad := range []CutRecord{
		{Proto: ProtoICMP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Left: time.Minute},
		{Proto: ProtoTCP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("fd00::2"), Left: time.Minute},
		{Proto: ProtoTCP, Dst: netip.MustParseAddr("10.0.0.2"), Left: time.Minute},
		{Proto: ProtoUDP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2")},
		{Proto: ProtoUDP, Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("10.0.0.2"), Left: time.Minute, Dir: 7},
	} {
		if e.RememberCut(bad) {
			t.Errorf("RememberCut(%+v) accepted a record that cannot be a cut flow", bad)
		}
	}
}

// A record says how long it has left, but never more than CutFlowTTL: a
// file from a clock set far ahead must not keep a flow cut for days.
func TestRememberCutCapsTheTime(t *testing.T) {
	e := mustEngine(t, cutConfig)
	now := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return now }
	e.RememberCut(CutRecord{Proto: ProtoUDP, Src: netip.MustParseAddr("10.66.0.2"), Dst: netip.MustParseAddr("10.66.0.1"),
		SrcPort: 50000, DstPort: 7500, Dir: rules.DirIn, Left: 48 * time.Hour})
	if recs := e.CutRecords(); len(recs) != 1 || recs[0].Left != CutFlowTTL {
		t.Fatalf("records %+v, want one with %v left", recs, CutFlowTTL)
	}
	now = now.Add(CutFlowTTL)
	if d := e.Decide(decoded(udp4("10.66.0.1", "10.66.0.2", 7500, 50000)), rules.DirOut); d.Blocked() {
		t.Errorf("reply a TTL later: %+v, want it forgotten", d)
	}
}

func TestCutFlowBounds(t *testing.T) {
	e := mustEngine(t, cutConfig)
	now := time.Unix(1_800_000_000, 0)
	e.now = func() time.Time { return now }
	if e.CutFlow(decoded(icmp4("10.66.0.2", "10.66.0.1", 8, 0)), rules.DirIn) {
		t.Error("an ICMP flow was remembered")
	}
	p := decoded(udp4("10.66.0.2", "10.66.0.1", 1, 7500))
	for i := range MaxCutFlows {
		p.SrcPort = uint16(i + 1)
		p.Src = netip.AddrFrom4([4]byte{10, 66, byte(i >> 8), byte(i)})
		if !e.CutFlow(p, rules.DirIn) {
			t.Fatalf("flow %d refused below the cap", i)
		}
	}
	p.Src = netip.MustParseAddr("10.77.0.1")
	if e.CutFlow(p, rules.DirIn) {
		t.Error("a flow past MaxCutFlows was remembered")
	}
	now = now.Add(CutFlowTTL) // all expired: room again
	if !e.CutFlow(p, rules.DirIn) || e.CutFlows() != 1 {
		t.Errorf("after expiry: %d remembered, want the new one only", e.CutFlows())
	}
}

// Nothing cut: deciding costs no lock and no allocation; with cut flows,
// still no allocation.
func TestCutFlowsAllocateNothing(t *testing.T) {
	e := mustEngine(t, cutConfig)
	reply := decoded(tcp4("10.66.0.1", "10.66.0.2", 7000, 46421, TCPAck))
	other := decoded(tcp4("10.66.0.1", "10.66.0.3", 7000, 46421, TCPAck))
	if n := testing.AllocsPerRun(100, func() { e.DecideAt(other, rules.DirOut, 1) }); n != 0 {
		t.Errorf("%v allocations per packet with nothing cut", n)
	}
	e.CutFlow(decoded(tcp4("10.66.0.2", "10.66.0.1", 46421, 7000, TCPSyn)), rules.DirIn)
	if n := testing.AllocsPerRun(100, func() {
		e.DecideAt(reply, rules.DirOut, e.Clock())
		e.DecideAt(other, rules.DirOut, e.Clock())
	}); n != 0 {
		t.Errorf("%v allocations per packet with a cut flow", n)
	}
}
