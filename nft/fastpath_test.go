package nft

import (
	"context"
	"errors"
	"net/netip"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
)

// labelled returns, per label bit of the fast path, how many conntrack
// entries of ns carry it.
func labelled(t *testing.T, ns *testNetNS) map[int]int {
	t.Helper()
	c, err := conntrack.Dial(&netlink.Config{NetNS: ns.fd})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	flows, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	out := map[int]int{}
	for _, f := range flows {
		for _, bit := range labelBits {
			if hasLabel(f.Labels, bit) {
				out[bit]++
			}
		}
	}
	return out
}

var pingReceived = regexp.MustCompile(`(\d+) received`)

// pingDuring pings the firewall's namespace from peer 25 times, 100 ms
// apart (one ICMP flow: one conntrack entry), calls during 800 ms in, and
// returns how many echoes were answered.
func pingDuring(t *testing.T, peer *testNetNS, during func()) int {
	t.Helper()
	out := make(chan string, 1)
	go func() {
		s, _ := peer.try("ping", "-c", "25", "-i", "0.1", "-W", "1", "10.99.0.1")
		out <- s
	}()
	time.Sleep(800 * time.Millisecond)
	during()
	s := <-out
	m := pingReceived.FindStringSubmatch(s)
	if m == nil {
		t.Fatalf("ping output without a count:\n%s", s)
	}
	n, _ := strconv.Atoi(m[1])
	return n
}

// TestFastPath: established flows checked against the lists skip them,
// yet listing an address stops its open flow at once, also when the flow
// was labelled by an earlier Firewall.
func TestFastPath(t *testing.T) {
	fwNS, peer := newNetNS(t), newNetNS(t)
	veth(t, fwNS, peer)
	peerHost := prefixes("10.99.0.2", "fd99::2")
	fw, err := Open(Config{NetNS: fwNS.fd}) // fail open, no reader: new flows pass
	if err != nil {
		t.Fatal(err)
	}
	defer func() { fw.Remove() }()
	if on, off := fw.FastPath(); !on {
		t.Fatalf("fast path off: %v", off)
	}
	bit := labelBits[fw.fast.gen]

	// An open flow is labelled; a list change that does not concern it
	// does not disturb it.
	got := pingDuring(t, peer, func() {
		if err := fw.UpdateSets(map[List][]netip.Prefix{Intel: prefixes("192.0.2.1")}); err != nil {
			t.Fatal(err)
		}
	})
	if got != 25 {
		t.Errorf("an unrelated list change: %d of 25 pings answered, want all", got)
	}
	if l := labelled(t, fwNS); l[labelBits[fw.fast.gen]] == 0 {
		t.Errorf("no conntrack entry carries the bit in force (%d): %v", labelBits[fw.fast.gen], l)
	}

	// Blacklisting the peer stops its labelled flow with the next packet.
	got = pingDuring(t, peer, func() {
		if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: peerHost}); err != nil {
			t.Fatal(err)
		}
	})
	if got < 3 || got > 12 {
		t.Errorf("blacklisted 0.8 s into 25 pings 0.1 s apart: %d answered, want those before only", got)
	}
	// The old bit is cleared from conntrack soon after.
	old := labelBits[1-fw.fast.gen]
	if old == bit {
		t.Fatalf("two switches, yet the bit in force is the first one")
	}
	deadline := time.Now().Add(2 * time.Second)
	for labelled(t, fwNS)[old] > 0 && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if l := labelled(t, fwNS); l[old] > 0 {
		t.Errorf("the bit out of force (%d) still labels %d entries", old, l[old])
	}
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: nil}); err != nil {
		t.Fatal(err)
	}
	for dir, ok := range reachable(fwNS, peer) {
		if !ok {
			t.Errorf("unlisted again: ping %s got no answer", dir)
		}
	}

	// A flow labelled by this Firewall meets the lists of the next one:
	// a restart that blacklists the peer stops it.
	got = pingDuring(t, peer, func() {
		if err := fw.Close(); err != nil {
			t.Fatal(err)
		}
		if fw, err = Open(Config{NetNS: fwNS.fd, InitialSets: map[List][]netip.Prefix{Blacklist: peerHost}}); err != nil {
			t.Fatal(err)
		}
	})
	if got < 3 || got > 14 {
		t.Errorf("restarted with the peer blacklisted 0.8 s into 25 pings: %d answered, want those before only", got)
	}
}

// Without the fast path the lists are checked for every packet, and the
// same change stops the flow as well.
func TestNoFastPath(t *testing.T) {
	fwNS, peer := newNetNS(t), newNetNS(t)
	veth(t, fwNS, peer)
	fw, err := Open(Config{NetNS: fwNS.fd, DisableFastPath: true})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Remove()
	if on, _ := fw.FastPath(); on {
		t.Fatal("fast path on, though disabled")
	}
	got := pingDuring(t, peer, func() {
		if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: prefixes("10.99.0.2")}); err != nil {
			t.Fatal(err)
		}
	})
	if got < 3 || got > 12 {
		t.Errorf("blacklisted 0.8 s into 25 pings: %d answered, want those before only", got)
	}
	if l := labelled(t, fwNS); len(l) != 0 {
		t.Errorf("conntrack entries labelled without the fast path: %v", l)
	}
}

// When the retired bit cannot be cleared, the next list change takes the
// fast path out in its own transaction, and says why.
func TestFastPathOffWhenClearFails(t *testing.T) {
	fwNS, peer := newNetNS(t), newNetNS(t)
	veth(t, fwNS, peer)
	fw, err := Open(Config{NetNS: fwNS.fd})
	if err != nil {
		t.Fatal(err)
	}
	defer fw.Remove()
	clearLabelFn = func(context.Context, int, int) (int, error) { return 0, errors.New("ctnetlink says no") }
	defer func() { clearLabelFn = clearLabel }()

	// This change switches bits, and the clear of the retired one fails.
	if err := fw.UpdateSets(map[List][]netip.Prefix{Intel: prefixes("192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	// So this one must not switch back to it.
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: prefixes("10.99.0.2", "fd99::2")}); err != nil {
		t.Fatal(err)
	}
	on, why := fw.FastPath()
	if on || why == nil || !strings.Contains(why.Error(), "ctnetlink says no") {
		t.Errorf("FastPath() = %v, %v; want off, saying why", on, why)
	}
	if rs := fwNS.run(t, "nft", "list", "ruleset"); strings.Contains(rs, fastComment) {
		t.Errorf("the fast-path rule is still there:\n%s", rs)
	}
	for dir, ok := range reachable(fwNS, peer) {
		if ok {
			t.Errorf("blacklisted: ping %s answered", dir)
		}
	}
	// Further changes work without it.
	if err := fw.UpdateSets(map[List][]netip.Prefix{Blacklist: nil}); err != nil {
		t.Fatal(err)
	}
	for dir, ok := range reachable(fwNS, peer) {
		if !ok {
			t.Errorf("unlisted: ping %s got no answer", dir)
		}
	}
}

// Close ends a running clear of the retired bit rather than waiting for
// its walk through the conntrack table, and the clear is told why.
func TestCloseStopsRunningClear(t *testing.T) {
	fw := openWithEndlessClear(t)
	closed := make(chan error, 1)
	go func() { closed <- fw.Remove() }()
	select {
	case err := <-closed:
		if err != nil {
			t.Errorf("Remove: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Remove waited for the running clear")
	}
	if !errors.Is(fw.fast.clearErr, context.Canceled) {
		t.Errorf("the clear ended with %v, want context.Canceled", fw.fast.clearErr)
	}
}

// Stop, which takes no lock, ends a clear that a list change waits for
// under fw's lock: a stop is not held up by a reload or feed update stuck
// behind a walk through a table a flood filled. The change goes on, with
// the fast path off since the clear did not finish.
func TestStopEndsAListChangeWaitingForTheClear(t *testing.T) {
	fw := openWithEndlessClear(t)
	defer fw.Remove()
	second := make(chan error, 1)
	go func() { second <- fw.UpdateSets(map[List][]netip.Prefix{Intel: prefixes("192.0.2.2")}) }()
	select {
	case err := <-second:
		t.Fatalf("the second change did not wait for the running clear: %v", err)
	case <-time.After(200 * time.Millisecond):
	}
	fw.Stop()
	select {
	case err := <-second:
		if err != nil {
			t.Errorf("the change after Stop: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the change still waits for the clear after Stop")
	}
	if on, why := fw.FastPath(); on || why == nil {
		t.Errorf("FastPath() = %v, %v; want off, the clear being unfinished", on, why)
	}
}

// openWithEndlessClear opens a Firewall whose clears of a retired label
// bit run until their context ends, as a walk through a table a flood
// filled would, and makes a list change that starts one; it returns once
// the clear runs.
func openWithEndlessClear(t *testing.T) *Firewall {
	t.Helper()
	fw, err := Open(Config{NetNS: newNetNS(t).fd})
	if err != nil {
		t.Fatal(err)
	}
	started := make(chan struct{}, 1)
	clearLabelFn = func(ctx context.Context, _, _ int) (int, error) {
		started <- struct{}{}
		<-ctx.Done()
		return 0, ctx.Err()
	}
	t.Cleanup(func() { clearLabelFn = clearLabel })
	if err := fw.UpdateSets(map[List][]netip.Prefix{Intel: prefixes("192.0.2.1")}); err != nil {
		t.Fatal(err)
	}
	<-started
	return fw
}

// OpenContext's context ends the walks of Open itself: a stop during the
// start does not wait for the first clear. The table is installed, with
// the fast path off.
func TestOpenContextEndsTheFirstClear(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	clearLabelFn = func(ctx context.Context, _, _ int) (int, error) {
		<-ctx.Done() // a walk through a table a flood filled
		return 0, ctx.Err()
	}
	defer func() { clearLabelFn = clearLabel }()
	ns := newNetNS(t)
	opened := make(chan error, 1)
	var fw *Firewall
	go func() {
		var err error
		fw, err = OpenContext(ctx, Config{NetNS: ns.fd, Ifaces: []string{"pfwx0"}})
		opened <- err
	}()
	select {
	case err := <-opened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("OpenContext waited for its clear after its context ended")
	}
	defer fw.Remove()
	if on, why := fw.FastPath(); on || why == nil {
		t.Errorf("FastPath() = %v, %v; want off, its first clear unfinished", on, why)
	}
}
