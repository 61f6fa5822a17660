package daemon

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
)

// On a full disk the log file loses lines without a word: the file cannot
// hold its own complaint. The statistics line's turn reports the lines
// lost since the last report on the log's other destination (stderr or
// the journal), once per growth.
func TestStatisticsReportLostLogFileLines(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	full, err := os.OpenFile("/dev/full", os.O_WRONLY, 0) // every write: ENOSPC
	if err != nil {
		t.Skipf("no /dev/full: %v", err)
	}
	lf := &LogFile{path: "/dev/full", f: full}
	dir := t.TempDir()
	cfgPath := filepath.Join(dir, "firewall_rules.json")
	if err := rules.Save(cfgPath, parseConfig(t, `{"default_policy": "allow"}`)); err != nil {
		t.Fatal(err)
	}
	d, log := startedDaemon(t, Options{ConfigPath: cfgPath, DBPath: filepath.Join(dir, "firewall.db"),
		Socket: filepath.Join(dir, "pfwd.sock"), Queues: 1, LogFile: lf})
	for range 3 {
		fmt.Fprintln(lf, "a line the disk has no room for")
	}
	const report = "ERROR - The log file could not store some lines (stderr or the journal has them)"
	d.logStats()
	if !strings.Contains(log.String(), report+` lost=3 total=3 err="write /dev/full: no space left on device"`) {
		t.Fatalf("no report of the 3 lost lines:\n%s", log.String())
	}
	d.logStats()
	if n := strings.Count(log.String(), report); n != 1 {
		t.Errorf("%d reports with no new loss, want the 1", n)
	}
	fmt.Fprintln(lf, "one more")
	d.logStats()
	if !strings.Contains(log.String(), report+" lost=1 total=4") {
		t.Errorf("no report of the next lost line:\n%s", log.String())
	}
}
