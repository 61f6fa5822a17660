package main

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/http"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/internal/asuser"
	"github.com/pfw/pfw/rules"
)

// stubPfwd answers on the control socket for config like pfwd: when apply
// is true it "loads" the file each time it changes, saying for reloadTakes
// that the reload is in progress first; otherwise it keeps failing with
// reloadErr.
func stubPfwd(t *testing.T, e *testEnv, apply bool, reloadErr string, reloadTakes time.Duration) {
	t.Helper()
	l, err := control.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	digest := func() string {
		cfg, err := rules.Load(e.config)
		if err != nil {
			t.Errorf("stub pfwd: %v", err)
			return ""
		}
		return rules.Digest(cfg)
	}
	inForce, changedAt := digest(), time.Time{}
	st := func() control.Status {
		mu.Lock()
		defer mu.Unlock()
		s := control.Status{Running: true, ConfigPath: e.config, ConfigDigest: inForce}
		if now := digest(); now != inForce {
			if changedAt.IsZero() {
				changedAt = time.Now()
			}
			switch {
			case !apply:
				s.ReloadError = reloadErr
			case time.Since(changedAt) < reloadTakes:
				s.Reload = control.ReloadState{InProgress: true, Since: changedAt, Why: "file changed"}
			default:
				inForce, changedAt = now, time.Time{}
				s.ConfigDigest = inForce
			}
		}
		return s
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); control.Serve(ctx, l, st, nil) }()
	t.Cleanup(func() { cancel(); <-done })
}

func TestEditWaitsForPfwdToApply(t *testing.T) {
	e := newEnv(t, testConfig)
	stubPfwd(t, e, true, "", 0)
	start := time.Now()
	r := mustRun(t, "blacklist", "add", "198.51.100.77")
	if r.stderr != "" {
		t.Errorf("stderr %q for an edit pfwd applied", r.stderr)
	}
	if d := time.Since(start); d > 2*time.Second {
		t.Errorf("the edit took %v", d)
	}
}

// An edit pfwd does not apply is reported: the file is changed (exit 0),
// but the user must know the rules in force are not the file's yet.
func TestEditPfwdDidNotApplyWarns(t *testing.T) {
	e := newEnv(t, testConfig)
	stubPfwd(t, e, false, "open firewall_rules.json: too many open files", 0)
	r := mustRun(t, "blacklist", "add", "198.51.100.77")
	want := "fwctl: warning: the file is changed, but pfwd has not applied it within 3s (it retries): open firewall_rules.json: too many open files\n"
	if r.stderr != want {
		t.Errorf("stderr = %q, want %q", r.stderr, want)
	}
	if !strings.Contains(r.stdout, "198.51.100.77") {
		t.Errorf("stdout = %q", r.stdout)
	}
	// A no-op edit has nothing to wait for.
	start := time.Now()
	r = fwctl(t, "blacklist", "add", "198.51.100.77")
	if strings.Contains(r.stderr, "warning") || time.Since(start) > time.Second {
		t.Errorf("a no-op edit waited or warned: %v", r)
	}
}

// A pfwd that runs on another config file is not waited for.
func TestEditOtherPfwdNotWaitedFor(t *testing.T) {
	e := newEnv(t, testConfig)
	fakeDaemon(t, e.socket, control.Status{Running: true, ConfigPath: "/etc/personal-firewall/firewall_rules.json"})
	start := time.Now()
	r := mustRun(t, "whitelist", "add", "10.0.0.9")
	if r.stderr != "" || time.Since(start) > time.Second {
		t.Errorf("an edit of another file waited or warned: %v", r)
	}
}

// An edit that changes the file but not the rules (fwctl rewrites a
// hand-formatted file in its own layout) is in force as it is: pfwd skips
// such a reload, and fwctl must not wait 3 s and warn for it.
func TestEditThatOnlyReformatsNeedsNoReload(t *testing.T) {
	e := newEnv(t, `{"rules": [],   "blacklist_ips": [ "198.51.100.77" ]}`)
	stubPfwd(t, e, false, "never reloads", 0)
	before, _ := os.ReadFile(e.config)
	start := time.Now()
	r := mustRun(t, "blacklist", "add", "198.51.100.77")
	if after, _ := os.ReadFile(e.config); bytes.Equal(after, before) {
		t.Skip("fwctl did not rewrite the file; nothing to check")
	}
	if r.stderr != "" || time.Since(start) > time.Second {
		t.Errorf("a rewrite that changes no rule waited %v or warned: %q", time.Since(start), r.stderr)
	}
}

// A change pfwd takes seconds to apply (lists of a million addresses) is
// waited for while pfwd says its reload is under way, not warned about
// after applyWait.
func TestEditWaitsForALongReload(t *testing.T) {
	e := newEnv(t, testConfig)
	const reloadTakes = applyWait + 1500*time.Millisecond
	stubPfwd(t, e, true, "", reloadTakes)

	start := time.Now()
	r := mustRun(t, "blacklist", "add", "198.51.100.77")
	if r.stderr != "" {
		t.Errorf("stderr %q for an edit pfwd applied after a long reload", r.stderr)
	}
	if d := time.Since(start); d < reloadTakes {
		t.Errorf("the edit returned after %v, before pfwd applied it (%v)", d, reloadTakes)
	}
}

// An edit that another one replaced in the file before pfwd applied it is
// neither waited for nor warned about once pfwd applied the newer one: pfwd
// may go straight to the newer file, so this edit's own config is never in
// force, yet nothing is left undone.
func TestEditSupersededByAnAppliedOneDoesNotWarn(t *testing.T) {
	e := newEnv(t, testConfig)
	var stderr bytes.Buffer
	w := pfwdWatch{g: &globals{config: e.config, socket: e.socket, errOut: &stderr}, running: true}
	w.before, _ = os.ReadFile(e.config)
	addToBlacklist := func(ip string) *rules.Config {
		cfg, err := rules.Update(e.config, func(c *rules.Config) error {
			c.BlacklistIPs = append(c.BlacklistIPs, netip.MustParsePrefix(ip))
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	mine := addToBlacklist("198.51.100.77/32")
	later := addToBlacklist("198.51.100.78/32")
	fakeDaemon(t, e.socket, control.Status{Running: true, ConfigPath: e.config, ConfigDigest: rules.Digest(later)})
	start := time.Now()
	w.confirm(mine)
	if stderr.Len() != 0 {
		t.Errorf("stderr %q for an edit a later, applied one replaced", stderr.String())
	}
	if d := time.Since(start); d >= applyWait {
		t.Errorf("confirm waited %v for an edit a later, applied one replaced", d)
	}

	// Only a newer file that pfwd holds counts.
	file := rules.Digest(later)
	for _, tt := range []struct {
		want, inForce string
		superseded    bool
	}{
		{rules.Digest(mine), file, true},
		{rules.Digest(mine), rules.Digest(mine), false}, // (confirm returns before asking)
		{rules.Digest(mine), "another", false},          // the newer file is not in force either
		{file, file, false},                             // the file is this edit's
	} {
		if got := w.superseded(tt.want, tt.inForce); got != tt.superseded {
			t.Errorf("superseded(%.8s, %.8s) = %v, want %v", tt.want, tt.inForce, got, tt.superseded)
		}
	}
}

// A config file deleted while pfwd runs on it is not replaced by the
// default: pfwd still enforces the rules it last loaded, and a default
// plus one edit would open the firewall once pfwd applied it. Every
// command that reads or edits the file refuses, with one line saying what
// to do, and creates nothing; without such a pfwd (none, or one on another
// file) the default is shown and an edit creates the file, as on a first
// install.
func TestMissingConfigWhilePfwdRuns(t *testing.T) {
	commands := [][]string{
		{"list"},
		{"list", "--json"},
		{"blacklist", "list"},
		{"whitelist", "list"},
		{"explain", "--src", "10.0.0.1", "--dst-port", "23"},
		{"check"},
		{"whitelist", "add", "10.9.9.9"},
		{"blacklist", "add", "10.9.9.9"},
		{"blacklist", "remove", "192.0.2.0/24"},
		{"add", "Open all", "allow"},
		{"remove", "1"},
		{"toggle", "1"},
	}
	for _, args := range commands {
		t.Run(strings.Join(args, " "), func(t *testing.T) {
			e := newEnv(t, "")
			fakeDaemon(t, e.socket, control.Status{Running: true, PID: 4242, ConfigPath: e.config, ReloadError: "open: no such file or directory"})
			r := fwctl(t, args...)
			if r.code != 1 || r.stdout != "" {
				t.Fatalf("exit %d, stdout %q, want exit 1 and nothing on stdout: %v", r.code, r.stdout, r)
			}
			checkErrorLine(t, r, e.config+" is missing, but pfwd (pid 4242) still enforces the config it last loaded from it; restore the file")
			checkErrorLine(t, r, "or stop pfwd")
			if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
				t.Errorf("%v created %s (stat: %v)", args, e.config, err)
			}
		})
	}

	// Without a pfwd on the file, today's behaviour: the default is shown,
	// and an edit creates the file.
	for _, pfwd := range []string{"none", "on another file"} {
		t.Run("pfwd "+pfwd, func(t *testing.T) {
			e := newEnv(t, "")
			if pfwd != "none" {
				fakeDaemon(t, e.socket, control.Status{Running: true, ConfigPath: "/etc/personal-firewall/firewall_rules.json"})
			}
			if r := mustRun(t, "list"); !strings.Contains(r.stdout, "Block Telnet") {
				t.Errorf("list without a config shows no default: %v", r)
			}
			mustRun(t, "whitelist", "add", "10.9.9.9")
			if _, err := rules.Load(e.config); err != nil {
				t.Errorf("the edit did not create the config: %v", err)
			}
		})
	}
}

// A pfwd that holds its control socket but does not answer (hung, or
// stopped with kill -STOP: the kernel still queues connections for it)
// may or may not apply an edit: the edit saves (exit 0) and says so on
// stderr. No socket file, or one nobody listens on, is no pfwd: silence.
func TestEditPfwdDoesNotAnswer(t *testing.T) {
	tests := []struct {
		name   string
		socket func(t *testing.T, path string)
		warn   bool
	}{
		{"no socket file", func(*testing.T, string) {}, false},
		{"stale socket file", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path)
			if err != nil {
				t.Fatal(err)
			}
			l.(*net.UnixListener).SetUnlinkOnClose(false)
			l.Close() // connections are refused from now on
		}, false},
		{"pfwd hung", func(t *testing.T, path string) {
			l, err := net.Listen("unix", path) // never accepted: queued by the kernel, never answered
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { l.Close() })
		}, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			e := newEnv(t, testConfig)
			tt.socket(t, e.socket)
			r := mustRun(t, "whitelist", "add", "10.9.9.9")
			if cfg, err := rules.Load(e.config); err != nil || !slices.Contains(rules.FormatPrefixes(cfg.WhitelistIPs), "10.9.9.9") {
				t.Errorf("the edit was not saved (%v)", err)
			}
			want := ""
			if tt.warn {
				want = "fwctl: warning: the file is changed, but pfwd did not answer on " + e.socket +
					" within 1s, so whether the running firewall applied the change is unknown (`fwctl status`)\n"
			}
			if r.stderr != want {
				t.Errorf("stderr = %q, want %q", r.stderr, want)
			}
			// An edit that changes nothing has nothing to be unsure about.
			if r := mustRun(t, "whitelist", "add", "10.9.9.9"); r.stderr != "" {
				t.Errorf("a no-op edit: stderr = %q", r.stderr)
			}
		})
	}
}

// A missing config while another user's process holds the control socket
// (it took the path in a directory others can write): its answer is not
// trusted, and a pfwd may still run behind it, so fwctl refuses as when
// pfwd does not answer, and creates nothing.
func TestMissingConfigWhileAnotherUserHoldsTheSocket(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test listens as another user")
	}
	e := newEnv(t, testConfig)
	// A directory others can write, which t.TempDir's parent is not.
	dir, err := os.MkdirTemp("", "pfw-fwctl-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	e.socket = filepath.Join(dir, "pfwd.sock")
	t.Setenv("PFW_SOCKET", e.socket)
	l, err := asuser.ListenUnix(65534, e.socket)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"running":true,"pid":1,"version":"FAKE"}`)
	}))
	if r := fwctl(t, "status"); r.code != 1 || !strings.Contains(r.stderr, "uid 65534: not pfwd") {
		t.Errorf("fwctl status with uid 65534 on the socket: %v; want exit 1 naming it", r)
	}
	if err := os.Remove(e.config); err != nil {
		t.Fatal(err)
	}
	if r := fwctl(t, "whitelist", "add", "10.9.9.9"); r.code != 1 || !strings.Contains(r.stderr, "so it may still enforce the config") {
		t.Errorf("fwctl whitelist add: %v; want exit 1 and the refusal", r)
	}
	if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
		t.Fatal("fwctl created the missing config")
	}
}

// A missing config while something holds the control socket but does not
// answer (a pfwd hung or stopped): that pfwd may run on the file, and
// would apply a default created now once it answers again, so reads and
// edits refuse and create nothing.
func TestMissingConfigWhilePfwdDoesNotAnswer(t *testing.T) {
	e := newEnv(t, testConfig)
	l, err := net.Listen("unix", e.socket) // never accepted: queued by the kernel, never answered
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { l.Close() })
	if err := os.Remove(e.config); err != nil {
		t.Fatal(err)
	}
	for _, args := range [][]string{{"list"}, {"whitelist", "add", "10.9.9.9"}, {"add", "X", "block", "--ports", "5555"}} {
		r := fwctl(t, args...)
		if r.code != 1 || !strings.Contains(r.stderr, "does not answer, so it may still enforce the config") {
			t.Errorf("fwctl %v: %v; want exit 1 and the refusal", args, r)
		}
		if _, err := os.Stat(e.config); !errors.Is(err, fs.ErrNotExist) {
			t.Fatalf("fwctl %v created the missing config", args)
		}
	}
}
