package nft

import (
	"bufio"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

var update = flag.Bool("update", false, "rewrite the golden files in testdata/")

func open(t *testing.T, cfg Config) *Firewall {
	t.Helper()
	fw, err := Open(cfg)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { fw.Remove() })
	return fw
}

// tables lists the namespace's tables as nft names them.
func (n *testNetNS) tables(t *testing.T) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(strings.TrimSpace(n.run(t, "nft", "list", "tables")), "\n") {
		if l != "" {
			out = append(out, l)
		}
	}
	return out
}

var (
	prognameLine = regexp.MustCompile(`# progname \S+`)
	// The queue rule reads differently with and without the iptables
	// extension libraries (and natively); TestQueueModes checks what it holds.
	queueStatement = regexp.MustCompile(`(?m)^(\t\t).*?( comment "new flows queue to pfwd)`)
)

func normalizeRuleset(s string) string {
	s = prognameLine.ReplaceAllString(s, "# progname <test binary>")
	return queueStatement.ReplaceAllString(s, "${1}<queue statement>${2}")
}

func TestRulesetGolden(t *testing.T) {
	lists := map[List][]netip.Prefix{
		Whitelist: prefixes("127.0.0.1", "::1"),
		Blacklist: prefixes("203.0.113.7", "192.0.2.0/24", "192.0.2.7", "2001:db8::/32", "255.255.255.255"),
		Intel:     prefixes("198.51.100.0/25", "198.51.100.128/25", "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"),
	}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"default", Config{InitialSets: lists}},
		{"fail-closed", Config{FailClosed: true, QueueNum: 3, QueueCount: 4, LogGroup: 7, LogRate: 10}},
		{"iface", Config{Ifaces: []string{"eth0", "wlan0"}}},
		{"iface-lo", Config{Ifaces: []string{"lo", "eth0"}}},
		{"no-fast-path", Config{DisableFastPath: true}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetNS(t)
			tc.cfg.NetNS = ns.fd
			open(t, tc.cfg)
			got := normalizeRuleset(ns.run(t, "nft", "list", "ruleset"))
			golden := filepath.Join("testdata", tc.name+".golden")
			if *update {
				if err := os.WriteFile(golden, []byte(got), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			want, err := os.ReadFile(golden)
			if err != nil {
				t.Fatalf("%v (run with -update to create it)", err)
			}
			if diff := cmp.Diff(string(want), got); diff != "" {
				t.Errorf("nft list ruleset differs from %s (-want +got):\n%s", golden, diff)
			}
		})
	}
}

func TestOpenReplacesStaleTableAndLeavesOthers(t *testing.T) {
	ns := newNetNS(t)
	ns.run(t, "nft", "add table inet other")
	ns.run(t, "nft", "add chain inet other keep { type filter hook input priority 0; policy accept; }")
	ns.run(t, "nft", "add rule inet other keep tcp dport 22 accept")
	other := ns.run(t, "nft", "list table inet other")
	const mine = "table inet personal_firewall"
	check := func(step string, want ...string) {
		t.Helper()
		if diff := cmp.Diff(append([]string{"table inet other"}, want...), ns.tables(t)); diff != "" {
			t.Errorf("%s: tables (-want +got):\n%s", step, diff)
		}
		if got := ns.run(t, "nft", "list table inet other"); got != other {
			t.Errorf("%s: table inet other changed:\n%s", step, got)
		}
	}

	// A leftover table of our name (a crashed fail-closed pfwd's, or one
	// made by hand) is replaced, its contents gone.
	ns.run(t, "nft", "add table inet personal_firewall")
	ns.run(t, "nft", "add chain inet personal_firewall stale")
	for _, cfg := range []Config{{}, {FailClosed: true}} {
		cfg.NetNS = ns.fd
		fw, err := Open(cfg)
		if err != nil {
			t.Fatalf("Open(FailClosed=%v) over a stale table: %v", cfg.FailClosed, err)
		}
		check(fmt.Sprintf("open FailClosed=%v", cfg.FailClosed), mine)
		if _, err := ns.try("nft", "list chain inet personal_firewall stale"); err == nil {
			t.Errorf("FailClosed=%v: the stale table's chain survived", cfg.FailClosed)
		}
		if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: prefixes("192.0.2.1")}); err != nil {
			t.Fatal(err)
		}
		check("update", mine)
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		if cfg.FailClosed {
			check("close fail-closed", mine) // stays, stale for the next round
		} else {
			check("close")
			ns.run(t, "nft", "add table inet personal_firewall") // stale again
		}
	}

	// Fail-closed over fail-closed, then Remove.
	fw, err := Open(Config{NetNS: ns.fd, FailClosed: true})
	if err != nil {
		t.Fatal(err)
	}
	check("reopen fail-closed", mine)
	if err := fw.Remove(); err != nil {
		t.Fatal(err)
	}
	check("remove")
	if err := RemoveTable(Config{NetNS: ns.fd}); err != nil {
		t.Errorf("RemoveTable with no table: %v", err)
	}
}

func TestOwnedTableIsExclusive(t *testing.T) {
	ns := newNetNS(t)
	first := open(t, Config{NetNS: ns.fd})
	if _, err := Open(Config{NetNS: ns.fd}); err == nil || !strings.Contains(err.Error(), "belongs to a running process") {
		t.Errorf("second Open while the first runs: %v, want an error saying the table is taken", err)
	}
	if _, err := ns.try("nft", "delete table inet personal_firewall"); err == nil {
		t.Error("nft could delete the owned table")
	}
	if err := first.UpdateSets(map[List][]netip.Prefix{Intel: prefixes("198.51.100.1")}); err != nil {
		t.Errorf("UpdateSets by the owner: %v", err)
	}
}

// TestHelperProcess is not a test: TestKilledProcess runs the test binary
// as a pfwd stand-in that opens the table and waits to be killed.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv("PFW_NFT_HELPER_NETNS")
	if path == "" {
		t.Skip("helper process for TestKilledProcess")
	}
	f, err := os.Open(path)
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	if _, err := Open(Config{NetNS: int(f.Fd()), FailClosed: os.Getenv("PFW_NFT_HELPER_FAILCLOSED") != ""}); err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	fmt.Println("ready")
	time.Sleep(time.Minute)
	os.Exit(0)
}

func TestKilledProcess(t *testing.T) {
	for _, failClosed := range []bool{false, true} {
		t.Run(fmt.Sprintf("FailClosed=%v", failClosed), func(t *testing.T) {
			ns := newNetNS(t)
			cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$")
			cmd.Env = append(os.Environ(), "PFW_NFT_HELPER_NETNS=/var/run/netns/"+ns.name)
			if failClosed {
				cmd.Env = append(cmd.Env, "PFW_NFT_HELPER_FAILCLOSED=1")
			}
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
			if line, _ := bufio.NewReader(stdout).ReadString('\n'); line != "ready\n" {
				t.Fatalf("helper: %q", line)
			}
			if diff := cmp.Diff([]string{"table inet personal_firewall"}, ns.tables(t)); diff != "" {
				t.Fatalf("while the helper runs (-want +got):\n%s", diff)
			}
			if err := cmd.Process.Signal(syscall.SIGKILL); err != nil {
				t.Fatal(err)
			}
			cmd.Wait()
			var want []string
			if failClosed {
				want = []string{"table inet personal_firewall"}
			}
			if diff := cmp.Diff(want, ns.tables(t)); diff != "" {
				t.Errorf("after SIGKILL (-want +got):\n%s", diff)
			}
		})
	}
}

// listSet reads a set back as nft prints it, as ranges.
func (n *testNetNS) listSet(t *testing.T, table, set string) []addrRange {
	t.Helper()
	var doc struct {
		Nftables []struct {
			Set *struct {
				Elem []json.RawMessage `json:"elem"`
			} `json:"set"`
		} `json:"nftables"`
	}
	if err := json.Unmarshal([]byte(n.run(t, "nft", "-j", "list", "set", "inet", table, set)), &doc); err != nil {
		t.Fatal(err)
	}
	var rs []addrRange
	for _, o := range doc.Nftables {
		if o.Set == nil {
			continue
		}
		for _, raw := range o.Set.Elem {
			var e struct {
				Prefix *struct {
					Addr string `json:"addr"`
					Len  int    `json:"len"`
				} `json:"prefix"`
				Range []string `json:"range"`
			}
			var addr string
			switch {
			case json.Unmarshal(raw, &addr) == nil:
				a := netip.MustParseAddr(addr)
				rs = append(rs, addrRange{a, a})
			case json.Unmarshal(raw, &e) == nil && e.Prefix != nil:
				rs = append(rs, prefixRange(netip.PrefixFrom(netip.MustParseAddr(e.Prefix.Addr), e.Prefix.Len)))
			case e.Range != nil:
				rs = append(rs, addrRange{netip.MustParseAddr(e.Range[0]), netip.MustParseAddr(e.Range[1])})
			default:
				t.Fatalf("set %s: element %s: unknown form", set, raw)
			}
		}
	}
	slices.SortFunc(rs, addrRange.compare)
	return rs
}

func TestUpdateSetsByDifference(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	reader, err := nftables.New(nftables.WithNetNSFd(ns.fd))
	if err != nil {
		t.Fatal(err)
	}
	table := &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet}

	const top6 = "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff"
	type sets map[string][]string // set name → ranges as nft shows them
	steps := []struct {
		name   string
		update map[List][]netip.Prefix
		want   sets // every set not named here is empty
	}{{
		name: "first fill: overlapping and adjacent merged, top addresses",
		update: map[List][]netip.Prefix{
			Whitelist: prefixes("127.0.0.1", "::1"),
			Blacklist: prefixes("203.0.113.7", "192.0.2.0/24", "192.0.2.128/25", "10.0.0.0/24", "10.0.1.0/24",
				"255.255.255.255", "2001:db8::/32", "2001:db8:1::/48", top6),
		},
		want: sets{
			"whitelist_v4": {"127.0.0.1/32"}, "whitelist_v6": {"::1/128"},
			"blacklist_v4": {"10.0.0.0/23", "192.0.2.0/24", "203.0.113.7/32", "255.255.255.255/32"},
			"blacklist_v6": {"2001:db8::/32", top6 + "/128"},
		},
	}, {
		name:   "intel alone: the other lists stay",
		update: map[List][]netip.Prefix{Intel: prefixes("198.51.100.0/24", "2001:db8:dead::/48")},
		want: sets{
			"whitelist_v4": {"127.0.0.1/32"}, "whitelist_v6": {"::1/128"},
			"blacklist_v4": {"10.0.0.0/23", "192.0.2.0/24", "203.0.113.7/32", "255.255.255.255/32"},
			"blacklist_v6": {"2001:db8::/32", top6 + "/128"},
			"intel_v4":     {"198.51.100.0/24"}, "intel_v6": {"2001:db8:dead::/48"},
		},
	}, {
		name: "grow a range from its start, move the top one down, add 0.0.0.0",
		update: map[List][]netip.Prefix{
			Blacklist: prefixes("0.0.0.0", "10.0.0.0/22", "192.0.2.0/24", "255.255.255.254/31", "2001:db8::/64", top6),
		},
		want: sets{
			"whitelist_v4": {"127.0.0.1/32"}, "whitelist_v6": {"::1/128"},
			"blacklist_v4": {"0.0.0.0/32", "10.0.0.0/22", "192.0.2.0/24", "255.255.255.254/31"},
			"blacklist_v6": {"2001:db8::/64", top6 + "/128"},
			"intel_v4":     {"198.51.100.0/24"}, "intel_v6": {"2001:db8:dead::/48"},
		},
	}, {
		name:   "shrink ranges, keep their starts; the whole v4 space",
		update: map[List][]netip.Prefix{Blacklist: prefixes("10.0.0.0/24", "255.255.255.255"), Whitelist: prefixes("0.0.0.0/0")},
		want: sets{
			"whitelist_v4": {"0.0.0.0/0"},
			"blacklist_v4": {"10.0.0.0/24", "255.255.255.255/32"},
			"intel_v4":     {"198.51.100.0/24"}, "intel_v6": {"2001:db8:dead::/48"},
		},
	}, {
		name:   "empty everything",
		update: map[List][]netip.Prefix{Whitelist: nil, Blacklist: nil, Intel: nil},
		want:   sets{},
	}}
	for _, st := range steps {
		if err := fw.UpdateSets(st.update); err != nil {
			t.Fatalf("%s: UpdateSets: %v", st.name, err)
		}
		sizes := fw.SetSizes()
		for _, l := range Lists {
			for _, v6 := range []bool{false, true} {
				name := SetName(l, v6)
				want := rngs(t, st.want[name]...)
				if diff := cmp.Diff(want, ns.listSet(t, DefaultTable, name), rangeCmp); diff != "" {
					t.Errorf("%s: set %s as nft lists it (-want +got):\n%s", st.name, name, diff)
				}
				elems, err := reader.GetSetElements(&nftables.Set{Table: table, Name: name})
				if err != nil {
					t.Fatal(err)
				}
				if diff := cmp.Diff(want, rangesFromElements(elems), rangeCmp); diff != "" {
					t.Errorf("%s: set %s read through netlink (-want +got):\n%s", st.name, name, diff)
				}
				if sizes[name] != len(want) {
					t.Errorf("%s: SetSizes()[%s] = %d, want %d", st.name, name, sizes[name], len(want))
				}
			}
		}
	}

	if err := fw.UpdateSets(map[List][]netip.Prefix{"greylist": nil}); err == nil {
		t.Error("UpdateSets with an unknown list: no error")
	}
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: prefixes("192.0.2.1")}); err != nil {
		t.Errorf("UpdateSets after a refused one: %v", err)
	}
}

// randomHosts returns n distinct, non-adjacent IPv4 /32s (so none merge).
func randomHosts(r *rand.Rand, n int) []netip.Prefix {
	seen := make(map[uint32]bool, n)
	out := make([]netip.Prefix, 0, n)
	for len(out) < n {
		v := r.Uint32() &^ 1 // even addresses only: never adjacent
		if seen[v] {
			continue
		}
		seen[v] = true
		out = append(out, netip.PrefixFrom(netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), 32))
	}
	return out
}

func TestUpdateSetsManyChunks(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd})
	r := rand.New(rand.NewPCG(1, 2))
	hosts := randomHosts(r, 20000)
	for _, ps := range [][]netip.Prefix{hosts, hosts[5000:], append(hosts[:1000:1000], randomHosts(r, 8000)...)} {
		if err := fw.UpdateSets(map[List][]netip.Prefix{Intel: ps}); err != nil {
			t.Fatal(err)
		}
		want := mergeRanges(ps)
		if diff := cmp.Diff(want, ns.listSet(t, DefaultTable, "intel_v4"), rangeCmp); diff != "" {
			t.Errorf("intel_v4 after an update of %d prefixes (-want +got):\n%s", len(ps), diff)
		}
	}
}

func TestQueueModes(t *testing.T) {
	t.Run("auto", func(t *testing.T) {
		ns := newNetNS(t)
		fw := open(t, Config{NetNS: ns.fd})
		t.Logf("this kernel: %s", fw.QueueMode())
	})
	t.Run("forced native without nft_queue", func(t *testing.T) {
		ns := newNetNS(t)
		probe := open(t, Config{NetNS: ns.fd})
		if probe.QueueMode() == QueueNative {
			t.Skip("this kernel has nft_queue")
		}
		probe.Close()
		for _, failClosed := range []bool{false, true} {
			_, err := Open(Config{NetNS: ns.fd, ForceQueueMode: QueueNative, FailClosed: failClosed})
			if err == nil || !strings.Contains(err.Error(), "CONFIG_NFT_QUEUE") || !errors.Is(err, syscall.ENOENT) {
				t.Errorf("FailClosed=%v: Open = %v, want an ENOENT error naming CONFIG_NFT_QUEUE", failClosed, err)
			}
			if got := ns.tables(t); got != nil {
				t.Errorf("FailClosed=%v: a failed Open left %v", failClosed, got)
			}
		}
	})
	for _, tc := range []struct {
		name string
		cfg  Config
		info []byte // xt_NFQ_info_v3 on a little-endian host
	}{
		{"xt one queue fail-open", Config{}, []byte{0, 0, 1, 0, nfqFlagBypass, 0, 0, 0}},
		{"xt fanout fail-closed", Config{QueueNum: 3, QueueCount: 4, FailClosed: true}, []byte{3, 0, 4, 0, nfqFlagCPUFanout, 0, 0, 0}},
		{"xt fanout fail-open", Config{QueueNum: 0x102, QueueCount: 2}, []byte{2, 1, 2, 0, nfqFlagBypass | nfqFlagCPUFanout, 0, 0, 0}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ns := newNetNS(t)
			tc.cfg.NetNS, tc.cfg.ForceQueueMode = ns.fd, QueueXT
			fw := open(t, tc.cfg)
			if fw.QueueMode() != QueueXT {
				t.Fatalf("QueueMode() = %q, want %q", fw.QueueMode(), QueueXT)
			}
			reader, err := nftables.New(nftables.WithNetNSFd(ns.fd))
			if err != nil {
				t.Fatal(err)
			}
			table := &nftables.Table{Name: DefaultTable, Family: nftables.TableFamilyINet}
			for _, h := range hooks {
				rules, err := reader.GetRules(table, &nftables.Chain{Name: h.chain, Table: table})
				if err != nil {
					t.Fatal(err)
				}
				last := rules[len(rules)-1].Exprs
				target, ok := last[0].(*expr.Target)
				if len(last) != 1 || !ok {
					t.Fatalf("chain %s: last rule is %#v, want an xt target", h.chain, last)
				}
				info, _ := target.Info.(*xt.Unknown)
				if target.Name != "NFQUEUE" || target.Rev != 3 || info == nil || !slices.Equal(*info, tc.info) {
					t.Errorf("chain %s: target %s rev %d info %v, want NFQUEUE rev 3 info %v", h.chain, target.Name, target.Rev, info, tc.info)
				}
			}
		})
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		cfg  Config
		want string
	}{
		{Config{QueueNum: 65535, QueueCount: 2}, "past the last queue"},
		{Config{Ifaces: []string{"eth0", "a/b"}}, `ifaces[1]: "a/b" is not an interface name`},
		{Config{Ifaces: []string{"0123456789abcdef"}}, "not an interface name"},
		{Config{ForceQueueMode: "iptables"}, `queue mode "iptables"`},
		{Config{Table: strings.Repeat("t", 300)}, "longer than"},
		{Config{InitialSets: map[List][]netip.Prefix{"greylist": nil}}, `unknown list "greylist"`},
	} {
		_, err := Open(tc.cfg)
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("Open(%+v) = %v, want an error with %q", tc.cfg, err, tc.want)
		}
	}
}

func TestCheckIfname(t *testing.T) {
	for name, ok := range map[string]bool{
		"eth0": true, "wlp3s0": true, "veth-a.100": true, "0123456789abcde": true, "lo": true,
		"": false, ".": false, "..": false, "0123456789abcdef": false, "a/b": false, "eth0:1": false, "a b": false, "a\tb": false,
	} {
		err := CheckIfname(name)
		if (err == nil) != ok {
			t.Errorf("CheckIfname(%q) = %v, want ok %v", name, err, ok)
		}
		if err != nil && !strings.Contains(err.Error(), "is not an interface name") {
			t.Errorf("CheckIfname(%q) = %q: does not say what is wrong", name, err)
		}
	}
}

// TestUpdateSetsAtomic makes the kernel refuse an update half way: someone
// flushed a set behind pfwd's back (possible on a fail-closed table, which
// has no owner), so deleting its vanished ranges fails. Nothing of the
// batch may apply, and the Firewall must learn what the kernel holds.
func TestUpdateSetsAtomic(t *testing.T) {
	ns := newNetNS(t)
	fw := open(t, Config{NetNS: ns.fd, FailClosed: true})
	if err := fw.UpdateSets(map[List][]netip.Prefix{
		Intel:     prefixes("198.51.100.1", "198.51.100.3"),
		Blacklist: prefixes("192.0.2.1"),
	}); err != nil {
		t.Fatal(err)
	}
	ns.run(t, "nft", "flush set inet personal_firewall intel_v4")

	next := map[List][]netip.Prefix{Intel: prefixes("198.51.100.3"), Blacklist: prefixes("192.0.2.1", "192.0.2.9")}
	if err := fw.UpdateSets(next); !errors.Is(err, syscall.ENOENT) {
		t.Fatalf("UpdateSets over a flushed set = %v, want ENOENT", err)
	}
	if diff := cmp.Diff(rngs(t, "192.0.2.1/32"), ns.listSet(t, DefaultTable, "blacklist_v4"), rangeCmp); diff != "" {
		t.Errorf("blacklist_v4 after a refused batch (-want +got):\n%s", diff)
	}
	if got := fw.SetSizes()["intel_v4"]; got != 0 {
		t.Errorf("SetSizes()[intel_v4] = %d after the refused batch, want 0 (read back)", got)
	}

	if err := fw.UpdateSets(next); err != nil {
		t.Fatalf("UpdateSets after the read back: %v", err)
	}
	for name, want := range map[string][]string{"intel_v4": {"198.51.100.3/32"}, "blacklist_v4": {"192.0.2.1/32", "192.0.2.9/32"}} {
		if diff := cmp.Diff(rngs(t, want...), ns.listSet(t, DefaultTable, name), rangeCmp); diff != "" {
			t.Errorf("%s (-want +got):\n%s", name, diff)
		}
	}
}
