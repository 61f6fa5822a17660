package main

import (
	"errors"
	"fmt"
	"io"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/urfave/cli/v2"
)

func statusCommand() *cli.Command {
	return &cli.Command{
		Name:      "status",
		Usage:     "is pfwd running: uptime, packets seen/allowed/blocked, rules, feed state",
		UsageText: "fwctl status [--socket FILE] [--json]",
		Action: func(c *cli.Context) error {
			if err := wantArgs(c, 0, 0, ""); err != nil {
				return err
			}
			g := globalsOf(c)
			st, err := control.Query(c.Context, g.socket)
			if errors.Is(err, control.ErrNotRunning) {
				// "Not running" is the answer, so it goes to stdout like
				// the running report; the exit status is still 1, as with
				// firewall-cmd --state, so `fwctl status && …` means running.
				if g.json {
					if jerr := writeJSON(g.out, struct {
						Running bool `json:"running"`
					}{}); jerr != nil {
						return jerr
					}
				} else if _, werr := fmt.Fprintln(g.out, "pfwd is not running"); werr != nil {
					return werr
				}
				return err
			}
			if err != nil {
				return err
			}
			if g.json {
				return writeJSON(g.out, st)
			}
			return printStatus(g.out, st, time.Now())
		},
	}
}

func printStatus(w io.Writer, st control.Status, now time.Time) error {
	var b strings.Builder
	uptime := time.Duration(st.UptimeSeconds * float64(time.Second)).Round(time.Second)
	fmt.Fprintf(&b, "pfwd is running (pid %d", st.PID)
	if st.Version != "" {
		fmt.Fprintf(&b, ", version %s", st.Version)
	}
	fmt.Fprintf(&b, "), up %s since %s\n", uptime, when(st.StartedAt, now))
	field := func(name, format string, args ...any) {
		fmt.Fprintf(&b, "%-14s %s\n", name+":", fmt.Sprintf(format, args...))
	}
	field("Config", "%s, loaded %s", st.ConfigPath, when(st.ConfigLoadedAt, now))
	if r := st.Reload; r.InProgress {
		field("Reload", "IN PROGRESS (%s), began %s; the figures below are the config in force until it ends", orDash(r.Why), when(r.Since, now))
	}
	if st.ReloadError != "" {
		field("Reload error", "%s (the previous config stays in force)", st.ReloadError)
	}
	field("Rules", "%d enabled of %d", st.RulesEnabled, st.Rules)
	failMode := "fail open"
	if st.FailClosed {
		failMode = "fail closed"
	}
	field("Queue", "%s, queues %s, %s", orDash(st.QueueMode), orDash(st.Queues), failMode)
	if len(st.Interfaces) > 0 {
		field("Interfaces", "only %s filtered (--iface); the others pass unchecked", strings.Join(st.Interfaces, ", "))
	}
	field("Fast path", "%s", orDash(st.FastPath))
	p := st.Packets
	field("Packets", "%d seen, %d allowed, %d blocked (%d in the kernel)", p.Seen, p.Allowed, p.Blocked, p.KernelBlocked)
	if p.KernelUnlogged != "" {
		field("Kernel drops", "NOT LOGGED or counted: %s", p.KernelUnlogged)
	}
	field("Queue drops", "%d (verdict errors: %d)", p.QueueDrops, p.VerdictErrors)
	if st.LogRows.Fallback != "" {
		field("Database", "%s, TEMPORARY: the configured one could not be opened (%s); restart pfwd once it is fixed",
			st.LogRows.Database, st.LogRows.Fallback)
	}
	field("Log rows", "%d written, %d suppressed", st.LogRows.Written, st.LogRows.Suppressed)
	if st.LogRows.Lost > 0 || st.LogRows.LastError != "" {
		field("Log errors", "%d rows lost; last error: %s", st.LogRows.Lost, st.LogRows.LastError)
	}
	field("Rate limiter", "%d of %d sources tracked; %d over the limit held in the kernel (%d attempts dropped there)",
		st.RateLimiter.Tracked, st.RateLimiter.Capacity, st.RateLimiter.KernelHeld, st.RateLimiter.KernelDropped)
	if len(st.Sets) > 0 {
		names := make([]string, 0, len(st.Sets))
		for n := range st.Sets {
			names = append(names, n)
		}
		slices.Sort(names)
		parts := make([]string, len(names))
		for i, n := range names {
			parts[i] = fmt.Sprintf("%s %d", n, st.Sets[n])
		}
		field("Sets", "%s", strings.Join(parts, ", "))
	}
	if len(st.Feeds) == 0 {
		field("Feeds", "none")
	} else {
		b.WriteString("Feeds:\n")
		t := section(&b, "NAME", "ENTRIES", "LAST SUCCESS", "NEXT FETCH", "FAILURES", "LAST ERROR")
		for _, f := range st.Feeds {
			entries := strconv.Itoa(f.Entries)
			if !f.ApplyingSince.IsZero() {
				entries += " (updating)"
			}
			next := when(f.NextFetch, now)
			if !f.FetchingSince.IsZero() {
				next = fmt.Sprintf("fetching for %s", now.Sub(f.FetchingSince).Round(time.Second))
			}
			t.add(f.Name, entries, when(f.LastSuccess, now), next,
				strconv.Itoa(f.Failures), orDash(f.LastError))
		}
		t.flush()
	}
	_, err := io.WriteString(w, b.String())
	return err
}

// when spells a time for people: local clock time and how long ago (or
// how soon) it is.
func when(t, now time.Time) string {
	if t.IsZero() {
		return "never"
	}
	d := now.Sub(t).Round(time.Second)
	rel := d.String() + " ago"
	if d < 0 {
		rel = "in " + (-d).String()
	}
	return fmt.Sprintf("%s (%s)", t.Local().Format("2006-01-02 15:04:05"), rel)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}
