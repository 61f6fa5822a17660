package main

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/pfw/pfw/store"
	"github.com/urfave/cli/v2"
)

// barWidth is the longest bar of the hourly chart.
const barWidth = 40

func statsCommand() *cli.Command {
	return &cli.Command{
		Name:      "stats",
		Usage:     "totals, top 10 blocked IPs, blocks by reason, the last 24 h by hour",
		UsageText: "fwctl stats [--json]",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0, ""); err != nil {
				return err
			}
			g := globalsOf(c)
			s, err := chooseDB(c, g).open(g)
			if err != nil {
				return err
			}
			defer s.Close()
			st, err := s.Stats(c.Context, time.Now())
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.out, st)
			}
			return printStats(g.out, st)
		},
	}
}

func printStats(w io.Writer, st store.Stats) error {
	var b strings.Builder
	fmt.Fprintf(&b, "Blocked packets logged: %d\n", st.Blocked)
	fmt.Fprintf(&b, "Allowed packets logged: %d (sampled)\n", st.Allowed)

	top := make([][2]string, len(st.TopBlocked))
	for i, c := range st.TopBlocked {
		top[i] = [2]string{c.IP, strconv.FormatInt(c.Count, 10)}
	}
	countSection(&b, "Top blocked remote addresses", "IP", top)
	reasons := make([][2]string, len(st.ByReason))
	for i, c := range st.ByReason {
		reasons[i] = [2]string{c.Reason, strconv.FormatInt(c.Count, 10)}
	}
	countSection(&b, "Blocks by reason", "REASON", reasons)

	b.WriteString("\nBlocked in the last 24 hours (UTC):\n")
	var peak int64
	for _, h := range st.LastDay {
		peak = max(peak, h.Count)
	}
	t := section(&b, "HOUR", "BLOCKED", "")
	for _, h := range st.LastDay {
		t.add(h.Hour, strconv.FormatInt(h.Count, 10), bar(h.Count, peak))
	}
	t.flush()

	if len(st.Suppressed) > 0 {
		b.WriteString("\nNot logged (over the rate cap or the buffer was full), counted instead:\n")
		t := section(&b, "TYPE", "REASON", "ROWS")
		for _, s := range st.Suppressed {
			t.add(s.Type, s.Reason, strconv.FormatInt(s.Count, 10))
		}
		t.flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// countSection writes a titled two-column table of blocked counts, or
// "none".
func countSection(b *strings.Builder, title, key string, rows [][2]string) {
	fmt.Fprintf(b, "\n%s:\n", title)
	if len(rows) == 0 {
		b.WriteString("  none\n")
		return
	}
	t := section(b, key, "BLOCKED")
	for _, r := range rows {
		t.add(r[0], r[1])
	}
	t.flush()
}

func section(w io.Writer, header ...string) *table {
	t := newTable(w, header...)
	t.indent = "  "
	return t
}

// bar draws n against peak; any n above zero gets at least one mark.
func bar(n, peak int64) string {
	if n <= 0 || peak <= 0 {
		return ""
	}
	return strings.Repeat("#", max(1, int(n*barWidth/peak)))
}

func threatsCommand() *cli.Command {
	return &cli.Command{
		Name:      "threats",
		Usage:     "threat-intel entries, newest first",
		UsageText: "fwctl threats [--limit 50] [--json]",
		Flags: []cli.Flag{
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "at most `N` entries (0: all)"},
		},
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0, ""); err != nil {
				return err
			}
			g := globalsOf(c)
			limit := c.Int("limit")
			if limit < 0 {
				return fmt.Errorf("--limit: %d is negative (0 means all entries)", limit)
			}
			s, err := chooseDB(c, g).open(g)
			if err != nil {
				return err
			}
			defer s.Close()
			rows, err := s.Threats(c.Context, limit)
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.out, rows)
			}
			if len(rows) == 0 {
				_, err := fmt.Fprintln(g.out, "No threat-intel entries (feeds have not been fetched yet, or list nothing).")
				return err
			}
			t := newTable(g.out, "IP", "THREAT_LEVEL", "LAST_SEEN", "SOURCE")
			for _, r := range rows {
				t.add(r.IP, r.ThreatLevel, r.LastSeen, r.Source)
			}
			return t.flush()
		},
	}
}
