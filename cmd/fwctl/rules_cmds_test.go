package main

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/pfw/pfw/rules"
)

func TestListTable(t *testing.T) {
	newEnv(t, testConfig)
	r := mustRun(t, "list")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	want := []string{
		"#  STATUS    NAME                  ACTION  PROTOCOL  PORTS        SOURCES                        DIRECTION",
		"1  enabled   Block Telnet and SMB  block   tcp       23,445       any                            in",
		"2  disabled  Game servers          allow   udp       27000-27050  198.51.100.0/24,2001:db8::/32  in",
		"3  enabled   SSH from the lab      allow   tcp       22           10.0.0.0/8,2001:db8:1::/48     in",
		"4  enabled   Block SSH             block   tcp       22           any                            in",
		"5  enabled   No outbound SMTP      block   tcp       25           any                            out",
		"Default policy: allow inbound, allow outbound.",
	}
	if diff := cmp.Diff(want, lines); diff != "" {
		t.Errorf("list (-want +got):\n%s", diff)
	}
}

func TestListJSON(t *testing.T) {
	newEnv(t, testConfig)
	for _, args := range [][]string{{"list", "--json"}, {"--json", "list"}} {
		var got []map[string]any
		decode(t, mustRun(t, args...), &got)
		if len(got) != 5 {
			t.Fatalf("%v: %d rules, want 5", args, len(got))
		}
		want := map[string]any{
			"number": 2.0, "name": "Game servers", "action": "allow", "protocol": "udp",
			"ports": []any{"27000-27050"}, "src_ips": []any{"198.51.100.0/24", "2001:db8::/32"},
			"direction": "in", "enabled": false,
		}
		if diff := cmp.Diff(want, got[1]); diff != "" {
			t.Errorf("%v: rule 2 (-want +got):\n%s", args, diff)
		}
		if diff := cmp.Diff([]any{23.0, 445.0}, got[0]["ports"]); diff != "" {
			t.Errorf("%v: rule 1 ports (-want +got):\n%s", args, diff)
		}
	}
}

func TestListEmpty(t *testing.T) {
	newEnv(t, `{"rules": []}`)
	if r := mustRun(t, "list", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("list --json of no rules = %q, want []", r.stdout)
	}
	if r := mustRun(t, "list"); !strings.Contains(r.stdout, "No rules") {
		t.Errorf("list of no rules = %q, want a friendly line", r.stdout)
	}
}

func TestListErrors(t *testing.T) {
	e := newEnv(t, "")
	// No file yet: the default pfwd would write and enforce is shown, with
	// a note, and nothing is written.
	r := fwctl(t, "list")
	if r.code != 0 || !strings.Contains(r.stdout, "Block Telnet") {
		t.Fatalf("list without a config: %v", r)
	}
	checkErrorLine(t, r, "no config file at "+e.config+" yet; using the default config")
	if r := fwctl(t, "explain", "--src", "10.0.0.1", "--dst-port", "23"); r.code != 0 || !strings.Contains(r.stdout, "Rule: Block Telnet") {
		t.Errorf("explain without a config: %v", r)
	}
	if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a read-only command created %s (stat: %v)", e.config, err)
	}
	// A failed edit creates nothing either.
	if r := fwctl(t, "remove", "99"); r.code != 1 {
		t.Errorf("remove 99 without a config: %v", r)
	}
	if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failed edit created %s (stat: %v)", e.config, err)
	}

	os.WriteFile(e.config, []byte(`{"rules": [{"name": "x", "action": "drop"}]}`), 0o644)
	r = fwctl(t, "list")
	if r.code != 1 {
		t.Fatalf("list of a bad config: %v", r)
	}
	checkErrorLine(t, r, `rules[0].action: "drop" is not an action`)

	if r := fwctl(t, "list", "extra"); r.code != 2 {
		t.Errorf("list extra: %v", r)
	}
}

func TestAdd(t *testing.T) {
	tests := []struct {
		args       []string
		wantNumber int
		wantMsg    string
		want       rules.FileRule
	}{
		{
			args:       []string{"add", "Block FTP", "block", "--protocol", "tcp", "--ports", "20-21"},
			wantNumber: 6,
			wantMsg:    `Added rule 6: "Block FTP" (block in, tcp ports 20-21, from any)`,
			want: rules.FileRule{Name: "Block FTP", Action: "block", Protocol: "tcp", Ports: []any{"20-21"},
				SrcIPs: []string{}, Direction: "in", Enabled: true},
		},
		{
			// Flags before, between and after the arguments.
			args:       []string{"--json", "add", "--protocol", "udp", "Lab DNS", "--ports", "53,5353,8000-8100", "allow", "--src-ips", "10.0.0.0/8, 2001:db8::1", "--position", "1"},
			wantNumber: 1,
			want: rules.FileRule{Name: "Lab DNS", Action: "allow", Protocol: "udp", Ports: []any{53, 5353, "8000-8100"},
				SrcIPs: []string{"10.0.0.0/8", "2001:db8::1"}, Direction: "in", Enabled: true},
		},
		{
			args:       []string{"add", " No IRC out  ", "block", "--direction", "out", "--ports", "6667", "--position", "6"},
			wantNumber: 6,
			wantMsg:    `Added rule 6: "No IRC out" (block out, any port 6667, to any)`,
			want: rules.FileRule{Name: "No IRC out", Action: "block", Protocol: "any", Ports: []any{6667},
				SrcIPs: []string{}, Direction: "out", Enabled: true},
		},
		{
			args:       []string{"add", "No ping", "block", "--protocol", "icmp", "--position", "3"},
			wantNumber: 3,
			wantMsg:    `Added rule 3: "No ping" (block in, icmp, from any)`,
			want: rules.FileRule{Name: "No ping", Action: "block", Protocol: "icmp", Ports: []any{},
				SrcIPs: []string{}, Direction: "in", Enabled: true},
		},
		{
			// "any", the way list prints an empty list, is read back as one.
			args:       []string{"add", "Any web", "allow", "--protocol", "tcp", "--ports", "ANY", "--src-ips", " any "},
			wantNumber: 6,
			wantMsg:    `Added rule 6: "Any web" (allow in, tcp, from any)`,
			want: rules.FileRule{Name: "Any web", Action: "allow", Protocol: "tcp", Ports: []any{},
				SrcIPs: []string{}, Direction: "in", Enabled: true},
		},
	}
	for _, tt := range tests {
		t.Run(tt.want.Name, func(t *testing.T) {
			e := newEnv(t, testConfig)
			r := mustRun(t, tt.args...)
			if tt.wantMsg != "" && strings.TrimSpace(r.stdout) != tt.wantMsg {
				t.Errorf("stdout = %q, want %q", r.stdout, tt.wantMsg)
			}
			cfg, err := rules.Load(e.config)
			if err != nil {
				t.Fatal(err)
			}
			if len(cfg.Rules) != 6 {
				t.Fatalf("%d rules after add, want 6", len(cfg.Rules))
			}
			got := cfg.Rules[tt.wantNumber-1].ToFile()
			// Ports decode as numbers from the file and uint16 here; compare their text.
			if diff := cmp.Diff(fmt.Sprint(tt.want), fmt.Sprint(got)); diff != "" {
				t.Errorf("rule %d (-want +got):\n%s", tt.wantNumber, diff)
			}
			if strings.HasPrefix(tt.args[0], "--json") {
				var out numberedRule
				decode(t, r, &out)
				if out.Number != tt.wantNumber || out.Name != tt.want.Name {
					t.Errorf("--json = %+v, want number %d", out, tt.wantNumber)
				}
			}
		})
	}
}

// TestFailedEditsChangeNothing runs every kind of failing edit and checks
// the exit code, the one error line, and that the file is byte-for-byte
// what it was.
func TestFailedEditsChangeNothing(t *testing.T) {
	tests := []struct {
		args     []string
		code     int
		errorMsg string
	}{
		{[]string{"add", "Block SSH", "block"}, 1, `a rule named "Block SSH" already exists (rule 4)`},
		{[]string{"add", "X", "drop"}, 2, `ACTION: "drop" is not an action (allow, block)`},
		{[]string{"add", "X", "block", "--protocol", "sctp"}, 2, `--protocol: "sctp" is not a protocol`},
		{[]string{"add", "X", "block", "--ports", "23,70000"}, 1, "--ports: 70000 is not a port (1-65535)"},
		{[]string{"add", "X", "block", "--ports", "100-50"}, 1, "--ports: \"100-50\" is not a port range"},
		{[]string{"add", "X", "block", "--protocol", "icmp", "--ports", "7"}, 1, "--ports: icmp has no ports"},
		{[]string{"add", "X", "block", "--src-ips", "10.0.0.1,10.0.0.300"}, 1, `--src-ips: "10.0.0.300" is not an IP address or CIDR`},
		// An empty list is not "any": a script's empty variable must not
		// open a rule to everything.
		{[]string{"add", "X", "allow", "--ports", ""}, 1, "--ports: the list is empty (leave --ports out, or say any)"},
		{[]string{"add", "X", "allow", "--ports", " , "}, 1, `--ports ",": item 1 is empty`},
		{[]string{"add", "X", "allow", "--ports", "22,,23"}, 1, `--ports "22,,23": item 2 is empty`},
		{[]string{"add", "X", "allow", "--ports", "22,"}, 1, `--ports "22,": item 2 is empty`},
		{[]string{"add", "X", "allow", "--src-ips", ""}, 1, "--src-ips: the list is empty (leave --src-ips out, or say any)"},
		{[]string{"add", "X", "allow", "--src-ips", "10.0.0.1,"}, 1, `--src-ips "10.0.0.1,": item 2 is empty`},
		{[]string{"add", "X", "block", "--direction", "sideways"}, 2, `--direction: "sideways" is not a direction`},
		{[]string{"add", "X", "block", "--position", "7"}, 1, "--position 7: want a number from 1 to 6"},
		{[]string{"add", "X", "block", "--position", "0"}, 1, "--position 0: want a number from 1 to 6"},
		{[]string{"add", "X", "block", "--position", "two"}, 2, `--position "two" is not a number`},
		{[]string{"add", " ", "block"}, 1, "NAME: a rule name may not be empty"},
		{[]string{"add", "X"}, 2, "add: missing NAME and ACTION"},
		{[]string{"add", "X", "block", "extra"}, 2, `add: unexpected argument "extra"`},
		{[]string{"add", "X", "block", "--bogus"}, 2, "unknown flag --bogus"},
		{[]string{"add", "X", "block", "--ports"}, 2, "flag needs an argument: --ports"},
		{[]string{"remove", "9"}, 1, "no rule 9 (there are 5 rules)"},
		{[]string{"remove", "0"}, 1, "no rule 0 (there are 5 rules)"},
		{[]string{"remove", "-1"}, 1, "no rule -1 (there are 5 rules)"},
		{[]string{"remove", "one"}, 2, `"one" is not a rule number`},
		{[]string{"remove"}, 2, "remove: missing the rule number"},
		{[]string{"remove", "1", "2"}, 2, `remove: unexpected argument "2"`},
		{[]string{"toggle", "6"}, 1, "no rule 6 (there are 5 rules)"},
		{[]string{"toggle"}, 2, "toggle: missing"},
		{[]string{"blacklist", "add", "198.51.100.1", "not-an-ip"}, 1, `blacklist add: "not-an-ip" is not an IP address or CIDR`},
		{[]string{"blacklist", "add", "fe80::1%eth0"}, 1, `"fe80::1%eth0" is not an IP address or CIDR`},
		{[]string{"blacklist", "add"}, 2, "blacklist add: missing IP or CIDR"},
		{[]string{"blacklist", "remove", "192.0.2.0/24", "198.51.100.1"}, 1, "198.51.100.1 is not in the blacklist"},
		{[]string{"whitelist", "remove", "127.0.0.1", "::2"}, 1, "::2 is not in the whitelist"},
		{[]string{"whitelist", "add", "::1", "::g"}, 1, `"::g" is not an IP address or CIDR`},
		{[]string{"blacklist", "frobnicate", "1.2.3.4"}, 2, `blacklist: unknown subcommand "frobnicate"`},
		{[]string{"blacklist"}, 2, "blacklist: missing subcommand"},
	}
	for _, tt := range tests {
		t.Run(strings.Join(tt.args, " "), func(t *testing.T) {
			e := newEnv(t, testConfig)
			r := fwctl(t, tt.args...)
			if r.code != tt.code {
				t.Fatalf("exit %d, want %d: %v", r.code, tt.code, r)
			}
			checkErrorLine(t, r, tt.errorMsg)
			if r.stdout != "" {
				t.Errorf("stdout = %q, want nothing", r.stdout)
			}
			if tt.code == 2 && !strings.Contains(r.stderr, "--help") {
				t.Errorf("usage error without a hint: %q", r.stderr)
			}
			got, err := os.ReadFile(e.config)
			if err != nil {
				t.Fatal(err)
			}
			if !bytes.Equal(got, []byte(testConfig)) {
				t.Errorf("the config changed:\n%s", got)
			}
			entries, _ := os.ReadDir(e.dir)
			for _, de := range entries {
				if strings.Contains(de.Name(), ".tmp-") {
					t.Errorf("temporary file left behind: %s", de.Name())
				}
			}
		})
	}
}

func TestEditsOfAnInvalidFileChangeNothing(t *testing.T) {
	const bad = `{"rules": [{"name": "x", "action": "block", "ports": [70000]}]}`
	e := newEnv(t, bad)
	for _, args := range [][]string{{"add", "y", "block"}, {"remove", "1"}, {"toggle", "1"}, {"blacklist", "add", "1.2.3.4"}} {
		r := fwctl(t, args...)
		if r.code != 1 {
			t.Fatalf("%v: %v", args, r)
		}
		checkErrorLine(t, r, "rules[0].ports[0]: 70000 is not a port (1-65535)")
		if got, _ := os.ReadFile(e.config); string(got) != bad {
			t.Fatalf("%v changed the invalid file:\n%s", args, got)
		}
	}
}

func TestRemoveAndToggle(t *testing.T) {
	e := newEnv(t, testConfig)
	r := mustRun(t, "toggle", "2")
	if want := `Enabled rule 2: "Game servers" (allow in, udp ports 27000-27050, from 198.51.100.0/24,2001:db8::/32)`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("toggle 2 = %q, want %q", r.stdout, want)
	}
	r = mustRun(t, "toggle", "2", "--json")
	var toggled numberedRule
	decode(t, r, &toggled)
	if toggled.Number != 2 || toggled.Name != "Game servers" || toggled.Enabled {
		t.Errorf("toggle 2 --json = %+v, want rule 2 disabled", toggled)
	}
	r = mustRun(t, "remove", "1")
	if want := `Removed rule 1: "Block Telnet and SMB" (block in, tcp ports 23,445, from any)`; strings.TrimSpace(r.stdout) != want {
		t.Errorf("remove 1 = %q, want %q", r.stdout, want)
	}
	r = mustRun(t, "--json", "remove", "4")
	var removed numberedRule
	decode(t, r, &removed)
	if removed.Number != 4 || removed.Name != "No outbound SMTP" {
		t.Errorf("remove 4 --json = %+v", removed)
	}
	cfg, err := rules.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, r := range cfg.Rules {
		names = append(names, fmt.Sprintf("%s/%v", r.Name, r.Enabled))
	}
	if diff := cmp.Diff([]string{"Game servers/false", "SSH from the lab/true", "Block SSH/true"}, names); diff != "" {
		t.Errorf("rules after the edits (-want +got):\n%s", diff)
	}
	// The last rule goes too, and the messages then speak of none.
	for range 3 {
		mustRun(t, "remove", "1")
	}
	r = fwctl(t, "toggle", "1")
	checkErrorLine(t, r, "no rule 1 (there are no rules)")
}

func TestEditCreatesMissingConfig(t *testing.T) {
	e := newEnv(t, "")
	e.config = filepath.Join(e.dir, "etc", "personal-firewall", "firewall_rules.json")
	r := mustRun(t, "--config", e.config, "blacklist", "add", "203.0.113.9")
	if !strings.Contains(r.stderr, "created "+e.config) {
		t.Errorf("stderr = %q, want a note that the default was created", r.stderr)
	}
	cfg, err := rules.Load(e.config)
	if err != nil {
		t.Fatal(err)
	}
	def := rules.Default()
	if len(cfg.Rules) != len(def.Rules) || rules.FormatPrefixes(cfg.BlacklistIPs)[0] != "203.0.113.9" {
		t.Errorf("config = %+v, want the default plus the entry", cfg)
	}
}

func TestCheck(t *testing.T) {
	e := newEnv(t, testConfig)
	r := mustRun(t, "check")
	want := e.config + ": OK (5 rules, 4 enabled; 3 blacklist entries, 2 whitelist entries, 2 threat feeds; default policy allow in, allow out)\n"
	if r.stdout != want {
		t.Errorf("check = %q, want %q", r.stdout, want)
	}
	var res checkResult
	decode(t, mustRun(t, "check", "--json"), &res)
	if diff := cmp.Diff(checkResult{File: e.config, Valid: true, Rules: 5}, res); diff != "" {
		t.Errorf("check --json (-want +got):\n%s", diff)
	}

	bad := filepath.Join(e.dir, "x.json")
	os.WriteFile(bad, []byte(`{"rules": [{"name": "a", "action": "block"}, {"name": "b", "action": "block"},
		{"name": "c", "action": "block", "ports": [70000]}]}`), 0o644)
	before, _ := os.ReadFile(e.config)
	r = fwctl(t, "check", bad)
	if r.code != 1 || r.stdout != "" {
		t.Fatalf("check of a bad file: %v", r)
	}
	checkErrorLine(t, r, bad+": rules[2].ports[0]: 70000 is not a port (1-65535)")
	r = fwctl(t, "check", bad, "--json")
	if r.code != 1 {
		t.Fatalf("check --json of a bad file: %v", r)
	}
	decode(t, r, &res)
	if res.Valid || !strings.Contains(res.Error, "rules[2].ports[0]: 70000 is not a port") || res.Rules != 0 {
		t.Errorf("check --json of a bad file = %+v", res)
	}
	if after, _ := os.ReadFile(e.config); !bytes.Equal(before, after) {
		t.Error("check changed the config")
	}

	os.WriteFile(bad, []byte("{\n  \"rules\": [,]\n}"), 0o644)
	r = fwctl(t, "check", bad)
	checkErrorLine(t, r, bad+": line 2, column")

	r = fwctl(t, "check", filepath.Join(e.dir, "missing.json"))
	if r.code != 1 {
		t.Fatalf("check of a missing file: %v", r)
	}
	checkErrorLine(t, r, "no such file")
	// A device or a named pipe gets an answer at once, not an endless
	// read or a wait for a writer.
	fifo := filepath.Join(e.dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{"/dev/zero": "/dev/zero: not a regular file (a character device)", fifo: fifo + ": not a regular file (a named pipe)"} {
		r = fwctl(t, "check", path)
		if r.code != 1 {
			t.Fatalf("check %s: %v", path, r)
		}
		checkErrorLine(t, r, want)
	}
	if r := fwctl(t, "check", "a", "b"); r.code != 2 {
		t.Errorf("check a b: %v", r)
	}
}

func TestExitCodeOfPermissionErrors(t *testing.T) {
	var stderr bytes.Buffer
	err := fmt.Errorf("lock config: %w", &fs.PathError{Op: "open", Path: "/etc/x.lock", Err: fs.ErrPermission})
	if code := exitCode(err, &stderr); code != 1 {
		t.Errorf("exit %d, want 1", code)
	}
	// The hint itself, and that root gets none, is TestRootHint's.
	if strings.Contains(stderr.String(), "as root") != (os.Geteuid() != 0) || strings.Count(stderr.String(), "\n") != 1 {
		t.Errorf("stderr = %q, want one line, suggesting root unless fwctl is root", stderr.String())
	}
	stderr.Reset()
	exitCode(errors.New("two\nlines"), &stderr)
	if stderr.String() != "fwctl: two lines\n" {
		t.Errorf("stderr = %q, want one line", stderr.String())
	}
}

// TestPermissionDenied runs as a user who may not write the config, which
// needs root to arrange (a root process may write anything).
func TestPermissionDenied(t *testing.T) {
	if os.Geteuid() == 0 {
		t.Skip("root may write any file; TestExitCodeOfPermissionErrors covers the message")
	}
	e := newEnv(t, testConfig)
	os.Chmod(e.dir, 0o555)
	t.Cleanup(func() { os.Chmod(e.dir, 0o755) })
	r := fwctl(t, "blacklist", "add", "1.2.3.4")
	if r.code != 1 {
		t.Fatalf("%v", r)
	}
	checkErrorLine(t, r, "root")
}

// add says when --src-ips had host bits set, as blacklist add does, and
// refuses an icmp or icmpv6 rule whose sources are all of the other IP
// version: it could never match (ufw refuses it too).
func TestAddSourceNotes(t *testing.T) {
	e := newEnv(t, testConfig)
	r := mustRun(t, "add", "Lab", "allow", "--protocol", "tcp", "--src-ips", "10.0.0.1/8,192.0.2.7")
	if want := "fwctl: note: 10.0.0.1/8 has host bits set: it means the network 10.0.0.0/8\n"; r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	before, _ := os.ReadFile(e.config)
	for _, tc := range []struct{ proto, srcs, want string }{
		{"icmp", "fd00::/8", "--src-ips: icmp is IPv4 only, and every address given is IPv6: the rule could never match"},
		{"icmpv6", "10.0.0.0/8,192.0.2.1", "--src-ips: icmpv6 is IPv6 only, and every address given is IPv4: the rule could never match"},
	} {
		r := fwctl(t, "add", "Never", "block", "--protocol", tc.proto, "--src-ips", tc.srcs)
		if r.code != 1 {
			t.Errorf("add --protocol %s --src-ips %s: %v, want exit 1", tc.proto, tc.srcs, r)
		}
		checkErrorLine(t, r, tc.want)
	}
	if now, _ := os.ReadFile(e.config); string(now) != string(before) {
		t.Error("a refused rule changed the file")
	}
	mustRun(t, "add", "Mixed", "block", "--protocol", "icmp", "--src-ips", "fd00::/8,10.0.0.0/8")
}

// `gen | fwctl check -` validates a generated config without a file.
func TestCheckStandardInput(t *testing.T) {
	newEnv(t, testConfig)
	defer func(r io.Reader) { stdin = r }(stdin)
	stdin = strings.NewReader(`{"rules": [{"name": "x", "action": "block", "ports": [70000]}]}`)
	r := fwctl(t, "check", "-")
	if r.code != 1 {
		t.Errorf("check - of a bad config: %v, want exit 1", r)
	}
	checkErrorLine(t, r, "(standard input): rules[0].ports[0]: 70000 is not a port (1-65535)")
	stdin = strings.NewReader(`{"default_policy": "block"}`)
	if r := mustRun(t, "check", "-"); !strings.HasPrefix(r.stdout, "(standard input): OK") {
		t.Errorf("check - of a good config = %q", r.stdout)
	}
}
