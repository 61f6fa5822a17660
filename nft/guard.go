package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"golang.org/x/sys/unix"
)

// The rate-limit guard: sources pfwd's rate limiter refused, held in the
// kernel so their further connection attempts are dropped before the
// queue (one set lookup) instead of costing pfwd a verdict each. pfwd adds
// a source when its limiter refuses it and deletes it once the limiter
// would let it in again; each element's counter tells pfwd how many
// attempts the kernel dropped meanwhile, which it counts and logs. The sets are plain hash sets (one address each), not
// lists: they hold no configuration.

// GuardSetName is the name of the guard set of one family (v6 false: IPv4).
func GuardSetName(v6 bool) string {
	if v6 {
		return guardSet + ipv6.suffix
	}
	return guardSet + ipv4.suffix
}

const (
	guardSet   = "ratelimit"
	guardChain = "input_ratelimit"
	// reopenChain takes the inbound TCP SYNs that reopen a tuple whose
	// conntrack entry is established: the rate limit's, then the queue.
	reopenChain   = "input_reopened"
	reopenComment = "a TCP SYN on an established entry reopens its tuple: a new connection, for the rate limit and pfwd"
	// GuardLogPrefix is the prefix of the NFLOG messages for the guard's
	// drops.
	GuardLogPrefix = "pfw ratelimit"
	// GuardMax is how many sources the guard sets hold at most: the rate
	// limiter's capacity.
	GuardMax = 1 << 16
)

func newGuardSets(t *nftables.Table) map[string]*nftables.Set {
	sets := make(map[string]*nftables.Set)
	for _, f := range families {
		name := guardSet + f.suffix
		sets[name] = &nftables.Set{
			Table:   t,
			Name:    name,
			KeyType: f.keyType,
			Counter: true,
			Size:    GuardMax,
			Comment: "sources over the rate limit: pfwd lets them back in, counting what was dropped",
		}
	}
	return sets
}

// guardRules send a connection attempt (anything conntrack saw as new but
// a TCP packet other than a bare SYN, as pfwd's limiter counts) from a
// guarded source to the guard chain. Protocol and flags are tested before
// the lookup, so the element's counter counts attempts only.
func guardRules(h hook, sets map[string]*nftables.Set) []rule {
	if !h.remoteIsSource {
		return nil // the rate limit is on inbound connections
	}
	var rules []rule
	for _, f := range families {
		family, addr := familyIs(f), remoteLookup(h, f, sets[guardSet+f.suffix])
		notTCP := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		}
		syn := []expr.Any{
			&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
			&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
			&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpSYN | tcpACK}, Xor: []byte{0}},
			&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
		}
		jump := &expr.Verdict{Kind: expr.VerdictJump, Chain: guardChain}
		for _, match := range [][]expr.Any{notTCP, syn} {
			exprs := append(append(append([]expr.Any{}, family...), match...), addr...)
			rules = append(rules, rule{
				comment: "source over the rate limit: its new connections are logged and dropped here",
				exprs:   append(exprs, jump),
			})
		}
	}
	return rules
}

const (
	tcpSYN = 0x02
	tcpACK = 0x10
)

// reopenRule sends an inbound TCP SYN (without ACK) whose conntrack entry
// is established to reopenChain, before the fast path, the established
// and the confirmed rules could accept it. Conntrack starts a new entry
// for a SYN on an old tuple only once it saw a FIN, or a reset from the
// SYN's own side; otherwise (the server aborted, or a stray ACK followed
// the client's reset) the SYN joins the old entry, and a client
// reconnecting from one port had every connection after the first
// accepted in the kernel, never counted by the rate limit: 83,671 in 10 s
// under 100 per 10 s. A SYN retransmitted after a lost SYN-ACK goes there
// too, and counts once more: the error only ever counts more.
func reopenRule() rule {
	return rule{comment: reopenComment, exprs: []expr.Any{
		&expr.Meta{Key: expr.MetaKeyL4PROTO, Register: 1},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{unix.IPPROTO_TCP}},
		&expr.Payload{DestRegister: 1, Base: expr.PayloadBaseTransportHeader, Offset: 13, Len: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 1, Mask: []byte{tcpSYN | tcpACK}, Xor: []byte{0}},
		&expr.Cmp{Op: expr.CmpOpEq, Register: 1, Data: []byte{tcpSYN}},
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED), Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		&expr.Verdict{Kind: expr.VerdictJump, Chain: reopenChain},
	}}
}

// guardDropRules log (rate-limited) and drop.
func guardDropRules(cfg *Config) []rule {
	return logDropRules(cfg, GuardLogPrefix,
		"log a connection attempt over the rate limit (rate-limited)",
		"drop a connection attempt over the rate limit")
}

// Guard adds sources to the guard sets, in one transaction.
func (fw *Firewall) Guard(addrs []netip.Addr) error {
	return fw.guardChange("add", addrs, fw.conn.SetAddElements)
}

// Unguard deletes sources from the guard sets, in one transaction. Every
// source must be in them (the kernel refuses the whole batch otherwise);
// GuardCounts says which are.
func (fw *Firewall) Unguard(addrs []netip.Addr) error {
	return fw.guardChange("delete", addrs, fw.conn.SetDeleteElements)
}

func (fw *Firewall) guardChange(what string, addrs []netip.Addr, op func(*nftables.Set, []nftables.SetElement) error) error {
	if len(addrs) == 0 {
		return nil
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if err := fw.usable(); err != nil {
		return err
	}
	byFamily := map[string][]nftables.SetElement{}
	for _, a := range addrs {
		a = a.Unmap()
		if !a.IsValid() {
			return fmt.Errorf("nft: guard %s: invalid address", what)
		}
		name := GuardSetName(a.Is6())
		byFamily[name] = append(byFamily[name], nftables.SetElement{Key: a.AsSlice()})
	}
	size := 0
	for name, elems := range byFamily {
		// All elements of a message sit in one netlink attribute, whose
		// length is a uint16: a nested element (4), its nested key (4),
		// the key (4 + length) each.
		per := maxElementsAttr / (12 + len(elems[0].Key))
		for chunk := range slices.Chunk(elems, per) {
			if err := op(fw.sets[name], chunk); err != nil {
				return fw.fail(fmt.Errorf("nft: guard %s in set %s: %w", what, name, err))
			}
			size += maxElementsAttr + 256
		}
	}
	if err := fw.growSendBuffer(size); err != nil {
		return fw.fail(fmt.Errorf("nft: guard %s: %w", what, err))
	}
	if err := fw.flush(); err != nil {
		return fmt.Errorf("nft: guard %s (%d sources) in table inet %s: %w", what, len(addrs), fw.cfg.Table, err)
	}
	return nil
}

// GuardCounts returns each guarded source with the number of connection
// attempts the kernel dropped from it since it was added.
func (fw *Firewall) GuardCounts() (map[netip.Addr]uint64, error) {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if err := fw.usable(); err != nil {
		return nil, err
	}
	return fw.guardCountsLocked()
}

func (fw *Firewall) guardCountsLocked() (map[netip.Addr]uint64, error) {
	out := make(map[netip.Addr]uint64)
	var errs []error
	for _, f := range families {
		name := guardSet + f.suffix
		elems, err := fw.conn.GetSetElements(fw.sets[name])
		if err != nil {
			errs = append(errs, fmt.Errorf("nft: read set %s: %w", name, err))
			continue
		}
		for _, e := range elems {
			a, ok := netip.AddrFromSlice(e.Key)
			if !ok {
				continue
			}
			var n uint64
			if e.Counter != nil {
				n = e.Counter.Packets
			}
			out[a] = n
		}
	}
	return out, errors.Join(errs...)
}
