package rules

import (
	"bytes"
	"cmp"
	"net/netip"
	"slices"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config parser: it must never
// panic, must return exactly one of a config or an error, and whatever it
// accepts must survive a Marshal/Parse round trip unchanged, and be told
// apart from the default by Changes when it differs in effect.
func FuzzParse(f *testing.F) {
	f.Add(defaultJSON)
	f.Add([]byte(`{"rules":[{"name":"a","action":"block","ports":["1-2",3],"src_ips":["::1/128"]}]}`))
	f.Add([]byte(`{"rate_limit":{"max_connections":0,"window_seconds":1},"allowed_sample_rate":1e-3}`))
	f.Add([]byte(`{"threat_feeds":[{"name":"x","url":"file:///x","interval":"1s"}]}`))
	f.Add([]byte(`[`))
	f.Fuzz(func(t *testing.T, data []byte) {
		cfg, err := Parse(data)
		if (cfg == nil) == (err == nil) {
			t.Fatalf("Parse returned config %v and error %v", cfg != nil, err)
		}
		if err != nil {
			if err.Error() == "" {
				t.Fatal("empty error message")
			}
			return
		}
		out, err := Marshal(cfg)
		if err != nil {
			t.Fatalf("Marshal of an accepted config: %v", err)
		}
		again, err := Parse(out)
		if err != nil {
			t.Fatalf("re-Parse of Marshal output: %v\n%s", err, out)
		}
		out2, _ := Marshal(again)
		if !bytes.Equal(out, out2) {
			t.Fatalf("round trip not stable:\n%s\n%s", out, out2)
		}
		// A config compared with itself, or with its round trip, has no
		// changes to log; against the default it has some unless it is
		// the default in effect.
		if c := Changes(cfg, again); c != nil {
			t.Fatalf("Changes between a config and its round trip: %q", c)
		}
		if c := Changes(Default(), cfg); c == nil && Digest(cfg) != Digest(Default()) && !sameButListOrder(cfg, Default()) {
			t.Fatalf("no Changes from the default to a config that differs in effect:\n%s", out)
		}
	})
}

// sameButListOrder reports whether a and b differ at most in the order of
// their list entries, all that Changes leaves out.
func sameButListOrder(a, b *Config) bool {
	a, b = a.Clone(), b.Clone()
	for _, c := range []*Config{a, b} {
		for _, l := range []*[]netip.Prefix{&c.WhitelistIPs, &c.BlacklistIPs} {
			slices.SortFunc(*l, func(x, y netip.Prefix) int { return x.Addr().Compare(y.Addr())*2 + cmp.Compare(x.Bits(), y.Bits()) })
		}
	}
	return Digest(a) == Digest(b)
}
