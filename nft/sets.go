package nft

import (
	"fmt"
	"net/netip"

	"github.com/google/nftables"
	"golang.org/x/sys/unix"
)

// List names an address list. Each list is held in two interval sets, one
// per IP family: list "blacklist" is the sets blacklist_v4 and blacklist_v6.
type List string

// The lists, in the order the chains consult them.
const (
	Whitelist List = "whitelist" // accepted in the kernel, never queued
	Blacklist List = "blacklist" // logged (rate-limited) and dropped
	Intel     List = "intel"     // threat feed entries: logged and dropped
)

// Lists is every List, in chain order.
var Lists = []List{Whitelist, Blacklist, Intel}

// family is what the ruleset needs to know about an IP family.
type family struct {
	suffix  string // of the set names: "_v4"
	nfproto byte   // meta nfproto value
	keyType nftables.SetDatatype
	// Offsets of the source and destination address in the network header.
	srcOffset, dstOffset uint32
	addrLen              int
}

var (
	ipv4 = family{suffix: "_v4", nfproto: unix.NFPROTO_IPV4, keyType: nftables.TypeIPAddr, srcOffset: 12, dstOffset: 16, addrLen: 4}
	ipv6 = family{suffix: "_v6", nfproto: unix.NFPROTO_IPV6, keyType: nftables.TypeIP6Addr, srcOffset: 8, dstOffset: 24, addrLen: 16}

	families = []family{ipv4, ipv6}
)

// SetName is the name of the kernel set holding l's addresses of one family
// (v6 false: IPv4).
func SetName(l List, v6 bool) string {
	if v6 {
		return string(l) + ipv6.suffix
	}
	return string(l) + ipv4.suffix
}

func setName(l List, f family) string { return string(l) + f.suffix }

func validList(l List) bool {
	for _, k := range Lists {
		if k == l {
			return true
		}
	}
	return false
}

// splitFamilies validates prefixes and sorts them by family, masked, with
// IPv4-mapped IPv6 prefixes (::ffff:192.0.2.0/120) turned into IPv4 ones so a
// v4 packet meets them in the v4 set.
func splitFamilies(l List, prefixes []netip.Prefix) (v4, v6 []netip.Prefix, err error) {
	n4 := 0 // size both lists once: a feed has 100,000 entries
	for _, p := range prefixes {
		if p.Addr().Is4() || p.Addr().Is4In6() {
			n4++
		}
	}
	v4, v6 = make([]netip.Prefix, 0, n4), make([]netip.Prefix, 0, len(prefixes)-n4)
	for i, p := range prefixes {
		if !p.IsValid() {
			return nil, nil, fmt.Errorf("%s[%d]: %q is not a valid prefix", l, i, p)
		}
		if p.Addr().Is4In6() && p.Bits() >= 96 {
			p = netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
		}
		p = p.Masked()
		if p.Addr().Is4() {
			v4 = append(v4, p)
		} else {
			v6 = append(v6, p)
		}
	}
	return v4, v6, nil
}
