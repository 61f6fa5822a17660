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

	w2 := startWriter(t, s, WriterConfig{Retention: Retention{MaxAge: time.Hour}}, nil)
	flush(t, w2)
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
