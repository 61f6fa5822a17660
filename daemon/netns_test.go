package daemon

import (
	"context"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"syscall"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
)

// netnsChildEnv names the test a child process runs in its own network
// namespace (inFreshNetNS).
const netnsChildEnv = "PFW_DAEMON_TEST_NETNS_CHILD"

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: kernel test needs root (it runs pfwd in a new network namespace)")
	}
}

// inFreshNetNS runs the calling test again in a child process inside a
// network namespace of its own, and reports whether the caller is that
// child: there it returns true and the test goes on; in the parent it
// waits for the child, passes on its output and its failure, and returns
// false, and the test returns.
//
// A whole process, because pfwd's parts open netlink sockets from many
// goroutines, and a goroutine cannot take the others into a namespace
// (setns moves one thread). The namespace is unnamed: it has no file to
// remove and goes with the child, table, queues and conntrack entries
// included, whatever way the child ends.
func inFreshNetNS(t *testing.T, timeout time.Duration) bool {
	t.Helper()
	if os.Getenv(netnsChildEnv) == t.Name() {
		return true
	}
	requireRoot(t)
	ctx, cancel := context.WithTimeout(t.Context(), timeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, os.Args[0], "-test.run=^"+regexp.QuoteMeta(t.Name())+"$", "-test.v", "-test.count=1")
	cmd.Env = append(os.Environ(), netnsChildEnv+"="+t.Name())
	cmd.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET, Pdeathsig: syscall.SIGKILL}
	// Pdeathsig follows the thread that forks: keep it alive until the
	// child is waited for.
	runtime.LockOSThread()
	out, err := cmd.CombinedOutput()
	runtime.UnlockOSThread()
	t.Logf("in its own network namespace:\n%s", out)
	if ctx.Err() != nil {
		t.Fatalf("the test in its own network namespace did not end within %v", timeout)
	}
	if err != nil {
		t.Fatalf("the test in its own network namespace failed: %v", err)
	}
	return false
}

// startedDaemon starts a Daemon with opts (defaults filled in), for a test
// that works with its insides, and shuts it down when the test ends,
// showing its log if the test failed.
// testOptions writes config to a fresh directory and returns Options for a
// daemon test: that file, a database and a control socket beside it, one
// queue.
func testOptions(t *testing.T, config string) Options {
	t.Helper()
	dir := t.TempDir()
	opts := Options{ConfigPath: filepath.Join(dir, "firewall_rules.json"), DBPath: filepath.Join(dir, "firewall.db"),
		Socket: filepath.Join(dir, "pfwd.sock"), Queues: 1}
	if err := rules.Save(opts.ConfigPath, parseConfig(t, config)); err != nil {
		t.Fatal(err)
	}
	return opts
}

func startedDaemon(t *testing.T, opts Options) (*Daemon, *lockedBuffer) {
	t.Helper()
	log := new(lockedBuffer)
	d := newDaemon(opts.withDefaults(), slog.New(NewLineHandler(log, slog.LevelInfo, false)))
	ctx, stop := context.WithCancel(context.Background())
	t.Cleanup(func() {
		stop()
		d.shutdown()
		if t.Failed() {
			t.Logf("pfwd's log:\n%s", log.String())
		}
	})
	if err := d.start(ctx); err != nil {
		t.Fatal(err)
	}
	return d, log
}
