package store

import (
	"context"
	"database/sql"
	"fmt"
	"net/netip"
	"time"
)

// Threat is one threat_intel entry, parsed.
type Threat struct {
	IP       netip.Prefix // a single address is a /32 or /128
	Level    string
	LastSeen time.Time
	Source   string // the feed's name
}

// ThreatRow is one threat_intel row as fwctl shows it; JSON keys are the
// column names.
type ThreatRow struct {
	IP          string `json:"ip"`
	ThreatLevel string `json:"threat_level"`
	LastSeen    string `json:"last_seen"`
	Source      string `json:"source"`
}

// PrefixText is how threat_intel.ip spells a prefix: the bare address for a
// single address ("203.0.113.7"), CIDR text otherwise ("192.0.2.0/24").
// Host bits are cleared first, so each network has one spelling.
func PrefixText(p netip.Prefix) string {
	p = p.Masked()
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

// parsePrefixText is PrefixText's inverse. It also reads what pfw never
// writes but a hand-made row may hold: an IPv4-mapped IPv6 address or
// network ("::ffff:203.0.113.7") is the IPv4 one it stands for, as pfwd
// sees such packets and as the config reads such entries, so it matches.
func parsePrefixText(s string) (netip.Prefix, error) {
	p, err := netip.ParsePrefix(s)
	if a, aerr := netip.ParseAddr(s); aerr == nil {
		if a.Zone() != "" {
			return netip.Prefix{}, fmt.Errorf("%q: an address with a zone is no threat entry", s)
		}
		p, err = netip.PrefixFrom(a, a.BitLen()), nil
	}
	if err != nil {
		return netip.Prefix{}, err
	}
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked(), nil
}

// Threats returns up to limit rows (all when limit <= 0), newest last_seen
// first.
func (s *Store) Threats(ctx context.Context, limit int) ([]ThreatRow, error) {
	q := `SELECT ip, threat_level, last_seen, source FROM threat_intel ORDER BY last_seen DESC, ip`
	var args []any
	if limit > 0 {
		q += " LIMIT ?"
		args = append(args, limit)
	}
	out := []ThreatRow{}
	s.mu.RLock()
	defer s.mu.RUnlock()
	err := scanAll(ctx, s.read, q, func(rows *sql.Rows) error {
		var t ThreatRow
		err := rows.Scan(text{&t.IP}, text{&t.ThreatLevel}, text{&t.LastSeen}, text{&t.Source})
		out = append(out, t)
		return err
	}, args...)
	if err != nil {
		return nil, fmt.Errorf("threats: %w", err)
	}
	return out, nil
}

// LoadThreats returns every threat_intel entry, so pfwd can block known
// threats from its first packet, before any feed is fetched. Rows whose ip
// does not parse can only come from hand edits; they are skipped rather
// than failing start-up.
func (s *Store) LoadThreats(ctx context.Context) ([]Threat, error) {
	var out []Threat
	s.mu.RLock()
	defer s.mu.RUnlock()
	err := scanAll(ctx, s.read, `SELECT ip, threat_level, last_seen, source FROM threat_intel`, func(rows *sql.Rows) error {
		var ip, seen string
		var t Threat
		if err := rows.Scan(text{&ip}, text{&t.Level}, text{&seen}, text{&t.Source}); err != nil {
			return err
		}
		p, err := parsePrefixText(ip)
		if err != nil {
			return nil
		}
		t.IP = p
		t.LastSeen, _ = time.Parse(timeLayout, seen) // zero when hand-edited
		out = append(out, t)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("load threats: %w", err)
	}
	return out, nil
}

// ThreatsBySource groups threat entries (LoadThreats' rows) by the feed
// that listed them, keeping their order within each feed. It is what pfwd
// seeds its feeds with at start and what fwctl explain checks; which of
// the feeds still count is the config's to say (verdict.CompileIntel uses
// the configured ones, in config order). The map is never nil.
func ThreatsBySource(rows []Threat) map[string][]netip.Prefix {
	bySource := make(map[string][]netip.Prefix)
	for _, t := range rows {
		bySource[t.Source] = append(bySource[t.Source], t.IP)
	}
	return bySource
}

// FeedThreats is one feed's entries, as SetThreats takes them.
type FeedThreats struct {
	Source  string // the feed's name
	Level   string
	Entries []netip.Prefix
	// Seen is when the feed last listed the entries. Zero keeps the time a
	// row has when the row stays this feed's (a feed not refreshed since),
	// and stamps now otherwise.
	Seen time.Time
}

// SetThreats makes threat_intel hold exactly the entries of feeds, by
// difference in one transaction: rows no feed lists go, rows whose level,
// source or time change are written, the rest are left alone. threat_intel
// has one row per address, so an entry that several feeds list belongs to
// the first of them in feeds: pfwd passes its feeds in config order, which
// is also the feed its pipeline names in the block reason ("Threat intel:
// <feed>"), so fwctl explain and threats agree with it. Removing a feed, or
// one feed dropping an entry, leaves the entry to the next feed that still
// lists it.
func (s *Store) SetThreats(ctx context.Context, feeds []FeedThreats, now time.Time) error {
	if s.ReadOnly() {
		return fmt.Errorf("set threats: %w", ErrReadOnly)
	}
	for i, f := range feeds {
		if f.Source == "" {
			return fmt.Errorf("set threats: feeds[%d] has an empty source", i)
		}
		for j, p := range f.Entries {
			if !p.IsValid() {
				return fmt.Errorf("set threats of %q: entries[%d] is not a valid prefix", f.Source, j)
			}
		}
	}
	if err := s.setThreats(ctx, feeds, formatTime(now)); err != nil {
		return fmt.Errorf("set threats: %w", err)
	}
	return nil
}

// setThreats stages the wanted rows in a temporary table and lets SQLite
// do the difference: a feed can list a quarter of a million entries, and
// holding them (and the table's rows) in Go maps would cost pfwd tens of
// MiB for a moment every time a feed is refreshed.
func (s *Store) setThreats(ctx context.Context, feeds []FeedThreats, now string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// seen is NULL for "keep the row's time if it stays this source's".
	for _, q := range []string{
		`CREATE TEMP TABLE IF NOT EXISTS threat_want (ip TEXT PRIMARY KEY, level TEXT NOT NULL,
			source TEXT NOT NULL, seen TEXT) WITHOUT ROWID`,
		`DELETE FROM temp.threat_want`,
	} {
		if _, err := tx.ExecContext(ctx, q); err != nil {
			return err
		}
	}
	// OR IGNORE: the first feed that lists an entry keeps it.
	ins, err := tx.PrepareContext(ctx, `INSERT OR IGNORE INTO temp.threat_want VALUES (?, ?, ?, ?)`)
	if err != nil {
		return err
	}
	defer ins.Close()
	for _, f := range feeds {
		var seen any // NULL
		if !f.Seen.IsZero() {
			seen = formatTime(f.Seen)
		}
		for _, p := range f.Entries {
			if _, err := ins.ExecContext(ctx, PrefixText(p), f.Level, f.Source, seen); err != nil {
				return err
			}
		}
	}
	for _, q := range []struct {
		sql  string
		args []any
	}{
		{`DELETE FROM threat_intel WHERE ip NOT IN (SELECT ip FROM temp.threat_want)`, nil},
		// A row that stays its source's with no new time keeps its time;
		// rows that change nothing are not written at all.
		{`INSERT INTO threat_intel (ip, threat_level, last_seen, source)
			SELECT w.ip, w.level,
				CASE WHEN w.seen IS NOT NULL THEN w.seen
				     WHEN t.source = w.source THEN t.last_seen
				     ELSE ?1 END,
				w.source
			FROM temp.threat_want w LEFT JOIN threat_intel t ON t.ip = w.ip
			WHERE t.ip IS NULL OR t.source IS NOT w.source OR t.threat_level IS NOT w.level
				OR (w.seen IS NOT NULL AND t.last_seen IS NOT w.seen)
			ON CONFLICT (ip) DO UPDATE SET threat_level = excluded.threat_level,
				last_seen = excluded.last_seen, source = excluded.source`, []any{now}},
		{`DELETE FROM temp.threat_want`, nil},
	} {
		if _, err := tx.ExecContext(ctx, q.sql, q.args...); err != nil {
			return err
		}
	}
	return tx.Commit()
}
