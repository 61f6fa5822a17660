package daemon

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/pfw/pfw/rules"
)

// LineHandler writes slog records as pfw's log lines:
//
//	2026-11-25 15:04:05,123 - INFO - message key=value ...
//
// Timestamps are local time, levels DEBUG, INFO, WARNING, ERROR. Under
// systemd's journal the line is the same behind an sd-daemon priority
// prefix ("<6>2026-11-25 15:04:05,123 - INFO - message"): the journal
// takes the prefix as the entry's priority, so `journalctl -p warning`
// works, and keeps the line in the format the contract gives every log.
// (The journal stamps entries itself; the line's own stamp is the one
// scripts reading the log already parse.)
type LineHandler struct {
	mu      *sync.Mutex
	out     io.Writer
	level   slog.Leveler
	journal bool
	attrs   string // pre-formatted attrs from With
}

// NewLineHandler returns a handler writing to out.
func NewLineHandler(out io.Writer, level slog.Leveler, journal bool) *LineHandler {
	return &LineHandler{mu: &sync.Mutex{}, out: out, level: level, journal: journal}
}

func (h *LineHandler) Enabled(_ context.Context, l slog.Level) bool { return l >= h.level.Level() }

// ParseLevel reads a level as pfwd's --log-level spells it: debug, info,
// warning (or warn) or error.
func ParseLevel(s string) (slog.Level, error) {
	switch s {
	case "debug":
		return slog.LevelDebug, nil
	case "info":
		return slog.LevelInfo, nil
	case "warning", "warn":
		return slog.LevelWarn, nil
	case "error":
		return slog.LevelError, nil
	}
	return 0, fmt.Errorf("%q: want debug, info, warning or error", s)
}

// levelName spells a level as pfw's log lines do.
func levelName(l slog.Level) string {
	switch {
	case l >= slog.LevelError:
		return "ERROR"
	case l >= slog.LevelWarn:
		return "WARNING"
	case l >= slog.LevelInfo:
		return "INFO"
	}
	return "DEBUG"
}

func journalPriority(l slog.Level) int {
	switch {
	case l >= slog.LevelError:
		return 3
	case l >= slog.LevelWarn:
		return 4
	case l >= slog.LevelInfo:
		return 6
	}
	return 7
}

func (h *LineHandler) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	if h.journal {
		fmt.Fprintf(&b, "<%d>", journalPriority(r.Level))
	}
	t := r.Time
	if t.IsZero() {
		t = time.Now()
	}
	b.WriteString(t.Format("2006-01-02 15:04:05"))
	fmt.Fprintf(&b, ",%03d - %s - ", t.Nanosecond()/1e6, levelName(r.Level))
	b.WriteString(oneLine(r.Message))
	b.WriteString(h.attrs)
	r.Attrs(func(a slog.Attr) bool {
		appendAttr(&b, a)
		return true
	})
	b.WriteByte('\n')
	h.mu.Lock()
	defer h.mu.Unlock()
	_, err := io.WriteString(h.out, b.String())
	return err
}

func appendAttr(b *strings.Builder, a slog.Attr) {
	if a.Equal(slog.Attr{}) {
		return
	}
	v := a.Value.Resolve()
	if v.Kind() == slog.KindGroup {
		for _, g := range v.Group() {
			appendAttr(b, slog.Attr{Key: a.Key + "." + g.Key, Value: g.Value})
		}
		return
	}
	b.WriteByte(' ')
	b.WriteString(oneLine(a.Key))
	b.WriteByte('=')
	s := v.String()
	if s == "" || strings.ContainsAny(s, " \t\"=\n") {
		s = strconv.Quote(s)
	}
	b.WriteString(s)
}

// oneLine keeps a message from forging extra log lines.
func oneLine(s string) string {
	if !strings.ContainsAny(s, "\r\n") {
		return s
	}
	return strings.NewReplacer("\r", `\r`, "\n", `\n`).Replace(s)
}

func (h *LineHandler) WithAttrs(attrs []slog.Attr) slog.Handler {
	var b strings.Builder
	b.WriteString(h.attrs)
	for _, a := range attrs {
		appendAttr(&b, a)
	}
	n := *h
	n.attrs = b.String()
	return &n
}

func (h *LineHandler) WithGroup(name string) slog.Handler { return h } // pfw does not use groups

// LogFile is the application log file, reopened on demand so logrotate
// can move it away (pfwd reopens it on SIGHUP).
type LogFile struct {
	mu      sync.Mutex
	path    string
	f       *os.File
	lost    uint64 // lines a write failed to store (a full disk)
	lastErr error  // the last such failure
}

// OpenLogFile opens (creating) the log file for appending.
func OpenLogFile(path string) (*LogFile, error) {
	l := &LogFile{path: path}
	if err := l.Reopen(); err != nil {
		return nil, err
	}
	return l, nil
}

// Reopen closes the file and opens path again.
func (l *LogFile) Reopen() error {
	if err := os.MkdirAll(filepath.Dir(l.path), 0o750); err != nil {
		return fmt.Errorf("log file: %w", err)
	}
	f, err := openLogFile(l.path)
	if err != nil {
		return err
	}
	l.mu.Lock()
	old := l.f
	l.f = f
	l.mu.Unlock()
	if old != nil {
		old.Close()
	}
	return nil
}

// openLogFile opens path for appending, creating it. pfwd runs as root, so
// what it opens matters: the file must be a regular one (a named pipe
// would block the open, and with it start-up or every later SIGHUP; a
// device may act on being opened), and a symbolic link is followed only
// when root (or pfwd's own user) made it, since a link another user
// planted in a directory they can write would have root append to
// whatever file it names.
func openLogFile(path string) (*os.File, error) {
	const flags = os.O_WRONLY | os.O_APPEND | os.O_CREATE | syscall.O_NONBLOCK
	f, err := os.OpenFile(path, flags|syscall.O_NOFOLLOW, 0o640)
	if errors.Is(err, syscall.ELOOP) {
		fi, lerr := os.Lstat(path)
		if lerr != nil || fi.Mode()&os.ModeSymlink == 0 { // gone or replaced meanwhile
			return nil, fmt.Errorf("log file: %w", err)
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok {
			return nil, fmt.Errorf("log file: %w", err)
		}
		if st.Uid != 0 && int(st.Uid) != os.Geteuid() {
			return nil, fmt.Errorf("log file: %s is a symbolic link owned by uid %d; pfwd follows only root's", path, st.Uid)
		}
		f, err = os.OpenFile(path, flags, 0o640)
	}
	if errors.Is(err, syscall.ENXIO) {
		// A named pipe nobody reads (or a device without its hardware)
		// refuses a non-blocking open for writing: name what it is.
		if fi, serr := os.Stat(path); serr == nil && !fi.Mode().IsRegular() {
			return nil, fmt.Errorf("log file: %s: not a regular file (%s); --log-file \"\" runs without one", path, rules.FileKind(fi.Mode()))
		}
	}
	if err != nil {
		return nil, fmt.Errorf("log file: %w", err)
	}
	fi, err := f.Stat()
	if err == nil && !fi.Mode().IsRegular() {
		err = fmt.Errorf("not a regular file (%s); --log-file \"\" runs without one", rules.FileKind(fi.Mode()))
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("log file: %s: %w", path, err)
	}
	return f, nil // O_NONBLOCK means nothing to a regular file's writes
}

func (l *LogFile) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	n, err := l.f.Write(p)
	if err == nil && n < len(p) {
		err = io.ErrShortWrite
	}
	if err != nil {
		l.lost++
		l.lastErr = err
	}
	return n, err
}

// Lost returns how many lines a write failed to store in the file so far,
// and the last failure. The lines still reach stderr or the journal, which
// is where pfwd reports them (Options.LogFile).
func (l *LogFile) Lost() (uint64, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.lost, l.lastErr
}

// Close closes the file.
func (l *LogFile) Close() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.f.Close()
}

// WithoutPriority passes each line on to w without the sd-daemon priority
// prefix ("<6>") a journal-mode LineHandler puts in front: the journal
// reads the prefix, a log file must not hold it. Each Write is one whole
// line, as LineHandler writes them.
func WithoutPriority(w io.Writer) io.Writer { return noPriority{w} }

type noPriority struct{ w io.Writer }

func (n noPriority) Write(p []byte) (int, error) {
	if len(p) < 3 || p[0] != '<' || p[1] < '0' || p[1] > '7' || p[2] != '>' {
		return n.w.Write(p)
	}
	m, err := n.w.Write(p[3:])
	if m == len(p)-3 {
		m = len(p)
	}
	return m, err
}

// Tee writes each line to every writer. Unlike io.MultiWriter, a writer
// that fails does not stop the others: when stderr's reader goes away
// (EPIPE), the log file keeps every line. A writer that failed with EPIPE
// is dropped, since nothing will read it again. Write fails only when
// every writer failed.
type Tee struct {
	mu sync.Mutex
	ws []io.Writer
}

// NewTee returns a Tee over ws.
func NewTee(ws ...io.Writer) *Tee { return &Tee{ws: ws} }

func (t *Tee) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	var errs []error
	ok := false
	kept := t.ws[:0]
	for _, w := range t.ws {
		n, err := w.Write(p)
		if err == nil && n < len(p) {
			err = io.ErrShortWrite
		}
		if err == nil {
			ok = true
		} else {
			errs = append(errs, err)
		}
		if !errors.Is(err, syscall.EPIPE) {
			kept = append(kept, w)
		}
	}
	clear(t.ws[len(kept):])
	t.ws = kept
	if ok || len(errs) == 0 {
		return len(p), nil
	}
	return 0, errors.Join(errs...)
}

// UnderJournal reports whether stderr is connected to systemd's journal
// (systemd sets JOURNAL_STREAM to the device and inode of that stream).
func UnderJournal() bool {
	v := os.Getenv("JOURNAL_STREAM")
	if v == "" {
		return false
	}
	dev, ino, ok := strings.Cut(v, ":")
	if !ok {
		return false
	}
	var st syscall.Stat_t
	if err := syscall.Fstat(2, &st); err != nil {
		return false
	}
	return strconv.FormatUint(st.Dev, 10) == dev && strconv.FormatUint(st.Ino, 10) == ino
}

// sampler lets through at most burst messages per interval for a key and
// counts the rest, so per-packet log lines cannot flood the log.
type sampler struct {
	mu       sync.Mutex
	interval time.Duration
	burst    int
	windows  map[string]*sampleWindow
}

type sampleWindow struct {
	start      time.Time
	n          int
	suppressed int
}

// newSampler allows burst lines per interval per key.
func newSampler(interval time.Duration, burst int) *sampler {
	return &sampler{interval: interval, burst: burst, windows: map[string]*sampleWindow{}}
}

// allow reports whether a line for key may be written now, and how many
// were suppressed in the window that just ended (to be mentioned once).
func (s *sampler) allow(key string, now time.Time) (ok bool, suppressedBefore int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	w := s.windows[key]
	if w == nil {
		if len(s.windows) > 1024 { // keys come from config reasons; bound them anyway
			clear(s.windows)
		}
		w = &sampleWindow{start: now}
		s.windows[key] = w
	}
	if now.Sub(w.start) >= s.interval {
		suppressedBefore = w.suppressed
		*w = sampleWindow{start: now}
	}
	if w.n < s.burst {
		w.n++
		return true, suppressedBefore
	}
	w.suppressed++
	return false, suppressedBefore
}

// limitedEvery is the least time between two log lines about one recurring
// condition: a full disk fails every flush, four times a second, and a
// table check that cannot read the kernel fails every second.
const limitedEvery = 30 * time.Second

// limitedLogger writes the lines of each recurring condition (a key) at
// most once per limitedEvery; the next line says how many were left out.
type limitedLogger struct {
	out   *slog.Logger
	lines *sampler
}

func newLimitedLogger(out *slog.Logger) *limitedLogger {
	return &limitedLogger{out: out, lines: newSampler(limitedEvery, 1)}
}

func (l *limitedLogger) log(key string, level slog.Level, msg string, args ...any) {
	ok, missed := l.lines.allow(key, time.Now())
	if !ok {
		return
	}
	if missed > 0 {
		args = append(args, "errors_since_last_line", missed)
	}
	l.out.Log(context.Background(), level, msg, args...)
}

// ForwardHUP answers each SIGHUP on hup until the returned stop is called,
// which waits for it: it calls reloading (pfwd tells systemd a reload
// began), reopens lf (logrotate moved the file away; nil for none), then
// asks the daemon to reload on reload, so the reload's lines go to the new
// file. A reload already pending stands for this one too: it reads the
// file as it is now.
func ForwardHUP(hup <-chan os.Signal, lf *LogFile, reload chan<- struct{}, reloading func(), log *slog.Logger) (stop func()) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			select {
			case <-ctx.Done():
				return
			case <-hup:
			}
			reloading()
			if lf != nil {
				if err := lf.Reopen(); err != nil {
					log.Error("Could not reopen the log file", "err", err)
				}
			}
			select {
			case reload <- struct{}{}:
			default:
			}
		}
	}()
	return func() { cancel(); <-done }
}
