package nft

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
)

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, len(ss))
	for i, s := range ss {
		if p, err := netip.ParsePrefix(s); err == nil {
			out[i] = p
		} else {
			a := netip.MustParseAddr(s)
			out[i] = netip.PrefixFrom(a, a.BitLen())
		}
	}
	return out
}

// rng parses "first-last" or a prefix into a range.
func rng(t *testing.T, s string) addrRange {
	t.Helper()
	for i := range s {
		if s[i] == '-' {
			return addrRange{netip.MustParseAddr(s[:i]), netip.MustParseAddr(s[i+1:])}
		}
	}
	return prefixRange(prefixes(s)[0].Masked())
}

func rngs(t *testing.T, ss ...string) []addrRange {
	var out []addrRange
	for _, s := range ss {
		out = append(out, rng(t, s))
	}
	return out
}

var rangeCmp = cmp.Comparer(func(a, b addrRange) bool { return a == b })

func TestMergeRanges(t *testing.T) {
	for _, tc := range []struct {
		name string
		in   []string
		want []string
	}{
		{"empty", nil, nil},
		{"one host", []string{"203.0.113.7"}, []string{"203.0.113.7/32"}},
		{"adjacent merge", []string{"10.0.1.0/24", "10.0.0.0/24"}, []string{"10.0.0.0/23"}},
		{"contained", []string{"192.168.1.0/24", "192.168.1.5", "192.168.1.0/25"}, []string{"192.168.1.0/24"}},
		{"overlap extends", []string{"10.0.0.0/23", "10.0.1.0/24", "10.0.2.0/24"}, []string{"10.0.0.0-10.0.2.255"}},
		{"gap kept", []string{"10.0.0.1", "10.0.0.3"}, []string{"10.0.0.1/32", "10.0.0.3/32"}},
		{"top of v4", []string{"255.255.255.255", "255.255.255.254"}, []string{"255.255.255.254/31"}},
		{"everything v4", []string{"0.0.0.0/0", "10.0.0.0/8", "255.255.255.255"}, []string{"0.0.0.0/0"}},
		{"duplicates", []string{"10.0.0.0/8", "10.0.0.0/8"}, []string{"10.0.0.0/8"}},
		{"top of v6", []string{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", "2001:db8::/32", "2001:db8:1::/48"}, []string{"2001:db8::/32", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff/128"}},
		{"v6 adjacent", []string{"2001:db8::/33", "2001:db8:8000::/33"}, []string{"2001:db8::/32"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := mergeRanges(prefixes(tc.in...))
			if diff := cmp.Diff(rngs(t, tc.want...), got, rangeCmp); diff != "" {
				t.Errorf("mergeRanges(%v) (-want +got):\n%s", tc.in, diff)
			}
		})
	}
}

func TestDiffRanges(t *testing.T) {
	old := rngs(t, "10.0.0.0/24", "10.0.2.0/24", "10.0.4.0/24")
	new := rngs(t, "10.0.0.0/23", "10.0.2.0/24", "10.0.9.0/24")
	del, add := diffRanges(old, new)
	if diff := cmp.Diff(rngs(t, "10.0.0.0/24", "10.0.4.0/24"), del, rangeCmp); diff != "" {
		t.Errorf("del (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(rngs(t, "10.0.0.0/23", "10.0.9.0/24"), add, rangeCmp); diff != "" {
		t.Errorf("add (-want +got):\n%s", diff)
	}
	if del, add := diffRanges(old, old); del != nil || add != nil {
		t.Errorf("diffRanges(x, x) = %v, %v; want nothing", del, add)
	}
}

func TestAppendElements(t *testing.T) {
	for _, tc := range []struct {
		r    string
		want []nftables.SetElement
	}{
		{"10.0.0.0/24", []nftables.SetElement{{Key: []byte{10, 0, 0, 0}}, {Key: []byte{10, 0, 1, 0}, IntervalEnd: true}}},
		{"10.0.0.255/32", []nftables.SetElement{{Key: []byte{10, 0, 0, 255}}, {Key: []byte{10, 0, 1, 0}, IntervalEnd: true}}},
		{"255.255.255.255/32", []nftables.SetElement{{Key: []byte{255, 255, 255, 255}}}},
		{"0.0.0.0/0", []nftables.SetElement{{Key: []byte{0, 0, 0, 0}}}},
		{"ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00/120", []nftables.SetElement{{Key: netip.MustParseAddr("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ff00").AsSlice()}}},
		{"2001:db8::/32", []nftables.SetElement{
			{Key: netip.MustParseAddr("2001:db8::").AsSlice()},
			{Key: netip.MustParseAddr("2001:db9::").AsSlice(), IntervalEnd: true}}},
	} {
		got, _ := appendElements(nil, nil, rng(t, tc.r))
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("appendElements(%s) (-want +got):\n%s", tc.r, diff)
		}
		// And back: what the kernel would list is the range itself.
		if diff := cmp.Diff([]addrRange{rng(t, tc.r)}, rangesFromElements(got), rangeCmp); diff != "" {
			t.Errorf("rangesFromElements(appendElements(%s)) (-want +got):\n%s", tc.r, diff)
		}
	}
}

func TestRangesFromElements(t *testing.T) {
	// Listed in the kernel's (descending) order, with the end element at
	// 0.0.0.0 that nft writes and an open range at the top.
	elems := []nftables.SetElement{
		{Key: []byte{255, 255, 255, 255}},
		{Key: []byte{10, 0, 1, 0}, IntervalEnd: true},
		{Key: []byte{10, 0, 0, 0}},
		{Key: []byte{1, 2, 3, 5}, IntervalEnd: true},
		{Key: []byte{1, 2, 3, 4}},
		{Key: []byte{0, 0, 0, 0}, IntervalEnd: true},
	}
	want := rngs(t, "1.2.3.4/32", "10.0.0.0/24", "255.255.255.255/32")
	if diff := cmp.Diff(want, rangesFromElements(elems), rangeCmp); diff != "" {
		t.Errorf("(-want +got):\n%s", diff)
	}
}

func TestChunkRanges(t *testing.T) {
	rs := make([]addrRange, 4000)
	for _, keyLen := range []int{4, 16} {
		chunks := chunkRanges(rs, keyLen)
		total := 0
		for _, c := range chunks {
			if n := len(c) * elementBytes(keyLen); n > maxElementsAttr {
				t.Errorf("keyLen %d: chunk of %d ranges is %d bytes, over %d", keyLen, len(c), n, maxElementsAttr)
			}
			total += len(c)
		}
		if total != len(rs) {
			t.Errorf("keyLen %d: chunks hold %d ranges, want %d", keyLen, total, len(rs))
		}
	}
	if got := chunkRanges(nil, 4); got != nil {
		t.Errorf("chunkRanges(nil) = %v, want nil", got)
	}
}

func TestSplitFamilies(t *testing.T) {
	v4, v6, err := splitFamilies(Blacklist, prefixes("10.1.2.3/8", "::ffff:192.0.2.0/120", "::ffff:0:0/96", "2001:db8::1/32"))
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(prefixes("10.0.0.0/8", "192.0.2.0/24", "0.0.0.0/0"), v4, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("v4 (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(prefixes("2001:db8::/32"), v6, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
		t.Errorf("v6 (-want +got):\n%s", diff)
	}
	for _, bad := range []netip.Prefix{{}, netip.PrefixFrom(netip.MustParseAddr("10.0.0.1"), 33)} {
		if _, _, err := splitFamilies(Intel, []netip.Prefix{prefixes("10.0.0.1")[0], bad}); err == nil {
			t.Errorf("splitFamilies(%v): no error", bad)
		} else if want := "intel[1]: "; len(err.Error()) < len(want) || err.Error()[:len(want)] != want {
			t.Errorf("splitFamilies(%v) = %q, want it to start with %q", bad, err, want)
		}
	}
}
