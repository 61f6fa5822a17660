package daemon

import (
	"context"
	"fmt"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"github.com/fsnotify/fsnotify"
)

// watcher calls its run's changed whenever the file at path may have
// changed. Bursts of events (write, chmod, rename) are coalesced for
// debounce.
//
// It watches directories, not the file: fwctl and most editors replace
// the file by renaming a new one over it, which a watch on the old inode
// would never see. When path is a symlink (a config kept in a repository,
// or Kubernetes-style ..data links), the directories of every hop and of
// the final file are watched too, and the set is recomputed after each
// event, since the links can change.
//
// Inotify cannot see everything: a watched directory moved away and
// replaced by a new one keeps its watch on the old inode. So every poll
// the watcher also compares the file's identity (device, inode, size,
// mtime, ctime) with the last one it reported, and re-adds watches for
// directories that were replaced. Spurious calls are harmless: a reload
// with unchanged content passes in silence.
type watcher struct {
	fw      *fsnotify.Watcher
	path    string
	dirs    map[string]dirID // watched directory → the inode its watch is on
	names   map[string]bool  // the path, each symlink hop, the final file
	seen    fileID           // the file as of the last report
	lastErr error            // why the last refresh could not watch a directory
}

type dirID struct{ dev, ino uint64 }

type fileID struct {
	dev, ino, size uint64
	mtime, ctime   int64
	ok             bool
}

// newWatcher watches the file at path; its run reports the changes.
func newWatcher(path string) (*watcher, error) {
	fw, err := fsnotify.NewWatcher()
	if err != nil {
		return nil, fmt.Errorf("watch config: %w", err)
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		fw.Close()
		return nil, fmt.Errorf("watch config: %w", err)
	}
	w := &watcher{fw: fw, path: abs, dirs: map[string]dirID{}}
	w.refresh()
	if len(w.dirs) == 0 {
		fw.Close()
		return nil, fmt.Errorf("watch config directory %s: %w", filepath.Dir(abs), w.lastErr)
	}
	w.seen = fingerprint(abs)
	return w, nil
}

func fingerprint(path string) fileID {
	var st syscall.Stat_t
	if syscall.Stat(path, &st) != nil {
		return fileID{}
	}
	return fileID{dev: st.Dev, ino: st.Ino, size: uint64(st.Size),
		mtime: st.Mtim.Nano(), ctime: st.Ctim.Nano(), ok: true}
}

// run calls changed, on its own goroutine, whenever the file may have
// changed, until ctx is done; then it closes the watcher.
func (w *watcher) run(ctx context.Context, debounce, poll time.Duration, changed func()) {
	defer w.fw.Close()
	var timer *time.Timer
	var fire <-chan time.Time
	tick := time.NewTicker(poll)
	defer tick.Stop()
	report := func() {
		// Fingerprint first: a change after this read is seen next time.
		w.seen = fingerprint(w.path)
		changed()
	}
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-w.fw.Events:
			if !ok {
				return
			}
			name := filepath.Clean(ev.Name)
			_, isDir := w.dirs[name]
			if !w.names[name] && !isDir {
				// Something else in a watched directory. A database
				// or log kept beside the config writes there all the
				// time, and a write or chmod of another file says
				// nothing about this one: skip it without a stat. A
				// renamed symlink hop (..data) comes as a create or
				// rename: look at the file.
				if !ev.Has(fsnotify.Create) && !ev.Has(fsnotify.Rename) && !ev.Has(fsnotify.Remove) ||
					fingerprint(w.path) == w.seen {
					continue
				}
			}
			if timer == nil {
				timer = time.NewTimer(debounce)
			} else {
				timer.Reset(debounce)
			}
			fire = timer.C
		case <-fire:
			fire = nil
			w.refresh()
			report()
		case <-tick.C:
			w.refresh()
			if fingerprint(w.path) != w.seen {
				report()
			}
		case _, ok := <-w.fw.Errors:
			if !ok {
				return
			}
			// An overflow may have hidden a change: look again.
			w.refresh()
			report()
		}
	}
}

// refresh recomputes the names and directories to watch and brings the
// inotify watches in line: new directories added, replaced ones (same
// path, new inode) re-added, ones no longer on the way removed.
func (w *watcher) refresh() {
	names := map[string]bool{w.path: true}
	p := w.path
	for range 40 { // the kernel's own limit on symlink hops
		target, err := os.Readlink(p)
		if err != nil {
			break
		}
		if !filepath.IsAbs(target) {
			target = filepath.Join(filepath.Dir(p), target)
		}
		p = filepath.Clean(target)
		names[p] = true
	}
	if real, err := filepath.EvalSymlinks(w.path); err == nil {
		names[real] = true
	}
	want := map[string]bool{}
	for n := range names {
		want[filepath.Dir(n)] = true
	}
	for dir, id := range w.dirs {
		if !want[dir] {
			w.fw.Remove(dir)
			delete(w.dirs, dir)
			continue
		}
		if cur, err := statDir(dir); err != nil || cur != id {
			w.fw.Remove(dir) // the old inode's watch, if it still exists
			delete(w.dirs, dir)
		}
	}
	for dir := range want {
		if _, ok := w.dirs[dir]; ok {
			continue
		}
		id, err := statDir(dir)
		if err != nil {
			w.lastErr = err
			continue // not there (yet): the poll will look again
		}
		if err := w.fw.Add(dir); err != nil {
			w.lastErr = err
			continue
		}
		w.dirs[dir] = id
	}
	w.names = names
}

func statDir(dir string) (dirID, error) {
	var st syscall.Stat_t
	if err := syscall.Stat(dir, &st); err != nil {
		return dirID{}, err
	}
	return dirID{dev: st.Dev, ino: st.Ino}, nil
}
