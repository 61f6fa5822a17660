package daemon

import (
	"net"
	"testing"
)

func TestHostAddrsLeavesOutLoopback(t *testing.T) {
	addrs := hostAddrs()
	for _, a := range addrs {
		if a.IsLoopback() || a.Is4In6() {
			t.Errorf("hostAddrs has %v", a)
		}
	}
	// Every non-loopback interface address is there.
	ifAddrs, err := net.InterfaceAddrs()
	if err != nil {
		t.Skip(err)
	}
	want := 0
	for _, a := range ifAddrs {
		if ipn, ok := a.(*net.IPNet); ok && !ipn.IP.IsLoopback() {
			want++
		}
	}
	if len(addrs) != want {
		t.Errorf("hostAddrs = %v, want the %d non-loopback addresses of %v", addrs, want, ifAddrs)
	}
}
