package nft

import (
	"net/netip"
	"slices"

	"github.com/google/nftables"
)

// addrRange is a closed interval [first, last] of addresses of one family.
// An interval set in the kernel holds disjoint ranges; pfw keeps the same
// ranges in memory so that an update can be sent as a difference.
type addrRange struct {
	first, last netip.Addr
}

func (r addrRange) compare(o addrRange) int {
	if c := r.first.Compare(o.first); c != 0 {
		return c
	}
	return r.last.Compare(o.last)
}

// prefixRange returns the addresses p covers. p must be valid and masked.
func prefixRange(p netip.Prefix) addrRange {
	b := p.Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	last, _ := netip.AddrFromSlice(b)
	return addrRange{first: p.Addr(), last: last}
}

// mergeRanges turns prefixes of one family into the sorted, disjoint,
// non-adjacent ranges an interval set accepts: the kernel rejects overlapping
// intervals, and merging adjacent ones keeps the set (and a later difference)
// as small as the address space it covers.
func mergeRanges(prefixes []netip.Prefix) []addrRange {
	if len(prefixes) == 0 {
		return nil
	}
	rs := make([]addrRange, len(prefixes))
	for i, p := range prefixes {
		rs[i] = prefixRange(p)
	}
	slices.SortFunc(rs, addrRange.compare)
	out := rs[:1]
	for _, r := range rs[1:] {
		cur := &out[len(out)-1]
		next := cur.last.Next() // invalid when cur reaches the top of the address space
		if !next.IsValid() {
			break // cur already covers everything after it
		}
		if r.first.Compare(next) <= 0 {
			if r.last.Compare(cur.last) > 0 {
				cur.last = r.last
			}
			continue
		}
		out = append(out, r)
	}
	return slices.Clip(out)
}

// diffRanges returns the ranges of old missing from new (to delete) and those
// of new missing from old (to add). Both inputs are sorted and disjoint, as
// mergeRanges returns them, so one merge pass suffices.
func diffRanges(old, new []addrRange) (del, add []addrRange) {
	i, j := 0, 0
	for i < len(old) && j < len(new) {
		switch c := old[i].compare(new[j]); {
		case c == 0:
			i++
			j++
		case c < 0:
			del = append(del, old[i])
			i++
		default:
			add = append(add, new[j])
			j++
		}
	}
	del = append(del, old[i:]...)
	add = append(add, new[j:]...)
	return del, add
}

// appendElements appends the interval set elements of r: a start element at
// r.first and an end element (flag IntervalEnd) at the first address after
// r.last. A range that reaches the top of the address space
// (255.255.255.255, ffff:…:ffff) has no address after it and gets no end
// element: the kernel's rbtree reads a trailing start element as "up to the
// end", which is also how nft itself writes such a range.
//
// The keys' bytes are appended to keys and the elements point into it, so
// a caller that sizes keys for a batch of ranges allocates once for all
// their keys.
func appendElements(elems []nftables.SetElement, keys []byte, r addrRange) ([]nftables.SetElement, []byte) {
	key := func(a netip.Addr) []byte {
		start := len(keys)
		keys, _ = a.AppendBinary(keys)
		return keys[start:len(keys):len(keys)]
	}
	elems = append(elems, nftables.SetElement{Key: key(r.first)})
	if end := r.last.Next(); end.IsValid() {
		elems = append(elems, nftables.SetElement{Key: key(end), IntervalEnd: true})
	}
	return elems, keys
}

// elementBytes is how many bytes one range takes in a NEWSETELEM message for
// keys of keyLen bytes: each element is a nested attribute (4) holding the
// nested key (4) holding the value (4 + keyLen); the end element adds its
// flags attribute (8).
func elementBytes(keyLen int) int { return 2*(12+keyLen) + 8 }

// maxElementsAttr bounds the elements of one message: they all sit in one
// netlink attribute, whose length is a uint16. A little room is left for the
// attribute headers.
const maxElementsAttr = 60000

// chunkRanges splits rs so that each chunk's elements fit in one message.
// All chunks of an update still go into the same batch, so the kernel applies
// them in one transaction.
func chunkRanges(rs []addrRange, keyLen int) [][]addrRange {
	per := maxElementsAttr / elementBytes(keyLen)
	var chunks [][]addrRange
	for len(rs) > per {
		chunks = append(chunks, rs[:per])
		rs = rs[per:]
	}
	if len(rs) > 0 {
		chunks = append(chunks, rs)
	}
	return chunks
}

// rangesFromElements rebuilds the ranges of an interval set from the
// elements the kernel lists (in any order): each start element runs to the
// next end element, or to the top of the address space when none follows.
// End elements with no start before them (nft writes one at 0.0.0.0) are
// skipped.
func rangesFromElements(elems []nftables.SetElement) []addrRange {
	type elem struct {
		addr netip.Addr
		end  bool
	}
	es := make([]elem, 0, len(elems))
	for _, e := range elems {
		a, ok := netip.AddrFromSlice(e.Key)
		if !ok {
			continue
		}
		es = append(es, elem{addr: a, end: e.IntervalEnd})
	}
	// An end element sorts before a start element at the same address: it
	// closes the range before, the start opens the next one.
	slices.SortFunc(es, func(a, b elem) int {
		if c := a.addr.Compare(b.addr); c != 0 {
			return c
		}
		if a.end == b.end {
			return 0
		}
		if a.end {
			return -1
		}
		return 1
	})
	var rs []addrRange
	for i := 0; i < len(es); i++ {
		if es[i].end {
			continue
		}
		r := addrRange{first: es[i].addr, last: maxAddr(es[i].addr)}
		if i+1 < len(es) && es[i+1].end {
			r.last = es[i+1].addr.Prev()
			i++
		}
		rs = append(rs, r)
	}
	return rs
}

// maxAddr is the last address of a's family.
func maxAddr(a netip.Addr) netip.Addr {
	if a.Is4() {
		return netip.AddrFrom4([4]byte{255, 255, 255, 255})
	}
	var b [16]byte
	for i := range b {
		b[i] = 0xff
	}
	return netip.AddrFrom16(b)
}
