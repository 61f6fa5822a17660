package store

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

func TestSchemaMatchesContract(t *testing.T) {
	s := openTemp(t)
	type column struct {
		Name, Type string
		PK         int
	}
	want := map[string][]column{
		"blocked_packets": {
			{"id", "INTEGER", 1}, {"timestamp", "TEXT", 0}, {"src_ip", "TEXT", 0}, {"dst_ip", "TEXT", 0},
			{"src_port", "INTEGER", 0}, {"dst_port", "INTEGER", 0}, {"protocol", "TEXT", 0},
			{"reason", "TEXT", 0}, {"packet_hash", "TEXT", 0},
			{"direction", "TEXT", 0}, // pfw's own, after the contract's
		},
		"allowed_packets": {
			{"id", "INTEGER", 1}, {"timestamp", "TEXT", 0}, {"src_ip", "TEXT", 0}, {"dst_ip", "TEXT", 0},
			{"src_port", "INTEGER", 0}, {"dst_port", "INTEGER", 0}, {"protocol", "TEXT", 0},
			{"direction", "TEXT", 0},
		},
		"threat_intel": {
			{"ip", "TEXT", 1}, {"threat_level", "TEXT", 0}, {"last_seen", "TEXT", 0}, {"source", "TEXT", 0},
		},
		"log_suppressed": {
			{"hour", "TEXT", 1}, {"log_type", "TEXT", 2}, {"reason", "TEXT", 3}, {"count", "INTEGER", 0},
		},
	}
	for table, cols := range want {
		rows, err := s.read.Query("SELECT name, type, pk FROM pragma_table_info(?) ORDER BY cid", table)
		if err != nil {
			t.Fatal(err)
		}
		var got []column
		for rows.Next() {
			var c column
			if err := rows.Scan(&c.Name, &c.Type, &c.PK); err != nil {
				t.Fatal(err)
			}
			got = append(got, c)
		}
		rows.Close()
		if diff := cmp.Diff(cols, got); diff != "" {
			t.Errorf("%s columns (-want +got):\n%s", table, diff)
		}
	}

	// Each packet table has an index leading with timestamp and one with
	// src_ip.
	for _, table := range []string{"blocked_packets", "allowed_packets"} {
		for _, col := range []string{"timestamp", "src_ip"} {
			var n int
			err := s.read.QueryRow(`SELECT count(*) FROM pragma_index_list(?) AS l
				JOIN pragma_index_info(l.name) AS i WHERE i.seqno = 0 AND i.name = ?`, table, col).Scan(&n)
			if err != nil {
				t.Fatal(err)
			}
			if n == 0 {
				t.Errorf("%s has no index on %s", table, col)
			}
		}
	}

	var version int
	if err := s.read.QueryRow("PRAGMA user_version").Scan(&version); err != nil {
		t.Fatal(err)
	}
	if version != schemaVersion {
		t.Errorf("user_version = %d, want %d", version, schemaVersion)
	}
}

func TestOpenSettings(t *testing.T) {
	s := openTemp(t)
	for _, c := range []struct {
		pragma string
		want   string
	}{
		{"journal_mode", "wal"},
		{"busy_timeout", "5000"},
		{"synchronous", "1"}, // NORMAL
	} {
		var got string
		if err := s.write.QueryRow("PRAGMA " + c.pragma).Scan(&got); err != nil {
			t.Fatal(err)
		}
		if got != c.want {
			t.Errorf("writer PRAGMA %s = %s, want %s", c.pragma, got, c.want)
		}
	}
	var mode string
	if err := s.read.QueryRow("PRAGMA journal_mode").Scan(&mode); err != nil {
		t.Fatal(err)
	}
	if mode != "wal" {
		t.Errorf("reader journal_mode = %s, want wal", mode)
	}

	fi, err := os.Stat(s.Path())
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm(); perm&^0o640 != 0 {
		t.Errorf("database mode %v, want at most 0640", perm)
	}
	di, err := os.Stat(filepath.Dir(s.Path()))
	if err != nil {
		t.Fatal(err)
	}
	if perm := di.Mode().Perm(); perm&^0o750 != 0 {
		t.Errorf("directory mode %v, want at most 0750", perm)
	}
}

func TestTimestampReadableBySQLite(t *testing.T) {
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{}, nil)
	w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	flush(t, w)
	var stored, datetime, fraction string
	err := s.read.QueryRow(`SELECT timestamp, datetime(timestamp), strftime('%f', timestamp) FROM blocked_packets`).
		Scan(&stored, &datetime, &fraction)
	if err != nil {
		t.Fatal(err)
	}
	// t0 is 16:04:05.123 at UTC+1.
	if stored != "2026-11-25 15:04:05.123" || datetime != "2026-11-25 15:04:05" || fraction != "05.123" {
		t.Errorf("timestamp %q, datetime() %q, strftime(%%f) %q; want UTC with milliseconds", stored, datetime, fraction)
	}
}

func TestOpenMovesCorruptFileAside(t *testing.T) {
	header := []byte("SQLite format 3\x00")
	tests := []struct {
		name string
		data []byte
		wal  bool // also leave a -wal file that must not survive
	}{
		{"garbage", bytes.Repeat([]byte{0xde, 0xad, 0xbe, 0xef}, 2048), false},
		{"text", []byte("this is not a database\n"), true},
		{"bad header", append(header, bytes.Repeat([]byte{0xff}, 8192)...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "firewall.db")
			if err := os.WriteFile(path, tt.data, 0o640); err != nil {
				t.Fatal(err)
			}
			if tt.wal {
				if err := os.WriteFile(path+"-wal", []byte("stale wal"), 0o640); err != nil {
					t.Fatal(err)
				}
			}
			s, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			aside := checkMovedAside(t, s, path, tt.data, "")
			if tt.wal {
				if _, err := os.Stat(aside + "-wal"); err != nil {
					t.Errorf("stale -wal not moved with the database: %v", err)
				}
			}
			// The fresh database works.
			if err := s.SetThreats(context.Background(), []FeedThreats{{Source: "feed", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Seen: t0}}, t0); err != nil {
				t.Errorf("fresh database: %v", err)
			}
		})
	}
}

func TestOpenKeepsGoodDatabase(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if err := s.SetThreats(ctx, []FeedThreats{{Source: "feed", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("192.0.2.7/32")}, Seen: t0}}, t0); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s, err = Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.MovedAside() != "" {
		t.Errorf("good database moved aside to %s", s.MovedAside())
	}
	if n := count(t, s, "threat_intel"); n != 1 {
		t.Errorf("threat_intel has %d rows after reopening, want 1", n)
	}
}

// A database a later pfw wrote is refused by fwctl, which never changes
// it, and moved aside by pfwd, which must keep logging (see
// TestOpenMovesMisfitAside).
func TestOpenReaderRejectsNewerSchema(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.write.Exec(fmt.Sprintf("PRAGMA user_version = %d", schemaVersion+1)); err != nil {
		t.Fatal(err)
	}
	s.Close()
	if r, err := OpenReader(path); err == nil || !strings.Contains(err.Error(), "newer") {
		if r != nil {
			r.Close()
		}
		t.Errorf("OpenReader of a newer schema: err %v, want one saying it is newer", err)
	}
}

func TestOpenReaderMissingFile(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "personal-firewall")
	path := filepath.Join(dir, "firewall.db")
	s, err := OpenReader(path)
	if err == nil {
		s.Close()
		t.Fatal("OpenReader of a missing file succeeded")
	}
	if !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("error %v does not match fs.ErrNotExist", err)
	}
	if want := "open store: no database at " + path + " (has pfwd run yet?)"; err.Error() != want {
		t.Errorf("error %q, want %q", err, want)
	}
	if _, err := os.Stat(dir); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("OpenReader created %s (stat: %v)", dir, err)
	}
}

func TestOpenReaderErrors(t *testing.T) {
	dir := t.TempDir()
	tests := []struct {
		name, content, want string
	}{
		{"not a database", "garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage garbage ", "not a database"},
		{"empty file", "", "not set up"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := filepath.Join(dir, strings.ReplaceAll(tt.name, " ", "_"))
			if err := os.WriteFile(path, []byte(tt.content), 0o640); err != nil {
				t.Fatal(err)
			}
			s, err := OpenReader(path)
			if err == nil {
				s.Close()
				t.Fatal("OpenReader succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), path) {
				t.Errorf("error %q should name %s and say %q", err, path, tt.want)
			}
			if got, _ := os.ReadFile(path); string(got) != tt.content {
				t.Errorf("OpenReader changed the file")
			}
		})
	}
}

func TestOpenReaderIsReadOnly(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	s.Close()
	// The WAL files outlive the writer, so readers that may not create
	// files next to the database can still open it.
	for _, suffix := range []string{"-wal", "-shm"} {
		if _, err := os.Stat(path + suffix); err != nil {
			t.Errorf("after Close: %v", err)
		}
	}
	r, err := OpenReader(path)
	if err != nil {
		t.Fatalf("OpenReader after pfwd stopped: %v", err)
	}
	defer r.Close()
	if !r.ReadOnly() {
		t.Error("ReadOnly() = false")
	}
	ctx := context.Background()
	if _, err := r.Logs(ctx, LogQuery{}); err != nil {
		t.Errorf("Logs: %v", err)
	}
	if err := r.SetThreats(ctx, []FeedThreats{{Source: "feed", Level: "high", Entries: nil, Seen: t0}}, t0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("SetThreats on a reader: %v, want ErrReadOnly", err)
	}
	if _, err := r.Prune(ctx, Retention{}, t0); !errors.Is(err, ErrReadOnly) {
		t.Errorf("Prune on a reader: %v, want ErrReadOnly", err)
	}
	if _, err := r.read.Exec(`INSERT INTO threat_intel VALUES ('192.0.2.1', 'high', '', 'x')`); err == nil {
		t.Error("SQL insert through a reader succeeded")
	}
}

// TestConcurrentWriterAndReaders is the contract's promise: fwctl reads
// while pfwd writes and never sees "database is locked". Every handle is a
// separate Open or OpenReader on the same file, as separate processes
// would be; a second writer handle replaces threat feeds at the same time.
func TestConcurrentWriterAndReaders(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	var errs []error
	var errMu sync.Mutex
	fail := func(who string, err error) {
		errMu.Lock()
		errs = append(errs, fmt.Errorf("%s: %w", who, err))
		errMu.Unlock()
	}
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1, FlushEvery: 2 * time.Millisecond, MaxBatch: 200,
		OnError: func(err error) { fail("writer", err) }}, nil)

	duration := 1500 * time.Millisecond
	if testing.Short() {
		duration = 300 * time.Millisecond
	}
	ctx, cancel := context.WithTimeout(context.Background(), duration)
	defer cancel()
	var wg sync.WaitGroup
	wg.Go(func() { // the packet path
		for i := 0; ctx.Err() == nil; i++ {
			src := fmt.Sprintf("198.51.100.%d", i%200)
			for !w.Blocked(tcpRow(time.Now(), src, "10.0.0.1", "Rule: Telnet")) {
				time.Sleep(time.Millisecond)
			}
			if i%10 == 0 {
				w.Allowed(tcpRow(time.Now(), src, "10.0.0.1", "Default policy"))
			}
			if i%100 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
	})
	wg.Go(func() { // a feed refresh through its own read-write handle
		other, err := Open(path)
		if err != nil {
			fail("second Open", err)
			return
		}
		defer other.Close()
		for i := 0; ctx.Err() == nil; i++ {
			entries := make([]netip.Prefix, 500)
			for j := range entries {
				entries[j] = netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i % 3), byte(j >> 8), byte(j)}), 32)
			}
			if err := other.SetThreats(context.Background(), []FeedThreats{{Source: "feed", Level: "high", Entries: entries, Seen: time.Now()}}, time.Now()); err != nil {
				fail("SetThreats", err)
			}
			time.Sleep(5 * time.Millisecond)
		}
	})
	seen := make([]int64, 4)
	for i := range seen {
		wg.Go(func() { // fwctl
			r, err := OpenReader(path)
			if err != nil {
				fail("OpenReader", err)
				return
			}
			defer r.Close()
			bg := context.Background()
			for ctx.Err() == nil {
				rows, err := r.Logs(bg, LogQuery{Limit: 50})
				if err != nil {
					fail("Logs", err)
				} else if len(rows) > 0 {
					seen[i] = max(seen[i], rows[0].ID)
				}
				if _, err := r.Logs(bg, LogQuery{IP: netip.MustParseAddr("198.51.100.7"), Limit: 10}); err != nil {
					fail("Logs --ip", err)
				}
				if _, err := r.Stats(bg, time.Now()); err != nil {
					fail("Stats", err)
				}
				if _, err := r.Threats(bg, 50); err != nil {
					fail("Threats", err)
				}
			}
		})
	}
	wg.Wait()
	flush(t, w)
	for _, err := range errs {
		t.Error(err)
	}
	st := w.Stats()
	if st.Blocked == 0 || st.Errors != 0 || st.Lost != 0 {
		t.Errorf("writer stats %+v: want rows written and no errors", st)
	}
	for i, id := range seen {
		if id == 0 {
			t.Errorf("reader %d never saw a row", i)
		}
	}
	t.Logf("wrote %d blocked rows in %d batches while readers read (max id seen %v)", st.Blocked, st.Batches, seen)
}

// TestOpenReaderAsOtherUser runs a reader as nobody against a database root
// wrote and has since closed, in a directory nobody may not write: what a
// user in the database's group running fwctl while pfwd is stopped meets.
// The test binary re-runs itself under the other uid.
func TestOpenReaderAsOtherUser(t *testing.T) {
	const env = "PFW_STORE_TEST_READER_PATH"
	if path := os.Getenv(env); path != "" {
		r, err := OpenReader(path)
		if err != nil {
			t.Fatalf("OpenReader as uid %d: %v", os.Getuid(), err)
		}
		defer r.Close()
		rows, err := r.Logs(context.Background(), LogQuery{})
		if err != nil || len(rows) != 1 {
			t.Fatalf("Logs as uid %d: %d rows, %v; want 1 row", os.Getuid(), len(rows), err)
		}
		return
	}
	if os.Geteuid() != 0 {
		t.Skip("needs root to run a reader as another user")
	}
	dir := t.TempDir()
	path := filepath.Join(dir, "db", "firewall.db")
	s, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	w := s.NewWriter(WriterConfig{})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
	cancel()
	if err := <-done; err != nil {
		t.Fatal(err)
	}
	s.Close()

	// Readable by others, writable by root only, like a database shared
	// with an admin group.
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	bin, err := os.ReadFile(exe)
	if err != nil {
		t.Fatal(err)
	}
	copyPath := filepath.Join(dir, "store.test")
	if err := os.WriteFile(copyPath, bin, 0o755); err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{filepath.Dir(dir), dir, filepath.Dir(path)} {
		if err := os.Chmod(p, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	for _, suffix := range []string{"", "-wal", "-shm"} {
		if err := os.Chmod(path+suffix, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	cmd := exec.Command(copyPath, "-test.run=^TestOpenReaderAsOtherUser$", "-test.count=1", "-test.v")
	cmd.Env = append(os.Environ(), env+"="+path)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: 65534, Gid: 65534}}
	out, err := cmd.CombinedOutput()
	if err != nil || !strings.Contains(string(out), "--- PASS: TestOpenReaderAsOtherUser") {
		t.Fatalf("reader as nobody: %v\n%s", err, out)
	}
}

// DefaultPath is the contract's; pfwd and fwctl both take it from here.
func TestDefaultPath(t *testing.T) {
	if DefaultPath != "/var/lib/personal-firewall/firewall.db" {
		t.Errorf("DefaultPath = %q", DefaultPath)
	}
}
