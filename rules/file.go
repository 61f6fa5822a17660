package rules

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"syscall"
)

// DefaultPath is where pfwd and fwctl look for the config unless told
// otherwise (--config, $PFW_CONFIG).
const DefaultPath = "/etc/personal-firewall/firewall_rules.json"

// MaxFileSize caps a config file. The largest real configs (a thousand
// rules, lists of tens of thousands of addresses) are a few MiB; the cap
// keeps a path pointing at /dev/zero or a runaway generator from taking
// the daemon's memory.
const MaxFileSize = 32 << 20

// fileSizeCap is MaxFileSize, lowered by tests that check the cap without
// writing 32 MiB.
var fileSizeCap = MaxFileSize

// ReadFile reads the config file at path. It refuses anything but a
// regular file of at most MaxFileSize bytes: a named pipe at the path
// would otherwise block the reader (and the daemon's reloads) forever,
// and a device could be endless. Symlinks to a regular file are followed.
func ReadFile(path string) ([]byte, error) {
	// O_NONBLOCK: opening a FIFO with no writer must not wait for one.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if !fi.Mode().IsRegular() {
		return nil, fmt.Errorf("read config %s: not a regular file (%s)", path, FileKind(fi.Mode()))
	}
	if fi.Size() > int64(fileSizeCap) {
		return nil, fmt.Errorf("read config %s: %d bytes, over the %d MiB limit", path, fi.Size(), MaxFileSize>>20)
	}
	// The file may grow between Stat and the read: cap the read too.
	data, err := io.ReadAll(io.LimitReader(f, int64(fileSizeCap)+1))
	if err != nil {
		return nil, fmt.Errorf("read config: %w", err)
	}
	if len(data) > fileSizeCap {
		return nil, fmt.Errorf("read config %s: over the %d MiB limit", path, MaxFileSize>>20)
	}
	return data, nil
}

// FileKind names the kind of a file, for an error saying why it was
// refused ("a named pipe"): the words say what is there, where
// m.Type().String() gives a directory as "d---------".
func FileKind(m fs.FileMode) string {
	switch {
	case m.IsRegular():
		return "a regular file"
	case m&fs.ModeSymlink != 0:
		return "a symbolic link"
	case m.IsDir():
		return "a directory"
	case m&fs.ModeNamedPipe != 0:
		return "a named pipe"
	case m&fs.ModeSocket != 0:
		return "a socket"
	case m&fs.ModeCharDevice != 0:
		return "a character device"
	case m&fs.ModeDevice != 0:
		return "a block device"
	}
	return m.Type().String()
}

// Load reads and validates the config at path. Errors name the file.
func Load(path string) (*Config, error) {
	data, err := ReadFile(path)
	if err != nil {
		return nil, err
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
// then stays byte-for-byte as it was. When there is no file, edit starts
// from the embedded default, as pfwd's first start would, and the file is
// created only if the edit succeeds. It returns the saved config.
func Update(path string, edit func(*Config) error) (*Config, error) {
	path = followLinks(path)
	unlock, err := lock(path)
	if err != nil {
		return nil, err
	}
	defer unlock()
	cur, err := Load(path)
	if errors.Is(err, fs.ErrNotExist) {
		cur, err = Default(), nil
	}
	if err != nil {
		return nil, fmt.Errorf("%w (fix the file first; fwctl check shows the problem)", err)
	}
	next := cur.Clone()
	if err := edit(next); err != nil {
		return nil, err
	}
	data, err := marshalWithinCap(next)
	if err != nil {
		return nil, err
	}
	saved, err := Parse(data)
	if err != nil {
		return nil, err
	}
	if old, err := ReadFile(path); err == nil && bytes.Equal(old, data) {
		return saved, nil
	}
	if err := writeAtomic(path, data); err != nil {
		return nil, err
	}
	return saved, nil
}

// Save validates cfg and writes it to path atomically, under the lock.
func Save(path string, cfg *Config) error {
	data, err := marshalWithinCap(cfg)
	if err != nil {
		return err
	}
	if _, err := Parse(data); err != nil {
		return err
	}
	path = followLinks(path)
	unlock, err := lock(path)
	if err != nil {
		return err
	}
	defer unlock()
	return writeAtomic(path, data)
}

// marshalWithinCap encodes cfg as Marshal does, indented for people; a
// config whose indented form would pass MaxFileSize (a list of a million
// and more addresses) is written compact instead, as such a file usually
// came, so that an edit never writes a file every reader would refuse.
func marshalWithinCap(cfg *Config) ([]byte, error) {
	data, err := Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	if len(data) <= fileSizeCap {
		return data, nil
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, data); err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	compact.WriteByte('\n')
	return compact.Bytes(), nil
}

// removeLeftovers removes the temporary files of saves killed before
// their rename (SIGKILL, out of memory, power loss), each a whole copy of
// the config that nothing else would ever remove. Every save runs under
// the config's lock, so a temporary file that exists while the lock is
// held is no other save's. Best effort: a leftover that stays costs only
// space.
func removeLeftovers(dir, prefix string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if strings.HasPrefix(e.Name(), prefix) && e.Type().IsRegular() {
			os.Remove(filepath.Join(dir, e.Name()))
		}
	}
}

// followLinks returns the file a symlinked config path points to, so a
// save replaces the target and the link stays (a config kept in a git
// checkout, or in a Kubernetes ..data directory), and writers through the
// link and through the real path take the same lock. A path that is not a
// link, or whose target does not exist, is kept as it is.
func followLinks(path string) string {
	if real, err := filepath.EvalSymlinks(path); err == nil {
		return real
	}
	return path
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
	// The lock file is pfw's own and never a link: following one planted
	// by a user who can write the directory would have root create or
	// open whatever it names (a device acts on being opened), and
	// O_NONBLOCK keeps a named pipe from blocking the open.
	f, err := os.OpenFile(filepath.Join(dir, "."+base+".lock"), os.O_RDWR|os.O_CREATE|syscall.O_NOFOLLOW|syscall.O_NONBLOCK, 0o600)
	if errors.Is(err, syscall.ELOOP) {
		return nil, fmt.Errorf("lock config: %s is a symbolic link, which pfw's lock file never is: remove it", filepath.Join(dir, "."+base+".lock"))
	}
	if err != nil {
		return nil, fmt.Errorf("lock config: %w", err)
	}
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		f.Close()
		if err == nil {
			err = fmt.Errorf("not a regular file (%s): remove it", FileKind(fi.Mode()))
		}
		return nil, fmt.Errorf("lock config %s: %w", f.Name(), err)
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
	// A file over the cap would be refused by every reader, fwctl's next
	// edit and pfwd's reload included: the edit would lock the user out.
	if len(data) > fileSizeCap {
		return fmt.Errorf("save config %s: it would be %d bytes, over the %d MiB limit every reader applies; not written",
			path, len(data), MaxFileSize>>20)
	}
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
	prefix := "." + filepath.Base(path) + ".tmp-"
	removeLeftovers(dir, prefix)
	tmp, err := os.CreateTemp(dir, prefix+"*")
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

// Digest names a config's content: the SHA-256 of its canonical encoding
// (Marshal), so two files that differ only in layout, key order or the
// spelling of an address have the same digest. pfwd reports the digest of
// the config in force; fwctl compares it with the file's to know whether
// an edit is in force.
func Digest(cfg *Config) string {
	data, err := Marshal(cfg)
	if err != nil {
		return ""
	}
	sum := sha256.Sum256(data)
	return hex.EncodeToString(sum[:])
}
