package rules

import (
	"cmp"
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
	// Moved: the rules both have, in another order among themselves. The
	// rules named are the fewest whose moves explain the new order: those
	// off a longest run of rules that kept their order (a rule moved to the
	// top is one move, not a shift of all the others).
	inPrev, inNext := indexByName(prev, func(r Rule) string { return r.Name }), indexByName(next, func(r Rule) string { return r.Name })
	var order []int // for each rule both have, in next's order: its place in prev
	var names []string
	for _, r := range next {
		if i, ok := inPrev[r.Name]; ok {
			order, names = append(order, i), append(names, r.Name)
		}
	}
	stayed := longestIncreasing(order)
	for k, name := range names {
		if !stayed[k] {
			out = append(out, fmt.Sprintf("rule %q moved to %d", name, inNext[name]+1))
		}
	}
	return out
}

// longestIncreasing marks the elements of a longest increasing
// subsequence of xs (patience sorting, O(n log n)).
func longestIncreasing(xs []int) []bool {
	var tails []int              // tails[l]: index in xs of the smallest tail of a run of length l+1
	prev := make([]int, len(xs)) // the element before each in its run
	for i, x := range xs {
		l, _ := slices.BinarySearchFunc(tails, x, func(t, x int) int { return cmp.Compare(xs[t], x) })
		if l > 0 {
			prev[i] = tails[l-1]
		} else {
			prev[i] = -1
		}
		if l == len(tails) {
			tails = append(tails, i)
		} else {
			tails[l] = i
		}
	}
	in := make([]bool, len(xs))
	if len(tails) > 0 {
		for i := tails[len(tails)-1]; i >= 0; i = prev[i] {
			in[i] = true
		}
	}
	return in
}

// namedChanges lists the elements added, removed and changed between prev
// and next, matched by name, in next's order (removed ones in prev's).
func namedChanges[T any](noun string, prev, next []T, name func(T) string, same func(a, b T) bool) []string {
	var out []string
	inPrev, inNext := indexByName(prev, name), indexByName(next, name)
	for _, n := range next {
		i, ok := inPrev[name(n)]
		switch {
		case !ok:
			out = append(out, fmt.Sprintf("%s %q added", noun, name(n)))
		case !same(prev[i], n):
			out = append(out, fmt.Sprintf("%s %q changed", noun, name(n)))
		}
	}
	for _, p := range prev {
		if _, ok := inNext[name(p)]; !ok {
			out = append(out, fmt.Sprintf("%s %q removed", noun, name(p)))
		}
	}
	return out
}

func indexByName[T any](xs []T, name func(T) string) map[string]int {
	m := make(map[string]int, len(xs))
	for i, x := range xs {
		m[name(x)] = i
	}
	return m
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
