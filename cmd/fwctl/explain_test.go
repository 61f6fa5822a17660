package main

import (
	"context"
	"net/netip"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pfw/pfw/store"
)

// addThreats stores feed entries the way pfwd's feed updater does.
func addThreats(t *testing.T, db, source, level string, seen time.Time, entries ...string) {
	t.Helper()
	s, err := store.Open(db)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var ps []netip.Prefix
	for _, e := range entries {
		p, err := netip.ParsePrefix(e)
		if err != nil {
			a := netip.MustParseAddr(e)
			p = netip.PrefixFrom(a, a.BitLen())
		}
		ps = append(ps, p)
	}
	// Keep what earlier calls added: SetThreats sets the whole table.
	old, err := s.LoadThreats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	var feeds []store.FeedThreats
	for _, th := range old {
		i := slices.IndexFunc(feeds, func(f store.FeedThreats) bool { return f.Source == th.Source })
		if i < 0 {
			feeds = append(feeds, store.FeedThreats{Source: th.Source, Level: th.Level, Seen: th.LastSeen})
			i = len(feeds) - 1
		}
		feeds[i].Entries = append(feeds[i].Entries, th.IP)
	}
	feeds = append(feeds, store.FeedThreats{Source: source, Level: level, Entries: ps, Seen: seen})
	if err := s.SetThreats(context.Background(), feeds, seen); err != nil {
		t.Fatal(err)
	}
}

func TestExplain(t *testing.T) {
	e := newEnv(t, testConfig)
	now := time.Now()
	addThreats(t, e.db, "Feodo Tracker", "high", now, "198.18.0.5", "2001:db8:bad::/48", "198.18.7.0/24")
	// Listed by both feeds: the first in the config names the block.
	addThreats(t, e.db, "Spamhaus DROP", "critical", now, "198.18.9.0/24")
	// A feed since removed from the config no longer blocks: pfwd drops its
	// entries at start and on reload, and explain answers as pfwd would.
	addThreats(t, e.db, "Old feed", "low", now, "100.64.0.1")

	tests := []struct {
		name string
		args []string
		want explanation
	}{
		{"whitelist v4", []string{"--src", "127.0.0.1", "--dst-port", "23"},
			explanation{Verdict: "allow", Reason: "Whitelisted IP", Step: "whitelist", StepNumber: 1, Remote: "127.0.0.1"}},
		{"whitelist v6", []string{"--src", "::1"},
			explanation{Verdict: "allow", Reason: "Whitelisted IP", Step: "whitelist", StepNumber: 1, Remote: "::1"}},
		{"blacklist v4 address", []string{"--src", "203.0.113.7", "--protocol", "udp"},
			explanation{Verdict: "block", Reason: "Blacklisted IP", Step: "blacklist", StepNumber: 2, Remote: "203.0.113.7"}},
		// An IPv4-mapped address is only ever an IPv6 packet's, which pfwd
		// blocks as malformed, whatever the lists say of the IPv4 address.
		{"blacklisted v4, IPv4-mapped", []string{"--src", "::ffff:203.0.113.7", "--protocol", "udp"},
			explanation{Verdict: "block", Reason: "Malformed packet", Step: "malformed", StepNumber: 7, Remote: "::ffff:203.0.113.7"}},
		{"whitelisted loopback, IPv4-mapped", []string{"--src", "::ffff:127.0.0.1", "--protocol", "udp", "--dst-port", "69"},
			explanation{Verdict: "block", Reason: "Malformed packet", Step: "malformed", StepNumber: 7, Remote: "::ffff:127.0.0.1"}},
		{"rule v4, IPv4-mapped", []string{"--src", "::ffff:203.0.113.50", "--dst", "::ffff:192.168.1.2", "--dst-port", "445"},
			explanation{Verdict: "block", Reason: "Malformed packet", Step: "malformed", StepNumber: 7, Remote: "::ffff:203.0.113.50"}},
		{"blacklist v4 CIDR", []string{"--src", "192.0.2.77", "--protocol", "icmp"},
			explanation{Verdict: "block", Reason: "Blacklisted IP", Step: "blacklist", StepNumber: 2, Remote: "192.0.2.77"}},
		{"blacklist v6", []string{"--src", "2001:db8:dead::9", "--dst", "2001:db8::2"},
			explanation{Verdict: "block", Reason: "Blacklisted IP", Step: "blacklist", StepNumber: 2, Remote: "2001:db8:dead::9"}},
		{"threat intel v4", []string{"--src", "198.18.0.5", "--dst-port", "443"},
			explanation{Verdict: "block", Reason: "Threat intel: Feodo Tracker", Step: "threat_intel", StepNumber: 3, Remote: "198.18.0.5"}},
		{"threat intel v6", []string{"--src", "2001:db8:bad::77"},
			explanation{Verdict: "block", Reason: "Threat intel: Feodo Tracker", Step: "threat_intel", StepNumber: 3, Remote: "2001:db8:bad::77"}},
		{"threat intel second feed", []string{"--src", "198.18.9.1"},
			explanation{Verdict: "block", Reason: "Threat intel: Spamhaus DROP", Step: "threat_intel", StepNumber: 3, Remote: "198.18.9.1"}},
		{"threat intel feed not in config", []string{"--src", "100.64.0.1"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "100.64.0.1"}},
		{"rule v4", []string{"--src", "203.0.113.50", "--dst", "192.168.1.2", "--dst-port", "445"},
			explanation{Verdict: "block", Reason: "Rule: Block Telnet and SMB", Step: "rule", StepNumber: 5, Rule: 1, Remote: "203.0.113.50"}},
		// Protocols by number, as the log shows those without a name.
		{"protocol 6 is tcp", []string{"--src", "203.0.113.50", "--protocol", "6", "--dst-port", "445"},
			explanation{Verdict: "block", Reason: "Rule: Block Telnet and SMB", Step: "rule", StepNumber: 5, Rule: 1, Remote: "203.0.113.50"}},
		{"GRE by number", []string{"--src", "203.0.113.50", "--protocol", "47"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "203.0.113.50"}},
		{"GRE from a blacklisted address", []string{"--src", "203.0.113.7", "--protocol", "47"},
			explanation{Verdict: "block", Reason: "Blacklisted IP", Step: "blacklist", StepNumber: 2, Remote: "203.0.113.7"}},
		{"rule with sources v4", []string{"--src", "10.9.8.7", "--dst-port", "22"},
			explanation{Verdict: "allow", Reason: "Rule: SSH from the lab", Step: "rule", StepNumber: 5, Rule: 3, Remote: "10.9.8.7"}},
		{"rule with sources v6", []string{"--src", "2001:db8:1::5", "--dst-port", "22", "--protocol", "any"},
			explanation{Verdict: "allow", Reason: "Rule: SSH from the lab", Step: "rule", StepNumber: 5, Rule: 3, Remote: "2001:db8:1::5"}},
		{"rule after a source mismatch v6", []string{"--src", "2001:db8:2::5", "--dst-port", "22"},
			explanation{Verdict: "block", Reason: "Rule: Block SSH", Step: "rule", StepNumber: 5, Rule: 4, Remote: "2001:db8:2::5"}},
		{"disabled rule", []string{"--src", "198.51.100.9", "--protocol", "udp", "--dst-port", "27010"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "198.51.100.9"}},
		{"no port: rules with ports cannot match", []string{"--src", "203.0.113.50"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "203.0.113.50"}},
		{"inbound rule on udp does not match tcp", []string{"--src", "8.8.8.8", "--protocol", "udp", "--dst-port", "23"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "8.8.8.8"}},
		{"default v6", []string{"--src", "2001:db8:99::1", "--dst-port", "80"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "2001:db8:99::1"}},
		{"the destination is not the remote of an inbound packet", []string{"--src", "8.8.4.4", "--dst", "203.0.113.7"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: "8.8.4.4"}},
		{"out: rule", []string{"--direction", "out", "--dst", "198.51.100.25", "--dst-port", "25"},
			explanation{Verdict: "block", Reason: "Rule: No outbound SMTP", Step: "rule", StepNumber: 5, Rule: 5, Direction: "out", Remote: "198.51.100.25"}},
		{"out: inbound rules do not apply", []string{"--direction", "out", "--src", "10.0.0.2", "--dst", "198.51.100.25", "--dst-port", "23"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Direction: "out", Remote: "198.51.100.25"}},
		{"out: blacklisted remote v6", []string{"--direction", "out", "--dst", "2001:db8:dead::1"},
			explanation{Verdict: "block", Reason: "Blacklisted IP", Step: "blacklist", StepNumber: 2, Direction: "out", Remote: "2001:db8:dead::1"}},
		{"out: threat intel", []string{"--direction", "out", "--dst", "198.18.7.7", "--dst-port", "443"},
			explanation{Verdict: "block", Reason: "Threat intel: Feodo Tracker", Step: "threat_intel", StepNumber: 3, Direction: "out", Remote: "198.18.7.7"}},
		{"out: the source is not the remote", []string{"--direction", "out", "--src", "203.0.113.7", "--dst", "8.8.8.8"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Direction: "out", Remote: "8.8.8.8"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			want := checkExplainJSON(t, tt.args, tt.want, 4) // the removed feed's entry does not count
			// The text output says the same.
			r := mustRun(t, append([]string{"explain"}, tt.args...)...)
			for _, line := range []string{"Verdict:  " + want.Verdict + "\n", "Reason:   " + want.Reason + "\n"} {
				if !strings.Contains(r.stdout, line) {
					t.Errorf("explain %v = %q, want a line %q", tt.args, r.stdout, line)
				}
			}
		})
	}
}

func TestExplainText(t *testing.T) {
	newEnv(t, testConfig)
	r := mustRun(t, "explain", "--src", "203.0.113.50", "--dst-port", "23")
	want := `Verdict:  block
Reason:   Rule: Block Telnet and SMB
Step:     5 (rule); the rule is number 1 in fwctl list
Packet:   inbound tcp 203.0.113.50 -> 0.0.0.0 port 23 (SYN)
Note:     no --protocol given, so the packet is tcp; rules for udp or icmp are not tried.
Note:     the rate limit (step 4) depends on live traffic and is not evaluated here.
`
	if diff := cmp.Diff(want, r.stdout); diff != "" {
		t.Errorf("explain (-want +got):\n%s", diff)
	}
	// Asked for tcp, it says nothing of the protocol.
	r = mustRun(t, "explain", "--src", "203.0.113.50", "--dst-port", "23", "--protocol", "tcp")
	if strings.Contains(r.stdout, "no --protocol given") {
		t.Errorf("explain --protocol tcp = %q, want no protocol note", r.stdout)
	}
	if r.stderr != "" {
		t.Errorf("stderr = %q: a missing database must be skipped silently", r.stderr)
	}
	// "any" is a packet of some protocol: tcp, and it says so, since a
	// udp rule it does not try may decide udp otherwise.
	r = mustRun(t, "explain", "--src", "203.0.113.50", "--dst-port", "27010", "--protocol", "any")
	if !strings.Contains(r.stdout, "Note:     --protocol any is explained as a tcp packet") {
		t.Errorf("explain --protocol any = %q, want the note that it is taken as tcp", r.stdout)
	}
	// A malformed packet is decided before the rate limit and the rules:
	// no note about either.
	r = mustRun(t, "explain", "--src", "::ffff:203.0.113.50")
	if strings.Contains(r.stdout, "Note:") {
		t.Errorf("explain of a malformed packet = %q, want no note", r.stdout)
	}
}

// Loopback traffic never meets a rule: the kernel accepts lo first, so
// explain says so beside the rules' verdict, which would mislead alone.
// Another host's address gets no such note.
func TestExplainNotesLoopback(t *testing.T) {
	newEnv(t, `{"default_policy": "allow", "default_outbound_policy": "block"}`)
	for _, args := range [][]string{
		{"explain", "--direction", "out", "--dst", "127.0.0.1", "--dst-port", "5432"},
		{"explain", "--direction", "out", "--dst", "::1", "--dst-port", "5432"},
	} {
		r := mustRun(t, args...)
		if !strings.Contains(r.stdout, "is reached over lo, which pfw does not filter unless pfwd runs with --iface lo") {
			t.Errorf("%v = %q, want the loopback note", args, r.stdout)
		}
	}
	r := mustRun(t, "explain", "--direction", "out", "--dst", "203.0.113.50", "--dst-port", "5432")
	if strings.Contains(r.stdout, "over lo") {
		t.Errorf("explain to another host = %q, want no loopback note", r.stdout)
	}
}

func TestExplainWithUnreadableDatabaseWarns(t *testing.T) {
	e := newEnv(t, testConfig)
	os.WriteFile(e.db, []byte("this is not a database, and long enough to have a header"), 0o644)
	r := mustRun(t, "explain", "--src", "198.18.0.5")
	if !strings.Contains(r.stderr, "warning: threat entries not checked") {
		t.Errorf("stderr = %q, want a warning", r.stderr)
	}
	if !strings.Contains(r.stdout, "Default policy") {
		t.Errorf("stdout = %q, want the verdict without threat entries", r.stdout)
	}
}

func TestExplainErrors(t *testing.T) {
	newEnv(t, testConfig)
	tests := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{}, 2, "--src IP is required"},
		{[]string{"--direction", "out", "--src", "10.0.0.1"}, 2, "--dst IP is required for --direction out"},
		{[]string{"--src", "10.0.0.1", "extra"}, 2, `unexpected argument "extra"`},
		{[]string{"--src", "10.0.0.1", "--bogus"}, 2, "unknown flag --bogus"},
		{[]string{"--src", "10.0.0.256"}, 1, `--src: "10.0.0.256" is not an IP address`},
		{[]string{"--src", "10.0.0.1", "--dst", "::1"}, 1, "not the same address family"},
		{[]string{"--src", "10.0.0.1", "--dst-port", "0"}, 1, `--dst-port: 0 is not a port (1-65535)`},
		{[]string{"--src", "10.0.0.1", "--dst-port", "65536"}, 1, `--dst-port: 65536 is not a port (1-65535)`},
		{[]string{"--src", "10.0.0.1", "--dst-port", "http"}, 2, `--dst-port "http" is not a number`},
		{[]string{"--src", "10.0.0.1", "--protocol", "icmp", "--dst-port", "7"}, 1, "--dst-port: icmp has no ports"},
		{[]string{"--src", "10.0.0.1", "--protocol", "icmpv6"}, 1, "--protocol icmpv6 is IPv6's ICMP, but the addresses are IPv4 (use --protocol icmp)"},
		{[]string{"--direction", "out", "--dst", "2001:db8::1", "--protocol", "icmp"}, 1, "--protocol icmp is IPv4's ICMP, but the addresses are IPv6 (use --protocol icmpv6)"},
		{[]string{"--src", "10.0.0.1", "--protocol", "300"}, 1, "--protocol: 300 is not an IP protocol number (0-255)"},
		{[]string{"--src", "10.0.0.1", "--protocol", "47", "--dst-port", "5"}, 1, "--dst-port: IP protocol 47 has no ports pfw reads"},
		{[]string{"--src", "::1", "--protocol", "1"}, 1, "--protocol icmp is IPv4's ICMP"},
		{[]string{"--src", "10.0.0.1", "--protocol", "gre"}, 2, `--protocol: "gre" is not a protocol`},
		{[]string{"--src", "10.0.0.1", "--direction", "up"}, 2, `--direction: "up" is not a direction`},
	}
	for _, tt := range tests {
		r := fwctl(t, append([]string{"explain"}, tt.args...)...)
		if r.code != tt.code {
			t.Errorf("explain %v: exit %d, want %d: %v", tt.args, r.code, tt.code, r)
			continue
		}
		checkErrorLine(t, r, tt.msg)
	}
	// An outbound explain without --dst shows the outbound synopsis, where
	// --dst is not optional.
	r := fwctl(t, "explain", "--direction", "out", "--src", "10.0.0.1")
	if !strings.Contains(r.stderr, "\nusage: fwctl explain --direction out --dst IP [--src IP]") {
		t.Errorf("explain --direction out without --dst: stderr %q, want the outbound synopsis", r.stderr)
	}
}

// explain checks the database's threat entries as pfwd checks a seed
// (intel.Sanitize): a row pfwd would refuse blocks nothing here either.
// Before, a row ::/0 or 0.0.0.0/0 in a database pfwd had not opened since
// made explain call every address a threat. A row around a whitelisted
// address is kept, as pfwd keeps it: the whitelisted address is allowed
// at step 1, the ones beside it blocked at step 3.
func TestExplainSanitizesThreatRows(t *testing.T) {
	cfg := strings.Replace(testConfig, `"whitelist_ips": ["127.0.0.1", "::1"]`, `"whitelist_ips": ["127.0.0.1", "::1", "198.18.5.5"]`, 1)
	if cfg == testConfig {
		t.Fatal("the test config's whitelist changed: update this test")
	}
	e := newEnv(t, cfg)
	addThreats(t, e.db, "Feodo Tracker", "high", time.Now(),
		"0.0.0.0/0", "::/0", "198.0.0.0/7", "127.0.0.0/8", // refused whatever the whitelist
		"198.18.5.0/24", // around the whitelisted 198.18.5.5: valid
		"198.18.0.5")    // valid
	defaultPolicy := func(remote string) explanation {
		return explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Remote: remote}
	}
	tests := []struct {
		name string
		args []string
		want explanation
	}{
		{"a row 0.0.0.0/0", []string{"--src", "8.8.8.8"}, defaultPolicy("8.8.8.8")},
		{"a row ::/0", []string{"--src", "2001:db8:99::1"}, defaultPolicy("2001:db8:99::1")},
		{"a row shorter than /8", []string{"--src", "199.1.2.3"}, defaultPolicy("199.1.2.3")},
		{"a row beside a whitelisted address", []string{"--src", "198.18.5.9"},
			explanation{Verdict: "block", Reason: "Threat intel: Feodo Tracker", Step: "threat_intel", StepNumber: 3, Remote: "198.18.5.9"}},
		{"the whitelisted address", []string{"--src", "198.18.5.5"},
			explanation{Verdict: "allow", Reason: "Whitelisted IP", Step: "whitelist", StepNumber: 1, Remote: "198.18.5.5"}},
		{"a loopback row", []string{"--direction", "out", "--dst", "127.0.0.2"},
			explanation{Verdict: "allow", Reason: "Default policy", Step: "default_policy", StepNumber: 6, Direction: "out", Remote: "127.0.0.2"}},
		{"a valid row", []string{"--src", "198.18.0.5"},
			explanation{Verdict: "block", Reason: "Threat intel: Feodo Tracker", Step: "threat_intel", StepNumber: 3, Remote: "198.18.0.5"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			checkExplainJSON(t, tt.args, tt.want, 2) // the two valid rows
		})
	}
}

// checkExplainJSON runs `explain --json` with args and compares its answer
// with want, whose direction defaults to in and whose threat entry count
// is entries; it returns the explanation it expected.
func checkExplainJSON(t *testing.T, args []string, want explanation, entries int) explanation {
	t.Helper()
	var got explanation
	decode(t, mustRun(t, append([]string{"explain", "--json"}, args...)...), &got)
	if want.Direction == "" {
		want.Direction = "in"
	}
	want.ThreatEntries = entries
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("explain %v (-want +got):\n%s", args, diff)
	}
	return want
}
