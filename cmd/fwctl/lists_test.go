package main

import (
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pfw/pfw/rules"
)

func TestAddressLists(t *testing.T) {
	for _, tt := range []struct {
		list    string
		initial []string
		entries func(*rules.Config) []string
	}{
		{"blacklist", []string{"203.0.113.7", "192.0.2.0/24", "2001:db8:dead::/48"},
			func(c *rules.Config) []string { return rules.FormatPrefixes(c.BlacklistIPs) }},
		{"whitelist", []string{"127.0.0.1", "::1"},
			func(c *rules.Config) []string { return rules.FormatPrefixes(c.WhitelistIPs) }},
	} {
		t.Run(tt.list, func(t *testing.T) {
			e := newEnv(t, testConfig)
			entries := func() []string {
				cfg, err := rules.Load(e.config)
				if err != nil {
					t.Fatal(err)
				}
				return tt.entries(cfg)
			}

			r := mustRun(t, tt.list, "list")
			if diff := cmp.Diff(strings.Join(tt.initial, "\n")+"\n", r.stdout); diff != "" {
				t.Errorf("list (-want +got):\n%s", diff)
			}
			var got []string
			decode(t, mustRun(t, tt.list, "list", "--json"), &got)
			if diff := cmp.Diff(tt.initial, got); diff != "" {
				t.Errorf("list --json (-want +got):\n%s", diff)
			}

			// Host bits are cleared, repeats collapse, v4 and v6 mix.
			r = mustRun(t, tt.list, "add", "198.51.100.9", "10.1.2.3/8", "2001:DB8:BEEF::1", "198.51.100.9")
			want := "Added 198.51.100.9 to the " + tt.list + ".\nAdded 10.0.0.0/8 to the " + tt.list +
				".\nAdded 2001:db8:beef::1 to the " + tt.list + ".\n"
			if r.stdout != want {
				t.Errorf("add = %q, want %q", r.stdout, want)
			}
			after := append(append([]string{}, tt.initial...), "198.51.100.9", "10.0.0.0/8", "2001:db8:beef::1")
			if diff := cmp.Diff(after, entries()); diff != "" {
				t.Errorf("entries after add (-want +got):\n%s", diff)
			}

			// Adding what is listed is not an error and writes nothing.
			before, _ := os.ReadFile(e.config)
			r = mustRun(t, tt.list, "add", tt.initial[0])
			if !strings.Contains(r.stdout, "already listed") {
				t.Errorf("add of a listed entry = %q, want \"already listed\"", r.stdout)
			}
			if now, _ := os.ReadFile(e.config); string(now) != string(before) {
				t.Error("adding a listed entry rewrote the file")
			}
			var change listAdded
			decode(t, mustRun(t, "--json", tt.list, "add", tt.initial[0], "192.0.2.200"), &change)
			want2 := listAdded{AlreadyListed: []string{tt.initial[0]}, Added: []string{"192.0.2.200"},
				Entries: append(after, "192.0.2.200")}
			if diff := cmp.Diff(want2, change); diff != "" {
				t.Errorf("add --json (-want +got):\n%s", diff)
			}

			r = mustRun(t, tt.list, "remove", "10.0.0.0/8", "198.51.100.9")
			if want := "Removed 10.0.0.0/8 from the " + tt.list + ".\nRemoved 198.51.100.9 from the " + tt.list + ".\n"; r.stdout != want {
				t.Errorf("remove = %q, want %q", r.stdout, want)
			}
			var removed listRemoved
			decode(t, mustRun(t, tt.list, "remove", "192.0.2.200", "--json"), &removed)
			want3 := listRemoved{Removed: []string{"192.0.2.200"}, Entries: append(append([]string{}, tt.initial...), "2001:db8:beef::1")}
			if diff := cmp.Diff(want3, removed); diff != "" {
				t.Errorf("remove --json (-want +got):\n%s", diff)
			}

			for _, entry := range entries() {
				mustRun(t, tt.list, "remove", entry)
			}
			if r := mustRun(t, tt.list, "list"); r.stdout != "The "+tt.list+" is empty.\n" {
				t.Errorf("empty list = %q", r.stdout)
			}
			if r := mustRun(t, tt.list, "list", "--json"); strings.TrimSpace(r.stdout) != "[]" {
				t.Errorf("empty list --json = %q, want []", r.stdout)
			}
		})
	}
}

// Every key of an edit's JSON is there, [] when empty.
func TestListEditJSONHasEveryKey(t *testing.T) {
	newEnv(t, testConfig)
	var got map[string]any
	decode(t, mustRun(t, "--json", "blacklist", "add", "198.51.100.77"), &got)
	for _, k := range []string{"added", "already_listed", "entries"} {
		if _, ok := got[k].([]any); !ok {
			t.Errorf("add --json: %q is %v, want an array", k, got[k])
		}
	}
	got = nil
	decode(t, mustRun(t, "--json", "blacklist", "add", "198.51.100.77"), &got)
	if a, ok := got["added"].([]any); !ok || len(a) != 0 {
		t.Errorf("add --json of a listed address: added = %v, want []", got["added"])
	}
	got = nil
	decode(t, mustRun(t, "--json", "blacklist", "remove", "198.51.100.77"), &got)
	if _, ok := got["removed"].([]any); !ok || len(got) != 2 {
		t.Errorf("remove --json = %v, want removed and entries", got)
	}
}

func TestBlacklistingAWhitelistedAddressWarns(t *testing.T) {
	newEnv(t, testConfig)
	r := mustRun(t, "blacklist", "add", "127.0.0.0/8")
	if !strings.Contains(r.stderr, "127.0.0.0/8 overlaps the whitelist") {
		t.Errorf("stderr = %q, want a note about the whitelist", r.stderr)
	}
	if r := mustRun(t, "blacklist", "add", "198.51.100.1"); r.stderr != "" {
		t.Errorf("stderr = %q, want nothing", r.stderr)
	}
	// And the other way round: whitelisting lifts a block.
	r = mustRun(t, "whitelist", "add", "198.51.100.1")
	if !strings.Contains(r.stderr, "198.51.100.1 overlaps the blacklist") {
		t.Errorf("stderr = %q, want a note about the blacklist", r.stderr)
	}
}

func TestListEntryEdges(t *testing.T) {
	e := newEnv(t, testConfig)
	before, _ := os.ReadFile(e.config)
	for _, args := range [][]string{
		{"blacklist", "add", "0.0.0.0/0"},
		{"whitelist", "add", "::/0"},
	} {
		r := fwctl(t, args...)
		if r.code != 1 {
			t.Errorf("fwctl %v: %v, want exit 1", args, r)
		}
		checkErrorLine(t, r, "covers every IPv")
	}
	if now, _ := os.ReadFile(e.config); string(now) != string(before) {
		t.Error("a refused entry changed the file")
	}
	r := mustRun(t, "blacklist", "add", "192.0.2.9/24")
	if !strings.Contains(r.stderr, "192.0.2.9/24 has host bits set: it means the network 192.0.2.0/24") {
		t.Errorf("stderr = %q, want a note about the host bits", r.stderr)
	}
	if r := mustRun(t, "blacklist", "add", "198.51.100.0/24", "203.0.113.5"); r.stderr != "" {
		t.Errorf("stderr = %q for entries without host bits, want nothing", r.stderr)
	}
}

// A hand-edited file may list one entry in several spellings; removing
// it removes them all, or it would stay in force. An address inside a
// listed network is named as such.
func TestListRemoveEveryCopy(t *testing.T) {
	e := newEnv(t, `{"blacklist_ips": ["10.99.16.2", "192.0.2.0/24", "10.99.16.2/32", "::ffff:10.99.16.2", "10.99.16.2"]}`)
	r := mustRun(t, "blacklist", "remove", "10.99.16.2")
	if r.stdout != "Removed 10.99.16.2 from the blacklist.\n" {
		t.Errorf("remove = %q", r.stdout)
	}
	cfg, err := rules.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	if got := rules.FormatPrefixes(cfg.BlacklistIPs); !slices.Equal(got, []string{"192.0.2.0/24"}) {
		t.Errorf("blacklist after remove: %q, want only 192.0.2.0/24", got)
	}
	r = fwctl(t, "blacklist", "remove", "192.0.2.9")
	if r.code != 1 {
		t.Errorf("remove of an address inside a listed network: %v, want exit 1", r)
	}
	checkErrorLine(t, r, "192.0.2.9 is not an entry of the blacklist, but lies within its entry 192.0.2.0/24 (nothing was removed)")
}

// bulkConfig writes a config whose blacklist holds n entries in no sorted
// order: host addresses in 10.0.0.0/16 and 10.1.0.0/16, a /48 in every
// tenth place, and one v4 address written twice, once the v6 way.
// The whitelist holds a network a bulk edit overlaps both ways.
func bulkConfig(n int) (config string, blacklist []string) {
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range n {
		switch {
		case i%10 == 9:
			blacklist = append(blacklist, fmt.Sprintf("2001:db8:%x::/48", i))
		default:
			blacklist = append(blacklist, fmt.Sprintf("10.%d.%d.%d", i>>16&1, i>>8&255, i&255))
		}
	}
	rng.Shuffle(len(blacklist), func(i, j int) { blacklist[i], blacklist[j] = blacklist[j], blacklist[i] })
	blacklist = append(blacklist, "::ffff:"+blacklist[1]) // Load unmaps it
	data, _ := json.Marshal(blacklist)
	config = `{"whitelist_ips": ["127.0.0.1", "::1", "10.200.0.0/16"], "blacklist_ips": ` + string(data) + `}`
	return config, blacklist
}

// A bulk edit, as `xargs fwctl blacklist add` makes one, says the same
// per entry as a short one and keeps the list in the order written. (It
// checks what the edit does, not how fast: BenchmarkListBulkAdd shows
// the near-linear time.)
func TestListBulkEdit(t *testing.T) {
	const listed, edited = 50_000, 20_000
	config, initial := bulkConfig(listed)
	initial[len(initial)-1] = initial[1] // as Load reads the v6 spelling
	e := newEnv(t, config)
	entries := func() []string {
		t.Helper()
		cfg, err := rules.Load(e.config)
		if err != nil {
			t.Fatal(err)
		}
		return rules.FormatPrefixes(cfg.BlacklistIPs)
	}
	if diff := cmp.Diff(initial, entries()); diff != "" {
		t.Fatalf("initial blacklist (-want +got):\n%s", diff)
	}

	// New addresses, some of them twice, entries already listed, and
	// networks that overlap the whitelist from inside and from outside.
	var args []string
	for i := range edited - 1004 {
		switch {
		case i%20 == 0:
			args = append(args, initial[i]) // already listed
		case i%20 == 1 && i > 1:
			args = append(args, fmt.Sprintf("10.100.%d.%d", (i-2)>>8&255, (i-2)&255)) // a repeat
		default:
			args = append(args, fmt.Sprintf("10.100.%d.%d", i>>8&255, i&255))
		}
	}
	for i := range 1000 {
		args = append(args, fmt.Sprintf("10.200.%d.%d", i>>8&255, i&255)) // inside the whitelist
	}
	args = append(args, "10.1.2.3/8", "127.0.0.0/8", "2001:db8:ffff::9/48", "10.200.7.0/24")
	var added, already, shadowed []string
	seen, wasListed := map[string]bool{}, map[string]bool{}
	for _, p := range initial {
		wasListed[p] = true
	}
	for _, a := range args {
		pfx, err := rules.ParsePrefix(a)
		if err != nil {
			t.Fatal(err)
		}
		p := rules.FormatPrefix(pfx)
		switch {
		case seen[p]:
		case wasListed[p]:
			already = append(already, p)
		default:
			added = append(added, p)
			if strings.HasPrefix(p, "10.200.") || p == "127.0.0.0/8" || p == "10.0.0.0/8" {
				shadowed = append(shadowed, p)
			}
		}
		seen[p] = true
	}
	var stdout, stderr strings.Builder
	for _, p := range added {
		fmt.Fprintf(&stdout, "Added %s to the blacklist.\n", p)
	}
	for _, p := range already {
		fmt.Fprintf(&stdout, "%s is already listed in the blacklist.\n", p)
	}
	stderr.WriteString("fwctl: note: 10.1.2.3/8 has host bits set: it means the network 10.0.0.0/8\n")
	stderr.WriteString("fwctl: note: 2001:db8:ffff::9/48 has host bits set: it means the network 2001:db8:ffff::/48\n")
	for _, p := range shadowed {
		fmt.Fprintf(&stderr, "fwctl: note: %s overlaps the whitelist, which is checked first: whitelisted addresses stay allowed\n", p)
	}
	r := mustRun(t, append([]string{"blacklist", "add"}, args...)...)
	if diff := cmp.Diff(stdout.String(), r.stdout); diff != "" {
		t.Errorf("bulk add stdout (-want +got):\n%s", diff)
	}
	if diff := cmp.Diff(stderr.String(), r.stderr); diff != "" {
		t.Errorf("bulk add stderr (-want +got):\n%s", diff)
	}
	grown := append(slices.Clone(initial), added...)
	if diff := cmp.Diff(grown, entries()); diff != "" {
		t.Errorf("blacklist after bulk add (-want +got):\n%s", diff)
	}
	if len(added) != 18_101 || len(already) != 950 {
		t.Errorf("added %d and found %d listed, want 18101 and 950", len(added), len(already))
	}

	// Whitelisting is told about blacklist entries it contains and ones
	// that contain it, and about nothing else.
	r = mustRun(t, "whitelist", "add", "10.0.0.0/24", "2001:db8:9::1", "10.99.0.1", "10.200.0.0/16", "192.0.2.1")
	wantErr := "fwctl: note: 10.0.0.0/24 overlaps the blacklist; the whitelist is checked first, so these addresses are now allowed\n" +
		"fwctl: note: 2001:db8:9::1 overlaps the blacklist; the whitelist is checked first, so these addresses are now allowed\n" +
		"fwctl: note: 10.99.0.1 overlaps the blacklist; the whitelist is checked first, so these addresses are now allowed\n"
	if diff := cmp.Diff(wantErr, r.stderr); diff != "" {
		t.Errorf("whitelist add stderr (-want +got):\n%s", diff)
	}

	// A bulk remove that fails at its last argument removes nothing, and
	// an entry removed earlier in the command no longer covers it.
	before, _ := os.ReadFile(e.config)
	r = fwctl(t, "blacklist", "remove", added[0], "10.0.0.0/8", "10.0.0.0/24", "10.0.3.0/24")
	if r.code != 1 {
		t.Errorf("remove of an unlisted network: %v, want exit 1", r)
	}
	checkErrorLine(t, r, "10.0.0.0/24 is not in the blacklist (nothing was removed)")
	r = fwctl(t, "blacklist", "remove", added[0], "10.0.0.0/24")
	checkErrorLine(t, r, "10.0.0.0/24 is not an entry of the blacklist, but lies within its entry 10.0.0.0/8 (nothing was removed)")
	if now, _ := os.ReadFile(e.config); string(now) != string(before) {
		t.Error("a failed remove changed the file")
	}

	// Removing what was added, and some of what was there, in another
	// order: every copy of an entry goes, the rest keep their places.
	remove := slices.Clone(added)
	slices.Reverse(remove)
	gone := map[string]bool{}
	for _, p := range remove {
		gone[p] = true
	}
	for i := 1; len(remove) < edited; i += 7 {
		if !gone[initial[i]] {
			remove = append(remove, initial[i])
			gone[initial[i]] = true
		}
	}
	stdout.Reset()
	for _, p := range remove {
		fmt.Fprintf(&stdout, "Removed %s from the blacklist.\n", p)
	}
	r = mustRun(t, append([]string{"blacklist", "remove"}, remove...)...)
	if diff := cmp.Diff(stdout.String(), r.stdout); diff != "" {
		t.Errorf("bulk remove stdout (-want +got):\n%s", diff)
	}
	left := slices.DeleteFunc(slices.Clone(initial), func(p string) bool { return gone[p] })
	if diff := cmp.Diff(left, entries()); diff != "" {
		t.Errorf("blacklist after bulk remove (-want +got):\n%s", diff)
	}
	if len(left) != listed+1-(edited-len(added))-1 {
		t.Errorf("%d entries left, want %d", len(left), listed+1-(edited-len(added))-1)
	}
}

// BenchmarkListBulkAdd is `xargs -a N.txt fwctl blacklist add` against a
// 50,000-entry blacklist, reading and writing the file included.
func BenchmarkListBulkAdd(b *testing.B) {
	config, _ := bulkConfig(50_000)
	for _, n := range []int{1_000, 10_000} {
		b.Run(fmt.Sprintf("%d-addresses", n), func(b *testing.B) {
			dir := b.TempDir()
			path := filepath.Join(dir, "firewall_rules.json")
			args := []string{"--config", path, "--socket", filepath.Join(dir, "pfwd.sock"), "blacklist", "add"}
			for i := range n {
				args = append(args, fmt.Sprintf("10.100.%d.%d", i>>8&255, i&255))
			}
			b.ReportAllocs()
			for b.Loop() {
				b.StopTimer()
				if err := os.WriteFile(path, []byte(config), 0o644); err != nil {
					b.Fatal(err)
				}
				b.StartTimer()
				if code := run(args, io.Discard, io.Discard); code != 0 {
					b.Fatalf("exit %d", code)
				}
			}
		})
	}
}
