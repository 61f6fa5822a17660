package main

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"os/signal"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/store"
	"github.com/urfave/cli/v2"
	"golang.org/x/sys/unix"
)

// followInterval is how often `logs --follow` asks for new rows.
const followInterval = 500 * time.Millisecond

func logsCommand() *cli.Command {
	return &cli.Command{
		Name:      "logs",
		Usage:     "show logged packets, newest first",
		UsageText: "fwctl logs [--type blocked|allowed] [--limit 50] [--ip IP] [--since 1h|TIME] [--follow]",
		Description: "Blocked packets are all logged (up to the writer's rate cap); allowed ones are sampled\n" +
			"(allowed_sample_rate). Timestamps are UTC. --follow prints the newest rows, oldest first,\n" +
			"then new rows as they are logged, until interrupted; with --json it prints one JSON object\n" +
			"per line.",
		Flags: []cli.Flag{
			&cli.StringFlag{Name: "type", Value: "blocked", Usage: "log `TYPE` (blocked or allowed)"},
			&cli.IntFlag{Name: "limit", Value: 50, Usage: "at most `N` rows (0: all)"},
			&cli.StringFlag{Name: "ip", Usage: "only rows whose source or destination is `IP` (or lies in a CIDR, 192.0.2.0/24)"},
			&cli.StringFlag{Name: "since", Usage: "only rows since a duration ago (`1h`, 30m) or a UTC time (2026-11-25 15:04)"},
			&cli.BoolFlag{Name: "follow", Aliases: []string{"f"}, Usage: "keep printing new rows until interrupted"},
		},
		Action: logs,
	}
}

func logs(c *cli.Context) error {
	if err := wantArgs(c, 0, 0, ""); err != nil {
		return err
	}
	g := globalsOf(c)
	q, err := logQueryFromFlags(c, time.Now())
	if err != nil {
		return err
	}
	db := chooseDB(c, g)
	s, err := db.open(g)
	if err != nil {
		return err
	}
	rows, err := s.Logs(c.Context, q)
	if err != nil {
		s.Close()
		return err
	}
	if c.Bool("follow") {
		ctx, stop := signal.NotifyContext(c.Context, os.Interrupt, syscall.SIGTERM)
		defer stop()
		slices.Reverse(rows) // tail prints the newest last
		// A database replaced while followed may be pfwd's move to a
		// temporary one, or back after its restart: ask again which.
		reopen := func() (*store.Store, error) { return store.OpenReader(chooseDB(c, g).path) }
		return follow(ctx, s, q, rows, newLogPrinter(g, q.Table), reopen, readerGone(g.out))
	}
	s.Close()
	if g.json {
		return writeJSON(g.out, rows)
	}
	if len(rows) == 0 {
		_, err := fmt.Fprintf(g.out, "No %s packets logged%s.\n", q.Table, filterNote(c))
		return err
	}
	t := logTable(g.out, q.Table)
	for _, r := range rows {
		t.add(logCells(r, q.Table)...)
	}
	return t.flush()
}

func logQueryFromFlags(c *cli.Context, now time.Time) (store.LogQuery, error) {
	q := store.LogQuery{Table: strings.ToLower(c.String("type")), Limit: c.Int("limit")}
	if q.Table != "blocked" && q.Table != "allowed" {
		return q, badUsage(c, "logs: --type: %q is not a log type (blocked, allowed)", c.String("type"))
	}
	if q.Limit < 0 {
		return q, fmt.Errorf("--limit: %d is negative (0 means all rows)", q.Limit)
	}
	if c.IsSet("ip") {
		// An address, or a CIDR like the lists take: rules.ParsePrefix
		// reads both and unmaps ::ffff: forms.
		p, err := rules.ParsePrefix(strings.TrimSpace(c.String("ip")))
		if err != nil {
			return q, fmt.Errorf("--ip: %q is not an IP address or CIDR", c.String("ip"))
		}
		if p.IsSingleIP() {
			q.IP = p.Addr()
		} else {
			q.Net = p
		}
	}
	if c.IsSet("since") {
		t, err := parseSince(c.String("since"), now)
		if err != nil {
			return q, fmt.Errorf("--since: %w", err)
		}
		q.Since = t
	}
	return q, nil
}

// sinceLayouts are the timestamps --since reads besides RFC 3339; they
// carry no zone and mean UTC, like the log's timestamps, so a time copied
// from `fwctl logs` means what it says.
var sinceLayouts = []string{
	"2006-01-02 15:04:05.000",
	"2006-01-02 15:04:05",
	"2006-01-02T15:04:05",
	"2006-01-02 15:04",
	"2006-01-02T15:04",
	"2006-01-02",
}

// parseSince reads a duration before now (1h, 90m, 2d, 1w, 1d12h) or a
// point in time.
func parseSince(s string, now time.Time) (time.Time, error) {
	s = strings.TrimSpace(s)
	if d, ok := rules.ParseDuration(s); ok {
		if d < 0 {
			return time.Time{}, fmt.Errorf("%q is a negative duration", s)
		}
		return now.Add(-d), nil
	}
	if t, err := time.Parse(time.RFC3339Nano, s); err == nil {
		return t, nil
	}
	for _, layout := range sinceLayouts {
		if t, err := time.Parse(layout, s); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is neither a duration (1h, 30m, 2d; a century at most) nor a time (2026-11-25 15:04:05, RFC 3339)", s)
}

func filterNote(c *cli.Context) string {
	var parts []string
	if c.IsSet("ip") {
		parts = append(parts, "for "+c.String("ip"))
	}
	if since := strings.TrimSpace(c.String("since")); c.IsSet("since") {
		if _, age := rules.ParseDuration(since); age {
			parts = append(parts, "in the last "+since) // "since 30s" reads as a time
		} else {
			parts = append(parts, "since "+since)
		}
	}
	if len(parts) == 0 {
		return ""
	}
	return " " + strings.Join(parts, " ")
}

func logTable(w io.Writer, typ string) *table {
	if typ == "allowed" {
		return newTable(w, "ID", "TIMESTAMP", "SRC_IP", "DST_IP", "SRC_PORT", "DST_PORT", "PROTOCOL", "DIRECTION")
	}
	return newTable(w, "ID", "TIMESTAMP", "SRC_IP", "DST_IP", "SRC_PORT", "DST_PORT", "PROTOCOL", "REASON", "PACKET_HASH", "DIRECTION")
}

// logCells spells a row for logTable of its type: allowed rows have no
// reason or hash. Rows logged before pfw recorded directions show "-".
func logCells(r store.LogRow, typ string) []string {
	dir := r.Direction
	if dir == "" {
		dir = "-"
	}
	cells := []string{strconv.FormatInt(r.ID, 10), r.Timestamp, r.SrcIP, r.DstIP, portCell(r.SrcPort),
		portCell(r.DstPort), r.Protocol}
	if typ != "allowed" {
		cells = append(cells, r.Reason, r.PacketHash)
	}
	return append(cells, dir)
}

func portCell(p *int) string {
	if p == nil {
		return "-"
	}
	return strconv.Itoa(*p)
}

// logPrinter prints batches of rows as they come: table rows aligned
// under one header, or one JSON object per line.
type logPrinter func(rows []store.LogRow) error

func newLogPrinter(g *globals, typ string) logPrinter {
	if g.json {
		enc := json.NewEncoder(g.out)
		enc.SetEscapeHTML(false)
		return func(rows []store.LogRow) error {
			for _, r := range rows {
				if err := enc.Encode(r); err != nil {
					return err
				}
			}
			return nil
		}
	}
	t := logTable(g.out, typ)
	return func(rows []store.LogRow) error {
		for _, r := range rows {
			t.add(logCells(r, typ)...)
		}
		if len(rows) == 0 && t.printedHeader {
			return nil
		}
		return t.flush()
	}
}

// follow prints first, then every followInterval the rows logged after the
// last one printed, until ctx ends or gone says nobody reads the output
// any more; it closes s. Ids only grow
// (AUTOINCREMENT), so "id greater than the last" never skips nor repeats a
// row. When the database file is deleted or replaced (someone cleared the
// log, and pfwd made a new one), follow opens the new file with reopen and
// goes on from its first row.
func follow(ctx context.Context, s *store.Store, q store.LogQuery, first []store.LogRow, print logPrinter,
	reopen func() (*store.Store, error), gone func() bool) error {
	defer func() { s.Close() }()
	if err := print(first); err != nil {
		return err
	}
	var last int64
	if len(first) > 0 {
		last = first[len(first)-1].ID
	} else {
		// Nothing matched so far; start after whatever is in the table now,
		// whether or not it matches, so only new rows are shown.
		all, err := s.Logs(ctx, store.LogQuery{Table: q.Table, Limit: 1})
		if err != nil {
			return err
		}
		if len(all) > 0 {
			last = all[0].ID
		}
	}
	const batch = 1000
	tick := time.NewTicker(followInterval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-tick.C:
		}
		if gone() {
			return nil
		}
		if s.Replaced() {
			n, err := reopen()
			if err != nil {
				continue // pfwd makes the new file within a second
			}
			s.Close()
			s, last = n, 0
		}
		for {
			next := q
			next.Limit, next.AfterID, next.Follow = batch, last, true
			rows, err := s.Logs(ctx, next)
			if ctx.Err() != nil {
				return nil
			}
			if err != nil {
				return err
			}
			if len(rows) == 0 {
				break
			}
			if err := print(rows); err != nil {
				return err
			}
			last = rows[len(rows)-1].ID
			if len(rows) < batch {
				break
			}
		}
	}
}

// readerGone returns a function reporting whether w is a pipe or socket
// whose reading end has closed (`fwctl logs --follow | head -3`). follow
// writes only when rows arrive, so without asking it would learn of it
// from the next row, on a quiet host never; `tail -f` asks the same way.
func readerGone(w io.Writer) func() bool {
	f, ok := w.(*os.File)
	if !ok {
		return func() bool { return false }
	}
	rc, err := f.SyscallConn()
	if err != nil {
		return func() bool { return false }
	}
	return func() bool {
		gone := false
		rc.Control(func(fd uintptr) {
			fds := []unix.PollFd{{Fd: int32(fd)}}
			if n, err := unix.Poll(fds, 0); err == nil && n > 0 {
				gone = fds[0].Revents&(unix.POLLERR|unix.POLLHUP) != 0
			}
		})
		return gone
	}
}
