package daemon

import (
	"cmp"
	"errors"
	"fmt"
	"net"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
)

// Default paths of the contract.
const (
	DefaultConfig  = rules.DefaultPath
	DefaultDB      = store.DefaultPath
	DefaultLogFile = "/var/log/personal-firewall/firewall.log"
	DefaultSocket  = control.DefaultSocket
)

// Limits of Options, checked by Validate.
const (
	// MaxQueues caps Queues: a worker per queue, one per CPU by default,
	// and more than 64 CPUs gain a personal firewall nothing.
	MaxQueues = 64
	// MinStatsEvery is the shortest StatsEvery: the statistics line is a
	// summary, and a shorter interval would flood the log.
	MinStatsEvery = time.Second
)

// Options are pfwd's flags. DefaultOptions gives each its default; Run
// gives a zero Queues, LogGroup or StatsEvery its default too, so a caller
// may set only what it needs.
type Options struct {
	ConfigPath string
	DBPath     string
	Socket     string
	QueueNum   uint // first NFQUEUE, 0-65535
	Queues     int  // number of queues and workers, 1-MaxQueues
	Ifaces     []string
	FailClosed bool
	LogGroup   uint          // NFLOG group of the kernel's drops, 1-65535
	StatsEvery time.Duration // statistics log line, at least MinStatsEvery
	// MetricsAddr, when set, serves Prometheus metrics at /metrics.
	MetricsAddr string
	// Reload asks for the config file to be read again and applied; pfwd
	// sends on it for each SIGHUP. One sent before the daemon has started
	// is applied once it has.
	Reload <-chan struct{}
	// LogFile, when pfwd writes one, has its lost lines (a full disk)
	// reported with the statistics line, on the log's other destination.
	LogFile *LogFile
	// Ready is called once the table is in place and packets are being
	// decided, and again when a reload asked for through Reload has ended
	// (pfwd tells systemd: READY=1, after the RELOADING=1 it sent).
	Ready func()
}

// Named defaults of Options.
const (
	defaultLogGroup   = 27
	defaultStatsEvery = 30 * time.Second
)

// DefaultOptions returns pfwd's defaults: the contract's paths, one queue
// per CPU (at most MaxQueues) from queue 0, NFLOG group 27, a statistics
// line every 30 s.
func DefaultOptions() Options {
	return Options{
		ConfigPath: DefaultConfig,
		DBPath:     DefaultDB,
		Socket:     DefaultSocket,
		Queues:     min(runtime.NumCPU(), MaxQueues),
		LogGroup:   defaultLogGroup,
		StatsEvery: defaultStatsEvery,
	}
}

// withDefaults gives a zero Queues, LogGroup and StatsEvery their
// defaults.
func (o Options) withDefaults() Options {
	def := DefaultOptions()
	o.Queues = cmp.Or(o.Queues, def.Queues)
	o.LogGroup = cmp.Or(o.LogGroup, def.LogGroup)
	o.StatsEvery = cmp.Or(o.StatsEvery, def.StatsEvery)
	// Relative paths are made absolute: pfwd reports them (fwctl status),
	// and fwctl, run from another directory, compares the config path it
	// is given with the one pfwd enforces before it edits or recreates it.
	o.ConfigPath, o.DBPath, o.Socket = absPath(o.ConfigPath), absPath(o.DBPath), absPath(o.Socket)
	// --iface eth0 --iface eth0 is one interface: one match in the rule.
	var ifaces []string
	for _, name := range o.Ifaces {
		if !slices.Contains(ifaces, name) {
			ifaces = append(ifaces, name)
		}
	}
	o.Ifaces = ifaces
	return o
}

// absPath is path made absolute against the working directory; an empty
// path, or one the working directory cannot be found for, is left as is.
func absPath(path string) string {
	if path == "" {
		return path
	}
	if abs, err := filepath.Abs(path); err == nil {
		return abs
	}
	return path
}

// Validate reports the first option out of its range, naming the pfwd
// flag that sets it, or nil.
func (o Options) Validate() error {
	if o.QueueNum > 65535 {
		return fmt.Errorf("--queue %d: not a queue number (0-65535)", o.QueueNum)
	}
	if o.Queues < 1 || o.Queues > MaxQueues {
		return fmt.Errorf("--queues %d: want 1-%d (or 0: one per CPU)", o.Queues, MaxQueues)
	}
	if last := o.QueueNum + uint(o.Queues) - 1; last > 65535 {
		return fmt.Errorf("--queue %d with %d queues: the last, %d, is past 65535 (lower --queue or set --queues)", o.QueueNum, o.Queues, last)
	}
	if o.LogGroup < 1 || o.LogGroup > 65535 {
		return fmt.Errorf("--nflog-group %d: not an NFLOG group (1-65535)", o.LogGroup)
	}
	for _, name := range o.Ifaces {
		if err := nft.CheckIfname(name); err != nil {
			return fmt.Errorf("--iface: %w", err)
		}
	}
	if o.MetricsAddr != "" {
		if err := checkListenAddr(o.MetricsAddr); err != nil {
			return fmt.Errorf("--metrics %q: %v (for example 127.0.0.1:9477)", o.MetricsAddr, err)
		}
	}
	if o.StatsEvery < MinStatsEvery {
		return fmt.Errorf("--stats-every %v: want an interval of at least %v (for example 30s or 5m)", o.StatsEvery, MinStatsEvery)
	}
	return nil
}

// checkListenAddr says why addr cannot be a TCP address to listen on, or
// nil: a usage error at start rather than a failed start after the
// netfilter set-up.
func checkListenAddr(addr string) error {
	_, port, err := net.SplitHostPort(addr)
	if err != nil {
		return errors.New("want HOST:PORT")
	}
	if n, err := strconv.Atoi(port); err == nil {
		if n < 0 || n > 65535 {
			return fmt.Errorf("%d is not a port (0-65535)", n)
		}
		return nil
	}
	if _, err := net.LookupPort("tcp", port); err != nil {
		return fmt.Errorf("%q is not a port", port)
	}
	return nil
}
