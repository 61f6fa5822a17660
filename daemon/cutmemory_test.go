package daemon

import (
	"net/netip"
	"os"
	"path/filepath"
	"strconv"
	"strings"
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
	if err := writeCutFile(path, recs, written); err != nil {
		t.Fatal(err)
	}
	if fi, err := os.Stat(path); err != nil || fi.Mode().Perm()&0o077 != 0 {
		t.Errorf("file %v, %v: want it readable by its owner only", fi.Mode(), err)
	}
	got, bad, err := readCutFile(path, written.Add(5*time.Second))
	if err != nil || bad != 0 {
		t.Fatalf("read: %v, %d bad lines", err, bad)
	}
	want := []verdict.CutRecord{recs[0], recs[1], recs[2]}
	want[0].Left, want[1].Left = 85*time.Second, 5*time.Second
	if diff := cmp.Diff(want, got, cmp.Comparer(func(a, b netip.Addr) bool { return a == b })); diff != "" {
		t.Errorf("records read back (-want +got):\n%s", diff)
	}
	if got, _, _ := readCutFile(path, written.Add(time.Hour)); len(got) != 1 || !got[0].Turned {
		t.Errorf("an hour after the write: %+v, want the turned flow alone (a walk forgets it)", got)
	}
	if got, _, _ := readCutFile(path, written.Add(20*time.Second)); len(got) != 2 || got[0].DstPort != 7000 || got[0].Turned {
		t.Errorf("20 s after the write: %+v, want the cut TCP flow and the turned one", got)
	}
	if err := writeCutFile(path, nil, written); err != nil {
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
