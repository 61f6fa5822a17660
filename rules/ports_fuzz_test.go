package rules

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParsePortRange feeds ParsePortRange what a user may type after
// --ports or put in a "ports" string: it returns a range or an error, never
// both; a range lies within 1-65535 and in order, and reads back the same
// from its String (the form Marshal writes); an error is one line that
// names what was typed; and the config parser judges the same string
// alike, naming the place.
func FuzzParsePortRange(f *testing.F) {
	for _, s := range []string{
		"443", "8000-8100", " 22 ", "1-65535", "65535", "7-7", "80 - 90",
		"0", "65536", "70000", "-1", "-5", "5-", "-", "", " ", "100-99", "1-2-3",
		"+80", "0x50", "1e3", "080", "99999999999999999999", "٣", "22\n", "1–2",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		r, err := ParsePortRange(s)
		if err != nil {
			if r != (PortRange{}) {
				t.Fatalf("ParsePortRange(%q) = %v and error %v", s, r, err)
			}
			checkNamesInput(t, err, s)
		} else {
			if r.First < 1 || r.First > r.Last {
				t.Fatalf("ParsePortRange(%q) = %d-%d: not a range of ports 1-65535", s, r.First, r.Last)
			}
			if !r.Contains(r.First) || !r.Contains(r.Last) {
				t.Fatalf("%v does not contain its own ends", r)
			}
			again, err := ParsePortRange(r.String())
			if err != nil || again != r {
				t.Fatalf("ParsePortRange(%q) = %v, but its String %q reads back as %v, %v", s, r, r.String(), again, err)
			}
		}

		// The config takes the same strings in "ports": same verdict, and
		// the error is ParsePortRange's behind the path of the value.
		if !utf8.ValidString(s) {
			return // JSON would carry U+FFFD instead, another string
		}
		quoted, _ := json.Marshal(s)
		cfg, cerr := Parse([]byte(`{"rules":[{"name":"r","action":"block","ports":[` + string(quoted) + `]}]}`))
		switch {
		case err == nil && cerr != nil:
			t.Fatalf("ParsePortRange(%q) = %v, but the config refuses it: %v", s, r, cerr)
		case err == nil && (len(cfg.Rules[0].Ports) != 1 || cfg.Rules[0].Ports[0] != r):
			t.Fatalf("ParsePortRange(%q) = %v, the config reads %v", s, r, cfg.Rules[0].Ports)
		case err != nil && cerr == nil:
			t.Fatalf("ParsePortRange(%q) fails (%v), but the config accepts it", s, err)
		case err != nil && cerr.Error() != "rules[0].ports[0]: "+err.Error():
			t.Fatalf("config error %q, want ParsePortRange's %q at rules[0].ports[0]", cerr, err)
		}
	})
}

// checkNamesInput fails unless err is a non-empty, one-line message that
// shows the user what they wrote: s (trimmed or not) or a non-blank part
// of it (split at the first "-"), quoted, or the number a part spells.
func checkNamesInput(t *testing.T, err error, s string) {
	t.Helper()
	msg := err.Error()
	if msg == "" || strings.ContainsAny(msg, "\n\r") {
		t.Fatalf("error for %q is empty or not one line: %q", s, msg)
	}
	lo, hi, _ := strings.Cut(strings.TrimSpace(s), "-")
	if strings.Contains(msg, strconv.Quote(s)) || strings.Contains(msg, strconv.Quote(strings.TrimSpace(s))) {
		return
	}
	for _, part := range []string{strings.TrimSpace(lo), strings.TrimSpace(hi)} {
		if part == "" {
			continue
		}
		if strings.Contains(msg, strconv.Quote(part)) {
			return
		}
		if n, err := strconv.Atoi(part); err == nil && strings.HasPrefix(msg, strconv.Itoa(n)+" ") {
			return
		}
	}
	t.Fatalf("error for %q does not say what was wrong in it: %q", s, msg)
}
