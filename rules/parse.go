package rules

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
	"unicode"
	"unicode/utf8"
)

// MinFeedInterval is the shortest refresh interval a feed may ask for.
const MinFeedInterval = time.Second

// MaxRuleName bounds rule names so tables and log rows stay readable.
const MaxRuleName = 128

// ThreatLevels are the accepted values of a feed's threat_level.
var ThreatLevels = []string{"low", "medium", "high", "critical"}

// Parse reads and validates a firewall_rules.json document. It returns a
// *SyntaxError for malformed JSON and a *ValidationError listing every
// problem otherwise; the Config is nil whenever the error is not.
func Parse(data []byte) (*Config, error) {
	// A byte order mark, which editors on Windows write, is read past, as
	// RFC 8259 lets a parser do: encoding/json would call it an invalid
	// character 'ï'.
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	var doc any
	if err := dec.Decode(&doc); err != nil {
		return nil, jsonError(data, dec, err)
	}
	if _, err := dec.Token(); err != io.EOF {
		return nil, newSyntaxError(data, dec.InputOffset(), "unexpected data after the top-level object")
	}
	p := &parser{problems: duplicateKeys(data)}
	cfg := p.config(doc)
	if len(p.problems) > 0 {
		return nil, &ValidationError{Problems: p.problems}
	}
	return cfg, nil
}

// duplicateKeys finds keys an object of the (well-formed) document data
// holds twice. encoding/json keeps the last silently, so a hand edit that
// pastes a second "rules" would drop the first without a word.
func duplicateKeys(data []byte) []FieldError {
	type frame struct {
		path   string
		seen   map[string]bool // nil for an array
		key    string          // the object's key whose value comes next
		index  int             // the array's next element
		hasKey bool
	}
	var (
		problems []FieldError
		stack    []frame
	)
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	// here is the path of the value the next token starts.
	here := func() string {
		if len(stack) == 0 {
			return ""
		}
		f := &stack[len(stack)-1]
		if f.seen == nil {
			f.index++
			return index(f.path, f.index-1)
		}
		f.hasKey = false
		return join(f.path, f.key)
	}
	for {
		tok, err := dec.Token()
		if err != nil {
			return problems // io.EOF; a syntax error is Parse's to report
		}
		if len(stack) > 0 {
			if f := &stack[len(stack)-1]; f.seen != nil && !f.hasKey {
				if key, ok := tok.(string); ok { // a key, not a value
					if f.seen[key] {
						problems = append(problems, FieldError{Path: join(f.path, key), Msg: "duplicate key (only one of them would count)"})
					}
					f.seen[key], f.key, f.hasKey = true, key, true
					continue
				}
			}
		}
		switch tok {
		case json.Delim('{'):
			stack = append(stack, frame{path: here(), seen: map[string]bool{}})
		case json.Delim('['):
			stack = append(stack, frame{path: here()})
		case json.Delim('}'), json.Delim(']'):
			stack = stack[:len(stack)-1]
		default:
			here()
		}
	}
}

func jsonError(data []byte, dec *json.Decoder, err error) error {
	var se *json.SyntaxError
	if errors.As(err, &se) {
		return newSyntaxError(data, se.Offset, se.Error())
	}
	if errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF) {
		if len(bytes.TrimSpace(data)) == 0 {
			return &SyntaxError{Line: 1, Column: 1, Msg: "empty file: want a JSON object"}
		}
		return newSyntaxError(data, int64(len(data))+1, "unexpected end of file")
	}
	return newSyntaxError(data, dec.InputOffset(), err.Error())
}

// parser walks the generic JSON tree, collecting problems with their path.
type parser struct {
	problems []FieldError
}

func (p *parser) fail(path, format string, args ...any) {
	p.problems = append(p.problems, FieldError{Path: path, Msg: fmt.Sprintf(format, args...)})
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "null"
	case bool:
		return "a boolean"
	case json.Number:
		return "a number"
	case string:
		return "a string"
	case []any:
		return "an array"
	case map[string]any:
		return "an object"
	}
	return fmt.Sprintf("%T", v)
}

// object checks v is an object with only known keys and returns it.
func (p *parser) object(path string, v any, known ...string) (map[string]any, bool) {
	m, ok := v.(map[string]any)
	if !ok {
		p.fail(path, "want an object, got %s", typeName(v))
		return nil, false
	}
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	slices.Sort(keys)
	for _, k := range keys {
		if !slices.Contains(known, k) {
			p.fail(join(path, k), "unknown key (known keys: %s)", strings.Join(known, ", "))
		}
	}
	return m, true
}

func (p *parser) array(path string, v any) []any {
	a, ok := v.([]any)
	if !ok {
		p.fail(path, "want an array, got %s", typeName(v))
	}
	return a
}

func (p *parser) str(path string, v any) (string, bool) {
	s, ok := v.(string)
	if !ok {
		p.fail(path, "want a string, got %s", typeName(v))
	}
	return s, ok
}

func join(path, key string) string {
	if path == "" {
		return key
	}
	return path + "." + key
}

func index(path string, i int) string { return fmt.Sprintf("%s[%d]", path, i) }

var configKeys = []string{"default_policy", "default_outbound_policy", "rules", "whitelist_ips",
	"blacklist_ips", "rate_limit", "allowed_sample_rate", "threat_feeds"}

func (p *parser) config(doc any) *Config {
	cfg := &Config{
		DefaultPolicy: ActionAllow,
		RateLimit:     RateLimit{MaxConnections: 100, WindowSeconds: 10},
	}
	m, ok := p.object("", doc, configKeys...)
	if !ok {
		return nil
	}
	if v, ok := m["default_policy"]; ok {
		cfg.DefaultPolicy = p.action("default_policy", v)
	}
	if v, ok := m["default_outbound_policy"]; ok {
		cfg.DefaultOutboundPolicy = p.action("default_outbound_policy", v)
	}
	if v, ok := m["rules"]; ok {
		for i, r := range p.array("rules", v) {
			cfg.Rules = append(cfg.Rules, p.rule(index("rules", i), r))
		}
		p.unique("rules", len(cfg.Rules), func(i int) string { return cfg.Rules[i].Name })
	}
	if v, ok := m["whitelist_ips"]; ok {
		cfg.WhitelistIPs = p.listPrefixes("whitelist_ips", v)
	}
	if v, ok := m["blacklist_ips"]; ok {
		cfg.BlacklistIPs = p.listPrefixes("blacklist_ips", v)
	}
	if v, ok := m["rate_limit"]; ok {
		cfg.RateLimit = p.rateLimit("rate_limit", v)
	}
	if v, ok := m["allowed_sample_rate"]; ok {
		cfg.AllowedSampleRate = p.sampleRate("allowed_sample_rate", v)
	}
	if v, ok := m["threat_feeds"]; ok {
		for i, f := range p.array("threat_feeds", v) {
			cfg.ThreatFeeds = append(cfg.ThreatFeeds, p.feed(index("threat_feeds", i), f))
		}
		p.unique("threat_feeds", len(cfg.ThreatFeeds), func(i int) string { return cfg.ThreatFeeds[i].Name })
	}
	return cfg
}

func (p *parser) action(path string, v any) Action {
	s, ok := p.str(path, v)
	if !ok {
		return ActionUnset
	}
	a, err := ParseAction(s)
	if err != nil {
		p.fail(path, "%v", err)
	}
	return a
}

var ruleKeys = []string{"name", "action", "protocol", "ports", "src_ips", "direction", "enabled"}

func (p *parser) rule(path string, v any) Rule {
	r := Rule{Enabled: true}
	m, ok := p.object(path, v, ruleKeys...)
	if !ok {
		return r
	}
	if v, ok := m["name"]; ok {
		if s, ok := p.str(join(path, "name"), v); ok {
			if err := CheckRuleName(s); err != nil {
				p.fail(join(path, "name"), "%v", err)
			}
			r.Name = s
		}
	} else {
		p.fail(join(path, "name"), "missing: every rule needs a name")
	}
	if v, ok := m["action"]; ok {
		r.Action = p.action(join(path, "action"), v)
	} else {
		p.fail(join(path, "action"), "missing: want allow or block")
	}
	if v, ok := m["protocol"]; ok {
		if s, ok := p.str(join(path, "protocol"), v); ok {
			proto, err := ParseProtocol(s)
			if err != nil {
				p.fail(join(path, "protocol"), "%v", err)
			}
			r.Protocol = proto
		}
	}
	if v, ok := m["ports"]; ok {
		for i, pv := range p.array(join(path, "ports"), v) {
			if pr, ok := p.port(index(join(path, "ports"), i), pv); ok {
				r.Ports = append(r.Ports, pr)
			}
		}
		if len(r.Ports) > 0 && !r.Protocol.HasPorts() {
			p.fail(join(path, "ports"), "%s has no ports: leave ports out or use tcp, udp or any", r.Protocol)
		}
	}
	if v, ok := m["src_ips"]; ok {
		r.SrcIPs = p.prefixes(join(path, "src_ips"), v)
	}
	if v, ok := m["direction"]; ok {
		if s, ok := p.str(join(path, "direction"), v); ok {
			d, err := ParseDirection(s)
			if err != nil {
				p.fail(join(path, "direction"), "%v", err)
			}
			r.Direction = d
		}
	}
	if v, ok := m["enabled"]; ok {
		b, ok := v.(bool)
		if !ok {
			p.fail(join(path, "enabled"), "want true or false, got %s", typeName(v))
		}
		r.Enabled = b
	}
	return r
}

// CheckRuleName says why name cannot name a rule, or nil.
func CheckRuleName(name string) error {
	switch {
	case strings.TrimSpace(name) == "":
		return errors.New("a rule name may not be empty")
	case len(name) > MaxRuleName:
		return fmt.Errorf("%q is longer than %d bytes", name[:32]+"…", MaxRuleName)
	case !utf8.ValidString(name):
		// JSON cannot carry it: the file would hold U+FFFD instead, a
		// name other than the one fwctl add was given.
		return fmt.Errorf("%q is not valid UTF-8", name)
	case strings.IndexFunc(name, unicode.IsControl) >= 0:
		return fmt.Errorf("%q contains a control character", name)
	case strings.IndexFunc(name, misleadingInText) >= 0:
		return fmt.Errorf("%q contains a line separator or a text-direction control", name)
	}
	return nil
}

// misleadingInText reports the characters that are not control
// characters yet change how the text around them reads where names are
// shown (fwctl's tables, terminals): line and paragraph separators start a
// new line, and the bidirectional embeddings, overrides and isolates
// reorder everything that follows them, so a name could pass for another
// or for a log line of its own. The plain direction marks (U+200E, U+200F,
// U+061C) stay allowed: Hebrew and Arabic text carries them, and they move
// no more than the neutral characters beside them.
func misleadingInText(r rune) bool {
	switch {
	case r == '\u2028' || r == '\u2029': // line, paragraph separator
		return true
	case r >= '\u202a' && r <= '\u202e', r >= '\u2066' && r <= '\u2069': // embeddings, overrides, isolates
		return true
	}
	return false
}

// unique reports names used twice in a list (the empty name is reported
// elsewhere), naming the later place and the earlier one.
func (p *parser) unique(list string, n int, nameOf func(int) string) {
	seen := make(map[string]int, n)
	for i := range n {
		name := nameOf(i)
		if name == "" {
			continue
		}
		if j, dup := seen[name]; dup {
			p.fail(index(list, i)+".name", "%q is already the name of %s", name, index(list, j))
			continue
		}
		seen[name] = i
	}
}

// port reads a port number or a "lo-hi" range (a "23" string is accepted too).
func (p *parser) port(path string, v any) (PortRange, bool) {
	switch v := v.(type) {
	case json.Number:
		n, err := strconv.ParseInt(v.String(), 10, 64)
		if err != nil {
			p.fail(path, "%s is not a port (1-65535)", v)
			return PortRange{}, false
		}
		if n < 1 || n > 65535 {
			p.fail(path, "%d is not a port (1-65535)", n)
			return PortRange{}, false
		}
		return PortRange{uint16(n), uint16(n)}, true
	case string:
		r, err := ParsePortRange(v)
		if err != nil {
			p.fail(path, "%v", err)
			return PortRange{}, false
		}
		return r, true
	}
	p.fail(path, "want a port number or a \"lo-hi\" range, got %s", typeName(v))
	return PortRange{}, false
}

// ParsePortRange reads "443" or "8000-8100".
func ParsePortRange(s string) (PortRange, error) {
	lo, hi, isRange := strings.Cut(strings.TrimSpace(s), "-")
	if isRange && (strings.TrimSpace(lo) == "" || strings.TrimSpace(hi) == "") {
		// parsePort would quote the empty side alone: `"" is not a port`
		// would not show what was typed ("-1", "8000-").
		return PortRange{}, fmt.Errorf("%q is not a port (1-65535) or range (lo-hi)", s)
	}
	first, err := parsePort(lo)
	if err != nil {
		return PortRange{}, err
	}
	if !isRange {
		return PortRange{first, first}, nil
	}
	last, err := parsePort(hi)
	if err != nil {
		return PortRange{}, err
	}
	if first > last {
		return PortRange{}, fmt.Errorf("%q is not a port range: %d is above %d", s, first, last)
	}
	return PortRange{first, last}, nil
}

func parsePort(s string) (uint16, error) {
	s = strings.TrimSpace(s)
	n, err := strconv.Atoi(s)
	if err != nil {
		return 0, fmt.Errorf("%q is not a port (1-65535)", s)
	}
	if n < 1 || n > 65535 {
		return 0, fmt.Errorf("%d is not a port (1-65535)", n)
	}
	return uint16(n), nil
}

func (p *parser) prefixes(path string, v any) []netip.Prefix { return p.prefixList(path, v, true) }

// prefixList reads an array of addresses and CIDRs; everything, when
// false, refuses 0.0.0.0/0 and ::/0 (see listPrefixes).
func (p *parser) prefixList(path string, v any, everything bool) []netip.Prefix {
	var out []netip.Prefix
	for i, e := range p.array(path, v) {
		s, ok := p.str(index(path, i), e)
		if !ok {
			continue
		}
		pfx, err := ParsePrefix(s)
		if err != nil {
			p.fail(index(path, i), "%v", err)
			continue
		}
		if !everything && pfx.Bits() == 0 {
			family := 6
			if pfx.Addr().Is4() {
				family = 4
			}
			p.fail(index(path, i), "%s covers every IPv%d address: set default_policy and default_outbound_policy instead", pfx, family)
			continue
		}
		out = append(out, pfx)
	}
	return out
}

// listPrefixes reads a whitelist or blacklist. An entry covering a whole
// address family (0.0.0.0/0, ::/0) is refused: in the blacklist it cuts
// the host off in both directions, whitelisted it turns the firewall off,
// blacklist and feeds included. That is what the default policies are for.
func (p *parser) listPrefixes(path string, v any) []netip.Prefix {
	return p.prefixList(path, v, false)
}

// ParsePrefix reads an IP address (as a single-address prefix) or a CIDR,
// IPv4 or IPv6. Host bits of a CIDR are cleared: "192.0.2.9/24" is
// 192.0.2.0/24. Zoned addresses are refused: a zone names no remote host.
func ParsePrefix(s string) (netip.Prefix, error) {
	t := strings.TrimSpace(s)
	if strings.Contains(t, "/") {
		pfx, err := netip.ParsePrefix(t)
		if err != nil {
			return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
		}
		return unmapPrefix(pfx).Masked(), nil
	}
	addr, err := netip.ParseAddr(t)
	if err != nil || addr.Zone() != "" {
		return netip.Prefix{}, fmt.Errorf("%q is not an IP address or CIDR", s)
	}
	addr = addr.Unmap()
	return netip.PrefixFrom(addr, addr.BitLen()), nil
}

// unmapPrefix turns ::ffff:a.b.c.d/n (n >= 96) into a.b.c.d/(n-96), so a
// v4 entry written the v6 way still matches v4 packets.
func unmapPrefix(p netip.Prefix) netip.Prefix {
	if p.Addr().Is4In6() && p.Bits() >= 96 {
		return netip.PrefixFrom(p.Addr().Unmap(), p.Bits()-96)
	}
	return p
}

// FormatPrefix writes a single-address prefix as the bare address and
// anything wider as a CIDR, the way users write them.
func FormatPrefix(p netip.Prefix) string {
	if p.IsSingleIP() {
		return p.Addr().String()
	}
	return p.String()
}

func (p *parser) rateLimit(path string, v any) RateLimit {
	rl := RateLimit{MaxConnections: 100, WindowSeconds: 10}
	m, ok := p.object(path, v, "max_connections", "window_seconds")
	if !ok {
		return rl
	}
	if v, ok := m["max_connections"]; ok {
		rl.MaxConnections = p.intIn(join(path, "max_connections"), v, 0, 1_000_000, "a connection count (0 = no limit)")
	}
	if v, ok := m["window_seconds"]; ok {
		rl.WindowSeconds = p.intIn(join(path, "window_seconds"), v, 1, 86_400, "a window in seconds")
	}
	return rl
}

func (p *parser) intIn(path string, v any, lo, hi int64, what string) int {
	n, ok := v.(json.Number)
	if !ok {
		p.fail(path, "want %s, got %s", what, typeName(v))
		return int(lo)
	}
	i, err := strconv.ParseInt(n.String(), 10, 64)
	if err != nil || i < lo || i > hi {
		p.fail(path, "%s is not %s (%d-%d)", n, what, lo, hi)
		return int(lo)
	}
	return int(i)
}

func (p *parser) sampleRate(path string, v any) float64 {
	n, ok := v.(json.Number)
	if !ok {
		p.fail(path, "want a number from 0 to 1, got %s", typeName(v))
		return 0
	}
	f, err := n.Float64()
	if err != nil || math.IsNaN(f) || f < 0 || f > 1 {
		p.fail(path, "%s is not a sample rate (0 to 1)", n)
		return 0
	}
	return f
}

var feedKeys = []string{"name", "url", "interval", "threat_level"}

func (p *parser) feed(path string, v any) Feed {
	f := Feed{Interval: time.Hour, ThreatLevel: "high"}
	m, ok := p.object(path, v, feedKeys...)
	if !ok {
		return f
	}
	if v, ok := m["name"]; ok {
		if s, ok := p.str(join(path, "name"), v); ok {
			if err := CheckRuleName(s); err != nil {
				p.fail(join(path, "name"), "%s", strings.Replace(err.Error(), "rule name", "feed name", 1))
			}
			f.Name = s
		}
	} else {
		p.fail(join(path, "name"), "missing: every feed needs a name")
	}
	if v, ok := m["url"]; ok {
		if s, ok := p.str(join(path, "url"), v); ok {
			if err := CheckFeedURL(s); err != nil {
				p.fail(join(path, "url"), "%v", err)
			}
			f.URL = s
		}
	} else {
		p.fail(join(path, "url"), "missing: every feed needs a url")
	}
	if v, ok := m["interval"]; ok {
		if s, ok := p.str(join(path, "interval"), v); ok {
			d, ok := ParseDuration(s)
			switch {
			case !ok:
				p.fail(join(path, "interval"), "%q is not a duration (like 30m, 1h, 6h, 1d)", s)
			case d < MinFeedInterval:
				p.fail(join(path, "interval"), "%q is shorter than %v", s, MinFeedInterval)
			default:
				f.Interval = d
			}
		}
	}
	if v, ok := m["threat_level"]; ok {
		if s, ok := p.str(join(path, "threat_level"), v); ok {
			if !slices.Contains(ThreatLevels, s) {
				p.fail(join(path, "threat_level"), "%q is not a threat level (%s)", s, strings.Join(ThreatLevels, ", "))
			}
			f.ThreatLevel = s
		}
	}
	return f
}

// CheckFeedURL says why s cannot be a threat feed's url, or nil. It is
// ParseFeedURL without the result.
func CheckFeedURL(s string) error {
	_, err := ParseFeedURL(s)
	return err
}

// ParseFeedURL parses a threat feed's url: https or http with a host name
// and, if any, a port from 1 to 65535; or file:///absolute/path (also
// file://localhost/path, file:/path) for machines fed by hand or by another
// tool. It is the one check for feed URLs: Parse applies it to
// threat_feeds[i].url and the intel package to every URL it fetches, so a
// config that passes `fwctl check` never has a feed the daemon refuses.
//
// A file URL takes no host but localhost, no user, query or fragment: each
// would be dropped without a word, and a "#" or "?" in a file name must be
// written %23 or %3F. A user and password in an http(s) URL are sent as
// Basic authentication. Errors show the URL as RedactURL does, since the
// query and password may hold an access key.
func ParseFeedURL(s string) (*url.URL, error) {
	if s == "" {
		return nil, errors.New("a feed url may not be empty")
	}
	if strings.TrimSpace(s) != s {
		return nil, errors.New("a feed url may not start or end with blanks")
	}
	u, err := url.Parse(s)
	if err != nil {
		// url.Error repeats the whole URL, which may hold an access key.
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err
		}
		return nil, fmt.Errorf("not a URL: %v", err)
	}
	shown := RedactURL(u)
	switch u.Scheme {
	case "http", "https":
		if u.Hostname() == "" {
			return nil, fmt.Errorf("%q has no host", shown)
		}
		if port := u.Port(); port != "" {
			if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
				return nil, fmt.Errorf("%q: %s is not a port (1-65535)", shown, port)
			}
		}
	case "file":
		switch {
		case u.Host != "" && !strings.EqualFold(u.Host, "localhost"):
			return nil, fmt.Errorf("%q names the host %q: a file URL must be local (file:///path)", shown, u.Host)
		case u.User != nil:
			return nil, fmt.Errorf("%q has a user: a file URL takes none (file:///path)", shown)
		case strings.ContainsAny(s, "?#"):
			return nil, fmt.Errorf("%q has a query or fragment, which a file URL would ignore: write \"?\" and \"#\" in a file name as %%3F and %%23", shown)
		case !strings.HasPrefix(u.Path, "/"):
			return nil, fmt.Errorf("%q has no absolute path (file:///path)", shown)
		case strings.IndexByte(u.Path, 0) >= 0:
			return nil, fmt.Errorf("%q: a file path cannot hold a NUL byte", shown)
		}
	default:
		return nil, fmt.Errorf("%q is not an https, http or file URL", shown)
	}
	return u, nil
}

// RedactURL renders u for errors and logs without what may be secret: the
// user and password and the query (abuse.ch and others take access keys
// there) are left out, a query shown as "?…", an opaque part as "…".
func RedactURL(u *url.URL) string {
	if u.Opaque != "" {
		return u.Scheme + ":…"
	}
	shown := url.URL{Scheme: u.Scheme, Host: u.Host, Path: u.Path, RawPath: u.RawPath}
	s := shown.String()
	if u.RawQuery != "" || u.ForceQuery {
		s += "?…"
	}
	return s
}
