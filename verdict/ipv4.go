package verdict

import (
	"encoding/binary"
	"net/netip"
)

const (
	ipv4MinHeaderLen = 20     // IHL 5, no options
	ipv4FlagMF       = 0x2000 // More Fragments, in the flags/offset word
	ipv4OffsetMask   = 0x1fff // fragment offset in 8-byte units
)

// decode4 decodes an IPv4 packet; b is non-empty and its version nibble is 4.
//
// The header checksum is not verified: the kernel drops inbound packets
// with a bad one before any netfilter hook, and outbound ones are its own.
func (p *Packet) decode4(b []byte) {
	p.Version = 4
	if len(b) < ipv4MinHeaderLen {
		// Keep what the short buffer still holds, so a log row can say
		// who sent it.
		if len(b) >= 10 {
			p.Proto = b[9]
		}
		if len(b) >= 16 {
			p.Src = netip.AddrFrom4([4]byte(b[12:16]))
		}
		p.Status = StatusTruncated
		return
	}
	p.Proto = b[9]
	p.Src = netip.AddrFrom4([4]byte(b[12:16]))
	p.Dst = netip.AddrFrom4([4]byte(b[16:20]))

	frag := binary.BigEndian.Uint16(b[6:8])
	p.Fragment = frag&(ipv4FlagMF|ipv4OffsetMask) != 0
	p.FragOffset = (frag & ipv4OffsetMask) * 8 // in bytes; 0x1fff*8 fits a uint16

	hdrLen := int(b[0]&0x0f) * 4
	totalLen := int(binary.BigEndian.Uint16(b[2:4]))
	switch {
	case hdrLen < ipv4MinHeaderLen || totalLen < hdrLen:
		p.Status = StatusMalformed
		return
	case hdrLen > len(b):
		p.Status = StatusTruncated
		return
	}
	// The total length, not the buffer, ends the packet: anything after it
	// is not part of the datagram.
	end, truncated := totalLen, false
	if totalLen > len(b) {
		end, truncated = len(b), true
	}
	p.decodeTransport(b[hdrLen:end])
	if truncated && p.Status == StatusOK {
		p.Status = StatusTruncated
	}
}
