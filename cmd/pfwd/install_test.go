package main

// `make install` and the systemd unit, tested the way a packager uses them:
// staged under DESTDIR, so no root and no running systemd are needed.

import (
	"bytes"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

const (
	unitName  = "personal-firewall.service"
	unitDir   = "/usr/lib/systemd/system"
	confDir   = "/etc/personal-firewall"
	stagedBin = "/usr/bin" // PREFIX=/usr
)

// repoRoot is where the Makefile is (the tests run in cmd/pfwd).
func repoRoot(t *testing.T) string {
	t.Helper()
	root, err := filepath.Abs("../..")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(root, "Makefile")); err != nil {
		t.Fatalf("no Makefile at the repository root: %v", err)
	}
	return root
}

// makeTarget runs `make target DESTDIR=destdir PREFIX=/usr ...` at the
// repository root and returns its output.
func makeTarget(t *testing.T, target, destdir string) string {
	t.Helper()
	return runMake(t, nil, nil, target, "DESTDIR="+destdir, "PREFIX=/usr", "UNITDIR="+unitDir)
}

// runMake runs `make args...` at the repository root, through wrapper
// (such as `ip netns exec NAME`) when not nil, with env added to the
// environment, and returns its output.
func runMake(t *testing.T, wrapper, env []string, args ...string) string {
	t.Helper()
	if testing.Short() {
		t.Skip("make install test: skipped with -short (it builds both binaries)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make install test: make not installed")
	}
	argv := append(append(wrapper, "make", "--no-print-directory"), args...)
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Dir = repoRoot(t)
	// Under `make test` the parent's jobserver descriptors are not ours.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	cmd.Env = append(cmd.Env, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", strings.Join(argv, " "), err, out)
	}
	return string(out)
}

func TestMakeInstallLaysOutFiles(t *testing.T) {
	dest := t.TempDir()
	makeTarget(t, "install", dest)
	staged := func(p string) string { return filepath.Join(dest, p) }
	defaultConfig, err := os.ReadFile(filepath.Join(repoRoot(t), "rules", "default.json"))
	if err != nil {
		t.Fatal(err)
	}

	for _, tc := range []struct {
		path string
		dir  bool
		mode fs.FileMode
	}{
		{stagedBin + "/pfwd", false, 0o755},
		{stagedBin + "/fwctl", false, 0o755},
		{unitDir + "/" + unitName, false, 0o644},
		{confDir, true, 0o755},
		{confDir + "/firewall_rules.json", false, 0o644},
		{"/var/lib/personal-firewall", true, 0o750},
		{"/var/log/personal-firewall", true, 0o750},
	} {
		fi, err := os.Stat(staged(tc.path))
		if err != nil {
			t.Errorf("%s: not installed: %v", tc.path, err)
			continue
		}
		if fi.IsDir() != tc.dir || fi.Mode().Perm() != tc.mode {
			t.Errorf("%s: mode %v, want %v (directory: %v)", tc.path, fi.Mode(), tc.mode, tc.dir)
		}
	}

	// The installed binaries run (a broken copy or a foreign arch would not).
	out, err := exec.Command(staged(stagedBin+"/pfwd"), "--version").CombinedOutput()
	if err != nil || !strings.HasPrefix(string(out), "pfwd ") {
		t.Errorf("installed pfwd --version: %v: %q", err, out)
	}

	unit, err := os.ReadFile(staged(unitDir + "/" + unitName))
	if err != nil {
		t.Fatal(err)
	}
	wantExec := "\nExecStart=" + stagedBin + "/pfwd --config " + confDir + "/firewall_rules.json $PFWD_OPTS\n"
	if !strings.Contains(string(unit), wantExec) {
		t.Errorf("installed unit lacks %q", strings.TrimSpace(wantExec))
	}
	if ph := regexp.MustCompile(`@[A-Z]+@`).Find(unit); ph != nil {
		t.Errorf("installed unit still holds the placeholder %s", ph)
	}
	if got, _ := os.ReadFile(staged(confDir + "/firewall_rules.json")); !bytes.Equal(got, defaultConfig) {
		t.Errorf("installed config is not rules/default.json:\n%s", got)
	}

	// A second install must keep the user's rules byte for byte.
	edited := []byte("{\"default_policy\": \"block\", \"rules\": [] , \"whitelist_ips\": []}\n# hand-edited\n")
	if err := os.WriteFile(staged(confDir+"/firewall_rules.json"), edited, 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Chmod(staged(confDir+"/firewall_rules.json"), 0o600); err != nil {
		t.Fatal(err)
	}
	if out := makeTarget(t, "install", dest); !strings.Contains(out, "keeping the existing") {
		t.Errorf("second install does not say it kept the config:\n%s", out)
	}
	assertFile(t, staged(confDir+"/firewall_rules.json"), edited, 0o600)

	// Uninstall removes what install added, and keeps rules and database.
	db := staged("/var/lib/personal-firewall/firewall.db")
	if err := os.WriteFile(db, []byte("SQLite format 3\x00"), 0o640); err != nil {
		t.Fatal(err)
	}
	makeTarget(t, "uninstall", dest)
	for _, gone := range []string{stagedBin + "/pfwd", stagedBin + "/fwctl", unitDir + "/" + unitName, "/var/log/personal-firewall"} {
		if _, err := os.Lstat(staged(gone)); err == nil {
			t.Errorf("%s: still there after uninstall", gone)
		}
	}
	assertFile(t, staged(confDir+"/firewall_rules.json"), edited, 0o600)
	assertFile(t, db, []byte("SQLite format 3\x00"), 0o640)
}

func assertFile(t *testing.T, path string, want []byte, mode fs.FileMode) {
	t.Helper()
	got, err := os.ReadFile(path)
	if err != nil {
		t.Errorf("%s: %v", path, err)
		return
	}
	if !bytes.Equal(got, want) {
		t.Errorf("%s changed:\n got %q\nwant %q", path, got, want)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm() != mode {
		t.Errorf("%s: mode %v, want %v", path, fi.Mode().Perm(), mode)
	}
}

// maxExposure is the worst `systemd-analyze security` score the unit may
// have (0 = locked down, 10 = unprotected). pfwd runs as root with
// CAP_NET_ADMIN and needs the host's network, which is most of what is left.
const maxExposure = 2.0

func TestUnitVerifies(t *testing.T) {
	analyze, err := exec.LookPath("systemd-analyze")
	if err != nil {
		t.Skip("systemd-analyze not installed (apt-get install systemd): the unit is not verified")
	}
	dest := t.TempDir()
	makeTarget(t, "install", dest)
	unit, err := os.ReadFile(filepath.Join(dest, unitDir, unitName))
	if err != nil {
		t.Fatal(err)
	}
	// verify checks that ExecStart's binary exists: point it at the staged
	// copy. The unit's name must stay personal-firewall.service.
	dir := t.TempDir()
	path := filepath.Join(dir, unitName)
	body := strings.ReplaceAll(string(unit), "ExecStart="+stagedBin+"/pfwd", "ExecStart="+filepath.Join(dest, stagedBin, "pfwd"))
	if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}

	out, err := exec.Command(analyze, "verify", path).CombinedOutput()
	if err != nil || strings.Contains(string(out), unitName) {
		t.Errorf("systemd-analyze verify %s: %v\n%s", unitName, err, out)
	}

	// --offline (systemd 250+) scores the file without a running systemd.
	out, err = exec.Command(analyze, "security", "--offline=yes", "--no-pager", path).CombinedOutput()
	m := regexp.MustCompile(`Overall exposure level for ` + regexp.QuoteMeta(unitName) + `: ([0-9.]+)`).FindSubmatch(out)
	if m == nil {
		t.Logf("systemd-analyze security --offline not available here (%v): exposure not checked\n%s", err, out)
		return
	}
	score, _ := strconv.ParseFloat(string(m[1]), 64)
	t.Logf("systemd-analyze security: exposure %.1f", score)
	if score > maxExposure {
		t.Errorf("unit exposure %.1f > %.1f: a hardening directive was lost\n%s", score, maxExposure, out)
	}
}

// unitDirectives reads a unit file's settings: name to values, in order,
// comments and section headers left out.
func unitDirectives(text string) map[string][]string {
	d := map[string][]string{}
	for _, line := range strings.Split(text, "\n") {
		line = strings.TrimSpace(line)
		if line == "" || line[0] == '#' || line[0] == ';' || line[0] == '[' {
			continue
		}
		if k, v, ok := strings.Cut(line, "="); ok {
			d[strings.TrimSpace(k)] = append(d[strings.TrimSpace(k)], strings.TrimSpace(v))
		}
	}
	return d
}

// A crashed pfwd must be restarted: Go's runtime exits with status 2 on a
// panic or a fatal error (a fault in cgo SQLite too), the same status as
// pfwd's usage errors, so no directive may exempt 2 from restarts; the
// start limit is what stops a pfwd that can never start.
func TestUnitRestartsAfterACrash(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(repoRoot(t), "dist", unitName))
	if err != nil {
		t.Fatal(err)
	}
	d := unitDirectives(string(b))
	if got := d["Restart"]; len(got) != 1 || got[0] != "on-failure" {
		t.Errorf("Restart=%q, want on-failure", got)
	}
	for _, name := range []string{"RestartPreventExitStatus", "SuccessExitStatus"} {
		for _, v := range d[name] {
			for _, status := range strings.Fields(v) {
				if status == "2" {
					t.Errorf("%s=%s: exit status 2 is also a Go panic, which must be restarted", name, v)
				}
			}
		}
	}
	if got := d["StartLimitBurst"]; len(got) != 1 {
		t.Errorf("StartLimitBurst=%q: want one limit, to stop the restarts of a pfwd that cannot start", got)
	} else if n, err := strconv.Atoi(got[0]); err != nil || n < 1 {
		t.Errorf("StartLimitBurst=%s: want a positive number", got[0])
	}
	if got := d["StartLimitIntervalSec"]; len(got) != 1 || got[0] == "0" || got[0] == "infinity" {
		t.Errorf("StartLimitIntervalSec=%q: want a finite interval (0 or infinity turns the limit off)", got)
	}
}

// A pfwd run with --fail-closed leaves its table behind on purpose; after
// uninstalling, no pfwd would ever take the queued packets and the host
// would drop every new flow. A real `make uninstall` deletes the table; a
// staged one (DESTDIR) must not touch the kernel. Run in a network
// namespace of the test's own, with systemctl stubbed out, so the host's
// firewall and init are left alone.
func TestMakeUninstallRemovesFailClosedTable(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("uninstall test: needs root to create a network namespace and an nftables table in it")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("uninstall test: %s not installed", tool)
		}
	}
	ns := fmt.Sprintf("pfwuninst-%d", os.Getpid())
	if out, err := exec.Command("ip", "netns", "add", ns).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v\n%s", ns, err, out)
	}
	t.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
	inNS := []string{"ip", "netns", "exec", ns}
	nft := func(args ...string) ([]byte, error) {
		return exec.Command("ip", append([]string{"netns", "exec", ns, "nft"}, args...)...).CombinedOutput()
	}
	// What a stopped --fail-closed pfwd leaves: the table, no owner.
	if out, err := nft("add table inet personal_firewall; add chain inet personal_firewall input { type filter hook input priority 20; policy drop; }"); err != nil {
		t.Fatalf("nft: %v\n%s", err, out)
	}
	tableThere := func() bool { _, err := nft("list", "table", "inet", "personal_firewall"); return err == nil }

	// Everything the uninstall removes lives in the test's directory, and
	// a systemctl that only notes its arguments stands in for the real one
	// in case this host runs systemd.
	dir := t.TempDir()
	stub := filepath.Join(dir, "stub")
	if err := os.Mkdir(stub, 0o755); err != nil {
		t.Fatal(err)
	}
	calls := filepath.Join(dir, "systemctl.calls")
	if err := os.WriteFile(filepath.Join(stub, "systemctl"), []byte("#!/bin/sh\necho \"$@\" >> '"+calls+"'\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	env := []string{"PATH=" + stub + ":" + os.Getenv("PATH")}
	vars := []string{"BINDIR=" + dir + "/bin", "UNITDIR=" + dir + "/unit", "CONFDIR=" + dir + "/etc", "STATEDIR=" + dir + "/lib", "LOGDIR=" + dir + "/log"}
	const deleted = "nft delete table inet personal_firewall"

	out := runMake(t, inNS, env, append([]string{"uninstall", "DESTDIR=" + dir + "/stage"}, vars...)...)
	if !tableThere() || strings.Contains(out, deleted) {
		t.Errorf("a staged uninstall (DESTDIR) touched the kernel's table:\n%s", out)
	}

	out = runMake(t, inNS, env, append([]string{"uninstall", "DESTDIR="}, vars...)...)
	if tableThere() || !strings.Contains(out, deleted) {
		t.Errorf("after uninstall the fail-closed table is still there, or it was not said:\n%s", out)
	}

	// With no table left, uninstall runs through without a word about it.
	if out = runMake(t, inNS, env, append([]string{"uninstall", "DESTDIR="}, vars...)...); strings.Contains(out, deleted) {
		t.Errorf("uninstall without a table still deleted one:\n%s", out)
	}
	if b, err := os.ReadFile(calls); err == nil && strings.Contains(string(b), "disable") {
		t.Errorf("uninstall disabled a unit it had not installed: systemctl %s", b)
	}
}
