package daemon

import (
	"log/slog"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestDefaultOptionsAreValid(t *testing.T) {
	o := DefaultOptions()
	if err := o.Validate(); err != nil {
		t.Fatalf("DefaultOptions: %v", err)
	}
	if o.Queues < 1 || o.Queues > MaxQueues || o.LogGroup != 27 || o.StatsEvery != 30*time.Second {
		t.Errorf("DefaultOptions: %d queues, NFLOG group %d, statistics every %v; want one per CPU up to %d, 27, 30s",
			o.Queues, o.LogGroup, o.StatsEvery, MaxQueues)
	}
	// Run's zero fields are DefaultOptions' values.
	if got := (Options{}).withDefaults(); got.Queues != o.Queues || got.LogGroup != o.LogGroup || got.StatsEvery != o.StatsEvery {
		t.Errorf("zero Options with defaults: %+v; want DefaultOptions' queues, group and interval", got)
	}
}

func TestOptionsValidate(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*Options)
		want string // a substring of the error; "" for none
	}{
		{"defaults", func(*Options) {}, ""},
		{"last queue number", func(o *Options) { o.QueueNum, o.Queues = 65535, 1 }, ""},
		{"queue number too big", func(o *Options) { o.QueueNum = 65536 }, "--queue 65536: not a queue number (0-65535)"},
		{"no queues", func(o *Options) { o.Queues = 0 }, "--queues 0: want 1-64"},
		{"too many queues", func(o *Options) { o.Queues = MaxQueues + 1 }, "--queues 65: want 1-64"},
		{"queues past 65535", func(o *Options) { o.QueueNum, o.Queues = 65530, 8 }, "--queue 65530 with 8 queues: the last, 65537, is past 65535"},
		{"NFLOG group 0", func(o *Options) { o.LogGroup = 0 }, "--nflog-group 0: not an NFLOG group (1-65535)"},
		{"NFLOG group too big", func(o *Options) { o.LogGroup = 65536 }, "--nflog-group 65536"},
		{"interface name", func(o *Options) { o.Ifaces = []string{"eth0", "a b"} }, `--iface: "a b" is not an interface name`},
		{"statistics too often", func(o *Options) { o.StatsEvery = time.Millisecond }, "--stats-every 1ms: want an interval of at least 1s"},
		{"metrics address", func(o *Options) { o.MetricsAddr = "127.0.0.1:9477" }, ""},
		{"metrics on every address", func(o *Options) { o.MetricsAddr = ":9477" }, ""},
		{"metrics without a port", func(o *Options) { o.MetricsAddr = "nonsense" }, `--metrics "nonsense": want HOST:PORT`},
		{"metrics port too big", func(o *Options) { o.MetricsAddr = "127.0.0.1:99999" }, `--metrics "127.0.0.1:99999": 99999 is not a port (0-65535)`},
		{"statistics interval negative", func(o *Options) { o.StatsEvery = -time.Second }, "--stats-every -1s"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := DefaultOptions()
			tc.edit(&o)
			err := o.Validate()
			switch {
			case tc.want == "" && err != nil:
				t.Errorf("Validate: %v; want nil", err)
			case tc.want != "" && (err == nil || !strings.Contains(err.Error(), tc.want)):
				t.Errorf("Validate: %v; want an error holding %q", err, tc.want)
			}
		})
	}
}

// ParseLevel reads the names --log-level documents, and each level it
// returns is the one the log lines name.
func TestParseLevel(t *testing.T) {
	for _, tc := range []struct {
		in   string
		want slog.Level
		name string // as log lines spell it
	}{
		{"debug", slog.LevelDebug, "DEBUG"},
		{"info", slog.LevelInfo, "INFO"},
		{"warning", slog.LevelWarn, "WARNING"},
		{"warn", slog.LevelWarn, "WARNING"},
		{"error", slog.LevelError, "ERROR"},
	} {
		got, err := ParseLevel(tc.in)
		if err != nil || got != tc.want || levelName(got) != tc.name {
			t.Errorf("ParseLevel(%q) = %v (%s), %v; want %v (%s)", tc.in, got, levelName(got), err, tc.want, tc.name)
		}
	}
	for _, bad := range []string{"", "loud", "INFO", "trace"} {
		if _, err := ParseLevel(bad); err == nil || !strings.Contains(err.Error(), "want debug, info, warning or error") {
			t.Errorf("ParseLevel(%q): %v; want an error naming the levels", bad, err)
		}
	}
}

// pfwd started with relative paths reports them absolute: fwctl, run from
// another directory, compares the config path pfwd enforces with its own
// before it edits the file or recreates a missing one.
func TestOptionsPathsMadeAbsolute(t *testing.T) {
	dir := t.TempDir()
	t.Chdir(dir)
	got := Options{ConfigPath: "cfg.json", DBPath: "db/fw.db", Socket: "./pfwd.sock"}.withDefaults()
	want := []string{filepath.Join(dir, "cfg.json"), filepath.Join(dir, "db/fw.db"), filepath.Join(dir, "pfwd.sock")}
	if have := []string{got.ConfigPath, got.DBPath, got.Socket}; !slices.Equal(have, want) {
		t.Errorf("paths %q, want %q", have, want)
	}
	if ifaces := (Options{Ifaces: []string{"eth0", "wlan0", "eth0"}}).withDefaults().Ifaces; !slices.Equal(ifaces, []string{"eth0", "wlan0"}) {
		t.Errorf("--iface eth0 --iface wlan0 --iface eth0 gave %q, want each once", ifaces)
	}
	if abs := (Options{ConfigPath: "/etc/pfw.json"}).withDefaults(); abs.ConfigPath != "/etc/pfw.json" || abs.DBPath != "" {
		t.Errorf("absolute or empty paths changed: %+v", abs)
	}
}
