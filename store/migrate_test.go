package store

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// version1Rows are rows an earlier pfw (schema version 1: no direction
// column) wrote: an inbound block, and an outbound one from this host
// (10.0.0.1) to a threat-feed address, which that pfw could not tell apart.
const version1Rows = `
INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, reason, packet_hash)
	VALUES ('2026-11-25 15:04:05.000', '203.0.113.7', '10.0.0.1', 40000, 23, 'tcp', 'Rule: Telnet', '0000000000000001'),
	       ('2026-11-25 15:04:06.000', '10.0.0.1', '192.0.2.66', 40001, 443, 'tcp', 'Threat intel: Feodo Tracker', '0000000000000002');
INSERT INTO allowed_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol)
	VALUES ('2026-11-25 15:04:07.000', '198.51.100.2', '10.0.0.1', 40002, 80, 'tcp');
PRAGMA user_version = 1;
`

// A database of the previous schema version is read by fwctl as it is
// (every row inbound, as that pfw ranked them) and migrated by pfwd, which
// keeps every row, adds the direction column and logs directions from then
// on; the ranking of remote addresses then counts this host's outbound
// blocks against the address it tried to reach.
func TestMigrateFromVersion1(t *testing.T) {
	ctx := context.Background()
	path := writeSeedDB(t, createTables+version1Rows)
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)

	r, err := OpenReader(path)
	if err != nil {
		t.Fatalf("OpenReader of a version-1 database: %v", err)
	}
	rows, err := r.Logs(ctx, LogQuery{})
	if err != nil || len(rows) != 2 || rows[0].Direction != "" {
		t.Errorf("Logs of a version-1 database: %+v, %v", rows, err)
	}
	st, err := r.Stats(ctx, now)
	if err != nil {
		t.Fatalf("Stats of a version-1 database: %v", err)
	}
	if want := []IPCount{{"10.0.0.1", 1}, {"203.0.113.7", 1}}; !cmp.Equal(st.TopBlocked, want) {
		t.Errorf("version-1 top blocked = %v, want %v (by src_ip, as it was)", st.TopBlocked, want)
	}
	r.Close()
	if v := userVersion(t, path); v != 1 {
		t.Fatalf("fwctl changed user_version to %d", v)
	}

	s, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	defer s.Close()
	if s.MovedAside() != "" {
		t.Fatalf("a version-1 database was moved aside: %s", s.MovedAsideReason())
	}
	if v := userVersion(t, path); v != schemaVersion {
		t.Errorf("user_version = %d after Open, want %d", v, schemaVersion)
	}
	for _, table := range []string{tableBlocked, tableAllowed} {
		cols, err := tableColumns(ctx, s.read, table)
		if err != nil || !slices.Contains(cols, directionColumn) {
			t.Errorf("%s columns after migration: %v, %v", table, cols, err)
		}
	}
	// The old rows stay, with no direction; new rows say theirs.
	w := startWriter(t, s, WriterConfig{}, nil)
	out := tcpRow(now, "10.0.0.1", "192.0.2.66", "Threat intel: Feodo Tracker")
	out.Outbound = true
	w.Blocked(out)
	flush(t, w)
	rows, err = s.Logs(ctx, LogQuery{})
	if err != nil {
		t.Fatal(err)
	}
	var dirs []string
	for _, row := range rows {
		dirs = append(dirs, row.Direction)
	}
	if want := []string{"out", "", ""}; !slices.Equal(dirs, want) {
		t.Errorf("directions, newest first = %q, want %q", dirs, want)
	}
	st, err = s.Stats(ctx, now)
	if err != nil {
		t.Fatal(err)
	}
	if want := []IPCount{{"10.0.0.1", 1}, {"192.0.2.66", 1}, {"203.0.113.7", 1}}; !cmp.Equal(st.TopBlocked, want) {
		t.Errorf("top blocked after migration = %v, want %v", st.TopBlocked, want)
	}
}

// The ranking of remote addresses is answered from its index, not by
// sorting the whole table: `fwctl stats` stays quick on a large log.
func TestTopBlockedUsesIndex(t *testing.T) {
	s := openTemp(t)
	var plan []string
	rows, err := s.read.Query(`EXPLAIN QUERY PLAN SELECT ` + remoteIPExpr + ` AS ip, count(*) AS n
		FROM blocked_packets GROUP BY ` + remoteIPExpr)
	if err != nil {
		t.Fatal(err)
	}
	defer rows.Close()
	for rows.Next() {
		var id, parent, notUsed int
		var detail string
		if err := rows.Scan(&id, &parent, &notUsed, &detail); err != nil {
			t.Fatal(err)
		}
		plan = append(plan, detail)
	}
	if !slices.ContainsFunc(plan, func(d string) bool { return d == "SCAN blocked_packets USING INDEX blocked_packets_remote" }) ||
		slices.ContainsFunc(plan, func(d string) bool { return d == "USE TEMP B-TREE FOR GROUP BY" }) {
		t.Errorf("query plan %q, want a scan of blocked_packets_remote", plan)
	}
}
