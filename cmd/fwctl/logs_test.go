package main

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
	"github.com/pfw/pfw/store"
	"github.com/pfw/pfw/verdict"
)

// logDB is a database pfwd's way: a Store and a running Writer. The test
// writes rows and waits for them to be committed.
type logDB struct {
	t *testing.T
	s *store.Store
	w *store.Writer
}

func newLogDB(t *testing.T, path string, cfg store.WriterConfig) *logDB {
	t.Helper()
	s, err := store.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	cfg.FlushEvery = 10 * time.Millisecond
	w := s.NewWriter(cfg)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- w.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("writer: %v", err)
		}
		s.Close()
	})
	return &logDB{t: t, s: s, w: w}
}

// row is a TCP row from src to 192.168.1.10, port dport; dport 0 makes an
// ICMP row without ports.
func row(at time.Time, src string, dport uint16, reason string) store.Row {
	r := store.Row{Time: at, Src: netip.MustParseAddr(src), Dst: netip.MustParseAddr("192.168.1.10"),
		Proto: verdict.ProtoTCP, SrcPort: 40000, DstPort: dport, HasPorts: true, Reason: reason, Hash: 0xabc}
	if dport == 0 {
		r.Proto, r.HasPorts, r.SrcPort = verdict.ProtoICMP, false, 0
	}
	if r.Src.Is6() {
		r.Dst = netip.MustParseAddr("2001:db8::10")
	}
	return r
}

func (db *logDB) blocked(rows ...store.Row) {
	for _, r := range rows {
		db.w.Blocked(r)
	}
	db.flush()
}

func (db *logDB) allowed(rows ...store.Row) {
	for _, r := range rows {
		db.w.Allowed(r)
	}
	db.flush()
}

func (db *logDB) flush() {
	db.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := db.w.Flush(ctx); err != nil {
		db.t.Fatal(err)
	}
}

// seedLogs writes five blocked rows (ids 1-5, oldest first) and two
// allowed ones, the newest a minute before now.
func seedLogs(t *testing.T, e *testEnv, now time.Time) *logDB {
	db := newLogDB(t, e.db, store.WriterConfig{})
	db.blocked(
		row(now.Add(-5*time.Hour), "203.0.113.7", 23, "Blacklisted IP"),
		row(now.Add(-3*time.Hour), "198.51.100.9", 445, "Rule: Block Telnet and SMB"),
		row(now.Add(-90*time.Minute), "2001:db8::5", 22, "Rule: Block SSH"),
		row(now.Add(-30*time.Minute), "203.0.113.7", 0, "Blacklisted IP"),
		row(now.Add(-time.Minute), "198.18.0.5", 443, "Threat intel: Feodo Tracker"),
	)
	db.allowed(
		row(now.Add(-2*time.Hour), "8.8.8.8", 53, ""),
		row(now.Add(-time.Minute), "1.1.1.1", 443, ""),
	)
	return db
}

func TestLogsTable(t *testing.T) {
	e := newEnv(t, testConfig)
	now := time.Now()
	seedLogs(t, e, now)
	r := mustRun(t, "logs", "--type", "blocked")
	lines := strings.Split(strings.TrimRight(r.stdout, "\n"), "\n")
	if len(lines) != 6 {
		t.Fatalf("logs = %q, want a header and 5 rows", r.stdout)
	}
	if got := strings.Fields(lines[0]); !cmp.Equal(got, []string{"ID", "TIMESTAMP", "SRC_IP", "DST_IP", "SRC_PORT", "DST_PORT", "PROTOCOL", "REASON", "PACKET_HASH", "DIRECTION"}) {
		t.Errorf("header = %q", lines[0])
	}
	// Newest first, columns aligned, "-" for the ports of an ICMP row.
	ts := now.Add(-30 * time.Minute).UTC().Format("2006-01-02 15:04:05.000")
	want := "4   " + ts + "  203.0.113.7   192.168.1.10  -         -         icmp      Blacklisted IP               0000000000000abc  in"
	if lines[2] != want {
		t.Errorf("row 2:\n got %q\nwant %q", lines[2], want)
	}
	if !strings.HasPrefix(lines[1], "5   ") || !strings.HasPrefix(lines[5], "1   ") {
		t.Errorf("rows not newest first:\n%s", r.stdout)
	}
	for _, l := range lines {
		if len(l) > 0 && l[len(l)-1] == ' ' {
			t.Errorf("trailing space in %q", l)
		}
	}

	r = mustRun(t, "logs", "--type", "allowed")
	if !strings.HasPrefix(r.stdout, "ID  TIMESTAMP") || strings.Contains(r.stdout, "REASON") || !strings.Contains(r.stdout, "1.1.1.1") {
		t.Errorf("logs --type allowed = %q", r.stdout)
	}
	// blocked is the default type.
	if r2 := mustRun(t, "logs"); !strings.Contains(r2.stdout, "Threat intel: Feodo Tracker") {
		t.Errorf("logs = %q, want the blocked rows", r2.stdout)
	}
}

func TestLogsJSONAndFilters(t *testing.T) {
	e := newEnv(t, testConfig)
	now := time.Now()
	seedLogs(t, e, now)
	ids := func(args ...string) []int64 {
		t.Helper()
		var rows []map[string]any
		decode(t, mustRun(t, append([]string{"logs", "--json"}, args...)...), &rows)
		var out []int64
		for _, r := range rows {
			out = append(out, int64(r["id"].(float64)))
		}
		return out
	}
	for _, tt := range []struct {
		args []string
		want []int64
	}{
		{[]string{"--type", "blocked"}, []int64{5, 4, 3, 2, 1}},
		{[]string{"--type", "blocked", "--limit", "2"}, []int64{5, 4}},
		{[]string{"--limit", "0"}, []int64{5, 4, 3, 2, 1}},
		{[]string{"--ip", "203.0.113.7"}, []int64{4, 1}},
		{[]string{"--ip", "2001:db8::5"}, []int64{3}},
		{[]string{"--ip", "192.168.1.10", "--limit", "1"}, []int64{5}},
		{[]string{"--ip", "203.0.113.0/24"}, []int64{4, 1}},
		{[]string{"--ip", "2001:db8::/32"}, []int64{3}},
		{[]string{"--ip", "203.0.113.7/32"}, []int64{4, 1}},
		{[]string{"--since", "2h"}, []int64{5, 4, 3}},
		{[]string{"--since", "45m", "--ip", "203.0.113.7"}, []int64{4}},
		{[]string{"--since", now.Add(-4 * time.Hour).UTC().Format("2006-01-02 15:04:05")}, []int64{5, 4, 3, 2}},
		{[]string{"--since", now.Add(-4 * time.Hour).Format(time.RFC3339)}, []int64{5, 4, 3, 2}},
		{[]string{"--since", now.Add(time.Hour).UTC().Format("2006-01-02 15:04")}, nil},
		{[]string{"--type", "allowed"}, []int64{2, 1}},
		{[]string{"--type", "allowed", "--ip", "8.8.8.8"}, []int64{1}},
	} {
		if diff := cmp.Diff(tt.want, ids(tt.args...)); diff != "" {
			t.Errorf("logs %v: ids (-want +got):\n%s", tt.args, diff)
		}
	}

	// Keys are the column names; ports are null without ports.
	var rows []map[string]any
	decode(t, mustRun(t, "logs", "--json", "--limit", "2"), &rows)
	want := map[string]any{
		"id": 4.0, "timestamp": now.Add(-30 * time.Minute).UTC().Format("2006-01-02 15:04:05.000"),
		"src_ip": "203.0.113.7", "dst_ip": "192.168.1.10", "src_port": nil, "dst_port": nil,
		"protocol": "icmp", "reason": "Blacklisted IP", "packet_hash": "0000000000000abc", "direction": "in",
	}
	if diff := cmp.Diff(want, rows[1]); diff != "" {
		t.Errorf("row 4 (-want +got):\n%s", diff)
	}
	if rows[0]["dst_port"] != 443.0 || rows[0]["src_port"] != 40000.0 {
		t.Errorf("row 5 ports = %v, %v", rows[0]["src_port"], rows[0]["dst_port"])
	}
	rows = nil
	decode(t, mustRun(t, "--json", "logs", "--type", "allowed", "--limit", "1"), &rows)
	if _, ok := rows[0]["reason"]; ok || rows[0]["src_ip"] != "1.1.1.1" {
		t.Errorf("allowed row = %v, want no reason", rows[0])
	}

	// No match: [] for scripts, a line for people.
	if r := mustRun(t, "logs", "--json", "--ip", "10.0.0.1"); strings.TrimSpace(r.stdout) != "[]" {
		t.Errorf("no rows --json = %q", r.stdout)
	}
	if r := mustRun(t, "logs", "--ip", "10.0.0.1"); r.stdout != "No blocked packets logged for 10.0.0.1.\n" {
		t.Errorf("no rows = %q", r.stdout)
	}
	if r := mustRun(t, "logs", "--ip", "10.0.0.1", "--since", "30s"); r.stdout != "No blocked packets logged for 10.0.0.1 in the last 30s.\n" {
		t.Errorf("no rows in an age = %q", r.stdout)
	}
	if r := mustRun(t, "logs", "--ip", "10.0.0.1", "--since", "2026-01-02"); r.stdout != "No blocked packets logged for 10.0.0.1 since 2026-01-02.\n" {
		t.Errorf("no rows since a date = %q", r.stdout)
	}
}

func TestLogsErrors(t *testing.T) {
	e := newEnv(t, testConfig)
	r := fwctl(t, "logs")
	if r.code != 1 {
		t.Fatalf("logs without a database: %v", r)
	}
	checkErrorLine(t, r, "no database at "+e.db+" (has pfwd run yet?)")
	for _, cmd := range []string{"stats", "threats"} {
		r := fwctl(t, cmd)
		if r.code != 1 {
			t.Fatalf("%s without a database: %v", cmd, r)
		}
		checkErrorLine(t, r, "no database at "+e.db)
	}

	seedLogs(t, e, time.Now())
	for _, tt := range []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"--type", "dropped"}, 2, `--type: "dropped" is not a log type (blocked, allowed)`},
		{[]string{"--limit", "-1"}, 1, "--limit: -1 is negative"},
		{[]string{"--limit", "many"}, 2, `invalid value "many" for flag --limit`},
		{[]string{"--ip", "10.0.0"}, 1, `--ip: "10.0.0" is not an IP address or CIDR`},
		{[]string{"--since", "yesterday"}, 1, `--since: "yesterday" is neither a duration`},
		{[]string{"--since", "-1h"}, 1, `--since: "-1h" is a negative duration`},
		{[]string{"blocked"}, 2, `logs: unexpected argument "blocked"`},
	} {
		r := fwctl(t, append([]string{"logs"}, tt.args...)...)
		if r.code != tt.code {
			t.Errorf("logs %v: exit %d, want %d: %v", tt.args, r.code, tt.code, r)
			continue
		}
		checkErrorLine(t, r, tt.msg)
	}
}

// waitFor polls the output until it contains want.
func waitFor(t *testing.T, out *syncBuffer, want string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !strings.Contains(out.String(), want) {
		if time.Now().After(deadline) {
			t.Fatalf("output never showed %q:\n%s", want, out.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func TestLogsFollow(t *testing.T) {
	e := newEnv(t, testConfig)
	now := time.Now()
	db := seedLogs(t, e, now)

	stdout, stderr, stop := runBackground("logs", "--follow", "--limit", "2")
	waitFor(t, stdout, "Feodo Tracker")
	db.blocked(row(time.Now(), "203.0.113.99", 3389, "Rule: Block RDP"))
	db.allowed(row(time.Now(), "9.9.9.9", 53, "")) // another table: not shown
	waitFor(t, stdout, "Rule: Block RDP")
	db.blocked(row(time.Now(), "203.0.113.100", 23, "Rule: Block Telnet"))
	waitFor(t, stdout, "203.0.113.100")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d after cancel, stderr %q", code, stderr.String())
	}
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	var ids []string
	for _, l := range lines[1:] {
		ids = append(ids, strings.Fields(l)[0])
	}
	// The newest two, oldest first like tail, then the new rows once each.
	if diff := cmp.Diff([]string{"4", "5", "6", "7"}, ids); diff != "" {
		t.Errorf("ids (-want +got):\n%s\n%s", diff, stdout.String())
	}
	if strings.Count(stdout.String(), "ID  ") != 1 {
		t.Errorf("header printed more than once:\n%s", stdout.String())
	}
}

// The log file deleted while following (to clear it): follow waits for
// pfwd's new file and goes on with its rows, from its first.
func TestLogsFollowAcrossANewDatabase(t *testing.T) {
	e := newEnv(t, testConfig)
	reopened := make(chan error, 4)
	db := newLogDB(t, e.db, store.WriterConfig{CheckEvery: 20 * time.Millisecond, OnReopen: func(err error) { reopened <- err }})
	db.blocked(row(time.Now(), "203.0.113.1", 23, "Rule: Block Telnet"))

	stdout, stderr, stop := runBackground("logs", "--follow")
	waitFor(t, stdout, "203.0.113.1")
	time.Sleep(followInterval)
	if err := os.Remove(e.db); err != nil {
		t.Fatal(err)
	}
	time.Sleep(2 * followInterval) // follow meets the gap before the new file
	select {
	case err := <-reopened:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the writer did not make a new database")
	}
	db.blocked(row(time.Now(), "203.0.113.2", 23, "Rule: Block Telnet"))
	waitFor(t, stdout, "203.0.113.2")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d after cancel, stderr %q", code, stderr.String())
	}
	if n := strings.Count(stdout.String(), "Rule: Block Telnet"); n != 2 {
		t.Errorf("%d rows printed, want each of the 2 once:\n%s", n, stdout.String())
	}
}

func TestLogsFollowJSONWithFilter(t *testing.T) {
	e := newEnv(t, testConfig)
	db := seedLogs(t, e, time.Now())

	stdout, _, stop := runBackground("logs", "--follow", "--json", "--ip", "10.1.1.1")
	time.Sleep(2 * followInterval)
	db.blocked(row(time.Now(), "203.0.113.5", 23, "Rule: Block Telnet and SMB"), // filtered out
		row(time.Now(), "10.1.1.1", 23, "Rule: Block Telnet and SMB"))
	waitFor(t, stdout, "10.1.1.1")
	if code := stop(); code != 0 {
		t.Fatalf("exit %d", code)
	}
	// One object per line, only the matching row.
	lines := strings.Split(strings.TrimRight(stdout.String(), "\n"), "\n")
	if len(lines) != 1 {
		t.Fatalf("output = %q, want one JSON line", stdout.String())
	}
	var got store.LogRow
	if err := json.Unmarshal([]byte(lines[0]), &got); err != nil {
		t.Fatal(err)
	}
	if got.ID != 7 || got.SrcIP != "10.1.1.1" || *got.DstPort != 23 {
		t.Errorf("row = %+v", got)
	}
}

func TestParseSince(t *testing.T) {
	now := time.Date(2026, 11, 25, 15, 4, 5, 0, time.UTC)
	for in, want := range map[string]time.Time{
		"1h":                        now.Add(-time.Hour),
		"90s":                       now.Add(-90 * time.Second),
		"2d":                        now.Add(-48 * time.Hour),
		"1w":                        now.Add(-7 * 24 * time.Hour),
		"1w2d":                      now.Add(-9 * 24 * time.Hour),
		"1d12h":                     now.Add(-36 * time.Hour),
		"0d":                        now,
		"5200w":                     now.Add(-5200 * 7 * 24 * time.Hour), // a century
		"2026-11-25 14:00":          time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC),
		"2026-11-25 14:00:01.500":   time.Date(2026, 11, 25, 14, 0, 1, 500e6, time.UTC),
		"2026-11-25T14:00:01":       time.Date(2026, 11, 25, 14, 0, 1, 0, time.UTC),
		"2026-11-25":                time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC),
		"2026-11-25T15:00:00+01:00": time.Date(2026, 11, 25, 14, 0, 0, 0, time.UTC),
	} {
		got, err := parseSince(in, now)
		if err != nil || !got.Equal(want) {
			t.Errorf("parseSince(%q) = %v, %v; want %v", in, got, err, want)
		}
	}
	for _, in := range []string{"", "d", "2x", "-2d", "1d-2h", "2dd", "yesterday", "99999d", "20000w", "65535w", "40000d", "1w1000000h",
		// Found by FuzzParseSince: a century a part overflowed the sum.
		"5214w36500d876000h", "-5214w36500d876000h", "36500d876000h", "5200w1000d"} {
		if got, err := parseSince(in, now); err == nil {
			t.Errorf("parseSince(%q) = %v, want an error", in, got)
		}
	}
}

// `fwctl logs --follow | head -3`: once the reader is gone, follow ends
// within a tick, though no new row comes to fail a write.
func TestLogsFollowEndsWhenReaderGone(t *testing.T) {
	e := newEnv(t, testConfig)
	seedLogs(t, e, time.Now())
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer w.Close()
	done := make(chan int, 1)
	var stderr syncBuffer
	go func() {
		done <- runContext(context.Background(), []string{"logs", "--follow", "--limit", "1"}, w, &stderr)
	}()
	if _, err := r.Read(make([]byte, 1)); err != nil { // the first rows are out
		t.Fatal(err)
	}
	r.Close()
	select {
	case code := <-done:
		if code != 0 {
			t.Errorf("exit %d, stderr %q; want 0", code, stderr.String())
		}
	case <-time.After(5 * followInterval):
		t.Fatal("logs --follow still runs after its reader went away")
	}
}
