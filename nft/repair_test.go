package nft

import (
	"net/netip"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// With FailClosed the table is an ordinary one that `nft flush ruleset`
// deletes; Repair must put back exactly what was there: the same ruleset
// (fast path included), the same set contents.
func TestRepairAfterFlushRuleset(t *testing.T) {
	ns := newNetNS(t)
	lists := map[List][]netip.Prefix{
		Whitelist: prefixes("127.0.0.1", "::1"),
		Blacklist: prefixes("203.0.113.7", "192.0.2.0/24", "2001:db8::/32"),
		Intel:     prefixes("198.51.100.0/25"),
	}
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true, InitialSets: lists})
	// A list change switches the fast path's generation: the repair must
	// keep the one in force.
	lists[Blacklist] = prefixes("203.0.113.7", "192.0.2.0/24", "2001:db8::/32", "203.0.113.9")
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: lists[Blacklist]}); err != nil {
		t.Fatal(err)
	}
	before := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable))

	if repaired, err := fw.Repair(); repaired || err != nil {
		t.Fatalf("Repair of an intact table = %v, %v; want nothing done", repaired, err)
	}

	ns.run(t, "nft", "flush", "ruleset")
	if got := ns.tables(t); len(got) != 0 {
		t.Fatalf("tables after flush ruleset: %v", got)
	}
	if repaired, err := fw.Repair(); !repaired || err != nil {
		t.Fatalf("Repair after flush ruleset = %v, %v; want the table back", repaired, err)
	}
	after := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable))
	if before != after {
		t.Errorf("the repaired table differs:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if armed, err := fw.FastPath(); !armed {
		t.Errorf("fast path off after the repair: %v", err)
	}

	// Rules deleted from a chain: the table is replaced whole.
	ns.run(t, "nft", "flush", "chain", "inet", DefaultTable, "input")
	if repaired, err := fw.Repair(); !repaired || err != nil {
		t.Fatalf("Repair after flush chain = %v, %v", repaired, err)
	}
	if after := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable)); before != after {
		t.Errorf("the table repaired after flush chain differs:\n%s", after)
	}
	if got := ns.tables(t); len(got) != 1 {
		t.Errorf("tables after the repair: %v, want ours once", got)
	}

	// Later changes still work on the repaired table.
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: prefixes("203.0.113.10")}); err != nil {
		t.Fatalf("UpdateSets after the repair: %v", err)
	}
	if got := ns.listSet(t, DefaultTable, "blacklist_v4"); len(got) != 1 {
		t.Errorf("blacklist_v4 after the update: %v", got)
	}
	if repaired, err := fw.Repair(); repaired || err != nil {
		t.Errorf("Repair after our own update = %v, %v; want nothing done", repaired, err)
	}
}

// In the default mode the kernel keeps everyone else off the owned table:
// flush ruleset passes it by, and Repair has nothing to do.
func TestOwnedTableSurvivesFlushRuleset(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	ns.run(t, "nft", "flush", "ruleset")
	if got := ns.tables(t); len(got) != 1 || !strings.Contains(got[0], DefaultTable) {
		t.Fatalf("tables after flush ruleset: %v, want the owned table", got)
	}
	if repaired, err := fw.Repair(); repaired || err != nil {
		t.Errorf("Repair in the default mode = %v, %v", repaired, err)
	}
}

// A commit by anyone else makes Repair look at the table and at the
// elements of its list sets: one that leaves them alone (another table)
// repairs nothing, and an element deleted from or added to a list set by
// hand is undone. Between other commits a check is one generation read.
func TestRepairRestoresSetElements(t *testing.T) {
	ns := newNetNS(t)
	lists := map[List][]netip.Prefix{
		Whitelist: prefixes("127.0.0.1", "::1"),
		// Adjacent and overlapping prefixes, merged into ranges: the kernel's
		// elements must read back as the same ranges.
		Blacklist: prefixes("203.0.113.7", "192.0.2.0/25", "192.0.2.128/25", "2001:db8::/32", "2001:db8::/48"),
		Intel:     prefixes("198.51.100.0/25", "2001:db8:bad::/48"),
	}
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true, InitialSets: lists})
	if fw.gen == nil {
		t.Fatal("no ruleset generation reader: the kernel did not answer NFT_MSG_GETGEN")
	}
	before := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable))
	check := func(what string, want bool) {
		t.Helper()
		if repaired, err := fw.Repair(); repaired != want || err != nil {
			t.Fatalf("Repair after %s = %v, %v; want %v", what, repaired, err, want)
		}
		if after := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable)); after != before {
			t.Errorf("after %s and Repair the table differs:\n%s", what, after)
		}
	}
	check("nothing", false)

	ns.run(t, "nft", "add", "table", "inet", "someone_else")
	check("a commit to another table", false)
	if !fw.genKnown {
		t.Error("after checking another table's commit, the generation is still unknown: every check would read the sets")
	}

	ns.run(t, "nft", "delete", "element", "inet", DefaultTable, "blacklist_v4", "{ 203.0.113.7 }")
	check("nft delete element", true)

	ns.run(t, "nft", "add", "element", "inet", DefaultTable, "whitelist_v6", "{ 2001:db8:1::/64 }")
	check("nft add element", true)

	// fw's own changes, guard included, are no one else's.
	if err := fw.Guard([]netip.Addr{netip.MustParseAddr("198.18.0.1")}); err != nil {
		t.Fatal(err)
	}
	if !fw.genKnown {
		t.Error("after fw's own guard change the generation is unknown")
	}
	if repaired, err := fw.Repair(); repaired || err != nil {
		t.Errorf("Repair after fw's own guard change = %v, %v", repaired, err)
	}
}

// A list change that arrives while the fail-closed table is gone (between
// `nft flush ruleset` and the next Repair) fails, and must leave fw as
// usable as before: Repair puts the table back with the lists it last
// had, and the change, tried again, lands. Before, the messages the failed
// change had queued marked fw broken, and Repair and every later change
// refused to do anything while the host ran unfiltered.
func TestListChangeWhileTableGone(t *testing.T) {
	ns := newNetNS(t)
	lists := map[List][]netip.Prefix{Whitelist: prefixes("127.0.0.1"), Blacklist: prefixes("203.0.113.7")}
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true, InitialSets: lists})
	ns.run(t, "nft", "flush", "ruleset")

	change := map[List][]netip.Prefix{Blacklist: prefixes("203.0.113.7", "203.0.113.9")}
	if err := fw.UpdateSets(change); err == nil {
		t.Fatal("UpdateSets with the table gone succeeded")
	}
	if fw.broken != nil {
		t.Fatalf("a failed list change broke fw: %v", fw.broken)
	}
	if repaired, err := fw.Repair(); !repaired || err != nil {
		t.Fatalf("Repair after the failed change = %v, %v; want the table back", repaired, err)
	}
	if got := ns.listSet(t, DefaultTable, "blacklist_v4"); len(got) != 1 {
		t.Errorf("blacklist_v4 after the repair = %v, want the list before the failed change", got)
	}
	if err := fw.UpdateSets(change); err != nil {
		t.Fatalf("the change tried again: %v", err)
	}
	if got := ns.listSet(t, DefaultTable, "blacklist_v4"); len(got) != 2 {
		t.Errorf("blacklist_v4 after the change = %v, want 2 elements", got)
	}
	if armed, err := fw.FastPath(); !armed {
		t.Errorf("fast path off after the repair and the change: %v", err)
	}
}

// discard empties the queue of a half-built change without the kernel
// seeing any of it, and fw goes on working.
func TestDiscardSendsNothing(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true, InitialSets: map[List][]netip.Prefix{Blacklist: prefixes("203.0.113.7")}})
	before := ns.run(t, "nft", "list", "ruleset")
	fw.mu.Lock()
	fw.conn.FlushSet(fw.sets["blacklist_v4"])
	fw.conn.DelTable(fw.table)
	err := fw.discard()
	fw.mu.Unlock()
	if err != nil {
		t.Fatalf("discard: %v", err)
	}
	if after := ns.run(t, "nft", "list", "ruleset"); after != before {
		t.Errorf("the ruleset changed:\nbefore:\n%s\nafter:\n%s", before, after)
	}
	if repaired, err := fw.Repair(); repaired || err != nil {
		t.Errorf("Repair after a discard = %v, %v; want nothing to do", repaired, err)
	}
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: prefixes("203.0.113.8")}); err != nil {
		t.Fatalf("UpdateSets after a discard: %v", err)
	}
}

// A rule replaced by another keeps the chain's rule count; Repair must
// see it all the same (it compared only the counts, so a queue rule turned
// into `accept` let everything pass while pfwd believed it decided it).
// A chain's changed policy is caught too.
func TestRepairUndoesReplacedRule(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true})
	before := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable))
	handle := regexp.MustCompile(`comment "new flows queue to pfwd[^\n]*# handle (\d+)`)
	m := handle.FindStringSubmatch(ns.run(t, "nft", "-a", "list", "chain", "inet", DefaultTable, "input"))
	if m == nil {
		t.Fatal("no queue rule with a handle in the input chain")
	}
	comment := regexp.MustCompile(`comment ("new flows queue to pfwd[^"]*")`).FindStringSubmatch(before)
	if comment == nil {
		t.Fatal("no queue rule comment in the table")
	}
	for _, tamper := range [][]string{
		// The same comment on another statement: only the expressions tell.
		{"nft", "replace", "rule", "inet", DefaultTable, "input", "handle", m[1], "accept", "comment", comment[1]},
		{"nft", "replace", "rule", "inet", DefaultTable, "input", "handle", "<queue>", "accept", "comment", `"tampered"`},
		{"nft", "add", "chain", "inet", DefaultTable, "output", "{ type filter hook output priority 20; policy drop; }"},
	} {
		tamper = slices.Clone(tamper)
		if i := slices.Index(tamper, "<queue>"); i >= 0 {
			tamper[i] = m[1]
		}
		ns.run(t, tamper...)
		if repaired, err := fw.Repair(); !repaired || err != nil {
			t.Fatalf("Repair after %v = %v, %v; want the table put back", tamper, repaired, err)
		}
		if after := normalizeRuleset(ns.run(t, "nft", "list", "table", "inet", DefaultTable)); after != before {
			t.Errorf("after %v and Repair the table differs:\n%s", tamper, after)
		}
		// The handles changed with the reinstall.
		if m = handle.FindStringSubmatch(ns.run(t, "nft", "-a", "list", "chain", "inet", DefaultTable, "input")); m == nil {
			t.Fatal("no queue rule after the repair")
		}
	}
}

// TestListChangeWhileTableGone with a change larger than the socket's
// send buffer as it was: a feed's first fetch after an offline start.
func TestLargeListChangeWhileTableGone(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true, InitialSets: map[List][]netip.Prefix{Blacklist: prefixes("203.0.113.7")}})
	ns.run(t, "nft", "flush", "ruleset")
	change := map[List][]netip.Prefix{Intel: spreadPrefixes(20000)}
	if err := fw.UpdateSets(change); err == nil {
		t.Fatal("UpdateSets with the table gone succeeded")
	}
	if fw.broken != nil {
		t.Fatalf("a failed large list change broke fw: %v", fw.broken)
	}
	if repaired, err := fw.Repair(); !repaired || err != nil {
		t.Fatalf("Repair after the failed change = %v, %v; want the table back", repaired, err)
	}
	if err := fw.UpdateSets(change); err != nil {
		t.Fatalf("the change tried again: %v", err)
	}
	if got := fw.SetSizes()["intel_v4"]; got != 20000 {
		t.Errorf("intel_v4 holds %d ranges, want 20000", got)
	}
}

// A half-built batch too large for the socket is not sent at all; discard
// must see that fw.conn still works rather than give fw up.
func TestDiscardBatchTooLargeToSend(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true})
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if _, err := fw.queueDiff(fw.ranges, map[string][]addrRange{"intel_v4": mergeRanges(spreadPrefixes(200000))}); err != nil {
		t.Fatal(err)
	}
	if err := fw.discard(); err != nil {
		t.Fatalf("discard of a batch too large to send: %v", err)
	}
}

// spreadPrefixes returns n IPv4 /32s, none adjacent to another, so none
// merge into a range.
func spreadPrefixes(n int) []netip.Prefix {
	out := make([]netip.Prefix, 0, n)
	for i := range n {
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{100, 64 + byte(i>>15), byte(i >> 7), byte(i << 1)}), 32))
	}
	return out
}
