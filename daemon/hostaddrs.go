package daemon

import (
	"net"
	"net/netip"
)

// hostAddrs returns this host's own addresses (in pfwd's network
// namespace), loopback aside: the intel Manager refuses feed entries that
// cover one, which would cut the host off its own network. An error
// listing them yields none: the whitelist and the other checks still
// apply.
func hostAddrs() []netip.Addr {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []netip.Addr
	for _, a := range addrs {
		ipn, ok := a.(*net.IPNet)
		if !ok {
			continue
		}
		ip, ok := netip.AddrFromSlice(ipn.IP)
		if !ok || ip.Unmap().IsLoopback() {
			continue
		}
		out = append(out, ip.Unmap())
	}
	return out
}
