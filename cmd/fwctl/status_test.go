package main

import (
	"context"
	"net"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pfw/pfw/control"
)

// fakeDaemon serves st on the control socket the way pfwd does.
func fakeDaemon(t *testing.T, socket string, st control.Status) {
	t.Helper()
	l, err := control.Listen(socket)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- control.Serve(ctx, l, func() control.Status { return st }, nil) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
}

// sampleStatus is a daemon up 3h12m5s at now.
func sampleStatus(now time.Time) control.Status {
	started := now.Add(-(3*time.Hour + 12*time.Minute + 5*time.Second))
	return control.Status{
		Running: true, PID: 4242, Version: "0.1.0", StartedAt: started,
		UptimeSeconds: 11525, ConfigPath: "/etc/personal-firewall/firewall_rules.json",
		ConfigLoadedAt: now.Add(-10 * time.Second), Rules: 5, RulesEnabled: 4, QueueMode: "xt NFQUEUE (nft_compat)", Queues: "0-1", FastPath: "on (conntrack labels)",
		Packets:     control.PacketCounts{Seen: 1000, Allowed: 900, Blocked: 100, KernelBlocked: 40, QueueDrops: 3},
		Sets:        map[string]int{"blacklist_v4": 2, "whitelist_v4": 1, "intel_v4": 312},
		LogRows:     control.LogCounts{Written: 100, Suppressed: 7},
		RateLimiter: control.LimiterCounts{Tracked: 12, Capacity: 65536, KernelHeld: 1, KernelDropped: 4200},
		Feeds: []control.FeedStatus{
			{Name: "Feodo Tracker", URL: "https://feodotracker.abuse.ch/downloads/ipblocklist.txt", Entries: 312,
				LastSuccess: now.Add(-12 * time.Minute), NextFetch: now.Add(48 * time.Minute)},
			{Name: "Spamhaus DROP", URL: "https://www.spamhaus.org/drop/drop.txt", LastError: "fetch: 503 Service Unavailable", Failures: 2},
		},
	}
}

func TestStatusRunning(t *testing.T) {
	e := newEnv(t, testConfig)
	want := sampleStatus(time.Now().Truncate(time.Second))
	fakeDaemon(t, e.socket, want)

	var got control.Status
	decode(t, mustRun(t, "status", "--json"), &got)
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("status --json (-want +got):\n%s", diff)
	}
	r := mustRun(t, "--socket", e.socket, "status")
	if !strings.HasPrefix(r.stdout, "pfwd is running (pid 4242, version 0.1.0), up 3h12m5s since ") {
		t.Errorf("status:\n%s", r.stdout)
	}
}

func TestPrintStatus(t *testing.T) {
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	var b strings.Builder
	if err := printStatus(&b, sampleStatus(now), now); err != nil {
		t.Fatal(err)
	}
	local := func(d time.Duration) string { return now.Add(d).Local().Format("2006-01-02 15:04:05") }
	want := `pfwd is running (pid 4242, version 0.1.0), up 3h12m5s since ` + local(-11525*time.Second) + ` (3h12m5s ago)
Config:        /etc/personal-firewall/firewall_rules.json, loaded ` + local(-10*time.Second) + ` (10s ago)
Rules:         4 enabled of 5
Queue:         xt NFQUEUE (nft_compat), queues 0-1, fail open
Fast path:     on (conntrack labels)
Packets:       1000 seen, 900 allowed, 100 blocked (40 in the kernel)
Queue drops:   3 (verdict errors: 0)
Log rows:      100 written, 7 suppressed
Rate limiter:  12 of 65536 sources tracked; 1 over the limit held in the kernel (4200 attempts dropped there)
Sets:          blacklist_v4 2, intel_v4 312, whitelist_v4 1
Feeds:
  NAME           ENTRIES  LAST SUCCESS                     NEXT FETCH                      FAILURES  LAST ERROR
  Feodo Tracker  312      ` + local(-12*time.Minute) + ` (12m0s ago)  ` + local(48*time.Minute) + ` (in 48m0s)  0         -
  Spamhaus DROP  0        never                            never                           2         fetch: 503 Service Unavailable
`
	if diff := cmp.Diff(want, b.String()); diff != "" {
		t.Errorf("status (-want +got):\n%s", diff)
	}

	st := sampleStatus(now)
	st.ReloadError, st.FailClosed, st.Feeds, st.Version = "rules[0].action: \"drop\" is not an action", true, nil, ""
	st.Interfaces = []string{"eth0", "wlan0"}
	st.LogRows.Lost, st.LogRows.LastError = 12, "write 12 log rows to /var/lib/personal-firewall/firewall.db: disk I/O error"
	st.Reload = control.ReloadState{InProgress: true, Since: now.Add(-4 * time.Second), Why: "SIGHUP"}
	b.Reset()
	printStatus(&b, st, now)
	for _, line := range []string{
		"pfwd is running (pid 4242), up",
		"Reload:        IN PROGRESS (SIGHUP), began " + local(-4*time.Second) + " (4s ago); the figures below are the config in force until it ends\n",
		"Reload error:  rules[0].action: \"drop\" is not an action (the previous config stays in force)\n",
		", fail closed\n",
		"Interfaces:    only eth0, wlan0 filtered (--iface); the others pass unchecked\n",
		"Feeds:         none\n",
		"Log errors:    12 rows lost; last error: write 12 log rows to /var/lib/personal-firewall/firewall.db: disk I/O error\n",
	} {
		if !strings.Contains(b.String(), line) {
			t.Errorf("status lacks %q:\n%s", line, b.String())
		}
	}
}

// A feed whose new entries are being put into the kernel says so beside
// the count still in force.
func TestPrintStatusFeedUpdating(t *testing.T) {
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	st := sampleStatus(now)
	st.Feeds[0].ApplyingSince = now.Add(-time.Second)
	var b strings.Builder
	if err := printStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "  Feodo Tracker  312 (updating)  ") {
		t.Errorf("status does not show the feed updating:\n%s", b.String())
	}
}

// A fetch under way shows in place of the next fetch's time, with how
// long it has taken: a hanging server shows no failure for a while.
func TestPrintStatusFeedFetching(t *testing.T) {
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	st := sampleStatus(now)
	st.Feeds[0].FetchingSince = now.Add(-35 * time.Second)
	var b strings.Builder
	if err := printStatus(&b, st, now); err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(b.String(), "fetching for 35s") {
		t.Errorf("status does not show the fetch under way:\n%s", b.String())
	}
}

func TestStatusNotRunning(t *testing.T) {
	e := newEnv(t, testConfig)
	check := func(what string) {
		t.Helper()
		r := fwctl(t, "status")
		// The answer on stdout, for scripts and eyes; the reason on
		// stderr; exit 1, so `fwctl status && …` means "running".
		if r.code != 1 || r.stdout != "pfwd is not running\n" {
			t.Fatalf("%s: %v", what, r)
		}
		checkErrorLine(t, r, "pfwd is not running (")
		r = fwctl(t, "status", "--json")
		if r.code != 1 {
			t.Fatalf("%s --json: %v", what, r)
		}
		checkErrorLine(t, r, "pfwd is not running")
		var got map[string]any
		decode(t, r, &got)
		if diff := cmp.Diff(map[string]any{"running": false}, got); diff != "" {
			t.Errorf("%s --json (-want +got):\n%s", what, diff)
		}
	}
	check("no socket")

	// A socket file left by a crashed pfwd: nobody answers.
	l, err := net.Listen("unix", e.socket)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close()
	if _, err := os.Stat(e.socket); err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	check("stale socket")
}

// A directory where the socket belongs (pfwd's socket was removed and the
// path taken) answers no question, but pfwd may run on: fwctl says what is
// there instead of "pfwd is not running".
func TestStatusSocketIsADirectory(t *testing.T) {
	e := newEnv(t, testConfig)
	if err := os.Mkdir(e.socket, 0o755); err != nil {
		t.Fatal(err)
	}
	r := fwctl(t, "status")
	if r.code != 1 || strings.Contains(r.stdout+r.stderr, "not running") {
		t.Fatalf("want exit 1 without \"not running\": %v", r)
	}
	checkErrorLine(t, r, "control socket "+e.socket+" is not a socket (it is a directory)")
}
