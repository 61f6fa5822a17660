package daemon

import (
	"cmp"
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	dto "github.com/prometheus/client_model/go"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/store"
)

// metricsSnapshot is everything one scrape reports, read from the
// daemon's own counters when the scrape happens: the packet path pays
// nothing for metrics.
type metricsSnapshot struct {
	Status     control.Status
	Reasons    []reasonCount
	ReadErrors uint64
	Writer     store.WriterStats
}

func (d *Daemon) metricsSnapshot() metricsSnapshot {
	return metricsSnapshot{
		Status:     d.Status(),
		Reasons:    d.audit.reasons(),
		ReadErrors: d.queues.C.ReadErrors.Load(),
		Writer:     d.writer.Stats(),
	}
}

// The metrics, all pfw_*. Counters count since pfwd started.
var (
	descInfo = prometheus.NewDesc("pfw_info",
		"Always 1; the labels say which pfwd runs and how packets reach it.",
		[]string{"version", "queue_mode", "fail_closed"}, nil)
	descStart = prometheus.NewDesc("pfw_start_time_seconds",
		"When pfwd started, in seconds since the Unix epoch.", nil, nil)
	descSeen = prometheus.NewDesc("pfw_packets_seen_total",
		"Packets pfwd decided: those queued to user space plus the kernel's drops it was told about (lists through NFLOG, the rate-limit guard through its counters).", nil, nil)
	descPackets = prometheus.NewDesc("pfw_packets_total",
		"Packets decided, by verdict (allow, block) and the reason as logged (\"Rule: <name>\", \"Blacklisted IP\", \"Threat intel: <feed>\", \"Rate limited\", \"Whitelisted IP\", \"Default policy\").",
		[]string{"verdict", "reason"}, nil)
	descKernelBlocked = prometheus.NewDesc("pfw_kernel_blocked_total",
		"Packets the kernel dropped itself: blacklist and threat-feed drops reported through NFLOG (rate-limited to 50/s per rule, so their floods count short), and every drop of the rate-limit guard.", nil, nil)
	descQueueDropped = prometheus.NewDesc("pfw_queue_dropped_total",
		"Packets the kernel dropped because pfw's NFQUEUEs or their socket buffers were full (nfnetlink_queue queue_dropped + user_dropped).", nil, nil)
	descVerdictErrors = prometheus.NewDesc("pfw_verdict_errors_total",
		"Verdicts the kernel refused to take; such packets wait in the queue until it flushes.", nil, nil)
	descReadErrors = prometheus.NewDesc("pfw_queue_read_errors_total",
		"Errors reading the NFQUEUE sockets (ENOBUFS included: packets were lost).", nil, nil)
	descRules = prometheus.NewDesc("pfw_rules",
		"Rules in the config in force, by state (enabled, disabled).", []string{"state"}, nil)
	descReloadOK = prometheus.NewDesc("pfw_config_last_reload_successful",
		"1 if the last config reload was applied (or changed nothing), 0 if it was refused and the previous rules stay in force.", nil, nil)
	descLoadedAt = prometheus.NewDesc("pfw_config_last_reload_success_timestamp_seconds",
		"When the config in force was applied, in seconds since the Unix epoch.", nil, nil)
	descSetEntries = prometheus.NewDesc("pfw_set_entries",
		"Address ranges in each nftables set (overlapping and adjacent prefixes merged).", []string{"set"}, nil)
	descFeedEntries = prometheus.NewDesc("pfw_feed_entries",
		"Entries in force for each threat feed.", []string{"feed"}, nil)
	descFeedSuccess = prometheus.NewDesc("pfw_feed_last_success_timestamp_seconds",
		"When each threat feed last answered with a usable list (or 304 Not Modified), in seconds since the Unix epoch; 0 if not since pfwd started.", []string{"feed"}, nil)
	descFeedFailures = prometheus.NewDesc("pfw_feed_failures",
		"Consecutive failed or rejected fetches of each threat feed; 0 after a success.", []string{"feed"}, nil)
	descRowsWritten = prometheus.NewDesc("pfw_log_rows_written_total",
		"Rows committed to the SQLite log, by table (blocked, allowed).", []string{"type"}, nil)
	descRowsSuppressed = prometheus.NewDesc("pfw_log_rows_suppressed_total",
		"Rows counted instead of written because the writer's buffer was full or its per-second cap reached.", nil, nil)
	descRowsLost = prometheus.NewDesc("pfw_log_rows_lost_total",
		"Rows in batches that failed to commit.", nil, nil)
	descWriterErrors = prometheus.NewDesc("pfw_log_writer_errors_total",
		"Failed log batches and retention passes.", nil, nil)
	descRowsQueued = prometheus.NewDesc("pfw_log_rows_queued",
		"Rows waiting in the writer's buffer.", nil, nil)
	descLimiterTracked = prometheus.NewDesc("pfw_ratelimit_sources_tracked",
		"Source addresses the rate limiter tracks now.", nil, nil)
	descLimiterCapacity = prometheus.NewDesc("pfw_ratelimit_sources_capacity",
		"Source addresses the rate limiter can track; beyond it the oldest are forgotten.", nil, nil)
	descGuardHeld = prometheus.NewDesc("pfw_ratelimit_sources_kernel_held",
		"Sources over the rate limit whose new connections the kernel drops itself until pfwd lets them back.", nil, nil)
	descGuardDropped = prometheus.NewDesc("pfw_ratelimit_kernel_dropped_total",
		"Connection attempts the kernel dropped from sources over the rate limit.", nil, nil)
)

// metricsCollector turns a snapshot into metrics at scrape time.
type metricsCollector struct {
	snapshot func() metricsSnapshot
	// scrapes, when set, lets snapshots be taken; once it is closed a
	// scrape reports none of pfw's metrics.
	scrapes *gate
}

// take takes a snapshot, if scrapes lets it.
func (c metricsCollector) take() (metricsSnapshot, bool) {
	if c.scrapes == nil {
		return c.snapshot(), true
	}
	if !c.scrapes.enter() {
		return metricsSnapshot{}, false
	}
	defer c.scrapes.leave()
	return c.snapshot(), true
}

func (c metricsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{
		descInfo, descStart, descSeen, descPackets, descKernelBlocked, descQueueDropped,
		descVerdictErrors, descReadErrors, descRules, descReloadOK, descLoadedAt, descSetEntries,
		descFeedEntries, descFeedSuccess, descFeedFailures, descRowsWritten, descRowsSuppressed,
		descRowsLost, descWriterErrors, descRowsQueued, descLimiterTracked, descLimiterCapacity,
		descGuardHeld, descGuardDropped,
	} {
		ch <- d
	}
}

func (c metricsCollector) Collect(ch chan<- prometheus.Metric) {
	s, ok := c.take()
	if !ok { // pfwd is stopping: zeros would read as counter resets
		return
	}
	st := s.Status
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}

	gauge(descInfo, 1, st.Version, st.QueueMode, fmt.Sprint(st.FailClosed))
	gauge(descStart, unixSeconds(st.StartedAt))
	counter(descSeen, st.Packets.Seen)
	for _, r := range s.Reasons {
		counter(descPackets, r.Count, r.Verdict, r.Reason)
	}
	counter(descKernelBlocked, st.Packets.KernelBlocked)
	counter(descQueueDropped, st.Packets.QueueDrops)
	counter(descVerdictErrors, st.Packets.VerdictErrors)
	counter(descReadErrors, s.ReadErrors)

	gauge(descRules, float64(st.RulesEnabled), "enabled")
	gauge(descRules, float64(st.Rules-st.RulesEnabled), "disabled")
	reloadOK := 1.0
	if st.ReloadError != "" {
		reloadOK = 0
	}
	gauge(descReloadOK, reloadOK)
	gauge(descLoadedAt, unixSeconds(st.ConfigLoadedAt))
	for set, n := range st.Sets {
		gauge(descSetEntries, float64(n), set)
	}
	for _, f := range st.Feeds {
		gauge(descFeedEntries, float64(f.Entries), f.Name)
		gauge(descFeedSuccess, unixSeconds(f.LastSuccess), f.Name)
		gauge(descFeedFailures, float64(f.Failures), f.Name)
	}

	counter(descRowsWritten, s.Writer.Blocked, "blocked")
	counter(descRowsWritten, s.Writer.Allowed, "allowed")
	counter(descRowsSuppressed, s.Writer.Suppressed)
	counter(descRowsLost, s.Writer.Lost)
	counter(descWriterErrors, s.Writer.Errors)
	gauge(descRowsQueued, float64(s.Writer.Queued))
	gauge(descLimiterTracked, float64(st.RateLimiter.Tracked))
	gauge(descLimiterCapacity, float64(st.RateLimiter.Capacity))
	gauge(descGuardHeld, float64(st.RateLimiter.KernelHeld))
	counter(descGuardDropped, st.RateLimiter.KernelDropped)
}

// unixSeconds is t for Prometheus: 0 stands for "never".
func unixSeconds(t time.Time) float64 {
	if t.IsZero() {
		return 0
	}
	return float64(t.UnixNano()) / 1e9
}

// metricsHandler serves pfw's metrics and the Go runtime's and process's
// standard ones, from a registry of its own (nothing global). scrapes, if
// not nil, gates the snapshots (metricsCollector). The contract names
// every metric pfw_…, so the standard ones are served as pfw_go_… and
// pfw_process_….
func metricsHandler(snapshot func() metricsSnapshot, scrapes *gate) http.Handler {
	reg := prometheus.NewRegistry()
	reg.MustRegister(metricsCollector{snapshot: snapshot, scrapes: scrapes})
	prometheus.WrapRegistererWithPrefix("pfw_", reg).MustRegister(
		collectors.NewGoCollector(),
		collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}),
	)
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(declaredLabelOrder(reg), promhttp.HandlerOpts{
		ErrorHandling:       promhttp.ContinueOnError, // a partial scrape beats none
		MaxRequestsInFlight: 4,                        // a scrape storm cannot pile up goroutines
		Timeout:             10 * time.Second,
	}))
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprintln(w, "pfwd: Prometheus metrics at /metrics")
	})
	return mux
}

// labelOrder is the order in which each metric with several labels
// declares them, which the contract writes
// (pfw_packets_total{verdict="block",reason="Rule: …"}).
var labelOrder = map[string][]string{
	"pfw_packets_total": {"verdict", "reason"},
	"pfw_info":          {"version", "queue_mode", "fail_closed"},
}

// declaredLabelOrder serves g's metrics with their labels in labelOrder:
// client_golang sorts them by name, so a scrape read
// pfw_packets_total{reason=…,verdict=…}, which Prometheus takes for the
// same series but a grep for the contract's text does not.
func declaredLabelOrder(g prometheus.Gatherer) prometheus.Gatherer {
	return prometheus.GathererFunc(func() ([]*dto.MetricFamily, error) {
		mfs, err := g.Gather()
		for _, mf := range mfs {
			order := labelOrder[mf.GetName()]
			if order == nil {
				continue
			}
			for _, m := range mf.Metric {
				slices.SortStableFunc(m.Label, func(a, b *dto.LabelPair) int {
					return cmp.Compare(labelRank(order, a.GetName()), labelRank(order, b.GetName()))
				})
			}
		}
		return mfs, err
	})
}

// labelRank is name's place in order; names not in it go last.
func labelRank(order []string, name string) int {
	if i := slices.Index(order, name); i >= 0 {
		return i
	}
	return len(order)
}

// maxMetricsConns caps the metrics server's open connections.
const maxMetricsConns = 32

// listenMetrics binds the metrics address. pfwd calls it at start-up,
// before anything touches the kernel, so that a taken or mistyped address
// fails the start with an error naming it instead of silently leaving the
// metrics off.
func listenMetrics(addr string) (net.Listener, error) {
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, fmt.Errorf("metrics: %w", err)
	}
	return ln, nil
}

// serveMetrics serves /metrics on ln until ctx is done, then closes it.
// Call it once the daemon is fully started: scrapes read its parts. Once
// it has returned, no scrape reads them any more.
func (d *Daemon) serveMetrics(ctx context.Context, ln net.Listener) {
	var scrapes gate
	defer scrapes.close()
	srv := &http.Server{
		Handler:           metricsHandler(d.metricsSnapshot, &scrapes),
		ReadHeaderTimeout: 5 * time.Second,
		WriteTimeout:      15 * time.Second,
		IdleTimeout:       time.Minute,
		ErrorLog:          slog.NewLogLogger(d.log.Handler(), slog.LevelWarn),
	}
	// Scrapers need a handful of connections; clients holding thousands
	// must not take pfwd's descriptors (they wait in the backlog instead).
	ln = control.LimitListener(ln, maxMetricsConns)
	d.log.Info("Serving Prometheus metrics", "url", "http://"+ln.Addr().String()+"/metrics")
	if err := control.ServeUntil(ctx, srv, ln); err != nil {
		d.log.Error("Metrics server stopped", "addr", ln.Addr().String(), "err", err)
	}
}
