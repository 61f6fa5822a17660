package store

import (
	"context"
	"database/sql"
	"fmt"
	"slices"
)

// schemaVersion is what PRAGMA user_version holds once migrate has run. Bump
// it and add a step to migrations when the schema changes; never edit a
// step that has shipped.
const schemaVersion = 1

// Table names. The packet tables are chosen from this fixed set, never from
// user input, so they may be spliced into SQL text.
const (
	tableBlocked    = "blocked_packets"
	tableAllowed    = "allowed_packets"
	tableThreats    = "threat_intel"
	tableSuppressed = "log_suppressed"
)

// migrations[i] takes the database from user_version i to i+1. Step 0 uses
// IF NOT EXISTS so a database made by the seed (same tables, no version) is
// adopted rather than rejected; requiredColumns then checks it fits.
var migrations = []string{
	0: `
CREATE TABLE IF NOT EXISTS blocked_packets (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	timestamp   TEXT NOT NULL,
	src_ip      TEXT NOT NULL,
	dst_ip      TEXT NOT NULL,
	src_port    INTEGER,
	dst_port    INTEGER,
	protocol    TEXT NOT NULL,
	reason      TEXT NOT NULL,
	packet_hash TEXT
);
CREATE INDEX IF NOT EXISTS blocked_packets_timestamp ON blocked_packets(timestamp);
CREATE INDEX IF NOT EXISTS blocked_packets_src_ip ON blocked_packets(src_ip);
CREATE INDEX IF NOT EXISTS blocked_packets_dst_ip ON blocked_packets(dst_ip);

CREATE TABLE IF NOT EXISTS allowed_packets (
	id          INTEGER PRIMARY KEY AUTOINCREMENT,
	timestamp   TEXT NOT NULL,
	src_ip      TEXT NOT NULL,
	dst_ip      TEXT NOT NULL,
	src_port    INTEGER,
	dst_port    INTEGER,
	protocol    TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS allowed_packets_timestamp ON allowed_packets(timestamp);
CREATE INDEX IF NOT EXISTS allowed_packets_src_ip ON allowed_packets(src_ip);
CREATE INDEX IF NOT EXISTS allowed_packets_dst_ip ON allowed_packets(dst_ip);

CREATE TABLE IF NOT EXISTS threat_intel (
	ip           TEXT PRIMARY KEY,
	threat_level TEXT NOT NULL,
	last_seen    TEXT NOT NULL,
	source       TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS threat_intel_source ON threat_intel(source);
CREATE INDEX IF NOT EXISTS threat_intel_last_seen ON threat_intel(last_seen);

CREATE TABLE IF NOT EXISTS log_suppressed (
	hour     TEXT NOT NULL,
	log_type TEXT NOT NULL,
	reason   TEXT NOT NULL,
	count    INTEGER NOT NULL,
	PRIMARY KEY (hour, log_type, reason)
) WITHOUT ROWID;
`,
}

// requiredColumns is the contract's schema: these columns, in this order,
// must start each table. Extra columns may follow.
var requiredColumns = map[string][]string{
	tableBlocked:    {"id", "timestamp", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "reason", "packet_hash"},
	tableAllowed:    {"id", "timestamp", "src_ip", "dst_ip", "src_port", "dst_port", "protocol"},
	tableThreats:    {"ip", "threat_level", "last_seen", "source"},
	tableSuppressed: {"hour", "log_type", "reason", "count"},
}

// migrate brings db to schemaVersion in one transaction, so a crash halfway
// leaves the old version in place, then checks the tables have the
// contract's columns.
func migrate(ctx context.Context, db *sql.DB) error {
	tx, err := db.BeginTx(ctx, nil)
	if err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	defer tx.Rollback()
	var version int
	if err := tx.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("migrate: read user_version: %w", err)
	}
	if version > schemaVersion {
		return fmt.Errorf("migrate: database schema version %d is newer than this pfw understands (%d)", version, schemaVersion)
	}
	for v := version; v < schemaVersion; v++ {
		if _, err := tx.ExecContext(ctx, migrations[v]); err != nil {
			return fmt.Errorf("migrate: version %d to %d: %w", v, v+1, err)
		}
	}
	if version != schemaVersion {
		// PRAGMA takes no bound parameters; the value is our own constant.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("migrate: set user_version: %w", err)
		}
	}
	if err := checkColumns(ctx, tx, allTables...); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// queryer is what both *sql.DB and *sql.Tx offer for reading.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// contractTables are the contract's (and the seed's) tables; allTables adds
// pfw's own.
var (
	contractTables = []string{tableBlocked, tableAllowed, tableThreats}
	allTables      = []string{tableBlocked, tableAllowed, tableThreats, tableSuppressed}
)

// checkColumns fails when one of tables is missing or lacks the contract's
// leading columns, as when a database from some other program sits at the
// configured path.
func checkColumns(ctx context.Context, q queryer, tables ...string) error {
	for _, table := range tables {
		want := requiredColumns[table]
		got, err := tableColumns(ctx, q, table)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return fmt.Errorf("no table %s", table)
		}
		if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			return fmt.Errorf("table %s has columns %v, want %v first", table, got, want)
		}
	}
	return nil
}

// tableColumns lists a table's column names in declaration order.
func tableColumns(ctx context.Context, q queryer, table string) ([]string, error) {
	rows, err := q.QueryContext(ctx, "SELECT name FROM pragma_table_info(?) ORDER BY cid", table)
	if err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	defer rows.Close()
	var cols []string
	for rows.Next() {
		var name string
		if err := rows.Scan(&name); err != nil {
			return nil, fmt.Errorf("columns of %s: %w", table, err)
		}
		cols = append(cols, name)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("columns of %s: %w", table, err)
	}
	return cols, nil
}
