package store

import (
	"context"
	"database/sql"
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// seedSchema is how the seed (the Python prototype pfw replaces) made its
// database: the contract's tables and columns, DATETIME columns filled by
// SQLite, no indexes, no user_version, no log_suppressed.
const seedSchema = `
CREATE TABLE blocked_packets (id INTEGER PRIMARY KEY AUTOINCREMENT,
	timestamp DATETIME DEFAULT CURRENT_TIMESTAMP, src_ip TEXT, dst_ip TEXT,
	src_port INTEGER, dst_port INTEGER, protocol TEXT, reason TEXT, packet_hash TEXT);
CREATE TABLE allowed_packets (id INTEGER PRIMARY KEY AUTOINCREMENT,
	timestamp DATETIME DEFAULT CURRENT_TIMESTAMP, src_ip TEXT, dst_ip TEXT,
	src_port INTEGER, dst_port INTEGER, protocol TEXT);
CREATE TABLE threat_intel (ip TEXT PRIMARY KEY, threat_level TEXT,
	last_seen DATETIME, source TEXT);
INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, reason)
	VALUES ('2026-11-25 15:04:05', '203.0.113.7', '192.0.2.1', 40000, 23, 'tcp', 'Blacklisted IP');
INSERT INTO blocked_packets (src_ip, dst_ip, protocol, reason)
	VALUES ('198.51.100.9', '192.0.2.1', 'icmp', NULL);
INSERT INTO allowed_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol)
	VALUES ('2026-11-25 15:04:06', '198.51.100.2', '192.0.2.1', 40001, 443, 'tcp');
INSERT INTO threat_intel VALUES ('50.16.16.211', 'high', '2026-11-25 14:00:00', 'Feodo Tracker');
`

func writeSeedDB(t *testing.T, schema string) string {
	t.Helper()
	path := filepath.Join(t.TempDir(), "firewall.db")
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	if _, err := db.Exec(schema); err != nil {
		t.Fatalf("make the seed database: %v", err)
	}
	return path
}

// A database the seed made is read by fwctl as it is (fwctl never writes
// it), NULLs and DATETIME columns included, and adopted by pfwd, which adds
// what pfw needs and keeps every row.
func TestSeedDatabase(t *testing.T) {
	ctx := context.Background()
	path := writeSeedDB(t, seedSchema)
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

	check := func(t *testing.T, s *Store) {
		t.Helper()
		rows, err := s.Logs(ctx, LogQuery{Table: "blocked"})
		if err != nil {
			t.Fatalf("Logs: %v", err)
		}
		if len(rows) != 2 {
			t.Fatalf("Logs gave %d rows, want 2: %+v", len(rows), rows)
		}
		old := rows[1]
		if old.Timestamp != "2026-11-25 15:04:05.000" || old.SrcIP != "203.0.113.7" || old.Reason != "Blacklisted IP" ||
			old.DstPort == nil || *old.DstPort != 23 || old.PacketHash != "" {
			t.Errorf("seed row read as %+v", old)
		}
		if rows[0].Reason != "" || rows[0].SrcPort != nil {
			t.Errorf("row with NULLs read as %+v", rows[0])
		}
		// A CIDR filter is matched row by row, NULLs included.
		inNet, err := s.Logs(ctx, LogQuery{Table: "blocked", Net: netip.MustParsePrefix("203.0.113.0/24")})
		if err != nil || len(inNet) != 1 {
			t.Errorf("Logs --ip 203.0.113.0/24: %d rows, %v", len(inNet), err)
		}
		since, err := s.Logs(ctx, LogQuery{Table: "blocked", Since: time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC), IP: netip.MustParseAddr("203.0.113.7")})
		if err != nil || len(since) != 1 {
			t.Errorf("Logs --since --ip: %d rows, %v", len(since), err)
		}
		allowed, err := s.Logs(ctx, LogQuery{Table: "allowed"})
		if err != nil || len(allowed) != 1 || allowed[0].DstIP != "192.0.2.1" {
			t.Errorf("allowed Logs: %+v, %v", allowed, err)
		}
		st, err := s.Stats(ctx, now)
		if err != nil {
			t.Fatalf("Stats: %v", err)
		}
		if st.Blocked != 2 || st.Allowed != 1 || len(st.TopBlocked) != 2 || len(st.Suppressed) != 0 {
			t.Errorf("Stats = %+v", st)
		}
		threats, err := s.Threats(ctx, 0)
		if err != nil || len(threats) != 1 || threats[0].Source != "Feodo Tracker" || threats[0].LastSeen != "2026-11-25 14:00:00.000" {
			t.Errorf("Threats: %+v, %v", threats, err)
		}
		loaded, err := s.LoadThreats(ctx)
		if err != nil || len(loaded) != 1 || !loaded[0].LastSeen.Equal(time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC)) {
			t.Errorf("LoadThreats: %+v, %v", loaded, err)
		}
	}

	t.Run("fwctl reads it", func(t *testing.T) {
		r, err := OpenReader(path)
		if err != nil {
			t.Fatalf("OpenReader: %v", err)
		}
		check(t, r)
		r.Close()
		if v := userVersion(t, path); v != 0 {
			t.Errorf("the reader changed user_version to %d", v)
		}
	})
	t.Run("pfwd adopts it", func(t *testing.T) {
		s, err := Open(path)
		if err != nil {
			t.Fatalf("Open: %v", err)
		}
		defer s.Close()
		check(t, s)
		if v := userVersion(t, path); v != schemaVersion {
			t.Errorf("user_version = %d after Open, want %d", v, schemaVersion)
		}
	})
}

// A version-0 file that is not the seed's is still refused, naming what is
// missing.
func TestOpenReaderRefusesOtherDatabases(t *testing.T) {
	for _, tt := range []struct{ name, schema, want string }{
		{"a table missing", `CREATE TABLE blocked_packets (id INTEGER PRIMARY KEY, timestamp TEXT, src_ip TEXT,
			dst_ip TEXT, src_port INTEGER, dst_port INTEGER, protocol TEXT, reason TEXT, packet_hash TEXT)`, "no table allowed_packets"},
		{"other columns", `CREATE TABLE blocked_packets (id INTEGER PRIMARY KEY, ts TEXT);
			CREATE TABLE allowed_packets (id INTEGER);
			CREATE TABLE threat_intel (ip TEXT)`, "table blocked_packets has columns [id ts]"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSeedDB(t, tt.schema)
			r, err := OpenReader(path)
			if err == nil {
				r.Close()
				t.Fatal("OpenReader succeeded")
			}
			if !strings.Contains(err.Error(), "not set up") || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q should say %q", err, tt.want)
			}
		})
	}
}

func userVersion(t *testing.T, path string) int {
	t.Helper()
	db, err := sql.Open("sqlite3", path)
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	var v int
	if err := db.QueryRow("PRAGMA user_version").Scan(&v); err != nil {
		t.Fatal(err)
	}
	return v
}

// A CIDR filter meets rows whose address is NULL or a number (a seed or
// hand-made row) without failing the query.
func TestLogsNetFilterOddRows(t *testing.T) {
	path := writeSeedDB(t, seedSchema+`
INSERT INTO blocked_packets (src_ip, dst_ip, protocol, reason) VALUES (NULL, '203.0.113.9', 'tcp', 'x');
INSERT INTO blocked_packets (src_ip, dst_ip, protocol, reason) VALUES (42, NULL, 'tcp', 'x');`)
	r, err := OpenReader(path)
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	rows, err := r.Logs(context.Background(), LogQuery{Table: "blocked", Net: netip.MustParsePrefix("203.0.113.0/24")})
	if err != nil || len(rows) != 2 {
		t.Errorf("Logs in 203.0.113.0/24: %+v, %v; want the seed row and the NULL-source one", rows, err)
	}
}
