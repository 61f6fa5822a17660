package nft

import (
	"context"
	"errors"
	"net/netip"
	"slices"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

func TestKillFlows(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	c := dialConntrack(t, ns)
	flows := []Flow{
		{unix.IPPROTO_TCP, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), 40000, 23, false},
		{unix.IPPROTO_TCP, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), 40001, 443, false},
		{unix.IPPROTO_UDP, netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("10.99.0.1"), 5000, 23, false},
		{unix.IPPROTO_TCP, netip.MustParseAddr("fd99::2"), netip.MustParseAddr("fd99::1"), 40002, 23, false},
	}
	for _, f := range flows {
		if err := c.Create(conntrack.NewFlow(f.Proto, 0, f.Src, f.Dst, f.SrcPort, f.DstPort, 120, 0)); err != nil {
			t.Fatalf("create conntrack entry %+v: %v", f, err)
		}
	}

	// The flows a new "block tcp 23" rule would stop.
	blockedTelnet := func(f Flow) bool { return f.Proto == unix.IPPROTO_TCP && f.DstPort == 23 }
	n, err := fw.KillFlows(context.Background(), blockedTelnet)
	if err != nil {
		t.Fatal(err)
	}
	if n != 2 {
		t.Errorf("KillFlows killed %d flows, want 2", n)
	}
	left, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	var got []Flow
	for _, f := range left {
		o := f.TupleOrig
		got = append(got, Flow{o.Proto.Protocol, o.IP.SourceAddress, o.IP.DestinationAddress, o.Proto.SourcePort, o.Proto.DestinationPort, false})
	}
	slices.SortFunc(got, func(a, b Flow) int { return int(a.SrcPort) - int(b.SrcPort) })
	want := []Flow{flows[2], flows[1]} // sorted by source port: 5000, 40001
	slices.SortFunc(want, func(a, b Flow) int { return int(a.SrcPort) - int(b.SrcPort) })
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("flows left (-want +got):\n%s", diff)
	}
	if n, err := fw.KillFlows(context.Background(), blockedTelnet); n != 0 || err != nil {
		t.Errorf("second KillFlows = %d, %v; want 0, nil", n, err)
	}
}

// Flow.Labelled tells the flows pfw's established rule labelled (they pass
// an interface pfw filters) from the others, which pfwd with --iface must
// leave alone.
func TestKillFlowsSeesTheFastPathLabels(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd}) // its label rules turn labels on in the namespace
	c := dialConntrack(t, ns)
	for i, bit := range []int{-1, labelBits[0], labelBits[1]} {
		f := conntrack.NewFlow(unix.IPPROTO_TCP, 0, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), uint16(40000+i), 23, 120, 0)
		if bit >= 0 {
			f.Labels, f.LabelsMask = labelBytes(bit), labelBytes(bit)
		}
		if err := c.Create(f); err != nil {
			t.Fatalf("create conntrack entry with label bit %d: %v", bit, err)
		}
	}
	var seen []uint16
	n, err := fw.KillFlows(context.Background(), func(f Flow) bool {
		if f.Labelled {
			seen = append(seen, f.SrcPort)
		}
		return f.Labelled
	})
	if err != nil || n != 2 {
		t.Fatalf("KillFlows of the labelled flows = %d, %v; want 2", n, err)
	}
	slices.Sort(seen)
	if !slices.Equal(seen, []uint16{40001, 40002}) {
		t.Errorf("labelled flows: source ports %v, want 40001 and 40002", seen)
	}
}

// KillFlows shows the destination pfw's chains saw, after DNAT: a flow
// redirected to a port of the host is judged by that port, and one NATed
// on to another host names that host, so pfwd can tell it passes through
// (the forward hook, which pfw does not filter).
func TestKillFlowsSeesTheDestinationAfterDNAT(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	c := dialConntrack(t, ns)
	client, host, inside := netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), netip.MustParseAddr("10.99.1.50")
	redirected := conntrack.NewFlow(unix.IPPROTO_TCP, 0, client, host, 40000, 80, 120, 0)
	redirected.TupleReply.Proto.SourcePort = 8080 // REDIRECT to a local port
	forwarded := conntrack.NewFlow(unix.IPPROTO_TCP, 0, client, host, 40001, 8445, 120, 0)
	forwarded.TupleReply.IP.SourceAddress, forwarded.TupleReply.Proto.SourcePort = inside, 445 // DNAT to a container
	for _, f := range []conntrack.Flow{redirected, forwarded} {
		if err := c.Create(f); err != nil {
			t.Fatalf("create conntrack entry: %v", err)
		}
	}
	var seen []Flow
	if _, err := fw.KillFlows(context.Background(), func(f Flow) bool { seen = append(seen, f); return false }); err != nil {
		t.Fatal(err)
	}
	slices.SortFunc(seen, func(a, b Flow) int { return int(a.SrcPort) - int(b.SrcPort) })
	want := []Flow{
		{unix.IPPROTO_TCP, client, host, 40000, 8080, false},
		{unix.IPPROTO_TCP, client, inside, 40001, 445, false},
	}
	if diff := cmp.Diff(want, seen, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("flows as KillFlows shows them (-want +got):\n%s", diff)
	}
}

// A table of many entries, dumped over many datagrams, is read and acted
// on whole as it streams in.
func TestKillFlowsManyEntries(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	c := dialConntrack(t, ns)
	const entries = 6000
	createFlows(t, c, entries, func(i int) uint16 { return uint16(53 + i%2) })
	seen := 0
	n, err := fw.KillFlows(context.Background(), func(f Flow) bool { seen++; return f.DstPort == 54 })
	if err != nil {
		t.Fatal(err)
	}
	if seen != entries || n != entries/2 {
		t.Errorf("KillFlows saw %d entries and killed %d; want %d and %d", seen, n, entries, entries/2)
	}
	left, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	if len(left) != entries/2 {
		t.Errorf("%d entries left, want %d", len(left), entries/2)
	}
}

// dialConntrack opens a conntrack netlink connection in ns, closed when
// the test ends.
func dialConntrack(t *testing.T, ns *testNetNS) *conntrack.Conn {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns.fd})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// A walk whose context ends stops before the next entry: a stop must not
// wait for a table a flood filled.
func TestKillFlowsStopsWithContext(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	c := dialConntrack(t, ns)
	createFlows(t, c, 2000, func(int) uint16 { return 53 })
	ctx, cancel := context.WithCancel(context.Background())
	seen := 0
	n, err := fw.KillFlows(ctx, func(Flow) bool {
		seen++
		if seen == 10 {
			cancel()
		}
		return true
	})
	if !errors.Is(err, context.Canceled) {
		t.Errorf("KillFlows with its context cancelled = %d, %v; want context.Canceled", n, err)
	}
	if seen != 10 || n != 10 {
		t.Errorf("KillFlows saw %d entries and killed %d after its context ended at the 10th; want 10 and 10", seen, n)
	}
}

// createFlows makes n UDP conntrack entries from 10.98.x.y port 5000 to
// 10.99.0.1, entry i to port dport(i).
func createFlows(t *testing.T, c *conntrack.Conn, n int, dport func(int) uint16) {
	t.Helper()
	for i := range n {
		src := netip.AddrFrom4([4]byte{10, 98, byte(i >> 8), byte(i)})
		if err := c.Create(conntrack.NewFlow(unix.IPPROTO_UDP, 0, src, netip.MustParseAddr("10.99.0.1"), 5000, dport(i), 120, 0)); err != nil {
			t.Fatalf("create conntrack entry %d: %v", i, err)
		}
	}
}
