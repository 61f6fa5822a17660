package daemon

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"golang.org/x/sys/unix"
)

// The temporary database (openStore) lives in a directory of its own
// beside the control socket, named tempDBPrefix and digits (os.MkdirTemp),
// holding tempDBName and SQLite's companion files alone. Shutdown removes
// it; a pfwd killed (SIGKILL, the OOM killer) leaves it behind, and under
// Restart=on-failure a crash loop would leave one per start in /run. So
// pfwd holds an flock on its directory while it runs, and at start
// removes those in the socket's directory that no pfwd holds.
// An flock, not the single-instance lock: pfwds in other network
// namespaces may keep their sockets, and databases, in the same directory.
const (
	tempDBPrefix = "pfwd-db-"
	tempDBName   = "firewall.db"
)

// tempDBFiles are the files a temporary database's directory may hold.
var tempDBFiles = []string{tempDBName, tempDBName + "-wal", tempDBName + "-shm", tempDBName + "-journal"}

// makeTempDBDir makes a temporary database's directory in dir and
// returns it with its lock, which the caller holds until it has removed
// the directory.
func makeTempDBDir(dir string) (path string, lock *os.File, err error) {
	// A pfwd removing stale directories may take the lock of this one
	// between its mkdir and the flock below, find it empty and remove
	// it: then make another.
	for range 3 {
		if path, err = os.MkdirTemp(dir, tempDBPrefix+"*"); err != nil {
			return "", nil, err
		}
		if lock, err = os.Open(path); err != nil {
			if errors.Is(err, os.ErrNotExist) {
				continue
			}
			os.Remove(path)
			return "", nil, err
		}
		if err = unix.Flock(int(lock.Fd()), unix.LOCK_EX); err != nil {
			lock.Close()
			os.Remove(path)
			return "", nil, fmt.Errorf("lock %s: %w", path, err)
		}
		if sameFile(lock, path) {
			return path, lock, nil
		}
		lock.Close()
	}
	return "", nil, fmt.Errorf("%s: removed as soon as made, three times", dir)
}

// sameFile reports whether f is still the file at path.
func sameFile(f *os.File, path string) bool {
	a, err := f.Stat()
	if err != nil {
		return false
	}
	b, err := os.Lstat(path)
	return err == nil && os.SameFile(a, b)
}

// staleTempDB is what removeStaleTempDBs did with one directory: removed
// it, or left it and why (err).
type staleTempDB struct {
	path string
	err  error
}

// removeStaleTempDBs removes the temporary databases' directories in dir
// that no running pfwd holds. It touches only directories named as
// makeTempDBDir names them, owned by pfwd's user, holding nothing but a
// database and its companions: a name that merely looks like one is not
// pfwd's to delete. It reports what it removed, and what it left for a
// reason the log should give (err set); the directories of running pfwds
// are left in silence.
func removeStaleTempDBs(dir string) []staleTempDB {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil // no socket directory yet, or unreadable: nothing pfwd left there
	}
	var done []staleTempDB
	for _, e := range entries {
		if !e.IsDir() || !isTempDBName(e.Name()) {
			continue
		}
		path := filepath.Join(dir, e.Name())
		removed, err := removeStaleTempDB(path)
		if removed || err != nil {
			done = append(done, staleTempDB{path, err})
		}
	}
	return done
}

// isTempDBName reports whether name is one os.MkdirTemp gives for
// tempDBPrefix+"*": the prefix and decimal digits.
func isTempDBName(name string) bool {
	digits, ok := strings.CutPrefix(name, tempDBPrefix)
	return ok && digits != "" && strings.Trim(digits, "0123456789") == ""
}

// removeStaleTempDB removes the temporary database's directory at path if
// no pfwd holds its lock. It works through a descriptor of the directory,
// opened without following a symlink, so whatever is put at path
// meanwhile, only files in that directory are removed.
func removeStaleTempDB(path string) (removed bool, err error) {
	fd, err := unix.Open(path, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_NOFOLLOW|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, unix.ENOENT) {
			return false, nil // its pfwd stopped meanwhile
		}
		return false, err
	}
	d := os.NewFile(uintptr(fd), path)
	defer d.Close()
	if err := unix.Flock(fd, unix.LOCK_EX|unix.LOCK_NB); err != nil {
		if errors.Is(err, unix.EWOULDBLOCK) {
			return false, nil // a running pfwd's
		}
		return false, fmt.Errorf("lock: %w", err)
	}
	var st unix.Stat_t
	if err := unix.Fstat(fd, &st); err != nil {
		return false, err
	}
	if int(st.Uid) != os.Geteuid() {
		return false, fmt.Errorf("owned by uid %d, not pfwd's %d", st.Uid, os.Geteuid())
	}
	names, err := d.Readdirnames(-1)
	if err != nil {
		return false, err
	}
	for _, name := range names {
		var fst unix.Stat_t
		if !slices.Contains(tempDBFiles, name) {
			return false, fmt.Errorf("holds %s, which is no part of a database", name)
		}
		if err := unix.Fstatat(fd, name, &fst, unix.AT_SYMLINK_NOFOLLOW); err == nil && fst.Mode&unix.S_IFMT != unix.S_IFREG {
			return false, fmt.Errorf("%s is not a regular file", name)
		}
	}
	for _, name := range names {
		if err := unix.Unlinkat(fd, name, 0); err != nil && !errors.Is(err, unix.ENOENT) {
			return false, fmt.Errorf("remove %s: %w", name, err)
		}
	}
	// Still the directory locked above (not one put at path since)? Then
	// remove it; rmdir removes an empty directory alone.
	if !sameFile(d, path) {
		return false, nil
	}
	if err := unix.Rmdir(path); err != nil {
		return false, err
	}
	return true, nil
}
