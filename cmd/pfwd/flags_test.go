package main

// pfwd's command line and start-up logging, tested in-process: no root,
// no kernel.

import (
	"bytes"
	"errors"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

func TestParseFlagsUsage(t *testing.T) {
	for _, tc := range []struct {
		name   string
		args   []string
		exit   int
		ok     bool
		stdout string // a substring of stdout; "" means stdout stays empty
		stderr string // likewise for stderr
	}{
		{"defaults", nil, 0, true, "", ""},
		{"-h", []string{"-h"}, 0, false, "Usage: pfwd [flags]", ""},
		{"--help", []string{"--help"}, 0, false, "Usage: pfwd [flags]", ""},
		{"-help after flags", []string{"--queues", "2", "-help"}, 0, false, "-stats-every duration", ""},
		{"--version", []string{"--version"}, 0, false, "pfwd ", ""},
		{"undefined flag", []string{"--nope"}, 2, false, "", "flag provided but not defined: -nope\nUsage: pfwd"},
		{"duration without unit", []string{"--stats-every", "5"}, 2, false, "", `invalid value "5" for flag -stats-every`},
		{"stray argument", []string{"stray"}, 2, false, "", `unexpected argument "stray"`},
		{"stats-every 0", []string{"--stats-every", "0"}, 2, false, "", "pfwd: --stats-every 0s: want an interval of at least 1s"},
		{"stats-every negative", []string{"--stats-every", "-5s"}, 2, false, "", "pfwd: --stats-every -5s: want an interval of at least 1s"},
		{"stats-every too short", []string{"--stats-every", "1ms"}, 2, false, "", "pfwd: --stats-every 1ms: want an interval of at least 1s"},
		{"stats-every 1s", []string{"--stats-every", "1s"}, 0, true, "", ""},
		{"queue too big", []string{"--queue", "70000"}, 2, false, "", "pfwd: --queue 70000: not a queue number"},
		{"queue negative", []string{"--queue", "-1"}, 2, false, "", `invalid value "-1" for flag -queue`},
		{"queues negative", []string{"--queues", "-1"}, 2, false, "", "pfwd: --queues -1: want 1-64"},
		{"queues too many", []string{"--queues", "65"}, 2, false, "", "pfwd: --queues 65: want 1-64"},
		{"queues past the last queue", []string{"--queue", "65535", "--queues", "2"}, 2, false, "", "past 65535"},
		{"nflog group 0", []string{"--nflog-group", "0"}, 2, false, "", "pfwd: --nflog-group 0: not an NFLOG group (1-65535)"},
		{"nflog group too big", []string{"--nflog-group", "65536"}, 2, false, "", "pfwd: --nflog-group 65536: not an NFLOG group"},
		{"log level", []string{"--log-level", "loud"}, 2, false, "", `pfwd: --log-level "loud"`},
		{"iface", []string{"--iface", "a/b"}, 2, false, "", `--iface: "a/b" is not an interface name`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var stdout, stderr bytes.Buffer
			_, exit, ok := parseFlags(tc.args, &stdout, &stderr)
			if exit != tc.exit || ok != tc.ok {
				t.Errorf("pfwd %q: exit %d, start %v; want exit %d, start %v", tc.args, exit, ok, tc.exit, tc.ok)
			}
			for _, s := range []struct {
				name      string
				got, want string
			}{{"stdout", stdout.String(), tc.stdout}, {"stderr", stderr.String(), tc.stderr}} {
				if s.want == "" && s.got != "" {
					t.Errorf("pfwd %q wrote to %s: %q", tc.args, s.name, s.got)
				}
				if !strings.Contains(s.got, s.want) {
					t.Errorf("pfwd %q: %s is %q, want it to hold %q", tc.args, s.name, s.got, s.want)
				}
			}
		})
	}
}

func TestParseFlagsValues(t *testing.T) {
	cl, _, ok := parseFlags([]string{"--stats-every", "2m", "--queue", "7", "--queues", "3", "--log-level", "warning", "--metrics", "127.0.0.1:9846", "--nflog-group", "99"}, &bytes.Buffer{}, &bytes.Buffer{})
	if !ok {
		t.Fatal("valid flags refused")
	}
	if o := cl.opts; o.StatsEvery != 2*time.Minute || o.QueueNum != 7 || o.Queues != 3 || o.MetricsAddr != "127.0.0.1:9846" || cl.level != slog.LevelWarn || o.LogGroup != 99 {
		t.Errorf("parsed %+v, level %v", o, cl.level)
	}
	if cl, _, _ = parseFlags(nil, &bytes.Buffer{}, &bytes.Buffer{}); cl.opts.StatsEvery != 30*time.Second || cl.opts.Queues < 1 || cl.opts.LogGroup != 27 {
		t.Errorf("defaults: stats every %v, %d queues; want 30s and one per CPU", cl.opts.StatsEvery, cl.opts.Queues)
	}
}

// logLine is the contract's log format.
var logLine = regexp.MustCompile(`^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d{3} - (DEBUG|INFO|WARNING|ERROR) - `)

// A log file that cannot be opened is reported as a WARNING in the log's
// own format, and pfwd logs on to stderr.
func TestOpenLogFileFailureIsAWarning(t *testing.T) {
	notADir := filepath.Join(t.TempDir(), "file")
	if err := os.WriteFile(notADir, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	var stderr bytes.Buffer
	log, lf := openLog(filepath.Join(notADir, "firewall.log"), slog.LevelInfo, false, &stderr)
	if lf != nil {
		t.Fatal("openLog returned a log file it could not have opened")
	}
	log.Info("after")
	lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n")
	if len(lines) != 2 {
		t.Fatalf("stderr holds %d lines, want the warning and the next line:\n%s", len(lines), stderr.String())
	}
	if !logLine.MatchString(lines[0]) || !strings.Contains(lines[0], " - WARNING - Could not open the log file: logging to stderr only err=") ||
		!strings.Contains(lines[0], notADir) {
		t.Errorf("warning line %q: want the log format, level WARNING, naming the path", lines[0])
	}
	if !logLine.MatchString(lines[1]) || !strings.HasSuffix(lines[1], " - INFO - after") {
		t.Errorf("next line %q: want it logged to stderr", lines[1])
	}
}

func TestOpenLogWritesFileAndStderr(t *testing.T) {
	path := filepath.Join(t.TempDir(), "log", "firewall.log")
	var stderr bytes.Buffer
	log, lf := openLog(path, slog.LevelInfo, false, &stderr)
	if lf == nil {
		t.Fatalf("no log file: %s", stderr.String())
	}
	log.Info("hello")
	lf.Close()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !logLine.Match(file) || string(file) != stderr.String() {
		t.Errorf("log file %q and stderr %q: want the same line in the log format", file, stderr.String())
	}
}

// Under systemd the journal gets each line behind its priority prefix,
// and the log file the same line without it.
func TestOpenLogUnderTheJournal(t *testing.T) {
	path := filepath.Join(t.TempDir(), "firewall.log")
	var stderr bytes.Buffer
	log, lf := openLog(path, slog.LevelInfo, true, &stderr)
	if lf == nil {
		t.Fatalf("no log file under the journal: %s", stderr.String())
	}
	log.Warn("hello")
	lf.Close()
	file, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if !logLine.Match(file) || !strings.HasSuffix(string(file), " - WARNING - hello\n") {
		t.Errorf("log file %q: want the line in the log format", file)
	}
	if stderr.String() != "<4>"+string(file) {
		t.Errorf("journal stream %q: want %q", stderr.String(), "<4>"+string(file))
	}
}

// The real binary: `pfwd --help | less` shows the usage; a usage error
// goes to stderr with exit status 2.
func TestBinaryUsageStreams(t *testing.T) {
	if testing.Short() {
		t.Skip("builds pfwd: skipped with -short")
	}
	pfwdBin, _ := binaries(t)
	cmd := exec.Command(pfwdBin, "--help")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Errorf("pfwd --help: %v, want exit status 0", err)
	}
	if !strings.HasPrefix(stdout.String(), "Usage: pfwd [flags]") || stderr.Len() != 0 {
		t.Errorf("pfwd --help: stdout %q, stderr %q; want the usage on stdout only", stdout.String(), stderr.String())
	}

	cmd = exec.Command(pfwdBin, "--stats-every", "0")
	stdout.Reset()
	stderr.Reset()
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	var exit *exec.ExitError
	if err := cmd.Run(); !errors.As(err, &exit) || exit.ExitCode() != 2 {
		t.Errorf("pfwd --stats-every 0: %v, want exit status 2", err)
	}
	if stdout.Len() != 0 || !strings.Contains(stderr.String(), "--stats-every 0s") {
		t.Errorf("pfwd --stats-every 0: stdout %q, stderr %q; want the error on stderr only", stdout.String(), stderr.String())
	}
}

// A SIGHUP sent the moment pfwd exists (a logrotate postrotate, a reload
// racing a restart) killed it while its dependencies initialized, before
// main asked for the signal. Package sighup asks for it among the first
// packages initialized: before the daemon's dependencies, whose
// initialization is most of that time.
func TestSIGHUPHeldFromEarlyInitialization(t *testing.T) {
	pfwd, _ := binaries(t)
	cmd := exec.Command(pfwd, "--version")
	cmd.Env = append(os.Environ(), "GODEBUG=inittrace=1")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("pfwd --version: %v\n%s", err, out)
	}
	order := map[string]int{}
	for i, line := range strings.Split(string(out), "\n") {
		if f := strings.Fields(line); len(f) > 1 && f[0] == "init" {
			order[f[1]] = i
		}
	}
	held, ok := order["github.com/pfw/pfw/cmd/pfwd/internal/sighup"]
	if !ok {
		t.Fatalf("no init of package sighup in pfwd's init trace:\n%s", out)
	}
	for _, later := range []string{"github.com/mattn/go-sqlite3", "github.com/prometheus/client_golang/prometheus", "github.com/pfw/pfw/daemon"} {
		if i, ok := order[later]; ok && i < held {
			t.Errorf("%s initializes before SIGHUP is held", later)
		}
	}
}
