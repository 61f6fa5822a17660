package verdict

import (
	"fmt"
	"math/rand/v2"
	"net/netip"
	"testing"
)

// TestPrefixSetMatchesBruteForce compares Lookup with a linear scan over
// random nested and overlapping prefixes, where the smallest tag wins.
func TestPrefixSetMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for round := range 200 {
		var entries []TaggedPrefix
		for range 1 + rng.IntN(40) {
			var a netip.Addr
			var bits int
			if rng.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
				bits = rng.IntN(33)
			} else {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(256)), 14: byte(rng.IntN(4))})
				bits = rng.IntN(129)
			}
			entries = append(entries, TaggedPrefix{netip.PrefixFrom(a, bits).Masked(), uint16(rng.IntN(5))})
		}
		s := NewTaggedPrefixSet(entries)
		for range 300 {
			var a netip.Addr
			if rng.IntN(2) == 0 {
				a = netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			} else {
				a = netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(256)), 14: byte(rng.IntN(4))})
			}
			wantTag, wantOK := uint16(0), false
			for _, e := range entries {
				if e.Prefix.Contains(a) && (!wantOK || e.Tag < wantTag) {
					wantTag, wantOK = e.Tag, true
				}
			}
			gotTag, gotOK := s.Lookup(a)
			if gotOK != wantOK || gotTag != wantTag {
				t.Fatalf("round %d: Lookup(%v) = %d,%v want %d,%v; entries %v", round, a, gotTag, gotOK, wantTag, wantOK, entries)
			}
		}
	}
}

// TestPrefixSetOverlapsMatchesBruteForce compares Overlaps with
// netip.Prefix.Overlaps over every entry, for prefixes inside, around and
// beside random nested ones.
func TestPrefixSetOverlapsMatchesBruteForce(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	random := func() netip.Prefix {
		if rng.IntN(2) == 0 {
			a := netip.AddrFrom4([4]byte{byte(rng.IntN(4)), byte(rng.IntN(4)), byte(rng.IntN(256)), byte(rng.IntN(256))})
			return netip.PrefixFrom(a, rng.IntN(33))
		}
		a := netip.AddrFrom16([16]byte{0x20, 0x01, 0x0d, 0xb8, 15: byte(rng.IntN(256)), 14: byte(rng.IntN(4))})
		return netip.PrefixFrom(a, rng.IntN(129))
	}
	for round := range 200 {
		var entries []netip.Prefix
		for range rng.IntN(40) {
			entries = append(entries, random().Masked())
		}
		s := NewPrefixSet(entries)
		for range 300 {
			p := random() // host bits left set: Overlaps ignores them
			want := false
			for _, e := range entries {
				want = want || e.Overlaps(p)
			}
			if got := s.Overlaps(p); got != want {
				t.Fatalf("round %d: Overlaps(%v) = %v, want %v; entries %v", round, p, got, want, entries)
			}
		}
	}
}

func TestPrefixSetEdges(t *testing.T) {
	s := NewPrefixSet([]netip.Prefix{
		netip.MustParsePrefix("255.255.255.255/32"),
		netip.MustParsePrefix("0.0.0.0/32"),
		netip.MustParsePrefix("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"),
		netip.MustParsePrefix("8000::/1"),
		netip.MustParsePrefix("10.0.0.0/8"),
		netip.MustParsePrefix("10.1.0.0/16"),
	})
	for addr, want := range map[string]bool{
		"255.255.255.255": true, "255.255.255.254": false, "0.0.0.0": true, "0.0.0.1": false,
		"10.200.0.1": true, "10.1.2.3": true, "11.0.0.0": false, "9.255.255.255": false,
		"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": true, "8000::": true, "7fff:ffff:ffff:ffff:ffff:ffff:ffff:ffff": false, "::1": false,
	} {
		if got := s.Contains(netip.MustParseAddr(addr)); got != want {
			t.Errorf("Contains(%s) = %v, want %v", addr, got, want)
		}
	}
	all := NewPrefixSet([]netip.Prefix{netip.MustParsePrefix("0.0.0.0/0"), netip.MustParsePrefix("::/0")})
	for _, a := range []string{"0.0.0.0", "255.255.255.255", "::", "ffff::1"} {
		if !all.Contains(netip.MustParseAddr(a)) {
			t.Errorf("/0 does not contain %s", a)
		}
	}
	for pfx, want := range map[string]bool{
		"0.0.0.0/0": true, "255.255.255.255/32": true, "255.255.255.0/24": true, "255.255.254.0/24": false,
		"10.1.2.0/24": true, "9.0.0.0/8": false, "0.0.0.0/31": true, "0.0.0.2/31": false,
		"::/0": true, "::/1": false, "::ffff:10.0.0.0/104": false, "ffff::/16": true,
	} {
		if got := s.Overlaps(netip.MustParsePrefix(pfx)); got != want {
			t.Errorf("Overlaps(%s) = %v, want %v", pfx, got, want)
		}
	}
	var empty *PrefixSet
	if empty.Contains(netip.MustParseAddr("1.2.3.4")) || NewPrefixSet(nil).Contains(netip.MustParseAddr("::1")) {
		t.Errorf("empty set contains something")
	}
	if empty.Overlaps(netip.MustParsePrefix("::/0")) || NewPrefixSet(nil).Overlaps(netip.MustParsePrefix("0.0.0.0/0")) ||
		s.Overlaps(netip.Prefix{}) {
		t.Errorf("empty set or prefix overlaps something")
	}
}

func BenchmarkPrefixSetLookup(b *testing.B) {
	for _, n := range []int{100, 10_000, 100_000, 1_000_000} {
		s := NewPrefixSet(spreadPrefixes(n, 3))
		addr := netip.MustParseAddr("100.64.1.2")
		b.Run(fmt.Sprintf("%d-prefixes", n), func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				s.Contains(addr)
			}
		})
	}
}
