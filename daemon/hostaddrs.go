package daemon

import (
	"net"
	"net/netip"
)

// interfaceAddrs returns the addresses of this host's interfaces (in
// pfwd's network namespace), IPv4-mapped ones unmapped; none when they
// cannot be listed.
func interfaceAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok {
			if ip, ok := netip.AddrFromSlice(n.IP); ok {
				out = append(out, ip.Unmap())
			}
		}
	}
	return out
}

// localAddrs is the set of this host's addresses: a flow between two of
// them is host-local, which pfw never filters.
func localAddrs() map[netip.Addr]bool {
	out := map[netip.Addr]bool{}
	for _, a := range interfaceAddrs() {
		out[a] = true
	}
	return out
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
