package store

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
	"time"

	"github.com/mattn/go-sqlite3"
)

// fileID identifies a file independently of its name.
type fileID struct{ dev, ino uint64 }

func idOf(path string) (fileID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		return fileID{}, err
	}
	return fileID{st.Dev, st.Ino}, nil
}

// dbFiles are the database and the WAL files it had when it was opened.
type dbFiles struct{ db, wal, shm fileID }

func identify(path string) dbFiles {
	var f dbFiles
	f.db, _ = idOf(path)
	f.wal, _ = idOf(path + "-wal")
	f.shm, _ = idOf(path + "-shm")
	return f
}

// Replaced reports whether the database file at the path is gone or is
// another file than the one opened, was emptied in place (`: >
// firewall.db`, `truncate -s0`, the usual ways to clear a log), or lost
// the WAL file it had (`rm firewall.db-wal`, or SQLite itself: a reader
// opening an emptied file deletes the WAL beside it). pfwd reopens it
// (see Reopen), and a reader that follows the log opens the new one. In
// the last two cases the file keeps its inode, yet the rows pfwd writes
// would go where no reader looks.
func (s *Store) Replaced() bool {
	var st syscall.Stat_t
	if err := syscall.Stat(s.path, &st); err != nil {
		// Unreadable for now (a permission change, an unmounted disk):
		// keep the open file rather than guess.
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
	}
	if (fileID{st.Dev, st.Ino}) != s.files.db || st.Size == 0 && s.files.db != (fileID{}) {
		return true
	}
	if s.files.wal == (fileID{}) {
		return false // no WAL when opened (a read-only view of a file pfwd never ran on)
	}
	wal, err := idOf(s.path + "-wal")
	return errors.Is(err, fs.ErrNotExist) || err == nil && wal != s.files.wal
}

// Reopen opens the database again when its file was deleted or replaced
// since it was opened: an operator's `rm firewall.db` to clear the log
// would otherwise leave pfwd writing into a file no one can see, and
// fwctl reading an empty one. It reports whether it reopened. A deleted
// file is created afresh (schema and all); a replacement is opened as
// Open would (migrated, or moved aside when pfwd cannot use it). The
// old file's WAL files are removed first, since SQLite would replay them
// into the new database. The caller must re-prepare statements made on
// the old pools; queries in flight finish first.
func (s *Store) Reopen() (bool, error) {
	if s.readOnly {
		return false, fmt.Errorf("reopen store %s: %w", s.path, ErrReadOnly)
	}
	if !s.Replaced() {
		return false, nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return true, s.reopenLocked()
}

// reopenLocked is Reopen's work: close the pools, remove the old file's
// WAL files, open the path. s.mu must be held.
func (s *Store) reopenLocked() error {
	var st syscall.Stat_t
	if syscall.Stat(s.path, &st) == nil && (fileID{st.Dev, st.Ino}) == s.files.db && st.Size == 0 {
		// Emptied in place to clear the log: out of the way first, or the
		// old connection's checkpoint at close would write its pages into
		// the empty file, which is no database then. Its rows were meant
		// to go.
		if err := os.Remove(s.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("reopen store %s: remove the emptied file: %w", s.path, err)
		}
	}
	closeErr := s.closePools()
	for _, f := range []struct {
		path string
		id   fileID
	}{{s.path + "-wal", s.files.wal}, {s.path + "-shm", s.files.shm}} {
		if id, err := idOf(f.path); err == nil && id == f.id {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return fmt.Errorf("reopen store %s: remove the old database's %s: %w", s.path, f.path, err)
			}
		}
	}
	return s.openLocked(closeErr)
}

// replaceDamaged moves the database file aside, as Open moves a corrupt
// one, and opens a fresh database at the path. It is for damage Open
// cannot see, deep inside a file whose header is intact: statements fail
// with SQLITE_CORRUPT or SQLITE_NOTADB, and would go on failing across
// restarts. cause is the error that showed it; MovedAside and
// MovedAsideReason then say where the file went and why. When the file
// at the path is no longer the one opened, it is not touched, only opened.
// The caller must re-prepare statements made on the old pools, which is why
// only the Writer, in Run's goroutine, calls it.
func (s *Store) replaceDamaged(cause error) error {
	if s.readOnly {
		return fmt.Errorf("replace damaged store %s: %w", s.path, ErrReadOnly)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if id, err := idOf(s.path); err != nil || id != s.files.db {
		return s.reopenLocked() // gone or replaced: not the damaged file
	}
	// The old pools close first, so the file and its WAL are moved
	// whole: the WAL holds the commits since the last checkpoint, and
	// left behind it would be replayed into the fresh database.
	closeErr := s.closePools()
	aside, err := moveAside(s.path, time.Now())
	if err != nil {
		// Keep writing to the damaged file rather than to nothing:
		// rows that miss its damaged pages still land.
		return errors.Join(fmt.Errorf("replace damaged store %s: move it aside: %w", s.path, err), s.openLocked(closeErr))
	}
	if err := s.openLocked(closeErr); err != nil {
		return fmt.Errorf("replace damaged store %s (moved to %s): %w", s.path, aside, err)
	}
	s.movedAside, s.movedReason = aside, cause.Error()
	return nil
}

// closePools closes both pools: their last connection checkpoints into
// the old (possibly deleted) file and lets go of the WAL files. s.mu must
// be held.
func (s *Store) closePools() error {
	return errors.Join(s.read.Close(), s.write.Close())
}

// openLocked opens the path as Open does and takes its pools, or on
// failure keeps the closed ones, so each statement fails with a clear
// error, and forgets the file, so Replaced is true and Reopen tries again.
// closeErr is the old pools' and is only reported with a failure. s.mu
// must be held.
func (s *Store) openLocked(closeErr error) error {
	s.opened++
	n, err := Open(s.path)
	if err != nil {
		s.files = dbFiles{}
		return errors.Join(err, closeErr)
	}
	s.write, s.read, s.files, s.movedAside, s.movedReason = n.write, n.read, n.files, n.movedAside, n.movedReason
	return nil
}

// checkDamage reads every page of the database, as PRAGMA quick_check
// does, on a read-only connection of its own, so that no lock is held
// meanwhile: on a large file that is a second or more of reading. It
// returns the file it checked and nil, or an error isNotDatabase takes
// for damage: SQLite's SQLITE_CORRUPT or SQLITE_NOTADB, or quick_check's
// first finding. Other failures (ctx ending, the file gone) are returned
// as they are.
func (s *Store) checkDamage(ctx context.Context) (fileID, error) {
	s.mu.RLock()
	path, file := s.path, s.files.db
	s.mu.RUnlock()
	db := openDB(dsn(path, readParams()), nil)
	defer db.Close()
	var finding string
	if err := db.QueryRowContext(ctx, "PRAGMA quick_check(1)").Scan(&finding); err != nil {
		return file, fmt.Errorf("check %s for damage: %w", path, err)
	}
	if finding != "ok" {
		return file, fmt.Errorf("check %s for damage: %s: %w", path, finding, sqlite3.Error{Code: sqlite3.ErrCorrupt})
	}
	return file, nil
}

// isOpen reports whether file is the database file the pools are on.
func (s *Store) isOpen(file fileID) bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return file == s.files.db && file != fileID{}
}
