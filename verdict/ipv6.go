package verdict

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipv6HeaderLen = 40
	// maxIPv6ExtHeaders bounds the extension header walk. Real traffic
	// carries two or three; a long chain is an evasion attempt (RFC 7112)
	// and would otherwise let one packet buy unbounded work.
	maxIPv6ExtHeaders = 8
	ipv6FragHeaderLen = 8
	ipv6FragOffset    = 0xfff8 // 13-bit offset in 8-byte units = bytes, low bits masked
	ipv6FragMore      = 0x0001 // M flag
)

// IPv6 next-header values that announce an extension header.
const (
	protoHopByHop = 0
	protoRouting  = 43
	protoFragment = 44
	protoAH       = 51
	protoDstOpts  = 60
)

// decode6 decodes an IPv6 packet; b is non-empty and its version nibble is 6.
func (p *Packet) decode6(b []byte) {
	p.Version = 6
	if len(b) < ipv6HeaderLen {
		// Keep what the short buffer still holds, so a log row can say
		// who sent it.
		if len(b) > 6 {
			p.Proto = b[6]
		}
		if len(b) >= 24 {
			p.Src = netip.AddrFrom16([16]byte(b[8:24]))
		}
		p.Status = StatusTruncated
		return
	}
	p.Src = netip.AddrFrom16([16]byte(b[8:24]))
	p.Dst = netip.AddrFrom16([16]byte(b[24:40]))

	next := b[6]
	end := ipv6HeaderLen + int(binary.BigEndian.Uint16(b[4:6]))
	if end == ipv6HeaderLen && next == protoHopByHop {
		// A jumbogram (RFC 2675) carries its length in a Hop-by-Hop
		// option. The kernel has already checked that option before any
		// hook sees the packet, so the buffer is the packet.
		end = len(b)
	}
	truncated := end > len(b)
	if truncated {
		end = len(b)
	}
	p.walk6(b[:end], next)
	if truncated && p.Status == StatusOK {
		p.Status = StatusTruncated
	}
	if p.Src.Is4In6() || p.Dst.Is4In6() {
		// An IPv4-mapped address (::ffff:192.0.2.1) never belongs on the
		// wire (RFC 4291 2.5.5.2), yet Linux delivers such a datagram to
		// a dual-stack socket as if it came from the IPv4 address, which
		// the IPv4 lists and rules would not have judged. Refusing it
		// keeps one address one verdict.
		p.Status = StatusMalformed
	}
}

// walk6 follows the extension header chain of the IPv6 packet pkt, whose
// fixed header announces next, and decodes the transport header it ends at.
// Proto always holds the header being read, so a packet cut short inside an
// extension header still says which one.
func (p *Packet) walk6(pkt []byte, next uint8) {
	off := ipv6HeaderLen
	for seen := 0; ; seen++ {
		p.Proto = next
		var hdrLen int
		switch next {
		case protoHopByHop, protoRouting, protoDstOpts, protoAH:
			if next == protoHopByHop && seen > 0 {
				// RFC 8200 4.1: Hop-by-Hop only ever follows the fixed
				// header; the kernel discards it anywhere else.
				p.Status = StatusMalformed
				return
			}
			if seen == maxIPv6ExtHeaders {
				p.Status = StatusMalformed
				return
			}
			if len(pkt)-off < 2 {
				p.Status = StatusTruncated
				return
			}
			if next == protoAH {
				hdrLen = (int(pkt[off+1]) + 2) * 4 // RFC 4302: 4-octet units, minus 2
			} else {
				hdrLen = (int(pkt[off+1]) + 1) * 8 // 8-octet units, not counting the first 8
			}
		case protoFragment:
			if seen == maxIPv6ExtHeaders {
				p.Status = StatusMalformed
				return
			}
			hdrLen = ipv6FragHeaderLen
		default:
			// The transport header, or ESP / No Next Header / a protocol
			// pfw does not read, which decodeTransport leaves without ports.
			p.decodeTransport(pkt[off:])
			return
		}
		if len(pkt)-off < hdrLen {
			p.Status = StatusTruncated
			return
		}
		if next == protoFragment {
			field := binary.BigEndian.Uint16(pkt[off+2 : off+4])
			// An atomic fragment (offset 0, M clear, RFC 6946) is a
			// whole packet, so it does not count as a fragment.
			if field&(ipv6FragOffset|ipv6FragMore) != 0 {
				p.Fragment = true
			}
			p.FragOffset = field & ipv6FragOffset
		}
		next = pkt[off]
		off += hdrLen
		if p.FragOffset != 0 {
			// What follows the Fragment header of a non-first fragment
			// is payload, not headers: stop walking.
			p.Proto = next
			p.decodeTransport(pkt[off:])
			return
		}
	}
}
