package rules

import (
	"encoding/json"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"
)

// FuzzParseFeedURL feeds ParseFeedURL what a config's threat_feeds[i].url
// may hold: it returns a URL or an error, never both; what it accepts is
// an http(s) URL with a host and a port in 1-65535 that net/http can
// request, or a local file URL with an absolute path and nothing that
// would be silently dropped; an error never shows the user and password
// or the query, which may hold an access key, beyond what RedactURL
// shows; and the config parser judges the string alike.
func FuzzParseFeedURL(f *testing.F) {
	for _, s := range []string{
		"https://feodotracker.abuse.ch/downloads/ipblocklist.txt",
		"https://www.spamhaus.org/drop/drop.txt",
		"http://127.0.0.1:8080/list.txt",
		"https://user:s3cr3t@feeds.example/list?key=abcdef",
		"https://feeds.example:0/x", "https://feeds.example:65536/x", "https://:443/x", "https:///x",
		"http://[::1]:8080/x", "http://[fe80::1%25eth0]/x", "https://feeds.example/x#frag",
		"file:///var/lib/pfw/feed.txt", "file://localhost/feed.txt", "file:/feed.txt",
		"file://other/feed.txt", "file://u:p@localhost/x", "file:///x?y", "file:///x%3Fy", "file:///x%00y",
		"file:relative", "ftp://feeds.example/x", "mailto:a@b", "javascript:alert(1)", "",
		" https://feeds.example/x", "https://feeds.example/%zz", "http://a b/", "https://user:pw@/x?key=k",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		u, err := ParseFeedURL(s)
		if (u == nil) == (err == nil) {
			t.Fatalf("ParseFeedURL(%q) = %v, %v: want exactly one of a URL and an error", s, u, err)
		}
		if (CheckFeedURL(s) == nil) != (err == nil) {
			t.Fatalf("CheckFeedURL(%q) and ParseFeedURL disagree", s)
		}
		if err != nil {
			msg := err.Error()
			if msg == "" || strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error for %q is empty or not one line: %q", s, msg)
			}
			// The secret parts, as they would show if leaked; RedactURL's
			// own text (host, path) is allowed to hold the same bytes.
			if pu, perr := url.Parse(s); perr == nil {
				shown := RedactURL(pu)
				var secrets []string
				if pu.User != nil {
					secrets = append(secrets, pu.User.String()+"@")
				}
				if pu.RawQuery != "" {
					secrets = append(secrets, "?"+pu.RawQuery)
				}
				for _, secret := range secrets {
					if strings.Contains(msg, secret) && !strings.Contains(shown, secret) {
						t.Fatalf("error for %q shows %q: %s", s, secret, msg)
					}
				}
			}
		} else {
			switch u.Scheme {
			case "http", "https":
				if u.Hostname() == "" {
					t.Fatalf("ParseFeedURL(%q) accepted a URL without a host", s)
				}
				if port := u.Port(); port != "" {
					if n, err := strconv.Atoi(port); err != nil || n < 1 || n > 65535 {
						t.Fatalf("ParseFeedURL(%q) accepted port %q", s, port)
					}
				}
				// The fetcher requests u.String(): what the config accepts
				// must not fail there.
				if _, err := http.NewRequest(http.MethodGet, u.String(), nil); err != nil {
					t.Fatalf("ParseFeedURL(%q) accepted a URL net/http cannot request: %v", s, err)
				}
			case "file":
				if !strings.HasPrefix(u.Path, "/") || strings.IndexByte(u.Path, 0) >= 0 || u.User != nil ||
					strings.ContainsAny(s, "?#") || (u.Host != "" && !strings.EqualFold(u.Host, "localhost")) {
					t.Fatalf("ParseFeedURL(%q) accepted file URL with host %q, path %q", s, u.Host, u.Path)
				}
			default:
				t.Fatalf("ParseFeedURL(%q) accepted scheme %q", s, u.Scheme)
			}
		}

		if !utf8.ValidString(s) {
			return // JSON would carry U+FFFD instead, another string
		}
		quoted, _ := json.Marshal(s)
		cfg, cerr := Parse([]byte(`{"threat_feeds":[{"name":"f","url":` + string(quoted) + `}]}`))
		switch {
		case err == nil && cerr != nil:
			t.Fatalf("ParseFeedURL(%q) accepts it, but the config refuses it: %v", s, cerr)
		case err == nil && cfg.ThreatFeeds[0].URL != s:
			t.Fatalf("the config reads url %q as %q", s, cfg.ThreatFeeds[0].URL)
		case err != nil && cerr == nil:
			t.Fatalf("ParseFeedURL(%q) fails (%v), but the config accepts it", s, err)
		case err != nil && cerr.Error() != "threat_feeds[0].url: "+err.Error():
			t.Fatalf("config error %q, want ParseFeedURL's %q at threat_feeds[0].url", cerr, err)
		}
	})
}
