package nft

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"
)

// Flow is a conntrack entry as KillFlows shows it to its match function: the
// tuple of the original direction (the packet that opened the flow).
// SrcPort and DstPort are 0 for protocols without ports.
type Flow struct {
	Proto            uint8
	Src, Dst         netip.Addr
	SrcPort, DstPort uint16
}

// KillFlows deletes the conntrack entries of the process's network namespace
// for which match returns true, and returns how many it deleted. Flows are
// decided once and then accepted by the `ct state established` rule, so
// after a rule change pfwd cuts the ones the new rules would block.
func KillFlows(match func(Flow) bool) (int, error) { return killFlows(0, match) }

// KillFlows is KillFlows in fw's network namespace.
func (fw *Firewall) KillFlows(match func(Flow) bool) (int, error) {
	return killFlows(fw.cfg.NetNS, match)
}

func killFlows(netns int, match func(Flow) bool) (int, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return 0, fmt.Errorf("nft: kill flows: conntrack netlink: %w", err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return 0, fmt.Errorf("nft: kill flows: dump conntrack table: %w", err)
	}
	killed := 0
	var errs []error
	for _, f := range flows {
		t := f.TupleOrig
		if !match(Flow{
			Proto:   t.Proto.Protocol,
			Src:     t.IP.SourceAddress,
			Dst:     t.IP.DestinationAddress,
			SrcPort: t.Proto.SourcePort,
			DstPort: t.Proto.DestinationPort,
		}) {
			continue
		}
		// The ID makes the kernel refuse to delete a newer flow that
		// reused the tuple since the dump. (The reply tuple is there for
		// ti-mo/conntrack, which picks the message's family from both.)
		err := c.Delete(conntrack.Flow{ID: f.ID, Zone: f.Zone, TupleOrig: t, TupleReply: f.TupleReply})
		switch {
		case err == nil:
			killed++
		case errors.Is(err, unix.ENOENT):
			// It ended (or was replaced) since the dump.
		default:
			errs = append(errs, fmt.Errorf("%s %s:%d -> %s:%d: %w", protoName(t.Proto.Protocol),
				t.IP.SourceAddress, t.Proto.SourcePort, t.IP.DestinationAddress, t.Proto.DestinationPort, err))
		}
	}
	if len(errs) > 0 {
		return killed, fmt.Errorf("nft: kill flows: %w", errors.Join(errs...))
	}
	return killed, nil
}

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
func clearLabel(netns int, bit int) (int, error) {
	c, err := conntrack.Dial(&netlink.Config{NetNS: netns})
	if err != nil {
		return 0, fmt.Errorf("nft: clear conntrack label %d: conntrack netlink: %w", bit, err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		return 0, fmt.Errorf("nft: clear conntrack label %d: dump conntrack table: %w", bit, err)
	}
	cleared := 0
	var errs []error
	for _, f := range flows {
		if !hasLabel(f.Labels, bit) {
			continue
		}
		err := c.Update(conntrack.Flow{Zone: f.Zone, TupleOrig: f.TupleOrig, TupleReply: f.TupleReply,
			Labels: make([]byte, len(f.Labels)), LabelsMask: labelBytes(bit)[:len(f.Labels)]})
		switch {
		case err == nil:
			cleared++
		case errors.Is(err, unix.ENOENT):
			// It ended since the dump.
		default:
			t := f.TupleOrig
			errs = append(errs, fmt.Errorf("%s %s:%d -> %s:%d: %w", protoName(t.Proto.Protocol),
				t.IP.SourceAddress, t.Proto.SourcePort, t.IP.DestinationAddress, t.Proto.DestinationPort, err))
		}
		if len(errs) == 10 {
			break // enough to say what is wrong
		}
	}
	if len(errs) > 0 {
		return cleared, fmt.Errorf("nft: clear conntrack label %d: %w", bit, errors.Join(errs...))
	}
	return cleared, nil
}
