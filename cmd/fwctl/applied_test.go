package main

import (
	"bytes"
	"context"
	"os"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pfw/pfw/control"
)

// stubPfwd answers on the control socket for config like pfwd: when apply
// is true it "loads" the file each time it changes, otherwise it keeps
// failing with reloadErr.
func stubPfwd(t *testing.T, e *testEnv, apply bool, reloadErr string) {
	t.Helper()
	l, err := control.Listen(e.socket)
	if err != nil {
		t.Fatal(err)
	}
	var mu sync.Mutex
	data, _ := os.ReadFile(e.config)
	loadedAt := time.Now().Add(-time.Hour)
	st := func() control.Status {
		mu.Lock()
		defer mu.Unlock()
		now, _ := os.ReadFile(e.config)
		s := control.Status{Running: true, ConfigPath: e.config, ConfigLoadedAt: loadedAt}
		if !bytes.Equal(now, data) {
			if apply {
				data, loadedAt = now, time.Now()
				s.ConfigLoadedAt = loadedAt
			} else {
				s.ReloadError = reloadErr
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
	stubPfwd(t, e, true, "")
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
	stubPfwd(t, e, false, "open firewall_rules.json: too many open files")
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
