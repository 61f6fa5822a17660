package daemon

import (
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
)

// An edit of the config that leaves the threat feeds as they are keeps
// the threat entries in force as they are: the pipeline's compiled copy
// (the same object) and the kernel's sets. Rebuilding them for every edit
// of a rule doubled pfwd's heap for the reload's length with a large
// feed. A change of the feeds' names or order does rebuild them, since it
// changes which feed an entry two list is blamed on.
func TestRuleEditKeepsThreatEntries(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	dir := t.TempDir()
	_, feed := feedList(t, dir)
	entry, rangeStart := netip.MustParseAddr("198.51.100.7"), netip.MustParseAddr("198.51.100.0")
	cfgPath := filepath.Join(dir, "firewall_rules.json")
	save := func(text string) {
		t.Helper()
		if err := rules.Save(cfgPath, parseConfig(t, text)); err != nil {
			t.Fatal(err)
		}
	}
	save(`{"default_policy": "allow", "threat_feeds": [` + feed("First") + `]}`)

	d, log := startedDaemon(t, Options{ConfigPath: cfgPath, DBPath: filepath.Join(dir, "firewall.db"), Socket: filepath.Join(dir, "pfwd.sock"),
		Queues: 1, FailClosed: true})
	blamed := func() string {
		dec, ok := d.engine.Intel().Lookup(entry)
		if !ok {
			return ""
		}
		return dec.Reason
	}
	deadline := time.Now().Add(10 * time.Second)
	for blamed() == "" {
		if time.Now().After(deadline) {
			t.Fatal("the feed's entries were not in force within 10 s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	intelV4 := nft.SetName(nft.Intel, false)
	before, policy := d.engine.Intel(), d.engine.Policy()

	save(`{"default_policy": "allow", "rules": [{"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [23]}],
		"blacklist_ips": ["203.0.113.7"], "threat_feeds": [` + feed("First") + `]}`)
	d.Reload(reloadSIGHUP)
	if d.engine.Policy() == policy {
		t.Fatalf("the rule edit was not applied; log:\n%s", log.String())
	}
	if d.engine.Intel() != before {
		t.Error("a rule edit rebuilt the threat entries of unchanged feeds")
	}
	if got := blamed(); got != "Threat intel: First" {
		t.Errorf("after the rule edit %s is blamed on %q; want Threat intel: First", entry, got)
	}
	if !kernelSetHas(t, intelV4, rangeStart) || !kernelSetHas(t, nft.SetName(nft.Blacklist, false), netip.MustParseAddr("203.0.113.7")) {
		t.Errorf("after the rule edit the kernel's sets lack the feed's entry or the new blacklist entry")
	}

	// Another feed listing the same entries, first: it takes the blame.
	save(`{"default_policy": "allow", "threat_feeds": [` + feed("Second") + `, ` + feed("First") + `]}`)
	d.Reload(reloadSIGHUP)
	if d.engine.Intel() == before {
		t.Error("a new first feed did not rebuild the threat entries")
	}
	if got := blamed(); got != "Threat intel: Second" && got != "Threat intel: First" {
		t.Errorf("after the feed change %s is blamed on %q", entry, got)
	}
	if !kernelSetHas(t, intelV4, rangeStart) {
		t.Errorf("after the feed change the kernel's %s lacks the feed's entry", intelV4)
	}
}

// A feed update the kernel refuses is applied again by pfwd until the
// kernel takes it. The feed manager counts a list it fetched as taken and
// does not offer it again (its server answers "not modified" until the
// list changes, perhaps hours later), so without the retry the refused
// entries stayed out of the kernel and the pipeline until then.
//
// The kernel is made to refuse as in TestRefusedReloadKeepsDroppedFeed:
// an element put into the fail-closed table's intel set behind pfwd's
// back overlaps the update. The list's file is gone by then, so the
// entries that land come from pfwd's retry, not from a new fetch.
func TestRefusedFeedUpdateIsRetried(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	dir := t.TempDir()
	listPath, feed := feedList(t, dir)
	cfgPath, socket := filepath.Join(dir, "firewall_rules.json"), filepath.Join(dir, "pfwd.sock")
	if err := rules.Save(cfgPath, parseConfig(t, `{"default_policy": "allow", "threat_feeds": [`+feed("First")+`]}`)); err != nil {
		t.Fatal(err)
	}
	d, log := startedDaemon(t, Options{ConfigPath: cfgPath, DBPath: filepath.Join(dir, "firewall.db"), Socket: socket,
		Queues: 1, FailClosed: true})
	intelV4 := nft.SetName(nft.Intel, false)
	waitStatus(t, socket, "the feed's entries in force", func(st control.Status) bool { return st.Sets[intelV4] == 1 })
	if err := os.Remove(listPath); err != nil {
		t.Fatal(err)
	}

	first := feedsOf(d.shown.snapshot().cfg)[0]
	listed := []netip.Prefix{netip.MustParsePrefix("198.51.100.0/24"), netip.MustParsePrefix("2001:db8:bad::/48")}
	update := append(slices.Clone(listed), netip.MustParsePrefix("203.0.113.0/24"))
	refused := func() bool {
		d.saveMu.Lock()
		defer d.saveMu.Unlock()
		return d.feedRetries[first.Name] != nil
	}
	for attempt := 1; ; attempt++ {
		addForeignElement(t, intelV4, netip.MustParsePrefix("203.0.113.64/26"))
		d.onFeedUpdate(first, update)
		if refused() {
			break
		}
		// pfwd's repair took the foreign element out before the update
		// came (it checks every second): start again.
		if attempt == 3 {
			t.Fatal("the kernel took the update every time: the test could not make it refuse")
		}
		d.onFeedUpdate(first, listed)
	}
	st := queryStatus(t, socket)
	if len(st.Feeds) != 1 || !strings.Contains(st.Feeds[0].LastError, "not in force") {
		t.Errorf("status right after the refusal: feeds %+v; want the refusal in the feed's last_error", st.Feeds)
	}

	newEntry := netip.MustParseAddr("203.0.113.1")
	deadline := time.Now().Add(10 * time.Second)
	for {
		dec, inPipeline := d.engine.Intel().Lookup(newEntry)
		if inPipeline && dec.Reason == "Threat intel: First" && kernelSetHas(t, intelV4, netip.MustParseAddr("203.0.113.0")) && !refused() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("the refused update was not in force 10 s later (pipeline: %v)", inPipeline)
		}
		time.Sleep(20 * time.Millisecond)
	}
	if st := queryStatus(t, socket); len(st.Feeds) != 1 || st.Feeds[0].LastError != "" {
		t.Errorf("status once the update is in force: feeds %+v; want no error", st.Feeds)
	}
	if !strings.Contains(log.String(), "the kernel took the update it had refused") {
		t.Errorf("the log does not say the refused update landed:\n%s", log.String())
	}
}
