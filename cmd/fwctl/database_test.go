package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/store"
)

// pfwdOnTempDB fakes a pfwd on e.socket that could not open configured
// and logs to a temporary database beside its socket, which it returns,
// holding five blocked rows and a threat entry.
func pfwdOnTempDB(t *testing.T, e *testEnv, configured string) string {
	t.Helper()
	dir := filepath.Join(e.dir, "pfwd-db-123")
	if err := os.Mkdir(dir, 0o700); err != nil {
		t.Fatal(err)
	}
	tmp := filepath.Join(dir, "firewall.db")
	now := time.Now()
	seedLogs(t, &testEnv{db: tmp}, now)
	addThreats(t, tmp, "Feodo Tracker", "high", now, "198.18.0.5")
	st := sampleStatus(now)
	st.LogRows.Database, st.LogRows.Configured = tmp, configured
	st.LogRows.Fallback = "open store " + configured + ": no space left on device"
	fakeDaemon(t, e.socket, st)
	return tmp
}

// A full disk at pfwd's start leaves a 0-byte database, a read-only one a
// stale one, and pfwd logs to a temporary database: logs, stats, threats
// and explain read that one, saying so, instead of calling the database
// not set up, or showing an old log, while pfwd runs. (Neither --db nor
// $PFW_DB: the default path is compared with pfwd's, never opened.)
func TestReadsTheTemporaryDatabasePfwdLogsTo(t *testing.T) {
	e := newEnv(t, testConfig)
	os.Unsetenv("PFW_DB") // newEnv's t.Setenv restores it
	tmp := pfwdOnTempDB(t, e, store.DefaultPath)
	note := "fwctl: note: pfwd (pid 4242) could not open " + store.DefaultPath + " and logs to a temporary database until it restarts: reading " + tmp + "\n"

	r := mustRun(t, "logs")
	if !strings.Contains(r.stdout, "198.18.0.5") || r.stderr != note {
		t.Errorf("logs does not read the temporary database, with a note:\n%v", r)
	}
	var st store.Stats
	r = mustRun(t, "stats", "--json")
	decode(t, r, &st)
	if st.Blocked != 5 || r.stderr != note {
		t.Errorf("stats: %d blocked, want 5 (the temporary database's), with a note:\n%v", st.Blocked, r)
	}
	if r := mustRun(t, "threats"); !strings.Contains(r.stdout, "198.18.0.5") || r.stderr != note {
		t.Errorf("threats does not read the temporary database, with a note:\n%v", r)
	}
	var ex explanation
	r = mustRun(t, "explain", "--src", "198.18.0.5", "--json")
	decode(t, r, &ex)
	if ex.Reason != "Threat intel: Feodo Tracker" || r.stderr != note {
		t.Errorf("explain does not check the temporary database's threat entries: %+v\n%v", ex, r)
	}
}

// A database named with --db or $PFW_DB that pfwd could not open is read
// as asked (a read-only directory leaves a stale log there), with a
// warning naming the database pfwd writes; failing to read it, the error
// names that one.
func TestNamedDBWarnsOfTheTemporaryOne(t *testing.T) {
	e := newEnv(t, testConfig)
	stale := newLogDB(t, e.db, store.WriterConfig{})
	stale.blocked(row(time.Now().Add(-time.Hour), "192.0.2.99", 23, "Rule: Block Telnet and SMB"))
	tmp := pfwdOnTempDB(t, e, e.db)
	warning := "fwctl: warning: pfwd (pid 4242) could not open " + e.db + " and logs to a temporary database until it restarts: --db " + tmp + " reads it\n"
	for _, args := range [][]string{{"logs"}, {"--db", e.db, "logs"}} {
		r := mustRun(t, args...)
		if !strings.Contains(r.stdout, "192.0.2.99") || strings.Contains(r.stdout, "198.18.0.5") || r.stderr != warning {
			t.Errorf("fwctl %s: want the stale rows asked for, with a warning:\n%v", strings.Join(args, " "), r)
		}
	}

	full := newEnv(t, testConfig)
	if err := os.WriteFile(full.db, nil, 0o644); err != nil { // a full disk at pfwd's start
		t.Fatal(err)
	}
	tmp = pfwdOnTempDB(t, full, full.db)
	r := fwctl(t, "--db", full.db, "stats")
	if r.code != 1 {
		t.Fatalf("stats of a 0-byte database: %v", r)
	}
	checkErrorLine(t, r, "not set up")
	checkErrorLine(t, r, "logs to a temporary database until it restarts: --db "+tmp+" reads it")
}

// A database other than the one pfwd could not open is read as ever,
// without a word about pfwd's.
func TestOtherDBIgnoresTheTemporaryOne(t *testing.T) {
	e := newEnv(t, testConfig)
	pfwdOnTempDB(t, e, filepath.Join(e.dir, "configured.db"))
	seedLogs(t, e, time.Now())
	if r := mustRun(t, "stats"); r.stderr != "" {
		t.Errorf("stats of another database talks of pfwd's:\n%v", r)
	}
}
