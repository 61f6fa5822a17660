package rules

import (
	"encoding/json"
	"net/url"
	"os"
	"strings"
	"testing"
)

// feedURLCase is one row of testdata/feed_urls.json, the table of feed URLs
// this package and intel must judge alike (intel's tests read it too).
type feedURLCase struct {
	URL string `json:"url"`
	Err string `json:"err"` // a part of the error; "" for a valid URL
}

func loadFeedURLCases(t *testing.T) []feedURLCase {
	t.Helper()
	data, err := os.ReadFile("testdata/feed_urls.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []feedURLCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("testdata/feed_urls.json: %v", err)
	}
	return cases
}

// TestParseFeedURL checks every URL of the shared table, alone and as a
// feed of a config: the error names the place, and never shows a password
// or a query, which may hold an access key.
func TestParseFeedURL(t *testing.T) {
	for _, tt := range loadFeedURLCases(t) {
		t.Run(tt.URL, func(t *testing.T) {
			u, err := ParseFeedURL(tt.URL)
			switch {
			case tt.Err == "" && err != nil:
				t.Fatalf("error = %v, want none", err)
			case tt.Err == "" && (u == nil || u.Scheme == ""):
				t.Fatalf("accepted as %#v", u)
			case tt.Err != "" && (err == nil || !strings.Contains(err.Error(), tt.Err)):
				t.Fatalf("error = %v, want one containing %q", err, tt.Err)
			case err != nil && (strings.Contains(err.Error(), "pw") || strings.Contains(err.Error(), "key=")):
				t.Fatalf("error %q shows a secret", err)
			}
			if (CheckFeedURL(tt.URL) == nil) != (err == nil) {
				t.Errorf("CheckFeedURL and ParseFeedURL disagree")
			}

			doc, _ := json.Marshal(map[string]any{"threat_feeds": []any{map[string]string{"name": "f", "url": tt.URL}}})
			cfg, perr := Parse(doc)
			if tt.Err == "" {
				if perr != nil {
					t.Fatalf("Parse: %v", perr)
				}
				if cfg.ThreatFeeds[0].URL != tt.URL {
					t.Errorf("Parse kept url %q", cfg.ThreatFeeds[0].URL)
				}
				return
			}
			if want := "threat_feeds[0].url: " + err.Error(); perr == nil || perr.Error() != want {
				t.Errorf("Parse: error = %v, want %s", perr, want)
			}
		})
	}
}

func TestRedactURL(t *testing.T) {
	tests := []struct{ url, want string }{
		{"https://example.com/list.txt", "https://example.com/list.txt"},
		{"https://user:pw@example.com:8443/list.txt?key=1#frag", "https://example.com:8443/list.txt?…"},
		{"https://example.com/list?", "https://example.com/list?…"},
		{"https://example.com/a%2Fb", "https://example.com/a%2Fb"},
		{"file:///var/lib/list.txt", "file:///var/lib/list.txt"},
		{"http:user:pw@example.com", "http:…"},
	}
	for _, tt := range tests {
		u, err := url.Parse(tt.url)
		if err != nil {
			t.Fatalf("%s: %v", tt.url, err)
		}
		if got := RedactURL(u); got != tt.want {
			t.Errorf("RedactURL(%s) = %q, want %q", tt.url, got, tt.want)
		}
	}
}
