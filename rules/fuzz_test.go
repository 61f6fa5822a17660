package rules

import (
	"bytes"
	"testing"
)

// FuzzParse feeds arbitrary bytes to the config parser: it must never
// panic, must return exactly one of a config or an error, and whatever it
// accepts must survive a Marshal/Parse round trip unchanged.
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
	})
}
