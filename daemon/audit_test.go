package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"testing"

	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/queue"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// The NFLOG listener recognises intel drops by the prefix the nft rules
// put on them; the two packages must agree on it.
func TestKernelDropPrefixesAgree(t *testing.T) {
	if got, want := queue.PrefixIntel, nft.LogPrefix(nft.Intel); got != want {
		t.Errorf("queue.PrefixIntel = %q, nft logs intel drops as %q", got, want)
	}
	if got, want := queue.PrefixRateLimit, nft.GuardLogPrefix; got != want {
		t.Errorf("queue.PrefixRateLimit = %q, nft logs the guard's drops as %q", got, want)
	}
}

func TestPacketHashIsFNV1a(t *testing.T) {
	// FNV-1a 64 of "a", from the reference.
	if got := packetHash([]byte("a")); got != 0xaf63dc4c8601ec8c {
		t.Errorf("packetHash(a) = %x", got)
	}
	if packetHash([]byte{1, 2}) == packetHash([]byte{2, 1}) {
		t.Errorf("packetHash ignores byte order")
	}
}

// The auditor runs on the queue workers for every packet: once a reason
// has been seen and its log lines are used up, it allocates nothing.
func TestAuditorDoesNotAllocate(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := rules.Parse([]byte(`{"rules": [{"name": "telnet", "action": "block", "protocol": "tcp", "ports": [23]}], "allowed_sample_rate": 1}`))
	if err != nil {
		t.Fatal(err)
	}
	e := verdict.NewEngine(verdict.Compile(cfg))
	w := st.NewWriter(store.WriterConfig{Buffer: 16})
	a := newAuditor(e, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, port := range []uint16{23, 22} {
		p := verdict.Packet{Status: verdict.StatusOK, Version: 4, Proto: verdict.ProtoTCP, HasPorts: true,
			Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SrcPort: 40000, DstPort: port, TCPFlags: verdict.TCPSyn}
		d := e.Decide(&p, rules.DirIn)
		payload := make([]byte, 60)
		for range 10 { // first sight of the reason, and the sampler's burst of log lines
			a.Decided(&p, rules.DirIn, d, payload)
		}
		if allocs := testing.AllocsPerRun(200, func() { a.Decided(&p, rules.DirIn, d, payload) }); allocs != 0 {
			t.Errorf("auditor, %s: %v allocs per packet, want 0", d.Reason, allocs)
		}
	}
}
