package daemon

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pfw/pfw/store"
)

// unopenableDB returns Options whose database cannot be opened (its
// directory is a regular file), so pfwd falls back to a temporary one.
func unopenableDB(t *testing.T) Options {
	t.Helper()
	opts := testOptions(t, `{"default_policy": "allow"}`)
	notADir := filepath.Join(filepath.Dir(opts.DBPath), "not-a-directory")
	if err := os.WriteFile(notADir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	opts.DBPath = filepath.Join(notADir, "firewall.db")
	return opts
}

// The start-up line names the database pfwd writes, the temporary one
// after a fallback, not the configured one it could not open.
func TestStartedLineNamesTheTemporaryDatabase(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	d, log := startedDaemon(t, unopenableDB(t))
	tmp := d.store.Path()
	if !strings.HasPrefix(filepath.Base(filepath.Dir(tmp)), "pfwd-db-") {
		t.Fatalf("pfwd writes %s, want a temporary database", tmp)
	}
	for line := range strings.Lines(log.String()) {
		if strings.Contains(line, "pfwd started") && !strings.Contains(line, " db="+tmp) {
			t.Errorf("the start-up line does not name the temporary database %s:\n%s", tmp, line)
		}
	}
	if !strings.Contains(log.String(), "pfwd started") {
		t.Errorf("no start-up line:\n%s", log.String())
	}
}

// Status names the temporary database, why, and the configured one, so
// fwctl, asked to read the configured one, reads pfwd's; with no
// fallback, log_rows reads as before.
func TestStatusNamesTheConfiguredDatabase(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	opts := unopenableDB(t)
	d, _ := startedDaemon(t, opts)
	rows := d.Status().LogRows
	if rows.Database != d.store.Path() || rows.Configured != opts.DBPath || !strings.Contains(rows.Fallback, "not a directory") {
		t.Errorf("log_rows = %+v; want database %s, configured %s and why", rows, d.store.Path(), opts.DBPath)
	}
	if got := newDaemon(opts, d.log).dbConfigured(); got != "" {
		t.Errorf("configured = %q without a fallback, want none (omitted)", got)
	}
}

// Only what a pfwd that did not stop cleanly left is removed: directories
// named as pfwd names them, holding a database and its companions alone,
// whose lock no running pfwd holds. The rest stays, and what looks like a
// temporary database but holds more is reported.
func TestRemoveStaleTempDBs(t *testing.T) {
	dir := t.TempDir()
	mkdir := func(name string, files ...string) string {
		t.Helper()
		path := filepath.Join(dir, name)
		if err := os.Mkdir(path, 0o700); err != nil {
			t.Fatal(err)
		}
		for _, f := range files {
			if err := os.WriteFile(filepath.Join(path, f), []byte("rows"), 0o600); err != nil {
				t.Fatal(err)
			}
		}
		return path
	}
	// Left by a killed pfwd: its lock went with it.
	killed, lock, err := makeTempDBDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range tempDBFiles {
		os.WriteFile(filepath.Join(killed, f), []byte("rows"), 0o600)
	}
	lock.Close()
	empty := mkdir("pfwd-db-12") // killed before it opened the database
	walOnly := mkdir("pfwd-db-34", "firewall.db", "firewall.db-wal")
	// A running pfwd's, from another network namespace.
	running, held, err := makeTempDBDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	defer held.Close()
	os.WriteFile(filepath.Join(running, tempDBName), []byte("rows"), 0o600)
	// Not pfwd's to remove.
	more := mkdir("pfwd-db-56", "firewall.db", "notes.txt")
	movedAside := mkdir("pfwd-db-78", "firewall.db", "firewall.db.corrupt-2026-11-25T15:04:05Z")
	subdir := mkdir("pfwd-db-90", "firewall.db")
	mkdir("pfwd-db-90/firewall.db-wal")
	keep := []string{more, movedAside, subdir, running,
		mkdir("pfwd-db-abc", "firewall.db"), mkdir("pfwd-db-", "firewall.db"), mkdir("pfwd-db-1x", "firewall.db"),
		mkdir("xpfwd-db-1", "firewall.db"), mkdir("other", "firewall.db")}
	target := mkdir("elsewhere", "firewall.db")
	keep = append(keep, target)
	if err := os.Symlink(target, filepath.Join(dir, "pfwd-db-99")); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "pfwd-db-98"), nil, 0o600); err != nil {
		t.Fatal(err)
	}

	got := map[string]string{}
	for _, st := range removeStaleTempDBs(dir) {
		got[st.path] = fmt.Sprint(st.err)
	}
	want := map[string]string{
		killed: "<nil>", empty: "<nil>", walOnly: "<nil>",
		more:       "holds notes.txt, which is no part of a database",
		movedAside: "holds firewall.db.corrupt-2026-11-25T15:04:05Z, which is no part of a database",
		subdir:     "firewall.db-wal is not a regular file",
	}
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("removeStaleTempDBs (-want +got):\n%s", diff)
	}
	for _, path := range []string{killed, empty, walOnly} {
		if _, err := os.Lstat(path); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s stays: %v", filepath.Base(path), err)
		}
	}
	for _, path := range keep {
		if _, err := os.Stat(filepath.Join(path, tempDBName)); err != nil {
			t.Errorf("%s was touched: %v", filepath.Base(path), err)
		}
	}
	for _, name := range []string{"pfwd-db-99", "pfwd-db-98"} {
		if _, err := os.Lstat(filepath.Join(dir, name)); err != nil {
			t.Errorf("%s was removed: %v", name, err)
		}
	}
}

// A pfwd killed while it logged to a temporary database leaves it behind
// (its lock goes with it); the next start removes it, says so, and keeps
// the one it makes for itself.
func TestStartRemovesStaleTempDBs(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	opts := unopenableDB(t)
	stale, lock, err := makeTempDBDir(filepath.Dir(opts.Socket))
	if err != nil {
		t.Fatal(err)
	}
	s, err := store.Open(filepath.Join(stale, tempDBName))
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	lock.Close() // SIGKILL: no clean-up, the lock released
	d, log := startedDaemon(t, opts)
	if _, err := os.Lstat(stale); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the stale temporary database stays: %v", err)
	}
	if want := "Removed the temporary database of a pfwd that did not stop cleanly dir=" + stale; !strings.Contains(log.String(), want) {
		t.Errorf("the log lacks %q:\n%s", want, log.String())
	}
	if _, err := os.Stat(d.store.Path()); err != nil || filepath.Dir(d.store.Path()) == stale {
		t.Errorf("pfwd's own temporary database %s: %v", d.store.Path(), err)
	}
}
