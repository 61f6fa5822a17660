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
