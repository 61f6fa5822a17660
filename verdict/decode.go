package verdict

// Decode reads the raw IP packet in b, as NFQUEUE hands it over (no
// link-layer header), into p.
//
// It overwrites every field of p, so one Packet can be reused for every
// packet a worker sees; it never allocates, never panics and keeps no
// reference to b. Bad input is not an error but a Status: the buffer ending
// inside a header gives StatusTruncated, a header contradicting the buffer or
// the spec gives StatusMalformed, and anything that is not IPv4 or IPv6
// (including an empty buffer) gives StatusUnknown. Whatever could be read
// before decoding stopped (addresses, protocol, fragment fields) stays filled
// in so the packet can still be logged.
//
// When the IP header announces more bytes than b holds (NFQUEUE copied less
// than the whole packet), the headers that are present are still decoded,
// ports included, but Status is StatusTruncated.
//
// IPv4 options and the IPv6 Hop-by-Hop, Routing, Destination Options,
// Fragment and Authentication headers are walked to reach the transport
// header; ESP, No Next Header and every other protocol end the walk with
// Proto set to that protocol and no ports. A non-first fragment carries no
// transport header, so it never has ports.
func (p *Packet) Decode(b []byte) {
	*p = Packet{Length: len(b)}
	if len(b) == 0 {
		p.Status = StatusUnknown
		return
	}
	switch b[0] >> 4 {
	case 4:
		p.decode4(b)
	case 6:
		p.decode6(b)
	default:
		p.Status = StatusUnknown
	}
}
