package main

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"strings"
	"unicode/utf8"

	"github.com/urfave/cli/v2"
)

// usageError is bad usage, what the command's usage line alone shows to
// be wrong (see doc.go). run exits 2 on it and points to the command's help
// instead of dumping it.
type usageError struct {
	command string // "fwctl add": where the help is
	usage   string // the command's one-line synopsis, when it has one
	msg     string
}

func (e *usageError) Error() string { return e.msg }

// badUsage builds a usageError for the command c is running.
func badUsage(c *cli.Context, format string, args ...any) error {
	e := &usageError{command: "fwctl", msg: fmt.Sprintf(format, args...)}
	if c != nil && c.Command != nil && c.Command.HelpName != "" {
		e.command = c.Command.HelpName
		e.usage = c.Command.UsageText
	}
	return e
}

// onUsageError turns urfave/cli's flag parsing errors into usageErrors, in
// the GNU spelling users type (--limit, not -limit).
func onUsageError(c *cli.Context, err error, _ bool) error {
	msg := err.Error()
	msg = strings.Replace(msg, "flag provided but not defined: -", "unknown flag --", 1)
	msg = strings.Replace(msg, "for flag -", "for flag --", 1)
	msg = strings.Replace(msg, "flag needs an argument: -", "flag needs an argument: --", 1)
	return badUsage(c, "%s", msg)
}

// wantArgs checks the number of positional arguments.
func wantArgs(c *cli.Context, minimum, maximum int, what string) error {
	n := c.NArg()
	name := strings.TrimPrefix(c.Command.HelpName, "fwctl ")
	switch {
	case n < minimum && n == 0:
		return badUsage(c, "%s: missing %s", name, what)
	case n < minimum:
		return badUsage(c, "%s: missing %s (got %s)", name, what, plural(n, "argument", "arguments"))
	case maximum >= 0 && n > maximum:
		extra := c.Args().Slice()[maximum:]
		return badUsage(c, "%s: unexpected argument %q", name, extra[0])
	}
	return nil
}

// exitCode reports err on stderr, one line, and returns the exit status:
// 0 for nil, 2 for bad usage, 1 for everything else.
func exitCode(err error, stderr io.Writer) int {
	if err == nil {
		return 0
	}
	var ue *usageError
	var ec cli.ExitCoder
	switch {
	case errors.As(err, &ue):
		fmt.Fprintf(stderr, "fwctl: %s\n", oneLine(ue.msg))
		if ue.usage != "" {
			first, _, _ := strings.Cut(ue.usage, "\n")
			fmt.Fprintf(stderr, "usage: %s\n", first)
		}
		fmt.Fprintf(stderr, "Run '%s --help' for more.\n", ue.command)
		return 2
	case errors.As(err, &ec):
		// Only urfave/cli's own errors get here: "No help topic for 'x'".
		fmt.Fprintf(stderr, "fwctl: %s\n", oneLine(err.Error()))
		return 2
	}
	fmt.Fprintf(stderr, "fwctl: %s\n", withRootHint(oneLine(err.Error()), err, os.Geteuid()))
	return 1
}

// withRootHint adds to msg that fwctl wants root when err is a refused
// permission and fwctl (effective uid euid) does not run as root. Root
// meets EPERM too (an immutable file, a read-only mount), and telling it
// to become root would send it the wrong way.
func withRootHint(msg string, err error, euid int) string {
	if euid == 0 || !errors.Is(err, fs.ErrPermission) || strings.Contains(msg, "root") {
		return msg
	}
	return msg + " (run fwctl as root, e.g. with sudo)"
}

// oneLine keeps an error to the one line the contract promises.
func oneLine(s string) string {
	s = strings.TrimSpace(s)
	return strings.Join(strings.Fields(strings.ReplaceAll(s, "\n", " ")), " ")
}

// writeJSON prints v indented, the way every --json output looks.
func writeJSON(w io.Writer, v any) error {
	enc := json.NewEncoder(w)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}

// table prints rows in aligned columns, two spaces apart. Column widths
// only grow and survive Flush, so `logs --follow` can print batch after
// batch under one header; text/tabwriter forgets its widths on Flush.
type table struct {
	w      io.Writer
	header []string
	widths []int
	rows   [][]string
	// printedHeader is set once the header has gone out.
	printedHeader bool
	// indent prefixes every line (the sections of `stats`).
	indent string
}

func newTable(w io.Writer, header ...string) *table {
	t := &table{w: w, header: header, widths: make([]int, len(header))}
	t.fit(header)
	return t
}

func (t *table) fit(cells []string) {
	for i, c := range cells {
		if n := utf8.RuneCountInString(c); n > t.widths[i] {
			t.widths[i] = n
		}
	}
}

// add queues a row; cells beyond the header are dropped.
func (t *table) add(cells ...string) {
	cells = cells[:min(len(cells), len(t.header))]
	t.fit(cells)
	t.rows = append(t.rows, cells)
}

// flush prints the header (the first time) and the queued rows.
func (t *table) flush() error {
	var b strings.Builder
	if !t.printedHeader {
		t.line(&b, t.header)
		t.printedHeader = true
	}
	for _, r := range t.rows {
		t.line(&b, r)
	}
	t.rows = t.rows[:0]
	_, err := io.WriteString(t.w, b.String())
	return err
}

func (t *table) line(b *strings.Builder, cells []string) {
	var l strings.Builder
	l.WriteString(t.indent)
	var pending int
	for i, c := range cells {
		if i > 0 {
			l.WriteString(strings.Repeat(" ", pending+2))
		}
		l.WriteString(c)
		pending = t.widths[i] - utf8.RuneCountInString(c)
	}
	b.WriteString(strings.TrimRight(l.String(), " "))
	b.WriteByte('\n')
}

// plural spells "1 rule", "2 rules".
func plural(n int, one, many string) string {
	if n == 1 {
		return fmt.Sprintf("%d %s", n, one)
	}
	return fmt.Sprintf("%d %s", n, many)
}

// orAny joins a list for a table cell, "any" when it is empty.
func orAny(items []string) string {
	if len(items) == 0 {
		return "any"
	}
	return strings.Join(items, ",")
}
