package verdict

import (
	"net/netip"
	"testing"

	"github.com/google/go-cmp/cmp"
)

func TestFirstPacket(t *testing.T) {
	v4a, v4b := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("192.0.2.1")
	v6a, v6b := netip.MustParseAddr("2001:db8::7"), netip.MustParseAddr("2001:db8::1")
	tests := []struct {
		name         string
		proto        uint8
		src, dst     netip.Addr
		sport, dport uint16
		want         Packet
	}{
		{"tcp v4: SYN with ports", ProtoTCP, v4a, v4b, 49152, 23,
			Packet{Status: StatusOK, Version: 4, Proto: ProtoTCP, Src: v4a, Dst: v4b, SrcPort: 49152, DstPort: 23, HasPorts: true, TCPFlags: TCPSyn}},
		{"tcp v6", ProtoTCP, v6a, v6b, 40000, 445,
			Packet{Status: StatusOK, Version: 6, Proto: ProtoTCP, Src: v6a, Dst: v6b, SrcPort: 40000, DstPort: 445, HasPorts: true, TCPFlags: TCPSyn}},
		{"tcp port 0 is a port", ProtoTCP, v4a, v4b, 0, 0,
			Packet{Status: StatusOK, Version: 4, Proto: ProtoTCP, Src: v4a, Dst: v4b, HasPorts: true, TCPFlags: TCPSyn}},
		{"udp: ports, no flags", ProtoUDP, v4a, v4b, 5353, 27015,
			Packet{Status: StatusOK, Version: 4, Proto: ProtoUDP, Src: v4a, Dst: v4b, SrcPort: 5353, DstPort: 27015, HasPorts: true}},
		{"icmp: ports ignored", ProtoICMP, v4a, v4b, 1, 2,
			Packet{Status: StatusOK, Version: 4, Proto: ProtoICMP, Src: v4a, Dst: v4b}},
		{"icmpv6", ProtoICMPv6, v6a, v6b, 0, 0,
			Packet{Status: StatusOK, Version: 6, Proto: ProtoICMPv6, Src: v6a, Dst: v6b}},
		{"ipv4-mapped source: malformed, as decoded", ProtoUDP, netip.MustParseAddr("::ffff:198.51.100.7"), v6b, 53, 53,
			Packet{Status: StatusMalformed, Version: 6, Proto: ProtoUDP, Src: netip.MustParseAddr("::ffff:198.51.100.7"), Dst: v6b, SrcPort: 53, DstPort: 53, HasPorts: true}},
		{"another protocol (GRE)", 47, v6a, v6b, 1, 2,
			Packet{Status: StatusOK, Version: 6, Proto: 47, Src: v6a, Dst: v6b}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := FirstPacket(tt.proto, tt.src, tt.dst, tt.sport, tt.dport)
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("FirstPacket (-want +got):\n%s", diff)
			}
		})
	}
}

// FirstPacket is what decoding the real first packet of the flow gives,
// but for the buffer's length, so a flow is decided as its first packet
// was.
func TestFirstPacketIsTheDecodedOne(t *testing.T) {
	tests := []struct {
		name  string
		bytes []byte
		proto uint8
		src   string
		dst   string
	}{
		{"tcp4 SYN", tcp4("198.51.100.7", "192.0.2.1", 49152, 23, TCPSyn), ProtoTCP, "198.51.100.7", "192.0.2.1"},
		{"tcp6 SYN", tcp6("2001:db8::7", "2001:db8::1", 49152, 445, TCPSyn), ProtoTCP, "2001:db8::7", "2001:db8::1"},
		{"udp4", udp4("198.51.100.7", "192.0.2.1", 5353, 27015), ProtoUDP, "198.51.100.7", "192.0.2.1"},
		{"udp6", udp6("2001:db8::7", "2001:db8::1", 5353, 27015), ProtoUDP, "2001:db8::7", "2001:db8::1"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := *decoded(tt.bytes)
			want.Length = 0
			got := FirstPacket(tt.proto, netip.MustParseAddr(tt.src), netip.MustParseAddr(tt.dst), want.SrcPort, want.DstPort)
			if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
				t.Errorf("FirstPacket vs Decode (-decoded +FirstPacket):\n%s", diff)
			}
		})
	}
}
