package store

import (
	"cmp"
	"context"
	"fmt"
	"time"
)

// Retention bounds the packet tables. Zero fields take the defaults noted;
// a negative field switches that bound off.
//
// By default the packet tables are bounded by their number of rows, not
// by age: they are an audit log, and one adopted from the seed (or kept
// across an upgrade) may hold months of history its owner still reads; a
// row count bounds the disk all the same (a million rows take about
// 150 MB).
type Retention struct {
	MaxAge           time.Duration // packet rows older than this go (default: kept whatever their age)
	MaxRows          int           // rows per packet table beyond this go, oldest first (default 1,000,000)
	SuppressedMaxAge time.Duration // log_suppressed hours older than this go (default 30 days)
	Every            time.Duration // how often a Writer's Run prunes (default 10 minutes)
}

func (r Retention) withDefaults() Retention {
	r.MaxRows = cmp.Or(r.MaxRows, 1_000_000)
	r.SuppressedMaxAge = cmp.Or(r.SuppressedMaxAge, 30*24*time.Hour)
	r.Every = cmp.Or(r.Every, 10*time.Minute)
	return r
}

// Pruned counts the rows one Prune deleted.
type Pruned struct {
	Blocked, Allowed, Suppressed int64
}

// pruneChunk is how many rows one DELETE removes. Each chunk is its own
// transaction, so the write lock is held for milliseconds at a time and
// a first prune of a huge backlog does not stall other writers for seconds.
const pruneChunk = 5000

// Prune deletes packet rows older than r.MaxAge before now, then the oldest
// rows beyond r.MaxRows in each packet table, then log_suppressed hours
// older than r.SuppressedMaxAge. Deleted space is reused by later rows; the file does
// not shrink.
func (s *Store) Prune(ctx context.Context, r Retention, now time.Time) (Pruned, error) {
	var p Pruned
	if s.ReadOnly() {
		return p, fmt.Errorf("prune: %w", ErrReadOnly)
	}
	r = r.withDefaults()
	s.mu.RLock()
	defer s.mu.RUnlock()
	for _, t := range []struct {
		table string
		n     *int64
	}{{tableBlocked, &p.Blocked}, {tableAllowed, &p.Allowed}} {
		if r.MaxAge > 0 {
			cutoff := formatTime(now.Add(-r.MaxAge))
			n, err := s.deleteChunked(ctx, `DELETE FROM `+t.table+` WHERE id IN
				(SELECT id FROM `+t.table+` WHERE timestamp < ? LIMIT ?)`, cutoff)
			*t.n += n
			if err != nil {
				return p, fmt.Errorf("prune %s older than %s: %w", t.table, cutoff, err)
			}
		}
		if r.MaxRows > 0 {
			// ids only grow (AUTOINCREMENT), so the MaxRows newest rows are
			// the MaxRows highest ids and everything at or below the next
			// one goes.
			var last int64
			err := s.write.QueryRowContext(ctx, `SELECT coalesce(
				(SELECT id FROM `+t.table+` ORDER BY id DESC LIMIT 1 OFFSET ?), 0)`, r.MaxRows).Scan(&last)
			if err != nil {
				return p, fmt.Errorf("prune %s beyond %d rows: %w", t.table, r.MaxRows, err)
			}
			if last > 0 {
				n, err := s.deleteChunked(ctx, `DELETE FROM `+t.table+` WHERE id IN
					(SELECT id FROM `+t.table+` WHERE id <= ? ORDER BY id LIMIT ?)`, last)
				*t.n += n
				if err != nil {
					return p, fmt.Errorf("prune %s beyond %d rows: %w", t.table, r.MaxRows, err)
				}
			}
		}
	}
	if r.SuppressedMaxAge > 0 {
		// The hour the cutoff falls in stays: part of it is young enough.
		cutoff := hourOf(now.Add(-r.SuppressedMaxAge))
		res, err := s.write.ExecContext(ctx, `DELETE FROM log_suppressed WHERE hour < ?`, cutoff)
		if err != nil {
			return p, fmt.Errorf("prune log_suppressed older than %s: %w", cutoff, err)
		}
		p.Suppressed, _ = res.RowsAffected()
	}
	return p, nil
}

// deleteChunked runs a DELETE whose last parameter is the chunk size until
// it deletes less than a full chunk.
func (s *Store) deleteChunked(ctx context.Context, query string, arg any) (int64, error) {
	var total int64
	for {
		chunk := cmp.Or(s.pruneChunkRows, pruneChunk)
		res, err := s.write.ExecContext(ctx, query, arg, chunk)
		if err != nil {
			return total, err
		}
		n, err := res.RowsAffected()
		if err != nil {
			return total, err
		}
		total += n
		if n < int64(chunk) {
			return total, nil
		}
	}
}
