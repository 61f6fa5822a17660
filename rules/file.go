package rules

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"syscall"
)

// Load reads and validates the config at path. Errors name the file.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	cfg, err := Parse(data)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	return cfg, nil
}

// LoadOrCreate loads the config at path, first writing the embedded default
// there (and creating its directory) when no file exists. created reports
// whether it did.
func LoadOrCreate(path string) (cfg *Config, created bool, err error) {
	if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
		unlock, err := lock(path)
		if err != nil {
			return nil, false, err
		}
		// Another process may have created it while we waited for the lock.
		if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
			if err := writeAtomic(path, defaultJSON); err != nil {
				unlock()
				return nil, false, err
			}
			created = true
		}
		unlock()
	}
	cfg, err = Load(path)
	return cfg, created, err
}

// Update applies edit to the config at path under an exclusive lock and
// saves the result atomically. Nothing is written when the file is
// invalid, edit fails, or the edited config does not validate: the file
// then stays byte-for-byte as it was. It returns the saved config.
func Update(path string, edit func(*Config) error) (*Config, error) {
	unlock, err := lock(path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := Load(path)
	if err != nil {
		return nil, fmt.Errorf("%w (fix the file first; fwctl check shows the problem)", err)
	}
	next := cur.Clone()
	if err := edit(next); err != nil {
		return nil, err
	}
	data, err := Marshal(next)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	saved, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if old, err := os.ReadFile(path); err == nil && bytes.Equal(old, data) {
		return saved, nil
	}
	if err := writeAtomic(path, data); err != nil {
		return nil, err
	}
	return saved, nil
}

// Save validates cfg and writes it to path atomically, under the lock.
func Save(path string, cfg *Config) error {
	data, err := Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if _, err := Parse(data); err != nil {
		return err
	}
	unlock, err := lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	return writeAtomic(path, data)
}

// lock takes an exclusive flock on a hidden lock file beside path. The
// config file itself cannot carry the lock: every save replaces its inode.
func lock(path string) (unlock func(), err error) {
	dir, base := filepath.Split(path)
	if dir == "" {
		dir = "."
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("lock config: %w", err)
	}
	f, err := os.OpenFile(filepath.Join(dir, "."+base+".lock"), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock config: %w", err)
	}
	for {
		err = syscall.Flock(int(f.Fd()), syscall.LOCK_EX)
		if !errors.Is(err, syscall.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock config %s: %w", f.Name(), err)
	}
	return func() { f.Close() }, nil // closing the descriptor releases the lock
}

// writeAtomic replaces path with data: a temporary file in the same
// directory, the old file's mode and owner, fsync, rename, fsync of the
// directory. A reader sees the old file or the new one, never a mix.
func writeAtomic(path string, data []byte) error {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	mode := fs.FileMode(0o644)
	uid, gid := -1, -1
	if fi, err := os.Stat(path); err == nil {
		mode = fi.Mode().Perm()
		if st, ok := fi.Sys().(*syscall.Stat_t); ok {
			uid, gid = int(st.Uid), int(st.Gid)
		}
	}
	tmp, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	done := false
	defer func() {
		if !done {
			tmp.Close()
			os.Remove(tmp.Name())
		}
	}()
	if err := tmp.Chmod(mode); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if uid >= 0 {
		_ = tmp.Chown(uid, gid) // best effort: only root may give files away
	}
	if _, err := tmp.Write(data); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := tmp.Sync(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := tmp.Close(); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		return fmt.Errorf("save config: %w", err)
	}
	done = true
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync() // makes the rename durable; not every filesystem supports it
		d.Close()
	}
	return nil
}
