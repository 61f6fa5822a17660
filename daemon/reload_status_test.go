package daemon

import (
	"bytes"
	"context"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/google/nftables"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
)

// bigReloadEntries is how many blacklist entries the large reload adds:
// enough that putting them in the kernel takes seconds here, as a list
// of a million and a half takes some 16 s on a small host.
const bigReloadEntries = 500_000

// A reload of a large list holds the kernel for seconds. Status must
// answer within a second all along, say that a reload is under way, and
// name the new config (config_digest, which fwctl waits for after an
// edit) only once the kernel holds its sets.
func TestStatusAnswersDuringLargeReload(t *testing.T) {
	if testing.Short() {
		t.Skip("skipping in -short mode: puts a 500,000-entry blacklist into the kernel (seconds)")
	}
	if !inFreshNetNS(t, 90*time.Second) {
		return
	}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "firewall_rules.json")
	cfg, err := rules.Parse([]byte(`{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"],
		"blacklist_ips": ["192.0.2.1"], "rules": [{"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [23]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	if err := rules.Save(cfgPath, cfg); err != nil {
		t.Fatal(err)
	}
	oldDigest := rules.Digest(cfg)
	// The large config is written beside the file before pfwd starts and
	// moved into its place once it runs, as editors and fwctl replace the
	// file: the test's own work on it is done before the reload begins.
	bigPath := filepath.Join(dir, "big.json")
	newDigest := saveWithBigBlacklist(t, bigPath, cfg)
	socket := filepath.Join(dir, "pfwd.sock")
	startTestDaemon(t, Options{ConfigPath: cfgPath, DBPath: filepath.Join(dir, "firewall.db"), Socket: socket, Queues: 1})

	if kernelSetHas(t, nft.SetName(nft.Blacklist, true), bigReloadMarker) {
		t.Fatal("the marker is in the kernel before the reload")
	}
	start := time.Now()
	if err := os.Rename(bigPath, cfgPath); err != nil { // pfwd's watcher reloads
		t.Fatal(err)
	}

	var inProgress, answers int
	var slowest time.Duration
	applied := false
	for {
		asked := time.Now()
		st := queryStatus(t, socket)
		answered := time.Now()
		took := answered.Sub(asked)
		answers++
		slowest = max(slowest, took)
		if took > time.Second {
			t.Errorf("status took %v, %v into the reload; want under 1 s", took.Round(time.Millisecond), asked.Sub(start).Round(time.Millisecond))
		}
		switch st.ConfigDigest {
		case oldDigest:
			if applied {
				t.Fatal("config_digest went back to the old config")
			}
			if st.Reload.InProgress {
				inProgress++
				if st.Reload.Why != reloadFileChanged || st.Reload.Since.Before(start) || st.Reload.Since.After(answered) {
					t.Errorf("reload in progress: %+v; want why %q, since between the edit (%v) and the answer (%v)",
						st.Reload, reloadFileChanged, start, answered)
				}
			}
		case newDigest:
			if !applied {
				applied = true
				// The digest is the promise fwctl relies on: the kernel
				// must hold the new sets by now, and status count them.
				if !kernelSetHas(t, nft.SetName(nft.Blacklist, true), bigReloadMarker) {
					t.Error("config_digest names the new config, but the kernel's blacklist_v6 lacks its entry")
				}
				if got := st.Sets[nft.SetName(nft.Blacklist, false)]; got != bigReloadEntries {
					t.Errorf("config_digest names the new config, but sets.blacklist_v4 = %d; want %d", got, bigReloadEntries)
				}
				if st.ReloadError != "" {
					t.Errorf("reload_error %q after a reload that was applied", st.ReloadError)
				}
				t.Logf("new config in force %v after the edit", time.Since(start).Round(time.Millisecond))
			}
		default:
			t.Fatalf("config_digest %q names neither config", st.ConfigDigest)
		}
		if applied && !st.Reload.InProgress {
			if st.Reload != (control.ReloadState{}) {
				t.Errorf("reload after it ended: %+v; want the zero value", st.Reload)
			}
			break
		}
		if time.Since(start) > 60*time.Second {
			t.Fatalf("the reload did not end within 60 s (last status: digest %q, reload %+v)", st.ConfigDigest, st.Reload)
		}
		time.Sleep(20 * time.Millisecond)
	}
	t.Logf("%d status answers during the reload, %d of them saying it was in progress; slowest %v",
		answers, inProgress, slowest.Round(time.Millisecond))
	if inProgress == 0 {
		t.Error("no status answer said a reload was in progress while the old config stayed in force")
	}
}

// bigReloadMarker is in the large config only, in its v6 set: the
// transaction that fills the sets is atomic, so the marker in the kernel
// means every new entry is.
var bigReloadMarker = netip.MustParseAddr("2001:db8::dead")

// saveWithBigBlacklist saves cfg at path with bigReloadEntries IPv4
// addresses and bigReloadMarker as its blacklist, and returns its digest.
func saveWithBigBlacklist(t *testing.T, path string, cfg *rules.Config) (digest string) {
	t.Helper()
	big := *cfg
	big.BlacklistIPs = []netip.Prefix{netip.PrefixFrom(bigReloadMarker, 128)}
	for i := range bigReloadEntries {
		// Every other address, so no two entries merge into one range.
		a := netip.AddrFrom4([4]byte{10, byte(i >> 15), byte(i >> 7), byte(i << 1)})
		big.BlacklistIPs = append(big.BlacklistIPs, netip.PrefixFrom(a, 32))
	}
	if err := rules.Save(path, &big); err != nil {
		t.Fatal(err)
	}
	return rules.Digest(&big)
}

// startTestDaemon runs pfwd with opts until the test ends, and returns
// its log once it decides packets. The log is shown when the test fails.
// opts.Ready, if set, is called after the first time.
func startTestDaemon(t *testing.T, opts Options) *lockedBuffer {
	t.Helper()
	logBuf := new(lockedBuffer)
	log := slog.New(NewLineHandler(logBuf, slog.LevelInfo, false))
	ready := make(chan struct{})
	first, thenReady := true, opts.Ready
	opts.Ready = func() { // on Run's goroutine
		if first {
			close(ready)
			first = false
		} else if thenReady != nil {
			thenReady()
		}
	}
	ctx, stop := context.WithCancel(context.Background())
	ended := make(chan error, 1)
	go func() { ended <- Run(ctx, opts, log) }()
	t.Cleanup(func() {
		stop()
		select {
		case err := <-ended:
			if err != nil {
				t.Errorf("pfwd: %v", err)
			}
		case <-time.After(30 * time.Second):
			t.Error("pfwd did not stop within 30 s")
		}
		if t.Failed() {
			t.Logf("pfwd's log:\n%s", logBuf.String())
		}
	})
	select {
	case <-ready:
	case err := <-ended:
		ended <- err // for the clean-up
		t.Fatalf("pfwd did not start: %v\nlog:\n%s", err, logBuf.String())
	case <-time.After(30 * time.Second):
		t.Fatalf("pfwd not ready within 30 s; log:\n%s", logBuf.String())
	}
	return logBuf
}

// queryStatus asks pfwd for its status, allowing far more than the
// second a status must take, so a slow answer is measured, not cut off.
func queryStatus(t *testing.T, socket string) control.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	st, err := control.Query(ctx, socket)
	if err != nil {
		t.Fatalf("status: %v", err)
	}
	return st
}

// kernelSetHas reports whether the named set of pfw's table has an
// element starting at addr, as read from the kernel.
func kernelSetHas(t *testing.T, set string, addr netip.Addr) bool {
	t.Helper()
	c, err := nftables.New()
	if err != nil {
		t.Fatal(err)
	}
	s, err := c.GetSetByName(&nftables.Table{Name: nft.DefaultTable, Family: nftables.TableFamilyINet}, set)
	if err != nil {
		t.Fatalf("set %s: %v", set, err)
	}
	elems, err := c.GetSetElements(s)
	if err != nil {
		t.Fatalf("elements of set %s: %v", set, err)
	}
	for _, e := range elems {
		if !e.IntervalEnd && bytes.Equal(e.Key, addr.AsSlice()) {
			return true
		}
	}
	return false
}

// A feed update shows from its start to its end, and a snapshot is the
// caller's: it does not change with the state it was taken from.
func TestShownFeedApplying(t *testing.T) {
	var s shownState
	since := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	s.feedApplying("Feodo Tracker", since)
	snap := s.snapshot()
	if got := snap.feedsApplying["Feodo Tracker"]; !got.Equal(since) {
		t.Errorf("applying since %v, want %v", got, since)
	}
	s.feedApplied("Feodo Tracker")
	if got, ok := snap.feedsApplying["Feodo Tracker"]; !ok || !got.Equal(since) {
		t.Errorf("an earlier snapshot changed with the state: %v, %v", got, ok)
	}
	if got := s.snapshot().feedsApplying; len(got) != 0 {
		t.Errorf("still applying after the update ended: %v", got)
	}
}
