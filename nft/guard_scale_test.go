package nft

import (
	"net/netip"
	"testing"
)

// The guard's sets take GuardMax sources in one call, IPv4 and IPv6 (more
// than one netlink attribute holds), and give them all back.
func TestGuardFull(t *testing.T) {
	ns := newNetNS(t)
	fw, err := Open(Config{NetNS: ns.fd})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Remove()
	var addrs []netip.Addr
	for i := range GuardMax / 2 {
		addrs = append(addrs,
			netip.AddrFrom4([4]byte{10, 50, byte(i >> 8), byte(i)}),
			netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 14: byte(i >> 8), 15: byte(i)}))
	}
	if err := fw.Guard(addrs); err != nil {
		t.Fatal(err)
	}
	counts, err := fw.GuardCounts()
	if err != nil || len(counts) != len(addrs) {
		t.Fatalf("guarded %d sources, the kernel holds %d (%v)", len(addrs), len(counts), err)
	}
	if err := fw.Unguard(addrs); err != nil {
		t.Fatal(err)
	}
	if counts, err := fw.GuardCounts(); err != nil || len(counts) != 0 {
		t.Errorf("after Unguard the kernel holds %d (%v)", len(counts), err)
	}
}
