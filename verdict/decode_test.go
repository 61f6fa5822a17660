package verdict

import (
	"bytes"
	"encoding/binary"
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

// packetDiff is cmp.Diff for decoded packets; netip.Addr has unexported
// fields, so it is compared with ==.
func packetDiff(want, got Packet) string {
	return cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b }))
}

// edited returns a copy of b changed by edit, leaving b as it was.
func edited(b []byte, edit func(b []byte)) []byte {
	c := bytes.Clone(b)
	edit(c)
	return c
}

// concat joins byte slices into a new one.
func concat(parts ...[]byte) []byte {
	return bytes.Join(parts, nil)
}

func TestDecode(t *testing.T) {
	const (
		src4, dst4 = "192.0.2.1", "198.51.100.2"
		src6, dst6 = "2001:db8::1", "2001:db8:ffff::2"
	)
	s4, d4 := netip.MustParseAddr(src4), netip.MustParseAddr(dst4)
	s6, d6 := netip.MustParseAddr(src6), netip.MustParseAddr(dst6)
	tcpSeg := func(sport, dport uint16, flags uint8) []byte {
		return tcpSegment(sport, dport, flags)
	}
	payload := func(n int) []byte { return bytes.Repeat([]byte{0xab}, n) }
	manyDstOpts := func(n int) []ext6 {
		exts := make([]ext6, n)
		for i := range exts {
			exts[i] = dstOpts()
		}
		return exts
	}
	// setLen4 and setLen6 rewrite the length field of an IPv4 or IPv6 header.
	setLen4 := func(n uint16) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint16(b[2:4], n) }
	}
	setLen6 := func(n uint16) func([]byte) {
		return func(b []byte) { binary.BigEndian.PutUint16(b[4:6], n) }
	}

	tests := []struct {
		name string
		in   []byte
		want Packet
	}{
		// Each protocol, as it usually arrives.
		{
			name: "tcp4 syn",
			in:   tcp4(src4, dst4, 40000, 22, TCPSyn),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, SrcPort: 40000, DstPort: 22, HasPorts: true, TCPFlags: TCPSyn, Length: 40},
		},
		{
			name: "udp4",
			in:   udp4(src4, dst4, 5353, 53),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: s4, Dst: d4, SrcPort: 5353, DstPort: 53, HasPorts: true, Length: 32},
		},
		{
			name: "icmp4 echo request",
			in:   icmp4(src4, dst4, 8, 0),
			want: Packet{Version: 4, Proto: ProtoICMP, Src: s4, Dst: d4, ICMPType: 8, Length: 28},
		},
		{
			name: "icmp4 port unreachable",
			in:   icmp4(src4, dst4, 3, 3),
			want: Packet{Version: 4, Proto: ProtoICMP, Src: s4, Dst: d4, ICMPType: 3, ICMPCode: 3, Length: 28},
		},
		{
			name: "tcp6 syn-ack",
			in:   tcp6(src6, dst6, 443, 51000, TCPSyn|TCPAck),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, SrcPort: 443, DstPort: 51000, HasPorts: true, TCPFlags: TCPSyn | TCPAck, Length: 60},
		},
		{
			name: "udp6",
			in:   udp6(src6, dst6, 546, 547),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: s6, Dst: d6, SrcPort: 546, DstPort: 547, HasPorts: true, Length: 52},
		},
		{
			name: "icmp6 echo request",
			in:   icmp6(src6, dst6, 128, 0),
			want: Packet{Version: 6, Proto: ProtoICMPv6, Src: s6, Dst: d6, ICMPType: 128, Length: 48},
		},
		{
			name: "gre4 has no ports",
			in:   ipv4Packet(src4, dst4, 47, nil, 0, payload(8)),
			want: Packet{Version: 4, Proto: 47, Src: s4, Dst: d4, Length: 28},
		},
		{
			name: "esp4 has no ports",
			in:   ipv4Packet(src4, dst4, 50, nil, 0, payload(16)),
			want: Packet{Version: 4, Proto: 50, Src: s4, Dst: d4, Length: 36},
		},

		// IPv4 options are skipped.
		{
			name: "ipv4 router alert option",
			in:   ipv4WithOptions(src4, dst4, []byte{0x94, 0x04, 0, 0}, ProtoTCP, tcpSeg(1, 2, TCPRst)),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPRst, Length: 44},
		},
		{
			name: "ipv4 40 bytes of options",
			in:   ipv4WithOptions(src4, dst4, bytes.Repeat([]byte{1}, 40), ProtoUDP, udpDatagram(7, 9)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: s4, Dst: d4, SrcPort: 7, DstPort: 9, HasPorts: true, Length: 72},
		},

		// IPv4 fragments.
		{
			name: "ipv4 first fragment has ports",
			in:   ipv4Fragment(src4, dst4, ProtoTCP, 0, true, concat(tcpSeg(40000, 80, TCPAck), payload(1460))),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, SrcPort: 40000, DstPort: 80, HasPorts: true, TCPFlags: TCPAck, Fragment: true, Length: 1500},
		},
		{
			name: "ipv4 last fragment has none",
			in:   ipv4Fragment(src4, dst4, ProtoUDP, 1480, false, payload(100)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: s4, Dst: d4, Fragment: true, FragOffset: 1480, Length: 120},
		},
		{
			name: "ipv4 middle fragment of tcp",
			in:   ipv4Fragment(src4, dst4, ProtoTCP, 24, true, payload(64)),
			want: Packet{Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Fragment: true, FragOffset: 24, Length: 84},
		},
		{
			name: "ipv4 fragment overlapping the tcp header",
			in:   ipv4Fragment(src4, dst4, ProtoTCP, 8, false, payload(32)),
			want: Packet{Status: StatusMalformed, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Fragment: true, FragOffset: 8, Length: 52},
		},
		{
			name: "ipv4 fragment at 8 is fine for udp",
			in:   ipv4Fragment(src4, dst4, ProtoUDP, 8, false, payload(32)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: s4, Dst: d4, Fragment: true, FragOffset: 8, Length: 52},
		},
		{
			name: "ipv4 tiny first fragment hides the ports",
			in:   ipv4Fragment(src4, dst4, ProtoTCP, 0, true, tcpSeg(40000, 23, TCPSyn)[:8]),
			want: Packet{Status: StatusTruncated, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Fragment: true, Length: 28},
		},
		{
			name: "ipv4 highest fragment offset",
			in:   ipv4Fragment(src4, dst4, ProtoUDP, 0x1fff*8, false, payload(8)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: s4, Dst: d4, Fragment: true, FragOffset: 65528, Length: 28},
		},

		// IPv6 extension headers and fragments.
		{
			name: "ipv6 first fragment has ports",
			in:   ipv6WithExt(src6, dst6, []ext6{fragment6(0, true)}, ProtoTCP, concat(tcpSeg(40000, 80, TCPAck), payload(1200))),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, SrcPort: 40000, DstPort: 80, HasPorts: true, TCPFlags: TCPAck, Fragment: true, Length: 1268},
		},
		{
			name: "ipv6 last fragment has none",
			in:   ipv6WithExt(src6, dst6, []ext6{fragment6(1232, false)}, ProtoUDP, payload(100)),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: s6, Dst: d6, Fragment: true, FragOffset: 1232, Length: 148},
		},
		{
			name: "ipv6 fragment overlapping the tcp header",
			in:   ipv6WithExt(src6, dst6, []ext6{fragment6(16, false)}, ProtoTCP, payload(100)),
			want: Packet{Status: StatusMalformed, Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, Fragment: true, FragOffset: 16, Length: 148},
		},
		{
			name: "ipv6 atomic fragment is a whole packet",
			in:   ipv6WithExt(src6, dst6, []ext6{fragment6(0, false)}, ProtoUDP, udpDatagram(1000, 2000)),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: s6, Dst: d6, SrcPort: 1000, DstPort: 2000, HasPorts: true, Length: 60},
		},
		{
			name: "ipv6 hop-by-hop routing dstopts fragment chain",
			in: ipv6WithExt(src6, dst6, []ext6{hopByHop(), routing(), dstOpts(), fragment6(0, true)}, ProtoTCP,
				concat(tcpSeg(5000, 443, TCPSyn), payload(64))),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, SrcPort: 5000, DstPort: 443, HasPorts: true, TCPFlags: TCPSyn, Fragment: true, Length: 40 + 8 + 24 + 16 + 8 + 20 + 64},
		},
		{
			name: "ipv6 non-first fragment stops the walk",
			// The Destination Options header after the Fragment header
			// belongs to the first fragment; here the bytes are payload.
			in:   ipv6WithExt(src6, dst6, []ext6{hopByHop(), routing(), fragment6(512, true), dstOpts()}, ProtoTCP, payload(64)),
			want: Packet{Version: 6, Proto: protoDstOpts, Src: s6, Dst: d6, Fragment: true, FragOffset: 512, Length: 40 + 8 + 24 + 8 + 16 + 64},
		},
		{
			name: "ipv6 authentication header",
			in:   ipv6WithExt(src6, dst6, []ext6{authHeader()}, ProtoUDP, udpDatagram(500, 4500)),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: s6, Dst: d6, SrcPort: 500, DstPort: 4500, HasPorts: true, Length: 40 + 24 + 12},
		},
		{
			name: "ipv6 hop-by-hop then esp",
			in:   ipv6WithExt(src6, dst6, []ext6{hopByHop()}, 50, payload(32)),
			want: Packet{Version: 6, Proto: 50, Src: s6, Dst: d6, Length: 40 + 8 + 32},
		},
		{
			name: "ipv6 no next header",
			in:   ipv6WithExt(src6, dst6, []ext6{dstOpts()}, 59, nil),
			want: Packet{Version: 6, Proto: 59, Src: s6, Dst: d6, Length: 56},
		},
		{
			name: "ipv6 eight extension headers",
			in:   ipv6WithExt(src6, dst6, manyDstOpts(8), ProtoTCP, tcpSeg(1, 2, TCPFin)),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPFin, Length: 40 + 8*16 + 20},
		},
		{
			name: "ipv6 nine extension headers",
			in:   ipv6WithExt(src6, dst6, manyDstOpts(9), ProtoTCP, tcpSeg(1, 2, TCPFin)),
			want: Packet{Status: StatusMalformed, Version: 6, Proto: protoDstOpts, Src: s6, Dst: d6, Length: 40 + 9*16 + 20},
		},
		{
			name: "ipv6 nine headers ending in a fragment",
			in:   ipv6WithExt(src6, dst6, append(manyDstOpts(8), fragment6(0, true)), ProtoTCP, tcpSeg(1, 2, TCPFin)),
			want: Packet{Status: StatusMalformed, Version: 6, Proto: protoFragment, Src: s6, Dst: d6, Length: 40 + 8*16 + 8 + 20},
		},
		{
			name: "ipv6 hop-by-hop not first",
			in:   ipv6WithExt(src6, dst6, []ext6{dstOpts(), hopByHop()}, ProtoTCP, tcpSeg(1, 2, TCPSyn)),
			want: Packet{Status: StatusMalformed, Version: 6, Proto: protoHopByHop, Src: s6, Dst: d6, Length: 40 + 16 + 8 + 20},
		},
		{
			name: "ipv6 jumbogram takes its length from the buffer",
			in:   edited(ipv6WithExt(src6, dst6, []ext6{hopByHop()}, ProtoTCP, tcpSeg(1, 2, TCPAck)), setLen6(0)),
			want: Packet{Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPAck, Length: 68},
		},
		{
			name: "ipv6 ipv4-mapped source",
			in:   udp6("::ffff:192.0.2.1", dst6, 53, 5353),
			want: Packet{Status: StatusMalformed, Version: 6, Proto: ProtoUDP, Src: netip.MustParseAddr("::ffff:192.0.2.1"), Dst: d6, SrcPort: 53, DstPort: 5353, HasPorts: true, Length: 52},
		},
		{
			name: "ipv6 ipv4-mapped destination",
			in:   tcp6(src6, "::ffff:192.0.2.1", 1, 2, TCPSyn),
			want: Packet{Status: StatusMalformed, Version: 6, Proto: ProtoTCP, Src: s6, Dst: netip.MustParseAddr("::ffff:192.0.2.1"), SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPSyn, Length: 60},
		},
		{
			name: "ipv6 ipv4-compatible source is an ordinary address",
			in:   udp6("::192.0.2.1", dst6, 53, 5353),
			want: Packet{Version: 6, Proto: ProtoUDP, Src: netip.MustParseAddr("::192.0.2.1"), Dst: d6, SrcPort: 53, DstPort: 5353, HasPorts: true, Length: 52},
		},
		{
			name: "ipv6 payload length zero without hop-by-hop",
			in:   edited(tcp6(src6, dst6, 1, 2, TCPAck), setLen6(0)),
			want: Packet{Status: StatusTruncated, Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, Length: 60},
		},

		// Lengths that disagree with the buffer.
		{
			name: "ipv4 total length beyond the buffer",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), setLen4(1500)),
			want: Packet{Status: StatusTruncated, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPSyn, Length: 40},
		},
		{
			name: "ipv4 trailing bytes after total length",
			in:   concat(udp4(src4, dst4, 53, 5353), payload(20)),
			want: Packet{Version: 4, Proto: ProtoUDP, Src: s4, Dst: d4, SrcPort: 53, DstPort: 5353, HasPorts: true, Length: 52},
		},
		{
			name: "ipv4 total length ends inside the tcp header",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), setLen4(30)),
			want: Packet{Status: StatusTruncated, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Length: 40},
		},
		{
			name: "ipv4 total length shorter than the header",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), setLen4(16)),
			want: Packet{Status: StatusMalformed, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Length: 40},
		},
		{
			name: "ipv4 IHL below 5",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), func(b []byte) { b[0] = 0x44 }),
			want: Packet{Status: StatusMalformed, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Length: 40},
		},
		{
			name: "ipv4 IHL beyond total length",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), func(b []byte) { b[0] = 0x4f }),
			want: Packet{Status: StatusMalformed, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Length: 40},
		},
		{
			name: "ipv4 options cut off by the buffer",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), func(b []byte) { b[0] = 0x4f; setLen4(100)(b) }),
			want: Packet{Status: StatusTruncated, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, Length: 40},
		},
		{
			name: "ipv4 header cut before the destination",
			in:   tcp4(src4, dst4, 1, 2, TCPSyn)[:19],
			want: Packet{Status: StatusTruncated, Version: 4, Proto: ProtoTCP, Src: s4, Length: 19},
		},
		{
			name: "ipv6 payload length beyond the buffer",
			in:   edited(udp6(src6, dst6, 1, 2), setLen6(1000)),
			want: Packet{Status: StatusTruncated, Version: 6, Proto: ProtoUDP, Src: s6, Dst: d6, SrcPort: 1, DstPort: 2, HasPorts: true, Length: 52},
		},
		{
			name: "ipv6 trailing bytes after payload length",
			in:   concat(icmp6(src6, dst6, 135, 0), payload(20)),
			want: Packet{Version: 6, Proto: ProtoICMPv6, Src: s6, Dst: d6, ICMPType: 135, Length: 68},
		},
		{
			name: "ipv6 payload length ends inside an extension header",
			in:   edited(ipv6WithExt(src6, dst6, []ext6{routing()}, ProtoTCP, tcpSeg(1, 2, 0)), setLen6(16)),
			want: Packet{Status: StatusTruncated, Version: 6, Proto: protoRouting, Src: s6, Dst: d6, Length: 84},
		},
		{
			name: "ipv6 header cut before the destination",
			in:   tcp6(src6, dst6, 1, 2, TCPSyn)[:30],
			want: Packet{Status: StatusTruncated, Version: 6, Proto: ProtoTCP, Src: s6, Length: 30},
		},

		// Broken transport headers.
		{
			name: "tcp data offset below 5",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), func(b []byte) { b[20+12] = 4 << 4 }),
			want: Packet{Status: StatusMalformed, Version: 4, Proto: ProtoTCP, Src: s4, Dst: d4, SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPSyn, Length: 40},
		},
		{
			name: "tcp options beyond the packet",
			in:   edited(tcp6(src6, dst6, 1, 2, TCPSyn), func(b []byte) { b[40+12] = 15 << 4 }),
			want: Packet{Status: StatusTruncated, Version: 6, Proto: ProtoTCP, Src: s6, Dst: d6, SrcPort: 1, DstPort: 2, HasPorts: true, TCPFlags: TCPSyn, Length: 60},
		},
		{
			name: "udp header cut short",
			in:   udp6(src6, dst6, 1, 2)[:46],
			want: Packet{Status: StatusTruncated, Version: 6, Proto: ProtoUDP, Src: s6, Dst: d6, Length: 46},
		},
		{
			name: "icmp header cut short",
			in:   edited(icmp4(src4, dst4, 8, 0), setLen4(24)),
			want: Packet{Status: StatusTruncated, Version: 4, Proto: ProtoICMP, Src: s4, Dst: d4, Length: 28},
		},

		// Not IP at all.
		{
			name: "nil",
			in:   nil,
			want: Packet{Status: StatusUnknown},
		},
		{
			name: "empty",
			in:   []byte{},
			want: Packet{Status: StatusUnknown},
		},
		{
			name: "garbage",
			in:   []byte{0xde, 0xad, 0xbe, 0xef},
			want: Packet{Status: StatusUnknown, Length: 4},
		},
		{
			name: "version 5",
			in:   edited(tcp4(src4, dst4, 1, 2, TCPSyn), func(b []byte) { b[0] = 0x55 }),
			want: Packet{Status: StatusUnknown, Length: 40},
		},
		{
			name: "version 0",
			in:   make([]byte, 60),
			want: Packet{Status: StatusUnknown, Length: 60},
		},
		{
			name: "one byte of ipv4",
			in:   []byte{0x45},
			want: Packet{Status: StatusTruncated, Version: 4, Length: 1},
		},
		{
			name: "one byte of ipv6",
			in:   []byte{0x60},
			want: Packet{Status: StatusTruncated, Version: 6, Length: 1},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in := bytes.Clone(tt.in)
			var got Packet
			got.Decode(in)
			if diff := packetDiff(tt.want, got); diff != "" {
				t.Errorf("Decode(% x) mismatch (-want +got):\n%s", tt.in, diff)
			}
			if !bytes.Equal(in, tt.in) {
				t.Errorf("Decode changed its input")
			}
		})
	}
}

// TestDecodeEveryPrefix cuts valid packets at every length: each cut must
// say Truncated (never OK, never panic) and keep the addresses it holds.
func TestDecodeEveryPrefix(t *testing.T) {
	packets := map[string][]byte{
		"tcp6": tcp6("2001:db8::1", "2001:db8::2", 1234, 443, TCPSyn),
		"tcp6 ext chain": ipv6WithExt("2001:db8::1", "2001:db8::2",
			[]ext6{hopByHop(), routing(), dstOpts(), fragment6(0, true), authHeader()}, ProtoTCP, tcpSegment(1234, 443, TCPSyn)),
		"tcp4 options": ipv4WithOptions("192.0.2.1", "192.0.2.2", []byte{0x94, 0x04, 0, 0}, ProtoTCP, tcpSegment(1234, 443, TCPSyn)),
		"udp4":         udp4("192.0.2.1", "192.0.2.2", 53, 53),
		"icmp6":        icmp6("2001:db8::1", "2001:db8::2", 1, 4),
	}
	for name, full := range packets {
		t.Run(name, func(t *testing.T) {
			var whole Packet
			whole.Decode(full)
			if whole.Status != StatusOK {
				t.Fatalf("whole packet: Status = %v, want ok", whole.Status)
			}
			srcEnd, dstEnd := 16, 20
			if whole.Version == 6 {
				srcEnd, dstEnd = 24, 40
			}
			for n := 1; n < len(full); n++ {
				var got Packet
				got.Decode(full[:n])
				if got.Status != StatusTruncated {
					t.Errorf("first %d of %d bytes: Status = %v, want truncated", n, len(full), got.Status)
				}
				if got.Version != whole.Version || got.Length != n {
					t.Errorf("first %d bytes: Version %d Length %d, want %d and %d", n, got.Version, got.Length, whole.Version, n)
				}
				if n >= srcEnd && got.Src != whole.Src {
					t.Errorf("first %d bytes: Src = %v, want %v", n, got.Src, whole.Src)
				}
				if n >= dstEnd && got.Dst != whole.Dst {
					t.Errorf("first %d bytes: Dst = %v, want %v", n, got.Dst, whole.Dst)
				}
			}
		})
	}
}

// TestDecodeResets decodes into a Packet still holding another packet's
// fields: nothing of the earlier packet may survive.
func TestDecodeResets(t *testing.T) {
	full := ipv6WithExt("2001:db8::1", "2001:db8::2", []ext6{fragment6(0, true)}, ProtoTCP, tcpSegment(1, 2, TCPSyn|TCPAck))
	for _, in := range [][]byte{nil, {0x45}, {0x60}, icmp4("192.0.2.1", "192.0.2.2", 0, 0), udp6("::1", "::2", 3, 4)} {
		var fresh, reused Packet
		fresh.Decode(in)
		reused.Decode(full)
		reused.Decode(in)
		if diff := packetDiff(fresh, reused); diff != "" {
			t.Errorf("Decode(% x) over an earlier packet (-fresh +reused):\n%s", in, diff)
		}
	}
}

// TestDecodeAllocs holds Decode to its promise of never allocating: it runs
// once per queued packet.
func TestDecodeAllocs(t *testing.T) {
	for name, in := range decodeBenchPackets() {
		var p Packet
		if allocs := testing.AllocsPerRun(1000, func() { p.Decode(in) }); allocs != 0 {
			t.Errorf("Decode(%s) allocates %v times per packet, want 0", name, allocs)
		}
	}
}

// TestPacketBuilders checks the builders' checksums the way a receiver
// does: summing a header or message including its checksum gives zero.
func TestPacketBuilders(t *testing.T) {
	for _, tt := range []struct {
		name string
		in   []byte
	}{
		{"tcp4", tcp4("192.0.2.1", "192.0.2.2", 1, 2, TCPSyn)},
		{"udp4", udp4("192.0.2.1", "192.0.2.2", 1, 2)},
		{"icmp4", icmp4("192.0.2.1", "192.0.2.2", 8, 0)},
		{"tcp6", tcp6("2001:db8::1", "2001:db8::2", 1, 2, TCPSyn)},
		{"udp6", udp6("2001:db8::1", "2001:db8::2", 1, 2)},
		{"icmp6", icmp6("2001:db8::1", "2001:db8::2", 128, 0)},
	} {
		t.Run(tt.name, func(t *testing.T) {
			var p Packet
			p.Decode(tt.in)
			hdrLen := ipv6HeaderLen
			if p.Version == 4 {
				hdrLen = ipv4MinHeaderLen
				if c := inetChecksum(0, tt.in[:hdrLen]); c != 0 {
					t.Errorf("IPv4 header checksum does not verify (%#04x)", c)
				}
			}
			l4 := tt.in[hdrLen:]
			var pseudo uint32
			if p.Proto != ProtoICMP {
				pseudo = inetSum(inetSum(0, p.Src.AsSlice()), p.Dst.AsSlice()) + uint32(p.Proto) + uint32(len(l4))
			}
			if c := inetChecksum(pseudo, l4); c != 0 {
				t.Errorf("transport checksum does not verify (%#04x)", c)
			}
		})
	}
}

// decodeBenchPackets are the packets the allocation test and the benchmark
// decode: the common case and the longest paths through the decoder.
func decodeBenchPackets() map[string][]byte {
	return map[string][]byte{
		"tcp4": tcp4("192.0.2.1", "198.51.100.2", 40000, 443, TCPSyn),
		"udp6": udp6("2001:db8::1", "2001:db8::2", 5353, 53),
		"ipv6-ext": ipv6WithExt("2001:db8::1", "2001:db8::2",
			[]ext6{hopByHop(), routing(), dstOpts(), fragment6(0, true), authHeader()}, ProtoTCP, tcpSegment(40000, 443, TCPSyn)),
		"fragment": ipv4Fragment("192.0.2.1", "198.51.100.2", ProtoUDP, 1480, false, bytes.Repeat([]byte{0xab}, 512)),
		"garbage":  {0xde, 0xad, 0xbe, 0xef},
	}
}

func BenchmarkDecode(b *testing.B) {
	packets := decodeBenchPackets()
	for _, name := range []string{"tcp4", "udp6", "ipv6-ext", "fragment"} {
		in := packets[name]
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(in)))
			var p Packet
			for b.Loop() {
				p.Decode(in)
			}
			if p.Status != StatusOK {
				b.Fatalf("%s decodes as %v", name, p.Status)
			}
		})
	}
}
