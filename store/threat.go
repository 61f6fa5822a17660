package store

import (
	"context"
	"database/sql"
	"errors"
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

// parsePrefixText is PrefixText's inverse.
func parsePrefixText(s string) (netip.Prefix, error) {
	if a, err := netip.ParseAddr(s); err == nil {
		return netip.PrefixFrom(a, a.BitLen()), nil
	}
	p, err := netip.ParsePrefix(s)
	return p.Masked(), err
}

// ReplaceThreats makes the rows of source exactly entries, in one
// transaction: every entry is inserted or updated with level and seen, and
// the source's rows that are no longer listed are deleted, because a feed
// is the truth about its own entries. Empty entries therefore clear the
// source; a caller whose fetch failed should not call this at all.
//
// threat_intel has one row per address, so an entry listed by two feeds
// belongs to whichever replaced it last, and is deleted when that feed
// drops it even if the other still lists it (until the other's next
// refresh).
func (s *Store) ReplaceThreats(ctx context.Context, source, level string, entries []netip.Prefix, seen time.Time) error {
	if s.ReadOnly() {
		return fmt.Errorf("replace threats of %q: %w", source, ErrReadOnly)
	}
	if source == "" {
		return errors.New("replace threats: empty source")
	}
	keep := make(map[string]struct{}, len(entries))
	for i, p := range entries {
		if !p.IsValid() {
			return fmt.Errorf("replace threats of %q: entries[%d] is not a valid prefix", source, i)
		}
		keep[PrefixText(p)] = struct{}{}
	}
	if err := s.replaceThreats(ctx, source, level, keep, formatTime(seen)); err != nil {
		return fmt.Errorf("replace threats of %q: %w", source, err)
	}
	return nil
}

func (s *Store) replaceThreats(ctx context.Context, source, level string, keep map[string]struct{}, seen string) error {
	s.mu.RLock()
	defer s.mu.RUnlock()
	tx, err := s.write.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()

	// Find what goes first: the diff is done here rather than with
	// "NOT IN (...)" because a feed can list a hundred thousand entries.
	var stale []string
	err = scanAll(ctx, tx, `SELECT ip FROM threat_intel WHERE source = ?`, func(rows *sql.Rows) error {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return err
		}
		if _, ok := keep[ip]; !ok {
			stale = append(stale, ip)
		}
		return nil
	}, source)
	if err != nil {
		return err
	}
	del, err := tx.PrepareContext(ctx, `DELETE FROM threat_intel WHERE ip = ?`)
	if err != nil {
		return err
	}
	defer del.Close()
	for _, ip := range stale {
		if _, err := del.ExecContext(ctx, ip); err != nil {
			return err
		}
	}
	up, err := tx.PrepareContext(ctx, `INSERT INTO threat_intel (ip, threat_level, last_seen, source) VALUES (?, ?, ?, ?)
		ON CONFLICT (ip) DO UPDATE SET threat_level = excluded.threat_level,
			last_seen = excluded.last_seen, source = excluded.source`)
	if err != nil {
		return err
	}
	defer up.Close()
	for ip := range keep {
		if _, err := up.ExecContext(ctx, ip, level, seen, source); err != nil {
			return err
		}
	}
	return tx.Commit()
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
