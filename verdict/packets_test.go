package verdict

// Builders of real packet bytes, as NFQUEUE hands them over (no link-layer
// header), for every test and benchmark in the package. Lengths and every
// checksum (IPv4 header, TCP, UDP, ICMP, ICMPv6 with its pseudo-header) are
// correct, so the bytes would also pass a kernel. Fragments carry payload
// bytes whose checksum belongs to the reassembled packet and is left zero.

import (
	"encoding/binary"
	"net/netip"
)

// tcp4 is an IPv4 TCP segment with no payload and the given flags.
func tcp4(src, dst string, sport, dport uint16, flags uint8) []byte {
	return ipv4Packet(src, dst, ProtoTCP, nil, ipv4FlagDF, withChecksum(src, dst, ProtoTCP, tcpSegment(sport, dport, flags)))
}

// udp4 is an IPv4 UDP datagram with a 4-byte payload.
func udp4(src, dst string, sport, dport uint16) []byte {
	return ipv4Packet(src, dst, ProtoUDP, nil, ipv4FlagDF, withChecksum(src, dst, ProtoUDP, udpDatagram(sport, dport)))
}

// icmp4 is an IPv4 ICMP message of the given type and code with an 8-byte
// header (echo identifier and sequence zero).
func icmp4(src, dst string, typ, code uint8) []byte {
	return ipv4Packet(src, dst, ProtoICMP, nil, ipv4FlagDF, withChecksum(src, dst, ProtoICMP, icmpMessage(typ, code)))
}

// tcp6 is an IPv6 TCP segment with no payload and the given flags.
func tcp6(src, dst string, sport, dport uint16, flags uint8) []byte {
	return ipv6WithExt(src, dst, nil, ProtoTCP, withChecksum(src, dst, ProtoTCP, tcpSegment(sport, dport, flags)))
}

// udp6 is an IPv6 UDP datagram with a 4-byte payload.
func udp6(src, dst string, sport, dport uint16) []byte {
	return ipv6WithExt(src, dst, nil, ProtoUDP, withChecksum(src, dst, ProtoUDP, udpDatagram(sport, dport)))
}

// icmp6 is an IPv6 ICMPv6 message of the given type and code with an 8-byte
// header.
func icmp6(src, dst string, typ, code uint8) []byte {
	return ipv6WithExt(src, dst, nil, ProtoICMPv6, withChecksum(src, dst, ProtoICMPv6, icmpMessage(typ, code)))
}

// ipv4FlagDF is Don't Fragment, which Linux sets on most of what it sends.
const ipv4FlagDF = 0x4000

// ipv4Packet wraps payload in an IPv4 header: options (padded with zeros
// to a multiple of 4 bytes) and the flags/fragment offset word as they go
// on the wire, the offset in 8-byte units.
func ipv4Packet(src, dst string, proto uint8, options []byte, flagsOffset uint16, payload []byte) []byte {
	optLen := (len(options) + 3) &^ 3
	hdrLen := ipv4MinHeaderLen + optLen
	b := make([]byte, hdrLen+len(payload))
	b[0] = 0x40 | uint8(hdrLen/4)
	binary.BigEndian.PutUint16(b[2:4], uint16(len(b)))
	binary.BigEndian.PutUint16(b[4:6], 0x1234) // identification
	binary.BigEndian.PutUint16(b[6:8], flagsOffset)
	b[8] = 64 // TTL
	b[9] = proto
	s, d := netip.MustParseAddr(src).As4(), netip.MustParseAddr(dst).As4()
	copy(b[12:16], s[:])
	copy(b[16:20], d[:])
	copy(b[ipv4MinHeaderLen:], options)
	binary.BigEndian.PutUint16(b[10:12], inetChecksum(0, b[:hdrLen]))
	copy(b[hdrLen:], payload)
	return b
}

// ipv4WithOptions is an IPv4 packet whose header carries options.
func ipv4WithOptions(src, dst string, options []byte, proto uint8, payload []byte) []byte {
	return ipv4Packet(src, dst, proto, options, 0, payload)
}

// ipv4Fragment is one IPv4 fragment carrying payload at offset bytes (a
// multiple of 8) into the original datagram.
func ipv4Fragment(src, dst string, proto uint8, offset uint16, more bool, payload []byte) []byte {
	word := offset / 8
	if more {
		word |= ipv4FlagMF
	}
	return ipv4Packet(src, dst, proto, nil, word, payload)
}

// ext6 is one IPv6 extension header; ipv6WithExt fills in its Next Header
// byte (raw[0]) when it chains the headers.
type ext6 struct {
	proto uint8  // the next-header value that announces it
	raw   []byte // the whole header
}

// hopByHop is an 8-byte Hop-by-Hop Options header holding one PadN option.
func hopByHop() ext6 {
	return ext6{protoHopByHop, []byte{0, 0, 1, 4, 0, 0, 0, 0}}
}

// routing is a 24-byte Routing header with Segments Left 0, which a
// receiver skips whatever its type.
func routing() ext6 {
	raw := make([]byte, 24)
	raw[1] = 2   // (24 / 8) - 1
	raw[2] = 253 // routing type reserved for experiments (RFC 4727)
	return ext6{protoRouting, raw}
}

// dstOpts is a 16-byte Destination Options header padded with PadN.
func dstOpts() ext6 {
	return ext6{protoDstOpts, []byte{0, 1, 1, 12, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0}}
}

// paddedDstOpts6 is a TCP (or other) IPv6 packet behind a Destination
// Options header of n bytes (a multiple of 8) padded with one PadN option,
// announcing payload as TCP.
func paddedDstOpts6(src, dst string, n int, payload []byte) []byte {
	raw := make([]byte, n)
	raw[1] = byte(n/8 - 1)
	raw[2], raw[3] = 1, byte(n-4) // PadN filling the rest
	return ipv6WithExt(src, dst, []ext6{{protoDstOpts, raw}}, ProtoTCP, payload)
}

// fragment6 is a Fragment header for data at offset bytes (a multiple of
// 8) into the original packet.
func fragment6(offset uint16, more bool) ext6 {
	raw := make([]byte, ipv6FragHeaderLen)
	word := offset &^ 7
	if more {
		word |= ipv6FragMore
	}
	binary.BigEndian.PutUint16(raw[2:4], word)
	binary.BigEndian.PutUint32(raw[4:8], 0xcafe) // identification
	return ext6{protoFragment, raw}
}

// authHeader is a 24-byte Authentication Header with a 12-byte ICV.
func authHeader() ext6 {
	raw := make([]byte, 24)
	raw[1] = 24/4 - 2
	binary.BigEndian.PutUint32(raw[4:8], 0x100) // SPI
	binary.BigEndian.PutUint32(raw[8:12], 1)    // sequence number
	return ext6{protoAH, raw}
}

// ipv6WithExt is an IPv6 packet whose fixed header is followed by exts, in
// order, then by payload, announced as proto.
func ipv6WithExt(src, dst string, exts []ext6, proto uint8, payload []byte) []byte {
	b := make([]byte, ipv6HeaderLen, ipv6HeaderLen+len(payload)+8*len(exts))
	b[0] = 0x60
	b[7] = 64 // hop limit
	s, d := netip.MustParseAddr(src).As16(), netip.MustParseAddr(dst).As16()
	copy(b[8:24], s[:])
	copy(b[24:40], d[:])
	nextAt := 6 // where the byte announcing the following header sits
	for _, e := range exts {
		b[nextAt] = e.proto
		nextAt = len(b)
		b = append(b, e.raw...)
	}
	b[nextAt] = proto
	b = append(b, payload...)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)-ipv6HeaderLen))
	return b
}

// tcpSegment is a 20-byte TCP header, checksum left zero.
func tcpSegment(sport, dport uint16, flags uint8) []byte {
	b := make([]byte, tcpMinHeaderLen)
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	binary.BigEndian.PutUint32(b[4:8], 1000) // sequence number
	if flags&TCPAck != 0 {
		binary.BigEndian.PutUint32(b[8:12], 2000)
	}
	b[12] = 5 << 4 // data offset
	b[13] = flags
	binary.BigEndian.PutUint16(b[14:16], 65535) // window
	return b
}

// udpDatagram is a UDP header and a 4-byte payload, checksum left zero.
func udpDatagram(sport, dport uint16) []byte {
	b := make([]byte, udpHeaderLen, udpHeaderLen+4)
	binary.BigEndian.PutUint16(b[0:2], sport)
	binary.BigEndian.PutUint16(b[2:4], dport)
	b = append(b, "pfw!"...)
	binary.BigEndian.PutUint16(b[4:6], uint16(len(b)))
	return b
}

// icmpMessage is an 8-byte ICMP or ICMPv6 header, checksum left zero.
func icmpMessage(typ, code uint8) []byte {
	return []byte{typ, code, 0, 0, 0, 0, 0, 0}
}

// withChecksum fills in the checksum of the complete transport message seg,
// with the pseudo-header of src and dst where proto uses one, and returns it.
func withChecksum(src, dst string, proto uint8, seg []byte) []byte {
	var at int
	switch proto {
	case ProtoTCP:
		at = 16
	case ProtoUDP:
		at = 6
	case ProtoICMP, ProtoICMPv6:
		at = 2
	default:
		return seg
	}
	var pseudo uint32
	if proto != ProtoICMP {
		s, d := netip.MustParseAddr(src), netip.MustParseAddr(dst)
		pseudo = inetSum(pseudo, s.AsSlice())
		pseudo = inetSum(pseudo, d.AsSlice())
		pseudo += uint32(proto) + uint32(len(seg))
	}
	binary.BigEndian.PutUint16(seg[at:at+2], 0)
	c := inetChecksum(pseudo, seg)
	if c == 0 && proto == ProtoUDP {
		c = 0xffff // zero means "no checksum" in UDP (RFC 768)
	}
	binary.BigEndian.PutUint16(seg[at:at+2], c)
	return seg
}

// inetChecksum is the Internet checksum (RFC 1071) of b on top of a partial sum.
func inetChecksum(partial uint32, b []byte) uint16 {
	s := inetSum(partial, b)
	for s > 0xffff {
		s = s>>16 + s&0xffff
	}
	return ^uint16(s)
}

// inetSum adds b as big-endian 16-bit words, odd length padded with zero.
func inetSum(s uint32, b []byte) uint32 {
	for len(b) >= 2 {
		s += uint32(binary.BigEndian.Uint16(b))
		b = b[2:]
	}
	if len(b) == 1 {
		s += uint32(b[0]) << 8
	}
	return s
}
