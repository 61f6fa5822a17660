package daemon

import (
	"net/netip"
	"os/exec"
	"runtime"
	"slices"
	"testing"
	"time"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"
	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/rules"
)

// A rule change cuts the open flows of this host that the new rules block,
// judged as pfw's chains saw them (after DNAT), and leaves alone the flows
// the host forwards, which pass no chain of pfw's: a VM's masqueraded
// connection and a container's published port must survive any edit.
func TestCutBlockedFlowsLeavesForwardedFlows(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	hostAddress(t) // 10.99.0.1/24
	opts := testOptions(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"]}`)
	cfgPath := opts.ConfigPath
	d, _ := startedDaemon(t, opts)

	c, err := conntrack.Dial(&netlink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	addr := netip.MustParseAddr
	host, client := addr("10.99.0.1"), addr("10.99.0.2")
	flow := func(proto uint8, src netip.Addr, sport uint16, dst netip.Addr, dport uint16) conntrack.Flow {
		return conntrack.NewFlow(proto, 0, src, dst, sport, dport, 120, 0)
	}
	natTo := func(f conntrack.Flow, to netip.Addr, port uint16) conntrack.Flow {
		f.TupleReply.IP.SourceAddress, f.TupleReply.Proto.SourcePort = to, port
		return f
	}
	type entry struct {
		what string
		flow conntrack.Flow
		cut  bool
	}
	entries := []entry{
		{"SMB to the host", flow(unix.IPPROTO_TCP, client, 40000, host, 445), true},
		{"SSH to the host", flow(unix.IPPROTO_TCP, client, 40001, host, 22), false},
		{"a VM's SMB, masqueraded through the host", flow(unix.IPPROTO_TCP, addr("192.168.122.10"), 50000, addr("10.0.0.20"), 445), false},
		{"a container's published port, DNAT to SMB", natTo(flow(unix.IPPROTO_TCP, client, 40002, host, 8445), addr("172.17.0.2"), 445), false},
		{"a port redirected to the host's telnet", natTo(flow(unix.IPPROTO_TCP, client, 40003, host, 80), host, 23), true},
		{"NetBIOS to the subnet's broadcast", flow(unix.IPPROTO_UDP, client, 137, addr("10.99.0.255"), 137), true},
		{"this host's telnet to a stub resolver's address on lo", flow(unix.IPPROTO_TCP, host, 40004, addr("127.0.0.53"), 23), false},
	}
	for _, e := range entries {
		if err := c.Create(e.flow); err != nil {
			t.Fatalf("create conntrack entry for %s: %v", e.what, err)
		}
	}

	if err := rules.Save(cfgPath, parseConfig(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"], "rules": [
		{"name": "Block SMB and telnet", "action": "block", "protocol": "tcp", "ports": [23, 445]},
		{"name": "No telnet out", "action": "block", "protocol": "tcp", "ports": [23], "direction": "out"},
		{"name": "Block NetBIOS", "action": "block", "protocol": "udp", "ports": [137]}]}`)); err != nil {
		t.Fatal(err)
	}
	d.Reload(reloadSIGHUP) // applies the rules, then cuts

	left, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		kept := slices.ContainsFunc(left, func(f conntrack.Flow) bool { return f.TupleOrig == e.flow.TupleOrig })
		if kept == e.cut {
			t.Errorf("%s: cut %v, want %v", e.what, !kept, e.cut)
		}
	}
}

// Status shows a change in force, which is what fwctl waits for, only once
// the open flows it blocks are cut: a packet sent right after fwctl
// returned used to find its flow still open now and then.
func TestStatusShowsAChangeOnceItsFlowsAreCut(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	hostAddress(t) // 10.99.0.1/24
	opts := testOptions(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"]}`)
	d, _ := startedDaemon(t, opts)
	c, err := conntrack.Dial(&netlink.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	// Many flows, so that the cut takes a while.
	const flows = 3000
	for i := range flows {
		f := conntrack.NewFlow(unix.IPPROTO_UDP, 0, netip.AddrFrom4([4]byte{10, 99, 0, byte(2 + i%200)}), netip.MustParseAddr("10.99.0.1"),
			uint16(20000+i), 9000, 120, 0)
		if err := c.Create(f); err != nil {
			t.Fatalf("create conntrack entry %d: %v", i, err)
		}
	}
	cfg := parseConfig(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"],
		"rules": [{"name": "Block 9000", "action": "block", "protocol": "udp", "ports": [9000]}]}`)
	if err := rules.Save(opts.ConfigPath, cfg); err != nil {
		t.Fatal(err)
	}
	want := rules.Digest(cfg)
	done := make(chan struct{})
	go func() { defer close(done); d.Reload(reloadSIGHUP) }()
	deadline := time.Now().Add(10 * time.Second)
	for d.shown.snapshot().digest != want {
		if time.Now().After(deadline) {
			t.Fatal("the change never showed in status")
		}
		runtime.Gosched()
	}
	left, err := c.Dump(nil)
	if err != nil {
		t.Fatal(err)
	}
	open := 0
	for _, f := range left {
		if f.TupleOrig.Proto.DestinationPort == 9000 {
			open++
		}
	}
	if open > 0 {
		t.Errorf("status showed the change with %d of %d flows it blocks still open", open, flows)
	}
	<-done
}

// hostAddress gives the fresh namespace the host address the flows in
// these tests go to, 10.99.0.1/24, on a veth.
func hostAddress(t *testing.T) {
	t.Helper()
	for _, args := range [][]string{
		{"link", "add", "pfwcut0", "type", "veth", "peer", "name", "pfwcut1"},
		{"addr", "add", "10.99.0.1/24", "dev", "pfwcut0"},
		{"link", "set", "pfwcut0", "up"},
	} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			t.Fatalf("ip %v: %v: %s", args, err, out)
		}
	}
}
