package main

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
)

func TestHelp(t *testing.T) {
	newEnv(t, testConfig)
	for _, tt := range []struct {
		args []string
		want []string
	}{
		{[]string{"--help"}, []string{"USAGE:", "list", "blacklist", "explain", "--config FILE", "$PFW_CONFIG", "--json"}},
		{[]string{"help"}, []string{"COMMANDS:"}},
		{[]string{"help", "add"}, []string{"fwctl add NAME allow|block", "--position N", "--ports PORTS"}},
		{[]string{"add", "--help"}, []string{"fwctl add NAME allow|block"}},
		{[]string{"add", "X", "block", "--help"}, []string{"fwctl add NAME allow|block"}},
		{[]string{"help", "blacklist"}, []string{"add", "remove", "list"}},
		{[]string{"blacklist", "--help"}, []string{"add", "remove", "list", "OPTIONS:", "--config FILE", "--json"}},
		{[]string{"blacklist", "add", "--help"}, []string{"fwctl blacklist add IP|CIDR..."}},
		{[]string{"logs", "-h"}, []string{"--follow", "--since"}},
		{[]string{"--version"}, []string{"fwctl " + version + "\n"}},
	} {
		r := fwctl(t, tt.args...)
		if r.code != 0 || r.stderr != "" {
			t.Errorf("fwctl %v: %v", tt.args, r)
			continue
		}
		for _, w := range tt.want {
			if !strings.Contains(r.stdout, w) {
				t.Errorf("fwctl %v lacks %q:\n%s", tt.args, w, r.stdout)
			}
		}
	}
}

func TestBadUsage(t *testing.T) {
	newEnv(t, testConfig)
	for _, tt := range []struct {
		args []string
		msg  string
	}{
		{nil, "no command given"},
		{[]string{"frobnicate"}, `unknown command "frobnicate"`},
		{[]string{"--json"}, "no command given"},
		{[]string{"--bogus", "list"}, "unknown flag --bogus"},
		{[]string{"list", "--bogus"}, "unknown flag --bogus"},
		{[]string{"help", "frobnicate"}, "frobnicate"},
		{[]string{"status", "now"}, `status: unexpected argument "now"`},
		{[]string{"threats", "--limit", "x"}, `invalid value "x" for flag --limit`},
		{[]string{"whitelist", "list", "extra"}, `whitelist list: unexpected argument "extra"`},
	} {
		r := fwctl(t, tt.args...)
		if r.code != 2 {
			t.Errorf("fwctl %v: exit %d, want 2: %v", tt.args, r.code, r)
			continue
		}
		checkErrorLine(t, r, tt.msg)
		if r.stdout != "" || strings.Count(r.stderr, "\n") > 3 {
			t.Errorf("fwctl %v: want a short hint on stderr only, got %v", tt.args, r)
		}
	}
}

// TestPathsFromFlagsAndEnvironment checks that a flag beats the
// environment, before or after the command.
func TestPathsFromFlagsAndEnvironment(t *testing.T) {
	e := newEnv(t, testConfig)
	other := filepath.Join(e.dir, "other.json")
	os.WriteFile(other, []byte(`{"rules": [{"name": "Only rule", "action": "allow"}]}`), 0o644)
	for _, args := range [][]string{
		{"--config", other, "list"},
		{"list", "--config", other},
		{"list", "--config=" + other},
		{"--config=" + other, "list", "--json"},
	} {
		r := mustRun(t, args...)
		if !strings.Contains(r.stdout, "Only rule") {
			t.Errorf("fwctl %v read the wrong file:\n%s", args, r.stdout)
		}
	}
	t.Setenv("PFW_CONFIG", other)
	if r := mustRun(t, "list"); !strings.Contains(r.stdout, "Only rule") {
		t.Errorf("PFW_CONFIG ignored:\n%s", r.stdout)
	}
	if r := mustRun(t, "list", "--config", e.config); !strings.Contains(r.stdout, "Block SSH") {
		t.Errorf("--config does not beat PFW_CONFIG:\n%s", r.stdout)
	}
}

func TestRuleNamedLikeACommand(t *testing.T) {
	e := newEnv(t, testConfig)
	mustRun(t, "add", "help", "block", "--ports", "1")
	mustRun(t, "add", "list", "allow", "--ports", "2")
	mustRun(t, "add", "--ports", "3", "--", "--odd name", "allow")
	r := mustRun(t, "list", "--json")
	for _, name := range []string{`"name": "help"`, `"name": "list"`, `"name": "--odd name"`} {
		if !strings.Contains(r.stdout, name) {
			t.Errorf("no rule %s in %s", name, e.config)
		}
	}
}

// A refused permission hints at sudo only when fwctl is not root: root
// meets EPERM too (an immutable file), and sudo would not help it.
func TestRootHint(t *testing.T) {
	eperm := fmt.Errorf("lock config: open /etc/x.lock: %w", syscall.EPERM)
	for _, tc := range []struct {
		err  error
		euid int
		want string
	}{
		{eperm, 1000, eperm.Error() + " (run fwctl as root, e.g. with sudo)"},
		{eperm, 0, eperm.Error()},
		{fmt.Errorf("open: %w", syscall.ENOENT), 1000, "open: no such file or directory"},
		{fmt.Errorf("the control socket is root only: %w", syscall.EACCES), 1000, "the control socket is root only: permission denied"},
	} {
		if got := withRootHint(tc.err.Error(), tc.err, tc.euid); got != tc.want {
			t.Errorf("withRootHint(%q, euid %d) = %q, want %q", tc.err, tc.euid, got, tc.want)
		}
	}
}
