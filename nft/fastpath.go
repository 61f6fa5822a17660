package nft

import (
	"encoding/binary"
	"fmt"
	"time"

	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/userdata"
)

// The fast path: a flow checked against the lists since they last changed
// skips their lookups. The interval sets' lookup is a binary search with an
// indirect compare per step; run for every packet of every established
// flow, the three lists cost established 64-byte UDP about a fifth of its
// rate (load benchmark, kernel 6.18). The lists still come before the
// established rule, and listing an address still cuts its open flows at
// once, in the transaction that lists it:
//
//   - The established rule labels each packet's conntrack entry with the
//     current generation's bit (ct label set 126, or 127).
//   - The fast-path rule, before the lists, accepts a packet whose entry
//     carries that bit: its flow passed the lists since they last changed.
//   - Every transaction that changes a list also switches both rules to the
//     other bit, so every flow meets the new lists with its next packet.
//   - After a switch the old bit is cleared from every conntrack entry
//     (ctnetlink), so it is clean when the next switch needs it; that
//     switch waits for the clear if it is still running.
//
// Whitelisted flows are accepted before the established rule and never
// get the fast path's bits (with --iface they do get filteredBit, below). Open clears the bit it starts with before it arms the fast path,
// so entries labelled by an earlier pfwd never pass unchecked; a kernel
// without conntrack labels gets the ruleset without the fast path.
var labelBits = [2]int{126, 127}

// filteredBit labels, with --iface, every flow that passes pfw's chains
// beyond the interface rule, from its first packet on, and is never
// cleared: conntrack does not record interfaces, and the fast path's bits
// come and go (every list change clears the old one, and whitelisted
// flows never get one), so without it a rule change could not tell the
// flows through a filtered interface it must cut from the others. Open
// clears it once, before anything relies on it, so a flow marked by an
// earlier pfwd filtering other interfaces is not taken for one of ours.
const filteredBit = 125

// fastPath is the fast path's state; guarded by Firewall.mu, except
// clearErr, written by the clearing goroutine before it closes clearing.
type fastPath struct {
	supported bool  // the kernel took the label rules
	armed     bool  // the fast-path rules exist
	gen       int   // labelBits[gen] is the bit in force
	off       error // why the fast path is off, when it is
	clearing  chan struct{}
	clearErr  error
	dirty     error // the clear of the other bit failed: it must not be used
}

const (
	fastComment        = "flow already checked against the lists since they last changed: stays in the kernel"
	establishedComment = "flows pfwd already let through stay in the kernel (labelled as checked against the lists)"
	plainEstComment    = "flows pfwd already let through stay in the kernel"
	confirmedComment   = "flows pfwd let through before any reply (one-way UDP) stay in the kernel"
	whitelistComment   = "whitelisted remote address"
	filteredComment    = "flow through an interface --iface filters: labelled, so that a rule change can find it to cut it"
	clearDelay         = 100 * time.Millisecond // a packet still running the old rules has long finished
)

// labelBytes is the 128-bit conntrack label bitmap with only bit set, as
// the kernel holds it: 32-bit words in host byte order.
func labelBytes(bit int) []byte {
	b := make([]byte, 16)
	binary.NativeEndian.PutUint32(b[4*(bit/32):], 1<<(bit%32))
	return b
}

func hasLabel(labels []byte, bit int) bool {
	i := 4 * (bit / 32)
	return len(labels) >= i+4 && binary.NativeEndian.Uint32(labels[i:])&(1<<(bit%32)) != 0
}

func fastRule(bit int) rule {
	return rule{comment: fastComment, exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeyLABELS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 16, Mask: labelBytes(bit), Xor: make([]byte, 16)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 16)},
		accept(),
	}}
}

// filteredRule labels the entry of every packet that reaches it with
// filteredBit, and goes on to the next rule.
func filteredRule() rule {
	return rule{comment: filteredComment, exprs: []expr.Any{
		&expr.Immediate{Register: 1, Data: labelBytes(filteredBit)},
		&expr.Ct{Key: expr.CtKeyLABELS, Register: 1, SourceRegister: true},
	}}
}

// establishedRule accepts established and related packets, labelling
// their entry with bit (none when bit < 0).
func establishedRule(bit int) rule {
	mask := binary.NativeEndian.AppendUint32(nil, expr.CtStateBitESTABLISHED|expr.CtStateBitRELATED)
	exprs := []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATE, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
	}
	if bit < 0 {
		return rule{comment: plainEstComment, exprs: append(exprs, accept())}
	}
	return rule{comment: establishedComment, exprs: append(exprs,
		&expr.Immediate{Register: 1, Data: labelBytes(bit)},
		&expr.Ct{Key: expr.CtKeyLABELS, Register: 1, SourceRegister: true},
		accept(),
	)}
}

// confirmedRule accepts a packet whose conntrack entry is confirmed: its
// flow's first packet was let through, but no reply has come yet, so
// conntrack still calls it new (one-way UDP: syslog, statsd, RTP; a
// retransmitted SYN). Without it every datagram of such a flow would be
// queued and counted as a new connection by the rate limiter. A packet
// pfwd dropped leaves no confirmed entry, so its flow keeps being
// decided; rule changes cut confirmed flows like established ones.
func confirmedRule() rule {
	mask := binary.NativeEndian.AppendUint32(nil, ipsConfirmed)
	return rule{comment: confirmedComment, exprs: []expr.Any{
		&expr.Ct{Key: expr.CtKeySTATUS, Register: 1},
		&expr.Bitwise{SourceRegister: 1, DestRegister: 1, Len: 4, Mask: mask, Xor: make([]byte, 4)},
		&expr.Cmp{Op: expr.CmpOpNeq, Register: 1, Data: make([]byte, 4)},
		accept(),
	}}
}

// ipsConfirmed is IPS_CONFIRMED, the conntrack status bit of an entry
// whose first packet left the hooks accepted (linux/netfilter/nf_conntrack_common.h).
const ipsConfirmed = 1 << 3

// FastPath reports whether the fast path is in force, and why not if not,
// as of the last change that completed: like SetSizes, it does not wait
// for one being sent.
func (fw *Firewall) FastPath() (bool, error) {
	st := fw.shown.Load()
	return st.fastOn, st.fastOff
}

// arm clears the other bit from conntrack and turns the fast path on with
// it. Called by Open, once, with fw.mu held (or before fw is shared).
func (fw *Firewall) arm(stale bool) {
	if stale {
		time.Sleep(clearDelay) // the replaced table's rules may still be labelling
	}
	next := 1 - fw.fast.gen
	if len(fw.cfg.Ifaces) > 0 {
		if _, err := clearLabelFn(fw.life, fw.cfg.NetNS, filteredBit); err != nil {
			fw.fast.off = fmt.Errorf("fast path off: %w", err)
			return
		}
	}
	if _, err := clearLabel(fw.life, fw.cfg.NetNS, labelBits[next]); err != nil {
		fw.fast.off = fmt.Errorf("fast path off: %w", err)
		return
	}
	if err := fw.switchRules(next, true); err != nil {
		fw.fast.off = fmt.Errorf("fast path off: %w", fw.fail(err))
		return
	}
	if err := fw.flush(); err != nil {
		fw.fast.off = fmt.Errorf("fast path off: arm: %w", err)
		return
	}
	fw.fast.armed, fw.fast.gen = true, next
	fw.afterSwitch()
}

// prepareListChange queues, on fw.conn, what a transaction that changes a
// list must also do for the fast path, and returns what to call once it is
// committed.
func (fw *Firewall) prepareListChange() (commit func(), err error) {
	if !fw.fast.armed {
		return func() {}, nil
	}
	if fw.fast.clearing != nil {
		<-fw.fast.clearing
		fw.fast.clearing = nil
		fw.fast.dirty = fw.fast.clearErr
	}
	if fw.fast.dirty != nil {
		// The other bit may still label some entries: it cannot be used,
		// so the fast path goes, in this very transaction.
		if err := fw.disarm(); err != nil {
			return nil, err
		}
		off := fmt.Errorf("fast path off: %w", fw.fast.dirty)
		return func() { fw.fast.armed, fw.fast.off = false, off }, nil
	}
	next := 1 - fw.fast.gen
	if err := fw.switchRules(next, false); err != nil {
		return nil, err
	}
	return func() {
		fw.fast.gen = next
		fw.afterSwitch()
	}, nil
}

// switchRules queues the replacement of both chains' fast-path and
// established rules by ones using labelBits[next]; insert: the fast-path
// rules do not exist yet.
func (fw *Firewall) switchRules(next int, insert bool) error {
	bit := labelBits[next]
	for _, h := range hooks {
		found, err := fw.findRules(h.chain)
		if err != nil {
			return err
		}
		chain := &nftables.Chain{Name: h.chain, Table: fw.table}
		fr, er := fastRule(bit), establishedRule(bit)
		if insert {
			// Before the lists (and, with --iface, the rule labelling
			// filtered flows, which a flow on the fast path already
			// passed), after loopback and neighbor discovery, which stay
			// first as the ruleset's order says.
			before := found[filteredComment]
			if before == nil {
				before = found[whitelistComment]
			}
			if before == nil {
				return fmt.Errorf("nft: chain %s has no whitelist rule to put the fast path before", h.chain)
			}
			fw.conn.InsertRule(&nftables.Rule{Table: fw.table, Chain: chain, Position: before.Handle, Exprs: fr.exprs, UserData: comment(fr.comment)})
		} else {
			old := found[fastComment]
			if old == nil {
				return fmt.Errorf("nft: chain %s lost its fast-path rule", h.chain)
			}
			fw.conn.ReplaceRule(&nftables.Rule{Table: fw.table, Chain: chain, Handle: old.Handle, Exprs: fr.exprs, UserData: comment(fr.comment)})
		}
		old := found[establishedComment]
		if old == nil {
			return fmt.Errorf("nft: chain %s lost its established rule", h.chain)
		}
		fw.conn.ReplaceRule(&nftables.Rule{Table: fw.table, Chain: chain, Handle: old.Handle, Exprs: er.exprs, UserData: comment(er.comment)})
	}
	return nil
}

// disarm queues the deletion of the fast-path rules.
func (fw *Firewall) disarm() error {
	for _, h := range hooks {
		found, err := fw.findRules(h.chain)
		if err != nil {
			return err
		}
		if r := found[fastComment]; r != nil {
			if err := fw.conn.DelRule(&nftables.Rule{Table: fw.table, Chain: &nftables.Chain{Name: h.chain, Table: fw.table}, Handle: r.Handle}); err != nil {
				return fmt.Errorf("nft: delete fast-path rule of chain %s: %w", h.chain, err)
			}
		}
	}
	return nil
}

// findRules returns the first rule of chain with each comment.
func (fw *Firewall) findRules(chain string) (map[string]*nftables.Rule, error) {
	rules, err := fw.conn.GetRules(fw.table, &nftables.Chain{Name: chain, Table: fw.table})
	if err != nil {
		return nil, fmt.Errorf("nft: read rules of chain %s: %w", chain, err)
	}
	found := make(map[string]*nftables.Rule)
	for _, r := range rules {
		if c, ok := userdata.GetString(r.UserData, userdata.TypeComment); ok && found[c] == nil {
			found[c] = r
		}
	}
	return found, nil
}

// afterSwitch starts clearing the bit no rule uses any more.
func (fw *Firewall) afterSwitch() {
	old := labelBits[1-fw.fast.gen]
	done := make(chan struct{})
	ctx := fw.life // Stop and Close end it
	fw.fast.clearing, fw.fast.clearErr = done, nil
	netns := fw.cfg.NetNS
	clearFn := clearLabelFn // read here: a test may swap it while the clear runs
	go func() {
		defer close(done)
		select {
		case <-time.After(clearDelay):
		case <-ctx.Done():
			fw.fast.clearErr = ctx.Err()
			return
		}
		_, err := clearFn(ctx, netns, old)
		fw.fast.clearErr = err
	}()
}

// waitClear waits for a running clear; Close ends fw's lifetime first,
// which ends the clear, so no goroutine outlives the Firewall and a stop
// is not held up by a walk through a conntrack table a flood filled. The
// bit left half cleared is in no rule any more, and the next Open clears
// it before using it.
func (fw *Firewall) waitClear() {
	if fw.fast.clearing != nil {
		<-fw.fast.clearing
	}
}

// clearLabelFn is clearLabel; tests make it fail.
var clearLabelFn = clearLabel

func comment(s string) []byte { return userdata.AppendString(nil, userdata.TypeComment, s) }
