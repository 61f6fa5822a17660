package daemon

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"syscall"
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

// ForwardHUP, for each SIGHUP: tells systemd a reload began, reopens the
// log file that logrotate moved away, then asks for the reload, so the
// reload's lines go to the new file; SIGHUPs that pile up while a reload is
// pending ask for one; stop waits for the forwarder.
func TestForwardHUP(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pfwd.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	hup := make(chan os.Signal)
	reload := make(chan struct{}, 1)
	var reloading atomic.Int32
	stop := ForwardHUP(hup, lf, reload, func() { reloading.Add(1) }, slog.New(slog.DiscardHandler))

	if err := os.Rename(path, path+".1"); err != nil { // logrotate
		t.Fatal(err)
	}
	hup <- syscall.SIGHUP
	select {
	case <-reload:
	case <-time.After(5 * time.Second):
		t.Fatal("no reload asked for after a SIGHUP")
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("the log file was not reopened before the reload was asked for: %v", err)
	}
	if n := reloading.Load(); n != 1 {
		t.Errorf("systemd told of %d reloads, want 1", n)
	}
	for range 3 { // a pending reload stands for the SIGHUPs behind it
		hup <- syscall.SIGHUP
	}
	stop()
	if len(reload) != 1 || reloading.Load() != 4 {
		t.Errorf("after 3 more SIGHUPs: %d reloads pending (want 1), systemd told %d times (want 4)", len(reload), reloading.Load())
	}
	select {
	case hup <- syscall.SIGHUP:
		t.Error("a SIGHUP was taken after stop returned")
	case <-time.After(50 * time.Millisecond):
	}
}
