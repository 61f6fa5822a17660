package main

import (
	"io"
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
		got := strings.Join(reorderArgs(app, strings.Fields(tt.in)), " ")
		if got != tt.want {
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
	if diff := cmp.Diff(seen, flagArity(app)); diff != "" && !strings.Contains(diff, "help") {
		t.Errorf("flagArity differs from the tree (-tree +flagArity):\n%s", diff)
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
