package store

import (
	"context"
	"fmt"
	"testing"
	"time"
)

func TestPrune(t *testing.T) {
	now := time.Date(2026, 11, 25, 15, 30, 0, 0, time.UTC)
	tests := []struct {
		name        string
		r           Retention
		wantBlocked []int64 // ids left
		wantAllowed int64   // rows left
		wantPruned  Pruned
	}{
		{"age only", Retention{MaxAge: 24 * time.Hour, MaxRows: -1, SuppressedMaxAge: 24 * time.Hour}, []int64{3, 4, 5, 6}, 1, Pruned{Blocked: 2, Allowed: 1, Suppressed: 1}},
		{"rows only", Retention{MaxAge: -1, MaxRows: 3, SuppressedMaxAge: -1}, []int64{4, 5, 6}, 2, Pruned{Blocked: 3}},
		{"both", Retention{MaxAge: 24 * time.Hour, MaxRows: 2, SuppressedMaxAge: 24 * time.Hour}, []int64{5, 6}, 1, Pruned{Blocked: 4, Allowed: 1, Suppressed: 1}},
		{"defaults keep every row of any age", Retention{}, []int64{1, 2, 3, 4, 5, 6}, 2, Pruned{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t)
			w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1}, nil)
			for _, ago := range []time.Duration{2 * 365 * 24 * time.Hour, 25 * time.Hour, 23 * time.Hour, time.Hour, time.Minute, 0} {
				w.Blocked(tcpRow(now.Add(-ago), "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
			}
			w.Allowed(tcpRow(now.Add(-30*time.Hour), "198.51.100.1", "10.0.0.1", "Default policy"))
			w.Allowed(tcpRow(now, "198.51.100.1", "10.0.0.1", "Default policy"))
			flush(t, w)
			if _, err := s.write.Exec(`INSERT INTO log_suppressed VALUES
				('2026-11-24 14:00', 'blocked', 'x', 1), ('2026-11-24 15:00', 'blocked', 'x', 1), ('2026-11-25 15:00', 'blocked', 'x', 1)`); err != nil {
				t.Fatal(err)
			}

			got, err := s.Prune(context.Background(), tt.r, now)
			if err != nil {
				t.Fatal(err)
			}
			if got != tt.wantPruned {
				t.Errorf("Prune = %+v, want %+v", got, tt.wantPruned)
			}
			rows, err := s.Logs(context.Background(), LogQuery{Follow: true})
			if err != nil {
				t.Fatal(err)
			}
			var ids []int64
			for _, r := range rows {
				ids = append(ids, r.ID)
			}
			if fmt.Sprint(ids) != fmt.Sprint(tt.wantBlocked) {
				t.Errorf("blocked ids left %v, want %v", ids, tt.wantBlocked)
			}
			if n := count(t, s, "allowed_packets"); n != tt.wantAllowed {
				t.Errorf("%d allowed rows left, want %d", n, tt.wantAllowed)
			}
		})
	}
}

// TestPruneLargeBacklog deletes more than one chunk and checks that ids
// keep growing after a table has been emptied, which --follow relies on.
func TestPruneLargeBacklog(t *testing.T) {
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, Buffer: 3 * pruneChunk}, nil)
	old := t0.Add(-40 * 24 * time.Hour)
	n := 2*pruneChunk + 17
	for range n {
		w.Blocked(tcpRow(old, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	flush(t, w)
	got, err := s.Prune(context.Background(), Retention{MaxAge: 30 * 24 * time.Hour}, t0)
	if err != nil {
		t.Fatal(err)
	}
	if got.Blocked != int64(n) || count(t, s, "blocked_packets") != 0 {
		t.Fatalf("Prune deleted %d of %d rows, %d left", got.Blocked, n, count(t, s, "blocked_packets"))
	}
	w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	rows, err := s.Logs(context.Background(), LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	if len(rows) != 1 || rows[0].ID != int64(n+1) {
		t.Errorf("row after emptying the table: %+v, want id %d", rows, n+1)
	}
}

func TestWriterPrunesAtStart(t *testing.T) {
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, Retention: Retention{Every: -1}}, nil)
	w.Blocked(tcpRow(time.Now().Add(-2*time.Hour), "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	w.Blocked(tcpRow(time.Now(), "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)

	// The pass goes on between batches, so a Flush may come first: its
	// report says it is over.
	pruned := make(chan Pruned, 1)
	startWriter(t, s, WriterConfig{Retention: Retention{MaxAge: time.Hour}, OnPrune: func(p Pruned) { pruned <- p }}, nil)
	select {
	case <-pruned:
	case <-time.After(5 * time.Second):
		t.Fatal("the retention pass at start did not report")
	}
	if n := count(t, s, "blocked_packets"); n != 1 {
		t.Errorf("%d rows after a writer with MaxAge 1h started, want 1", n)
	}
}

// A retention pass that deletes rows says so (the daemon logs it); one
// that deletes nothing says nothing.
func TestWriterReportsPrunedRows(t *testing.T) {
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, Retention: Retention{Every: -1}}, nil)
	for range 5 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	flush(t, w)

	pruned := make(chan Pruned, 2)
	startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, Retention: Retention{MaxRows: 3, Every: time.Hour},
		OnPrune: func(p Pruned) { pruned <- p }}, nil)
	select {
	case p := <-pruned:
		if p != (Pruned{Blocked: 2}) {
			t.Errorf("OnPrune(%+v), want the 2 blocked rows beyond 3", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the retention pass at start did not report the rows it deleted")
	}
	startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, Retention: Retention{MaxRows: 3, Every: time.Hour},
		OnPrune: func(p Pruned) { pruned <- p }}, nil)
	select {
	case p := <-pruned:
		t.Errorf("a pass that deleted nothing reported %+v", p)
	case <-time.After(300 * time.Millisecond):
	}
}

// A retention pass over a large backlog goes a chunk at a time between
// the writer's batches: rows that keep arriving meanwhile are written
// while it goes on, none finds the buffer full, and the pass still leaves
// the newest MaxRows of the rows it found.
func TestWriterWritesRowsWhilePruning(t *testing.T) {
	s := openTemp(t)
	s.pruneChunkRows = 20
	const limit, backlog = 100, 100_000 // 5,000 chunks to delete
	fillBlocked(t, s, backlog)

	pruned := make(chan Pruned, 1)
	// One row a millisecond fills this buffer in a quarter of a second,
	// far less than the pass takes.
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, Buffer: 256, FlushEvery: 10 * time.Millisecond,
		Retention: Retention{MaxRows: limit, Every: time.Hour}, OnPrune: func(p Pruned) { pruned <- p }}, nil)
	tick := time.NewTicker(time.Millisecond)
	defer tick.Stop()
	timeout := time.After(time.Minute)
	var p Pruned
	sent, writtenWhilePruning := 0, false
	for pass := true; pass; {
		select {
		case p = <-pruned:
			pass = false
		case <-tick.C:
			w.Blocked(tcpRow(time.Now(), "198.51.100.9", "10.0.0.1", "Rule: Telnet"))
			sent++
			if writtenWhilePruning || sent%10 != 0 {
				continue
			}
			var newest int64
			if err := s.read.QueryRow(`SELECT max(id) FROM blocked_packets`).Scan(&newest); err != nil {
				t.Fatal(err)
			}
			// Read before looking for the pass's end: a row seen here
			// while the pass has not reported was written during it.
			if newest > backlog {
				select {
				case p = <-pruned:
					pass = false
				default:
					writtenWhilePruning = true
				}
			}
		case <-timeout:
			t.Fatalf("the retention pass did not end within a minute (%d rows sent)", sent)
		}
	}
	flush(t, w)

	if !writtenWhilePruning {
		t.Errorf("no row was written while the retention pass went on (%d rows sent meanwhile)", sent)
	}
	if st := w.Stats(); st.Suppressed != 0 || st.Lost != 0 || st.Blocked != uint64(sent) {
		t.Errorf("Stats: %d written, %d suppressed, %d lost of %d rows sent during the pass", st.Blocked, st.Suppressed, st.Lost, sent)
	}
	if p != (Pruned{Blocked: backlog - limit}) {
		t.Errorf("OnPrune(%+v), want the %d blocked rows beyond %d", p, backlog-limit, limit)
	}
	var old, fresh, oldest int64
	if err := s.read.QueryRow(`SELECT count(*) FILTER (WHERE id <= ?), count(*) FILTER (WHERE id > ?), min(id) FROM blocked_packets`,
		backlog, backlog).Scan(&old, &fresh, &oldest); err != nil {
		t.Fatal(err)
	}
	if old != limit || oldest != backlog-limit+1 || fresh != int64(sent) {
		t.Errorf("after the pass: %d old rows from id %d and %d new ones, want the newest %d old rows (from id %d) and all %d new ones",
			old, oldest, fresh, limit, backlog-limit+1, sent)
	}
}

// A stop does not wait for a retention pass: it ends the chunk under way,
// reports what the pass deleted so far, and the next Run finishes it.
func TestWriterStopsDuringPrune(t *testing.T) {
	s := openTemp(t)
	s.pruneChunkRows = 20
	const limit, backlog = 100, 100_000
	fillBlocked(t, s, backlog)

	pruned := make(chan Pruned, 1)
	cfg := WriterConfig{Retention: Retention{MaxRows: limit, Every: time.Hour}, OnPrune: func(p Pruned) { pruned <- p }}
	w := s.NewWriter(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	time.Sleep(50 * time.Millisecond)
	cancel()
	stopped := time.Now()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Run: %v", err)
		}
		if took := time.Since(stopped); took > 500*time.Millisecond {
			t.Errorf("Run took %v to stop during a retention pass", took)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Run did not stop during a retention pass")
	}
	select {
	case p := <-pruned:
		if p.Blocked <= 0 || p.Blocked >= backlog-limit {
			t.Errorf("the stopped pass reported %+v, want part of the %d rows beyond %d", p, backlog-limit, limit)
		}
	default:
		t.Error("the stopped pass did not report the rows it deleted")
	}

	startWriter(t, s, cfg, nil)
	select {
	case <-pruned:
	case <-time.After(time.Minute):
		t.Fatal("the next Run's retention pass did not report")
	}
	if n := count(t, s, "blocked_packets"); n != limit {
		t.Errorf("%d rows after the next Run's pass, want %d", n, limit)
	}
}

// fillBlocked adds n blocked rows in one statement, far faster than a
// Writer would.
func fillBlocked(t *testing.T, s *Store, n int) {
	t.Helper()
	if _, err := s.write.Exec(`INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, protocol, reason, packet_hash, direction)
		WITH RECURSIVE n(i) AS (SELECT 1 UNION ALL SELECT i+1 FROM n WHERE i < ?)
		SELECT '2026-11-25 15:04:05.123', '203.0.113.7', '10.0.0.1', 'tcp', 'Rule: Telnet', '0000000000000abc', 'in' FROM n`, n); err != nil {
		t.Fatalf("fill blocked_packets: %v", err)
	}
}
