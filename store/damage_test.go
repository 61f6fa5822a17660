package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/mattn/go-sqlite3"
)

// fillDatabase writes n blocked rows from addresses all over the IPv4
// space through a Writer, so every index has leaves all over the file, and
// closes the store, which checkpoints the WAL into the file.
func fillDatabase(t *testing.T, path string, n int) {
	t.Helper()
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter(WriterConfig{MaxRowsPerSecond: -1, Retention: Retention{Every: -1}})
	w.skipDamageCheck = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	rng := rand.New(rand.NewPCG(1, 2))
	for i := range n {
		src := fmt.Sprintf("%d.%d.%d.%d", rng.IntN(223)+1, rng.IntN(256), rng.IntN(256), rng.IntN(256))
		for !w.Blocked(tcpRow(t0.Add(time.Duration(i)*time.Millisecond), src, "192.0.2.1", "Rule: Telnet")) {
			flush(t, w)
		}
	}
	flush(t, w)
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
}

// damageMiddle overwrites the middle half of the file's pages with
// garbage, keeping page 1 (header and schema) and so what Open looks at,
// and returns the damaged file's bytes.
func damageMiddle(t *testing.T, path string) []byte {
	t.Helper()
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	const page = 4096
	pages := len(data) / page
	if pages < 100 {
		t.Fatalf("%s has %d pages: too few to damage the middle of", path, pages)
	}
	rng := rand.New(rand.NewPCG(3, 4))
	for i := pages / 4 * page; i < pages*3/4*page; i++ {
		data[i] = byte(rng.Uint32())
	}
	if err := os.WriteFile(path, data, 0o640); err != nil {
		t.Fatal(err)
	}
	return data
}

// A file damaged past page 1 opens fine, since Open reads only the header
// and the schema; the damage shows when a statement reads a damaged page.
// The writer then moves the file aside, bytes unchanged, and carries on in
// a fresh database: no row is lost, in this run or the next.
func TestWriterReplacesDamagedDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.db")
	fillDatabase(t, path, 60000)
	pristine, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s: %d MB", path, len(pristine)>>20)

	for _, tt := range []struct {
		name       string
		startCheck bool   // Run's integrity check finds it, before any row
		want       string // in MovedAsideReason
	}{
		{"a batch finds it", false, "write log rows: database disk image is malformed"},
		{"the check at start finds it", true, "check " + path + " for damage: "},
	} {
		t.Run(tt.name, func(t *testing.T) {
			if err := os.WriteFile(path, pristine, 0o640); err != nil {
				t.Fatal(err)
			}
			for _, suffix := range []string{"-wal", "-shm"} {
				os.Remove(path + suffix)
			}
			damaged := damageMiddle(t, path)
			s, err := Open(path)
			if err != nil {
				t.Fatalf("Open of a file damaged past page 1: %v", err)
			}
			t.Cleanup(func() { s.Close() })
			if aside := s.MovedAside(); aside != "" {
				t.Fatalf("Open moved it aside to %s already (%s): make the damage deeper", aside, s.MovedAsideReason())
			}

			reopened := make(chan error, 8)
			w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, FlushEvery: time.Hour, Retention: Retention{Every: -1},
				OnReopen: func(err error) { reopened <- err }}, nil,
				func(w *Writer) { w.skipDamageCheck = !tt.startCheck })
			if tt.startCheck {
				waitReopen(t, reopened)
			}
			rng := rand.New(rand.NewPCG(5, 6))
			const rows = 200
			for range rows {
				src := fmt.Sprintf("%d.%d.%d.%d", rng.IntN(223)+1, rng.IntN(256), rng.IntN(256), rng.IntN(256))
				w.Blocked(tcpRow(t0, src, "192.0.2.1", "Rule: Telnet"))
			}
			flush(t, w)
			if !tt.startCheck {
				waitReopen(t, reopened)
			}

			checkMovedAside(t, s, path, damaged, tt.want)
			if n := countIn(t, path, "blocked_packets"); n != rows {
				t.Errorf("the fresh database has %d rows, want the %d written", n, rows)
			}
			if st := w.Stats(); st.Lost != 0 || st.Errors != 0 || st.Blocked != rows {
				t.Errorf("writer stats %+v: want every row written, none lost", st)
			}
			select {
			case err := <-reopened:
				t.Errorf("a second reopen (%v)", err)
			case <-time.After(100 * time.Millisecond):
			}
		})
	}
}

// damageSchema makes the database at path fail every statement on
// blocked_packets with SQLITE_CORRUPT, as a damaged schema would: its root
// page lies past the end of the file. Bumping schema_version makes open
// connections read the schema again.
func damageSchema(t *testing.T, path string) {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var version int
	err = db.QueryRow("PRAGMA schema_version").Scan(&version)
	if se := (sqlite3.Error{}); errors.As(err, &se) && se.Code == sqlite3.ErrCorrupt {
		return // damaged by an earlier call, and not moved aside since
	}
	if err == nil {
		_, err = db.Exec("PRAGMA writable_schema = ON")
	}
	// The new version first: statements after the UPDATE would fail to
	// read the schema it leaves.
	for _, q := range []string{
		fmt.Sprintf("PRAGMA schema_version = %d", version+1),
		"UPDATE sqlite_schema SET rootpage = 1000000 WHERE name = 'blocked_packets'",
	} {
		if err == nil {
			_, err = db.Exec(q)
		}
	}
	if err != nil {
		t.Fatalf("damage the schema of %s: %v", path, err)
	}
}

// When fresh databases are damaged too (a failing disk), the writer does
// not move one aside per batch: it waits a minute after the first, then
// twice as long each time, and the batches in between are lost as usual.
func TestWriterBacksOffWhenFreshFilesFailToo(t *testing.T) {
	s := openTemp(t)
	clock := newFakeClock(time.Now())
	reopened := make(chan error, 8)
	w := s.NewWriter(WriterConfig{MaxRowsPerSecond: -1, FlushEvery: time.Hour, Retention: Retention{Every: -1},
		OnReopen: func(err error) { reopened <- err }})
	w.now = clock.now
	w.skipDamageCheck = true
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	defer func() {
		cancel()
		<-done
	}()

	var asides []string
	write := func(step string, wantRecovered bool) {
		t.Helper()
		damageSchema(t, s.Path())
		lost := w.Stats().Lost
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
		err := w.Flush(context.Background())
		select {
		case rerr := <-reopened:
			if !wantRecovered {
				t.Fatalf("%s: moved a file aside again (%v), want to wait", step, rerr)
			}
			if rerr != nil {
				t.Fatalf("%s: reopen: %v", step, rerr)
			}
			if err != nil {
				t.Fatalf("%s: Flush after moving the damaged file aside: %v", step, err)
			}
			if n := count(t, s, "blocked_packets"); n != 1 {
				t.Errorf("%s: %d rows in the fresh database, want 1", step, n)
			}
			asides = append(asides, s.MovedAside())
		default:
			if wantRecovered {
				t.Fatalf("%s: no file moved aside; Flush: %v", step, err)
			}
			var se sqlite3.Error
			if !errors.As(err, &se) || se.Code != sqlite3.ErrCorrupt {
				t.Errorf("%s: Flush: %v, want SQLite's corrupt error", step, err)
			}
			if got := w.Stats().Lost; got != lost+1 {
				t.Errorf("%s: Lost %d, want %d", step, got, lost+1)
			}
		}
	}
	write("first damage", true)
	write("at once again", false)
	clock.add(minRecoverWait + time.Second)
	write("a minute later", true)
	clock.add(minRecoverWait + time.Second)
	write("another minute later", false)
	clock.add(minRecoverWait)
	write("two minutes later", true)
	clock.add(maxRecoverWait + 5*time.Minute)
	write("after an hour of calm", true)
	clock.add(minRecoverWait + time.Second)
	write("a minute after that", true)

	matches, err := filepath.Glob(s.Path() + ".corrupt-*")
	if err != nil {
		t.Fatal(err)
	}
	var files []string
	for _, m := range matches {
		if !strings.HasSuffix(m, "-wal") && !strings.HasSuffix(m, "-shm") {
			files = append(files, m)
		}
	}
	if len(files) != len(asides) {
		t.Errorf("%d files moved aside (%v), want one per recovery: %v", len(files), files, asides)
	}
}

// A file replaced while the writer found its predecessor damaged is not
// the damaged one: it is opened, not moved aside.
func TestReplaceDamagedSparesAReplacement(t *testing.T) {
	s := openTemp(t)
	other := writeSeedDB(t, seedSchema)
	if err := os.Rename(other, s.Path()); err != nil {
		t.Fatal(err)
	}
	if err := s.replaceDamaged(sqlite3.Error{Code: sqlite3.ErrCorrupt}); err != nil {
		t.Fatal(err)
	}
	if aside := s.MovedAside(); aside != "" {
		t.Errorf("moved the replacement aside to %s", aside)
	}
	if n := count(t, s, "blocked_packets"); n != 2 {
		t.Errorf("%d rows, want the replacement's 2", n)
	}
}

// The start-up check finds nothing in a sound database, large or fresh.
func TestCheckDamageSoundDatabase(t *testing.T) {
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1}, nil)
	for range 1000 {
		w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	}
	flush(t, w)
	if _, err := s.checkDamage(context.Background()); err != nil {
		t.Errorf("checkDamage: %v", err)
	}
}
