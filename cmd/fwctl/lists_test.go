package main

import (
	"os"
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
