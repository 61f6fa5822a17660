package verdict

import (
	"strings"

	"github.com/pfw/pfw/rules"
)

// Step is the stage of the pipeline that decided a packet, in pipeline
// order.
type Step uint8

const (
	StepWhitelist Step = iota + 1
	StepBlacklist
	StepThreatIntel
	StepRateLimit
	StepRule
	StepDefault
	// StepMalformed decides packets whose transport header is cut or
	// contradicts itself: their ports cannot be matched, so they are
	// blocked after the address checks.
	StepMalformed
)

var stepNames = [...]string{
	StepWhitelist:   "whitelist",
	StepBlacklist:   "blacklist",
	StepThreatIntel: "threat_intel",
	StepRateLimit:   "rate_limit",
	StepRule:        "rule",
	StepDefault:     "default_policy",
	StepMalformed:   "malformed",
}

func (s Step) String() string {
	if int(s) < len(stepNames) && stepNames[s] != "" {
		return stepNames[s]
	}
	return "unknown"
}

// The reasons of the contract, exactly as they are logged.
const (
	ReasonWhitelisted = "Whitelisted IP"
	ReasonBlacklisted = "Blacklisted IP"
	ReasonRateLimited = "Rate limited"
	ReasonDefault     = "Default policy"
	ReasonMalformed   = "Malformed packet"
	reasonIntelPrefix = "Threat intel: "
	reasonRulePrefix  = "Rule: "
	// ReasonIntelWithdrawn names a drop by a threat entry that a feed
	// update withdrew before the kernel reported the drop, once the feed
	// that listed it can no longer be told (see Engine.RecentIntel).
	ReasonIntelWithdrawn = reasonIntelPrefix + "(entry withdrawn by a feed update)"
)

// RuleOfReason returns the rule name a reason names, if it names one.
func RuleOfReason(reason string) (name string, ok bool) {
	return strings.CutPrefix(reason, reasonRulePrefix)
}

// Decision is the pipeline's answer for one packet. Reason strings are
// built when the config is compiled, so returning one costs nothing.
type Decision struct {
	Action rules.Action
	Step   Step
	Reason string
	// Rule is the index in Config.Rules of the deciding rule, or -1.
	Rule int
}

// Blocked reports whether the packet is to be dropped.
func (d Decision) Blocked() bool { return d.Action == rules.ActionBlock }

var (
	decideWhitelisted = Decision{Action: rules.ActionAllow, Step: StepWhitelist, Reason: ReasonWhitelisted, Rule: -1}
	decideBlacklisted = Decision{Action: rules.ActionBlock, Step: StepBlacklist, Reason: ReasonBlacklisted, Rule: -1}
	decideRateLimited = Decision{Action: rules.ActionBlock, Step: StepRateLimit, Reason: ReasonRateLimited, Rule: -1}
	decideMalformed   = Decision{Action: rules.ActionBlock, Step: StepMalformed, Reason: ReasonMalformed, Rule: -1}
)

// The decisions of the kernel's own drops (the lists, the rate-limit
// guard), for naming them as the pipeline would.
func Blacklisted() Decision { return decideBlacklisted }
func RateLimited() Decision { return decideRateLimited }
func IntelWithdrawn() Decision {
	return Decision{Action: rules.ActionBlock, Step: StepThreatIntel, Reason: ReasonIntelWithdrawn, Rule: -1}
}
