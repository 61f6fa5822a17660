package nft

import (
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"sync"
	"testing"
)

// veth links the namespaces fw (10.99.0.1, fd99::1) and peer (10.99.0.2,
// fd99::2).
func veth(t *testing.T, fw, peer *testNetNS) {
	t.Helper()
	// The links are made inside the test's namespaces, and named after the
	// test process all the same (IFNAMSIZ leaves no room for the test name).
	link := fmt.Sprintf("p%d-%d", os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "link", "add", link+"a", "netns", fw.name, "type", "veth",
		"peer", "name", link+"b", "netns", peer.name).CombinedOutput(); err != nil {
		t.Fatalf("ip link add: %v: %s", err, out)
	}
	for _, side := range []struct {
		ns   *testNetNS
		dev  string
		host string
	}{{fw, link + "a", "1"}, {peer, link + "b", "2"}} {
		side.ns.run(t, "ip", "addr", "add", "10.99.0."+side.host+"/24", "dev", side.dev)
		side.ns.run(t, "ip", "addr", "add", "fd99::"+side.host+"/64", "dev", side.dev, "nodad")
		side.ns.run(t, "ip", "link", "set", side.dev, "up")
	}
}

// reachable pings across the veth both ways (input and output chain of
// the firewall's namespace), over IPv4 and IPv6, and reports which got an
// answer.
func reachable(fw, peer *testNetNS) map[string]bool {
	pings := []struct {
		name string
		from *testNetNS
		to   string
	}{
		{"in v4", peer, "10.99.0.1"}, {"in v6", peer, "fd99::1"},
		{"out v4", fw, "10.99.0.2"}, {"out v6", fw, "fd99::2"},
	}
	got := make(map[string]bool)
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, p := range pings {
		wg.Go(func() {
			_, err := p.from.try("ping", "-c1", "-W0.5", p.to)
			mu.Lock()
			got[p.name] = err == nil
			mu.Unlock()
		})
	}
	wg.Wait()
	return got
}

type packetStep struct {
	name string
	sets map[List][]netip.Prefix
	pass bool // the pings get answers
}

func TestPacketVerdicts(t *testing.T) {
	fwNS, peer := newNetNS(t), newNetNS(t)
	veth(t, fwNS, peer)
	peerHost := prefixes("10.99.0.2", "fd99::2")
	none := map[List][]netip.Prefix{Whitelist: nil, Blacklist: nil, Intel: nil}

	// No queue reader runs: queued packets pass or drop by the bypass flag.
	for _, phase := range []struct {
		name  string
		cfg   Config
		steps []packetStep
	}{
		{"fail-closed", Config{FailClosed: true}, []packetStep{
			{"queued, no reader: dropped", none, false},
			{"whitelisted: accepted in the kernel", map[List][]netip.Prefix{Whitelist: peerHost}, true},
			{"whitelist beats blacklist", map[List][]netip.Prefix{Whitelist: peerHost, Blacklist: peerHost}, true},
		}},
		{"fail-open", Config{}, []packetStep{
			{"queued, no reader: bypassed", none, true},
			{"blacklisted: dropped", map[List][]netip.Prefix{Blacklist: peerHost}, false},
			{"threat-listed: dropped", map[List][]netip.Prefix{Blacklist: nil, Intel: peerHost}, false},
			{"listed in a wider prefix", map[List][]netip.Prefix{Intel: prefixes("10.99.0.0/16", "fd99::/16")}, false},
			{"unlisted again", none, true},
		}},
		{"other interface", Config{FailClosed: true, Ifaces: []string{"pfwnosuch0"}}, []packetStep{
			{"not filtered even fail-closed", map[List][]netip.Prefix{Blacklist: peerHost}, true},
		}},
	} {
		phase.cfg.NetNS = fwNS.fd
		fw, err := Open(phase.cfg)
		if err != nil {
			t.Fatalf("%s: %v", phase.name, err)
		}
		for _, st := range phase.steps {
			if err := fw.UpdateSets(st.sets); err != nil {
				t.Fatalf("%s: %s: %v", phase.name, st.name, err)
			}
			for dir, ok := range reachable(fwNS, peer) {
				if ok != st.pass {
					t.Errorf("%s: %s: ping %s answered = %v, want %v", phase.name, st.name, dir, ok, st.pass)
				}
			}
		}
		if err := fw.Remove(); err != nil {
			t.Fatal(err)
		}
	}
}
