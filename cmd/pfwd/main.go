// Command pfwd is pfw's daemon: it installs the nftables table, decides
// the packets the kernel queues to it, and logs blocks to SQLite. See
// `pfwd -h` and the README.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"runtime"
	"strconv"
	"syscall"
	"time"

	sdnotify "github.com/coreos/go-systemd/v22/daemon"

	"github.com/pfw/pfw/daemon"
	"github.com/pfw/pfw/intel"
	"github.com/pfw/pfw/nft"
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
	// First of all: SIGHUP's default action kills, and a script may send
	// one (a reload) the moment pfwd exists. Held here, it is applied once
	// the daemon has started.
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	fs := flag.NewFlagSet("pfwd", flag.ContinueOnError)
	fs.Usage = func() {
		fmt.Fprintf(fs.Output(), "Usage: pfwd [flags]\n\npfw's daemon: a personal firewall deciding queued packets in user space.\n\nFlags:\n")
		fs.PrintDefaults()
	}
	var (
		opts       daemon.Options
		logFile    string
		logLevel   string
		queue      uint
		showVer    bool
		metrics    string
		statsEvery time.Duration
	)
	fs.StringVar(&opts.ConfigPath, "config", envOr("PFW_CONFIG", daemon.DefaultConfig), "rules/config file (env PFW_CONFIG); created from the default when missing")
	fs.StringVar(&opts.DBPath, "db", envOr("PFW_DB", daemon.DefaultDB), "SQLite database (env PFW_DB)")
	fs.StringVar(&logFile, "log-file", envOr("PFW_LOG_FILE", daemon.DefaultLogFile), "application log file, besides stderr (env PFW_LOG_FILE); unused under systemd's journal")
	fs.StringVar(&opts.Socket, "socket", envOr("PFW_SOCKET", daemon.DefaultSocket), "control socket for fwctl (env PFW_SOCKET)")
	fs.UintVar(&queue, "queue", 0, "first NFQUEUE number")
	fs.IntVar(&opts.Queues, "queues", 0, "number of NFQUEUEs, one worker each (default: one per CPU)")
	fs.Func("iface", "filter only this interface (repeatable; default: all but lo)", func(s string) error {
		opts.Ifaces = append(opts.Ifaces, s)
		return nil
	})
	fs.BoolVar(&opts.FailClosed, "fail-closed", false, "drop traffic that should be queued while no pfwd listens (default: fail open, it passes)")
	fs.StringVar(&metrics, "metrics", "", "serve Prometheus metrics at http://ADDR/metrics (off by default)")
	fs.StringVar(&logLevel, "log-level", "info", "debug, info, warning or error")
	fs.DurationVar(&statsEvery, "stats-every", 30*time.Second, "interval of the statistics log line")
	fs.BoolVar(&showVer, "version", false, "print the version and exit")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(os.Stderr, "pfwd: unexpected argument %q (pfwd takes flags only; see pfwd -h)\n", fs.Arg(0))
		return 2
	}
	if showVer {
		fmt.Println("pfwd", daemon.Version)
		return 0
	}
	if queue > 65535 {
		fmt.Fprintf(os.Stderr, "pfwd: --queue %d: not a queue number (0-65535)\n", queue)
		return 2
	}
	if opts.Queues < 0 || opts.Queues > 64 {
		fmt.Fprintf(os.Stderr, "pfwd: --queues %d: want 1-64\n", opts.Queues)
		return 2
	}
	if opts.Queues == 0 {
		opts.Queues = min(runtime.NumCPU(), 64)
	}
	if last := int(queue) + opts.Queues - 1; last > 65535 {
		fmt.Fprintf(os.Stderr, "pfwd: --queue %d with %d queues: the last, %d, is past 65535 (lower --queue or set --queues)\n", queue, opts.Queues, last)
		return 2
	}
	for _, name := range opts.Ifaces {
		if err := nft.CheckIfname(name); err != nil {
			fmt.Fprintf(os.Stderr, "pfwd: --iface: %v\n", err)
			return 2
		}
	}
	opts.QueueNum = uint16(queue)
	opts.StatsEvery = statsEvery
	var level slog.Level
	switch logLevel {
	case "debug":
		level = slog.LevelDebug
	case "info":
		level = slog.LevelInfo
	case "warning", "warn":
		level = slog.LevelWarn
	case "error":
		level = slog.LevelError
	default:
		fmt.Fprintf(os.Stderr, "pfwd: --log-level %q: want debug, info, warning or error\n", logLevel)
		return 2
	}

	// A closed stderr (a pipe whose reader died) must not kill the
	// firewall: ignored, SIGPIPE turns into EPIPE, and the Tee below keeps
	// writing the log file.
	signal.Ignore(syscall.SIGPIPE)

	// Under systemd the journal is the log; standalone, the file and stderr.
	var out io.Writer = os.Stderr
	var lf *daemon.LogFile
	journal := daemon.UnderJournal()
	if !journal && logFile != "" {
		var err error
		if lf, err = daemon.OpenLogFile(logFile); err != nil {
			fmt.Fprintf(os.Stderr, "pfwd: %v: logging to stderr only\n", err)
		} else {
			defer lf.Close()
			out = daemon.NewTee(os.Stderr, lf)
		}
	}
	log := slog.New(daemon.NewLineHandler(out, level, journal))
	intel.Version = daemon.Version

	if os.Geteuid() != 0 {
		log.Error("pfwd needs root (CAP_NET_ADMIN) to install nftables rules and read NFQUEUE; run it with sudo or as the systemd service")
		return 1
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	opts.Ready = func() { sdnotify.SdNotify(false, sdnotify.SdNotifyReady+"\nMAINPID="+strconv.Itoa(os.Getpid())) }
	opts.MetricsAddr = metrics

	started := make(chan *daemon.Daemon, 1)
	opts.Started = func(d *daemon.Daemon) { started <- d }
	go func() {
		d := <-started
		for range hup {
			sdnotify.SdNotify(false, sdnotify.SdNotifyReloading)
			if lf != nil {
				if err := lf.Reopen(); err != nil {
					log.Error("Could not reopen the log file", "err", err)
				}
			}
			d.Reload("SIGHUP")
			sdnotify.SdNotify(false, sdnotify.SdNotifyReady)
		}
	}()

	if err := daemon.Run(ctx, opts, log); err != nil {
		log.Error("pfwd failed: " + err.Error())
		return 1
	}
	sdnotify.SdNotify(false, sdnotify.SdNotifyStopping)
	return 0
}
