package verdict

import (
	"cmp"
	"encoding/binary"
	"net/netip"
	"slices"
)

// PrefixSet answers "which entry covers this address?" (and "does any
// entry overlap this prefix?") for many prefixes, IPv4 and IPv6, in
// O(log n) without allocating. It is built once from a
// list of prefixes, each tagged with a small value (a feed index, say), and
// is immutable afterwards, so any number of goroutines may read it.
//
// Prefixes either nest or are disjoint, so the set flattens them into
// sorted, disjoint address ranges; where prefixes overlap, the range takes
// the smallest tag among them (the entry listed first wins).
type PrefixSet struct {
	v4Start, v4End []uint32
	v4Tag          []uint16
	v6Start, v6End []u128
	v6Tag          []uint16
	entries        int
}

type u128 struct{ hi, lo uint64 }

func (a u128) less(b u128) bool { return a.hi < b.hi || a.hi == b.hi && a.lo < b.lo }

func (a u128) inc() u128 {
	if a.lo == ^uint64(0) {
		return u128{a.hi + 1, 0}
	}
	return u128{a.hi, a.lo + 1}
}

func (a u128) dec() u128 {
	if a.lo == 0 {
		return u128{a.hi - 1, ^uint64(0)}
	}
	return u128{a.hi, a.lo - 1}
}

func addr6(a netip.Addr) u128 {
	b := a.As16()
	return u128{binary.BigEndian.Uint64(b[:8]), binary.BigEndian.Uint64(b[8:])}
}

func addr4(a netip.Addr) uint32 {
	b := a.As4()
	return binary.BigEndian.Uint32(b[:])
}

// TaggedPrefix is one entry for NewPrefixSet.
type TaggedPrefix struct {
	Prefix netip.Prefix
	Tag    uint16
}

// NewPrefixSet builds a set from prefixes, all tagged 0.
func NewPrefixSet(prefixes []netip.Prefix) *PrefixSet {
	tagged := make([]TaggedPrefix, len(prefixes))
	for i, p := range prefixes {
		tagged[i] = TaggedPrefix{Prefix: p}
	}
	return NewTaggedPrefixSet(tagged)
}

// NewTaggedPrefixSet builds a set from tagged prefixes. Invalid prefixes
// are ignored; host bits are masked off.
func NewTaggedPrefixSet(entries []TaggedPrefix) *PrefixSet {
	var v4 []span[uint32]
	var v6 []span[u128]
	for _, e := range entries {
		p := e.Prefix
		if !p.IsValid() {
			continue
		}
		if p.Addr().Is4() {
			lo, hi := range4(p)
			v4 = append(v4, span[uint32]{lo, hi, e.Tag})
			continue
		}
		lo, hi := range6(p)
		v6 = append(v6, span[u128]{lo, hi, e.Tag})
	}
	s := &PrefixSet{entries: len(v4) + len(v6)}
	for _, r := range flatten(v4, cmp.Less[uint32], func(a uint32) uint32 { return a + 1 }, func(a uint32) uint32 { return a - 1 }) {
		s.v4Start, s.v4End, s.v4Tag = append(s.v4Start, r.lo), append(s.v4End, r.hi), append(s.v4Tag, r.tag)
	}
	for _, r := range flatten(v6, u128.less, u128.inc, u128.dec) {
		s.v6Start, s.v6End, s.v6Tag = append(s.v6Start, r.lo), append(s.v6End, r.hi), append(s.v6Tag, r.tag)
	}
	return s
}

// range4 and range6 are the first and last address of a valid prefix,
// host bits ignored.
func range4(p netip.Prefix) (lo, hi uint32) {
	lo = addr4(p.Masked().Addr())
	return lo, lo | uint32(uint64(1)<<(32-p.Bits())-1)
}

func range6(p netip.Prefix) (lo, hi u128) {
	lo = addr6(p.Masked().Addr())
	hi = lo
	if host := 128 - p.Bits(); host >= 64 {
		hi.lo = ^uint64(0)
		hi.hi |= uint64(1)<<(host-64) - 1
		if host == 128 {
			hi.hi = ^uint64(0)
		}
	} else {
		hi.lo |= uint64(1)<<host - 1
	}
	return lo, hi
}

type span[K any] struct {
	lo, hi K
	tag    uint16
}

// flatten turns nested-or-disjoint spans into sorted disjoint ones, each
// carrying the smallest tag of the spans covering it, and merges
// neighbours with equal tags. Spans are visited in address order with a
// stack of the enclosing spans, so it runs in O(n log n).
func flatten[K comparable](in []span[K], less func(a, b K) bool, inc, dec func(K) K) []span[K] {
	slices.SortFunc(in, func(a, b span[K]) int {
		switch {
		case less(a.lo, b.lo):
			return -1
		case less(b.lo, a.lo):
			return 1
		case less(b.hi, a.hi): // the wider span first, so it encloses
			return -1
		case less(a.hi, b.hi):
			return 1
		}
		return 0
	})
	var out []span[K]
	emit := func(lo, hi K, tag uint16) {
		if n := len(out); n > 0 && out[n-1].tag == tag && inc(out[n-1].hi) == lo && less(out[n-1].hi, lo) {
			out[n-1].hi = hi
			return
		}
		out = append(out, span[K]{lo, hi, tag})
	}
	type open struct {
		hi  K
		tag uint16 // smallest tag of this span and all enclosing it
	}
	var stack []open
	var pos K     // first address not yet emitted
	done := false // pos has run past the top of the address space
	closeTop := func() {
		top := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		if !done && !less(top.hi, pos) {
			emit(pos, top.hi, top.tag)
			if next := inc(top.hi); less(top.hi, next) {
				pos = next
			} else {
				done = true
			}
		}
	}
	for _, s := range in {
		for len(stack) > 0 && less(stack[len(stack)-1].hi, s.lo) {
			closeTop()
		}
		tag := s.tag
		if len(stack) > 0 {
			top := stack[len(stack)-1]
			if !done && less(pos, s.lo) {
				emit(pos, dec(s.lo), top.tag)
			}
			tag = min(tag, top.tag)
		}
		if len(stack) == 0 || less(pos, s.lo) {
			pos, done = s.lo, false
		}
		stack = append(stack, open{s.hi, tag})
	}
	for len(stack) > 0 {
		closeTop()
	}
	return out
}

// Len is the number of prefixes the set was built from.
func (s *PrefixSet) Len() int {
	if s == nil {
		return 0
	}
	return s.entries
}

// Contains reports whether any prefix covers a.
func (s *PrefixSet) Contains(a netip.Addr) bool {
	_, ok := s.Lookup(a)
	return ok
}

// Lookup returns the tag of the range covering a.
func (s *PrefixSet) Lookup(a netip.Addr) (tag uint16, ok bool) {
	if s == nil {
		return 0, false
	}
	if a.Is4() {
		x := addr4(a)
		if i := s.last4(x); i >= 0 && x <= s.v4End[i] {
			return s.v4Tag[i], true
		}
		return 0, false
	}
	if !a.Is6() {
		return 0, false
	}
	x := addr6(a)
	if i := s.last6(x); i >= 0 && !s.v6End[i].less(x) {
		return s.v6Tag[i], true
	}
	return 0, false
}

// Overlaps reports whether p shares an address with any prefix of the
// set, as netip.Prefix.Overlaps would for one of them: a prefix covers
// p, or lies within it. The ranges are disjoint and sorted, so the last
// one starting at or below p's last address is the only one that can
// reach its first.
func (s *PrefixSet) Overlaps(p netip.Prefix) bool {
	if s == nil || !p.IsValid() {
		return false
	}
	if p.Addr().Is4() {
		lo, hi := range4(p)
		i := s.last4(hi)
		return i >= 0 && lo <= s.v4End[i]
	}
	lo, hi := range6(p)
	i := s.last6(hi)
	return i >= 0 && !s.v6End[i].less(lo)
}

// last4 and last6 binary-search for the last range starting at or below
// x, -1 if there is none.
func (s *PrefixSet) last4(x uint32) int {
	lo, hi := 0, len(s.v4Start)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if s.v4Start[m] <= x {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

func (s *PrefixSet) last6(x u128) int {
	lo, hi := 0, len(s.v6Start)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if !x.less(s.v6Start[m]) {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}
