package daemon

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// lineRE is the contract's log line: `2026-11-25 15:04:05,123 - INFO - message`.
var lineRE = regexp.MustCompile(`^\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2},\d{3} - (DEBUG|INFO|WARNING|ERROR) - \S.*$`)

// handle formats one record and returns the bytes written.
func handle(t *testing.T, h *LineHandler, r slog.Record) string {
	t.Helper()
	if err := h.Handle(t.Context(), r); err != nil {
		t.Fatal(err)
	}
	return h.out.(*bytes.Buffer).String()
}

func TestLineFormat(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 5, 123_456_789, time.Local)
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug, "2026-11-25 15:04:05,123 - DEBUG - message\n"},
		{slog.LevelDebug - 4, "2026-11-25 15:04:05,123 - DEBUG - message\n"},
		{slog.LevelInfo, "2026-11-25 15:04:05,123 - INFO - message\n"},
		{slog.LevelInfo + 2, "2026-11-25 15:04:05,123 - INFO - message\n"},
		{slog.LevelWarn, "2026-11-25 15:04:05,123 - WARNING - message\n"},
		{slog.LevelError, "2026-11-25 15:04:05,123 - ERROR - message\n"},
		{slog.LevelError + 4, "2026-11-25 15:04:05,123 - ERROR - message\n"},
	} {
		h := NewLineHandler(&bytes.Buffer{}, slog.LevelDebug-8, false)
		got := handle(t, h, slog.NewRecord(at, tc.level, "message", 0))
		if got != tc.want {
			t.Errorf("level %v:\n got %q\nwant %q", tc.level, got, tc.want)
		}
		if !lineRE.MatchString(strings.TrimSuffix(got, "\n")) {
			t.Errorf("level %v: %q does not match %v", tc.level, got, lineRE)
		}
	}
}

// Milliseconds are zero-padded and truncated, never rounded up into the
// next second.
func TestLineFormatMilliseconds(t *testing.T) {
	for _, tc := range []struct {
		nsec int
		want string
	}{
		{0, ",000 - "},
		{7_000_000, ",007 - "},
		{999_999_999, ",999 - "},
	} {
		h := NewLineHandler(&bytes.Buffer{}, slog.LevelInfo, false)
		got := handle(t, h, slog.NewRecord(time.Date(2026, 1, 2, 3, 4, 5, tc.nsec, time.Local), slog.LevelInfo, "m", 0))
		if !strings.HasPrefix(got, "2026-01-02 03:04:05"+tc.want) {
			t.Errorf("nsec %d: got %q, want the prefix %q", tc.nsec, got, "2026-01-02 03:04:05"+tc.want)
		}
	}
}

// A record without a time (slog allows it) is stamped now.
func TestLineFormatZeroTime(t *testing.T) {
	h := NewLineHandler(&bytes.Buffer{}, slog.LevelInfo, false)
	got := strings.TrimSuffix(handle(t, h, slog.NewRecord(time.Time{}, slog.LevelInfo, "m", 0)), "\n")
	if !lineRE.MatchString(got) || !strings.HasPrefix(got, time.Now().Format("2006-01-02")) {
		t.Errorf("zero time: got %q", got)
	}
}

// Under systemd's journal a line is the contract's line behind the
// sd-daemon priority prefix the journal takes as the entry's priority.
func TestJournalFormat(t *testing.T) {
	at := time.Date(2026, 11, 25, 15, 4, 5, 123e6, time.Local)
	for _, tc := range []struct {
		level slog.Level
		want  string
	}{
		{slog.LevelDebug, "<7>2026-11-25 15:04:05,123 - DEBUG - message k=v\n"},
		{slog.LevelInfo, "<6>2026-11-25 15:04:05,123 - INFO - message k=v\n"},
		{slog.LevelWarn, "<4>2026-11-25 15:04:05,123 - WARNING - message k=v\n"},
		{slog.LevelError, "<3>2026-11-25 15:04:05,123 - ERROR - message k=v\n"},
	} {
		h := NewLineHandler(&bytes.Buffer{}, slog.LevelDebug, true)
		r := slog.NewRecord(at, tc.level, "message", 0)
		r.AddAttrs(slog.String("k", "v"))
		if got := handle(t, h, r); got != tc.want {
			t.Errorf("level %v: got %q, want %q", tc.level, got, tc.want)
		}
	}
}

func TestAttrs(t *testing.T) {
	for _, tc := range []struct {
		name string
		attr slog.Attr
		want string
	}{
		{"plain", slog.String("feed", "Feodo"), " feed=Feodo"},
		{"number", slog.Int("rules", 5), " rules=5"},
		{"space", slog.String("reason", "Rule: Block Telnet"), ` reason="Rule: Block Telnet"`},
		{"empty", slog.String("err", ""), ` err=""`},
		{"quote", slog.String("q", `say "hi"`), ` q="say \"hi\""`},
		{"equals", slog.String("kv", "a=b"), ` kv="a=b"`},
		{"tab", slog.String("t", "a\tb"), ` t="a\tb"`},
		{"newline", slog.String("err", "line1\nERROR - forged"), ` err="line1\nERROR - forged"`},
		{"error", slog.Any("err", errors.New("open /x: denied")), ` err="open /x: denied"`},
		{"duration", slog.Duration("took", 1500*time.Millisecond), " took=1.5s"},
		{"group", slog.Group("queue", slog.Int("num", 0), slog.String("mode", "nft")), " queue.num=0 queue.mode=nft"},
		{"empty attr", slog.Attr{}, ""},
	} {
		h := NewLineHandler(&bytes.Buffer{}, slog.LevelInfo, false)
		r := slog.NewRecord(time.Date(2026, 11, 25, 15, 4, 5, 0, time.Local), slog.LevelInfo, "m", 0)
		r.AddAttrs(tc.attr)
		if got, want := handle(t, h, r), "2026-11-25 15:04:05,000 - INFO - m"+tc.want+"\n"; got != want {
			t.Errorf("%s: got %q, want %q", tc.name, got, want)
		}
	}
}

// Attributes from With come first, in order, and do not leak into the
// parent logger.
func TestWithAttrs(t *testing.T) {
	var buf bytes.Buffer
	parent := slog.New(NewLineHandler(&buf, slog.LevelInfo, false))
	child := parent.With("feed", "Feodo Tracker", "n", 1)
	child.Info("updated", "entries", 42)
	parent.Info("plain")
	stamp := regexp.MustCompile(`(?m)^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - `)
	want := "INFO - updated feed=\"Feodo Tracker\" n=1 entries=42\nINFO - plain\n"
	if got := stamp.ReplaceAllString(buf.String(), ""); got != want {
		t.Errorf("got %q, want %q (after the time stamps)", buf.String(), want)
	}
}

// No message or value can forge a second log line.
func TestNoLineInjection(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLineHandler(&buf, slog.LevelInfo, false))
	log.Info("first\n2026-11-25 15:04:05,123 - ERROR - forged\rline", "v", "a\nb")
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("one record became %d lines: %q", len(lines), buf.String())
	}
	if !lineRE.MatchString(lines[0]) || strings.Contains(lines[0], "\r") {
		t.Errorf("line %q does not match %v or holds a CR", lines[0], lineRE)
	}
	if !strings.Contains(lines[0], ` - INFO - first\n2026-11-25 15:04:05,123 - ERROR - forged\rline v="a\nb"`) {
		t.Errorf("escapes not as expected: %q", lines[0])
	}
}

func TestLevelFilter(t *testing.T) {
	var buf bytes.Buffer
	var level slog.LevelVar
	level.Set(slog.LevelWarn)
	log := slog.New(NewLineHandler(&buf, &level, false))
	log.Info("hidden")
	log.Warn("shown")
	level.Set(slog.LevelDebug) // a Leveler is read per record
	log.Debug("now shown")
	got := buf.String()
	if strings.Contains(got, "hidden") || !strings.Contains(got, "WARNING - shown") || !strings.Contains(got, "DEBUG - now shown") {
		t.Errorf("level filtering wrong:\n%s", got)
	}
}

// Lines written from many goroutines never interleave.
func TestConcurrentLinesStayWhole(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLineHandler(&buf, slog.LevelInfo, false)).With("worker", "q")
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Go(func() {
			for i := range 200 {
				log.Info("Blocked packet", "g", g, "i", i, "reason", "Rule: Block Telnet and SMB")
			}
		})
	}
	wg.Wait()
	lines := strings.Split(strings.TrimSuffix(buf.String(), "\n"), "\n")
	if len(lines) != 8*200 {
		t.Fatalf("%d lines, want %d", len(lines), 8*200)
	}
	for _, l := range lines {
		if !lineRE.MatchString(l) || !strings.HasSuffix(l, `reason="Rule: Block Telnet and SMB"`) {
			t.Fatalf("torn line %q", l)
		}
	}
}

func TestSampler(t *testing.T) {
	start := time.Date(2026, 11, 25, 15, 0, 0, 0, time.UTC)
	s := newSampler(time.Second, 2)
	type step struct {
		key        string
		at         time.Duration
		ok         bool
		suppressed int
	}
	for i, st := range []step{
		{"a", 0, true, 0},
		{"a", 100 * time.Millisecond, true, 0},
		{"a", 200 * time.Millisecond, false, 0}, // over the burst
		{"b", 300 * time.Millisecond, true, 0},  // keys are independent
		{"a", 999 * time.Millisecond, false, 0},
		{"a", 1000 * time.Millisecond, true, 2}, // new window: reports what the last one dropped
		{"a", 1100 * time.Millisecond, true, 0}, // ...once
		{"a", 1200 * time.Millisecond, false, 0},
		{"a", 5 * time.Second, true, 1},
		{"b", 5 * time.Second, true, 0},
	} {
		ok, sup := s.allow(st.key, start.Add(st.at))
		if ok != st.ok || sup != st.suppressed {
			t.Errorf("step %d (%s at %v): allow = %v, %d; want %v, %d", i, st.key, st.at, ok, sup, st.ok, st.suppressed)
		}
	}
}

// The sampler's memory is bounded whatever the keys.
func TestSamplerBounded(t *testing.T) {
	s := newSampler(time.Minute, 1)
	now := time.Now()
	for i := range 10_000 {
		if ok, _ := s.allow(fmt.Sprint("key", i), now); !ok {
			t.Fatalf("first line of key %d refused", i)
		}
	}
	if n := len(s.windows); n > 1025 {
		t.Errorf("sampler holds %d keys, want at most 1025", n)
	}
}

// logrotate moves the file away and sends SIGHUP: pfwd must then write to
// a new file at the same path, and nothing may be lost in between.
func TestLogFileReopenAfterRotation(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "log", "firewall.log") // the directory is created too
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	log := slog.New(NewLineHandler(lf, slog.LevelInfo, false))
	log.Info("before rotation")
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	log.Info("after the move, before SIGHUP") // still goes to the moved file
	if err := lf.Reopen(); err != nil {
		t.Fatal(err)
	}
	log.Info("after reopen")

	assertLines(t, rotated, "before rotation", "after the move, before SIGHUP")
	assertLines(t, path, "after reopen")
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if perm := fi.Mode().Perm() &^ 0o640; perm != 0 {
		t.Errorf("new log file mode %v: readable beyond owner and group", fi.Mode())
	}
}

// copytruncate-style rotation: the file is truncated in place; appends go
// on at its new end, not at the old offset (no hole of NUL bytes).
func TestLogFileTruncatedInPlace(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	fmt.Fprintln(lf, strings.Repeat("x", 1000))
	if err := os.Truncate(path, 0); err != nil {
		t.Fatal(err)
	}
	fmt.Fprintln(lf, "after truncate")
	assertLines(t, path, "after truncate")
}

// A failed reopen keeps the old file: the log goes on somewhere.
func TestLogFileReopenFailureKeepsOldFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "firewall.log")
	lf, err := OpenLogFile(path)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	rotated := path + ".1"
	if err := os.Rename(path, rotated); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil { // the path is now taken by a directory
		t.Fatal(err)
	}
	err = lf.Reopen()
	if err == nil || !strings.HasPrefix(err.Error(), "log file: ") || !strings.Contains(err.Error(), path) {
		t.Fatalf("Reopen onto a directory: err = %v, want a \"log file: ...\" error naming %s", err, path)
	}
	fmt.Fprintln(lf, "still logged")
	assertLines(t, rotated, "still logged")
}

// pfwd runs as root: what sits at the log file's path must not make it
// hang (a named pipe blocked the open, at start-up or on every SIGHUP) or
// write where another user points it (a symbolic link they planted in a
// directory they can write).
func TestLogFileRefusesWhatRootMustNotOpen(t *testing.T) {
	dir := t.TempDir()
	fifo := filepath.Join(dir, "fifo.log")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := OpenLogFile(fifo); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file (a named pipe)") {
			t.Errorf("named pipe: err = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("opening a named pipe as the log file still blocks after 5 s")
	}

	victim := filepath.Join(dir, "victim")
	planted := filepath.Join(dir, "planted.log")
	if err := os.Symlink(victim, planted); err != nil {
		t.Fatal(err)
	}
	if err := os.Lchown(planted, 65534, 65534); err != nil {
		t.Fatal(err)
	}
	if _, err := OpenLogFile(planted); err == nil || !strings.Contains(err.Error(), "symbolic link owned by uid 65534") {
		t.Errorf("a link another user owns: err = %v", err)
	}
	if _, err := os.Lstat(victim); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("the planted link's target was created: %v", err)
	}

	// A link root made (an admin pointing the log elsewhere) is followed.
	target := filepath.Join(dir, "elsewhere.log")
	linked := filepath.Join(dir, "linked.log")
	if err := os.Symlink(target, linked); err != nil {
		t.Fatal(err)
	}
	lf, err := OpenLogFile(linked)
	if err != nil {
		t.Fatalf("a link of root's own: %v", err)
	}
	fmt.Fprintln(lf, "through the link")
	lf.Close()
	assertLines(t, target, "through the link")
}

func assertLines(t *testing.T, path string, want ...string) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	got := strings.Split(strings.TrimSuffix(string(b), "\n"), "\n")
	if len(got) != len(want) {
		t.Fatalf("%s: %d lines %q, want %d", filepath.Base(path), len(got), got, len(want))
	}
	for i := range want {
		if !strings.HasSuffix(got[i], want[i]) {
			t.Errorf("%s line %d: %q, want it to end in %q", filepath.Base(path), i+1, got[i], want[i])
		}
	}
}

// UnderJournal is true only when stderr is the stream JOURNAL_STREAM names.
func TestUnderJournal(t *testing.T) {
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		t.Skipf("fstat stderr: %v", err)
	}
	for _, tc := range []struct {
		env  string
		want bool
	}{
		{"", false},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino), true},
		{fmt.Sprintf("%d:%d", st.Dev, st.Ino+1), false}, // stderr was redirected since systemd started us
		{fmt.Sprintf("%d", st.Dev), false},
		{"garbage", false},
	} {
		t.Setenv("JOURNAL_STREAM", tc.env)
		if got := UnderJournal(); got != tc.want {
			t.Errorf("JOURNAL_STREAM=%q: UnderJournal() = %v, want %v", tc.env, got, tc.want)
		}
	}
}

// A broken stderr pipe must not cost the log file any line, and the dead
// pipe is written once, not for every later line.
func TestTeeKeepsWritingPastABrokenPipe(t *testing.T) {
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	r.Close()
	defer w.Close()
	pipe := &countingWriter{w: w}
	var file bytes.Buffer
	log := slog.New(NewLineHandler(NewTee(pipe, &file), slog.LevelInfo, false))
	// The test binary does not ignore SIGPIPE, but Go raises it only for
	// fds 1 and 2; this pipe is another fd, so the write returns EPIPE.
	log.Info("one")
	log.Info("two")
	log.Info("three")
	if got := strings.Count(file.String(), "\n"); got != 3 {
		t.Fatalf("file got %d lines, want 3:\n%s", got, file.String())
	}
	if pipe.n != 1 {
		t.Errorf("broken pipe written %d times, want once (then dropped)", pipe.n)
	}
}

func TestTeeFailsOnlyWhenEveryWriterFails(t *testing.T) {
	bad := errWriter{errors.New("disk full")}
	var ok bytes.Buffer
	if n, err := NewTee(bad, &ok).Write([]byte("x\n")); err != nil || n != 2 {
		t.Errorf("one writer left: n=%d err=%v, want 2 <nil>", n, err)
	}
	if ok.String() != "x\n" {
		t.Errorf("good writer got %q", ok.String())
	}
	// A failing writer other than a broken pipe stays: it may recover.
	tee := NewTee(bad, errWriter{errors.New("quota")})
	for range 2 {
		if _, err := tee.Write([]byte("x\n")); err == nil || !strings.Contains(err.Error(), "disk full") || !strings.Contains(err.Error(), "quota") {
			t.Errorf("all writers failing: err=%v, want both errors", err)
		}
	}
}

type countingWriter struct {
	w *os.File
	n int
}

func (c *countingWriter) Write(p []byte) (int, error) { c.n++; return c.w.Write(p) }

type errWriter struct{ err error }

func (e errWriter) Write([]byte) (int, error) { return 0, e.err }

// A database that fails every flush (a full disk) gets one error line per
// limitedEvery, saying how many errors it stands for.
func TestWriterErrorsSpacedOut(t *testing.T) {
	var buf bytes.Buffer
	log := slog.New(NewLineHandler(&buf, slog.LevelInfo, false))
	d := newDaemon(Options{}, log)
	for range 40 {
		d.logWriterError(errors.New("write 0 log rows: database or disk is full"))
	}
	if n := strings.Count(buf.String(), "Log writer"); n != 1 {
		t.Errorf("%d lines for 40 errors in a moment, want 1:\n%s", n, buf.String())
	}
	d.limited.lines.windows["log-writer"].start = time.Now().Add(-limitedEvery)
	d.logWriterError(errors.New("write 3 log rows: database or disk is full"))
	if !strings.Contains(buf.String(), "errors_since_last_line=39") {
		t.Errorf("the next line does not count the 39 left out:\n%s", buf.String())
	}
}

// The log file gets a journal-mode line without its priority prefix, and
// anything else as it is.
func TestWithoutPriority(t *testing.T) {
	for in, want := range map[string]string{
		"<6>2026-11-25 15:04:05,123 - INFO - m\n": "2026-11-25 15:04:05,123 - INFO - m\n",
		"<3>x\n":                               "x\n",
		"2026-11-25 15:04:05,123 - INFO - m\n": "2026-11-25 15:04:05,123 - INFO - m\n",
		"<9>not a priority\n":                  "<9>not a priority\n",
		"<6":                                   "<6",
	} {
		var buf bytes.Buffer
		n, err := WithoutPriority(&buf).Write([]byte(in))
		if err != nil || n != len(in) || buf.String() != want {
			t.Errorf("Write(%q) = %d, %v and wrote %q; want %d, nil and %q", in, n, err, buf.String(), len(in), want)
		}
	}
}
