package daemon

import (
	"context"
	"net/netip"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
)

// Threat entries read from the database at start get the checks a fetched
// list gets, and the kernel sets and the pipeline hold only what the feed
// manager kept. Before, a database row ::/0, or one covering the host's own
// network, went into the kernel and the pipeline unchecked at start: with
// the feed offline, all IPv6 traffic and the host's LAN were dropped until
// it fetched again. And when the host gains an address that an entry in
// force covers, the entry goes at once, not at the feed's next fetch.
func TestSeedFromDatabaseIsSanitized(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	ip := func(args ...string) {
		t.Helper()
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
	ip("link", "add", "pfwseed0", "type", "veth", "peer", "name", "pfwseed1")
	ip("addr", "add", "10.14.0.1/24", "dev", "pfwseed0")
	ip("link", "set", "pfwseed0", "up")

	dir := t.TempDir()
	rows := []netip.Prefix{
		netip.MustParsePrefix("10.14.0.0/24"), // covers the host's 10.14.0.1
		netip.MustParsePrefix("::/0"),
		netip.MustParsePrefix("198.18.0.0/24"),
		netip.MustParsePrefix("2001:db8:bad::/48"),
	}
	cfgPath, dbPath := seededDeadFeed(t, dir, []store.FeedThreats{{Source: "Dead", Level: "high", Entries: rows}},
		time.Date(2026, 11, 25, 9, 0, 0, 0, time.UTC))

	d, log := startedDaemon(t, Options{ConfigPath: cfgPath, DBPath: dbPath, Socket: filepath.Join(dir, "pfwd.sock"), Queues: 1})

	intelV4, intelV6 := nft.SetName(nft.Intel, false), nft.SetName(nft.Intel, true)
	addr := netip.MustParseAddr
	type probe struct {
		set     string
		start   netip.Addr // of the entry's interval in the set
		inside  netip.Addr // an address the entry covers
		blocked bool
	}
	check := func(when string, probes []probe) {
		t.Helper()
		for _, p := range probes {
			if got := kernelSetHas(t, p.set, p.start); got != p.blocked {
				t.Errorf("%s: kernel set %s has an entry at %s: %v, want %v", when, p.set, p.start, got, p.blocked)
			}
			dec, got := d.engine.Intel().Lookup(p.inside)
			if got != p.blocked || (got && dec.Reason != "Threat intel: Dead") {
				t.Errorf("%s: the pipeline blocks %s: %v (%q), want %v", when, p.inside, got, dec.Reason, p.blocked)
			}
		}
	}
	check("at start", []probe{
		{intelV4, addr("10.14.0.0"), addr("10.14.0.5"), false},
		{intelV6, addr("::"), addr("2001:db8::1"), false},
		{intelV4, addr("198.18.0.0"), addr("198.18.0.9"), true},
		{intelV6, addr("2001:db8:bad::"), addr("2001:db8:bad::1"), true},
	})
	// fwctl reads the database: it must hold what pfwd does.
	if n := savedThreats(t, dbPath, "Dead"); n != 2 {
		t.Errorf("the database holds %d entries of Dead after the start, want the 2 kept", n)
	}
	for _, want := range []string{"from the database: skipped 2 entries", "10.14.0.0/24 (covers this host's address 10.14.0.1)", "::/0 (would block all IPv6 traffic)"} {
		waitLog(t, log, want)
	}

	// The host gains an address inside an entry in force: pfwd's loop
	// hands the new addresses over every hostAddrsEvery, as here.
	ip("addr", "add", "198.18.0.1/32", "dev", "pfwseed0")
	d.feeds.SetHostAddrs(hostAddrs())
	deadline := time.Now().Add(10 * time.Second)
	for {
		_, blocked := d.engine.Intel().Lookup(addr("198.18.0.9"))
		if !blocked && !kernelSetHas(t, intelV4, addr("198.18.0.0")) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("198.18.0.0/24 still in force 10 s after the host took 198.18.0.1")
		}
		time.Sleep(20 * time.Millisecond)
	}
	check("after the new address", []probe{{intelV6, addr("2001:db8:bad::"), addr("2001:db8:bad::1"), true}})
	waitLog(t, log, "dropped 1 entry in force: 198.18.0.0/24 (covers this host's address 198.18.0.1)")
}

// waitLog waits up to 10 s for pfwd's log to hold text: the feed manager's
// lines come once its callbacks run.
func waitLog(t *testing.T, log *lockedBuffer, text string) {
	t.Helper()
	for deadline := time.Now().Add(10 * time.Second); !strings.Contains(log.String(), text); time.Sleep(10 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("pfwd's log lacks %q after 10 s", text)
		}
	}
}

// seededDeadFeed writes, in dir, a config whose one feed ("Dead", high)
// cannot be fetched and a database holding threats as saved at: at start
// only the database's entries are in force. It returns both paths.
func seededDeadFeed(t *testing.T, dir string, threats []store.FeedThreats, at time.Time) (cfgPath, dbPath string) {
	t.Helper()
	cfgPath, dbPath = filepath.Join(dir, "firewall_rules.json"), filepath.Join(dir, "firewall.db")
	cfg := `{"default_policy": "allow", "threat_feeds": [{"name": "Dead", "url": "file://` +
		filepath.Join(dir, "missing.txt") + `", "interval": "1h", "threat_level": "high"}]}`
	if err := rules.Save(cfgPath, parseConfig(t, cfg)); err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	err = st.SetThreats(context.Background(), threats, at)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	return cfgPath, dbPath
}
