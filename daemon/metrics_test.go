package daemon

import (
	"bytes"
	"context"
	"flag"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	"github.com/prometheus/common/expfmt"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/store"
)

var update = flag.Bool("update", false, "rewrite testdata/metrics.golden from the collector")

// fakeSnapshot is a running pfwd as the collector sees it.
func fakeSnapshot() metricsSnapshot {
	return metricsSnapshot{
		Status: control.Status{
			Running: true, Version: "1.2.3", QueueMode: "nft queue", FailClosed: false,
			StartedAt:      time.Unix(1_790_000_000, 0),
			ConfigLoadedAt: time.Unix(1_790_000_100, 500_000_000),
			Rules:          5, RulesEnabled: 4,
			Packets: control.PacketCounts{Seen: 10, Allowed: 5, Blocked: 5, KernelBlocked: 2, VerdictErrors: 1, QueueDrops: 3},
			Sets:    map[string]int{"blacklist_v4": 2, "whitelist_v4": 1, "intel_v4": 400},
			Feeds: []control.FeedStatus{
				{Name: "Feodo Tracker", Entries: 400, LastSuccess: time.Unix(1_790_000_200, 0)},
				{Name: "Offline feed", Failures: 3, LastError: "dial tcp: no route to host"},
			},
			RateLimiter: control.LimiterCounts{Tracked: 7, Capacity: 65536, KernelHeld: 1, KernelDropped: 4200},
		},
		Reasons: []reasonCount{
			{"allow", "Default policy", 5},
			{"block", "Blacklisted IP", 2},
			{"block", "Rule: Block Telnet and SMB", 3},
		},
		ReadErrors: 4,
		Writer:     store.WriterStats{Blocked: 5, Allowed: 1, Suppressed: 9, Lost: 1, Errors: 2, Queued: 6},
	}
}

func TestMetricsGolden(t *testing.T) {
	c := metricsCollector{snapshot: fakeSnapshot}
	golden := filepath.Join("testdata", "metrics.golden")
	if *update {
		reg := prometheus.NewPedanticRegistry()
		reg.MustRegister(c)
		mfs, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		var buf bytes.Buffer
		for _, mf := range mfs {
			if _, err := expfmt.MetricFamilyToText(&buf, mf); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.MkdirAll("testdata", 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(golden, buf.Bytes(), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.Open(golden)
	if err != nil {
		t.Fatal(err)
	}
	defer want.Close()
	if err := testutil.CollectAndCompare(c, want); err != nil {
		t.Errorf("metrics differ from %s (go test -run TestMetricsGolden -update rewrites it):\n%v", golden, err)
	}
}

// Names, types and help texts follow Prometheus' conventions (promlint).
func TestMetricsLint(t *testing.T) {
	problems, err := testutil.CollectAndLint(metricsCollector{snapshot: fakeSnapshot})
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range problems {
		t.Errorf("%s: %s", p.Metric, p.Text)
	}
}

func TestMetricsReloadState(t *testing.T) {
	for _, tc := range []struct {
		reloadErr string
		want      string
	}{
		{"", "1"},
		{"rules[0].ports[0]: 70000 is not a port (1-65535)", "0"},
	} {
		snap := fakeSnapshot()
		snap.Status.ReloadError = tc.reloadErr
		want := `# HELP pfw_config_last_reload_successful 1 if the last config reload was applied (or changed nothing), 0 if it was refused and the previous rules stay in force.
# TYPE pfw_config_last_reload_successful gauge
pfw_config_last_reload_successful ` + tc.want + "\n"
		c := metricsCollector{snapshot: func() metricsSnapshot { return snap }}
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "pfw_config_last_reload_successful"); err != nil {
			t.Errorf("reload error %q: %v", tc.reloadErr, err)
		}
	}
}

// The snapshot is taken per scrape: counters move between scrapes.
func TestMetricsReadAtScrapeTime(t *testing.T) {
	var seen uint64
	c := metricsCollector{snapshot: func() metricsSnapshot {
		s := fakeSnapshot()
		s.Status.Packets.Seen = seen
		return s
	}}
	for _, n := range []uint64{0, 41, 42} {
		seen = n
		want := "# HELP pfw_packets_seen_total Packets pfwd decided: those queued to user space plus the kernel's drops it was told about (lists through NFLOG, the rate-limit guard through its counters).\n# TYPE pfw_packets_seen_total counter\n"
		want += "pfw_packets_seen_total " + strconv.FormatUint(n, 10) + "\n"
		if err := testutil.CollectAndCompare(c, strings.NewReader(want), "pfw_packets_seen_total"); err != nil {
			t.Errorf("seen=%d: %v", n, err)
		}
	}
}

// The HTTP side: pfw's metrics, the Go and process collectors, text
// format, every metric named pfw_… and labels in the contract's order
// (client_golang alone would sort them by name).
func TestMetricsHandler(t *testing.T) {
	srv := httptest.NewServer(metricsHandler(fakeSnapshot, nil))
	defer srv.Close()
	body := get(t, srv.URL+"/metrics")
	for _, want := range []string{
		`pfw_packets_total{verdict="block",reason="Rule: Block Telnet and SMB"} 3`,
		`pfw_feed_failures{feed="Offline feed"} 3`,
		`pfw_info{version="1.2.3",queue_mode="nft queue",fail_closed="false"} 1`,
		"pfw_go_goroutines ",
		"pfw_process_resident_memory_bytes ",
	} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %q", want)
		}
	}
	for line := range strings.Lines(body) {
		if name := strings.TrimPrefix(strings.TrimPrefix(line, "# HELP "), "# TYPE "); !strings.HasPrefix(name, "pfw_") {
			t.Errorf("/metrics line %q: the contract names every metric pfw_…", strings.TrimSpace(line))
		}
	}
	if got := get(t, srv.URL+"/"); !strings.Contains(got, "/metrics") {
		t.Errorf("/ answers %q", got)
	}
	if resp, err := http.Get(srv.URL + "/nope"); err != nil || resp.StatusCode != http.StatusNotFound {
		t.Errorf("/nope: %v %v, want 404", resp.Status, err)
	}
}

func get(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("GET %s: %s %v", url, resp.Status, err)
	}
	return string(b)
}

// A taken address fails with an error that names it.
func TestListenMetricsTaken(t *testing.T) {
	taken, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer taken.Close()
	ln, err := listenMetrics(taken.Addr().String())
	if err == nil {
		ln.Close()
	}
	if err == nil || !strings.HasPrefix(err.Error(), "metrics: listen tcp "+taken.Addr().String()) {
		t.Fatalf("listenMetrics on a taken port: err = %v, want \"metrics: listen tcp %s: ...\"", err, taken.Addr())
	}
}

// metricsDaemon is a metrics listener on a free local port and a Daemon
// logging into the returned buffer, enough for serveMetrics.
func metricsDaemon(t *testing.T) (net.Listener, *Daemon, *lockedBuffer) {
	t.Helper()
	ln, err := listenMetrics("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	logBuf := new(lockedBuffer)
	return ln, newDaemon(Options{}, slog.New(NewLineHandler(logBuf, slog.LevelInfo, false))), logBuf
}

// The server answers while serveMetrics runs, which ends soon after ctx
// does; then nothing answers.
func TestServeMetricsLifecycle(t *testing.T) {
	ln, d, logBuf := metricsDaemon(t)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() {
		defer close(done)
		d.serveMetrics(ctx, ln)
	}()
	base := "http://" + ln.Addr().String()
	get(t, base+"/") // waits in the listen backlog until served
	if want := "url=" + base + "/metrics"; !strings.Contains(logBuf.String(), want) {
		t.Errorf("log %q does not say %q", logBuf.String(), want)
	}
	cancel()
	select {
	case <-done:
	case <-time.After(3 * time.Second):
		t.Fatal("serveMetrics did not return within 3 s after ctx was cancelled")
	}
	if resp, err := http.Get(base + "/"); err == nil {
		resp.Body.Close()
		t.Fatal("metrics server still answers after serveMetrics returned")
	}
}

// Once its gate is closed (serveMetrics returned) a scrape reads nothing
// of the daemon and reports none of pfw's metrics; those in flight end
// before close returns.
func TestMetricsGateClosed(t *testing.T) {
	var scrapes gate
	entered, release := make(chan struct{}), make(chan struct{})
	c := metricsCollector{scrapes: &scrapes, snapshot: func() metricsSnapshot {
		close(entered)
		<-release
		return fakeSnapshot()
	}}
	collected := make(chan int)
	go func() { collected <- testutil.CollectAndCount(c) }()
	<-entered
	closed := make(chan struct{})
	go func() { scrapes.close(); close(closed) }()
	select {
	case <-closed:
		t.Fatal("close returned while a snapshot was being taken")
	case <-time.After(50 * time.Millisecond):
	}
	close(release)
	<-closed
	if n := <-collected; n == 0 {
		t.Error("the scrape in flight when close began reported nothing")
	}
	c.snapshot = func() metricsSnapshot {
		t.Error("a snapshot was taken after the gate closed")
		return metricsSnapshot{}
	}
	if n := testutil.CollectAndCount(c); n != 0 {
		t.Errorf("a scrape after the gate closed reported %d metrics, want 0", n)
	}
}

// On SIGTERM the daemon closes the metrics listener while Shutdown closes
// it too; whichever wins, a clean stop logs no error (it used to log
// "accept tcp ...: use of closed network connection" about half the time).
func TestServeMetricsStopsWithoutError(t *testing.T) {
	for i := range 100 {
		ln, d, logBuf := metricsDaemon(t)
		ctx, cancel := context.WithCancel(t.Context())
		stopped := make(chan struct{})
		go func() {
			defer close(stopped)
			d.serveMetrics(ctx, ln)
		}()
		cancel()   // SIGTERM
		ln.Close() // the listener's own stop
		<-stopped
		if strings.Contains(logBuf.String(), " - ERROR - ") {
			t.Fatalf("round %d: a clean stop logged an error:\n%s", i, logBuf.String())
		}
	}
}

// Every metric with several labels has its order in labelOrder, so none
// is served sorted by name instead of as declared.
func TestMetricsLabelOrderDeclared(t *testing.T) {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metricsCollector{snapshot: fakeSnapshot})
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		for _, m := range mf.Metric {
			if len(m.Label) > 1 && len(labelOrder[mf.GetName()]) != len(m.Label) {
				t.Errorf("%s has labels %v but labelOrder gives %v", mf.GetName(), m.Label, labelOrder[mf.GetName()])
			}
		}
	}
}
