package store

import (
	"context"
	"encoding/json"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// logFixture writes five blocked rows a minute apart (ids 1-5) and one
// allowed row.
func logFixture(t *testing.T) *Store {
	t.Helper()
	s := openTemp(t)
	w := startWriter(t, s, WriterConfig{}, nil)
	for i, r := range []Row{
		tcpRow(t0, "203.0.113.7", "10.0.0.1", "Rule: Telnet"),
		tcpRow(t0.Add(1*time.Minute), "198.51.100.2", "10.0.0.1", "Blacklisted IP"),
		{Src: netip.MustParseAddr("10.0.0.1"), Dst: netip.MustParseAddr("203.0.113.7"), Proto: 1, Reason: "Threat intel: Feodo Tracker", Outbound: true},
		tcpRow(t0.Add(3*time.Minute), "2001:db8::1", "2001:db8::2", "Rule: Telnet"),
		tcpRow(t0.Add(4*time.Minute), "203.0.113.7", "10.0.0.1", "Rule: Telnet"),
	} {
		if i == 2 {
			r.Time = t0.Add(2 * time.Minute)
		}
		w.Blocked(r)
	}
	w.Allowed(tcpRow(t0, "198.51.100.9", "10.0.0.1", "Default policy"))
	flush(t, w)
	return s
}

func TestLogsFilters(t *testing.T) {
	s := logFixture(t)
	tests := []struct {
		name    string
		q       LogQuery
		wantIDs []int64
	}{
		{"all, newest first", LogQuery{}, []int64{5, 4, 3, 2, 1}},
		{"limit", LogQuery{Limit: 2}, []int64{5, 4}},
		{"ip as source or destination", LogQuery{IP: netip.MustParseAddr("203.0.113.7")}, []int64{5, 3, 1}},
		{"ipv6", LogQuery{IP: netip.MustParseAddr("2001:db8::2")}, []int64{4}},
		{"ip nowhere", LogQuery{IP: netip.MustParseAddr("192.0.2.1")}, []int64{}},
		{"net as source or destination", LogQuery{Net: netip.MustParsePrefix("203.0.113.0/24")}, []int64{5, 3, 1}},
		{"net of both ends", LogQuery{Net: netip.MustParsePrefix("0.0.0.0/0")}, []int64{5, 3, 2, 1}},
		{"ipv6 net", LogQuery{Net: netip.MustParsePrefix("2001:db8::/32")}, []int64{4}},
		{"net, host bits set", LogQuery{Net: netip.MustParsePrefix("198.51.100.77/24")}, []int64{2}},
		{"net nowhere", LogQuery{Net: netip.MustParsePrefix("192.0.2.0/24")}, []int64{}},
		{"net and since", LogQuery{Net: netip.MustParsePrefix("203.0.113.0/24"), Since: t0.Add(time.Second)}, []int64{5, 3}},
		{"since", LogQuery{Since: t0.Add(2 * time.Minute)}, []int64{5, 4, 3}},
		{"since in another zone", LogQuery{Since: t0.Add(2 * time.Minute).UTC()}, []int64{5, 4, 3}},
		{"ip and since", LogQuery{IP: netip.MustParseAddr("203.0.113.7"), Since: t0.Add(time.Second)}, []int64{5, 3}},
		{"after id, oldest first", LogQuery{AfterID: 3}, []int64{4, 5}},
		{"follow from the start", LogQuery{Follow: true, Limit: 2}, []int64{1, 2}},
		{"after the last id", LogQuery{AfterID: 5}, []int64{}},
		{"allowed", LogQuery{Table: "allowed"}, []int64{1}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			rows, err := s.Logs(context.Background(), tt.q)
			if err != nil {
				t.Fatal(err)
			}
			ids := []int64{}
			for _, r := range rows {
				ids = append(ids, r.ID)
			}
			if diff := cmp.Diff(tt.wantIDs, ids); diff != "" {
				t.Errorf("ids (-want +got):\n%s", diff)
			}
		})
	}
	if _, err := s.Logs(context.Background(), LogQuery{Table: "dropped"}); err == nil || !strings.Contains(err.Error(), `"dropped"`) {
		t.Errorf("unknown table: %v, want an error naming it", err)
	}
}

func TestLogRowJSON(t *testing.T) {
	s := logFixture(t)
	ctx := context.Background()
	blocked, err := s.Logs(ctx, LogQuery{AfterID: 2, Limit: 1})
	if err != nil {
		t.Fatal(err)
	}
	allowed, err := s.Logs(ctx, LogQuery{Table: "allowed"})
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		row  LogRow
		want string
	}{
		{blocked[0], `{"id":3,"timestamp":"2026-11-25 15:06:05.123","src_ip":"10.0.0.1","dst_ip":"203.0.113.7",` +
			`"src_port":null,"dst_port":null,"protocol":"icmp","reason":"Threat intel: Feodo Tracker","packet_hash":"0000000000000000","direction":"out"}`},
		{allowed[0], `{"id":1,"timestamp":"2026-11-25 15:04:05.123","src_ip":"198.51.100.9","dst_ip":"10.0.0.1",` +
			`"src_port":40000,"dst_port":23,"protocol":"tcp","direction":"in"}`},
	} {
		got, err := json.Marshal(c.row)
		if err != nil {
			t.Fatal(err)
		}
		if string(got) != c.want {
			t.Errorf("JSON\n got %s\nwant %s", got, c.want)
		}
	}
}

func TestStats(t *testing.T) {
	s := openTemp(t)
	now := time.Date(2026, 11, 25, 15, 30, 0, 0, time.UTC)
	w := startWriter(t, s, WriterConfig{MaxRowsPerSecond: -1}, nil)
	add := func(n int, ago time.Duration, src, reason string) {
		for range n {
			w.Blocked(tcpRow(now.Add(-ago), src, "10.0.0.1", reason))
		}
	}
	add(3, 0, "203.0.113.7", "Rule: Telnet")               // this hour
	add(2, 90*time.Minute, "198.51.100.2", "Rate limited") // 14:00 hour
	add(1, 23*time.Hour, "198.51.100.3", "Rule: Telnet")   // the oldest hour shown
	add(4, 25*time.Hour, "203.0.113.7", "Blacklisted IP")  // before the window
	for range 2 {                                          // this host's own connections to a C2 server: they count against the server
		r := tcpRow(now, "10.0.0.1", "192.0.2.66", "Threat intel: Feodo Tracker")
		r.Outbound = true
		w.Blocked(r)
	}
	w.Allowed(tcpRow(now, "198.51.100.9", "10.0.0.1", "Default policy"))
	flush(t, w)
	if _, err := s.write.Exec(`INSERT INTO log_suppressed VALUES
		('2026-11-25 14:00', 'blocked', 'Rate limited', 5), ('2026-11-25 15:00', 'blocked', 'Rate limited', 2),
		('2026-11-25 15:00', 'allowed', 'Default policy', 9)`); err != nil {
		t.Fatal(err)
	}

	got, err := s.Stats(context.Background(), now)
	if err != nil {
		t.Fatal(err)
	}
	want := Stats{
		Blocked: 12, Allowed: 1,
		TopBlocked: []IPCount{{"203.0.113.7", 7}, {"192.0.2.66", 2}, {"198.51.100.2", 2}, {"198.51.100.3", 1}},
		ByReason:   []ReasonCount{{"Blacklisted IP", 4}, {"Rule: Telnet", 4}, {"Rate limited", 2}, {"Threat intel: Feodo Tracker", 2}},
		Suppressed: []SuppressedCount{{"allowed", "Default policy", 9}, {"blocked", "Rate limited", 7}},
	}
	for i := range 24 {
		h := time.Date(2026, 11, 24, 16+i, 0, 0, 0, time.UTC)
		want.LastDay = append(want.LastDay, HourCount{Hour: h.Format(hourLayout)})
	}
	want.LastDay[0].Count = 1  // 2026-11-24 16:00
	want.LastDay[22].Count = 2 // 2026-11-25 14:00
	want.LastDay[23].Count = 5 // 2026-11-25 15:00
	if diff := cmp.Diff(want, got); diff != "" {
		t.Errorf("Stats (-want +got):\n%s", diff)
	}
}

func TestStatsEmptyIsJSONArrays(t *testing.T) {
	s := openTemp(t)
	st, err := s.Stats(context.Background(), t0)
	if err != nil {
		t.Fatal(err)
	}
	b, err := json.Marshal(st)
	if err != nil {
		t.Fatal(err)
	}
	if strings.Contains(string(b), "null") {
		t.Errorf("empty stats JSON has null: %s", b)
	}
}
