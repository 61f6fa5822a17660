package daemon

import (
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
)

// A reload the kernel refuses changes nothing, threat feeds included: a
// feed the refused config drops keeps its entries in the kernel, in the
// feed manager and in the database until a config without it is in force.
// (It used to be removed before the kernel was asked, so each refused
// attempt, and each retry, emptied it and fetched it again.)
//
// The kernel is made to refuse by an element put into pfw's blacklist set
// behind pfwd's back (the fail-closed table is an ordinary one anyone may
// change): the new config's blacklist overlaps it, and the kernel refuses
// overlapping intervals. The retry a second later succeeds, since pfwd
// reads back the set it failed to change; only then does the feed go.
func TestRefusedReloadKeepsDroppedFeed(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	dir := t.TempDir()
	const feedName = "Dropped Feed"
	listPath, feed := feedList(t, dir)
	feedEntry := netip.MustParseAddr("198.51.100.0")
	withFeed := parseConfig(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"],
		"threat_feeds": [`+feed(feedName)+`]}`)
	withoutFeed := parseConfig(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"],
		"blacklist_ips": ["203.0.113.0/24"]}`)
	cfgPath, dbPath, socket := filepath.Join(dir, "firewall_rules.json"), filepath.Join(dir, "firewall.db"), filepath.Join(dir, "pfwd.sock")
	if err := rules.Save(cfgPath, withFeed); err != nil {
		t.Fatal(err)
	}
	startTestDaemon(t, Options{ConfigPath: cfgPath, DBPath: dbPath, Socket: socket, Queues: 1, FailClosed: true})

	intelV4 := nft.SetName(nft.Intel, false)
	waitStatus(t, socket, "the feed's entries in force", func(st control.Status) bool {
		return feedEntries(st, feedName) == 2 && st.Sets[intelV4] == 1
	})
	if !kernelSetHas(t, intelV4, feedEntry) {
		t.Fatalf("the kernel's %s lacks the feed's entry before the reload", intelV4)
	}
	// From now on a fetch of the feed fails, as when its server is down:
	// what pfwd holds of it is all there is.
	if err := os.Remove(listPath); err != nil {
		t.Fatal(err)
	}
	addForeignElement(t, nft.SetName(nft.Blacklist, false), netip.MustParsePrefix("203.0.113.64/26"))

	if err := rules.Save(cfgPath, withoutFeed); err != nil { // pfwd's watcher reloads
		t.Fatal(err)
	}
	refused := waitStatus(t, socket, "the reload's refusal", func(st control.Status) bool {
		return st.ReloadError != "" && !st.Reload.InProgress
	})
	t.Logf("refused: %s", refused.ReloadError)
	// The feed manager is told of a config only once the kernel holds it.
	if n := feedEntries(refused, feedName); n != 2 {
		t.Errorf("right after the refusal the feed has %d entries in pfwd; want its 2 kept", n)
	}
	// A removal would reach the kernel and the database within
	// milliseconds; the retry comes a second after the refusal.
	time.Sleep(300 * time.Millisecond)
	st := queryStatus(t, socket)
	if st.ReloadError == "" {
		t.Fatal("the retry succeeded within 300 ms: too early to tell what the refusal did")
	}
	if n := feedEntries(st, feedName); n != 2 || st.Sets[intelV4] != 1 {
		t.Errorf("after the refusal: feed entries %d, %s ranges %d; want 2 and 1", n, intelV4, st.Sets[intelV4])
	}
	if !kernelSetHas(t, intelV4, feedEntry) {
		t.Errorf("after the refusal the kernel's %s lacks the feed's entry", intelV4)
	}
	if n := savedThreats(t, dbPath, feedName); n != 2 {
		t.Errorf("after the refusal the database holds %d of the feed's entries; want 2", n)
	}
	if st.ConfigDigest != rules.Digest(withFeed) {
		t.Errorf("after the refusal config_digest is %q; want the config in force, %q", st.ConfigDigest, rules.Digest(withFeed))
	}

	// The retry applies the config, and the feed goes with it.
	waitStatus(t, socket, "the retry", func(st control.Status) bool {
		return st.ConfigDigest == rules.Digest(withoutFeed) && feedEntries(st, feedName) == -1 && st.Sets[intelV4] == 0
	})
	deadline := time.Now().Add(5 * time.Second)
	for savedThreats(t, dbPath, feedName) != 0 {
		if time.Now().After(deadline) {
			t.Fatal("the removed feed's entries are still in the database 5 s after the retry")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// feedList writes a threat list of two entries, 198.51.100.0/24 and
// 2001:db8:bad::/48, in dir, and returns its path and what makes a
// config's feed that reads it under a name.
func feedList(t *testing.T, dir string) (path string, feed func(name string) string) {
	t.Helper()
	path = filepath.Join(dir, "list.txt")
	if err := os.WriteFile(path, []byte("198.51.100.0/24\n2001:db8:bad::/48\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	return path, func(name string) string {
		return `{"name": "` + name + `", "url": "file://` + path + `", "interval": "1h", "threat_level": "high"}`
	}
}

func parseConfig(t *testing.T, text string) *rules.Config {
	t.Helper()
	cfg, err := rules.Parse([]byte(text))
	if err != nil {
		t.Fatal(err)
	}
	return cfg
}

// waitStatus asks pfwd for its status until ok accepts one, for at most
// 10 s, and returns that one.
func waitStatus(t *testing.T, socket, what string, ok func(control.Status) bool) control.Status {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for {
		st := queryStatus(t, socket)
		if ok(st) {
			return st
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s: not seen within 10 s; last status: %+v", what, st)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// feedEntries is the named feed's entry count in st, -1 when it has none.
func feedEntries(st control.Status, name string) int {
	for _, f := range st.Feeds {
		if f.Name == name {
			return f.Entries
		}
	}
	return -1
}

// savedThreats counts the database's threat entries of a feed.
func savedThreats(t *testing.T, dbPath, source string) int {
	t.Helper()
	st, err := store.OpenReader(dbPath)
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	threats, err := st.LoadThreats(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	for _, th := range threats {
		if th.Source == source {
			n++
		}
	}
	return n
}

// addForeignElement adds p to a set of pfw's table as something other than
// pfwd would: pfwd does not know of it.
func addForeignElement(t *testing.T, set string, p netip.Prefix) {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSetByName(&nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}, set)
	if err != nil {
		t.Fatalf("set %s: %v", set, err)
	}
	end := lastAddr(p).Next()
	if err := c.SetAddElements(s, []nftables.SetElement{{Key: p.Addr().AsSlice()}, {Key: end.AsSlice(), IntervalEnd: true}}); err != nil {
		t.Fatal(err)
	}
	if err := c.Flush(); err != nil {
		t.Fatalf("add %v to %s: %v", p, set, err)
	}
}

// lastAddr is the last address of p.
func lastAddr(p netip.Prefix) netip.Addr {
	b := p.Masked().Addr().AsSlice()
	for i := p.Bits(); i < len(b)*8; i++ {
		b[i/8] |= 0x80 >> (i % 8)
	}
	a, _ := netip.AddrFromSlice(b)
	return a
}
