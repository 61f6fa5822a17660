package rules

import (
	"fmt"
	"net/netip"
	"time"
)

// Action is what a rule or policy does with a packet.
type Action uint8

const (
	// ActionUnset marks an optional policy that the file left out.
	ActionUnset Action = iota
	ActionAllow
	ActionBlock
)

func (a Action) String() string {
	switch a {
	case ActionAllow:
		return "allow"
	case ActionBlock:
		return "block"
	default:
		return "unset"
	}
}

// ParseAction reads "allow" or "block".
func ParseAction(s string) (Action, error) {
	switch s {
	case "allow":
		return ActionAllow, nil
	case "block":
		return ActionBlock, nil
	}
	return ActionUnset, fmt.Errorf("%q is not an action (allow, block)", s)
}

// Protocol is the transport protocol a rule matches.
type Protocol uint8

const (
	ProtoAny Protocol = iota
	ProtoTCP
	ProtoUDP
	ProtoICMP
	ProtoICMPv6
)

var protocolNames = [...]string{ProtoAny: "any", ProtoTCP: "tcp", ProtoUDP: "udp", ProtoICMP: "icmp", ProtoICMPv6: "icmpv6"}

func (p Protocol) String() string {
	if int(p) < len(protocolNames) {
		return protocolNames[p]
	}
	return fmt.Sprintf("Protocol(%d)", uint8(p))
}

// HasPorts reports whether packets of p can carry ports: only then may a
// rule name ports.
func (p Protocol) HasPorts() bool { return p == ProtoAny || p == ProtoTCP || p == ProtoUDP }

// ParseProtocol reads tcp, udp, icmp, icmpv6 or any.
func ParseProtocol(s string) (Protocol, error) {
	for p, name := range protocolNames {
		if s == name {
			return Protocol(p), nil
		}
	}
	return ProtoAny, fmt.Errorf("%q is not a protocol (tcp, udp, icmp, icmpv6, any)", s)
}

// Direction says which packets a rule applies to. For inbound packets the
// remote address is the source, for outbound ones the destination.
type Direction uint8

const (
	DirIn Direction = iota
	DirOut
)

func (d Direction) String() string {
	if d == DirOut {
		return "out"
	}
	return "in"
}

// ParseDirection reads "in" or "out".
func ParseDirection(s string) (Direction, error) {
	switch s {
	case "in":
		return DirIn, nil
	case "out":
		return DirOut, nil
	}
	return DirIn, fmt.Errorf("%q is not a direction (in, out)", s)
}

// PortRange is an inclusive range of destination ports; a single port has
// First == Last.
type PortRange struct{ First, Last uint16 }

func (r PortRange) String() string {
	if r.First == r.Last {
		return fmt.Sprint(r.First)
	}
	return fmt.Sprintf("%d-%d", r.First, r.Last)
}

// Contains reports whether port lies in r.
func (r PortRange) Contains(port uint16) bool { return r.First <= port && port <= r.Last }

// Rule is one entry of the rules list, evaluated in file order.
type Rule struct {
	Name      string
	Action    Action
	Protocol  Protocol
	Ports     []PortRange    // empty: any port
	SrcIPs    []netip.Prefix // empty: any address; the remote address for direction out
	Direction Direction
	Enabled   bool
}

// RateLimit caps new inbound connections per source address.
// MaxConnections 0 turns the limiter off.
type RateLimit struct {
	MaxConnections int
	WindowSeconds  int
}

// Window is the limiter's window as a duration.
func (r RateLimit) Window() time.Duration { return time.Duration(r.WindowSeconds) * time.Second }

// Feed is one threat intelligence source.
type Feed struct {
	Name        string
	URL         string
	Interval    time.Duration
	ThreatLevel string
}

// Config is a validated firewall_rules.json.
type Config struct {
	DefaultPolicy         Action
	DefaultOutboundPolicy Action // ActionUnset when the file leaves it out (then: allow)
	Rules                 []Rule
	WhitelistIPs          []netip.Prefix
	BlacklistIPs          []netip.Prefix
	RateLimit             RateLimit
	AllowedSampleRate     float64
	ThreatFeeds           []Feed
}

// OutboundPolicy is the policy for outbound packets no rule decides.
func (c *Config) OutboundPolicy() Action {
	if c.DefaultOutboundPolicy == ActionUnset {
		return ActionAllow
	}
	return c.DefaultOutboundPolicy
}

// EnabledRules is how many rules are enabled: the figure pfwd logs on a
// reload and fwctl status and check show beside the total.
func (c *Config) EnabledRules() int {
	n := 0
	for i := range c.Rules {
		if c.Rules[i].Enabled {
			n++
		}
	}
	return n
}

// RuleIndex returns the index of the rule called name, or -1.
func (c *Config) RuleIndex(name string) int {
	for i := range c.Rules {
		if c.Rules[i].Name == name {
			return i
		}
	}
	return -1
}

// Clone returns a deep copy, so an edit can be validated without touching
// the Config in force.
func (c *Config) Clone() *Config {
	n := *c
	n.Rules = make([]Rule, len(c.Rules))
	for i, r := range c.Rules {
		r.Ports = append([]PortRange(nil), r.Ports...)
		r.SrcIPs = append([]netip.Prefix(nil), r.SrcIPs...)
		n.Rules[i] = r
	}
	n.WhitelistIPs = append([]netip.Prefix(nil), c.WhitelistIPs...)
	n.BlacklistIPs = append([]netip.Prefix(nil), c.BlacklistIPs...)
	n.ThreatFeeds = append([]Feed(nil), c.ThreatFeeds...)
	return &n
}

// Family is the one IP version p exists in: 4 for icmp, 6 for icmpv6, 0
// for the protocols of both.
func (p Protocol) Family() int {
	switch p {
	case ProtoICMP:
		return 4
	case ProtoICMPv6:
		return 6
	}
	return 0
}
