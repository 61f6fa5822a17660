package verdict

import (
	"net/netip"
	"slices"

	"github.com/pfw/pfw/rules"
)

// Policy is a Config compiled into lookup structures: prefix sets for the
// whitelist, blacklist and rule sources, and per direction and transport
// protocol a port index whose segments list the rules that can match there.
// It is immutable; a reload compiles a new Policy and swaps it in whole.
type Policy struct {
	config     *rules.Config
	whitelist  *PrefixSet
	blacklist  *PrefixSet
	rateMax    int
	rateWindow int64        // ns; 0 = limiter off
	tables     [2]ruleTable // by rules.Direction
	defaults   [2]Decision  // by rules.Direction
	rules      []compiledRule
	sampleRate float64
}

type compiledRule struct {
	decision Decision
	src      *PrefixSet // nil: any address
}

// Transport classes a rule table is split by.
const (
	classTCP = iota
	classUDP
	classICMP
	classICMPv6
	classOther
	numClasses
)

func classOf(proto uint8) int {
	switch proto {
	case ProtoTCP:
		return classTCP
	case ProtoUDP:
		return classUDP
	case ProtoICMP:
		return classICMP
	case ProtoICMPv6:
		return classICMPv6
	}
	return classOther
}

// ruleTable holds, for one direction, the candidate rules of every
// transport class. A candidate list is in file order and ends at the first
// rule without a source restriction: that rule always matches, so nothing
// after it can be reached.
type ruleTable struct {
	ports   [2]portIndex        // classTCP, classUDP: packets with ports
	noPorts [numClasses][]int32 // packets without ports (other protocols, fragments)
}

// portIndex splits the port space into segments in which the same rules
// apply. Segment i covers ports starts[i] up to starts[i+1]-1.
type portIndex struct {
	starts []uint16
	cands  [][]int32
}

func (x *portIndex) lookup(port uint16) []int32 {
	lo, hi := 0, len(x.starts)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if x.starts[m] <= port {
			lo = m + 1
		} else {
			hi = m
		}
	}
	if lo == 0 {
		return nil
	}
	return x.cands[lo-1]
}

// Compile builds a Policy from a validated Config.
func Compile(cfg *rules.Config) *Policy {
	p := &Policy{
		config:     cfg,
		whitelist:  NewPrefixSet(cfg.WhitelistIPs),
		blacklist:  NewPrefixSet(cfg.BlacklistIPs),
		rateMax:    cfg.RateLimit.MaxConnections,
		sampleRate: cfg.AllowedSampleRate,
	}
	if cfg.RateLimit.MaxConnections > 0 {
		p.rateWindow = int64(cfg.RateLimit.Window())
	}
	p.defaults[rules.DirIn] = Decision{Action: cfg.DefaultPolicy, Step: StepDefault, Reason: ReasonDefault, Rule: -1}
	p.defaults[rules.DirOut] = Decision{Action: cfg.OutboundPolicy(), Step: StepDefault, Reason: ReasonDefault, Rule: -1}
	p.rules = make([]compiledRule, len(cfg.Rules))
	for i, r := range cfg.Rules {
		p.rules[i] = compiledRule{decision: Decision{Action: r.Action, Step: StepRule, Reason: reasonRulePrefix + r.Name, Rule: i}}
		if len(r.SrcIPs) > 0 {
			p.rules[i].src = NewPrefixSet(r.SrcIPs)
		}
	}
	for _, dir := range []rules.Direction{rules.DirIn, rules.DirOut} {
		p.tables[dir] = compileTable(cfg.Rules, dir)
	}
	return p
}

// Config is the config this policy was compiled from.
func (p *Policy) Config() *rules.Config { return p.config }

// RateLimit is the limit in force: max new connections per window (ns);
// window 0 means the limiter is off.
func (p *Policy) RateLimit() (max int, window int64) { return p.rateMax, p.rateWindow }

// SampleRate is the share of allowed packets to log.
func (p *Policy) SampleRate() float64 { return p.sampleRate }

func protoMatches(r *rules.Rule, class int) bool {
	switch r.Protocol {
	case rules.ProtoAny:
		return true
	case rules.ProtoTCP:
		return class == classTCP
	case rules.ProtoUDP:
		return class == classUDP
	case rules.ProtoICMP:
		return class == classICMP
	case rules.ProtoICMPv6:
		return class == classICMPv6
	}
	return false
}

func compileTable(rs []rules.Rule, dir rules.Direction) ruleTable {
	var t ruleTable
	applies := func(r *rules.Rule, class int) bool {
		return r.Enabled && r.Direction == dir && protoMatches(r, class)
	}
	for class := range numClasses {
		var c []int32
		for i := range rs {
			if applies(&rs[i], class) && len(rs[i].Ports) == 0 {
				c = append(c, int32(i))
				if len(rs[i].SrcIPs) == 0 {
					break
				}
			}
		}
		t.noPorts[class] = c
	}
	for _, class := range []int{classTCP, classUDP} {
		var idx []int
		bounds := []int{0}
		for i := range rs {
			if !applies(&rs[i], class) {
				continue
			}
			idx = append(idx, i)
			for _, pr := range rs[i].Ports {
				bounds = append(bounds, int(pr.First), int(pr.Last)+1)
			}
		}
		slices.Sort(bounds)
		bounds = slices.Compact(bounds)
		if bounds[len(bounds)-1] > 65535 {
			bounds = bounds[:len(bounds)-1]
		}
		x := portIndex{starts: make([]uint16, len(bounds)), cands: make([][]int32, len(bounds))}
		for s, start := range bounds {
			x.starts[s] = uint16(start)
			var c []int32
			for _, i := range idx {
				r := &rs[i]
				if len(r.Ports) > 0 && !slices.ContainsFunc(r.Ports, func(pr rules.PortRange) bool { return pr.Contains(uint16(start)) }) {
					continue
				}
				c = append(c, int32(i))
				if len(r.SrcIPs) == 0 {
					break
				}
			}
			// Neighbouring segments often share a list: share the slice too.
			if s > 0 && slices.Equal(c, x.cands[s-1]) {
				c = x.cands[s-1]
			}
			x.cands[s] = c
		}
		t.ports[class] = x
	}
	return t
}

// Intel is the compiled threat entries of all feeds. It is immutable and
// swapped in whole, independently of the Policy.
type Intel struct {
	set       *PrefixSet
	decisions []Decision // by feed index: the tag in set
	feeds     []string
}

// FeedEntries is one feed's current entries.
type FeedEntries struct {
	Name     string
	Prefixes []netip.Prefix
}

// NewIntel compiles the entries of all feeds. Where feeds overlap, the
// first listed names the block.
func NewIntel(feeds []FeedEntries) *Intel {
	in := &Intel{}
	var tagged []TaggedPrefix
	for i, f := range feeds {
		in.feeds = append(in.feeds, f.Name)
		in.decisions = append(in.decisions, Decision{Action: rules.ActionBlock, Step: StepThreatIntel, Reason: reasonIntelPrefix + f.Name, Rule: -1})
		for _, p := range f.Prefixes {
			tagged = append(tagged, TaggedPrefix{Prefix: p, Tag: uint16(i)})
		}
	}
	in.set = NewTaggedPrefixSet(tagged)
	return in
}

// CompileIntel compiles the threat entries of the feeds cfg lists, in
// config order, so the first listed names an entry two feeds share.
// bySource maps a feed's name to its entries (store.ThreatsBySource gives
// it from the database, pfwd keeps one from its feeds); entries of feeds
// cfg no longer lists are left out, as pfwd drops them. This is the one
// way pfwd and fwctl explain build the pipeline's threat step.
func CompileIntel(cfg *rules.Config, bySource map[string][]netip.Prefix) *Intel {
	var feeds []FeedEntries
	for _, f := range cfg.ThreatFeeds {
		if e := bySource[f.Name]; len(e) > 0 {
			feeds = append(feeds, FeedEntries{Name: f.Name, Prefixes: e})
		}
	}
	return NewIntel(feeds)
}

// Len is the number of threat entries.
func (in *Intel) Len() int {
	if in == nil {
		return 0
	}
	return in.set.Len()
}

// Lookup returns the block decision for a, if a feed lists it.
func (in *Intel) Lookup(a netip.Addr) (Decision, bool) {
	if in == nil {
		return Decision{}, false
	}
	tag, ok := in.set.Lookup(a)
	if !ok {
		return Decision{}, false
	}
	return in.decisions[tag], true
}
