package main

import (
	"bytes"
	"io"
	"os"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/urfave/cli/v2"
)

func TestReorderArgs(t *testing.T) {
	tests := []struct {
		in   string
		want string
	}{
		{"list", "list"},
		{"list --json", "list --json"},
		{"--json list", "list --json"},
		{"--config /x.json --json list", "list --config /x.json --json"},
		{"--config=/x.json list", "list --config=/x.json"},
		{"add Telnet block --protocol tcp --ports 23,445", "add --protocol tcp --ports 23,445 -- Telnet block"},
		{"add --protocol tcp Telnet --ports 23 block", "add --protocol tcp --ports 23 -- Telnet block"},
		{"--json add X allow --position 1", "add --json --position 1 -- X allow"},
		// Negative numbers and "-" are arguments, and "--" ends the flags.
		{"remove -1", "remove -- -1"},
		{"add -- --weird-name block --json", "add -- --weird-name block --json"},
		{"blacklist add 203.0.113.7 --json", "blacklist add --json -- 203.0.113.7"},
		{"blacklist --json add 203.0.113.7", "blacklist add --json -- 203.0.113.7"},
		{"--json blacklist list", "blacklist list --json"},
		// A command name after an argument is an argument (a rule called "list").
		{"add list block", "add -- list block"},
		// Unknown flags move along, so the command reports them.
		{"list --bogus", "list --bogus"},
		{"--bogus list", "list --bogus"},
		// A flag value that looks like a command stays a value.
		{"logs --type blocked --since 1h --follow", "logs --type blocked --since 1h --follow"},
		{"explain --src 10.0.0.1 --dst-port 22", "explain --src 10.0.0.1 --dst-port 22"},
		{"help add", "-- help add"},
		{"add X block --ports", "add --ports"},
		{"add X block --help --json", "add --help"},
		{"--json blacklist -h add", "blacklist --help"},
		{"", ""},
	}
	app := newApp(io.Discard, io.Discard)
	for _, tt := range tests {
		out, err := reorderArgs(app, strings.Fields(tt.in))
		if err != nil {
			t.Errorf("reorderArgs(%q): %v", tt.in, err)
			continue
		}
		if got := strings.Join(out, " "); got != tt.want {
			t.Errorf("reorderArgs(%q) = %q, want %q", tt.in, got, tt.want)
		}
	}
}

// TestFlagArityIsConsistent guards reorderArgs's assumption that a flag
// name means the same kind of flag (with or without a value) everywhere.
func TestFlagArityIsConsistent(t *testing.T) {
	app := newApp(io.Discard, io.Discard)
	seen := map[string]bool{}
	var walk func(path string, flags []cli.Flag, cmds []*cli.Command)
	walk = func(path string, flags []cli.Flag, cmds []*cli.Command) {
		for _, f := range flags {
			_, isBool := f.(*cli.BoolFlag)
			for _, n := range f.Names() {
				if v, ok := seen[n]; ok && v != !isBool {
					t.Errorf("%s: flag --%s takes a value in one command and not in another", path, n)
				}
				seen[n] = !isBool
			}
		}
		for _, c := range cmds {
			walk(path+" "+c.Name, c.Flags, c.Subcommands)
		}
	}
	walk("fwctl", app.Flags, app.Commands)
	arity := map[string]bool{}
	for n, spec := range flagSpecs(app) {
		if n != "help" && n != "h" {
			arity[n] = spec.takesValue
		}
	}
	if diff := cmp.Diff(seen, arity); diff != "" {
		t.Errorf("flagSpecs differs from the tree (-tree +flagSpecs):\n%s", diff)
	}
}

func TestIsFlagToken(t *testing.T) {
	for tok, want := range map[string]bool{
		"--json": true, "-json": true, "--since=1h": true, "-f": true,
		"-": false, "-1": false, "--5": false, "list": false, "": false, "--": false,
	} {
		if got := isFlagToken(tok); got != want {
			t.Errorf("isFlagToken(%q) = %v, want %v", tok, got, want)
		}
	}
}

// A flag that takes one value, given twice, would keep only the last value
// (`--ports 23 --ports 445` blocking 445 alone): it is bad usage, whatever
// the spelling, for every command's flags, and the command does not run.
func TestRepeatedFlagIsBadUsage(t *testing.T) {
	e := newEnv(t, testConfig)
	tests := []struct {
		args  []string
		msg   string
		usage string
	}{
		{[]string{"add", "N1", "block", "--ports", "23", "--ports", "445"}, "--ports given twice (use one --ports with a comma-separated list)", "fwctl add NAME"},
		{[]string{"add", "N1", "block", "--ports=23", "-ports", "445"}, "--ports given twice (use one --ports", "fwctl add NAME"},
		{[]string{"add", "--src-ips", "10.0.0.1", "N1", "block", "--src-ips=10.0.0.2"}, "--src-ips given twice (use one --src-ips with a comma-separated list)", "fwctl add NAME"},
		{[]string{"add", "N1", "block", "--protocol", "tcp", "--protocol", "udp"}, "--protocol given twice (give it once)", "fwctl add NAME"},
		{[]string{"add", "N1", "block", "--direction", "in", "--direction=out"}, "--direction given twice", "fwctl add NAME"},
		{[]string{"add", "N1", "block", "--position", "1", "--position", "2"}, "--position given twice", "fwctl add NAME"},
		{[]string{"explain", "--src", "10.0.0.1", "--src", "10.0.0.2"}, "--src given twice (give it once)", "fwctl explain --src IP"},
		{[]string{"explain", "--src", "10.0.0.1", "--dst-port", "22", "--dst-port", "23"}, "--dst-port given twice", "fwctl explain"},
		{[]string{"logs", "--ip", "10.0.0.1", "--ip", "10.0.0.2"}, "--ip given twice", "fwctl logs"},
		{[]string{"logs", "--limit", "1", "--type", "blocked", "--limit=2"}, "--limit given twice", "fwctl logs"},
		{[]string{"logs", "--since", "1h", "--since", "2h"}, "--since given twice", "fwctl logs"},
		{[]string{"threats", "--limit", "1", "--limit", "2"}, "--limit given twice", "fwctl threats"},
	}
	before, _ := os.ReadFile(e.config)
	for _, tt := range tests {
		r := fwctl(t, tt.args...)
		if r.code != 2 || r.stdout != "" {
			t.Errorf("fwctl %q: want exit 2 and no output, got %v", tt.args, r)
			continue
		}
		checkErrorLine(t, r, tt.msg)
		if !strings.Contains(r.stderr, "\nusage: "+tt.usage) {
			t.Errorf("fwctl %q: stderr %q lacks the usage line %q", tt.args, r.stderr, tt.usage)
		}
	}
	if after, _ := os.ReadFile(e.config); !bytes.Equal(before, after) {
		t.Error("a command with a repeated flag changed the config")
	}

	// Flags without a value, and flags of different names, may repeat; so
	// may the global file flags, the last one counting (a wrapper that
	// names a default file can be overridden), before and after the
	// command.
	for _, args := range [][]string{
		{"--json", "list", "--json"},
		{"--db=/nonexistent/firewall.db", "--db", e.db, "explain", "--src", "10.0.0.1"},
		{"--socket", "/nonexistent/pfwd.sock", "-socket=" + e.socket, "list"},
		{"add", "N2", "block", "--protocol", "tcp", "--ports", "23,445", "--src-ips", "10.0.0.1", "--direction", "in", "--position", "1"},
		{"explain", "--src", "10.0.0.1", "--dst", "10.0.0.2"},
		{"add", "--ports", "1", "--", "--ports", "allow"}, // after "--", a rule name
	} {
		mustRun(t, args...)
	}
	if got, want := mustRun(t, "--config", "/nonexistent/rules.json", "list", "--json", "--config", e.config).stdout, mustRun(t, "--config", e.config, "list", "--json").stdout; got != want {
		t.Errorf("with --config given twice, list shows\n%s\nwant the last file's rules:\n%s", got, want)
	}
}
