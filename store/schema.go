package store

import (
	"context"
	"database/sql"
	"errors"
	"fmt"
	"slices"

	"github.com/mattn/go-sqlite3"
)

// schemaVersion is what PRAGMA user_version holds once migrate has run. Bump
// it and add a step to migrations when the schema changes; never edit a
// step that has shipped.
const schemaVersion = 2

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
// adopted rather than rejected; checkTables then checks it fits.
var migrations = []func(ctx context.Context, tx *sql.Tx) error{
	0: execStep(createTables),
	1: addDirection,
}

// createTables is migration step 0: the contract's tables and pfw's own.
const createTables = `
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
`

// execStep is a migration step that is plain SQL.
func execStep(q string) func(context.Context, *sql.Tx) error {
	return func(ctx context.Context, tx *sql.Tx) error {
		_, err := tx.ExecContext(ctx, q)
		return err
	}
}

// directionColumn is pfw's extra column of the packet tables: "in" or "out",
// the packet's direction, so that the remote address of a row is known
// (src_ip of an inbound packet, dst_ip of an outbound one). Rows written
// before it existed (and by the seed) hold NULL and count as inbound.
const directionColumn = "direction"

// remoteIPExpr is a packet row's remote address in SQL. The index
// blocked_packets_remote is on exactly this expression, which is what lets
// SQLite use it.
const remoteIPExpr = "CASE WHEN direction = 'out' THEN dst_ip ELSE src_ip END"

// addDirection is migration step 1: the direction column on both packet
// tables (unless a table already has one) and the index `fwctl stats`
// ranks remote addresses with.
func addDirection(ctx context.Context, tx *sql.Tx) error {
	for _, table := range []string{tableBlocked, tableAllowed} {
		cols, err := tableColumns(ctx, tx, table)
		if err != nil {
			return err
		}
		if slices.Contains(cols, directionColumn) {
			continue
		}
		if _, err := tx.ExecContext(ctx, "ALTER TABLE "+table+" ADD COLUMN "+directionColumn+" TEXT"); err != nil {
			return fmt.Errorf("add %s.%s: %w", table, directionColumn, err)
		}
	}
	if _, err := tx.ExecContext(ctx, "CREATE INDEX IF NOT EXISTS blocked_packets_remote ON blocked_packets("+remoteIPExpr+")"); err != nil {
		return fmt.Errorf("index remote addresses: %w", err)
	}
	return nil
}

// requiredColumns is the contract's schema: these columns, in this order,
// must start each table. Extra columns may follow.
var requiredColumns = map[string][]string{
	tableBlocked:    {"id", "timestamp", "src_ip", "dst_ip", "src_port", "dst_port", "protocol", "reason", "packet_hash"},
	tableAllowed:    {"id", "timestamp", "src_ip", "dst_ip", "src_port", "dst_port", "protocol"},
	tableThreats:    {"ip", "threat_level", "last_seen", "source"},
	tableSuppressed: {"hour", "log_type", "reason", "count"},
}

// writeProbes are statements of the shape pfw writes each table with.
// checkTables prepares them, never runs them, so that SQLite itself says
// whether a table takes pfw's writes: a view does not, nor a threat_intel
// whose ip has no PRIMARY KEY or UNIQUE constraint for ON CONFLICT (ip) to
// match (every feed save would fail). The threat_intel probe must keep the
// conflict target of the upsert in threat.go. A database not yet migrated
// is probed with the contract's columns only (oldWriteProbes): migrate adds
// pfw's own.
var (
	writeProbes = map[string]string{
		tableBlocked:    insertBlocked,
		tableAllowed:    insertAllowed,
		tableThreats:    `INSERT INTO threat_intel (ip, threat_level, last_seen, source) VALUES (?, ?, ?, ?) ON CONFLICT (ip) DO NOTHING`,
		tableSuppressed: upsertSuppressed,
	}
	oldWriteProbes = map[string]string{
		tableBlocked:    `INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, reason, packet_hash) VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
		tableAllowed:    `INSERT INTO allowed_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol) VALUES (?, ?, ?, ?, ?, ?)`,
		tableThreats:    writeProbes[tableThreats],
		tableSuppressed: upsertSuppressed,
	}
)

// misfitError says a database's schema is not one pfw can use: a table
// lacks the contract's leading columns or does not take pfw's writes, or
// the schema version is newer than this pfw. Open moves such a file aside
// like a corrupt one; OpenReader says the database is not set up.
type misfitError struct{ msg string }

func (e *misfitError) Error() string { return e.msg }

func misfitf(format string, args ...any) error {
	return &misfitError{msg: fmt.Sprintf(format, args...)}
}

func isMisfit(err error) bool {
	var m *misfitError
	return errors.As(err, &m)
}

// newerSchema is the misfit of a database written by a later pfw.
func newerSchema(version int) error {
	return misfitf("database schema version %d is newer than this pfw understands (%d)", version, schemaVersion)
}

// migrate brings db to schemaVersion in one transaction, so a crash halfway
// leaves the old version in place, then checks the tables fit. A database
// that does not fit fails with a misfitError and is left as it was.
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
		return fmt.Errorf("migrate: %w", newerSchema(version))
	}
	for v := version; v < schemaVersion; v++ {
		if err := migrations[v](ctx, tx); err != nil {
			return fmt.Errorf("migrate: version %d to %d: %w", v, v+1, err)
		}
	}
	if version != schemaVersion {
		// PRAGMA takes no bound parameters; the value is our own constant.
		if _, err := tx.ExecContext(ctx, fmt.Sprintf("PRAGMA user_version = %d", schemaVersion)); err != nil {
			return fmt.Errorf("migrate: set user_version: %w", err)
		}
	}
	if err := checkTables(ctx, tx, writeProbes, allTables...); err != nil {
		return fmt.Errorf("migrate: %w", err)
	}
	if err := tx.Commit(); err != nil {
		return fmt.Errorf("migrate: commit: %w", err)
	}
	return nil
}

// checkFits reports, with a misfitError, whether migrate would refuse the
// database, without changing it: Open asks before its read-write open,
// because switching to WAL rewrites the header of the file it would then
// move aside. A version-0 database fits when the tables it already has do,
// since migrations[0] creates only the missing ones.
func checkFits(ctx context.Context, q schemaQueryer) error {
	var version int
	if err := q.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version); err != nil {
		return fmt.Errorf("read user_version: %w", err)
	}
	switch {
	case version > schemaVersion:
		return newerSchema(version)
	case version == schemaVersion:
		return checkTables(ctx, q, writeProbes, allTables...)
	}
	var present []string
	for _, table := range allTables {
		cols, err := tableColumns(ctx, q, table)
		if err != nil {
			return err
		}
		if len(cols) > 0 {
			present = append(present, table)
		}
	}
	return checkTables(ctx, q, oldWriteProbes, present...)
}

// queryer is what both *sql.DB and *sql.Tx offer for reading.
type queryer interface {
	QueryContext(ctx context.Context, query string, args ...any) (*sql.Rows, error)
	QueryRowContext(ctx context.Context, query string, args ...any) *sql.Row
}

// schemaQueryer adds what checkTables needs to prepare its probes.
type schemaQueryer interface {
	queryer
	PrepareContext(ctx context.Context, query string) (*sql.Stmt, error)
}

// contractTables are the contract's (and the seed's) tables; allTables adds
// pfw's own.
var (
	contractTables = []string{tableBlocked, tableAllowed, tableThreats}
	allTables      = []string{tableBlocked, tableAllowed, tableThreats, tableSuppressed}
)

// checkTables fails with a misfitError when one of tables is missing, lacks
// the contract's leading columns, or does not take pfw's writes (see
// writeProbes), as when a database from some other program sits at the
// configured path.
func checkTables(ctx context.Context, q schemaQueryer, probes map[string]string, tables ...string) error {
	for _, table := range tables {
		want := requiredColumns[table]
		got, err := tableColumns(ctx, q, table)
		if err != nil {
			return err
		}
		if len(got) == 0 {
			return misfitf("no table %s", table)
		}
		if len(got) < len(want) || !slices.Equal(got[:len(want)], want) {
			return misfitf("table %s has columns %v, want %v first", table, got, want)
		}
		if err := probeWrites(ctx, q, table, probes[table]); err != nil {
			return err
		}
	}
	return nil
}

// probeWrites prepares the table's write probe. SQLite rejects a statement
// that cannot work on this schema with a plain SQLITE_ERROR; anything else
// (a corrupt file, an I/O error) is passed on as it is.
func probeWrites(ctx context.Context, q schemaQueryer, table, probe string) error {
	st, err := q.PrepareContext(ctx, probe)
	if err == nil {
		return st.Close()
	}
	var se sqlite3.Error
	if errors.As(err, &se) && se.Code == sqlite3.ErrError {
		return misfitf("table %s does not take pfw's writes (%v)", table, err)
	}
	return fmt.Errorf("check table %s: %w", table, err)
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
