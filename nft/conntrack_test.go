package nft

import (
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
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns.fd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flows := []Flow{
		{unix.IPPROTO_TCP, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), 40000, 23},
		{unix.IPPROTO_TCP, netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("10.99.0.1"), 40001, 443},
		{unix.IPPROTO_UDP, netip.MustParseAddr("10.99.0.3"), netip.MustParseAddr("10.99.0.1"), 5000, 23},
		{unix.IPPROTO_TCP, netip.MustParseAddr("fd99::2"), netip.MustParseAddr("fd99::1"), 40002, 23},
	}
	for _, f := range flows {
		if err := c.Create(conntrack.NewFlow(f.Proto, 0, f.Src, f.Dst, f.SrcPort, f.DstPort, 120, 0)); err != nil {
			t.Fatalf("create conntrack entry %+v: %v", f, err)
		}
	}

	// The flows a new "block tcp 23" rule would stop.
	blockedTelnet := func(f Flow) bool { return f.Proto == unix.IPPROTO_TCP && f.DstPort == 23 }
	n, err := fw.KillFlows(blockedTelnet)
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
		got = append(got, Flow{o.Proto.Protocol, o.IP.SourceAddress, o.IP.DestinationAddress, o.Proto.SourcePort, o.Proto.DestinationPort})
	}
	slices.SortFunc(got, func(a, b Flow) int { return int(a.SrcPort) - int(b.SrcPort) })
	want := []Flow{flows[2], flows[1]} // sorted by source port: 5000, 40001
	slices.SortFunc(want, func(a, b Flow) int { return int(a.SrcPort) - int(b.SrcPort) })
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("flows left (-want +got):\n%s", diff)
	}
	if n, err := fw.KillFlows(blockedTelnet); n != 0 || err != nil {
		t.Errorf("second KillFlows = %d, %v; want 0, nil", n, err)
	}
}
