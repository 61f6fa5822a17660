package daemon

import (
	"net"
	"net/netip"
)

// interfaceAddrs returns the addresses of this host's interfaces (in
// pfwd's network namespace), IPv4-mapped ones unmapped; none when they
// cannot be listed.
func interfaceAddrs() []netip.Addr {
	var out []netip.Addr
	for _, p := range interfacePrefixes() {
		out = append(out, p.Addr())
	}
	return out
}

// interfacePrefixes is interfaceAddrs with each address's prefix length.
func interfacePrefixes() []netip.Prefix {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Prefix
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				ip = ip.Unmap()
				ones, _ := n.Mask.Size()
				if ip.Is4() && ones > 32 {
					ones -= 96 // a mask given in 16 bytes
				}
				out = append(out, netip.PrefixFrom(ip, ones))
			}
		}
	}
	return out
}

// hostDests is what a packet for this host itself may be addressed to:
// its own addresses, multicast, the limited broadcast and the broadcast
// address of each of its IPv4 subnets. Any other destination is another
// host's, reached through this one (forwarded or NATed).
type hostDests struct{ own, broadcast map[netip.Addr]bool } // own: a flow between two of them is host-local, which pfw never filters

func localDests() hostDests {
	d := hostDests{own: map[netip.Addr]bool{}, broadcast: map[netip.Addr]bool{}}
	for _, p := range interfacePrefixes() {
		d.own[p.Addr()] = true
		if p.Addr().Is4() && p.Bits() < 31 {
			d.broadcast[lastAddr4(p)] = true
		}
	}
	return d
}

// forHost reports whether a packet to a is for this host.
func (d hostDests) forHost(a netip.Addr) bool {
	return d.own[a] || d.broadcast[a] || a.IsMulticast() || a == netip.AddrFrom4([4]byte{255, 255, 255, 255})
}

// lastAddr4 is the last address of an IPv4 prefix: its broadcast address.
func lastAddr4(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().As4()
	host := uint32(1)<<(32-p.Bits()) - 1
	for i := range 4 {
		b[i] |= byte(host >> (8 * (3 - i)))
	}
	return netip.AddrFrom4(b)
}

// hostAddrs returns this host's own addresses, loopback aside: the intel
// Manager refuses feed entries that cover one, which would cut the host
// off its own network. When they cannot be listed there are none: the
// whitelist and the other checks still apply.
func hostAddrs() []netip.Addr {
	var out []netip.Addr
	for _, a := range interfaceAddrs() {
		if !a.IsLoopback() {
			out = append(out, a)
		}
	}
	return out
}
