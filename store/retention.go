package store

import (
	"cmp"
	"context"
	"database/sql"
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
// transaction, so the write lock is held for milliseconds at a time, and
// a Writer's Run writes the rows that arrived meanwhile between chunks
// (see pruneJob): a first prune of a huge backlog, millions of rows and a
// minute of deleting, stalls neither other writers nor the log itself.
const pruneChunk = 5000

// Prune deletes packet rows older than r.MaxAge before now, then the oldest
// rows beyond r.MaxRows in each packet table, then log_suppressed hours
// older than r.SuppressedMaxAge. Deleted space is reused by later rows; the file does
// not shrink. A pass the database's reopening (see Reopen) interrupts ends
// there, without an error: its bounds were the old file's.
func (s *Store) Prune(ctx context.Context, r Retention, now time.Time) (Pruned, error) {
	if s.ReadOnly() {
		return Pruned{}, fmt.Errorf("prune: %w", ErrReadOnly)
	}
	j := s.newPrune(r, now)
	for {
		if done, err := s.pruneStep(ctx, j); done {
			return j.pruned, err
		}
	}
}

// pruneJob is one retention pass, which pruneStep advances a chunk at a
// time: a pass over a large backlog takes a minute, and the Writer's Run,
// the one goroutine that writes the log, must commit rows between chunks
// or they overflow its buffer.
type pruneJob struct {
	r      Retention
	now    time.Time
	opened uint64 // the Store's opened when the pass began: the file it is for
	stage  int    // index in pruneStages
	bound  any    // the stage's DELETE bound, nil until looked up
	pruned Pruned
}

// pruneStage is one DELETE of a pass, repeated until it deletes less than
// a chunk.
type pruneStage struct {
	table string
	byAge bool // rows older than MaxAge; else rows beyond MaxRows
}

// pruneStages are a pass's stages in order; the row cap of a table is
// applied after its age bound.
var pruneStages = [...]pruneStage{
	{tableBlocked, true}, {tableBlocked, false},
	{tableAllowed, true}, {tableAllowed, false},
	{tableSuppressed, true},
}

func (s *Store) newPrune(r Retention, now time.Time) *pruneJob {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return &pruneJob{r: r.withDefaults(), now: now, opened: s.opened}
}

// pruneStep runs the next DELETE of j, looking up its stage's bound when
// the stage starts, and reports whether the pass is over: all done, failed
// (with the error), or no longer for the open file.
func (s *Store) pruneStep(ctx context.Context, j *pruneJob) (done bool, err error) {
	s.mu.RLock()
	defer s.mu.RUnlock()
	if j.opened != s.opened {
		return true, nil // the file was replaced: the pass's bounds were the old file's
	}
	for j.bound == nil {
		if j.stage == len(pruneStages) {
			return true, nil
		}
		if j.bound, err = s.pruneBound(ctx, j.r, j.now, pruneStages[j.stage]); err != nil {
			return true, err
		}
		if j.bound == nil {
			j.stage++ // off, or nothing to delete
		}
	}
	st := pruneStages[j.stage]
	var n int64
	if st.table == tableSuppressed {
		// A few hundred rows a month: one DELETE.
		n, err = execRows(ctx, s.write, `DELETE FROM log_suppressed WHERE hour < ?`, j.bound)
		j.pruned.Suppressed += n
	} else {
		query := `DELETE FROM ` + st.table + ` WHERE id IN
			(SELECT id FROM ` + st.table + ` WHERE id <= ? ORDER BY id LIMIT ?)`
		if st.byAge {
			query = `DELETE FROM ` + st.table + ` WHERE id IN
				(SELECT id FROM ` + st.table + ` WHERE timestamp < ? LIMIT ?)`
		}
		chunk := cmp.Or(s.pruneChunkRows, pruneChunk)
		n, err = execRows(ctx, s.write, query, j.bound, chunk)
		if st.table == tableBlocked {
			j.pruned.Blocked += n
		} else {
			j.pruned.Allowed += n
		}
		if err == nil && n == int64(chunk) {
			return false, nil // more to delete, maybe
		}
	}
	if err != nil {
		return true, pruneError(st, j.r, j.bound, err)
	}
	j.stage, j.bound = j.stage+1, nil
	return j.stage == len(pruneStages), nil
}

// pruneBound is what a stage deletes up to: the cutoff time, or the
// highest id beyond the row cap; nil when the stage is off or has nothing
// to delete.
func (s *Store) pruneBound(ctx context.Context, r Retention, now time.Time, st pruneStage) (any, error) {
	switch {
	case st.table == tableSuppressed:
		if r.SuppressedMaxAge <= 0 {
			return nil, nil
		}
		// The hour the cutoff falls in stays: part of it is young enough.
		return hourOf(now.Add(-r.SuppressedMaxAge)), nil
	case st.byAge:
		if r.MaxAge <= 0 {
			return nil, nil
		}
		return formatTime(now.Add(-r.MaxAge)), nil
	case r.MaxRows <= 0:
		return nil, nil
	}
	// ids only grow (AUTOINCREMENT), so the MaxRows newest rows are the
	// MaxRows highest ids and everything at or below the next one goes.
	// Rows written while the stage goes on are above it, as rows written
	// after the pass are.
	var last int64
	err := s.write.QueryRowContext(ctx, `SELECT coalesce(
		(SELECT id FROM `+st.table+` ORDER BY id DESC LIMIT 1 OFFSET ?), 0)`, r.MaxRows).Scan(&last)
	if err != nil {
		return nil, pruneError(st, r, nil, err)
	}
	if last == 0 {
		return nil, nil
	}
	return last, nil
}

func pruneError(st pruneStage, r Retention, bound any, err error) error {
	if st.byAge {
		return fmt.Errorf("prune %s older than %s: %w", st.table, bound, err)
	}
	return fmt.Errorf("prune %s beyond %d rows: %w", st.table, r.MaxRows, err)
}

// execRows runs one statement and returns how many rows it changed.
func execRows(ctx context.Context, db *sql.DB, query string, args ...any) (int64, error) {
	res, err := db.ExecContext(ctx, query, args...)
	if err != nil {
		return 0, err
	}
	return res.RowsAffected()
}
