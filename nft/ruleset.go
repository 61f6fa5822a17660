package nft

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"maps"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
	"golang.org/x/sys/unix"
)

// ChainPriority is the priority of the input and output base chains:
// filter + 20. See doc.go for why.
const ChainPriority = 20

// loopbackIfindex is the index of lo in every network namespace
// (LOOPBACK_IFINDEX), which is what `iif "lo"` compiles to.
const loopbackIfindex = 1

// hook is one base chain and how it finds the remote end of a packet.
type hook struct {
	chain   string
	num     *nftables.ChainHook
	ifIndex expr.MetaKey // iif / oif
	ifName  expr.MetaKey // iifname / oifname
	// remoteIsSource: the remote address is the source on input, the
	// destination on output.
	remoteIsSource bool
}

var hooks = []hook{
	{chain: "input", num: nftables.ChainHookInput, ifIndex: expr.MetaKeyIIF, ifName: expr.MetaKeyIIFNAME, remoteIsSource: true},
	{chain: "output", num: nftables.ChainHookOutput, ifIndex: expr.MetaKeyOIF, ifName: expr.MetaKeyOIFNAME},
}

func (h hook) remoteOffset(f family) uint32 {
	if h.remoteIsSource {
		return f.srcOffset
	}
	return f.dstOffset
}

// setComments say in `nft list ruleset` what each list is for.
var setComments = map[List]string{
	Whitelist: "remote addresses accepted without asking pfwd",
	Blacklist: "remote addresses dropped (configured blacklist)",
	Intel:     "remote addresses dropped (threat feeds)",
}

// newSets returns fresh set objects for a transaction that creates them.
func newSets(t *nftables.Table) map[string]*nftables.Set {
	sets := make(map[string]*nftables.Set)
	for _, l := range Lists {
		for _, f := range families {
			sets[setName(l, f)] = &nftables.Set{
				Table:    t,
				Name:     setName(l, f),
				KeyType:  f.keyType,
				Interval: true,
				Comment:  setComments[l],
			}
		}
	}
	maps.Copy(sets, newGuardSets(t))
	return sets
}

// addRuleset queues the sets, the two base chains and their rules on c. The
// table itself is queued (or already made) by the caller.
func addRuleset(c *nftables.Conn, cfg *Config, t *nftables.Table, sets map[string]*nftables.Set, queueMode string, label int) error {
	for _, l := range Lists {
		for _, f := range families {
			if err := c.AddSet(sets[setName(l, f)], nil); err != nil {
				return fmt.Errorf("add set %s: %w", setName(l, f), err)
			}
		}
	}
	for _, f := range families {
		if err := c.AddSet(sets[guardSet+f.suffix], nil); err != nil {
			return fmt.Errorf("add set %s: %w", guardSet+f.suffix, err)
		}
	}
	accept := policyPtr(nftables.ChainPolicyAccept)
	for _, h := range hooks {
		// Anonymous sets live in the rules that use them: one per chain.
		ndTypes := &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeICMP6Type}
		var mldTypes [2]*nftables.Set // one per source rule: an anonymous set belongs to one rule
		for i := range mldTypes {
			mldTypes[i] = &nftables.Set{Table: t, Anonymous: true, Constant: true, KeyType: nftables.TypeICMP6Type}
		}
		if !cfg.FilterNeighborDiscovery {
			if err := c.AddSet(ndTypes, neighborDiscoveryTypes); err != nil {
				return fmt.Errorf("add neighbor discovery set: %w", err)
			}
			for _, set := range mldTypes {
				if err := c.AddSet(set, listenerDiscoveryTypes); err != nil {
					return fmt.Errorf("add multicast listener discovery set: %w", err)
				}
			}
		}
		for _, l := range []List{Blacklist, Intel} {
			dc := c.AddChain(&nftables.Chain{Name: dropChain(h, l), Table: t})
			for _, r := range dropRules(cfg, l) {
				c.AddRule(&nftables.Rule{Table: t, Chain: dc, Exprs: r.exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment)})
			}
		}
		if h.remoteIsSource {
			gc := c.AddChain(&nftables.Chain{Name: guardChain, Table: t})
			for _, r := range guardDropRules(cfg) {
				c.AddRule(&nftables.Rule{Table: t, Chain: gc, Exprs: r.exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment)})
			}
			rc := c.AddChain(&nftables.Chain{Name: reopenChain, Table: t})
			for _, r := range append(guardRules(h, sets), queueRule(cfg, queueMode)) {
				c.AddRule(&nftables.Rule{Table: t, Chain: rc, Exprs: r.exprs, UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment)})
			}
		}
		ch := c.AddChain(&nftables.Chain{
			Name:     h.chain,
			Table:    t,
			Type:     nftables.ChainTypeFilter,
			Hooknum:  h.num,
			Priority: nftables.ChainPriorityRef(ChainPriority),
			Policy:   accept,
		})
		for _, r := range chainRules(cfg, sets, linkSets{nd: ndTypes, mld: mldTypes}, h, queueMode, label) {
			c.AddRule(&nftables.Rule{
				Table:    t,
				Chain:    ch,
				Exprs:    r.exprs,
				UserData: userdata.AppendString(nil, userdata.TypeComment, r.comment),
			})
		}
	}
	return nil
}

func policyPtr(p nftables.ChainPolicy) *nftables.ChainPolicy { return &p }

type rule struct {
	comment string
	exprs   []expr.Any
}

// chainRules is the ruleset of one chain, in the order doc.go lists it.
// linkSets are a chain's anonymous sets of ICMPv6 types that keep IPv6
// working on the link.
type linkSets struct {
	nd  *nftables.Set
	mld [2]*nftables.Set // for the link-local and the unspecified source
}

func chainRules(cfg *Config, sets map[string]*nftables.Set, link linkSets, h hook, queueMode string, label int) []rule {
	var rules []rule
	if !cfg.filtersLoopback() {
		rules = append(rules, rule{
			comment: "loopback traffic is never filtered",
			exprs: []expr.Any{
				&expr.Meta{Key: h.ifIndex, Register: 1},
				&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: binary.NativeEndian.AppendUint32(nil, loopbackIfindex)},
				accept(),
			},
		})
	}
	if len(cfg.Ifaces) > 0 {
		// One cmp per interface rather than an anonymous set: nft can only
		// print an ifname set it wrote itself (google/nftables marks every
		// anonymous set's keys big-endian, and ifname keys are strings).
		var exprs []expr.Any
		for _, name := range cfg.Ifaces {
			exprs = append(exprs,
				&expr.Meta{Key: h.ifName, Register: 1},
				&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: ifname(name)})
		}
		rules = append(rules, rule{
			comment: "only the interfaces given by --iface are filtered",
			exprs:   append(exprs, accept()),
		})
	}
	if !cfg.FilterNeighborDiscovery {
		rules = append(rules, rule{
			comment: "IPv6 neighbor discovery (hop limit 255: from this link only) is never filtered",
			exprs:   append(icmpv6OnLink(link.nd, 255), accept()),
		})
		// Multicast listener discovery (RFC 3810) goes with it: a host
		// that neither answers the router's queries nor reports its own
		// groups drops out of them where switches snoop MLD, its
		// solicited-node group among them, and neighbor discovery to it
		// fails. Its messages carry hop limit 1 and a link-local source,
		// or the unspecified one while the host has no link-local address
		// yet: no router forwards either, so they come from this link.
		for i, src := range []struct{ mask, addr []byte }{linkLocal, unspecified6} {
			rules = append(rules, rule{
				comment: "IPv6 multicast listener discovery (hop limit 1, link-local or unspecified source: from this link only) is never filtered",
				exprs: append(icmpv6OnLink(link.mld[i], 1),
					&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 8, Len: 16},
					&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: src.mask, Xor: make([]byte, 16)},
					&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: src.addr},
					accept(),
				),
			})
		}
	}
	if h.remoteIsSource {
		rules = append(rules, reopenRule())
	}
	if len(cfg.Ifaces) > 0 && label >= 0 {
		rules = append(rules, filteredRule())
	}
	for _, f := range families {
		rules = append(rules, rule{
			comment: "whitelisted remote address",
			exprs:   append(remoteIn(h, f, sets[setName(Whitelist, f)]), accept()),
		})
	}
	for _, l := range []List{Blacklist, Intel} {
		for _, f := range families {
			rules = append(rules, rule{
				comment: fmt.Sprintf("%s remote address: log and drop", listNoun[l]),
				exprs:   append(remoteIn(h, f, sets[setName(l, f)]), &expr.Verdict{Kind: expr.VerdictJump, Chain: dropChain(h, l)}),
			})
		}
	}
	rules = append(rules, establishedRule(label))
	if !cfg.QueueUnreplied {
		rules = append(rules, confirmedRule())
	}
	rules = append(rules, guardRules(h, sets)...)
	return append(rules, queueRule(cfg, queueMode))
}

// queueRule hands the packet to pfwd's queues.
func queueRule(cfg *Config, queueMode string) rule {
	return rule{
		comment: queueComment(cfg.QueueNum, cfg.QueueCount, cfg.FailClosed),
		exprs:   []expr.Any{queueExpr(queueMode, cfg.QueueNum, cfg.QueueCount, !cfg.FailClosed)},
	}
}

// neighborDiscoveryTypes are the ICMPv6 types IPv6 needs to reach its
// neighbors and routers (RFC 4861): router solicitation and advertisement,
// neighbor solicitation and advertisement. Redirect (137) is left to pfwd.
var neighborDiscoveryTypes = []nftables.SetElement{{Key: []byte{133}}, {Key: []byte{134}}, {Key: []byte{135}}, {Key: []byte{136}}}

// icmpv6OnLink matches ICMPv6 messages of a type in types with hop limit
// hopLimit.
func icmpv6OnLink(types *nftables.Set, hopLimit byte) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.NFPROTO_IPV6}},
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_ICMPV6}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 0, Len: 1},
		&expr.Lookup{SourceRegister: 1, SetName: types.Name, SetID: types.ID},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: 7, Len: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{hopLimit}},
	}
}

// linkLocal is fe80::/10 as a mask and the masked address, so that nft
// prints the match as `ip6 saddr fe80::/10`.
var linkLocal = struct{ mask, addr []byte }{
	mask: append([]byte{0xff, 0xc0}, make([]byte, 14)...),
	addr: append([]byte{0xfe, 0x80}, make([]byte, 14)...),
}

// unspecified6 is :: alone, in linkLocal's form.
var unspecified6 = struct{ mask, addr []byte }{mask: bytes.Repeat([]byte{0xff}, 16), addr: make([]byte, 16)}

// listenerDiscoveryTypes are the ICMPv6 types of multicast listener
// discovery (RFC 2710, RFC 3810): query, report, done, and the version 2
// report.
var listenerDiscoveryTypes = []nftables.SetElement{{Key: []byte{130}}, {Key: []byte{131}}, {Key: []byte{132}}, {Key: []byte{143}}}

var listNoun = map[List]string{Blacklist: "blacklisted", Intel: "threat-listed"}

// LogPrefix is the prefix of the NFLOG messages (group Config.LogGroup) the
// kernel sends for a packet it drops because its remote address is in l.
func LogPrefix(l List) string { return "pfw " + string(l) }

// queueComment names the queues, not only the rule's purpose: on kernels
// without nft_queue the rule holds the xt NFQUEUE target, which nft prints
// as nothing at all, so the comment is all `nft list ruleset` shows of it.
func queueComment(num, total uint16, failClosed bool) string {
	queues := fmt.Sprintf("NFQUEUE %d", num)
	if total > 1 {
		queues = fmt.Sprintf("NFQUEUE %d-%d", num, num+total-1)
	}
	if failClosed {
		return "new flows queue to pfwd (" + queues + "), dropped while pfwd does not listen"
	}
	return "new flows queue to pfwd (" + queues + "), accepted while pfwd does not listen"
}

// remoteIn matches packets of family f whose remote address is in set.
// Testing meta nfproto first keeps an IPv6 packet's bytes from being read as
// an IPv4 header in this inet table.
func remoteIn(h hook, f family, set *nftables.Set) []expr.Any {
	return append(familyIs(f), remoteLookup(h, f, set)...)
}

// familyIs matches packets of family f.
func familyIs(f family) []expr.Any {
	return []expr.Any{
		&expr.Meta{Key: expr.MetaKeyNFPROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{f.nfproto}},
	}
}

// remoteLookup matches a packet of family f (tested before) whose remote
// address is in set.
func remoteLookup(h hook, f family, set *nftables.Set) []expr.Any {
	return []expr.Any{
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseNetworkHeader, Offset: h.remoteOffset(f), Len: uint32(f.addrLen)},
		&expr.Lookup{SourceRegister: 1, SetName: set.Name, SetID: set.ID},
	}
}

func accept() expr.Any { return &expr.Verdict{Kind: expr.VerdictAccept} }

// ifname is name as the kernel compares interface names: NUL-padded to
// IFNAMSIZ.
func ifname(name string) []byte {
	b := make([]byte, unix.IFNAMSIZ)
	copy(b, name)
	return b
}

// dropChain names the chain a hook jumps to for a packet whose remote
// address is in list l: one set lookup per list, not one per rule.
func dropChain(h hook, l List) string { return h.chain + "_" + string(l) }

// dropRules log (rate-limited) and drop.
func dropRules(cfg *Config, l List) []rule {
	return logDropRules(cfg, LogPrefix(l),
		fmt.Sprintf("log %s remote address (rate-limited)", listNoun[l]),
		fmt.Sprintf("drop %s remote address", listNoun[l]))
}

// logDropRules are the rules of a drop chain: log with prefix to
// Config.LogGroup, at most Config.LogRate packets a second, then drop.
func logDropRules(cfg *Config, prefix, logComment, dropComment string) []rule {
	return []rule{
		{
			comment: logComment,
			exprs: []expr.Any{
				&expr.Limit{Type: expr.LimitTypePkts, Rate: uint64(cfg.LogRate), Unit: expr.LimitTimeSecond, Burst: cfg.LogRate},
				&expr.Log{Key: 1<<unix.NFTA_LOG_GROUP | 1<<unix.NFTA_LOG_PREFIX, Group: cfg.LogGroup, Data: []byte(prefix)},
			},
		},
		{comment: dropComment, exprs: []expr.Any{&expr.Verdict{Kind: expr.VerdictDrop}}},
	}
}
