package daemon

import (
	"database/sql"
	"maps"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
)

// unsavedMark is what status says on a feed while the database's threat
// entries are stale.
const unsavedMark = "in force but not saved to the database (retrying)"

// A save of the threat entries that the database refuses (a full disk) is
// made again until the database takes them, and fwctl status says so on
// the feeds meanwhile. Before, the error was logged and dropped: a feed
// whose list did not change is not offered again, so fwctl threats and
// explain read the old entries, and a restart with the feed's server down
// seeded the kernel with them, until the list changed; status showed the
// feed without an error.
//
// The list's file is gone by the update, so the entries the database
// gets come from pfwd's retry, not from a new fetch.
func TestRefusedThreatSaveIsRetried(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	dir := t.TempDir()
	listPath, feed := feedList(t, dir)
	cfgPath, dbPath, socket := filepath.Join(dir, "firewall_rules.json"), filepath.Join(dir, "firewall.db"), filepath.Join(dir, "pfwd.sock")
	if err := rules.Save(cfgPath, parseConfig(t, `{"default_policy": "allow", "threat_feeds": [`+feed("First")+`]}`)); err != nil {
		t.Fatal(err)
	}
	d, log := startedDaemon(t, Options{ConfigPath: cfgPath, DBPath: dbPath, Socket: socket, Queues: 1})
	waitSaved(t, dbPath, map[string]int{"First": 2})
	if err := os.Remove(listPath); err != nil {
		t.Fatal(err)
	}

	allow := refuseThreatWrites(t, dbPath)
	first := feedsOf(d.shown.snapshot().cfg)[0]
	update := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:bad::/48"),
		netip.MustParsePrefix("203.0.113.0/24")}
	d.onFeedUpdate(first, update)
	if !kernelSetHas(t, nft.SetName(nft.Intel, false), netip.MustParseAddr("203.0.113.0")) {
		t.Fatal("the kernel lacks the update's new entry: the test meant only the database to refuse it")
	}
	if st := queryStatus(t, socket); len(st.Feeds) != 1 || !strings.Contains(st.Feeds[0].LastError, unsavedMark) {
		t.Errorf("status right after the failed save: feeds %+v; want %q in the feed's last_error", st.Feeds, unsavedMark)
	}
	if n := savedThreats(t, dbPath, "First"); n != 2 {
		t.Fatalf("the database refusing writes holds %d entries of First, want the 2 from before", n)
	}

	allow()
	waitSaved(t, dbPath, map[string]int{"First": 3})
	waitStatus(t, socket, "the feed without an error", func(st control.Status) bool {
		return len(st.Feeds) == 1 && st.Feeds[0].LastError == ""
	})
	const recovered = "INFO - Threat feed: saved the entries in force to the database, which had refused them"
	if n := strings.Count(log.String(), recovered); n != 1 {
		t.Errorf("the log says %d times that the save landed, want once:\n%s", n, log.String())
	}
}

// The save of seedThreats, which drops from the database the entries of
// a feed no longer configured, is made again alike when it fails: the
// removed feed's rows must not stay in fwctl threats for good. The
// configured feed cannot be fetched, so no feed update saves instead.
func TestRefusedSeedSaveIsRetried(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	dir := t.TempDir()
	socket := filepath.Join(dir, "pfwd.sock")
	cfgPath, dbPath := seededDeadFeed(t, dir, []store.FeedThreats{
		{Source: "Dead", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}},
		{Source: "Gone", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}},
	}, time.Now())
	allow := refuseThreatWrites(t, dbPath)

	_, log := startedDaemon(t, Options{ConfigPath: cfgPath, DBPath: dbPath, Socket: socket, Queues: 1})
	if st := queryStatus(t, socket); len(st.Feeds) != 1 || !strings.Contains(st.Feeds[0].LastError, unsavedMark) {
		t.Errorf("status after the seed's failed save: feeds %+v; want %q in the feed's last_error", st.Feeds, unsavedMark)
	}
	if n := savedThreats(t, dbPath, "Gone"); n != 1 {
		t.Fatalf("the database refusing writes holds %d entries of the removed feed, want its 1", n)
	}
	allow()
	waitSaved(t, dbPath, map[string]int{"Gone": 0, "Dead": 1})
	waitStatus(t, socket, "the feed without the failed save", func(st control.Status) bool {
		return len(st.Feeds) == 1 && !strings.Contains(st.Feeds[0].LastError, unsavedMark)
	})
	if !strings.Contains(log.String(), "saved the entries in force to the database, which had refused them") {
		t.Errorf("the log does not say the save landed:\n%s", log.String())
	}
}

// refuseThreatWrites makes the database at path refuse every write to
// threat_intel, as a full disk would (the log writer's rows still go in),
// until the returned func is called.
func refuseThreatWrites(t *testing.T, path string) (allow func()) {
	t.Helper()
	db, err := sql.Open("sqlite3", "file:"+path+"?_busy_timeout=5000")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { db.Close() })
	exec := func(q string) {
		t.Helper()
		if _, err := db.Exec(q); err != nil {
			t.Fatalf("%s: %v", q, err)
		}
	}
	ops := []string{"INSERT", "UPDATE", "DELETE"}
	for _, op := range ops {
		exec(`CREATE TRIGGER test_refuse_` + op + ` BEFORE ` + op + ` ON threat_intel
			BEGIN SELECT RAISE(ABORT, 'refused by the test, as by a full disk'); END`)
	}
	return func() {
		t.Helper()
		for _, op := range ops {
			exec(`DROP TRIGGER test_refuse_` + op)
		}
	}
}

// waitSaved waits, at most 10 s, until the database at path holds want
// threat entries of each feed named.
func waitSaved(t *testing.T, path string, want map[string]int) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		got := map[string]int{}
		for source := range want {
			got[source] = savedThreats(t, path, source)
		}
		if maps.Equal(got, want) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("threat entries saved per feed: %v 10 s on, want %v", got, want)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Shutdown ends the retries of a failed threat save: it does not wait
// for the next one, and none runs against the database it closed.
func TestShutdownEndsThreatSaveRetries(t *testing.T) {
	dir := t.TempDir()
	dbPath := filepath.Join(dir, "firewall.db")
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	d, logBuf := shutdownDaemon(time.Second, time.Second)
	d.store, d.cfg = st, parseConfig(t, `{"default_policy": "allow", "threat_feeds": [{"name": "First",
		"url": "file:///nonexistent", "interval": "1h", "threat_level": "high"}]}`)
	d.feedEntries["First"] = []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24")}
	refuseThreatWrites(t, dbPath)
	d.saveMu.Lock()
	err = d.storeThreats(nil, "Threat feed: saving entries failed", "feed", "First")
	d.saveMu.Unlock()
	if err == nil || d.unsaved == nil {
		t.Fatalf("the save the database refused: err %v, retry pending %v", err, d.unsaved != nil)
	}
	start := time.Now()
	d.shutdown()
	if took := time.Since(start); took > 500*time.Millisecond {
		t.Errorf("shutdown with a save retry pending took %v", took)
	}
	time.Sleep(1500 * time.Millisecond) // past the first retry's 1 s
	if n := strings.Count(logBuf.String(), "saving entries failed"); n != 1 {
		t.Errorf("%d failed saves logged, want the 1 before shutdown:\n%s", n, logBuf.String())
	}
}

// A save the database keeps refusing is tried less and less often, up to
// once every five minutes: each try rewrites every entry.
func TestThreatSaveRetryBacksOffToFiveMinutes(t *testing.T) {
	var d time.Duration
	var got []time.Duration
	for range 11 {
		d = nextThreatSaveRetry(d)
		got = append(got, d)
	}
	want := []time.Duration{time.Second, 2 * time.Second, 4 * time.Second, 8 * time.Second, 16 * time.Second, 32 * time.Second,
		64 * time.Second, 128 * time.Second, 256 * time.Second, 5 * time.Minute, 5 * time.Minute}
	if !slices.Equal(got, want) {
		t.Errorf("retry pauses %v, want %v", got, want)
	}
}
