package daemon

import (
	"context"
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"testing"
	"time"
)

// startWatch watches path and returns a channel that gets a value per call
// of changed.
func startWatch(t *testing.T, path string, poll time.Duration) <-chan struct{} {
	t.Helper()
	ch := make(chan struct{}, 64)
	w, err := newWatcher(path)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		w.run(ctx, 20*time.Millisecond, poll, func() {
			select {
			case ch <- struct{}{}:
			case <-ctx.Done():
			}
		})
	}()
	t.Cleanup(func() { cancel(); <-done })
	return ch
}

// expectChange waits for a report, then drains the burst.
func expectChange(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no change reported within 5 s", what)
	}
	for {
		select {
		case <-ch:
		case <-time.After(100 * time.Millisecond):
			return
		}
	}
}

// expectQuiet fails when a change is reported within 300 ms.
func expectQuiet(t *testing.T, ch <-chan struct{}, what string) {
	t.Helper()
	select {
	case <-ch:
		t.Errorf("%s was reported", what)
	case <-time.After(300 * time.Millisecond):
	}
}

func write(t *testing.T, path, data string) {
	t.Helper()
	if err := os.WriteFile(path, []byte(data), 0o644); err != nil {
		t.Fatal(err)
	}
}

// replaceFile writes data next to path and renames it over, as fwctl and
// editors do.
func replaceFile(t *testing.T, path, data string) {
	t.Helper()
	write(t, path+".tmp", data)
	if err := os.Rename(path+".tmp", path); err != nil {
		t.Fatal(err)
	}
}

func symlink(t *testing.T, target, link string) {
	t.Helper()
	tmp := link + ".tmp"
	if err := os.Symlink(target, tmp); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, link); err != nil { // atomic retarget
		t.Fatal(err)
	}
}

const noPoll = time.Hour // these cases must be seen through inotify alone

func TestWatchPlainFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall_rules.json")
	write(t, path, "1")
	ch := startWatch(t, path, noPoll)
	write(t, path, "2")
	expectChange(t, ch, "written in place")
	replaceFile(t, path, "3")
	expectChange(t, ch, "replaced by rename")
	write(t, filepath.Join(filepath.Dir(path), "other.json"), "x")
	expectQuiet(t, ch, "a change to another file in the directory")
}

// The config is a symlink into another directory (a repository checkout):
// edits of the target, in place or by rename, and a retargeted link are
// all seen.
func TestWatchSymlinkedFile(t *testing.T) {
	root := t.TempDir()
	etc, repo := filepath.Join(root, "etc"), filepath.Join(root, "repo")
	os.Mkdir(etc, 0o755)
	os.Mkdir(repo, 0o755)
	target := filepath.Join(repo, "rules.json")
	write(t, target, "1")
	path := filepath.Join(etc, "firewall_rules.json")
	symlink(t, "../repo/rules.json", path)
	ch := startWatch(t, path, noPoll)

	write(t, target, "2")
	expectChange(t, ch, "target written in place")
	replaceFile(t, target, "3")
	expectChange(t, ch, "target replaced by rename")

	other := filepath.Join(root, "other", "rules.json")
	os.Mkdir(filepath.Dir(other), 0o755)
	write(t, other, "4")
	symlink(t, other, path)
	expectChange(t, ch, "link retargeted")
	write(t, other, "5") // the new target's directory is watched now
	expectChange(t, ch, "new target written in place")
	write(t, target, "6") // and the old one no longer matters
	expectQuiet(t, ch, "a change to the link's old target")
}

// Kubernetes ConfigMap volumes: firewall_rules.json -> ..data/firewall_rules.json,
// ..data -> ..2026_v1, and an update swaps ..data to a new directory.
func TestWatchSwappedDataLink(t *testing.T) {
	dir := t.TempDir()
	for _, v := range []string{"..v1", "..v2"} {
		os.Mkdir(filepath.Join(dir, v), 0o755)
		write(t, filepath.Join(dir, v, "firewall_rules.json"), v)
	}
	symlink(t, "..v1", filepath.Join(dir, "..data"))
	path := filepath.Join(dir, "firewall_rules.json")
	symlink(t, "..data/firewall_rules.json", path)
	ch := startWatch(t, path, noPoll)

	symlink(t, "..v2", filepath.Join(dir, "..data"))
	expectChange(t, ch, "..data swapped")
	write(t, filepath.Join(dir, "..v2", "firewall_rules.json"), "edited")
	expectChange(t, ch, "file in the new data directory written")
}

// The config directory is moved away and a new one made in its place
// (a restore from backup, a configuration tool): inotify's watch stays on
// the old directory, so the poll must find the new file and watch the new
// directory.
func TestWatchReplacedDirectory(t *testing.T) {
	root := t.TempDir()
	dir := filepath.Join(root, "personal-firewall")
	os.Mkdir(dir, 0o755)
	path := filepath.Join(dir, "firewall_rules.json")
	write(t, path, "1")
	ch := startWatch(t, path, 200*time.Millisecond)

	if err := os.Rename(dir, dir+".old"); err != nil {
		t.Fatal(err)
	}
	os.Mkdir(dir, 0o755)
	write(t, path, "2")
	expectChange(t, ch, "directory replaced")
	time.Sleep(400 * time.Millisecond) // a poll re-adds the watch
	write(t, path, "3")
	expectChange(t, ch, "file in the new directory written")

	// Removed, then made again.
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	expectChange(t, ch, "directory removed")
	os.Mkdir(dir, 0o755)
	write(t, path, "4")
	expectChange(t, ch, "directory made again")
}

func TestWatchMissingDirectory(t *testing.T) {
	_, err := newWatcher(filepath.Join(t.TempDir(), "nope", "x.json"))
	if !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("watching a file in a missing directory: %v; want an error wrapping fs.ErrNotExist", err)
	}
}
