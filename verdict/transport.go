package verdict

import "encoding/binary"

// Minimum transport header lengths: the fixed part every valid header has.
const (
	tcpMinHeaderLen    = 20 // data offset 5, no options
	udpHeaderLen       = 8
	icmpv4MinHeaderLen = 8 // type, code, checksum, rest of header (RFC 792)
	icmpv6MinHeaderLen = 4 // type, code, checksum (RFC 4443 2.1)
)

// transportMinHeaderLen is the shortest header proto can have, 0 for
// protocols pfw does not read.
func transportMinHeaderLen(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return tcpMinHeaderLen
	case ProtoUDP:
		return udpHeaderLen
	case ProtoICMP:
		return icmpv4MinHeaderLen
	case ProtoICMPv6:
		return icmpv6MinHeaderLen
	default:
		return 0
	}
}

// decodeTransport decodes the header of p.Proto at the start of seg, which
// ends where the IP packet ends (or where the buffer does, if that is
// sooner). Version, Proto and the fragment fields are already set.
func (p *Packet) decodeTransport(seg []byte) {
	minLen := transportMinHeaderLen(p.Proto)
	if p.FragOffset != 0 {
		// A later fragment carries payload bytes where the header would be,
		// so reading ports from it would let the sender pick them. One that
		// starts inside the minimum header overlaps the first fragment's
		// header and can rewrite its ports or flags at reassembly (RFC 1858,
		// RFC 5722): no legitimate sender does that.
		if int(p.FragOffset) < minLen {
			p.Status = StatusMalformed
		}
		return
	}
	if len(seg) < minLen {
		// Also a first fragment too short to hold the header (RFC 1858's
		// tiny fragment attack): no ports, so no port rule can be dodged.
		p.Status = StatusTruncated
		return
	}
	switch p.Proto {
	case ProtoTCP:
		p.SrcPort = binary.BigEndian.Uint16(seg[0:2])
		p.DstPort = binary.BigEndian.Uint16(seg[2:4])
		p.TCPFlags = seg[13]
		p.HasPorts = true
		// The ports and flags sit in the fixed 20 bytes, so they stay
		// filled in even when the options behind them are broken.
		switch dataOff := int(seg[12]>>4) * 4; {
		case dataOff < tcpMinHeaderLen:
			p.Status = StatusMalformed
		case dataOff > len(seg):
			p.Status = StatusTruncated
		}
	case ProtoUDP:
		p.SrcPort = binary.BigEndian.Uint16(seg[0:2])
		p.DstPort = binary.BigEndian.Uint16(seg[2:4])
		p.HasPorts = true
	case ProtoICMP, ProtoICMPv6:
		p.ICMPType = seg[0]
		p.ICMPCode = seg[1]
		if len(seg) >= 6 {
			p.ICMPID = binary.BigEndian.Uint16(seg[4:6])
		}
	}
}
