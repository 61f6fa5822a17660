package main

import (
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pfw/pfw/store"
)

func TestStats(t *testing.T) {
	e := newEnv(t, testConfig)
	now := time.Now()
	seedLogs(t, e, now)

	var st store.Stats
	decode(t, mustRun(t, "stats", "--json"), &st)
	if st.Blocked != 5 || st.Allowed != 2 {
		t.Errorf("totals = %d blocked, %d allowed; want 5, 2", st.Blocked, st.Allowed)
	}
	wantTop := []store.IPCount{{IP: "203.0.113.7", Count: 2}, {IP: "198.18.0.5", Count: 1}, {IP: "198.51.100.9", Count: 1}, {IP: "2001:db8::5", Count: 1}}
	if diff := cmp.Diff(wantTop, st.TopBlocked); diff != "" {
		t.Errorf("top blocked (-want +got):\n%s", diff)
	}
	if len(st.ByReason) != 4 || st.ByReason[0] != (store.ReasonCount{Reason: "Blacklisted IP", Count: 2}) {
		t.Errorf("by reason = %+v", st.ByReason)
	}
	if len(st.LastDay) != 24 {
		t.Errorf("last day has %d hours, want 24", len(st.LastDay))
	}
	var inDay int64
	for _, h := range st.LastDay {
		inDay += h.Count
	}
	if inDay != 5 {
		t.Errorf("last day counts %d blocks, want 5", inDay)
	}

	r := mustRun(t, "stats")
	for _, want := range []string{
		"Blocked packets logged: 5\n",
		"Allowed packets logged: 2 (sampled)\n",
		"Top blocked remote addresses:\n  IP            BLOCKED\n  203.0.113.7   2\n",
		"Blocks by reason:\n  REASON                       BLOCKED\n  Blacklisted IP               2\n",
		"Blocked in the last 24 hours (UTC):\n  HOUR",
		now.Add(-time.Minute).UTC().Truncate(time.Hour).Format("2006-01-02 15:04"),
		"#",
	} {
		if !strings.Contains(r.stdout, want) {
			t.Errorf("stats lacks %q:\n%s", want, r.stdout)
		}
	}
	if strings.Contains(r.stdout, "Not logged") {
		t.Errorf("stats shows suppressed rows where there are none:\n%s", r.stdout)
	}
}

func TestStatsShowsSuppressedRows(t *testing.T) {
	e := newEnv(t, testConfig)
	db := newLogDB(t, e.db, store.WriterConfig{MaxRowsPerSecond: 1})
	var rows []store.Row
	for range 20 {
		rows = append(rows, row(time.Now(), "203.0.113.7", 23, "Blacklisted IP"))
	}
	db.blocked(rows...)

	var st store.Stats
	decode(t, mustRun(t, "--json", "stats"), &st)
	var suppressed int64
	for _, s := range st.Suppressed {
		suppressed += s.Count
	}
	if suppressed == 0 || suppressed+st.Blocked != 20 {
		t.Errorf("suppressed %d + written %d, want 20 with some suppressed", suppressed, st.Blocked)
	}
	r := mustRun(t, "stats")
	if !strings.Contains(r.stdout, "Not logged") || !strings.Contains(r.stdout, "blocked  Blacklisted IP") {
		t.Errorf("stats does not show the suppressed rows:\n%s", r.stdout)
	}
}

func TestStatsEmptyDatabase(t *testing.T) {
	e := newEnv(t, testConfig)
	newLogDB(t, e.db, store.WriterConfig{})
	r := mustRun(t, "stats")
	if !strings.Contains(r.stdout, "Blocked packets logged: 0") || !strings.Contains(r.stdout, "Top blocked remote addresses:\n  none") {
		t.Errorf("stats of an empty log:\n%s", r.stdout)
	}
	if r := fwctl(t, "stats", "now"); r.code != 2 {
		t.Errorf("stats now: %v", r)
	}
}

func TestThreats(t *testing.T) {
	e := newEnv(t, testConfig)
	now := time.Now()
	addThreats(t, e.db, "Feodo Tracker", "high", now.Add(-time.Hour), "198.18.0.5", "198.18.7.0/24")
	addThreats(t, e.db, "Spamhaus DROP", "critical", now, "2001:db8:bad::/48")

	var rows []map[string]any
	decode(t, mustRun(t, "threats", "--json"), &rows)
	want := []map[string]any{
		{"ip": "2001:db8:bad::/48", "threat_level": "critical", "last_seen": now.UTC().Format("2006-01-02 15:04:05.000"), "source": "Spamhaus DROP"},
		{"ip": "198.18.0.5", "threat_level": "high", "last_seen": now.Add(-time.Hour).UTC().Format("2006-01-02 15:04:05.000"), "source": "Feodo Tracker"},
		{"ip": "198.18.7.0/24", "threat_level": "high", "last_seen": now.Add(-time.Hour).UTC().Format("2006-01-02 15:04:05.000"), "source": "Feodo Tracker"},
	}
	if diff := cmp.Diff(want, rows); diff != "" {
		t.Errorf("threats --json (-want +got):\n%s", diff)
	}
	rows = nil
	decode(t, mustRun(t, "threats", "--limit", "1", "--json"), &rows)
	if len(rows) != 1 || rows[0]["source"] != "Spamhaus DROP" {
		t.Errorf("threats --limit 1 = %v", rows)
	}

	r := mustRun(t, "threats")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 4 || strings.Join(strings.Fields(lines[0]), " ") != "IP THREAT_LEVEL LAST_SEEN SOURCE" ||
		!strings.HasPrefix(lines[1], "2001:db8:bad::/48  critical ") || !strings.HasSuffix(lines[3], "Feodo Tracker") {
		t.Errorf("threats:\n%s", r.stdout)
	}
	if r := fwctl(t, "threats", "--limit", "-5"); r.code != 1 {
		t.Errorf("threats --limit -5: %v", r)
	}
}

func TestThreatsEmpty(t *testing.T) {
	e := newEnv(t, testConfig)
	newLogDB(t, e.db, store.WriterConfig{})
	if r := mustRun(t, "threats", "--json"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("threats --json = %q, want []", r.stdout)
	}
	if r := mustRun(t, "threats"); !strings.HasPrefix(r.stdout, "No threat-intel entries") {
		t.Errorf("threats = %q", r.stdout)
	}
}
