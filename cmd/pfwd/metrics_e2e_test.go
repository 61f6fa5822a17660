package main

import (
	"bufio"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// metricsAddr is where pfwd serves metrics in the lab: the firewall
// namespace is the test's own, so any port is free there.
const metricsAddr = "127.0.0.1:9846"

// scrape fetches /metrics from inside the firewall namespace (pfwd's
// listener lives there) and returns the samples by series, e.g.
// `pfw_packets_total{verdict="block",reason="Rule: Block Telnet"}`.
func (l *lab) scrape() map[string]float64 {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.fw, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=scrape", "PFW_ADDR="+metricsAddr)
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("scrape http://%s/metrics: %v\n%s", metricsAddr, err, out)
	}
	return parseSamples(l.t, string(out))
}

var sampleRE = regexp.MustCompile(`^([a-zA-Z_:][a-zA-Z0-9_:]*(?:\{.*\})?) (\S+)$`)

// parseSamples reads the text exposition format's sample lines.
func parseSamples(t *testing.T, text string) map[string]float64 {
	t.Helper()
	samples := map[string]float64{}
	sc := bufio.NewScanner(strings.NewReader(text))
	for sc.Scan() {
		line := sc.Text()
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		m := sampleRE.FindStringSubmatch(line)
		if m == nil {
			t.Fatalf("not a sample line: %q", line)
		}
		v, err := strconv.ParseFloat(m[2], 64)
		if err != nil {
			t.Fatalf("sample %q: %v", line, err)
		}
		if !strings.HasPrefix(m[1], "pfw_") {
			t.Errorf("sample %q: the contract names every metric pfw_…", line)
		}
		samples[m[1]] = v
	}
	return samples
}

// scrapeMain is the helper run inside the namespace: GET /metrics, print it.
func scrapeMain() int {
	c := http.Client{Timeout: 5 * time.Second}
	resp, err := c.Get("http://" + os.Getenv("PFW_ADDR") + "/metrics")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		fmt.Fprintln(os.Stderr, resp.Status)
		return 1
	}
	if _, err := io.Copy(os.Stdout, resp.Body); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	return 0
}

func TestMetricsEndpoint(t *testing.T) {
	l := newLab(t)
	l.writeConfig(l.configDoc("allow", `
    {"name": "Block Telnet", "action": "block", "protocol": "tcp", "ports": [23]},
    {"name": "Off", "action": "block", "protocol": "tcp", "ports": [22], "enabled": false}`,
		`"127.0.0.1", "::1"`, `"`+l.clientIP2+`"`, 100))
	l.serve([]int{23, 80}, nil)
	l.startPfwd("--metrics", metricsAddr)

	l.expect("tcp", hostPort(l.fwIP, 23), false)
	l.expect("tcp", hostPort(l.fwIP, 80), true)
	if n := l.send("tcp", l.clientIP2, hostPort(l.fwIP, 80), 1, time.Second); n != 0 {
		t.Errorf("blacklisted source got through")
	}

	const telnet = `pfw_packets_total{verdict="block",reason="Rule: Block Telnet"}`
	var s map[string]float64
	ok := eventually(3*time.Second, func() bool {
		s = l.scrape()
		return s[telnet] >= 1 && s[`pfw_packets_total{verdict="block",reason="Blacklisted IP"}`] >= 1 &&
			s[`pfw_log_rows_written_total{type="blocked"}`] >= 2
	})
	if !ok {
		t.Fatalf("per-reason counts not there after 3 s:\n%v", s)
	}
	for _, tc := range []struct {
		series string
		min    float64
		max    float64
	}{
		{telnet, 1, 1e9},
		{`pfw_packets_total{verdict="allow",reason="Default policy"}`, 1, 1e9},
		{"pfw_packets_seen_total", 3, 1e9},
		{"pfw_kernel_blocked_total", 1, 1e9}, // the blacklist drops in the kernel
		{"pfw_queue_dropped_total", 0, 0},
		{"pfw_verdict_errors_total", 0, 0},
		{`pfw_rules{state="enabled"}`, 1, 1},
		{`pfw_rules{state="disabled"}`, 1, 1},
		{`pfw_set_entries{set="blacklist_v4"}`, 1, 1},
		{`pfw_set_entries{set="whitelist_v6"}`, 1, 1},
		{"pfw_config_last_reload_successful", 1, 1},
		{"pfw_ratelimit_sources_tracked", 1, 1e9},
		{"pfw_start_time_seconds", float64(time.Now().Add(-time.Minute).Unix()), float64(time.Now().Unix())},
		{"pfw_go_goroutines", 1, 1e9},
		{"pfw_process_resident_memory_bytes", 1, 1e12},
	} {
		v, ok := s[tc.series]
		if !ok || v < tc.min || v > tc.max {
			t.Errorf("%s = %v (present %v), want %v..%v", tc.series, v, ok, tc.min, tc.max)
		}
	}

	// A refused reload shows in the metrics while the old rules stay.
	l.writeConfig(`{"default_policy": "maybe"}`)
	if !eventually(3*time.Second, func() bool { return l.scrape()["pfw_config_last_reload_successful"] == 0 }) {
		t.Error("pfw_config_last_reload_successful did not drop to 0 after an invalid config")
	}
}

// A metrics address pfwd cannot bind fails start-up at once, before the
// kernel is touched, and names the address.
func TestMetricsAddressTaken(t *testing.T) {
	l := newLab(t)
	l.writeConfig(l.configDoc("allow", ``, `"127.0.0.1", "::1"`, ``, 100))
	const taken = "[::]:9846"
	l.serve([]int{9846}, nil) // listens on [::]:9846
	cmd := exec.Command("ip", "netns", "exec", l.fw, l.pfwdBin, "--config", l.config(), "--db", l.db(),
		"--socket", l.socket(), "--log-file", l.logPath, "--metrics", taken)
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	done := make(chan error, 1)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if cmd.ProcessState.ExitCode() != 1 {
			t.Errorf("pfwd exit: %v, want status 1", err)
		}
	case <-time.After(15 * time.Second):
		cmd.Process.Kill()
		<-done
		t.Fatal("pfwd kept running with its metrics address taken")
	}
	// Go names the wildcard it bound ([::] may read 0.0.0.0).
	if !regexp.MustCompile(`pfwd failed: metrics: listen tcp \S+:9846: bind: address already in use`).MatchString(stderr.String()) {
		t.Errorf("pfwd's error does not name the metrics address:\n%s", stderr.String())
	}
	if tables := l.ruleset(); strings.Contains(tables, "personal_firewall") {
		t.Errorf("table left behind after the failed start:\n%s", tables)
	}
}
