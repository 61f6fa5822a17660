package verdict

import (
	"net/netip"

	"github.com/pfw/pfw/rules"
)

// IP protocol numbers the decoder and the matchers know by name.
const (
	ProtoICMP   uint8 = 1
	ProtoTCP    uint8 = 6
	ProtoUDP    uint8 = 17
	ProtoICMPv6 uint8 = 58
)

// TCP flag bits as they sit in the 13th byte of the TCP header.
const (
	TCPFin uint8 = 0x01
	TCPSyn uint8 = 0x02
	TCPRst uint8 = 0x04
	TCPAck uint8 = 0x10
)

// Status says how far decoding got. Anything but StatusOK still leaves the
// fields that could be read filled in, so a malformed packet can be logged
// with whatever addresses it carried.
type Status uint8

const (
	StatusOK        Status = iota // every header pfw reads was complete and sane
	StatusTruncated               // the buffer ended inside a header
	StatusMalformed               // a header field contradicts the buffer or the spec
	StatusUnknown                 // not IPv4 or IPv6
)

func (s Status) String() string {
	switch s {
	case StatusOK:
		return "ok"
	case StatusTruncated:
		return "truncated"
	case StatusMalformed:
		return "malformed"
	default:
		return "unknown"
	}
}

// Packet is one decoded IP packet as NFQUEUE hands it over (no link-layer
// header). The caller owns it and reuses it: Decode overwrites every field,
// so a worker keeps one Packet and never allocates per packet.
type Packet struct {
	Status   Status
	Version  uint8 // 4 or 6; 0 when Status is StatusUnknown
	Proto    uint8 // transport protocol after IPv6 extension headers
	Src, Dst netip.Addr
	// SrcPort and DstPort are set for TCP and UDP when HasPorts is true.
	SrcPort, DstPort uint16
	// HasPorts is false for non-first fragments, for protocols without
	// ports and for transport headers too short to hold them.
	HasPorts bool
	// Fragment is true for any fragment (first or not); FragOffset, in
	// bytes, is non-zero only for non-first fragments, which carry no L4
	// header.
	Fragment   bool
	FragOffset uint16
	TCPFlags   uint8 // valid when Proto is ProtoTCP and HasPorts
	ICMPType   uint8 // valid for ICMP and ICMPv6 when Status is StatusOK
	ICMPCode   uint8
	ICMPID     uint16 // an echo's identifier (bytes 4-5 of any ICMP header that has them)
	Length     int    // bytes in the buffer handed to Decode
}

// FirstPacket is the first packet of a flow as NFQUEUE would hand it to
// pfwd, for deciding a flow known only by its addresses, protocol and
// ports (a conntrack entry, `fwctl explain`): the version follows the
// address family of src, TCP has the SYN flag, and the ports are set only
// for TCP and UDP, the protocols that have them. A caller that does not
// know the ports of a TCP or UDP flow clears HasPorts, so that only rules
// without ports can match. Length is left 0: no decision reads it.
func FirstPacket(proto uint8, src, dst netip.Addr, sport, dport uint16) Packet {
	p := Packet{Status: StatusOK, Version: 6, Proto: proto, Src: src, Dst: dst}
	if src.Is4() {
		p.Version = 4
	}
	if proto == ProtoTCP || proto == ProtoUDP {
		p.HasPorts, p.SrcPort, p.DstPort = true, sport, dport
	}
	if proto == ProtoTCP {
		p.TCPFlags = TCPSyn
	}
	if src.Is4In6() || dst.Is4In6() {
		p.Status = StatusMalformed // as Decode judges one on the wire
	}
	return p
}

// Remote is the address at the far end: the source of an inbound packet,
// the destination of an outbound one. The lists, the feeds, the rate limit
// and the rules' src_ips all match it.
func (p *Packet) Remote(dir rules.Direction) netip.Addr {
	if dir == rules.DirOut {
		return p.Dst
	}
	return p.Src
}

// Decidable reports whether the packet carries what the rules match on:
// the addresses, the transport protocol and, for TCP and UDP, the ports (a
// non-first fragment has none and is matched by protocol only). A buffer
// cut short after those headers, as NFQUEUE's copy range does, is still
// decidable; a TCP or UDP header cut before its ports is not, and neither
// is an IPv6 packet cut inside its extension headers: its transport
// protocol is unknown, and taking the extension header for it would let a
// sender pad its way past every port rule (a 248-byte Destination Options
// header reaches past the copy range).
func (p *Packet) Decidable() bool {
	switch p.Status {
	case StatusOK:
		return true
	case StatusTruncated:
		if p.Version == 6 && p.FragOffset == 0 && isIPv6ExtHeader(p.Proto) {
			return false
		}
		return p.HasPorts || p.FragOffset != 0 || p.Proto != ProtoTCP && p.Proto != ProtoUDP
	}
	return false
}

func isIPv6ExtHeader(proto uint8) bool {
	switch proto {
	case protoHopByHop, protoRouting, protoFragment, protoAH, protoDstOpts:
		return true
	}
	return false
}
