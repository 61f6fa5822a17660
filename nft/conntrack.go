package nft

import (
	"context"
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Flow is a conntrack entry as KillFlows shows it to its match function:
// the packet that opened the flow as pfw's chains saw it. Src and SrcPort
// are the original direction's source; Dst and DstPort its destination
// after any DNAT (the reply direction's source), as the input and output
// hooks, which run after DNAT, saw it: for a flow NATed to another host,
// Dst is that host. SrcPort and DstPort are 0 for protocols without
// ports.
type Flow struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
	// Labelled: the entry carries filteredBit or one of the fast path's
	// label bits, so its packets met pfw's chains past the interface
	// rule: the flow passes through an interface pfw filters. (Only with
	// conntrack labels; see fastpath.go.)
	Labelled bool
}

// KillFlows deletes the conntrack entries of fw's network namespace for
// which match returns true, and returns how many it deleted. Flows are
// decided once and then accepted by the `ct state established` rule (or,
// before their first reply, `ct status confirmed`), so after a rule change
// pfwd cuts the ones the new rules would block. A table a flood filled
// takes a while to walk: ctx ends the walk early, with ctx's error.
func (fw *Firewall) KillFlows(ctx context.Context, match func(Flow) bool) (int, error) {
	return killFlows(ctx, fw.cfg.NetNS, match)
}

func killFlows(ctx context.Context, netns int, match func(Flow) bool) (int, error) {
	return eachFlow(ctx, netns, "kill flows", func(c *conntrack.Conn, f conntrack.Flow) (bool, error) {
		t, r := f.TupleOrig, f.TupleReply
		if !match(Flow{
			Proto:    t.Proto.Protocol,
			Src:      t.IP.SourceAddress,
			Dst:      r.IP.SourceAddress,
			SrcPort:  t.Proto.SourcePort,
			DstPort:  r.Proto.SourcePort,
			Labelled: hasLabel(f.Labels, filteredBit) || hasLabel(f.Labels, labelBits[0]) || hasLabel(f.Labels, labelBits[1]),
		}) {
			return false, nil
		}
		// The ID makes the kernel refuse to delete a newer flow that
		// reused the tuple since the dump. (The reply tuple is there for
		// ti-mo/conntrack, which picks the message's family from both.)
		return true, c.Delete(conntrack.Flow{ID: f.ID, Zone: f.Zone, TupleOrig: t, TupleReply: f.TupleReply})
	})
}

// eachFlow dumps the conntrack table of netns and calls do for every
// entry; do says whether it acted on it and how that went. It returns how
// many entries do acted on. An entry gone since the dump (ENOENT) is no
// error; the others, and entries the dump could not be read for, are
// gathered, ten at most, under what: one odd entry does not stop the walk.
// ctx ends it between two entries.
//
// The dump is read as the kernel sends it, a datagram at a time, and each
// entry is acted on before the next datagram is read: a table of 262,144
// entries (a spoofed-source flood fills one within a second) would take
// about 200 MB read whole, and remote peers decide its size.
func eachFlow(ctx context.Context, netns int, what string, do func(*conntrack.Conn, conntrack.Flow) (bool, error)) (int, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return 0, fmt.Errorf("nft: %s: conntrack netlink: %w", what, err)
	}
	defer c.Close()
	dump, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return 0, fmt.Errorf("nft: %s: conntrack netlink: %w", what, err)
	}
	defer dump.Close()
	if _, err := dump.Send(dumpRequest); err != nil {
		return 0, fmt.Errorf("nft: %s: dump conntrack table: %w", what, err)
	}
	n, seen, unlisted := 0, 0, 0
	var errs []error
	gather := func(err error) {
		if len(errs) < 10 {
			errs = append(errs, err)
		} else {
			unlisted++
		}
	}
	for msg, err := range dump.ReceiveIter() {
		if err != nil {
			return n, fmt.Errorf("nft: %s: dump conntrack table: %w", what, errors.Join(append(errs, err)...))
		}
		if err := ctx.Err(); err != nil {
			return n, fmt.Errorf("nft: %s: stopped after %d entries: %w", what, seen, err)
		}
		seen++
		var ev conntrack.Event
		if err := ev.Unmarshal(msg); err != nil || ev.Flow == nil {
			if err == nil {
				err = errors.New("no flow in the message")
			}
			gather(fmt.Errorf("dump conntrack table: entry %d: %w", seen, err))
			continue
		}
		f := *ev.Flow
		acted, err := do(c, f)
		switch {
		case !acted || errors.Is(err, unix.ENOENT):
			// Not for do, or it ended (or was replaced) since the dump.
		case err == nil:
			n++
		default:
			t := f.TupleOrig
			gather(fmt.Errorf("%s %s:%d -> %s:%d: %w", protoName(t.Proto.Protocol),
				t.IP.SourceAddress, t.Proto.SourcePort, t.IP.DestinationAddress, t.Proto.DestinationPort, err))
		}
	}
	switch {
	case unlisted > 0:
		return n, fmt.Errorf("nft: %s: %w (and %d more)", what, errors.Join(errs...), unlisted)
	case len(errs) > 0:
		return n, fmt.Errorf("nft: %s: %w", what, errors.Join(errs...))
	}
	return n, nil
}

// dumpRequest asks for every conntrack entry, IPv4 and IPv6
// (IPCTNL_MSG_CT_GET with NLM_F_DUMP, family AF_UNSPEC, nfnetlink v0).
var dumpRequest = netlink.Message{
	Header: netlink.Header{
		Type:  netlink.HeaderType(unix.NFNL_SUBSYS_CTNETLINK<<8 | ipctnlMsgCtGet),
		Flags: netlink.Request | netlink.Dump,
	},
	Data: []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0},
}

const ipctnlMsgCtGet = 1 // linux/netfilter/nfnetlink_conntrack.h

func protoName(p uint8) string {
	switch p {
	case unix.IPPROTO_TCP:
		return "tcp"
	case unix.IPPROTO_UDP:
		return "udp"
	case unix.IPPROTO_ICMP:
		return "icmp"
	case unix.IPPROTO_ICMPV6:
		return "icmpv6"
	}
	return fmt.Sprintf("proto %d", p)
}

// clearLabel clears bit from the labels of every conntrack entry of the
// network namespace netns that has it, and returns how many it changed.
func clearLabel(ctx context.Context, netns int, bit int) (int, error) {
	return eachFlow(ctx, netns, fmt.Sprintf("clear conntrack label %d", bit), func(c *conntrack.Conn, f conntrack.Flow) (bool, error) {
		if !hasLabel(f.Labels, bit) {
			return false, nil
		}
		return true, c.Update(conntrack.Flow{Zone: f.Zone, TupleOrig: f.TupleOrig, TupleReply: f.TupleReply,
			Labels: make([]byte, len(f.Labels)), LabelsMask: labelBytes(bit)[:len(f.Labels)]})
	})
}
