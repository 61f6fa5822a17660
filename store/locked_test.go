package store

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"
)

// shortBusyTimeout shortens the busy timeout of the stores the test opens
// after it, so that a held lock outlasts it in milliseconds.
func shortBusyTimeout(t *testing.T, d time.Duration) {
	t.Helper()
	old := busyTimeout
	busyTimeout = d
	t.Cleanup(func() { busyTimeout = old })
}

// holdWriteLock takes the database's write lock from a connection of its
// own, as another program's `BEGIN IMMEDIATE; INSERT ...` does, and keeps
// it until release is called or the test ends.
func holdWriteLock(t *testing.T, s *Store) (release func()) {
	t.Helper()
	db := openDB(dsn(s.Path(), "_txlock=immediate"), nil)
	tx, err := db.Begin()
	if err != nil {
		db.Close()
		t.Fatalf("take the write lock: %v", err)
	}
	if _, err := tx.Exec(`INSERT INTO threat_intel (ip, threat_level, last_seen, source) VALUES ('192.0.2.1', 'high', '2026-11-25 15:04:05', 'lock holder')`); err != nil {
		tx.Rollback()
		db.Close()
		t.Fatalf("write under the lock: %v", err)
	}
	release = sync.OnceFunc(func() {
		if err := tx.Rollback(); err != nil {
			t.Errorf("release the write lock: %v", err)
		}
		db.Close()
	})
	t.Cleanup(release)
	return release
}

// errorsTo is an OnError that keeps the errors for the test to wait on.
func errorsTo(ch chan error) func(error) {
	return func(err error) {
		select {
		case ch <- err:
		default:
		}
	}
}

// waitForLockError waits until the writer reports a batch that met the
// held lock.
func waitForLockError(t *testing.T, errs <-chan error) {
	t.Helper()
	timeout := time.After(10 * time.Second)
	for {
		select {
		case err := <-errs:
			if strings.Contains(err.Error(), "database is locked") {
				return
			}
		case <-timeout:
			t.Fatal("the writer reported no batch that met the lock")
		}
	}
}

func TestWriterWaitsOutALockedDatabase(t *testing.T) {
	const busy = 100 * time.Millisecond
	shortBusyTimeout(t, busy)
	s := openTemp(t)
	errs := make(chan error, 100)
	// The clock is past the rows' stamps, as a real one is once rows
	// waited: the cap must count them by their stamps all the same.
	clock := newFakeClock(t0.Add(10 * time.Second))
	w := startWriter(t, s, WriterConfig{Buffer: 100, MaxRowsPerSecond: 50, FlushEvery: 10 * time.Millisecond,
		Retention: Retention{Every: -1}, OnError: errorsTo(errs)}, clock)
	release := holdWriteLock(t, s)

	for range 30 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	waitForLockError(t, errs)
	// Rows go on coming while the lock is held, 40 a second, under the
	// cap of 50: they wait in the buffer, and those that find it full
	// are counted per reason.
	queued := 0
	for i := range 150 {
		if w.Blocked(tcpRow(t0.Add(time.Duration(1+i/40)*time.Second), "203.0.113.8", "10.0.0.1", "Rule: SMB")) {
			queued++
		}
	}
	time.Sleep(10 * busy) // several tries, each past the busy timeout
	st := w.Stats()
	if st.Lost != 0 || st.Blocked != 0 || !strings.Contains(st.LastError, "waiting for the database lock") {
		t.Errorf("while the lock is held: Lost %d, Blocked %d, LastError %q; want 0, 0 and why the rows wait", st.Lost, st.Blocked, st.LastError)
	}
	if want := uint64(150 - queued); st.Suppressed != want {
		t.Errorf("while the lock is held: Suppressed %d, want the %d rows that found the buffer full", st.Suppressed, want)
	}

	release()
	flush(t, w)
	st = w.Stats()
	if st.Lost != 0 || st.Blocked != uint64(30+queued) || st.LastError != "" {
		t.Errorf("after the lock: Lost %d, Blocked %d, LastError %q; want 0, %d, none", st.Lost, st.Blocked, st.LastError, 30+queued)
	}
	if n := count(t, s, "blocked_packets"); n != int64(30+queued) {
		t.Errorf("%d rows in blocked_packets, want %d", n, 30+queued)
	}
	// Stamped when decided, not when written.
	for sec, want := range []int64{30, 40} {
		var n int64
		ts := formatTime(t0.Add(time.Duration(sec) * time.Second))
		if err := s.read.QueryRow("SELECT count(*) FROM blocked_packets WHERE timestamp = ?", ts).Scan(&n); err != nil {
			t.Fatal(err)
		}
		if n != want {
			t.Errorf("%d rows stamped %s, want %d", n, ts, want)
		}
	}
	var suppressed int64
	if err := s.read.QueryRow("SELECT coalesce(sum(count), 0) FROM log_suppressed WHERE reason = 'Rule: SMB'").Scan(&suppressed); err != nil {
		t.Fatal(err)
	}
	if suppressed != int64(150-queued) {
		t.Errorf("log_suppressed holds %d for Rule: SMB, want %d", suppressed, 150-queued)
	}
}

func TestWriterShutdownUnderAHeldLock(t *testing.T) {
	const busy = 100 * time.Millisecond
	const shutdown = time.Second
	// start runs a writer on a store whose lock is held, with rows waiting
	// for it; cancel starts its shutdown.
	start := func(t *testing.T) (s *Store, w *Writer, release func(), cancel func(), done <-chan error) {
		shortBusyTimeout(t, busy)
		s = openTemp(t)
		errs := make(chan error, 100)
		w = s.NewWriter(WriterConfig{FlushEvery: 10 * time.Millisecond, ShutdownTimeout: shutdown,
			Retention: Retention{Every: -1}, OnError: errorsTo(errs)})
		ctx, cancel := context.WithCancel(context.Background())
		t.Cleanup(cancel)
		ran := make(chan error, 1)
		go func() { ran <- w.Run(ctx) }()
		release = holdWriteLock(t, s)
		for range 20 {
			w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
		}
		waitForLockError(t, errs)
		if st := w.Stats(); st.Lost != 0 {
			t.Errorf("Lost = %d while waiting for the lock, want 0", st.Lost)
		}
		for range 10 {
			w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
		}
		return s, w, release, cancel, ran
	}

	t.Run("ends in time and counts the rows lost", func(t *testing.T) {
		s, w, release, cancel, done := start(t)
		began := time.Now()
		cancel()
		var err error
		select {
		case err = <-done:
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		// A try under way when shutdown began, then the final flush.
		if took, bound := time.Since(began), shutdown+busy+500*time.Millisecond; took > bound {
			t.Errorf("shutdown took %v under a held lock, want at most %v", took, bound)
		}
		if err == nil || !strings.Contains(err.Error(), "database is locked") {
			t.Errorf("Run: %v, want the final flush's database is locked", err)
		}
		if st := w.Stats(); st.Lost != 30 || st.Blocked != 0 {
			t.Errorf("Lost %d, Blocked %d, want 30 and 0", st.Lost, st.Blocked)
		}
		release()
		if n := count(t, s, "blocked_packets"); n != 0 {
			t.Errorf("%d rows written, want none", n)
		}
	})
	t.Run("writes what it can once the lock goes", func(t *testing.T) {
		s, w, release, cancel, done := start(t)
		cancel()
		time.Sleep(shutdown / 5)
		release()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("Run did not return after cancel")
		}
		if st := w.Stats(); st.Lost != 0 || st.Blocked != 30 {
			t.Errorf("Lost %d, Blocked %d, want 0 and 30", st.Lost, st.Blocked)
		}
		if n := count(t, s, "blocked_packets"); n != 30 {
			t.Errorf("%d rows written, want 30", n)
		}
	})
}
