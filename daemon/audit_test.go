package daemon

import (
	"context"
	"io"
	"log/slog"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"
	"time"

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

// The per-reason counts (fwctl stats, pfw_packets_total) keep no series
// for rules the config no longer has: rule churn must not grow them
// without end. Other reasons, and the rules still there, keep counting.
func TestAuditorForgetsRemovedRules(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	parse := func(doc string) *rules.Config {
		t.Helper()
		cfg, err := rules.Parse([]byte(doc))
		if err != nil {
			t.Fatal(err)
		}
		return cfg
	}
	before := parse(`{"rules": [{"name": "a", "action": "block", "protocol": "tcp", "ports": [23]},
		{"name": "b", "action": "block", "protocol": "tcp", "ports": [24]}]}`)
	e := verdict.NewEngine(verdict.Compile(before))
	a := newAuditor(e, st.NewWriter(store.WriterConfig{Buffer: 16}), slog.New(slog.NewTextHandler(io.Discard, nil)))
	for _, port := range []uint16{23, 24, 25} {
		p := verdict.Packet{Status: verdict.StatusOK, Version: 4, Proto: verdict.ProtoTCP, HasPorts: true,
			Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SrcPort: 40000, DstPort: port, TCPFlags: verdict.TCPSyn}
		a.Decided(&p, rules.DirIn, e.Decide(&p, rules.DirIn), nil)
	}
	a.forgetRemovedRules(parse(`{"rules": [{"name": "a", "action": "block", "protocol": "tcp", "ports": [23]}]}`))
	var got []string
	for _, r := range a.reasons() {
		got = append(got, r.Reason)
	}
	if want := []string{"Default policy", "Rule: a"}; !slices.Equal(got, want) {
		t.Errorf("reasons after rule b went: %q, want %q", got, want)
	}
}

// A row is stamped when its packet was decided, not when the writer
// takes it off its queue, which under load holds rows for a while.
func TestAuditorStampsRowsWhenDecided(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "fw.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	cfg, err := rules.Parse([]byte(`{"rules": [{"name": "telnet", "action": "block", "protocol": "tcp", "ports": [23]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	e := verdict.NewEngine(verdict.Compile(cfg))
	w := st.NewWriter(store.WriterConfig{Buffer: 16})
	a := newAuditor(e, w, slog.New(slog.NewTextHandler(io.Discard, nil)))
	p := verdict.Packet{Status: verdict.StatusOK, Version: 4, Proto: verdict.ProtoTCP, HasPorts: true,
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SrcPort: 40000, DstPort: 23, TCPFlags: verdict.TCPSyn}
	before := time.Now().UTC().Truncate(time.Millisecond)
	a.Decided(&p, rules.DirIn, e.Decide(&p, rules.DirIn), make([]byte, 40))
	decided := time.Now()
	time.Sleep(500 * time.Millisecond) // the writer is busy elsewhere

	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	if err := w.Flush(ctx); err != nil {
		t.Fatal(err)
	}
	rows, err := st.Logs(ctx, store.LogQuery{Table: "blocked"})
	if err != nil || len(rows) != 1 {
		t.Fatalf("Logs = %v, %v; want one row", rows, err)
	}
	stamp, err := time.Parse("2006-01-02 15:04:05.000", rows[0].Timestamp)
	if err != nil {
		t.Fatal(err)
	}
	if stamp.Before(before) || stamp.After(decided.Add(100*time.Millisecond)) {
		t.Errorf("row stamped %s; the packet was decided between %s and %s", rows[0].Timestamp,
			before.Format(time.StampMilli), decided.UTC().Format(time.StampMilli))
	}
}

// BenchmarkAuditorParallel is the auditor on every worker at once, as under
// a flood of allowed new flows: what the workers share is what costs.
func BenchmarkAuditorParallel(b *testing.B) {
	st, err := store.Open(filepath.Join(b.TempDir(), "fw.db"))
	if err != nil {
		b.Fatal(err)
	}
	defer st.Close()
	e := verdict.NewEngine(verdict.Compile(&rules.Config{DefaultPolicy: rules.ActionAllow}))
	a := newAuditor(e, st.NewWriter(store.WriterConfig{Buffer: 16}), slog.New(slog.DiscardHandler))
	p := verdict.Packet{Status: verdict.StatusOK, Version: 4, Proto: verdict.ProtoUDP, HasPorts: true,
		Src: netip.MustParseAddr("192.0.2.1"), Dst: netip.MustParseAddr("192.0.2.2"), SrcPort: 40000, DstPort: 53}
	d := e.Decide(&p, rules.DirIn)
	payload := make([]byte, 60)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			a.Decided(&p, rules.DirIn, d, payload)
		}
	})
}
