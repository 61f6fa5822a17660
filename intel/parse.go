package intel

import (
	"bufio"
	"bytes"
	"cmp"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"slices"
	"strings"
	"unicode/utf8"
)

// Format names reported in Result.Format.
const (
	FormatFeodo    = "feodo"         // abuse.ch ipblocklist.txt: banner, "# DstIP", IPs, "# END N entries"
	FormatFeodoCSV = "feodo-csv"     // abuse.ch ipblocklist.csv: first_seen_utc,dst_ip,dst_port,...
	FormatSpamhaus = "spamhaus-drop" // Spamhaus DROP/EDROP: "CIDR ; SBLnnn", ";" comments
	FormatFireHOL  = "firehol"       // FireHOL .ipset/.netset: "#" header, one IP or CIDR a line
	FormatPlain    = "plain"         // one IP or CIDR a line, no header
)

// DefaultMaxSize is the most bytes Parse reads and, unless Fetcher.MaxSize says
// otherwise, the largest feed body a Fetcher accepts: 32 MiB, about two million
// IPv4 CIDR lines, far above any public blocklist (FireHOL's largest sets are a
// few MiB) yet small enough that a runaway or hostile server cannot exhaust memory.
const DefaultMaxSize = 32 << 20

// DefaultMaxEntries is the most addresses Parse accepts and, unless
// Fetcher.MaxEntries says otherwise, a Fetcher accepts from one body: 250,000,
// counted before duplicates are removed. The byte cap alone does not bound
// memory: 32 MiB of "1.2.3.4" lines are four million entries, 128 MiB as
// []netip.Prefix, of which Sanitize, the Manager and the daemon each make a
// copy.
// Real feeds are far smaller (Feodo lists a few hundred addresses, Spamhaus
// DROP about 1,500, FireHOL level1 about 4,500, the largest FireHOL aggregates
// some tens of thousands) while pfw's memory goal (64 MiB peak with 100,000
// threat entries) and its kernel sets are sized for feeds of that order: the
// cap leaves room for 2.5 times that in one feed and keeps a broken or hostile
// one from costing more than about 8 MiB per copy of its list.
const DefaultMaxEntries = 250_000

// maxLineLen bounds one line. Longer lines are counted invalid and skipped
// without being held in memory.
const maxLineLen = 4096

// maxShownLen bounds the text of a line quoted in FirstInvalid and errors.
const maxShownLen = 80

var (
	// ErrNotBlocklist is wrapped by every error that rejects content as not
	// being a blocklist at all (an HTML error page, binary data, mostly
	// garbage). The previous entries of a feed must be kept.
	ErrNotBlocklist = errors.New("not a blocklist")

	// ErrTooLarge is wrapped when the data exceeds the size cap.
	ErrTooLarge = errors.New("too large")

	// ErrTruncated is wrapped when a list that announces its own end does
	// not match it: a Feodo Tracker ipblocklist.txt without its closing
	// "# END N entries", or a Feodo list (text or CSV) whose footer counts
	// other than the data lines before it. The body was cut short (a file
	// read while another tool writes it, an HTTP/1.0 body cut by a dropped
	// connection) or altered; the previous entries of a feed must be kept.
	ErrTruncated = errors.New("truncated list")
)

// Result is a parsed blocklist.
type Result struct {
	// Format is one of the Format constants, detected from the content.
	Format string
	// Entries is sorted (IPv4 before IPv6, by address, then by prefix
	// length), masked and free of duplicates. Single addresses are /32 or
	// /128; IPv4-mapped IPv6 addresses are stored as IPv4. Entries may
	// overlap (a /24 and an address in it): Sanitize, which may refuse the
	// wider one, removes the overlap afterwards.
	Entries []netip.Prefix
	// Invalid counts data lines that hold no IP address or CIDR.
	Invalid int
	// Lines counts data lines: lines that are neither blank nor comments
	// (nor the CSV header). Invalid <= Lines always holds.
	Lines int
	// FirstInvalid is the first invalid data line as `line N: "text"`, for
	// the log (only `line N` for a local file); empty when Invalid is 0.
	FirstInvalid string
}

// Parse reads a blocklist in any of the supported formats (see the Format
// constants), IPv4 and IPv6, and returns its entries.
//
// Invalid data lines are counted and skipped. Content that is not a blocklist
// is rejected with an error wrapping ErrNotBlocklist: it looks like HTML,
// contains NUL bytes or invalid UTF-8, or more than half of its data lines are
// invalid. A Feodo Tracker list is rejected with an error wrapping
// ErrTruncated when its "# END N entries" footer is missing or counts other
// than its data lines (see the package documentation). A list with no data
// lines (only comments, or nothing) is valid and yields zero entries: Feodo's
// recommended list is often empty. Parse reads at most DefaultMaxSize bytes
// and DefaultMaxEntries addresses and fails with ErrTooLarge, at once, beyond
// either: an endless body is read no further.
//
// On error the returned Result still holds the counts gathered so far (for the
// log) but no entries.
func Parse(r io.Reader) (Result, error) {
	return parse(r, DefaultMaxSize, DefaultMaxEntries)
}

// parser holds the state of one Parse call.
type parser struct {
	res       Result
	entries   entryKeys // at most entries.max
	lineNo    int
	dstCol    int    // CSV column holding the address; 1 in Feodo's layout
	longStart []byte // the start of the last over-long line, reused
	sawData   bool
	quoteText bool // quote shows the line's text, not just its number

	// Markers seen so far; the format is decided from them at the end so that
	// a footer or a late header does not depend on line order.
	feodoBanner bool // "# DstIP" or the abuse.ch banner
	csvHeader   bool
	csvData     bool
	semicolon   bool // ";" comment lines or "; SBLnnn" annotations
	hashComment bool

	// Feodo's "# END N entries" footers, checked once the format is known:
	// whether one was seen, the data lines before the last one, and the
	// first whose count disagrees with the data lines since the one before.
	footerSeen     bool
	linesAtFooter  int
	footerMismatch string
}

// parse reads at most maxBytes bytes and maxEntries addresses from r. Memory
// stays bounded whatever r yields: lines are read in place from a 4 KiB
// buffer, entries are kept as 8-byte keys (IPv4) until the end, and reading
// stops at whichever cap comes first.
func parse(r io.Reader, maxBytes int64, maxEntries int) (Result, error) {
	return parseQuoting(r, maxBytes, maxEntries, true)
}

// parseQuoting is parse, quoting the text of the lines its errors and
// FirstInvalid name only if quoteText: a local file may hold anything
// readable by root (a file:// URL pointing at /etc/shadow by mistake), and
// the log and fwctl status reach more people than the file does.
func parseQuoting(r io.Reader, maxBytes int64, maxEntries int, quoteText bool) (Result, error) {
	br := bufio.NewReaderSize(newCapReader(r, maxBytes), maxLineLen)
	p := parser{dstCol: 1, entries: entryKeys{max: maxEntries}, quoteText: quoteText}
	for {
		line, long, err := p.readLine(br)
		if errors.Is(err, ErrTooLarge) {
			// The line is cut at the cap: judging it could only give a
			// misleading error (a rune split in two is "invalid UTF-8").
			return p.res, fmt.Errorf("parse feed: %w", err)
		}
		if len(line) > 0 || err == nil {
			p.lineNo++
			if perr := p.line(line, long); perr != nil {
				return p.res, fmt.Errorf("parse feed: %w", perr)
			}
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			return p.res, fmt.Errorf("parse feed: read after line %d: %w", p.lineNo, err)
		}
	}
	// The footer first: a list cut inside its first address is one line,
	// all invalid, but truncated is what it is.
	format := p.format()
	if err := p.checkFooter(format); err != nil {
		return p.res, fmt.Errorf("parse feed: %w", err)
	}
	if p.res.Lines > 0 && p.res.Invalid*2 > p.res.Lines {
		return p.res, fmt.Errorf("parse feed: %w: %d of %d data lines are not IP addresses or CIDRs (first: %s)",
			ErrNotBlocklist, p.res.Invalid, p.res.Lines, p.res.FirstInvalid)
	}
	p.res.Format = format
	p.res.Entries = p.entries.prefixes()
	return p.res, nil
}

// checkFooter rejects a Feodo list cut short: abuse.ch closes every
// ipblocklist.txt, the empty recommended list included, with "# END N
// entries", N its data lines. A body without it lost its end; one whose N
// differs lost lines or gained some. The CSV variant's footer is checked when
// present but not required. Other formats have no footer: FireHOL, Spamhaus
// and plain lists (FireHOL's republished feodo.ipset too) pass unchecked.
func (p *parser) checkFooter(format string) error {
	switch {
	case format != FormatFeodo && format != FormatFeodoCSV:
		return nil
	case p.footerMismatch != "":
		return fmt.Errorf("%w: %s", ErrTruncated, p.footerMismatch)
	case format == FormatFeodo && !p.footerSeen:
		return fmt.Errorf("%w: a Feodo Tracker list ends with \"# END N entries\" and this one, %d data lines long, has none: cut short?",
			ErrTruncated, p.res.Lines)
	case format == FormatFeodo && p.linesAtFooter != p.res.Lines:
		// Lines after the last footer: a second list joined on and cut
		// before its own footer, or lines that do not belong.
		return fmt.Errorf("%w: %d data lines follow the last \"# END N entries\": a list cut short?",
			ErrTruncated, p.res.Lines-p.linesAtFooter)
	}
	return nil
}

// readLine returns the next line without its line end ("\n" or "\r\n"). A
// line longer than the reader's buffer is consumed entirely but only its
// first bufferful is returned, with long set; the rest is still checked for
// NUL bytes so binary data cannot hide behind a long line.
func (p *parser) readLine(br *bufio.Reader) (line []byte, long bool, err error) {
	line, err = br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		long = true
		// The returned slice is only valid until the next read: keep a copy
		// of the start for the error message and the checks, in a buffer
		// reused so that a stream of long lines allocates nothing.
		first := append(p.longStart[:0], line...)
		for errors.Is(err, bufio.ErrBufferFull) {
			var more []byte
			more, err = br.ReadSlice('\n')
			if bytes.IndexByte(more, 0) >= 0 {
				first = append(first[:0], 0) // reported as binary by the caller
			}
		}
		p.longStart = first
		line = first
	}
	line = bytes.TrimSuffix(line, []byte("\n"))
	line = bytes.TrimSuffix(line, []byte("\r"))
	return line, long, err
}

// line handles one line; a non-nil error rejects the whole input.
func (p *parser) line(raw []byte, long bool) error {
	if p.lineNo == 1 {
		raw = bytes.TrimPrefix(raw, []byte("\xef\xbb\xbf")) // UTF-8 byte order mark
	}
	if bytes.IndexByte(raw, 0) >= 0 {
		return fmt.Errorf("%w: binary data (NUL byte on line %d)", ErrNotBlocklist, p.lineNo)
	}
	if !long && !utf8.Valid(raw) {
		return fmt.Errorf("%w: binary data (invalid UTF-8 on line %d)", ErrNotBlocklist, p.lineNo)
	}
	line := bytes.TrimSpace(raw)
	if len(line) == 0 {
		return nil
	}
	if looksLikeHTML(line, !p.sawData && !p.hashComment && !p.semicolon) {
		return fmt.Errorf("%w: looks like an HTML page (%s)", ErrNotBlocklist, p.quote(line))
	}
	switch line[0] {
	case '#':
		p.hashComment = true
		if count, ok := endFooter(bytes.TrimSpace(line[1:])); ok {
			p.footer(line, count)
			return nil
		}
		p.comment(line[1:])
		return nil
	case ';':
		p.semicolon = true
		return nil
	}
	p.sawData = true
	if !long && p.csvHeaderLine(line) {
		return nil
	}
	p.res.Lines++
	if long {
		p.invalid(line)
		return nil
	}
	prefix, ok := p.entry(line)
	if !ok {
		p.invalid(line)
		return nil
	}
	if p.entries.len() >= p.entries.max {
		return fmt.Errorf("%w: over the limit of %d entries (line %d)", ErrTooLarge, p.entries.max, p.lineNo)
	}
	p.entries.add(prefix)
	return nil
}

// comment records the format markers a "#" comment line may carry.
func (p *parser) comment(text []byte) {
	text = bytes.TrimSpace(text)
	switch {
	case bytes.HasPrefix(text, []byte("DstIP")),
		bytes.Contains(text, []byte("Feodo Tracker Botnet C2 IP Blocklist")):
		p.feodoBanner = true
		if bytes.Contains(text, []byte("(CSV)")) {
			p.csvHeader = true
		}
	default:
		p.csvHeaderLine(text)
	}
}

// endFooter reads Feodo Tracker's footer "END 42 entries" (a comment's text)
// and returns its count, -1 for one of more than nine digits, which no list
// can match.
func endFooter(text []byte) (count int, ok bool) {
	rest, ok := bytes.CutPrefix(text, []byte("END"))
	if !ok || len(rest) == 0 || (rest[0] != ' ' && rest[0] != '\t') {
		return 0, false
	}
	rest = bytes.TrimLeft(rest, " \t")
	digits := 0
	for digits < len(rest) && rest[digits] >= '0' && rest[digits] <= '9' {
		digits++
	}
	if digits == 0 || digits == len(rest) || (rest[digits] != ' ' && rest[digits] != '\t') {
		return 0, false
	}
	if word := bytes.TrimSpace(rest[digits:]); !bytes.Equal(word, []byte("entries")) && !bytes.Equal(word, []byte("entry")) {
		return 0, false
	}
	if digits > 9 {
		return -1, true
	}
	for _, c := range rest[:digits] {
		count = count*10 + int(c-'0')
	}
	return count, true
}

// footer records an "# END N entries" line. Its count covers the data lines
// since the previous footer, so that two Feodo lists joined in one file still
// check out.
func (p *parser) footer(line []byte, count int) {
	lines := p.res.Lines - p.linesAtFooter
	if count != lines && p.footerMismatch == "" {
		p.footerMismatch = fmt.Sprintf("the footer (%s) does not match the %d data lines before it: cut short or altered", p.quote(line), lines)
	}
	p.footerSeen = true
	p.linesAtFooter = p.res.Lines
}

// csvHeaderLine reports whether line is a CSV header naming a dst_ip column,
// and if so remembers which column holds the address.
func (p *parser) csvHeaderLine(line []byte) bool {
	if bytes.IndexByte(line, ',') < 0 || !bytes.Contains(line, []byte("dst_ip")) {
		return false
	}
	field := line
	for i := 0; ; i++ {
		var f []byte
		f, field = nextField(field)
		if string(f) == "dst_ip" {
			p.dstCol = i
			p.csvHeader = true
			return true
		}
		if field == nil {
			return false
		}
	}
}

// entry parses the address of one data line.
func (p *parser) entry(line []byte) (netip.Prefix, bool) {
	// A comma before any annotation marks a CSV row; one after it belongs to
	// a comment ("192.0.2.1 # C2, Dridex").
	comma, note := -1, -1
	for i, c := range line {
		if c == ',' || c == ';' || c == '#' {
			if c == ',' {
				comma = i
			} else {
				note = i
			}
			break
		}
	}
	if comma >= 0 {
		p.csvData = true
		field := line
		var f []byte
		for range p.dstCol + 1 {
			if field == nil {
				return netip.Prefix{}, false
			}
			f, field = nextField(field)
		}
		return parsePrefix(f)
	}
	// Trailing annotations: "1.10.16.0/20 ; SBL256894", "192.0.2.1 # C2".
	if note >= 0 {
		if line[note] == ';' && bytes.HasPrefix(bytes.TrimSpace(line[note+1:]), []byte("SBL")) {
			p.semicolon = true
		}
		line = bytes.TrimSpace(line[:note])
	}
	// What remains must be exactly one address: "0.0.0.0 example.com" (a
	// hosts file) must not turn into a block of 0.0.0.0. parsePrefix rejects
	// any blank, so no separate check is needed.
	return parsePrefix(line)
}

// nextField splits off the first comma-separated field, trimmed of blanks and
// of the double quotes Feodo puts around every value. rest is nil after the
// last field.
func nextField(line []byte) (field, rest []byte) {
	if i := bytes.IndexByte(line, ','); i >= 0 {
		field, rest = line[:i], line[i+1:]
	} else {
		field = line
	}
	field = bytes.TrimSpace(field)
	if len(field) >= 2 && field[0] == '"' && field[len(field)-1] == '"' {
		field = field[1 : len(field)-1]
	}
	return field, rest
}

func (p *parser) invalid(line []byte) {
	p.res.Invalid++
	if p.res.FirstInvalid == "" {
		p.res.FirstInvalid = p.quote(line)
	}
}

// quote renders a line for the log: numbered, shortened, escaped; only
// numbered unless quoteText.
func (p *parser) quote(line []byte) string {
	if !p.quoteText {
		return fmt.Sprintf("line %d", p.lineNo)
	}
	if len(line) > maxShownLen {
		cut := maxShownLen
		for cut > 0 && !utf8.RuneStart(line[cut]) {
			cut--
		}
		return fmt.Sprintf("line %d: %q…", p.lineNo, line[:cut])
	}
	return fmt.Sprintf("line %d: %q", p.lineNo, line)
}

// format decides the format from the markers seen.
func (p *parser) format() string {
	switch {
	case p.csvHeader || p.csvData:
		return FormatFeodoCSV
	case p.feodoBanner:
		return FormatFeodo
	case p.semicolon:
		return FormatSpamhaus
	case p.hashComment:
		return FormatFireHOL
	default:
		return FormatPlain
	}
}

// looksLikeHTML reports whether a trimmed line gives the content away as an
// HTML (or XML) document: error pages from captive portals, CDNs and proxies
// are the usual non-blocklist answers with status 200. Any markup on the first
// non-blank line counts; later, only a document or head/body tag does.
func looksLikeHTML(line []byte, first bool) bool {
	if line[0] != '<' {
		return false
	}
	if first {
		return true
	}
	head := line[:min(len(line), 9)]
	for _, tag := range []string{"<!doctype", "<html", "<head", "<body", "<?xml"} {
		if len(head) >= len(tag) && strings.EqualFold(string(head[:len(tag)]), tag) {
			return true
		}
	}
	return false
}

// parsePrefix parses an address or a CIDR. IPv4 takes an allocation-free path
// that decides alone; what may be IPv6 goes through net/netip, which is the
// reference for what is valid.
func parsePrefix(b []byte) (netip.Prefix, bool) {
	if p, ok := parseIPv4Prefix(b); ok {
		return p, true
	}
	if len(b) == 0 || len(b) > len("ffff:ffff:ffff:ffff:ffff:ffff:255.255.255.255/128") || !mayBeIPv6(b) {
		return netip.Prefix{}, false
	}
	s := string(b)
	var p netip.Prefix
	if strings.IndexByte(s, '/') >= 0 {
		var err error
		if p, err = netip.ParsePrefix(s); err != nil {
			return netip.Prefix{}, false
		}
	} else {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return netip.Prefix{}, false
		}
		p = netip.PrefixFrom(a, a.BitLen())
	}
	return canonical(p), true
}

// mayBeIPv6 reports whether b could be an IPv6 address or CIDR: it holds a
// colon, and only bytes net/netip accepts in one (zones, which pfw refuses,
// aside). Anything else that is valid is IPv4, which parseIPv4Prefix decides
// alone. net/netip costs an allocation for the string and another for each
// error: junk lines (host names, words, HTML, hex) must not pay that, or an
// endless junk body would churn several times its size through the heap.
func mayBeIPv6(b []byte) bool {
	colon := false
	for _, c := range b {
		switch {
		case c == ':':
			colon = true
		case c >= '0' && c <= '9', c >= 'a' && c <= 'f', c >= 'A' && c <= 'F', c == '.', c == '/':
		default:
			return false
		}
	}
	return colon
}

// canonical masks p and turns IPv4-mapped IPv6 (::ffff:a.b.c.d/n, n >= 96)
// into IPv4, so one address has one spelling in the kernel sets.
func canonical(p netip.Prefix) netip.Prefix {
	if a := p.Addr(); a.Is4In6() && p.Bits() >= 96 {
		p = netip.PrefixFrom(a.Unmap(), p.Bits()-96)
	}
	return p.Masked()
}

// parseIPv4Prefix parses "a.b.c.d" or "a.b.c.d/n" exactly as
// netip.ParseAddr/ParsePrefix would (decimal, no leading zeros, octets <= 255,
// bits <= 32) and masks the result. It reports false for anything else. For
// input without a colon it agrees with netip both ways (FuzzParse checks it):
// netip parses such input as IPv4 or not at all. Input with a colon (IPv6,
// IPv4-mapped IPv6) is for netip.
func parseIPv4Prefix(b []byte) (netip.Prefix, bool) {
	var ip [4]byte
	i := 0
	for octet := range 4 {
		if octet > 0 {
			if i >= len(b) || b[i] != '.' {
				return netip.Prefix{}, false
			}
			i++
		}
		v, n, ok := parseDecimal(b[i:], 255)
		if !ok {
			return netip.Prefix{}, false
		}
		ip[octet] = byte(v)
		i += n
	}
	bits := 32
	if i < len(b) {
		if b[i] != '/' {
			return netip.Prefix{}, false
		}
		i++
		v, n, ok := parseDecimal(b[i:], 32)
		if !ok {
			return netip.Prefix{}, false
		}
		bits = v
		i += n
	}
	if i != len(b) {
		return netip.Prefix{}, false
	}
	return netip.PrefixFrom(netip.AddrFrom4(ip), bits).Masked(), true
}

// parseDecimal reads a decimal number of 1-3 digits without leading zeros, at
// most maxValue, from the start of b, returning the value and digits used.
func parseDecimal(b []byte, maxValue int) (value, n int, ok bool) {
	for n < len(b) && n < 3 && b[n] >= '0' && b[n] <= '9' {
		value = value*10 + int(b[n]-'0')
		n++
	}
	if n == 0 || (n > 1 && b[0] == '0') || value > maxValue {
		return 0, 0, false
	}
	if n < len(b) && b[n] >= '0' && b[n] <= '9' {
		return 0, 0, false // a fourth digit
	}
	return value, n, true
}

// entryKeys collects the entries of a feed while it is read. It holds them
// pointer-free, 8 bytes an IPv4 entry instead of the 32 of a netip.Prefix
// (whose zone pointer the GC must also scan), so an over-cap IPv4 feed costs
// a quarter of its entries' final size before it is refused; the
// []netip.Prefix is built once, at its exact size, after sorting and
// deduplication.
type entryKeys struct {
	v4  []uint64 // address<<8 | bits: ordered like comparePrefix
	v6  []prefixKey
	max int // capacity never grows beyond it
}

func (k *entryKeys) len() int { return len(k.v4) + len(k.v6) }

// add appends p; the caller keeps len() below max.
func (k *entryKeys) add(p netip.Prefix) {
	if a := p.Addr(); a.Is4() {
		b := a.As4()
		k.v4 = append(growOne(k.v4, k.max), uint64(binary.BigEndian.Uint32(b[:]))<<8|uint64(p.Bits()))
		return
	}
	k.v6 = append(growOne(k.v6, k.max), keyOf(p))
}

// growOne makes room for one more element: it doubles the capacity, up to
// limit. append's own growth, a quarter at a time for large slices, would
// allocate five times the final size in all.
func growOne[T any](s []T, limit int) []T {
	if len(s) < cap(s) {
		return s
	}
	grown := make([]T, len(s), min(max(2*cap(s), 64), max(limit, len(s)+1)))
	copy(grown, s)
	return grown
}

// prefixes returns the entries sorted by comparePrefix (IPv4 first) without
// exact duplicates, or nil when there are none.
func (k *entryKeys) prefixes() []netip.Prefix {
	slices.Sort(k.v4) // linear on the sorted lists most providers publish
	k.v4 = slices.Compact(k.v4)
	slices.SortFunc(k.v6, comparePrefixKey)
	k.v6 = slices.Compact(k.v6)
	if k.len() == 0 {
		return nil
	}
	out := make([]netip.Prefix, 0, k.len())
	for _, v := range k.v4 {
		out = append(out, prefixKey{lo: v >> 8, bits: uint8(v)}.prefix())
	}
	for _, v := range k.v6 {
		out = append(out, v.prefix())
	}
	return out
}

// sortPrefixes sorts entries by comparePrefix. It sorts plain integer keys
// rather than the prefixes themselves: a netip.Prefix holds a pointer (the
// zone), so moving it costs GC write barriers, and comparing it takes
// several branches; sorting keys is four times faster on 100,000 entries.
func sortPrefixes(entries []netip.Prefix) {
	if slices.IsSortedFunc(entries, comparePrefix) {
		return // the usual case: most providers publish sorted lists
	}
	keys := make([]prefixKey, len(entries))
	for i, p := range entries {
		keys[i] = keyOf(p)
	}
	slices.SortFunc(keys, comparePrefixKey)
	for i, k := range keys {
		entries[i] = k.prefix()
	}
}

// prefixKey is a pointer-free netip.Prefix (without zone, which entries never
// have) ordered like comparePrefix: family, address, length.
type prefixKey struct {
	hi, lo uint64
	is6    bool
	bits   uint8
}

func keyOf(p netip.Prefix) prefixKey {
	a := p.Addr()
	if a.Is4() {
		b := a.As4()
		return prefixKey{lo: uint64(binary.BigEndian.Uint32(b[:])), bits: uint8(p.Bits())}
	}
	b := a.As16()
	return prefixKey{hi: binary.BigEndian.Uint64(b[:8]), lo: binary.BigEndian.Uint64(b[8:]), is6: true, bits: uint8(p.Bits())}
}

func (k prefixKey) prefix() netip.Prefix {
	if !k.is6 {
		var b [4]byte
		binary.BigEndian.PutUint32(b[:], uint32(k.lo))
		return netip.PrefixFrom(netip.AddrFrom4(b), int(k.bits))
	}
	var b [16]byte
	binary.BigEndian.PutUint64(b[:8], k.hi)
	binary.BigEndian.PutUint64(b[8:], k.lo)
	return netip.PrefixFrom(netip.AddrFrom16(b), int(k.bits))
}

func comparePrefixKey(a, b prefixKey) int {
	switch {
	case a.is6 != b.is6:
		if a.is6 {
			return 1
		}
		return -1
	case a.hi != b.hi:
		return cmp.Compare(a.hi, b.hi)
	case a.lo != b.lo:
		return cmp.Compare(a.lo, b.lo)
	}
	return cmp.Compare(a.bits, b.bits)
}

// normalize sorts entries and drops duplicates and entries covered by a
// shorter prefix already in the list, in place. Prefixes are either nested or disjoint,
// so after sorting by start address (shorter first on a tie) an entry is
// covered exactly when the last kept entry contains its start address.
func normalize(entries []netip.Prefix) []netip.Prefix {
	if len(entries) == 0 {
		return entries
	}
	sortPrefixes(entries)
	kept := entries[:1]
	for _, p := range entries[1:] {
		last := kept[len(kept)-1]
		if last.Contains(p.Addr()) && last.Bits() <= p.Bits() {
			continue
		}
		kept = append(kept, p)
	}
	return slices.Clip(kept)
}

// comparePrefix orders IPv4 before IPv6, then by address, then shorter first.
func comparePrefix(a, b netip.Prefix) int {
	if c := a.Addr().Compare(b.Addr()); c != 0 {
		return c
	}
	return a.Bits() - b.Bits()
}

// capReader passes at most limit bytes of r through and fails with an error
// wrapping ErrTooLarge as soon as r holds more, without reading further: the
// byte after the limit is read (to tell a body of exactly limit bytes from a
// longer one) but never returned.
type capReader struct {
	r    io.Reader
	left int64 // bytes still allowed, plus the one that proves an excess
	err  error // returned once the excess byte arrived
}

func newCapReader(r io.Reader, limit int64) *capReader {
	limit = min(limit, math.MaxInt64-1) // left must not overflow
	return &capReader{r: r, left: limit + 1, err: fmt.Errorf("%w: body over the limit of %s", ErrTooLarge, byteSize(limit))}
}

func (c *capReader) Read(b []byte) (int, error) {
	if c.left <= 0 {
		return 0, c.err
	}
	if int64(len(b)) > c.left {
		b = b[:c.left]
	}
	n, err := c.r.Read(b)
	c.left -= int64(n)
	if c.left == 0 {
		return n - 1, c.err
	}
	return n, err
}

// byteSize renders a size for errors: "32 MiB", "64 KiB" or "999 bytes".
func byteSize(n int64) string {
	switch {
	case n >= 1<<20 && n%(1<<20) == 0:
		return fmt.Sprintf("%d MiB", n>>20)
	case n >= 1<<10 && n%(1<<10) == 0:
		return fmt.Sprintf("%d KiB", n>>10)
	case n == 1:
		return "1 byte"
	}
	return fmt.Sprintf("%d bytes", n)
}
