package store

import (
	"context"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// countIn counts a table's rows through a reader of its own, as fwctl
// would see them.
func countIn(t *testing.T, path, table string) int64 {
	t.Helper()
	r, err := OpenReader(path)
	if err != nil {
		t.Fatalf("fwctl's view of %s: %v", path, err)
	}
	defer r.Close()
	var n int64
	if err := r.read.QueryRow("SELECT count(*) FROM " + table).Scan(&n); err != nil {
		t.Fatal(err)
	}
	return n
}

// reopenWriter starts a writer that checks the file every 20 ms and
// reports its reopens on the returned channel.
func reopenWriter(t *testing.T, s *Store) (*Writer, <-chan error) {
	t.Helper()
	reopened := make(chan error, 8)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, FlushEvery: time.Hour, CheckEvery: 20 * time.Millisecond,
		OnReopen: func(err error) { reopened <- err }}, nil)
	return w, reopened
}

func waitReopen(t *testing.T, ch <-chan error) {
	t.Helper()
	select {
	case err := <-ch:
		if err != nil {
			t.Fatalf("reopen failed: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not reopen the database within 5 s")
	}
}

// rowsAcrossReopen writes five rows, lets change do to the database's files
// what an operator would, waits until the writer reopened, writes one row
// more, and returns how many rows fwctl's view then holds.
func rowsAcrossReopen(t *testing.T, s *Store, w *Writer, reopened <-chan error, change func(path string)) int64 {
	t.Helper()
	for range 5 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	flush(t, w)
	change(s.Path())
	waitReopen(t, reopened)
	w.Blocked(tcpRow(t0, "203.0.113.8", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	return countIn(t, s.Path(), "blocked_packets")
}

// noSecondReopen fails t when the writer reopens again with the files
// left alone.
func noSecondReopen(t *testing.T, reopened <-chan error) {
	t.Helper()
	select {
	case err := <-reopened:
		t.Errorf("a second reopen (%v) with the files unchanged", err)
	case <-time.After(100 * time.Millisecond):
	}
}

// `rm firewall.db` while pfwd runs: the writer notices, creates a fresh
// database (the old WAL is not replayed into it) and later rows land
// where fwctl reads.
func TestWriterReopensADeletedDatabase(t *testing.T) {
	s := openTemp(t)
	w, reopened := reopenWriter(t, s)
	n := rowsAcrossReopen(t, s, w, reopened, func(path string) {
		if err := s.SetThreats(context.Background(), []FeedThreats{{Source: "Feodo", Level: "high", Entries: nil, Seen: t0}}, t0); err != nil {
			t.Fatal(err)
		}
		if err := os.Remove(path); err != nil { // -wal and -shm stay, as after a plain rm
			t.Fatal(err)
		}
	})
	if n != 1 {
		t.Errorf("the new database has %d rows, want only the 1 written after the rm", n)
	}
	// Every method works on the new pools.
	if _, err := s.Stats(context.Background(), t0); err != nil {
		t.Errorf("Stats after reopen: %v", err)
	}
	if _, err := s.Prune(context.Background(), Retention{MaxRows: 10}, t0); err != nil {
		t.Errorf("Prune after reopen: %v", err)
	}
	noSecondReopen(t, reopened)
	if st := w.Stats(); st.Lost != 0 || st.Errors != 0 {
		t.Errorf("writer stats %+v: rows lost around the reopen", st)
	}
}

// `: > firewall.db` or `truncate -s0` to clear the log keeps the file's
// inode. A reader then opening the empty file (fwctl, sqlite3) has SQLite
// delete the WAL beside it, the one pfwd writes to: rows went nowhere,
// and every fwctl read failed, until pfwd restarted. The writer now
// takes the emptied file for a new one.
func TestWriterReopensAnEmptiedDatabase(t *testing.T) {
	s := openTemp(t)
	w, reopened := reopenWriter(t, s)
	n := rowsAcrossReopen(t, s, w, reopened, func(path string) {
		if err := os.Truncate(path, 0); err != nil {
			t.Fatal(err)
		}
		if r, err := OpenReader(path); err == nil { // fwctl in the meantime, as likely as not
			r.Close()
		}
	})
	if n != 1 {
		t.Errorf("the emptied database has %d rows, want the 1 written after it was emptied", n)
	}
	if st := w.Stats(); st.Lost != 0 || st.Errors != 0 {
		t.Errorf("writer stats %+v: rows lost around the reopen", st)
	}
}

// `rm firewall.db-wal` alone: pfwd's connection went on writing into the
// deleted file, which no reader sees. The writer reopens, and its rows,
// checkpointed from the deleted WAL as the old connection closes, stay.
func TestWriterReopensAfterItsWALIsDeleted(t *testing.T) {
	s := openTemp(t)
	w, reopened := reopenWriter(t, s)
	n := rowsAcrossReopen(t, s, w, reopened, func(path string) {
		if err := os.Remove(path + "-wal"); err != nil {
			t.Fatal(err)
		}
	})
	if n != 6 {
		t.Errorf("the database has %d rows after its WAL was deleted, want all 6", n)
	}
	noSecondReopen(t, reopened)
}

// The file replaced by another database (a backup restored with mv): the
// writer opens that one and appends to it.
func TestWriterReopensAReplacedDatabase(t *testing.T) {
	s := openTemp(t)
	other, err := Open(filepath.Join(t.TempDir(), "backup.db"))
	if err != nil {
		t.Fatal(err)
	}
	ow := other.NewWriter(WriterConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error)
	go func() { done <- ow.Run(ctx) }()
	for range 3 {
		ow.Blocked(tcpRow(t0, "198.51.100.1", "10.0.0.1", "Rule: Telnet"))
	}
	flush(t, ow)
	cancel()
	<-done
	other.Close()

	w, reopened := reopenWriter(t, s)
	w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	if err := os.Rename(other.Path(), s.Path()); err != nil {
		t.Fatal(err)
	}
	waitReopen(t, reopened)
	w.Blocked(tcpRow(t0, "203.0.113.8", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	if n := countIn(t, s.Path(), "blocked_packets"); n != 4 {
		t.Errorf("the restored database has %d rows, want its 3 plus the 1 written after", n)
	}
}

// A database that cannot be made again (its directory turned into a file)
// fails every batch with a clear error, counts the rows lost, and is
// retried until it works.
func TestWriterRetriesReopen(t *testing.T) {
	s := openTemp(t)
	w, reopened := reopenWriter(t, s)
	dir := filepath.Dir(s.Path())
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(dir, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	select {
	case err := <-reopened:
		if err == nil {
			t.Fatal("reopen under a file where the directory was succeeded")
		}
		t.Logf("reopen: %v", err)
	case <-time.After(5 * time.Second):
		t.Fatal("no reopen attempt within 5 s")
	}
	w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := w.Flush(ctx); err == nil {
		t.Error("Flush with no database succeeded")
	}
	if st := w.Stats(); st.Lost != 1 {
		t.Errorf("writer stats %+v: want the row counted lost", st)
	}
	os.Remove(dir)
	deadline := time.After(5 * time.Second)
	for {
		select {
		case err := <-reopened:
			if err != nil {
				continue
			}
		case <-deadline:
			t.Fatal("the database was not made again within 5 s of its directory coming back")
		}
		break
	}
	w.Blocked(tcpRow(t0, "203.0.113.8", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	if n := countIn(t, s.Path(), "blocked_packets"); n != 1 {
		t.Errorf("%d rows after the database came back, want 1", n)
	}
}
