package main

// `make install` and the systemd unit, tested the way a packager uses them:
// staged under DESTDIR, so no root and no running systemd are needed.

import (
	"bytes"
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
	if testing.Short() {
		t.Skip("make install test: skipped with -short (it builds both binaries)")
	}
	if _, err := exec.LookPath("make"); err != nil {
		t.Skip("make install test: make not installed")
	}
	cmd := exec.Command("make", "--no-print-directory", target, "DESTDIR="+destdir, "PREFIX=/usr", "UNITDIR="+unitDir)
	cmd.Dir = repoRoot(t)
	// Under `make test` the parent's jobserver descriptors are not ours.
	for _, kv := range os.Environ() {
		if k, _, _ := strings.Cut(kv, "="); k != "MAKEFLAGS" && k != "MFLAGS" && k != "MAKELEVEL" {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("make %s DESTDIR=%s: %v\n%s", target, destdir, err, out)
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
