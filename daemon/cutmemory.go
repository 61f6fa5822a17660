package daemon

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// The engine remembers the flows a rule change cut for verdict.CutFlowTTL
// (verdict/cut.go), so that a cut flow's next packet, which conntrack sees
// as a new flow the other way, is judged as what it is. That memory dies
// with the process: a pfwd restarted after a cut let such a packet through
// as a new outbound flow, and the cut connection lived on. So pfwd keeps
// the memory in a small file beside the database: written after each cut,
// every cutSaveEvery while flows are remembered (their packets push their
// time back), and at a stop; read back at start, before the queues decide
// anything. Each line holds a flow and the wall-clock time it is forgotten
// at, so a file from long ago restores nothing; or "turned" for a cut flow
// let back in, which the next walk through conntrack forgets if its entry
// is gone (verdict/cut.go).

// cutSaveEvery is how often the cut flows' memory is written while there
// is one, so that a pfwd killed outright loses at most this much of the
// time their packets added.
const cutSaveEvery = 30 * time.Second

// maxCutFileBytes bounds what start-up reads of the file: MaxCutFlows
// lines of at most about 110 bytes each fit well within it.
const maxCutFileBytes = 4 << 20

const cutFileHeader = "# pfwd: flows cut by a rule change, kept cut across a restart (proto src sport dst dport direction forgotten-at-unix-ms|turned)"

// cutFilePath is the memory's file: beside the database, which survives a
// restart (the runtime directory does not under systemd), named after it
// so that two pfwds with their own databases in one directory keep theirs
// apart.
func cutFilePath(dbPath string) string {
	base := filepath.Base(dbPath)
	return filepath.Join(filepath.Dir(dbPath), strings.TrimSuffix(base, filepath.Ext(base))+".cut-flows")
}

// cutFileContent is the file's content for recs as of now: sorted, with
// each time to the second, so that the same memory gives the same bytes
// and saveCutFlows can tell there is nothing new to write.
func cutFileContent(recs []verdict.CutRecord, now time.Time) []byte {
	lines := make([]string, 0, len(recs))
	for _, r := range recs {
		until := strconv.FormatInt(now.Add(r.Left).Round(time.Second).UnixMilli(), 10)
		if r.Turned {
			until = "turned"
		}
		lines = append(lines, fmt.Sprintf("%s %s %d %s %d %s %s\n", store.ProtoName(r.Proto), r.Src, r.SrcPort, r.Dst, r.DstPort, r.Dir, until))
	}
	slices.Sort(lines)
	return []byte(cutFileHeader + "\n" + strings.Join(lines, ""))
}

// writeCutFile replaces the file at path with content atomically (a crash
// leaves the old file or the new one, and at worst a temporary file that
// the next start removes); with no content it removes the file.
func writeCutFile(path string, content []byte) error {
	if content == nil {
		if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("remove %s: %w", path, err)
		}
		return nil
	}
	f, err := os.CreateTemp(filepath.Dir(path), filepath.Base(path)+cutTempSuffix)
	if err != nil {
		return fmt.Errorf("save cut flows: %w", err)
	}
	defer os.Remove(f.Name()) // after the rename, nothing to remove
	_, err = f.Write(content)
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("save cut flows to %s: %w", path, err)
	}
	return nil
}

// cutTempSuffix names writeCutFile's temporary files (os.CreateTemp's
// pattern).
const cutTempSuffix = ".tmp-*"

// readCutFile reads the records in the file at path that still have time
// left at now. A missing file is none. Lines it cannot read are skipped and
// counted in bad: the file is pfwd's own, but a disk error or a hand edit
// must not stop a start.
func readCutFile(path string, now time.Time) (recs []verdict.CutRecord, bad int, err error) {
	// Non-blocking: a FIFO put in its place must not hold the start.
	f, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, 0, nil
	}
	if err != nil {
		return nil, 0, fmt.Errorf("read cut flows: %w", err)
	}
	defer f.Close()
	if fi, err := f.Stat(); err != nil || !fi.Mode().IsRegular() {
		if err == nil {
			err = fmt.Errorf("%s is %s, not a regular file", path, rules.FileKind(fi.Mode()))
		}
		return nil, 0, fmt.Errorf("read cut flows: %w", err)
	}
	sc := bufio.NewScanner(io.LimitReader(f, maxCutFileBytes))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		r, ok := parseCutLine(line, now)
		switch {
		case !ok:
			bad++
		case (r.Left > 0 || r.Turned) && len(recs) < 2*verdict.MaxCutFlows:
			recs = append(recs, r)
		}
	}
	if err := sc.Err(); err != nil {
		return recs, bad, fmt.Errorf("read cut flows from %s: %w", path, err)
	}
	return recs, bad, nil
}

// parseCutLine reads one line of the file; Left is what remains at now
// (zero or less once past).
func parseCutLine(line string, now time.Time) (verdict.CutRecord, bool) {
	var r verdict.CutRecord
	f := strings.Fields(line)
	if len(f) != 7 {
		return r, false
	}
	switch f[0] {
	case "tcp":
		r.Proto = verdict.ProtoTCP
	case "udp":
		r.Proto = verdict.ProtoUDP
	default:
		return r, false
	}
	var err1, err2, err3, err4, err5, err6 error
	r.Src, err1 = netip.ParseAddr(f[1])
	sport, err2 := strconv.ParseUint(f[2], 10, 16)
	r.Dst, err3 = netip.ParseAddr(f[3])
	dport, err4 := strconv.ParseUint(f[4], 10, 16)
	r.Dir, err5 = rules.ParseDirection(f[5])
	var at int64
	if r.Turned = f[6] == "turned"; !r.Turned {
		at, err6 = strconv.ParseInt(f[6], 10, 64)
	}
	if err := errors.Join(err1, err2, err3, err4, err5, err6); err != nil || r.Src.Zone() != "" || r.Dst.Zone() != "" {
		return r, false
	}
	r.SrcPort, r.DstPort = uint16(sport), uint16(dport)
	if !r.Turned {
		r.Left = time.UnixMilli(at).Sub(now)
	}
	return r, true
}

// restoreCutFlows gives the engine the cut flows an earlier run left in
// the file, and removes the temporary files of a save a kill cut short.
// Called at start, before the queues decide.
func (d *Daemon) restoreCutFlows() {
	// By prefix, not filepath.Glob: a --db path may hold [ or *.
	tmpPrefix := filepath.Base(d.cutFile) + strings.TrimSuffix(cutTempSuffix, "*")
	if entries, err := os.ReadDir(filepath.Dir(d.cutFile)); err == nil {
		for _, e := range entries {
			if strings.HasPrefix(e.Name(), tmpPrefix) && e.Type().IsRegular() {
				os.Remove(filepath.Join(filepath.Dir(d.cutFile), e.Name()))
			}
		}
	}
	_, statErr := os.Lstat(d.cutFile)
	d.cutSaved = statErr == nil // a file of expired lines goes at the next save
	recs, bad, err := readCutFile(d.cutFile, time.Now())
	if err != nil {
		d.log.Warn("Could not read the flows an earlier run cut: a reply on one may start it over as a new flow", "err", err)
	}
	n, refused := 0, 0
	for _, r := range recs {
		if d.engine.RememberCut(r) {
			n++
		} else {
			refused++
		}
	}
	if bad > 0 {
		d.log.Warn("Skipped unreadable lines in the file of cut flows", "path", d.cutFile, "lines", bad)
	}
	if refused > 0 {
		d.log.Warn("Too many cut flows in the file to remember them all: the replies of some may start over as new flows",
			"path", d.cutFile, "flows", refused, "max", verdict.MaxCutFlows)
	}
	if n > 0 {
		d.log.Info("Flows cut before the restart stay cut", "flows", n)
	}
}

// saveCutFlows writes the engine's cut flows to the file when they changed
// since the last write, or removes the file once there are none; an idle
// pfwd touches nothing.
func (d *Daemon) saveCutFlows() {
	d.cutSaveMu.Lock()
	defer d.cutSaveMu.Unlock()
	recs := d.engine.CutRecords()
	var content []byte
	if len(recs) > 0 {
		content = cutFileContent(recs, time.Now())
	}
	if content == nil && !d.cutSaved || content != nil && bytes.Equal(content, d.cutWritten) {
		return
	}
	if err := writeCutFile(d.cutFile, content); err != nil {
		d.logLimited("cut-file", slog.LevelWarn, "Could not save the flows cut by a rule change: after a restart a reply on one may start it over as a new flow", "err", err)
		return
	}
	d.cutSaved, d.cutWritten = content != nil, content
}

// saveCutFlowsAtStop is saveCutFlows bounded by cutSaveAtStop: a hung
// disk must not hold the stop (the log writer and the threat saves may
// wait on it too, and systemd's stop timeout covers them all).
func (d *Daemon) saveCutFlowsAtStop() {
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.saveCutFlows()
	}()
	t := time.NewTimer(min(d.stopWait, cutSaveAtStop))
	defer t.Stop()
	select {
	case <-done:
	case <-t.C:
		d.log.Error("Shutdown: saving the cut flows did not end in time; going on without it", "waited", min(d.stopWait, cutSaveAtStop))
	}
}

// cutSaveAtStop bounds the save of a small file at stop.
const cutSaveAtStop = 2 * time.Second
