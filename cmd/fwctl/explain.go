package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"strconv"
	"strings"

	"github.com/pfw/pfw/intel"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
	"github.com/urfave/cli/v2"
)

// The two forms of explain's synopsis: the remote address is --src for an
// inbound packet, --dst for an outbound one.
const (
	explainUsage    = "fwctl explain --src IP [--dst IP] [--protocol tcp|udp|icmp|icmpv6|any] [--dst-port N] [--direction in|out]"
	explainOutUsage = "fwctl explain --direction out --dst IP [--src IP] [--protocol P] [--dst-port N]"
)

func explainCommand() *cli.Command {
	return &cli.Command{
		Name:      "explain",
		Usage:     "show which pipeline step decides a packet, and why (no daemon needed)",
		UsageText: explainUsage + "\n" + explainOutUsage,
		Description: "explain runs the config (and the threat entries in the database, if there is one) over\n" +
			"one made-up packet, the way pfwd decides a new connection. The remote address is --src for\n" +
			"inbound packets and --dst for outbound ones. The rate limit depends on live traffic and is\n" +
			"not evaluated.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "src", Usage: "source `IP` (the remote address for --direction in)"},
			&cli.StringFlag{Name: "dst", Usage: "destination `IP` (the remote address for --direction out; default: unspecified)"},
			&cli.StringFlag{Name: "protocol", Value: "tcp", Usage: "protocol `P` (tcp, udp, icmp, icmpv6, any, taken as tcp, or an IP protocol number such as 47)"},
			&cli.StringFlag{Name: "dst-port", Usage: "destination `PORT` (without it only rules without ports can match)"},
			&cli.StringFlag{Name: "direction", Value: "in", Usage: "direction `DIR` (in or out)"},
		},
		Action: explain,
	}
}

// explanation is what `explain --json` prints.
type explanation struct {
	Verdict    string `json:"verdict"`
	Reason     string `json:"reason"`
	Step       string `json:"step"`
	StepNumber int    `json:"step_number"`
	Rule       int    `json:"rule,omitempty"` // the deciding rule's number, as `list` shows it
	Direction  string `json:"direction"`
	Remote     string `json:"remote"`
	// ThreatEntries is how many threat entries were checked (0 without a
	// database).
	ThreatEntries int `json:"threat_entries"`
}

func explain(c *cli.Context) error {
	if err := wantArgs(c, 0, 0, ""); err != nil {
		return err
	}
	g := globalsOf(c)
	dir, err := rules.ParseDirection(strings.ToLower(c.String("direction")))
	if err != nil {
		return badUsage(c, "explain: --direction: %v", err)
	}
	remoteFlag := "src"
	if dir == rules.DirOut {
		remoteFlag = "dst"
	}
	if !c.IsSet(remoteFlag) {
		err := badUsage(c, "explain: --%s IP is required for --direction %s (it is the remote address)", remoteFlag, dir)
		if dir == rules.DirOut {
			err.(*usageError).usage = explainOutUsage // the synopsis of this form, not the inbound one
		}
		return err
	}
	pkt, err := packetFromFlags(c)
	if err != nil {
		return err
	}
	cfg, err := loadConfig(g)
	if err != nil {
		return err
	}
	engine := verdict.NewEngine(verdict.Compile(cfg))
	db := chooseDB(c, g)
	db.tell(g.errOut)
	intel, err := loadIntel(c.Context, db.path, cfg)
	if err != nil {
		fmt.Fprintf(g.errOut, "fwctl: warning: threat entries not checked: %s\n", oneLine(err.Error()))
	}
	engine.SetIntel(intel)
	d := engine.Explain(&pkt, dir)

	remote := pkt.Remote(dir)
	ex := explanation{
		Verdict:       d.Action.String(),
		Reason:        d.Reason,
		Step:          d.Step.String(),
		StepNumber:    int(d.Step),
		Direction:     dir.String(),
		Remote:        remote.String(),
		ThreatEntries: intel.Len(),
	}
	if d.Rule >= 0 {
		ex.Rule = d.Rule + 1
	}
	if g.json {
		return writeJSON(g.out, ex)
	}
	step := fmt.Sprintf("%d (%s)", ex.StepNumber, ex.Step)
	if ex.Rule > 0 {
		step += fmt.Sprintf("; the rule is number %d in fwctl list", ex.Rule)
	}
	fmt.Fprintf(g.out, "Verdict:  %s\n", ex.Verdict)
	fmt.Fprintf(g.out, "Reason:   %s\n", ex.Reason)
	fmt.Fprintf(g.out, "Step:     %s\n", step)
	fmt.Fprintf(g.out, "Packet:   %s\n", describePacket(&pkt, dir))
	// The notes matter only when the steps they qualify were reached: the
	// rules and the default policy (not a malformed packet, which is
	// blocked after the address checks).
	reachedRules := d.Step == verdict.StepRule || d.Step == verdict.StepDefault
	if reachedRules && !c.IsSet("protocol") {
		fmt.Fprintln(g.out, "Note:     no --protocol given, so the packet is tcp; rules for udp or icmp are not tried.")
	} else if reachedRules && strings.EqualFold(strings.TrimSpace(c.String("protocol")), "any") {
		fmt.Fprintln(g.out, "Note:     --protocol any is explained as a tcp packet; rules for udp or icmp are not tried.")
	}
	if reachedRules && (pkt.Proto == verdict.ProtoTCP || pkt.Proto == verdict.ProtoUDP) && !pkt.HasPorts {
		fmt.Fprintln(g.out, "Note:     no --dst-port given, so only rules without ports could match.")
	}
	if dir == rules.DirIn && reachedRules {
		fmt.Fprintln(g.out, "Note:     the rate limit (step 4) depends on live traffic and is not evaluated here.")
	}
	if overLoopback(remote) {
		fmt.Fprintf(g.out, "Note:     %s is reached over lo, which pfw does not filter unless pfwd runs with --iface lo (the kernel accepts loopback traffic before any rule, and nothing is logged): the verdict above is what the rules say, for a packet that does not travel over lo.\n", remote)
	}
	return nil
}

// overLoopback reports whether traffic with remote a travels over lo: a
// loopback address, or one of this host's own (a connection to its own
// address never leaves it).
func overLoopback(a netip.Addr) bool {
	if a.IsLoopback() {
		return true
	}
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return false
	}
	for _, ia := range addrs {
		if n, ok := ia.(*net.IPNet); ok {
			if own, ok := netip.AddrFromSlice(n.IP); ok && own.Unmap() == a.Unmap() {
				return true
			}
		}
	}
	return false
}

// packetFromFlags builds the packet explain decides: what NFQUEUE would
// hand pfwd for the first packet of a connection (a SYN, for TCP).
func packetFromFlags(c *cli.Context) (verdict.Packet, error) {
	var p verdict.Packet
	src, err := addrFlag(c, "src")
	if err != nil {
		return p, err
	}
	dst, err := addrFlag(c, "dst")
	if err != nil {
		return p, err
	}
	switch {
	case src.IsValid() && dst.IsValid() && src.Is4() != dst.Is4():
		return p, fmt.Errorf("--src %s and --dst %s are not the same address family", src, dst)
	case !src.IsValid():
		src = unspecified(dst)
	case !dst.IsValid():
		dst = unspecified(src)
	}
	proto, number, err := protocolFlag(c)
	if err != nil {
		return p, err
	}
	switch v4 := src.Is4(); {
	case proto == rules.ProtoICMP && !v4:
		return p, fmt.Errorf("--protocol icmp is IPv4's ICMP, but the addresses are IPv6 (use --protocol icmpv6)")
	case proto == rules.ProtoICMPv6 && v4:
		return p, fmt.Errorf("--protocol icmpv6 is IPv6's ICMP, but the addresses are IPv4 (use --protocol icmp)")
	}
	var sport, dport uint16
	if c.IsSet("dst-port") {
		if number != 0 {
			return p, fmt.Errorf("--dst-port: IP protocol %d has no ports pfw reads", number)
		}
		if !proto.HasPorts() {
			return p, fmt.Errorf("--dst-port: %s has no ports", proto)
		}
		n, err := strconv.Atoi(strings.TrimSpace(c.String("dst-port")))
		if err != nil {
			return p, badUsage(c, "explain: --dst-port %q is not a number", c.String("dst-port"))
		}
		if n < 1 || n > 65535 {
			return p, fmt.Errorf("--dst-port: %d is not a port (1-65535)", n)
		}
		sport, dport = ephemeralPort, uint16(n)
	}
	ipProto := packetProto(proto)
	if number != 0 {
		ipProto = number
	}
	p = verdict.FirstPacket(ipProto, src, dst, sport, dport)
	// Without --dst-port the ports are unknown: rules with ports must not
	// match, as they would a port 0.
	p.HasPorts = p.HasPorts && c.IsSet("dst-port")
	p.Length = 60 // a SYN with options; no step reads it
	return p, nil
}

// protocolFlag reads --protocol: a name rules know, or an IP protocol
// number, as the log shows protocols it has no name for ("47" for GRE).
// A number with a name is taken as the name (6 is tcp); for another, the
// name is rules.ProtoAny and number is the protocol.
func protocolFlag(c *cli.Context) (proto rules.Protocol, number uint8, err error) {
	s := strings.ToLower(strings.TrimSpace(c.String("protocol")))
	if n, convErr := strconv.Atoi(s); convErr == nil {
		switch {
		case n < 0 || n > 255:
			return proto, 0, fmt.Errorf("--protocol: %d is not an IP protocol number (0-255)", n)
		case n == int(verdict.ProtoTCP):
			return rules.ProtoTCP, 0, nil
		case n == int(verdict.ProtoUDP):
			return rules.ProtoUDP, 0, nil
		case n == int(verdict.ProtoICMP):
			return rules.ProtoICMP, 0, nil
		case n == int(verdict.ProtoICMPv6):
			return rules.ProtoICMPv6, 0, nil
		case n == 0:
			return proto, 0, fmt.Errorf("--protocol: 0 is IPv6's Hop-by-Hop header, not a protocol a packet ends in")
		}
		return rules.ProtoAny, uint8(n), nil
	}
	if proto, err = rules.ParseProtocol(s); err != nil {
		return proto, 0, badUsage(c, "explain: --protocol: %v", err)
	}
	return proto, 0, nil
}

// ephemeralPort is the source port of explain's packet: the first of the
// range IANA sets aside for clients.
const ephemeralPort = 49152

// packetProto is the IP protocol of explain's packet for a --protocol:
// "any" is taken as tcp, the protocol most rules name.
func packetProto(p rules.Protocol) uint8 {
	switch p {
	case rules.ProtoUDP:
		return verdict.ProtoUDP
	case rules.ProtoICMP:
		return verdict.ProtoICMP
	case rules.ProtoICMPv6:
		return verdict.ProtoICMPv6
	}
	return verdict.ProtoTCP
}

// addrFlag reads an address flag; the zero Addr when it is not set. An
// IPv4-mapped address (::ffff:192.0.2.1) stays what it is: pfwd blocks an
// IPv6 packet carrying one as malformed, and explain says so.
func addrFlag(c *cli.Context, name string) (netip.Addr, error) {
	if !c.IsSet(name) {
		return netip.Addr{}, nil
	}
	s := strings.TrimSpace(c.String(name))
	a, err := netip.ParseAddr(s)
	if err != nil || a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("--%s: %q is not an IP address", name, s)
	}
	return a, nil
}

func unspecified(like netip.Addr) netip.Addr {
	if like.Is4() {
		return netip.IPv4Unspecified()
	}
	return netip.IPv6Unspecified()
}

func describePacket(p *verdict.Packet, dir rules.Direction) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s %s -> %s", map[rules.Direction]string{rules.DirIn: "inbound", rules.DirOut: "outbound"}[dir],
		store.ProtoName(p.Proto), p.Src, p.Dst)
	if p.HasPorts {
		fmt.Fprintf(&b, " port %d", p.DstPort)
	}
	if p.Proto == verdict.ProtoTCP {
		b.WriteString(" (SYN)")
	}
	return b.String()
}

// loadIntel compiles the threat entries pfwd keeps in the database, the
// way pfwd loads them (verdict.CompileIntel): one group per configured
// feed, in file order (the first listed names an entry two feeds share).
// Entries of feeds the config no longer lists are ignored, as pfwd drops
// them. Each feed's entries go through intel.Sanitize, as pfwd's do at
// start: a row pfwd would refuse (::/0, a /4, loopback) blocks nothing
// here either, even in a database pfwd has not opened since it was
// written. (The whitelist is no reason to refuse one: it is checked first.) The checks against
// the addresses of a running pfwd's host and servers are pfwd's alone;
// it removes the rows they refuse from the database when it starts.
// No database is no entries; a database that cannot be read is an error
// for the caller to warn about, with nil entries.
func loadIntel(ctx context.Context, path string, cfg *rules.Config) (*verdict.Intel, error) {
	s, err := store.OpenReader(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer s.Close()
	threats, err := s.LoadThreats(ctx)
	if err != nil {
		return nil, err
	}
	bySource := store.ThreatsBySource(threats)
	for source, entries := range bySource {
		bySource[source], _ = intel.Sanitize(entries, intel.Protected{})
	}
	return verdict.CompileIntel(cfg, bySource), nil
}
