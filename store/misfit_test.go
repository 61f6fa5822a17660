package store

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"strings"
	"testing"
)

// pfwSchema is the schema Open makes, at its version, for tests that
// change one thing in it.
var pfwSchema = createTables + `
ALTER TABLE blocked_packets ADD COLUMN direction TEXT;
ALTER TABLE allowed_packets ADD COLUMN direction TEXT;
CREATE INDEX blocked_packets_remote ON blocked_packets(` + remoteIPExpr + `);
` + fmt.Sprintf("PRAGMA user_version = %d;\n", schemaVersion)

// An SQLite file whose schema pfwd cannot use is moved aside whole, like a
// corrupt one, and a fresh database takes its place: pfwd keeps logging
// (and keeps the host protected) instead of exiting. fwctl, which never
// changes the file, says it is not set up.
func TestOpenMovesMisfitAside(t *testing.T) {
	seedThreatsNoKey := strings.Replace(seedSchema, "ip TEXT PRIMARY KEY", "ip TEXT", 1)
	tests := []struct {
		name, schema string
		want         string // in MovedAsideReason and OpenReader's error
		newer        bool   // OpenReader says newer, not "not set up"
	}{
		{
			name:   "blocked_packets without packet_hash",
			schema: strings.Replace(seedSchema, "reason TEXT, packet_hash TEXT);", "reason TEXT);", 1),
			want:   "table blocked_packets has columns [id timestamp src_ip dst_ip src_port dst_port protocol reason], want",
		},
		{
			name: "other columns", want: "table blocked_packets has columns [id ts]",
			schema: `CREATE TABLE blocked_packets (id INTEGER PRIMARY KEY, ts TEXT);
				CREATE TABLE allowed_packets (id INTEGER);
				CREATE TABLE threat_intel (ip TEXT PRIMARY KEY)`,
		},
		{
			name: "threat_intel without a primary key", schema: seedThreatsNoKey,
			want: "table threat_intel does not take pfw's writes (ON CONFLICT clause does not match",
		},
		{
			name: "threat_intel keyed by a partial index", want: "table threat_intel does not take pfw's writes",
			schema: seedThreatsNoKey + "CREATE UNIQUE INDEX threat_intel_ip ON threat_intel(ip) WHERE ip <> '';",
		},
		{
			name: "a view for a table", want: "table allowed_packets does not take pfw's writes",
			schema: strings.Replace(strings.Replace(seedSchema, "INSERT INTO allowed_packets", "INSERT INTO other_allowed", 1),
				"CREATE TABLE allowed_packets", "CREATE TABLE other_allowed", 1) +
				"CREATE VIEW allowed_packets AS SELECT * FROM other_allowed;",
		},
		{
			name: "log_suppressed without its key", want: "table log_suppressed does not take pfw's writes",
			schema: pfwSchema + `DROP TABLE log_suppressed;
				CREATE TABLE log_suppressed (hour TEXT, log_type TEXT, reason TEXT, count INTEGER);`,
		},
		{
			name: "no log_suppressed at pfw's version", want: "no table log_suppressed",
			schema: pfwSchema + "DROP TABLE log_suppressed;",
		},
		{
			name: "a newer schema", newer: true,
			want:   fmt.Sprintf("database schema version %d is newer than this pfw understands (%d)", schemaVersion+1, schemaVersion),
			schema: createTables + fmt.Sprintf("PRAGMA user_version = %d;", schemaVersion+1),
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ctx := context.Background()
			path := writeSeedDB(t, tt.schema)
			before, err := os.ReadFile(path)
			if err != nil {
				t.Fatal(err)
			}

			r, err := OpenReader(path)
			if err == nil {
				r.Close()
				t.Fatal("OpenReader succeeded")
			}
			if !strings.Contains(err.Error(), tt.want) || tt.newer == strings.Contains(err.Error(), "not set up") {
				t.Errorf("OpenReader: %q, want it to say %q and, unless newer, \"not set up\"", err, tt.want)
			}

			s, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			checkMovedAside(t, s, path, before, tt.want)
			// The fresh database takes every kind of write.
			if err := s.SetThreats(ctx, []FeedThreats{{Source: "feed", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Seen: t0}}, t0); err != nil {
				t.Errorf("SetThreats on the fresh database: %v", err)
			}
			w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1}, nil)
			w.Blocked(tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"))
			w.BlockedNotLogged("Rule: Telnet", 3)
			flush(t, w)
			if n := countIn(t, path, "blocked_packets"); n != 1 {
				t.Errorf("the fresh database has %d blocked rows, want 1", n)
			}
			if v := userVersion(t, path); v != schemaVersion {
				t.Errorf("fresh database at user_version %d, want %d", v, schemaVersion)
			}
		})
	}
}

// What pfwd can adopt stays where it is, rows and all: migrations[0]
// creates only the tables that are missing.
func TestOpenAdoptsWhatFits(t *testing.T) {
	tests := []struct {
		name, schema string
		blocked      int64 // rows kept
	}{
		{"the seed's database", seedSchema, 2},
		{"threat_intel keyed by a unique index", strings.Replace(seedSchema, "ip TEXT PRIMARY KEY", "ip TEXT", 1) +
			"CREATE UNIQUE INDEX threat_intel_ip ON threat_intel(ip);", 2},
		{"only blocked_packets", `CREATE TABLE blocked_packets (id INTEGER PRIMARY KEY AUTOINCREMENT,
			timestamp TEXT, src_ip TEXT, dst_ip TEXT, src_port INTEGER, dst_port INTEGER, protocol TEXT,
			reason TEXT, packet_hash TEXT, extra TEXT);
			INSERT INTO blocked_packets (src_ip) VALUES ('203.0.113.7');`, 1},
		{"another program's table besides", seedSchema + "CREATE TABLE notes (text TEXT);", 2},
		{"an empty database", "PRAGMA user_version = 0;", 0},
		{"pfw's own", pfwSchema, 0},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			path := writeSeedDB(t, tt.schema)
			s, err := Open(path)
			if err != nil {
				t.Fatalf("Open: %v", err)
			}
			defer s.Close()
			if aside := s.MovedAside(); aside != "" {
				t.Fatalf("moved to %s (%s)", aside, s.MovedAsideReason())
			}
			if n := count(t, s, "blocked_packets"); n != tt.blocked {
				t.Errorf("%d blocked rows after Open, want the %d there were", n, tt.blocked)
			}
			if err := s.SetThreats(context.Background(), []FeedThreats{{Source: "feed", Level: "high", Entries: []netip.Prefix{netip.MustParsePrefix("192.0.2.0/24")}, Seen: t0}}, t0); err != nil {
				t.Errorf("SetThreats: %v", err)
			}
			if v := userVersion(t, path); v != schemaVersion {
				t.Errorf("user_version %d after Open, want %d", v, schemaVersion)
			}
		})
	}
}
