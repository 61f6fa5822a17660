package rules

import (
	"fmt"
	"net/netip"
	"reflect"
	"slices"
	"strings"
)

// Changes describes what next changes in prev, for the log line of a
// reload: `rule "SSH" added`, `rule "Block SMB" changed`, `blacklist +2
// -1`, `default_policy allow -> block`, and so on, in the file's order of
// keys. Rules and feeds are matched by name; a rule moved is "moved". It
// returns nil when nothing an operator wrote differs.
func Changes(prev, next *Config) []string {
	var out []string
	policy := func(key string, a, b Action) {
		if a != b {
			out = append(out, fmt.Sprintf("%s %s -> %s", key, a, b))
		}
	}
	policy("default_policy", prev.DefaultPolicy, next.DefaultPolicy)
	policy("default_outbound_policy", prev.OutboundPolicy(), next.OutboundPolicy())
	out = append(out, ruleChanges(prev.Rules, next.Rules)...)
	out = appendListChange(out, "whitelist", prev.WhitelistIPs, next.WhitelistIPs)
	out = appendListChange(out, "blacklist", prev.BlacklistIPs, next.BlacklistIPs)
	if prev.RateLimit != next.RateLimit {
		out = append(out, fmt.Sprintf("rate_limit %d/%ds -> %d/%ds", prev.RateLimit.MaxConnections, prev.RateLimit.WindowSeconds,
			next.RateLimit.MaxConnections, next.RateLimit.WindowSeconds))
	}
	if prev.AllowedSampleRate != next.AllowedSampleRate {
		out = append(out, fmt.Sprintf("allowed_sample_rate %g -> %g", prev.AllowedSampleRate, next.AllowedSampleRate))
	}
	out = append(out, namedChanges("feed", prev.ThreatFeeds, next.ThreatFeeds, func(f Feed) string { return f.Name }, func(a, b Feed) bool { return a == b })...)
	return out
}

func ruleChanges(prev, next []Rule) []string {
	out := namedChanges("rule", prev, next, func(r Rule) string { return r.Name }, func(a, b Rule) bool {
		return reflect.DeepEqual(a.ToFile(), b.ToFile())
	})
	// Moved: the rules both have, in another order among themselves.
	kept := func(from, other []Rule) []string {
		var names []string
		for _, r := range from {
			if slices.ContainsFunc(other, func(o Rule) bool { return o.Name == r.Name }) {
				names = append(names, r.Name)
			}
		}
		return names
	}
	before, after := kept(prev, next), kept(next, prev)
	for i, name := range after {
		if before[i] != name {
			out = append(out, fmt.Sprintf("rule %q moved to %d", name, slices.IndexFunc(next, func(r Rule) bool { return r.Name == name })+1))
			before = slices.Delete(before, slices.Index(before, name), slices.Index(before, name)+1)
			before = slices.Insert(before, i, name)
		}
	}
	return out
}

// namedChanges lists the elements added, removed and changed between prev
// and next, matched by name, in next's order (removed ones in prev's).
func namedChanges[T any](noun string, prev, next []T, name func(T) string, same func(a, b T) bool) []string {
	var out []string
	for _, n := range next {
		i := slices.IndexFunc(prev, func(p T) bool { return name(p) == name(n) })
		switch {
		case i < 0:
			out = append(out, fmt.Sprintf("%s %q added", noun, name(n)))
		case !same(prev[i], n):
			out = append(out, fmt.Sprintf("%s %q changed", noun, name(n)))
		}
	}
	for _, p := range prev {
		if !slices.ContainsFunc(next, func(n T) bool { return name(n) == name(p) }) {
			out = append(out, fmt.Sprintf("%s %q removed", noun, name(p)))
		}
	}
	return out
}

// appendListChange appends "key +added -removed" when the lists differ,
// naming the entries when there are few. Lists past maxDiffedList entries
// (a million-address blacklist) are only counted: their difference would
// cost a map of them all, for a log line.
func appendListChange(out []string, key string, prev, next []netip.Prefix) []string {
	if len(prev)+len(next) > maxDiffedList {
		if slices.Equal(prev, next) {
			return out
		}
		return append(out, fmt.Sprintf("%s %d -> %d entries", key, len(prev), len(next)))
	}
	added, removed := missingFrom(prev, next), missingFrom(next, prev)
	if len(added)+len(removed) == 0 {
		return out
	}
	s := fmt.Sprintf("%s +%d -%d", key, len(added), len(removed))
	if len(added)+len(removed) <= 4 {
		var parts []string
		for _, p := range added {
			parts = append(parts, "+"+FormatPrefix(p))
		}
		for _, p := range removed {
			parts = append(parts, "-"+FormatPrefix(p))
		}
		s += " (" + strings.Join(parts, " ") + ")"
	}
	return append(out, s)
}

const maxDiffedList = 20000

// missingFrom returns the prefixes of next that prev lacks.
func missingFrom(prev, next []netip.Prefix) []netip.Prefix {
	have := make(map[netip.Prefix]bool, len(prev))
	for _, p := range prev {
		have[p] = true
	}
	var out []netip.Prefix
	for _, p := range next {
		if !have[p] {
			out = append(out, p)
		}
	}
	return out
}
