package intel

import (
	"bytes"
	"errors"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/google/go-cmp/cmp"
)

var updateGolden = flag.Bool("update", false, "rewrite testdata/golden/*.golden from Parse's output")

// TestParseTestdata parses every sample in testdata/ and checks the summary
// here and the full output against testdata/golden/<file>.golden.
func TestParseTestdata(t *testing.T) {
	tests := []struct {
		file    string
		format  string
		entries int
		invalid int
		lines   int
		wantErr error
	}{
		{file: "feodo.ipset", format: FormatFireHOL, entries: 40, lines: 40},
		{file: "feodo_ipblocklist.txt", format: FormatFeodo, entries: 4, lines: 5},
		{file: "feodo_recommended_empty.txt", format: FormatFeodo},
		// Cut inside its third address, which reads as 203.0.113.1.
		{file: "feodo_truncated.txt", lines: 3, wantErr: ErrTruncated},
		{file: "feodo_ipblocklist.csv", format: FormatFeodoCSV, entries: 4, invalid: 1, lines: 5},
		{file: "spamhaus_drop.txt", format: FormatSpamhaus, entries: 7, lines: 7},
		{file: "spamhaus_drop_v6.txt", format: FormatSpamhaus, entries: 3, lines: 3},
		{file: "firehol_level1.netset", format: FormatFireHOL, entries: 12, lines: 12},
		{file: "plain_mixed.txt", format: FormatFireHOL, entries: 9, invalid: 2, lines: 13},
		{file: "plain_nl_no_header.txt", format: FormatPlain, entries: 4, lines: 4},
		{file: "plain_crlf_no_final_newline.txt", format: FormatPlain, entries: 3, lines: 3},
		{file: "half_invalid.txt", format: FormatFireHOL, entries: 2, invalid: 2, lines: 4},
		{file: "dangerous_entries.txt", format: FormatFireHOL, entries: 11, lines: 11},
		{file: "empty.txt", format: FormatPlain},
		{file: "html_error.html", wantErr: ErrNotBlocklist},
		{file: "html_after_blank.html", wantErr: ErrNotBlocklist},
		{file: "binary.bin", wantErr: ErrNotBlocklist},
		{file: "gzip_body.bin", wantErr: ErrNotBlocklist},
		{file: "invalid_utf8.txt", wantErr: ErrNotBlocklist},
		{file: "mostly_invalid.txt", invalid: 5, lines: 6, wantErr: ErrNotBlocklist},
		{file: "hosts_file.txt", invalid: 3, lines: 3, wantErr: ErrNotBlocklist},
		{file: "json_list.json", invalid: 3, lines: 3, wantErr: ErrNotBlocklist},
	}
	covered := map[string]bool{}
	for _, tt := range tests {
		covered[tt.file] = true
		t.Run(tt.file, func(t *testing.T) {
			data, err := os.ReadFile(filepath.Join("testdata", tt.file))
			if err != nil {
				t.Fatal(err)
			}
			res, err := Parse(bytes.NewReader(data))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("Parse error = %v, want %v", err, tt.wantErr)
			}
			if err == nil {
				if res.Format != tt.format || len(res.Entries) != tt.entries {
					t.Errorf("format %q with %d entries, want %q with %d", res.Format, len(res.Entries), tt.format, tt.entries)
				}
			} else if res.Entries != nil {
				t.Errorf("rejected input returned %d entries", len(res.Entries))
			}
			if res.Invalid != tt.invalid || res.Lines != tt.lines {
				t.Errorf("invalid %d of %d lines, want %d of %d", res.Invalid, res.Lines, tt.invalid, tt.lines)
			}
			checkGolden(t, filepath.Join("testdata", "golden", tt.file+".golden"), render(res, err))
		})
	}
	files, err := os.ReadDir("testdata")
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range files {
		if !f.IsDir() && !covered[f.Name()] {
			t.Errorf("testdata/%s has no case in this table", f.Name())
		}
	}
}

// render prints a Parse outcome for a golden file.
func render(res Result, err error) string {
	var b strings.Builder
	fmt.Fprintf(&b, "format: %s\nlines: %d\ninvalid: %d\nfirst_invalid: %s\n", res.Format, res.Lines, res.Invalid, res.FirstInvalid)
	if err != nil {
		fmt.Fprintf(&b, "error: %v\n", err)
	}
	b.WriteString("entries:\n")
	for _, p := range res.Entries {
		b.WriteString(p.String() + "\n")
	}
	return b.String()
}

func checkGolden(t *testing.T, path, got string) {
	t.Helper()
	if *updateGolden {
		if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
		return
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run go test ./intel -run TestParseTestdata -update to create it)", err)
	}
	if diff := cmp.Diff(string(want), got); diff != "" {
		t.Errorf("%s mismatch (-want +got):\n%s", path, diff)
	}
}

func prefixes(ss ...string) []netip.Prefix {
	out := make([]netip.Prefix, 0, len(ss))
	for _, s := range ss {
		out = append(out, netip.MustParsePrefix(s))
	}
	return out
}

// TestParseRules pins one behaviour per case.
func TestParseRules(t *testing.T) {
	tests := []struct {
		name    string
		in      string
		want    Result
		wantErr error
		errText string // a substring the error must contain
	}{
		{
			// Overlaps stay: Sanitize removes them once it has refused what it must.
			name: "masked, deduplicated, sorted v4 before v6",
			in:   "2001:db8::1\n198.51.100.7/24\n198.51.100.9\n192.0.2.1\n192.0.2.1/32\n",
			want: Result{Format: FormatPlain, Lines: 5, Entries: prefixes("192.0.2.1/32", "198.51.100.0/24", "198.51.100.9/32", "2001:db8::1/128")},
		},
		{
			name: "IPv4-mapped IPv6 becomes IPv4",
			in:   "::ffff:192.0.2.1\n::ffff:198.51.100.0/120\n",
			want: Result{Format: FormatPlain, Lines: 2, Entries: prefixes("192.0.2.1/32", "198.51.100.0/24")},
		},
		{
			name: "zones and two tokens are invalid",
			in:   "fe80::1%eth0\n0.0.0.0 example.com\n192.0.2.1\n198.51.100.1\n",
			want: Result{Format: FormatPlain, Lines: 4, Invalid: 2, FirstInvalid: `line 1: "fe80::1%eth0"`, Entries: prefixes("192.0.2.1/32", "198.51.100.1/32")},
		},
		{
			name: "leading zeros and out-of-range values are invalid",
			in:   "192.0.2.01\n192.0.2.1/33\n192.0.2.1/032\n192.0.2.256\n192.0.2.1\n192.0.2.2\n192.0.2.3\n192.0.2.4\n192.0.2.5\n",
			want: Result{Format: FormatPlain, Lines: 9, Invalid: 4, FirstInvalid: `line 1: "192.0.2.01"`, Entries: prefixes("192.0.2.1/32", "192.0.2.2/32", "192.0.2.3/32", "192.0.2.4/32", "192.0.2.5/32")},
		},
		{
			name: "byte order mark and CRLF",
			in:   "\xef\xbb\xbf192.0.2.1\r\n198.51.100.1\r\n",
			want: Result{Format: FormatPlain, Lines: 2, Entries: prefixes("192.0.2.1/32", "198.51.100.1/32")},
		},
		{
			name: "comments only is an empty list",
			in:   "# nothing today\n#\n",
			want: Result{Format: FormatFireHOL},
		},
		{
			name: "semicolon comments only is an empty Spamhaus list",
			in:   "; Spamhaus DROP List\n",
			want: Result{Format: FormatSpamhaus},
		},
		{
			name: "unquoted CSV header without #, address column found by name",
			in:   "dst_ip,dst_port\n192.0.2.1,443\n198.51.100.1,80\n",
			want: Result{Format: FormatFeodoCSV, Lines: 2, Entries: prefixes("192.0.2.1/32", "198.51.100.1/32")},
		},
		{
			name: "comma inside a trailing comment is not CSV",
			in:   "192.0.2.1 # C2, Dridex\n",
			want: Result{Format: FormatPlain, Lines: 1, Entries: prefixes("192.0.2.1/32")},
		},
		{
			name: "a long line is invalid and quoted shortened",
			in:   "192.0.2.1\n192.0.2.2\n" + strings.Repeat("x", 10000) + "\n",
			want: Result{Format: FormatPlain, Lines: 3, Invalid: 1, FirstInvalid: `line 3: "` + strings.Repeat("x", maxShownLen) + `"…`, Entries: prefixes("192.0.2.1/32", "192.0.2.2/32")},
		},
		{
			name:    "more than half invalid",
			in:      "192.0.2.1\nfoo\nbar\n",
			want:    Result{Lines: 3, Invalid: 2, FirstInvalid: `line 2: "foo"`},
			wantErr: ErrNotBlocklist,
			errText: `2 of 3 data lines are not IP addresses or CIDRs (first: line 2: "foo")`,
		},
		{
			name:    "HTML as the first line",
			in:      "\n<html>\n192.0.2.1\n",
			wantErr: ErrNotBlocklist,
			errText: `looks like an HTML page (line 2: "<html>")`,
		},
		{
			name:    "HTML after data",
			in:      "192.0.2.1\n<!DOCTYPE html>\n",
			want:    Result{Lines: 1, Entries: prefixes("192.0.2.1/32")},
			wantErr: ErrNotBlocklist,
			errText: "looks like an HTML page",
		},
		{
			name:    "NUL byte",
			in:      "192.0.2.1\n192.0.2.2\x00\n",
			want:    Result{Lines: 1, Entries: prefixes("192.0.2.1/32")},
			wantErr: ErrNotBlocklist,
			errText: "binary data (NUL byte on line 2)",
		},
		{
			name:    "NUL byte hidden past the start of a long line",
			in:      strings.Repeat("x", 5000) + "\x00\n",
			wantErr: ErrNotBlocklist,
			errText: "NUL byte on line 1",
		},
		{
			name:    "invalid UTF-8",
			in:      "# caf\xe9\n192.0.2.1\n",
			wantErr: ErrNotBlocklist,
			errText: "invalid UTF-8 on line 1",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := Parse(strings.NewReader(tt.in))
			if !errors.Is(err, tt.wantErr) {
				t.Fatalf("error = %v, want %v", err, tt.wantErr)
			}
			if err != nil {
				if !strings.Contains(err.Error(), tt.errText) {
					t.Errorf("error %q does not contain %q", err, tt.errText)
				}
				// Entries parsed before the rejection are never returned.
				tt.want.Entries = nil
			}
			if diff := cmp.Diff(tt.want, got, cmp.Comparer(func(a, b netip.Prefix) bool { return a == b })); diff != "" {
				t.Errorf("Result mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParseSizeCap(t *testing.T) {
	line := "192.0.2.1\n"
	exact := strings.Repeat(line, 10)
	if _, err := parse(strings.NewReader(exact), int64(len(exact)), DefaultMaxEntries); err != nil {
		t.Errorf("input of exactly the limit: %v", err)
	}
	_, err := parse(strings.NewReader(exact+line), int64(len(exact)), DefaultMaxEntries)
	if !errors.Is(err, ErrTooLarge) {
		t.Errorf("input over the limit: error = %v, want ErrTooLarge", err)
	}
}

func TestParseIPv4MatchesNetip(t *testing.T) {
	for _, s := range []string{
		"0.0.0.0", "255.255.255.255", "1.2.3.4/0", "1.2.3.4/32", "10.1.2.3/8",
		"1.2.3", "1.2.3.4.5", "01.2.3.4", "1.2.3.4/", "1.2.3.4/33", "1.2.3.4/08",
		"256.1.1.1", "1.2.3.4 ", "1..3.4", "", "1.2.3.4/1234", "1234.1.1.1",
	} {
		checkIPv4FastPath(t, s)
	}
}

// checkIPv4FastPath asserts that the fast path agrees with net/netip whenever
// it claims an answer.
func checkIPv4FastPath(t *testing.T, s string) {
	t.Helper()
	got, ok := parseIPv4Prefix([]byte(s))
	if !ok {
		return
	}
	want, err := netipPrefix(s)
	if err != nil {
		t.Fatalf("fast path accepted %q, net/netip rejects it: %v", s, err)
	}
	if want.Masked() != got {
		t.Fatalf("fast path parsed %q as %v, net/netip as %v", s, got, want.Masked())
	}
}

func TestParsePrefixMatchesNetip(t *testing.T) {
	for _, s := range []string{
		"2001:db8::1", "2001:db8::/32", "::ffff:192.0.2.1", "::ffff:192.0.2.0/120", "::", "::/0",
		"fe80::1%eth0", "fe80::/10%eth0", "2001:db8::g", "2001:db8:::1", "1:2:3:4:5:6:7:8:9",
		"deadbeef", "dead:beef", "example.com", "1.2.3.4/24", "1.2.3.4%eth0", "cafe::/129",
		"ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128", "0000:0000:0000:0000:0000:0000:0000:0000/128",
	} {
		checkParsePrefix(t, s)
	}
}

// checkParsePrefix asserts that parsePrefix, fast path and junk filter
// included, accepts exactly what net/netip accepts (zones aside, which pfw
// refuses) and returns its canonical form.
func checkParsePrefix(t *testing.T, s string) {
	t.Helper()
	want, err := netipPrefix(s)
	got, ok := parsePrefix([]byte(s))
	switch {
	case ok != (err == nil):
		t.Fatalf("parsePrefix(%q) ok = %v, net/netip error: %v", s, ok, err)
	case ok && got != canonical(want):
		t.Fatalf("parsePrefix(%q) = %v, want %v", s, got, canonical(want))
	}
}

// netipPrefix is what net/netip makes of an entry: a prefix, or an
// address as a full-length prefix. Zones, which pfw refuses, are errors.
func netipPrefix(s string) (netip.Prefix, error) {
	if strings.Contains(s, "/") {
		return netip.ParsePrefix(s)
	}
	a, err := netip.ParseAddr(s)
	if err == nil && a.Zone() != "" {
		err = errors.New("zone")
	}
	return netip.PrefixFrom(a, a.BitLen()), err
}

func TestParseAllocations(t *testing.T) {
	// Beyond the growth of Entries, an IPv4 line costs no allocation.
	data := []byte(strings.Repeat("192.0.2.1\n198.51.100.0/24\n", 500))
	allocs := testing.AllocsPerRun(20, func() {
		if _, err := Parse(bytes.NewReader(data)); err != nil {
			t.Fatal(err)
		}
	})
	if allocs > 30 {
		t.Errorf("Parse of 1000 IPv4 lines made %.0f allocations, want at most 30", allocs)
	}
}

func BenchmarkParse(b *testing.B) {
	for _, tt := range []struct {
		n      int
		sorted bool
	}{{1000, false}, {100_000, false}, {100_000, true}} {
		data := benchList(tt.n, tt.sorted)
		b.Run(fmt.Sprintf("lines=%d/sorted=%v", tt.n, tt.sorted), func(b *testing.B) {
			b.ReportAllocs()
			b.SetBytes(int64(len(data)))
			for b.Loop() {
				res, err := Parse(bytes.NewReader(data))
				if err != nil || len(res.Entries) == 0 {
					b.Fatal(res.Format, len(res.Entries), err)
				}
			}
		})
	}
}

// benchList builds a FireHOL-style list of n lines: mostly IPv4 addresses,
// every 10th a CIDR, every 50th an IPv6 address, shuffled over the address
// space; or, sorted, only IPv4 addresses in ascending order like most
// published lists.
func benchList(n int, sorted bool) []byte {
	var b bytes.Buffer
	b.WriteString("# benchmark list\n#\n")
	for i := range n {
		x := uint32(i) * 2654435761
		if sorted {
			x = 1<<24 + uint32(i)*4099
			fmt.Fprintf(&b, "%d.%d.%d.%d\n", x>>24, x>>16&0xff, x>>8&0xff, x&0xff)
			continue
		}
		switch {
		case i%50 == 0:
			fmt.Fprintf(&b, "2001:db8:%x::%x\n", x>>16, x&0xffff)
		case i%10 == 0:
			fmt.Fprintf(&b, "%d.%d.%d.0/24\n", 1+x>>24%223, x>>16&0xff, x>>8&0xff)
		default:
			fmt.Fprintf(&b, "%d.%d.%d.%d\n", 1+x>>24%223, x>>16&0xff, x>>8&0xff, x&0xff)
		}
	}
	return b.Bytes()
}

// TestParseFeodoFooter pins the end-of-list check: a Feodo Tracker list that
// lost its "# END N entries" footer, or whose footer counts other than its
// data lines, is rejected with ErrTruncated; lists of formats without a
// footer are never judged by one.
func TestParseFeodoFooter(t *testing.T) {
	const banner = "################################################################\n" +
		"# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (IPs only)     #\n" +
		"# Last updated: 2026-10-08 09:15:03 UTC                        #\n" +
		"#                                                              #\n" +
		"# Terms Of Use: https://feodotracker.abuse.ch/blocklist/       #\n" +
		"# For questions please contact feodotracker [at] abuse.ch      #\n" +
		"################################################################\n" +
		"#\n" +
		"# DstIP\n"
	const ips = "192.0.2.44\n198.51.100.23\n203.0.113.150\n"
	full := banner + ips + "# END 3 entries\n"
	csv := "# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (CSV)\n" +
		"# first_seen_utc,dst_ip,dst_port,c2_status,last_online,malware\n" +
		"\"2026-09-30 11:02:41\",\"192.0.2.44\",\"443\",\"online\",\"2026-10-08\",\"QakBot\"\r\n" +
		"\"2026-10-01 07:44:46\",\"198.51.100.23\",\"8080\",\"offline\",\"2026-10-05\",\"Emotet\"\r\n"
	tests := []struct {
		name    string
		in      string
		format  string // on success
		entries int
		errText string // "" for success; else the error wraps ErrTruncated and holds this
	}{
		{name: "complete", in: full, format: FormatFeodo, entries: 3},
		{name: "complete with CRLF and blanks", in: strings.ReplaceAll(full, "\n", "\r\n") + "\r\n", format: FormatFeodo, entries: 3},
		{name: "empty recommended list", in: banner + "# END 0 entries\n", format: FormatFeodo},
		{name: "one entry", in: banner + "192.0.2.44\n# END 1 entry\n", format: FormatFeodo, entries: 1},
		{name: "no final newline", in: strings.TrimSuffix(full, "\n"), format: FormatFeodo, entries: 3},
		{name: "two lists joined", in: full + banner + "203.0.113.7\n# END 1 entries\n", format: FormatFeodo, entries: 4},
		{name: "duplicates and an invalid line count as lines", in: banner + "192.0.2.44\n192.0.2.44\nnot-an-ip\n198.51.100.1\n# END 4 entries\n", format: FormatFeodo, entries: 2},
		{
			name:    "cut before the footer",
			in:      banner + ips,
			errText: `a Feodo Tracker list ends with "# END N entries" and this one, 3 data lines long, has none: cut short?`,
		},
		{name: "cut inside the last address", in: banner + "192.0.2.44\n198.51.100.23\n203.0.11", errText: "3 data lines long, has none"},
		{name: "cut inside the footer", in: banner + ips + "# END 3 ent", errText: "has none"},
		{name: "cut inside the banner", in: banner[:200], errText: "0 data lines long, has none"},
		{name: "cut after the header", in: banner, errText: "has none"},
		{name: "a footer without a count is none", in: banner + ips + "# END\n", errText: "has none"},
		{
			name:    "footer counts more",
			in:      banner + ips + "# END 5 entries\n",
			errText: `the footer (line 13: "# END 5 entries") does not match the 3 data lines before it: cut short or altered`,
		},
		{name: "footer counts fewer", in: banner + ips + "# END 2 entries\n", errText: "does not match the 3 data lines"},
		{name: "a count no list can have", in: banner + ips + "# END 99999999999 entries\n", errText: `"# END 99999999999 entries") does not match`},
		{name: "second of two joined lists cut", in: full + banner + "203.0.113.7\n# END 2 entries\n", errText: "does not match the 1 data lines"},
		{name: "second of two joined lists cut before its footer", in: full + banner + "203.0.113.7\n", errText: "1 data lines follow the last \"# END N entries\""},
		{name: "stray lines after the footer", in: full + "203.0.113.7\n198.51.100.9\n", errText: "2 data lines follow the last"},
		{name: "comments after the footer are fine", in: full + "# generated by abuse.ch\n\n", format: FormatFeodo, entries: 3},
		{name: "stale lines after a shorter rewrite", in: full + "203.0.113.7\n# END 4 entries\n", errText: "does not match the 1 data lines"},

		// The CSV variant: its footer is checked when present, not required.
		{name: "CSV without a footer", in: csv, format: FormatFeodoCSV, entries: 2},
		{name: "CSV with its footer", in: csv + "# END 2 entries\r\n", format: FormatFeodoCSV, entries: 2},
		{name: "CSV whose footer counts more", in: csv + "# END 3 entries\r\n", errText: "does not match the 2 data lines"},

		// Formats without a footer: a "# END" comment in them is a comment.
		{name: "FireHOL list", in: "#\n# feodo\n# Entries : 235 unique IPs\n#\n" + ips, format: FormatFireHOL, entries: 3},
		{name: "FireHOL list with a stray footer", in: "# my list\n" + ips + "# END 7 entries\n", format: FormatFireHOL, entries: 3},
		{name: "plain list", in: ips, format: FormatPlain, entries: 3},
		{name: "Spamhaus list", in: "; Spamhaus DROP List\n192.0.2.0/24 ; SBL1\n# END 9 entries\n", format: FormatSpamhaus, entries: 1},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := Parse(strings.NewReader(tt.in))
			if tt.errText == "" {
				if err != nil {
					t.Fatalf("error = %v, want none", err)
				}
				if res.Format != tt.format || len(res.Entries) != tt.entries {
					t.Errorf("format %q with %d entries, want %q with %d", res.Format, len(res.Entries), tt.format, tt.entries)
				}
				return
			}
			if !errors.Is(err, ErrTruncated) || !strings.Contains(err.Error(), tt.errText) {
				t.Fatalf("error = %v, want ErrTruncated saying %q", err, tt.errText)
			}
			if res.Entries != nil || res.Format != "" {
				t.Errorf("a rejected list returned format %q and %d entries", res.Format, len(res.Entries))
			}
		})
	}
}

// TestParseFeodoCutAnywhere cuts the sample Feodo list at every byte: no cut
// yields entries. Once the banner names the list, every cut short of the
// footer is ErrTruncated; before that, the prefix is only comments, an empty
// list of another format, which the Manager does not let replace a Feodo
// list at once (see TestManagerDistrustsEmptyListOfAnotherFormat).
func TestParseFeodoCutAnywhere(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "feodo_ipblocklist.txt"))
	if err != nil {
		t.Fatal(err)
	}
	named := bytes.Index(data, []byte("Feodo Tracker Botnet C2 IP Blocklist")) + len("Feodo Tracker Botnet C2 IP Blocklist")
	whole := len(bytes.TrimRight(data, "\r\n"))
	for n := range len(data) {
		res, err := Parse(bytes.NewReader(data[:n]))
		switch {
		case n >= whole:
			if err != nil {
				t.Errorf("cut at byte %d of %d, after the footer: %v", n, len(data), err)
			}
		case n >= named:
			if !errors.Is(err, ErrTruncated) {
				t.Errorf("cut at byte %d of %d: error = %v, want ErrTruncated", n, len(data), err)
			}
		case err != nil || len(res.Entries) != 0 || res.Format == FormatFeodo:
			t.Errorf("cut at byte %d of %d, inside the banner: %s list of %d entries, error %v; want an empty list of another format",
				n, len(data), res.Format, len(res.Entries), err)
		}
	}
}

func TestEndFooter(t *testing.T) {
	tests := []struct {
		text  string
		count int
		ok    bool
	}{
		{"END 5 entries", 5, true},
		{"END 0 entries", 0, true},
		{"END 1 entry", 1, true},
		{"END\t12\tentries ", 12, true},
		{"END 1234567890 entries", -1, true},
		{"END", 0, false},
		{"END entries", 0, false},
		{"END 5", 0, false},
		{"END 5entries", 0, false},
		{"END5 entries", 0, false},
		{"END 5 lines", 0, false},
		{"end 5 entries", 0, false},
		{"END OF LIST", 0, false},
		{"Entries : 235 unique IPs", 0, false},
	}
	for _, tt := range tests {
		count, ok := endFooter([]byte(tt.text))
		if count != tt.count || ok != tt.ok {
			t.Errorf("endFooter(%q) = %d, %v; want %d, %v", tt.text, count, ok, tt.count, tt.ok)
		}
	}
	// Every "#" line of a body passes through endFooter.
	text := []byte("END 42 entries")
	if n := testing.AllocsPerRun(100, func() { endFooter(text) }); n != 0 {
		t.Errorf("endFooter allocates %v times, want 0", n)
	}
}
