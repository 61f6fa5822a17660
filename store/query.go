package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"strings"
	"time"
)

// LogQuery selects packet log rows.
type LogQuery struct {
	Table string     // "blocked" (also when empty) or "allowed"
	Limit int        // at most this many rows; 0 or less: all
	IP    netip.Addr // when valid, rows whose src_ip or dst_ip is this address
	// Net, when valid, selects rows whose src_ip or dst_ip lies in it. It
	// is matched row by row (no index), so a single address is better
	// asked for through IP.
	Net   netip.Prefix
	Since time.Time // when non-zero, rows stamped at or after it
	// AfterID > 0, or Follow, selects rows with id > AfterID oldest first,
	// for `fwctl logs --follow`: remember the last ID shown and ask again.
	// Otherwise rows come newest first.
	AfterID int64
	Follow  bool
}

// LogRow is one packet log row as fwctl shows it. JSON keys are the column
// names. Ports are nil when the packet had none; Reason and PacketHash are
// empty for allowed rows; Direction ("in" or "out") is empty for rows
// written before pfw logged it.
type LogRow struct {
	ID         int64  `json:"id"`
	Timestamp  string `json:"timestamp"`
	SrcIP      string `json:"src_ip"`
	DstIP      string `json:"dst_ip"`
	SrcPort    *int   `json:"src_port"`
	DstPort    *int   `json:"dst_port"`
	Protocol   string `json:"protocol"`
	Reason     string `json:"reason,omitempty"`
	PacketHash string `json:"packet_hash,omitempty"`
	Direction  string `json:"direction,omitempty"`
}

// logTable maps LogQuery.Table to a table name and whether it has the
// blocked-only columns.
func logTable(name string) (table string, blocked bool, err error) {
	switch name {
	case "", "blocked":
		return tableBlocked, true, nil
	case "allowed":
		return tableAllowed, false, nil
	}
	return "", false, fmt.Errorf("unknown log type %q (want blocked or allowed)", name)
}

// Logs returns the rows q selects.
func (s *Store) Logs(ctx context.Context, q LogQuery) ([]LogRow, error) {
	table, blocked, err := logTable(q.Table)
	if err != nil {
		return nil, fmt.Errorf("logs: %w", err)
	}
	var b strings.Builder
	b.WriteString("SELECT id, timestamp, src_ip, dst_ip, src_port, dst_port, protocol")
	if blocked {
		b.WriteString(", reason, coalesce(packet_hash, '')")
	}
	if s.noDirection {
		b.WriteString(", NULL")
	} else {
		b.WriteString(", " + directionColumn)
	}
	b.WriteString(" FROM " + table + " WHERE 1")
	var args []any
	if q.IP.IsValid() {
		ip := q.IP.String()
		b.WriteString(" AND (src_ip = ? OR dst_ip = ?)")
		args = append(args, ip, ip)
	}
	if q.Net.IsValid() {
		n := q.Net.Masked().String()
		b.WriteString(" AND (pfw_in_prefix(src_ip, ?) OR pfw_in_prefix(dst_ip, ?))")
		args = append(args, n, n)
	}
	if !q.Since.IsZero() {
		b.WriteString(" AND timestamp >= ?")
		args = append(args, sinceText(q.Since))
	}
	if q.Follow || q.AfterID > 0 {
		b.WriteString(" AND id > ? ORDER BY id ASC")
		args = append(args, q.AfterID)
	} else {
		b.WriteString(" ORDER BY id DESC")
	}
	if q.Limit > 0 {
		b.WriteString(" LIMIT ?")
		args = append(args, q.Limit)
	}

	s.mu.RLock()
	defer s.mu.RUnlock()
	rows, err := s.read.QueryContext(ctx, b.String(), args...)
	if err != nil {
		return nil, fmt.Errorf("logs from %s: %w", table, err)
	}
	defer rows.Close()
	out := []LogRow{}
	for rows.Next() {
		var r LogRow
		dest := []any{&r.ID, text{&r.Timestamp}, text{&r.SrcIP}, text{&r.DstIP}, port{&r.SrcPort}, port{&r.DstPort}, text{&r.Protocol}}
		if blocked {
			dest = append(dest, text{&r.Reason}, text{&r.PacketHash})
		}
		dest = append(dest, text{&r.Direction})
		if err := rows.Scan(dest...); err != nil {
			return nil, fmt.Errorf("logs from %s: %w", table, err)
		}
		out = append(out, r)
	}
	if err := rows.Err(); err != nil {
		return nil, fmt.Errorf("logs from %s: %w", table, err)
	}
	return out, nil
}

// Stats is what `fwctl stats` shows. JSON keys are snake_case.
type Stats struct {
	Blocked    int64             `json:"blocked"`     // rows in blocked_packets
	Allowed    int64             `json:"allowed"`     // rows in allowed_packets (sampled)
	TopBlocked []IPCount         `json:"top_blocked"` // the 10 remote addresses with most blocked rows
	ByReason   []ReasonCount     `json:"by_reason"`   // blocked rows per reason, largest first
	LastDay    []HourCount       `json:"last_day"`    // blocked rows in each of the last 24 hours, oldest first, empty hours included
	Suppressed []SuppressedCount `json:"suppressed"`  // rows counted instead of written, per log type and reason
}

// IPCount is one row of Stats.TopBlocked.
type IPCount struct {
	IP    string `json:"ip"`
	Count int64  `json:"count"`
}

// ReasonCount is one row of Stats.ByReason.
type ReasonCount struct {
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// HourCount is one row of Stats.LastDay. Hour is the UTC hour's start,
// "2026-11-25 15:00".
type HourCount struct {
	Hour  string `json:"hour"`
	Count int64  `json:"count"`
}

// SuppressedCount is a number of rows not written because of the cap or a
// full buffer. Type is "blocked" or "allowed".
type SuppressedCount struct {
	Type   string `json:"type"`
	Reason string `json:"reason"`
	Count  int64  `json:"count"`
}

// Stats summarises the log as of now (which sets the 24-hour window). The
// queries run in one read transaction, so the figures agree with each
// other even while pfwd writes.
func (s *Store) Stats(ctx context.Context, now time.Time) (Stats, error) {
	st := Stats{TopBlocked: []IPCount{}, ByReason: []ReasonCount{}, Suppressed: []SuppressedCount{}}
	s.mu.RLock()
	defer s.mu.RUnlock()
	tx, err := s.read.BeginTx(ctx, &sql.TxOptions{ReadOnly: true})
	if err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	defer tx.Rollback()

	if st.Blocked, err = countRows(ctx, tx, tableBlocked); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	if st.Allowed, err = countRows(ctx, tx, tableAllowed); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	if st.TopBlocked, err = topBlocked(ctx, tx, s.noDirection); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	if st.ByReason, err = byReason(ctx, tx); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	if st.LastDay, err = lastDay(ctx, tx, now); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	if st.Suppressed, err = suppressed(ctx, tx); err != nil {
		return st, fmt.Errorf("stats: %w", err)
	}
	return st, nil
}

// countRows counts the rows of a packet table.
func countRows(ctx context.Context, tx *sql.Tx, table string) (int64, error) {
	var n int64
	if err := tx.QueryRowContext(ctx, "SELECT count(*) FROM "+table).Scan(&n); err != nil {
		return 0, fmt.Errorf("count %s: %w", table, err)
	}
	return n, nil
}

// topBlocked ranks the 10 remote addresses with the most blocked rows: the
// source of an inbound packet, the destination of an outbound one, so that
// blocks of this host's own connections count against the address it
// tried to reach, not itself. Rows of a table without a direction column
// (noDirection) are all inbound.
func topBlocked(ctx context.Context, tx *sql.Tx, noDirection bool) ([]IPCount, error) {
	remote := remoteIPExpr
	if noDirection {
		remote = "src_ip"
	}
	out := []IPCount{}
	err := scanAll(ctx, tx, `SELECT `+remote+` AS ip, count(*) AS n FROM blocked_packets
		GROUP BY `+remote+` ORDER BY n DESC, ip LIMIT 10`,
		func(rows *sql.Rows) error {
			var c IPCount
			err := rows.Scan(text{&c.IP}, &c.Count)
			out = append(out, c)
			return err
		})
	if err != nil {
		return out, fmt.Errorf("top blocked: %w", err)
	}
	return out, nil
}

// byReason counts blocked rows per reason, largest first.
func byReason(ctx context.Context, tx *sql.Tx) ([]ReasonCount, error) {
	out := []ReasonCount{}
	err := scanAll(ctx, tx, `SELECT reason, count(*) AS n FROM blocked_packets
		GROUP BY reason ORDER BY n DESC, reason`,
		func(rows *sql.Rows) error {
			var c ReasonCount
			err := rows.Scan(text{&c.Reason}, &c.Count)
			out = append(out, c)
			return err
		})
	if err != nil {
		return out, fmt.Errorf("by reason: %w", err)
	}
	return out, nil
}

// lastDay counts blocked rows in each of the 24 hours ending with now's,
// oldest first, empty hours included.
func lastDay(ctx context.Context, tx *sql.Tx, now time.Time) ([]HourCount, error) {
	// The text of an hour is a prefix of the timestamps in it, so substr
	// groups them.
	first := now.UTC().Truncate(time.Hour).Add(-23 * time.Hour)
	out := make([]HourCount, 24)
	index := make(map[string]int, 24)
	for i := range out {
		h := hourOf(first.Add(time.Duration(i) * time.Hour))
		out[i].Hour = h
		index[h[:13]] = i
	}
	err := scanAll(ctx, tx, `SELECT substr(timestamp, 1, 13) AS h, count(*) FROM blocked_packets
		WHERE timestamp >= ? GROUP BY h`,
		func(rows *sql.Rows) error {
			var h string
			var n int64
			if err := rows.Scan(text{&h}, &n); err != nil {
				return err
			}
			if i, ok := index[h]; ok { // rows stamped in the future are not shown
				out[i].Count = n
			}
			return nil
		}, sinceText(first))
	if err != nil {
		return out, fmt.Errorf("last day: %w", err)
	}
	return out, nil
}

// suppressed sums the rows counted instead of written, per log type and
// reason. A seed database that pfwd has not adopted yet has no
// log_suppressed table (see checkReadable): then nothing was suppressed.
func suppressed(ctx context.Context, tx *sql.Tx) ([]SuppressedCount, error) {
	out := []SuppressedCount{}
	var hasSuppressed bool
	err := tx.QueryRowContext(ctx, `SELECT count(*) > 0 FROM sqlite_schema
		WHERE type = 'table' AND name = 'log_suppressed'`).Scan(&hasSuppressed)
	if err != nil {
		return out, fmt.Errorf("suppressed: %w", err)
	}
	if !hasSuppressed {
		return out, nil
	}
	err = scanAll(ctx, tx, `SELECT log_type, reason, sum(count) FROM log_suppressed
		GROUP BY log_type, reason`,
		func(rows *sql.Rows) error {
			var c SuppressedCount
			err := rows.Scan(&c.Type, &c.Reason, &c.Count)
			out = append(out, c)
			return err
		})
	if err != nil {
		return out, fmt.Errorf("suppressed: %w", err)
	}
	sortSuppressed(out)
	return out, nil
}

// scanAll runs query and calls scan for each row.
func scanAll(ctx context.Context, q queryer, query string, scan func(*sql.Rows) error, args ...any) error {
	rows, err := q.QueryContext(ctx, query, args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		if err := scan(rows); err != nil {
			return err
		}
	}
	return rows.Err()
}

// sinceText is the lower bound for a timestamp range. On a whole second it
// drops the ".000", so a row stamped without milliseconds (the seed's
// CURRENT_TIMESTAMP, a hand edit) at that very second is still included:
// as text "…:05" sorts before "…:05.000".
func sinceText(t time.Time) string {
	s := formatTime(t)
	return strings.TrimSuffix(s, ".000")
}
