package daemon

import (
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

func TestCutFilePath(t *testing.T) {
	for db, want := range map[string]string{
		"/var/lib/personal-firewall/firewall.db": "/var/lib/personal-firewall/firewall.cut-flows",
		"/srv/pfw/log":                           "/srv/pfw/log.cut-flows",
	} {
		if got := cutFilePath(db); got != want {
			t.Errorf("cutFilePath(%q) = %q, want %q", db, got, want)
		}
	}
}

// What one run writes the next reads back, with the time each record had
// left counted from the write; records whose time is up by the read, and
// an empty memory, leave nothing.
func TestCutFileRoundTrip(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.cut-flows")
	addr := netip.MustParseAddr
	recs := []verdict.CutRecord{
		{Proto: verdict.ProtoTCP, Src: addr("10.0.0.2"), SrcPort: 46421, Dst: addr("10.0.0.1"), DstPort: 7000, Dir: rules.DirIn, Left: 90 * time.Second},
		{Proto: verdict.ProtoUDP, Src: addr("fd00::1"), SrcPort: 5353, Dst: addr("fd00::2"), DstPort: 7500, Dir: rules.DirOut, Left: 10 * time.Second},
		{Proto: verdict.ProtoTCP, Src: addr("10.0.0.3"), SrcPort: 40000, Dst: addr("10.0.0.1"), DstPort: 7000, Dir: rules.DirIn, Turned: true},
	}
	written := time.UnixMilli(1_800_000_000_000)
	if err := writeCutFile(path, cutFileContent(recs, written)); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("file %v, %v: want it readable by its owner only", fi.Mode(), err)
	}
	got, bad, err := readCutFile(path, written.Add(5*time.Second))
	if err != nil || bad != 0 {
		t.Fatalf("read: %v, %d bad lines", err, bad)
	}
	want := []verdict.CutRecord{recs[0], recs[2], recs[1]} // the file is sorted
	want[0].Left, want[2].Left = 85*time.Second, 5*time.Second
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("records read back (-want +got):\n%s", diff)
	}
	if got, _, _ := readCutFile(path, written.Add(time.Hour)); len(got) != 1 || !got[0].Turned {
		t.Errorf("an hour after the write: %+v, want the turned flow alone (a walk forgets it)", got)
	}
	if got, _, _ := readCutFile(path, written.Add(20*time.Second)); len(got) != 2 || got[0].DstPort != 7000 || got[0].Turned {
		t.Errorf("20 s after the write: %+v, want the cut TCP flow and the turned one", got)
	}
	if err := writeCutFile(path, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !os.IsNotExist(err) {
		t.Errorf("no cut flows left the file in place: %v", err)
	}
	if got, bad, err := readCutFile(path, written); got != nil || bad != 0 || err != nil {
		t.Errorf("missing file: %+v, %d, %v, want nothing and no error", got, bad, err)
	}
	if left, _ := filepath.Glob(path + ".tmp-*"); len(left) != 0 {
		t.Errorf("temporary files left: %v", left)
	}
}

// The file is pfwd's own, but a hand edit or a damaged disk must not stop
// a start: lines that cannot be a cut flow are skipped and counted.
func TestReadCutFileSkipsBadLines(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.cut-flows")
	at := time.UnixMilli(1_800_000_000_000)
	later := strconv.FormatInt(at.Add(time.Minute).UnixMilli(), 10)
	body := strings.Join([]string{
		cutFileHeader,
		"",
		"tcp 10.0.0.2 46421 10.0.0.1 7000 in " + later, // good
		"icmp 10.0.0.2 0 10.0.0.1 0 in " + later,
		"tcp 10.0.0.2 70000 10.0.0.1 7000 in " + later,
		"tcp 10.0.0.2 1 10.0.0.1 7000 sideways " + later,
		"tcp fe80::1%eth0 1 fe80::2 7000 in " + later,
		"tcp 10.0.0.2 1 10.0.0.1 7000 in soon",
		"tcp 10.0.0.2 1 10.0.0.1",
		"\x00\xff garbage",
	}, "\n")
	if err := os.WriteFile(path, []byte(body), 0o600); err != nil {
		t.Fatal(err)
	}
	got, bad, err := readCutFile(path, at)
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != 1 || got[0].SrcPort != 46421 || bad != 7 {
		t.Errorf("read %+v with %d bad lines, want the one good record and 7 bad", got, bad)
	}
}

// A FIFO (or anything but a file) in the file's place must not hold the
// start: it is refused at once.
func TestReadCutFileRefusesAFIFO(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.cut-flows")
	if err := syscall.Mkfifo(path, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		_, _, err := readCutFile(path, time.Now())
		done <- err
	}()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("readCutFile of a FIFO: %v, want a refusal naming what it is", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("readCutFile blocked on a FIFO")
	}
}

// The memory is written when it changes, and only then: a flow let back
// in stays in it until a walk misses its entry, and pfwd must not rewrite
// and sync the same file every 30 s meanwhile. With nothing left the file
// goes, and so do a killed save's temporary files at the next start.
func TestSaveCutFlowsWritesOnlyChanges(t *testing.T) {
	dir := t.TempDir()
	cfg, err := rules.Parse([]byte(`{"rules": [{"name": "no 7000", "action": "block", "protocol": "tcp", "ports": [7000]}]}`))
	if err != nil {
		t.Fatal(err)
	}
	d := &Daemon{engine: verdict.NewEngine(verdict.Compile(cfg)), cutFile: filepath.Join(dir, "firewall.cut-flows"),
		log: slog.New(slog.NewTextHandler(io.Discard, nil))}
	inode := func() uint64 {
		var st syscall.Stat_t
		if err := syscall.Stat(d.cutFile, &st); err != nil {
			return 0
		}
		return st.Ino
	}
	d.saveCutFlows()
	if inode() != 0 {
		t.Fatal("a file written with nothing cut")
	}
	p := verdict.FirstPacket(verdict.ProtoTCP, netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("10.0.0.1"), 40000, 7000)
	d.engine.CutFlow(&p, rules.DirIn)
	d.saveCutFlows()
	first := inode()
	if first == 0 {
		t.Fatal("no file after a cut")
	}
	d.saveCutFlows()
	if inode() != first {
		t.Error("the unchanged memory was written again")
	}
	p2 := p
	p2.SrcPort++
	d.engine.CutFlow(&p2, rules.DirIn)
	d.saveCutFlows()
	if inode() == first {
		t.Error("a new cut flow was not written")
	}

	// The next start: a killed save's temporary file goes; the records
	// come back.
	tmp := d.cutFile + ".tmp-123"
	if err := os.WriteFile(tmp, []byte("half"), 0o600); err != nil {
		t.Fatal(err)
	}
	next := &Daemon{engine: verdict.NewEngine(verdict.Compile(cfg)), cutFile: d.cutFile, log: d.log}
	next.restoreCutFlows()
	if _, err := os.Stat(tmp); !os.IsNotExist(err) {
		t.Errorf("the temporary file of a killed save is still there: %v", err)
	}
	if n := len(next.engine.CutRecords()); n != 2 {
		t.Errorf("%d records restored, want 2", n)
	}
	// Once nothing is cut any more, the file goes: also a file of
	// expired lines alone, which restores nothing.
	expired := cutFileContent(next.engine.CutRecords(), time.Now().Add(-time.Hour))
	if err := os.WriteFile(d.cutFile, expired, 0o600); err != nil {
		t.Fatal(err)
	}
	empty := &Daemon{engine: verdict.NewEngine(verdict.Compile(cfg)), cutFile: d.cutFile, log: d.log}
	empty.restoreCutFlows()
	if n := len(empty.engine.CutRecords()); n != 0 {
		t.Fatalf("%d records restored from expired lines, want 0", n)
	}
	empty.saveCutFlows()
	if inode() != 0 {
		t.Error("a file of expired lines outlived the first save")
	}
}

// FuzzParseCutLine: whatever a line of the file holds, parsing it never
// panics, and a line it accepts is a record RememberCut can judge.
func FuzzParseCutLine(f *testing.F) {
	for _, seed := range []string{
		"tcp 10.0.0.2 46421 10.0.0.1 7000 in 1800000060000",
		"udp fd00::1 5353 fd00::2 7500 out turned",
		"tcp ::ffff:10.0.0.2 1 10.0.0.1 2 in -1",
		"icmp 10.0.0.2 0 10.0.0.1 0 in 0",
		"tcp fe80::1%eth0 1 fe80::2 7000 in 1",
	} {
		f.Add(seed)
	}
	now := time.UnixMilli(1_800_000_000_000)
	f.Fuzz(func(t *testing.T, line string) {
		r, ok := parseCutLine(line, now)
		if !ok {
			return
		}
		if r.Proto != verdict.ProtoTCP && r.Proto != verdict.ProtoUDP || !r.Src.IsValid() || !r.Dst.IsValid() {
			t.Errorf("accepted %q as %+v", line, r)
		}
		verdict.NewEngine(verdict.Compile(&rules.Config{})).RememberCut(r)
	})
}
