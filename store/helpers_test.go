package store

import (
	"bytes"
	"context"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// t0 is the tests' reference time: not UTC on purpose, so that the UTC
// conversion is exercised.
var t0 = time.Date(2026, 11, 25, 16, 4, 5, 123_000_000, time.FixedZone("CET", 3600))

// openTemp opens a fresh database in a directory Open has to create.
func openTemp(t testing.TB) *Store {
	t.Helper()
	s, err := Open(filepath.Join(t.TempDir(), "var", "lib", "firewall.db"))
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("Close: %v", err)
		}
	})
	return s
}

// startWriter runs a Writer until the test ends and checks Run's result.
// The clock, when given, replaces time.Now before Run starts; so do the
// setup functions whatever else a test needs set.
func startWriter(t testing.TB, s *Store, cfg WriterConfig, clock *fakeClock, setup ...func(*Writer)) *Writer {
	t.Helper()
	w := s.NewWriter(cfg)
	if clock != nil {
		w.now = clock.now
	}
	for _, f := range setup {
		f(w)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Run: %v", err)
		}
	})
	return w
}

func flush(t testing.TB, w *Writer) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err != nil {
		t.Fatalf("Flush: %v", err)
	}
}

// fakeClock is a clock tests move by hand; Run reads it from its own
// goroutine, hence the atomic.
type fakeClock struct{ ns atomic.Int64 }

func newFakeClock(t time.Time) *fakeClock {
	c := &fakeClock{}
	c.ns.Store(t.UnixNano())
	return c
}

func (c *fakeClock) now() time.Time      { return time.Unix(0, c.ns.Load()) }
func (c *fakeClock) add(d time.Duration) { c.ns.Add(int64(d)) }
func (c *fakeClock) set(t time.Time)     { c.ns.Store(t.UnixNano()) }

// count returns the number of rows in a table.
func count(t testing.TB, s *Store, table string) int64 {
	t.Helper()
	var n int64
	if err := s.read.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatalf("count %s: %v", table, err)
	}
	return n
}

// tcpRow is a blocked TCP row from src to dst:23 at at.
func tcpRow(at time.Time, src, dst string, reason string) Row {
	return Row{
		Time: at, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr(dst),
		SrcPort: 40000, DstPort: 23, HasPorts: true, Proto: 6,
		Reason: reason, Hash: 0xabc,
	}
}

// checkMovedAside checks that s moved the file at path aside, keeping
// want's bytes, for a reason that says why (any reason when why is "").
func checkMovedAside(t *testing.T, s *Store, path string, want []byte, why string) (aside string) {
	t.Helper()
	aside = s.MovedAside()
	if !strings.HasPrefix(aside, path+".corrupt-") {
		t.Fatalf("MovedAside = %q, want %s.corrupt-<time>", aside, path)
	}
	if got := s.MovedAsideReason(); !strings.Contains(got, why) {
		t.Errorf("MovedAsideReason = %q, want it to say %q", got, why)
	}
	if got, err := os.ReadFile(aside); err != nil || !bytes.Equal(got, want) {
		t.Errorf("the moved-aside file: err %v, same bytes as before: %v", err, bytes.Equal(got, want))
	}
	return aside
}
