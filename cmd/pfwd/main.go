package main

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/pfw/pfw/cmd/pfwd/internal/sighup"
	"github.com/pfw/pfw/daemon"
	"github.com/pfw/pfw/intel"
)

func main() {
	os.Exit(run(os.Args[1:]))
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(args []string) int {
	// SIGHUP's default action kills, and a script may send one (a reload)
	// the moment pfwd exists: package sighup holds them from
	// initialization on, and they are applied once the daemon has
	// started. Ignored on the way out, when nothing reloads any more:
	// restoring the default action would let a late one kill pfwd before
	// it exits.
	hup := sighup.C
	defer signal.Ignore(syscall.SIGHUP)
	cl, exit, ok := parseFlags(args, os.Stdout, os.Stderr)
	if !ok {
		return exit
	}
	opts := cl.opts

	// A closed stderr (a pipe whose reader died) must not kill the
	// firewall: ignored, SIGPIPE turns into EPIPE, and the Tee below keeps
	// writing the log file.
	signal.Ignore(syscall.SIGPIPE)

	log, lf := openLog(cl.logFile, cl.level, daemon.UnderJournal(), os.Stderr)
	if lf != nil {
		defer lf.Close()
	}
	intel.Version = daemon.Version

	if os.Geteuid() != 0 {
		log.Error("pfwd needs root (CAP_NET_ADMIN) to install nftables rules and read NFQUEUE; run it with sudo or as the systemd service")
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts.LogFile = lf
	opts.Ready = func() { sdnotify.SdNotify(false, sdnotify.SdNotifyReady+"\nMAINPID="+strconv.Itoa(os.Getpid())) }
	reload := make(chan struct{}, 1)
	opts.Reload = reload
	stopHUP := daemon.ForwardHUP(hup, lf, reload, func() { sdnotify.SdNotify(false, sdnotify.SdNotifyReloading) }, log)

	err := daemon.Run(ctx, opts, log)
	stopHUP() // before lf.Close: a SIGHUP reopens the log file
	if err != nil {
		log.Error("pfwd failed: " + err.Error())
		return 1
	}
	sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
	return 0
}

// commandLine is what pfwd's flags ask for.
type commandLine struct {
	opts    daemon.Options
	logFile string
	level   slog.Level
}

// parseFlags reads pfwd's command line. When pfwd must exit without
// starting, ok is false and exit is its status: 0 after -h (the usage, on
// stdout so that `pfwd -h | less` works) or --version, 2 after a usage
// error (reported on stderr, naming the flag). The flags' defaults and
// ranges are daemon.Options': here they are only mapped.
func parseFlags(args []string, stdout, stderr io.Writer) (cl commandLine, exit int, ok bool) {
	fs := flag.NewFlagSet("pfwd", flag.ContinueOnError)
	// The flag package writes both the usage asked for with -h and the one
	// following a parse error to one writer; which stream it belongs on is
	// known only once Parse returns.
	var usage bytes.Buffer
	fs.SetOutput(&usage)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pfwd [flags]\n\npfw's daemon: a personal firewall deciding queued packets in user space.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	cl.opts = daemon.DefaultOptions()
	var (
		opts     = &cl.opts
		logLevel string
		queues   int
		showVer  bool
	)
	fs.StringVar(&opts.ConfigPath, "config", envOr("PFW_CONFIG", opts.ConfigPath), "rules/config file (env PFW_CONFIG); created from the default when missing")
	fs.StringVar(&opts.DBPath, "db", envOr("PFW_DB", opts.DBPath), "SQLite database (env PFW_DB)")
	fs.StringVar(&cl.logFile, "log-file", envOr("PFW_LOG_FILE", daemon.DefaultLogFile), "application log file, besides stderr or the journal (env PFW_LOG_FILE); \"\" for none")
	fs.StringVar(&opts.Socket, "socket", envOr("PFW_SOCKET", opts.Socket), "control socket for fwctl (env PFW_SOCKET)")
	fs.UintVar(&opts.QueueNum, "queue", opts.QueueNum, "first NFQUEUE number")
	fs.IntVar(&queues, "queues", 0, fmt.Sprintf("number of NFQUEUEs, one worker each, 1-%d (0, the default: one per CPU)", daemon.MaxQueues))
	fs.UintVar(&opts.LogGroup, "nflog-group", opts.LogGroup, "NFLOG group through which the kernel reports the drops it makes itself (1-65535)")
	fs.Func("iface", "filter only this interface (repeatable; default: all but lo)", func(s string) error {
		opts.Ifaces = append(opts.Ifaces, s)
		return nil
	})
	fs.BoolVar(&opts.FailClosed, "fail-closed", false, "drop traffic that should be queued while no pfwd listens (default: fail open, it passes)")
	fs.StringVar(&opts.MetricsAddr, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (off by default)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warning or error")
	fs.DurationVar(&opts.StatsEvery, "stats-every", opts.StatsEvery, "interval of the statistics log line, at least "+daemon.MinStatsEvery.String())
	fs.BoolVar(&showVer, "version", false, "print the version and exit")

	err := fs.Parse(args)
	switch {
	case errors.Is(err, flag.ErrHelp):
		stdout.Write(usage.Bytes())
		return cl, 0, false
	case err != nil:
		stderr.Write(usage.Bytes())
		return cl, 2, false
	}
	usageError := func(format string, a ...any) (commandLine, int, bool) {
		fmt.Fprintf(stderr, "pfwd: "+format+"\n", a...)
		return cl, 2, false
	}
	if fs.NArg() > 0 {
		return usageError("unexpected argument %q (pfwd takes flags only; see pfwd -h)", fs.Arg(0))
	}
	if showVer {
		fmt.Fprintln(stdout, "pfwd", daemon.Version)
		return cl, 0, false
	}
	if queues != 0 { // 0, the flag's default, keeps Options' one per CPU
		opts.Queues = queues
	}
	if err := opts.Validate(); err != nil {
		return usageError("%v", err)
	}
	if cl.level, err = daemon.ParseLevel(logLevel); err != nil {
		return usageError("--log-level %v", err)
	}
	return cl, 0, true
}

// openLog makes pfwd's logger: stderr (under systemd, the journal) and the
// log file (lf, nil when there is none). A log file that cannot be opened
// is a warning, in the log's own format, not a reason to leave the host
// unfiltered.
func openLog(path string, level slog.Level, journal bool, stderr io.Writer) (log *slog.Logger, lf *daemon.LogFile) {
	if path == "" {
		return slog.New(daemon.NewLineHandler(stderr, level, journal)), nil
	}
	lf, err := daemon.OpenLogFile(path)
	if err != nil {
		log = slog.New(daemon.NewLineHandler(stderr, level, journal))
		log.Warn("Could not open the log file: logging to stderr only", "err", err)
		return log, nil
	}
	var file io.Writer = lf
	if journal {
		file = daemon.WithoutPriority(lf)
	}
	return slog.New(daemon.NewLineHandler(daemon.NewTee(stderr, file), level, journal)), lf
}
