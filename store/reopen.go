package store

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"syscall"
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
// another file than the one opened: pfwd reopens it (see Reopen), and a
// reader that follows the log opens the new one.
func (s *Store) Replaced() bool {
	cur, err := idOf(s.path)
	if err != nil {
		// Unreadable for now (a permission change, an unmounted disk):
		// keep the open file rather than guess.
		return errors.Is(err, fs.ErrNotExist) || errors.Is(err, syscall.ENOTDIR)
	}
	return cur != s.files.db
}

// Reopen opens the database again when its file was deleted or replaced
// since it was opened: an operator's `rm firewall.db` to clear the log
// would otherwise leave pfwd writing into a file no one can see, and
// fwctl reading an empty one. It reports whether it reopened. A deleted
// file is created afresh (schema and all); a replacement is opened as
// Open would (migrated, or moved aside when it is not a database). The
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
	// The old pools go first: their last connection checkpoints into the
	// old (possibly deleted) file and lets go of the WAL files.
	closeErr := errors.Join(s.read.Close(), s.write.Close())
	for _, f := range []struct {
		path string
		id   fileID
	}{{s.path + "-wal", s.files.wal}, {s.path + "-shm", s.files.shm}} {
		if id, err := idOf(f.path); err == nil && id == f.id {
			if err := os.Remove(f.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
				return true, fmt.Errorf("reopen store %s: remove the old database's %s: %w", s.path, f.path, err)
			}
		}
	}
	n, err := Open(s.path)
	if err != nil {
		// Nothing to write to: keep closed pools, so each batch fails
		// with a clear error, and try again at the next call.
		s.files = dbFiles{}
		return true, errors.Join(err, closeErr)
	}
	s.write, s.read, s.files, s.movedAside = n.write, n.read, n.files, n.movedAside
	return true, nil
}
