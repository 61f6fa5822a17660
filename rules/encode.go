package rules

import (
	"bytes"
	"encoding/json"
	"net/netip"
)

// The file's shape, in the order keys are written. Marshalling goes through
// these types so saved files are stable and diff cleanly.
type fileConfig struct {
	DefaultPolicy         string     `json:"default_policy"`
	DefaultOutboundPolicy string     `json:"default_outbound_policy,omitempty"`
	Rules                 []FileRule `json:"rules"`
	WhitelistIPs          []string   `json:"whitelist_ips"`
	BlacklistIPs          []string   `json:"blacklist_ips"`
	RateLimit             fileRate   `json:"rate_limit"`
	AllowedSampleRate     float64    `json:"allowed_sample_rate"`
	ThreatFeeds           []fileFeed `json:"threat_feeds"`
}

// FileRule is a rule as firewall_rules.json spells it; fwctl list --json
// prints these (plus a number).
type FileRule struct {
	Name      string   `json:"name"`
	Action    string   `json:"action"`
	Protocol  string   `json:"protocol"`
	Ports     []any    `json:"ports"`
	SrcIPs    []string `json:"src_ips"`
	Direction string   `json:"direction"`
	Enabled   bool     `json:"enabled"`
}

type fileRate struct {
	MaxConnections int `json:"max_connections"`
	WindowSeconds  int `json:"window_seconds"`
}

type fileFeed struct {
	Name        string `json:"name"`
	URL         string `json:"url"`
	Interval    string `json:"interval"`
	ThreatLevel string `json:"threat_level"`
}

// ToFile spells r the way the config file does: single ports as numbers,
// ranges as "lo-hi", addresses as written by FormatPrefix.
func (r *Rule) ToFile() FileRule {
	fr := FileRule{
		Name:      r.Name,
		Action:    r.Action.String(),
		Protocol:  r.Protocol.String(),
		Ports:     make([]any, 0, len(r.Ports)),
		SrcIPs:    FormatPrefixes(r.SrcIPs),
		Direction: r.Direction.String(),
		Enabled:   r.Enabled,
	}
	for _, p := range r.Ports {
		if p.First == p.Last {
			fr.Ports = append(fr.Ports, p.First)
		} else {
			fr.Ports = append(fr.Ports, p.String())
		}
	}
	return fr
}

// FormatPrefixes spells a list of prefixes for the file or a table; never nil.
func FormatPrefixes(ps []netip.Prefix) []string {
	out := make([]string, 0, len(ps))
	for _, p := range ps {
		out = append(out, FormatPrefix(p))
	}
	return out
}

// Marshal encodes c as the config file: 2-space indents, keys in a fixed
// order, a trailing newline.
func Marshal(c *Config) ([]byte, error) {
	fc := fileConfig{
		DefaultPolicy:     c.DefaultPolicy.String(),
		Rules:             make([]FileRule, 0, len(c.Rules)),
		WhitelistIPs:      FormatPrefixes(c.WhitelistIPs),
		BlacklistIPs:      FormatPrefixes(c.BlacklistIPs),
		RateLimit:         fileRate(c.RateLimit),
		AllowedSampleRate: c.AllowedSampleRate,
		ThreatFeeds:       make([]fileFeed, 0, len(c.ThreatFeeds)),
	}
	if c.DefaultOutboundPolicy != ActionUnset {
		fc.DefaultOutboundPolicy = c.DefaultOutboundPolicy.String()
	}
	for i := range c.Rules {
		fc.Rules = append(fc.Rules, c.Rules[i].ToFile())
	}
	for _, f := range c.ThreatFeeds {
		fc.ThreatFeeds = append(fc.ThreatFeeds, fileFeed{
			Name: f.Name, URL: f.URL, Interval: formatDuration(f.Interval.String()), ThreatLevel: f.ThreatLevel,
		})
	}
	var buf bytes.Buffer
	enc := json.NewEncoder(&buf)
	enc.SetEscapeHTML(false)
	enc.SetIndent("", "  ")
	if err := enc.Encode(fc); err != nil {
		return nil, err
	}
	return buf.Bytes(), nil
}

// formatDuration trims Go's zero units: "1h0m0s" reads better as "1h".
func formatDuration(s string) string {
	for _, z := range []string{"0s", "0m"} {
		if len(s) > len(z) && s[len(s)-len(z):] == z && (s[len(s)-len(z)-1] < '0' || s[len(s)-len(z)-1] > '9') {
			s = s[:len(s)-len(z)]
		}
	}
	return s
}
