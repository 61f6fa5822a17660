package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"
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
	opts := testOptions(t, `{"default_policy": "allow"}`)
	opts.LogFile = lf
	d, log := startedDaemon(t, opts)
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
