package rules

import (
	"encoding/json"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParsePrefix feeds ParsePrefix what a user may put in the lists,
// src_ips, --src-ips or fwctl blacklist add: it returns a prefix or an
// error, never both; a prefix is valid, masked, zone-free and never an
// IPv4-mapped IPv6 address (v4 packets must match it); FormatPrefix, which
// Marshal and fwctl list use, reads back as the same prefix; it accepts
// exactly what net/netip reads as a zone-free address or CIDR; an error
// quotes the input; and the config parser judges the string alike.
func FuzzParsePrefix(f *testing.F) {
	for _, s := range []string{
		"203.0.113.7", "192.0.2.0/24", "192.0.2.9/24", " 10.0.0.1 ", "2001:db8::/32", "::1",
		"::ffff:192.0.2.1", "::ffff:192.0.2.0/120", "::ffff:0:0/96", "::ffff:1.2.3.4/64",
		"0.0.0.0/0", "::/0", "fe80::1%eth0", "fe80::1%eth0/64", "10.0.0.0/33", "1.2.3", "01.2.3.4",
		"1.2.3.4/", "/24", "", "nope", "1.2.3.4/024", "1.2.3.4/-1", "::1/128\n",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		p, err := ParsePrefix(s)
		if err != nil {
			if p != (netip.Prefix{}) {
				t.Fatalf("ParsePrefix(%q) = %v and error %v", s, p, err)
			}
			if msg := err.Error(); !strings.Contains(msg, strconv.Quote(s)) || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error for %q does not quote it on one line: %q", s, msg)
			}
		} else {
			if !p.IsValid() || p != p.Masked() || p.Addr().Zone() != "" || p.Addr().Is4In6() {
				t.Fatalf("ParsePrefix(%q) = %v: not a canonical prefix", s, p)
			}
			text := FormatPrefix(p)
			if again, err := ParsePrefix(text); err != nil || again != p {
				t.Fatalf("ParsePrefix(%q) = %v, but FormatPrefix gives %q, which reads back as %v, %v", s, p, text, again, err)
			}
			if p.IsSingleIP() == strings.Contains(text, "/") {
				t.Fatalf("FormatPrefix(%v) = %q: a single address is written bare, a network as a CIDR", p, text)
			}
		}

		// net/netip is the reference for what an address or CIDR is.
		trimmed := strings.TrimSpace(s)
		a, aerr := netip.ParseAddr(trimmed)
		n, nerr := netip.ParsePrefix(trimmed)
		netipReads := (aerr == nil && a.Zone() == "") || nerr == nil
		if netipReads != (err == nil) {
			t.Fatalf("ParsePrefix(%q) error %v, but net/netip reads it: %v", s, err, netipReads)
		}
		if err == nil && nerr == nil && !n.Addr().Is4In6() && p != n.Masked() {
			t.Fatalf("ParsePrefix(%q) = %v, net/netip %v", s, p, n.Masked())
		}

		if !utf8.ValidString(s) {
			return // JSON would carry U+FFFD instead, another string
		}
		quoted, _ := json.Marshal(s)
		cfg, cerr := Parse([]byte(`{"rules":[{"name":"r","action":"block","src_ips":[` + string(quoted) + `]}]}`))
		switch {
		case err == nil && cerr != nil:
			t.Fatalf("ParsePrefix(%q) = %v, but the config refuses it: %v", s, p, cerr)
		case err == nil && (len(cfg.Rules[0].SrcIPs) != 1 || cfg.Rules[0].SrcIPs[0] != p):
			t.Fatalf("ParsePrefix(%q) = %v, the config reads %v", s, p, cfg.Rules[0].SrcIPs)
		case err != nil && cerr == nil:
			t.Fatalf("ParsePrefix(%q) fails (%v), but the config accepts it", s, err)
		case err != nil && cerr.Error() != "rules[0].src_ips[0]: "+err.Error():
			t.Fatalf("config error %q, want ParsePrefix's %q at rules[0].src_ips[0]", cerr, err)
		}
	})
}
