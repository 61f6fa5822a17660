package store

import (
	"context"
	"errors"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestWriterCapCountsExcessPerReason(t *testing.T) {
	s := openTemp(t)
	clock := newFakeClock(t0)
	// FlushEvery is long so that only Flush commits and the test decides
	// what each batch holds.
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: 3, FlushEvery: time.Hour}, clock)

	for range 4 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	w.Blocked(tcpRow(t0, "203.0.113.8", "10.0.0.1", "Blacklisted IP"))
	w.Allowed(tcpRow(t0, "198.51.100.1", "10.0.0.1", "Default policy"))
	flush(t, w)
	if b, a := count(t, s, "blocked_packets"), count(t, s, "allowed_packets"); b != 3 || a != 0 {
		t.Errorf("after 6 rows in one second with a cap of 3: %d blocked and %d allowed rows written, want 3 and 0", b, a)
	}

	// The next second has room again. (The cap counts by the rows'
	// stamps, the second their packets were decided.)
	clock.add(time.Second)
	w.Allowed(tcpRow(t0.Add(time.Second), "198.51.100.1", "10.0.0.1", "Default policy"))
	flush(t, w)
	if a := count(t, s, "allowed_packets"); a != 1 {
		t.Errorf("next second: %d allowed rows, want 1", a)
	}

	wantSupp := []SuppressedCount{
		{Type: "allowed", Reason: "Default policy", Count: 1},
		{Type: "blocked", Reason: "Blacklisted IP", Count: 1},
		{Type: "blocked", Reason: "Rule: Telnet", Count: 1},
	}
	st := w.Stats()
	if diff := cmp.Diff(wantSupp, st.SuppressedBy); diff != "" {
		t.Errorf("WriterStats.SuppressedBy (-want +got):\n%s", diff)
	}
	if st.Suppressed != 3 || st.Blocked != 3 || st.Allowed != 1 || st.Batches != 2 {
		t.Errorf("WriterStats %+v: want 3 suppressed, 3 blocked, 1 allowed, 2 batches", st)
	}
	stats, err := s.Stats(context.Background(), t0)
	if err != nil {
		t.Fatal(err)
	}
	if diff := cmp.Diff(wantSupp, stats.Suppressed); diff != "" {
		t.Errorf("Stats.Suppressed from log_suppressed (-want +got):\n%s", diff)
	}
	var hour string
	if err := s.read.QueryRow("SELECT DISTINCT hour FROM log_suppressed").Scan(&hour); err != nil {
		t.Fatal(err)
	}
	if hour != "2026-11-25 15:00" {
		t.Errorf("log_suppressed.hour = %q, want the UTC hour of the clock, 2026-11-25 15:00", hour)
	}
}

// TestWriterFloodKeepsCap floods a writer with a small cap on the real
// clock: it must keep committing during the flood, write no more than the
// cap per second, and account for every row it did not write.
func TestWriterFloodKeepsCap(t *testing.T) {
	s := openTemp(t)
	const limit = 100
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: limit, FlushEvery: 20 * time.Millisecond, Buffer: 256}, nil)
	row := tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rate limited")
	start := time.Now()
	var produced uint64
	committedDuringFlood := false
	for time.Since(start) < 1200*time.Millisecond {
		for range 1000 {
			w.Blocked(row)
			produced++
		}
		if !committedDuringFlood && time.Since(start) > 600*time.Millisecond {
			committedDuringFlood = count(t, s, "blocked_packets") > 0
		}
		runtime.Gosched()
	}
	flush(t, w)
	st := w.Stats()
	// 1.2 s touch at most 3 distinct wall-clock seconds.
	if st.Blocked < limit || st.Blocked > 3*limit {
		t.Errorf("%d rows written in 1.2 s with a cap of %d/s", st.Blocked, limit)
	}
	if st.Blocked+st.Suppressed != produced {
		t.Errorf("written %d + suppressed %d != %d rows produced", st.Blocked, st.Suppressed, produced)
	}
	if !committedDuringFlood {
		t.Error("nothing committed in the first 600 ms of the flood")
	}
	var logged int64
	if err := s.read.QueryRow(`SELECT sum(count) FROM log_suppressed WHERE reason = 'Rate limited'`).Scan(&logged); err != nil {
		t.Fatal(err)
	}
	if uint64(logged) != st.Suppressed {
		t.Errorf("log_suppressed holds %d, WriterStats.Suppressed %d", logged, st.Suppressed)
	}
	t.Logf("%d rows produced, %d written, %d suppressed", produced, st.Blocked, st.Suppressed)
}

func TestWriterFullBufferCountsAndNeverBlocks(t *testing.T) {
	s := openTemp(t)
	w := s.NewWriter(WriterConfig{Buffer: 4, MaxRowsPerSecond: -1, FlushEvery: time.Hour})
	var accepted []bool
	for i := range 7 {
		reason := "Rule: Telnet"
		if i == 6 {
			reason = "Rate limited"
		}
		accepted = append(accepted, w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", reason)))
	}
	if want := []bool{true, true, true, true, false, false, false}; !cmp.Equal(accepted, want) {
		t.Errorf("Blocked returned %v with no reader and a buffer of 4, want %v", accepted, want)
	}
	want := []SuppressedCount{{"blocked", "Rule: Telnet", 2}, {"blocked", "Rate limited", 1}}
	if diff := cmp.Diff(want, w.Stats().SuppressedBy); diff != "" {
		t.Errorf("SuppressedBy (-want +got):\n%s", diff)
	}
	if q := w.Stats().Queued; q != 4 {
		t.Errorf("Queued = %d, want 4", q)
	}

	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	flush(t, w)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if n := count(t, s, "blocked_packets"); n != 4 {
		t.Errorf("%d rows written, want the 4 buffered", n)
	}
	var total int64
	if err := s.read.QueryRow("SELECT sum(count) FROM log_suppressed").Scan(&total); err != nil {
		t.Fatal(err)
	}
	if total != 3 {
		t.Errorf("log_suppressed holds %d, want 3", total)
	}
}

func TestWriterRunFlushesOnCancel(t *testing.T) {
	s := openTemp(t)
	w := s.NewWriter(WriterConfig{MaxRowsPerSecond: -1, FlushEvery: time.Hour, MaxBatch: 100_000})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	for range 10 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Run: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	if n := count(t, s, "blocked_packets"); n != 10 {
		t.Errorf("%d rows after cancel, want 10", n)
	}
	if err := w.Flush(context.Background()); !errors.Is(err, errWriterStopped) {
		t.Errorf("Flush after Run returned: %v, want errWriterStopped", err)
	}
	if err := w.Run(context.Background()); err == nil {
		t.Error("second Run succeeded")
	}
}

func TestWriterSplitsBatches(t *testing.T) {
	s := openTemp(t)
	w := s.NewWriter(WriterConfig{MaxRowsPerSecond: -1, FlushEvery: time.Hour, MaxBatch: 100, Buffer: 1000})
	for range 250 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go w.Run(ctx)
	flush(t, w)
	st := w.Stats()
	if st.Blocked != 250 || st.Batches != 3 {
		t.Errorf("250 rows with MaxBatch 100: %d written in %d batches, want 250 in 3", st.Blocked, st.Batches)
	}
}

func TestWriterRowEncoding(t *testing.T) {
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{}, nil)
	w.Blocked(Row{
		Time: t0, Src: netip.MustParseAddr("2001:db8::1"), Dst: netip.MustParseAddr("2001:db8::2"),
		Proto: 58, Reason: "Blacklisted IP", Hash: 0x00c0ffee,
	})
	w.Blocked(Row{
		Time: t0, Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("10.0.0.1"),
		SrcPort: 0, DstPort: 53, HasPorts: true, Proto: 17, Reason: "Rule: DNS", Hash: ^uint64(0), Outbound: true,
	})
	w.Blocked(Row{Time: t0, Src: netip.MustParseAddr("203.0.113.7"), Dst: netip.MustParseAddr("10.0.0.1"), Proto: 47, Reason: "Default policy"})
	flush(t, w)
	rows, err := s.Logs(context.Background(), LogQuery{Follow: true})
	if err != nil {
		t.Fatal(err)
	}
	zero, dns := 0, 53
	want := []LogRow{
		{1, "2026-11-25 15:04:05.123", "2001:db8::1", "2001:db8::2", nil, nil, "icmpv6", "Blacklisted IP", "0000000000c0ffee", "in"},
		{2, "2026-11-25 15:04:05.123", "203.0.113.7", "10.0.0.1", &zero, &dns, "udp", "Rule: DNS", "ffffffffffffffff", "out"},
		{3, "2026-11-25 15:04:05.123", "203.0.113.7", "10.0.0.1", nil, nil, "47", "Default policy", "0000000000000000", "in"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("rows (-want +got):\n%s", diff)
	}
	var nullPorts int
	if err := s.read.QueryRow("SELECT count(*) FROM blocked_packets WHERE src_port IS NULL AND dst_port IS NULL").Scan(&nullPorts); err != nil {
		t.Fatal(err)
	}
	if nullPorts != 2 {
		t.Errorf("%d rows with NULL ports, want 2 (rows without ports)", nullPorts)
	}
}

func TestProtoName(t *testing.T) {
	for p, want := range map[uint8]string{1: "icmp", 6: "tcp", 17: "udp", 58: "icmpv6", 0: "0", 47: "47", 255: "255"} {
		if got := ProtoName(p); got != want {
			t.Errorf("ProtoName(%d) = %q, want %q", p, got, want)
		}
	}
}

func TestWriterReportsFailedBatches(t *testing.T) {
	t.Run("Flush returns it", func(t *testing.T) {
		s := openTemp(t)
		w := startWriter(t, s, WriterConfig{FlushEvery: time.Hour, Retention: Retention{Every: -1}}, nil)
		// A table that has gone makes every insert fail.
		if _, err := s.write.Exec("DROP TABLE allowed_packets"); err != nil {
			t.Fatal(err)
		}
		w.Allowed(tcpRow(t0, "198.51.100.1", "10.0.0.1", "Default policy"))
		w.Allowed(tcpRow(t0, "198.51.100.1", "10.0.0.1", "Default policy"))
		if err := w.Flush(context.Background()); err == nil || !strings.Contains(err.Error(), "allowed_packets") {
			t.Errorf("Flush: %v, want an error naming allowed_packets", err)
		}
		if st := w.Stats(); st.Errors != 1 || st.Lost != 2 || st.Allowed != 0 || !strings.Contains(st.LastError, "allowed_packets") {
			t.Errorf("Errors %d, Lost %d, Allowed %d, LastError %q: want 1, 2, 0 and the error", st.Errors, st.Lost, st.Allowed, st.LastError)
		}
	})
	t.Run("OnError hears of timed batches", func(t *testing.T) {
		s := openTemp(t)
		reported := make(chan error, 10)
		w := startWriter(t, s, WriterConfig{FlushEvery: 10 * time.Millisecond, Retention: Retention{Every: -1},
			OnError: func(err error) {
				select {
				case reported <- err:
				default:
				}
			}}, nil)
		if _, err := s.write.Exec("DROP TABLE allowed_packets"); err != nil {
			t.Fatal(err)
		}
		w.Allowed(tcpRow(t0, "198.51.100.1", "10.0.0.1", "Default policy"))
		select {
		case err := <-reported:
			if !strings.Contains(err.Error(), "allowed_packets") {
				t.Errorf("OnError got %v, want an error naming allowed_packets", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("OnError not called for a failed batch")
		}
		if st := w.Stats(); st.Lost != 1 {
			t.Errorf("Lost = %d, want 1", st.Lost)
		}
	})
}

func TestEnqueueDoesNotAllocate(t *testing.T) {
	s := openTemp(t)
	row := tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet")
	w := s.NewWriter(WriterConfig{Buffer: 1000})
	if n := testing.AllocsPerRun(100, func() { w.Blocked(row) }); n != 0 {
		t.Errorf("Blocked into a buffer with room: %v allocs, want 0", n)
	}
	full := s.NewWriter(WriterConfig{Buffer: 1})
	full.Blocked(row)
	full.Blocked(row) // creates the counter for this reason
	if n := testing.AllocsPerRun(100, func() { full.Blocked(row) }); n != 0 {
		t.Errorf("Blocked into a full buffer: %v allocs, want 0", n)
	}
}

// BenchmarkWriterRows measures end-to-end logging throughput: rows queued,
// batched and committed, with no per-second cap.
func BenchmarkWriterRows(b *testing.B) {
	s := openTemp(b)
	w := s.NewWriter(WriterConfig{MaxRowsPerSecond: -1})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() { cancel(); <-done }()
	row := tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet")
	b.ReportAllocs()
	b.ResetTimer()
	start := time.Now()
	for b.Loop() {
		// A blocking send, unlike Blocked, so that the benchmark measures
		// the writer rather than how many rows a full buffer turns away.
		w.queue <- entry{row: row, log: logBlocked}
	}
	flush(b, w)
	b.ReportMetric(float64(b.N)/time.Since(start).Seconds(), "rows/s")
	if st := w.Stats(); st.Errors != 0 || st.Suppressed != 0 {
		b.Fatalf("writer stats %+v", st)
	}
}

// The cap counts rows by their stamps, the second their packets were
// decided, however late the writer takes them: a late row of a second
// already full is suppressed; a stamp far behind (a clock stepped back)
// starts the count over rather than being suppressed for good.
func TestWriterCapCountsByStamp(t *testing.T) {
	s := openTemp(t)
	clock := newFakeClock(t0)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: 2, FlushEvery: time.Hour}, clock)
	next := t0.Add(time.Second)
	late := t0.Add(-2 * time.Second)
	for _, at := range []time.Time{t0, t0, next, t0, next, next, late, next, late, t0.Add(-time.Hour), t0.Add(-time.Hour)} {
		w.Blocked(tcpRow(at, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	flush(t, w)
	// Two of each second; the third of t0 and of next suppressed, and the
	// rows 3 s late, interleaved with current ones, share the full count
	// of the second before the newest instead of each starting one.
	if b := count(t, s, "blocked_packets"); b != 6 {
		t.Errorf("%d rows written, want 6", b)
	}
	if st := w.Stats(); st.Suppressed != 5 {
		t.Errorf("%d rows suppressed, want 5", st.Suppressed)
	}
}

// A wall clock stepped back a few seconds (an RTC set right at boot while
// pfwd runs) starts the count over: the rows after it are capped per
// second again, not all together under one late second's count.
func TestWriterCapAfterAClockStepBack(t *testing.T) {
	s := openTemp(t)
	clock := newFakeClock(t0)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: 2, FlushEvery: time.Hour}, clock)
	w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	back := t0.Add(-30 * time.Second)
	clock.set(back)
	for sec := range 5 {
		at := back.Add(time.Duration(sec) * time.Second)
		clock.set(at)
		for range 3 {
			w.Blocked(tcpRow(at, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
		}
	}
	flush(t, w)
	if b := count(t, s, "blocked_packets"); b != 1+5*2 {
		t.Errorf("%d rows written, want 11: the first, then two of each of the 5 seconds after the step", b)
	}
}
