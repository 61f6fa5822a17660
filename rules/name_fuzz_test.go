package rules

import (
	"strings"
	"testing"
	"unicode"
)

// FuzzCheckRuleName feeds CheckRuleName what fwctl add takes as NAME (any
// bytes the shell passes) and a config holds as a rule or feed name: a name
// it accepts is not blank, at most MaxRuleName bytes, free of control
// characters, and is saved and read back unchanged as a rule's and as a
// feed's name, since the name is what the block reason, the log rows and
// fwctl show; a refusal is one line.
func FuzzCheckRuleName(f *testing.F) {
	for _, s := range []string{
		"Block Telnet and SMB", "Game servers", "SSH", "  padded  ", "", " ", "\t",
		"tab\tinside", "new\nline", "nul\x00", "del\x7f", "c1\u0085", "émigré", "日本語のルール",
		"\u2028line separator", "<script>&amp;", `quote " and \ backslash`, "\xff", "ok\xe2\x82",
		strings.Repeat("x", MaxRuleName), strings.Repeat("x", MaxRuleName+1), strings.Repeat("é", 70),
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		err := CheckRuleName(name)
		if err != nil {
			if msg := err.Error(); msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("CheckRuleName(%q) error is empty or not one line: %q", name, msg)
			}
			return
		}
		if strings.TrimSpace(name) == "" || len(name) > MaxRuleName || strings.IndexFunc(name, unicode.IsControl) >= 0 {
			t.Fatalf("CheckRuleName accepted %q", name)
		}
		cfg := &Config{
			DefaultPolicy: ActionAllow,
			RateLimit:     RateLimit{MaxConnections: 100, WindowSeconds: 10},
			Rules:         []Rule{{Name: name, Action: ActionBlock, Enabled: true}},
			ThreatFeeds:   []Feed{{Name: name, URL: "https://feeds.example/list.txt", Interval: 3600e9, ThreatLevel: "high"}},
		}
		data, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal of a rule named %q: %v", name, err)
		}
		back, err := Parse(data)
		if err != nil {
			t.Fatalf("a rule named %q is saved as a config Parse refuses: %v\n%s", name, err, data)
		}
		if back.Rules[0].Name != name || back.ThreatFeeds[0].Name != name {
			t.Fatalf("a rule named %q reads back as %q, a feed as %q", name, back.Rules[0].Name, back.ThreatFeeds[0].Name)
		}
	})
}
