package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestLoadOrCreateWritesDefault(t *testing.T) {
	path := filepath.Join(t.TempDir(), "etc", "personal-firewall", "firewall_rules.json")
	cfg, created, err := LoadOrCreate(path)
	if err != nil || !created {
		t.Fatalf("LoadOrCreate = %v, created %v", err, created)
	}
	if len(cfg.Rules) != len(Default().Rules) {
		t.Errorf("created config has %d rules, want the default's %d", len(cfg.Rules), len(Default().Rules))
	}
	data, _ := os.ReadFile(path)
	if !bytes.Equal(data, defaultJSON) {
		t.Errorf("created file differs from the embedded default")
	}
	if _, created, err = LoadOrCreate(path); err != nil || created {
		t.Errorf("second LoadOrCreate = %v, created %v; want the existing file", err, created)
	}
}

func TestLoadNamesTheFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "bad.json")
	os.WriteFile(path, []byte(`{"rules":[{"name":"a","action":"block","ports":[70000]}]}`), 0o644)
	_, err := Load(path)
	want := path + ": rules[0].ports[0]: 70000 is not a port (1-65535)"
	if err == nil || err.Error() != want {
		t.Errorf("Load = %v, want %q", err, want)
	}
}

func TestUpdateIsAtomicAndKeepsMode(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall_rules.json")
	if err := os.WriteFile(path, defaultJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	cfg, err := Update(path, func(c *Config) error {
		c.Rules = append(c.Rules, Rule{Name: "ssh", Action: ActionAllow, Protocol: ProtoTCP, Ports: []PortRange{{22, 22}}, Enabled: true})
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	if cfg.RuleIndex("ssh") != len(cfg.Rules)-1 {
		t.Errorf("saved config lacks the new rule at the end")
	}
	fi, _ := os.Stat(path)
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode after save = %v, want 0600 kept", fi.Mode().Perm())
	}
	reloaded, err := Load(path)
	if err != nil || reloaded.RuleIndex("ssh") < 0 {
		t.Fatalf("reload after Update = %v", err)
	}
	entries, _ := os.ReadDir(filepath.Dir(path))
	for _, e := range entries {
		if filepath.Ext(e.Name()) != ".json" && e.Name() != ".firewall_rules.json.lock" {
			t.Errorf("Update left %s behind", e.Name())
		}
	}
}

// With no file, an edit starts from the embedded default and creates the
// file only when it succeeds.
func TestUpdateOfAMissingFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall_rules.json")
	if _, err := Update(path, func(*Config) error { return errors.New("no") }); err == nil {
		t.Fatal("a failing edit succeeded")
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("a failing edit created the file (stat: %v)", err)
	}
	cfg, err := Update(path, func(c *Config) error {
		c.BlacklistIPs = append(c.BlacklistIPs, netip.MustParsePrefix("203.0.113.9/32"))
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	onDisk, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	def := Default()
	if len(onDisk.Rules) != len(def.Rules) || len(onDisk.BlacklistIPs) != len(def.BlacklistIPs)+1 || len(cfg.BlacklistIPs) != len(onDisk.BlacklistIPs) {
		t.Errorf("created config has %d rules, blacklist %v; want the default's %d rules plus the edit",
			len(onDisk.Rules), onDisk.BlacklistIPs, len(def.Rules))
	}
}

func TestUpdateFailureLeavesFileUnchanged(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall_rules.json")
	orig := []byte("{\n\"rules\": [{\"name\": \"keep\", \"action\": \"block\", \"ports\": [23]}]\n}\n")
	os.WriteFile(path, orig, 0o644)
	edits := map[string]func(*Config) error{
		"edit error": func(c *Config) error { return errors.New("no") },
		"duplicate name": func(c *Config) error {
			c.Rules = append(c.Rules, Rule{Name: "keep", Action: ActionAllow, Enabled: true})
			return nil
		},
		"ports on icmp": func(c *Config) error {
			c.Rules = append(c.Rules, Rule{Name: "x", Action: ActionAllow, Protocol: ProtoICMP, Ports: []PortRange{{1, 1}}, Enabled: true})
			return nil
		},
	}
	for name, edit := range edits {
		if _, err := Update(path, edit); err == nil {
			t.Errorf("%s: Update succeeded", name)
		}
		if got, _ := os.ReadFile(path); !bytes.Equal(got, orig) {
			t.Errorf("%s: file changed to\n%s", name, got)
		}
	}
	// An invalid file on disk is never overwritten by an edit.
	bad := []byte(`{"rules": [`)
	os.WriteFile(path, bad, 0o644)
	if _, err := Update(path, func(*Config) error { return nil }); err == nil {
		t.Errorf("Update of an invalid file succeeded")
	}
	if got, _ := os.ReadFile(path); !bytes.Equal(got, bad) {
		t.Errorf("invalid file was rewritten")
	}
}

func TestUpdateSerializesWriters(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall_rules.json")
	os.WriteFile(path, []byte(`{}`), 0o644)
	const n = 20
	var wg sync.WaitGroup
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_, err := Update(path, func(c *Config) error {
				c.Rules = append(c.Rules, Rule{Name: fmt.Sprintf("r%d", i), Action: ActionBlock, Enabled: true})
				return nil
			})
			if err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	cfg, err := Load(path)
	if err != nil {
		t.Fatal(err)
	}
	if len(cfg.Rules) != n {
		t.Errorf("%d rules after %d concurrent appends: lost updates", len(cfg.Rules), n)
	}
}

// Only a regular file is read: a named pipe would block the reader (and
// pfwd's reloads) forever, a device could be endless. Each gets an error
// at once that says what the path is.
func TestReadFileRefusesWhatIsNotARegularFile(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.json")
	if err := syscall.Mkfifo(fifo, 0o644); err != nil {
		t.Fatal(err)
	}
	zero := filepath.Join(dir, "zero.json")
	if err := os.Symlink("/dev/zero", zero); err != nil {
		t.Fatal(err)
	}
	for path, want := range map[string]string{
		fifo: "not a regular file (a named pipe)",
		zero: "not a regular file (a character device)",
		dir:  "not a regular file (a directory)",
	} {
		done := make(chan error, 1)
		go func() { _, err := Load(path); done <- err }()
		select {
		case err := <-done:
			if err == nil || !strings.Contains(err.Error(), path) || !strings.Contains(err.Error(), want) {
				t.Errorf("Load(%s) = %v, want an error naming the path and %q", filepath.Base(path), err, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("Load(%s) still blocked after 5 s", filepath.Base(path))
		}
	}
}

// The lock file beside the config is pfw's own: a symbolic link planted
// there (by a user who can write the config's directory) must not make
// root create or open what it names, and a named pipe must not block.
func TestLockRefusesALinkOrAPipe(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "firewall_rules.json")
	if _, _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	lockPath := filepath.Join(dir, ".firewall_rules.json.lock")
	victim := filepath.Join(dir, "victim")
	os.Remove(lockPath)
	if err := os.Symlink(victim, lockPath); err != nil {
		t.Fatal(err)
	}
	addRule := func(c *Config) error { c.Rules = append(c.Rules, Rule{Name: "x", Action: ActionBlock}); return nil }
	if _, err := Update(path, addRule); err == nil || !strings.Contains(err.Error(), "is a symbolic link") {
		t.Errorf("Update with a link at the lock path: err = %v", err)
	}
	if _, err := os.Lstat(victim); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the link's target was created: %v", err)
	}
	os.Remove(lockPath)
	if err := syscall.Mkfifo(lockPath, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := Update(path, addRule); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file (a named pipe)") {
			t.Errorf("Update with a named pipe at the lock path: err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Update with a named pipe at the lock path still blocked after 5 s")
	}
	if cfg, err := Load(path); err != nil || len(cfg.Rules) != len(Default().Rules) {
		t.Errorf("the refused edits changed the file: %v", err)
	}
}

func TestReadFileCapsTheSize(t *testing.T) {
	path := filepath.Join(t.TempDir(), "big.json")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := f.Truncate(MaxFileSize + 1); err != nil { // sparse: no disk used
		t.Fatal(err)
	}
	f.Close()
	_, err = Load(path)
	if err == nil || !strings.Contains(err.Error(), "over the 32 MiB limit") || !strings.Contains(err.Error(), path) {
		t.Errorf("Load of a file over the cap = %v, want the limit named", err)
	}
	// At the cap it is read (and fails only as JSON).
	if err := os.Truncate(path, MaxFileSize); err != nil {
		t.Fatal(err)
	}
	if _, err = Load(path); err == nil || strings.Contains(err.Error(), "limit") {
		t.Errorf("Load of a file at the cap = %v, want a parse error", err)
	}
	// Update refuses such a file without touching it.
	if _, err := Update(path, func(*Config) error { return nil }); err == nil {
		t.Error("Update accepted a file it cannot parse")
	}
	if fi, _ := os.Stat(path); fi.Size() != MaxFileSize {
		t.Errorf("Update changed the file: %d bytes", fi.Size())
	}
}

// A symlinked config stays a symlink: a save replaces its target, as the
// user who linked it to a checkout expects.
func TestUpdateThroughASymlinkKeepsTheLink(t *testing.T) {
	root := t.TempDir()
	target := filepath.Join(root, "repo", "rules.json")
	os.Mkdir(filepath.Dir(target), 0o755)
	if err := os.WriteFile(target, defaultJSON, 0o600); err != nil {
		t.Fatal(err)
	}
	link := filepath.Join(root, "firewall_rules.json")
	if err := os.Symlink("repo/rules.json", link); err != nil {
		t.Fatal(err)
	}
	if _, err := Update(link, func(c *Config) error {
		c.BlacklistIPs = append(c.BlacklistIPs, netip.MustParsePrefix("192.0.2.1/32"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Lstat(link); err != nil || fi.Mode()&fs.ModeSymlink == 0 {
		t.Fatalf("the config link was replaced: %v %v", fi.Mode(), err)
	}
	cfg, err := Load(target)
	if err != nil || len(cfg.BlacklistIPs) != 1 {
		t.Fatalf("target after the update: %v, blacklist %v", err, cfg.BlacklistIPs)
	}
	if fi, _ := os.Stat(target); fi.Mode().Perm() != 0o600 {
		t.Errorf("target mode %v, want 0600 kept", fi.Mode().Perm())
	}
	if err := Save(link, cfg); err != nil {
		t.Fatal(err)
	}
	if fi, _ := os.Lstat(link); fi.Mode()&fs.ModeSymlink == 0 {
		t.Error("Save replaced the config link")
	}
}

// DefaultPath is the contract's; pfwd and fwctl both take it from here.
func TestDefaultPath(t *testing.T) {
	if DefaultPath != "/etc/personal-firewall/firewall_rules.json" {
		t.Errorf("DefaultPath = %q", DefaultPath)
	}
}

// A save killed between creating its temporary file and the rename
// (SIGKILL, out of memory) leaves a whole copy of the config beside it.
// The next save, which holds the lock, removes it.
func TestUpdateRemovesLeftoverTempFiles(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "firewall_rules.json")
	if _, _, err := LoadOrCreate(path); err != nil {
		t.Fatal(err)
	}
	leftovers := []string{".firewall_rules.json.tmp-123456", ".firewall_rules.json.tmp-987654"}
	for _, name := range leftovers {
		if err := os.WriteFile(filepath.Join(dir, name), DefaultJSON(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	other := filepath.Join(dir, ".other.json.tmp-1") // another file's: not ours to remove
	if err := os.WriteFile(other, nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if _, err := Update(path, func(c *Config) error {
		c.BlacklistIPs = append(c.BlacklistIPs, netip.MustParsePrefix("203.0.113.7/32"))
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, name := range leftovers {
		if _, err := os.Lstat(filepath.Join(dir, name)); !errors.Is(err, fs.ErrNotExist) {
			t.Errorf("%s is still there after a save: %v", name, err)
		}
	}
	if _, err := os.Lstat(other); err != nil {
		t.Errorf("another file's temporary file was removed: %v", err)
	}
}

// An edit never writes a file every reader would refuse, which would lock
// the user out of fwctl and leave pfwd on the old rules: a config whose
// indented form would pass the size cap is written compact, and one that
// would pass it even so is refused, the file left as it was.
func TestUpdateStaysWithinTheSizeCap(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall_rules.json")
	cfg := Default()
	for i := range 200 {
		cfg.BlacklistIPs = append(cfg.BlacklistIPs, netip.PrefixFrom(netip.AddrFrom4([4]byte{10, 9, byte(i >> 8), byte(i)}), 32))
	}
	if err := Save(path, cfg); err != nil {
		t.Fatal(err)
	}
	indented, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	var compact bytes.Buffer
	if err := json.Compact(&compact, indented); err != nil {
		t.Fatal(err)
	}
	// A compact file, as a generator writes one, that fits the cap.
	if err := os.WriteFile(path, compact.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	defer func(old int) { fileSizeCap = old }(fileSizeCap)
	addOne := func(c *Config) error {
		c.BlacklistIPs = append(c.BlacklistIPs, netip.MustParsePrefix("192.0.2.7/32"))
		return nil
	}

	fileSizeCap = (len(indented) + compact.Len()) / 2 // the indented form would not fit
	if _, err := Update(path, addOne); err != nil {
		t.Fatalf("an edit that fits compact: %v", err)
	}
	written, err := ReadFile(path)
	if err != nil {
		t.Fatalf("the edited file cannot be read back: %v", err)
	}
	if len(written) > fileSizeCap || bytes.Contains(written, []byte("\n  ")) {
		t.Errorf("edited file is %d bytes (cap %d), want it compact within the cap", len(written), fileSizeCap)
	}
	if got, err := Load(path); err != nil || !slices.Contains(got.BlacklistIPs, netip.MustParsePrefix("192.0.2.7/32")) {
		t.Errorf("edited file: %v, entry present %v", err, err == nil && slices.Contains(got.BlacklistIPs, netip.MustParsePrefix("192.0.2.7/32")))
	}

	fileSizeCap = len(written) + 5 // the file fits; one more entry does not
	before, _ := os.ReadFile(path)
	_, err = Update(path, func(c *Config) error {
		c.BlacklistIPs = append(c.BlacklistIPs, netip.MustParsePrefix("192.0.2.8/32"))
		return nil
	})
	if err == nil || !strings.Contains(err.Error(), "over the 32 MiB limit every reader applies; not written") {
		t.Errorf("an edit over the cap even compact: %v, want a refusal", err)
	}
	if after, _ := os.ReadFile(path); !bytes.Equal(before, after) {
		t.Error("a refused edit changed the file")
	}
}
