package verdict

import (
	"bytes"
	"testing"
)

// FuzzDecode feeds Decode arbitrary bytes, as a hostile sender controls
// every byte NFQUEUE hands over, and checks the promises the decision
// pipeline builds on.
func FuzzDecode(f *testing.F) {
	for _, seed := range [][]byte{
		tcp4("192.0.2.1", "198.51.100.2", 40000, 22, TCPSyn),
		udp4("192.0.2.1", "198.51.100.2", 5353, 53),
		icmp4("192.0.2.1", "198.51.100.2", 3, 3),
		tcp6("2001:db8::1", "2001:db8::2", 443, 51000, TCPSyn|TCPAck),
		udp6("2001:db8::1", "2001:db8::2", 546, 547),
		icmp6("2001:db8::1", "2001:db8::2", 128, 0),
		ipv4WithOptions("192.0.2.1", "198.51.100.2", []byte{0x94, 0x04, 0, 0}, ProtoTCP, tcpSegment(1, 2, TCPRst)),
		ipv4Fragment("192.0.2.1", "198.51.100.2", ProtoTCP, 0, true, tcpSegment(40000, 80, TCPAck)),
		ipv4Fragment("192.0.2.1", "198.51.100.2", ProtoTCP, 8, false, bytes.Repeat([]byte{0xab}, 16)),
		ipv6WithExt("2001:db8::1", "2001:db8::2", []ext6{hopByHop(), routing(), dstOpts(), fragment6(0, true), authHeader()}, ProtoTCP, tcpSegment(5000, 443, TCPSyn)),
		ipv6WithExt("2001:db8::1", "2001:db8::2", []ext6{hopByHop(), fragment6(512, true), dstOpts()}, ProtoUDP, bytes.Repeat([]byte{0xab}, 16)),
		ipv6WithExt("2001:db8::1", "2001:db8::2", []ext6{dstOpts()}, 50, bytes.Repeat([]byte{0xab}, 16)),
		{},
		{0x45},
		{0x60},
	} {
		f.Add(seed)
	}
	earlier := tcp6("2001:db8::1", "2001:db8::2", 443, 51000, TCPSyn|TCPAck)

	f.Fuzz(func(t *testing.T, b []byte) {
		in := bytes.Clone(b)
		var p Packet
		p.Decode(b)

		if !bytes.Equal(in, b) {
			t.Fatalf("Decode changed its input")
		}
		if p.Length != len(b) {
			t.Errorf("Length = %d, want %d", p.Length, len(b))
		}
		switch p.Status {
		case StatusOK:
			if p.Version != 4 && p.Version != 6 {
				t.Errorf("Status ok with Version %d", p.Version)
			}
			if !p.Src.IsValid() || !p.Dst.IsValid() {
				t.Errorf("Status ok without both addresses: %v -> %v", p.Src, p.Dst)
			}
			if p.Version == 4 && (!p.Src.Is4() || !p.Dst.Is4()) || p.Version == 6 && (!p.Src.Is6() || !p.Dst.Is6()) {
				t.Errorf("IPv%d packet with addresses %v -> %v", p.Version, p.Src, p.Dst)
			}
		case StatusUnknown:
			if p != (Packet{Status: StatusUnknown, Length: len(b)}) {
				t.Errorf("Status unknown with fields set: %+v", p)
			}
		case StatusTruncated, StatusMalformed:
		default:
			t.Errorf("Status %d is none of the defined ones", p.Status)
		}
		if p.HasPorts {
			if p.Proto != ProtoTCP && p.Proto != ProtoUDP {
				t.Errorf("HasPorts with Proto %d", p.Proto)
			}
			if p.FragOffset != 0 {
				t.Errorf("HasPorts on a non-first fragment (offset %d)", p.FragOffset)
			}
		} else if p.SrcPort != 0 || p.DstPort != 0 || p.TCPFlags != 0 {
			t.Errorf("ports or flags set without HasPorts: %+v", p)
		}
		if p.FragOffset != 0 && !p.Fragment {
			t.Errorf("FragOffset %d on a packet that is not a fragment", p.FragOffset)
		}

		var again Packet
		again.Decode(earlier)
		again.Decode(b)
		if again != p {
			t.Errorf("Decode over an earlier packet differs from a fresh one:\nfresh:  %+v\nreused: %+v", p, again)
		}
	})
}
