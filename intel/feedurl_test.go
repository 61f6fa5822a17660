package intel

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
)

// feedURLCase is a row of rules/testdata/feed_urls.json, the table rules'
// own tests check ParseFeedURL against.
type feedURLCase struct {
	URL string `json:"url"`
	Err string `json:"err"` // a part of the error; "" for a valid URL
}

// stubTransport answers every request with a one-address list and sends
// nothing on the network.
type stubTransport struct{}

func (stubTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	return &http.Response{
		StatusCode: http.StatusOK,
		Header:     http.Header{},
		Body:       io.NopCloser(strings.NewReader("192.0.2.1\n")),
		Request:    req,
	}, nil
}

// TestFeedURLsJudgedAlike checks that every URL of the shared table is judged
// the same by `fwctl check` (rules.Parse) and by Manager.SetFeeds, the way
// pfwd reads a config: a config that passes the
// check never has a feed pfwd refuses, so a reload is never rejected and a
// start never runs without feeds because of a URL. An accepted URL must also
// get past Fetch's own URL handling: http(s) ones reach the transport (a stub
// here), file ones the file system.
func TestFeedURLsJudgedAlike(t *testing.T) {
	data, err := os.ReadFile("../rules/testdata/feed_urls.json")
	if err != nil {
		t.Fatal(err)
	}
	var cases []feedURLCase
	if err := json.Unmarshal(data, &cases); err != nil {
		t.Fatalf("feed_urls.json: %v", err)
	}
	fetcher := &Fetcher{Client: &http.Client{Transport: stubTransport{}, CheckRedirect: checkRedirect}}
	for _, tt := range cases {
		t.Run(tt.URL, func(t *testing.T) {
			doc, _ := json.Marshal(map[string]any{"threat_feeds": []any{map[string]string{"name": "f", "url": tt.URL}}})
			_, checkErr := rules.Parse(doc)
			setErr := NewManager(Options{}).SetFeeds([]Feed{{Name: "f", URL: tt.URL, Interval: time.Hour}})
			valid := tt.Err == ""
			if (checkErr == nil) != valid || (setErr == nil) != valid {
				t.Fatalf("want valid=%v; rules.Parse: %v; SetFeeds: %v", valid, checkErr, setErr)
			}
			if !valid {
				if !strings.Contains(setErr.Error(), tt.Err) {
					t.Errorf("SetFeeds: error = %v, want one containing %q", setErr, tt.Err)
				}
				return
			}
			resp, err := fetcher.Fetch(t.Context(), tt.URL, Validators{})
			switch {
			case strings.HasPrefix(strings.ToLower(tt.URL), "file:"):
				if err == nil || strings.Contains(err.Error(), "invalid feed URL") {
					t.Errorf("Fetch: error = %v, want the file system's", err)
				}
			case err != nil:
				t.Errorf("Fetch: %v", err)
			case len(resp.Result.Entries) != 1:
				t.Errorf("Fetch: %d entries, want the stub's 1", len(resp.Result.Entries))
			}
		})
	}
}
