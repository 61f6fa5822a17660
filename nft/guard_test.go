package nft

import (
	"net/netip"
	"testing"
)

// TestGuard: a guarded source's new connections (here pings, each a new
// ICMP flow) are dropped in the kernel and counted per source; other
// sources and the outbound direction are untouched; unguarding lets it in.
func TestGuard(t *testing.T) {
	fwNS, peer := newNetNS(t), newNetNS(t)
	veth(t, fwNS, peer)
	fw, err := Open(Config{NetNS: fwNS.fd}) // fail open, no reader: queued packets pass
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Remove()
	src := []netip.Addr{netip.MustParseAddr("10.99.0.2"), netip.MustParseAddr("fd99::2")}

	if err := fw.Guard(src); err != nil {
		t.Fatal(err)
	}
	got := reachable(fwNS, peer)
	for dir, want := range map[string]bool{"in v4": false, "in v6": false, "out v4": true, "out v6": true} {
		if got[dir] != want {
			t.Errorf("guarded: ping %s answered = %v, want %v", dir, got[dir], want)
		}
	}
	counts, err := fw.GuardCounts()
	if err != nil {
		t.Fatal(err)
	}
	for _, a := range src {
		if counts[a] != 1 {
			t.Errorf("guarded: %s counted %d dropped attempts, want 1 (one ping): %v", a, counts[a], counts)
		}
	}
	// Adding a source already guarded is no error, and keeps its count.
	if err := fw.Guard(src[:1]); err != nil {
		t.Errorf("guard again: %v", err)
	}
	if counts, _ := fw.GuardCounts(); counts[src[0]] != 1 {
		t.Errorf("guarding again reset the count: %v", counts)
	}

	if err := fw.Unguard(src); err != nil {
		t.Fatal(err)
	}
	for dir, ok := range reachable(fwNS, peer) {
		if !ok {
			t.Errorf("unguarded: ping %s got no answer", dir)
		}
	}
	if counts, err := fw.GuardCounts(); err != nil || len(counts) != 0 {
		t.Errorf("unguarded: sets hold %v (%v), want nothing", counts, err)
	}
	if err := fw.Guard([]netip.Addr{{}}); err == nil {
		t.Error("guarding the zero address: no error")
	}
}
