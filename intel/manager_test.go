package intel

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// recorder collects a Manager's callbacks.
type recorder struct {
	mu      sync.Mutex
	updates []update
	events  []Event
}

type update struct {
	feed    Feed
	entries []netip.Prefix
}

func (r *recorder) options() Options {
	return Options{
		OnUpdate: func(f Feed, entries []netip.Prefix) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.updates = append(r.updates, update{f, entries})
		},
		OnEvent: func(e Event) {
			r.mu.Lock()
			defer r.mu.Unlock()
			r.events = append(r.events, e)
		},
	}
}

func (r *recorder) updatesOf(name string) []update {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []update
	for _, u := range r.updates {
		if u.feed.Name == name {
			out = append(out, u)
		}
	}
	return out
}

// event returns the first event of feed at level whose message contains text.
// event finds an event, waiting up to 2 s for it: events reach OnEvent
// through the manager's callback queue, after the state that the fetch
// left, which tests usually wait for first.
func (r *recorder) event(feed string, level slog.Level, text string) (Event, bool) {
	for deadline := time.Now().Add(2 * time.Second); ; time.Sleep(10 * time.Millisecond) {
		if e, ok := r.eventNow(feed, level, text); ok || time.Now().After(deadline) {
			return e, ok
		}
	}
}

// eventNow finds an event among those delivered so far.
func (r *recorder) eventNow(feed string, level slog.Level, text string) (Event, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, e := range r.events {
		if e.Feed == feed && e.Level == level && strings.Contains(e.Msg, text) {
			return e, true
		}
	}
	return Event{}, false
}

func (r *recorder) dump() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	var b strings.Builder
	for _, e := range r.events {
		fmt.Fprintf(&b, "\n  %s %s: %s", e.Level, e.Feed, e.Msg)
	}
	return b.String()
}

// waitFor polls cond until it holds or the timeout passes.
func waitFor(t *testing.T, timeout time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(timeout)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", timeout, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// run starts m.Run and stops it when the test ends, failing the test if Run
// does not return promptly.
func run(t *testing.T, m *Manager) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(2 * time.Second):
			t.Errorf("Run did not return within 2s of cancellation")
		}
	})
}

func state(m *Manager, name string) FeedState {
	for _, s := range m.States() {
		if s.Name == name {
			return s
		}
	}
	return FeedState{}
}

// docList returns n distinct /32 entries in 198.51.100.0/24 as a list.
func docList(n int) (string, []netip.Prefix) {
	var b strings.Builder
	var want []netip.Prefix
	for i := range n {
		fmt.Fprintf(&b, "198.51.100.%d\n", i+1)
		want = append(want, netip.PrefixFrom(netip.AddrFrom4([4]byte{198, 51, 100, byte(i + 1)}), 32))
	}
	return b.String(), want
}

func TestManagerFetchesThenRevalidates(t *testing.T) {
	t.Parallel()
	body, want := docList(3)
	fs := newFeedServer(t, body)
	var rec recorder
	m := NewManager(rec.options())
	feed := Feed{Name: "A", URL: fs.URL, Interval: time.Second, Level: "high"}
	if err := m.SetFeeds([]Feed{feed}); err != nil {
		t.Fatal(err)
	}
	start := time.Now()
	run(t, m)

	waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })
	got := rec.updatesOf("A")[0]
	if diff := cmp.Diff(update{feed, want}, got, cmpPrefix, cmp.AllowUnexported(update{})); diff != "" {
		t.Errorf("update mismatch (-want +got):\n%s", diff)
	}
	if _, ok := rec.event("A", slog.LevelInfo, "updated: 3 entries (+3 -0), format plain"); !ok {
		t.Errorf("no update event:%s", rec.dump())
	}
	s := state(m, "A")
	if s.Entries != 3 || s.LastSuccess.Before(start) || s.Failures != 0 || s.LastError != "" {
		t.Errorf("state after the first fetch: %+v", s)
	}
	if wait := s.NextFetch.Sub(s.LastSuccess); wait < 900*time.Millisecond || wait > 1100*time.Millisecond {
		t.Errorf("next fetch %v after the success, want 1s ±10%%", wait)
	}

	// The second fetch is a 304: state moves on, OnUpdate is not called.
	waitFor(t, 5*time.Second, "the second fetch", func() bool { return fs.count() >= 2 && state(m, "A").LastSuccess.After(s.LastSuccess) })
	if n := len(rec.updatesOf("A")); n != 1 {
		t.Errorf("%d updates after a 304, want 1", n)
	}
	if got := state(m, "A").Entries; got != 3 {
		t.Errorf("entries after a 304: %d, want 3", got)
	}
}

// A server that sends no validators answers every fetch with the whole
// list: the same list again is not applied again (it cost a second and
// tens of MiB for 100,000 entries), any more than a 304 is.
func TestManagerSameListWithoutValidatorsIsNotReapplied(t *testing.T) {
	t.Parallel()
	var fetches atomic.Int32
	srv := listenOn(t, "127.0.0.1:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fetches.Add(1)
		w.Write([]byte("192.0.2.1\n192.0.2.2\n"))
	}))
	var rec recorder
	m := NewManager(rec.options())
	if err := m.SetFeeds([]Feed{{Name: "A", URL: srv.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })
	first := state(m, "A").LastSuccess
	waitFor(t, 5*time.Second, "two more fetches", func() bool { return fetches.Load() >= 3 && state(m, "A").LastSuccess.After(first) })
	if n := len(rec.updatesOf("A")); n != 1 {
		t.Errorf("%d updates for the same list fetched %d times, want 1", n, fetches.Load())
	}
	if s := state(m, "A"); s.Entries != 2 || s.Failures != 0 {
		t.Errorf("state after unchanged fetches: %+v", s)
	}
}

// The first fetch after a restart brings, as likely as not, the list the
// database seeded. It is applied all the same: the level may have changed
// in the config while pfwd was stopped, and the database takes the level
// and the time of the fetch from the update.
func TestManagerAppliesTheSeededListOnceFetched(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "feed.txt")
	if err := os.WriteFile(path, []byte("192.0.2.1\n192.0.2.2\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var rec recorder
	m := NewManager(rec.options())
	m.resolvConfs = resolvConf(t, "")
	m.Seed("A", prefixes("192.0.2.1/32", "192.0.2.2/32"))
	feed := Feed{Name: "A", URL: "file://" + path, Interval: time.Hour, Level: "critical"}
	if err := m.SetFeeds([]Feed{feed}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the update of the first fetch", func() bool { return len(rec.updatesOf("A")) == 1 })
	if got := rec.updatesOf("A")[0]; got.feed.Level != "critical" || len(got.entries) != 2 {
		t.Errorf("update after the seeded list was fetched: %+v", got)
	}
}

func TestManagerKeepsEntriesOnFailure(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, "")
	fs.set("", 500)
	var rec recorder
	m := NewManager(rec.options())
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	seed := prefixes("192.0.2.1/32", "192.0.2.2/32")
	m.Seed("A", seed)
	run(t, m)

	waitFor(t, 5*time.Second, "a failed attempt", func() bool { return state(m, "A").Failures >= 1 })
	s := state(m, "A")
	if s.Entries != 2 || !strings.Contains(s.LastError, "HTTP 500") || !s.LastSuccess.IsZero() {
		t.Errorf("state after a 500: %+v", s)
	}
	// 1 s interval: the first retry comes after interval/4 = 250ms ±10%,
	// the second after 500ms (more may have happened on a loaded machine).
	// LastAttempt is stamped when the fetch starts and the backoff runs
	// from its failure, so the fetch's own time (a local 500: well under
	// 100 ms) is allowed on top.
	if wait, most := s.NextFetch.Sub(s.LastAttempt), backoff(time.Second, s.Failures)*11/10+100*time.Millisecond; wait > most {
		t.Errorf("retry %d after %v, want at most %v", s.Failures, wait, most)
	}
	if _, ok := rec.event("A", slog.LevelWarn, "fetch failed (1 in a row): fetch "+fs.URL+": HTTP 500 Internal Server Error; keeping 2 entries, next try in"); !ok {
		t.Errorf("no failure event:%s", rec.dump())
	}
	waitFor(t, 5*time.Second, "a second failure", func() bool { return state(m, "A").Failures >= 2 })
	if got, _ := m.Entries("A"); !cmp.Equal(got, seed, cmpPrefix) {
		t.Errorf("entries after failures: %v, want the seed %v", got, seed)
	}
	if n := len(rec.updatesOf("A")); n != 0 {
		t.Errorf("%d updates while failing, want 0", n)
	}

	fs.set("203.0.113.1\n", 0)
	waitFor(t, 5*time.Second, "recovery", func() bool { return len(rec.updatesOf("A")) == 1 })
	s = state(m, "A")
	if s.Failures != 0 || s.LastError != "" || s.Entries != 1 {
		t.Errorf("state after recovery: %+v", s)
	}
	if _, ok := rec.event("A", slog.LevelInfo, "updated: 1 entry (+1 -2)"); !ok {
		t.Errorf("no update event with the difference:%s", rec.dump())
	}
}

func TestManagerRejectsGarbage(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, "<html><body>Please log in to the hotel Wi-Fi</body></html>\n")
	var rec recorder
	m := NewManager(rec.options())
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	m.Seed("A", prefixes("192.0.2.1/32"))
	run(t, m)

	waitFor(t, 5*time.Second, "a rejection", func() bool { return state(m, "A").Failures >= 1 })
	if s := state(m, "A"); s.Entries != 1 || !strings.Contains(s.LastError, "not a blocklist: looks like an HTML page") {
		t.Errorf("state after HTML: %+v", s)
	}
	if n := len(rec.updatesOf("A")); n != 0 {
		t.Errorf("%d updates for HTML, want 0", n)
	}
}

func TestManagerShrinkToZero(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name         string
		seed         int
		wantRejected bool
	}{
		{name: "from 12 entries: rejected, accepted once empty for an interval", seed: 12, wantRejected: true},
		{name: "from 9 entries: accepted at once", seed: 9},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			fs := newFeedServer(t, "# DstIP\n# END 0 entries\n")
			var rec recorder
			m := NewManager(rec.options())
			if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
				t.Fatal(err)
			}
			_, seed := docList(tt.seed)
			m.Seed("A", seed)
			run(t, m)

			waitFor(t, 5*time.Second, "the empty list to be accepted", func() bool { return len(rec.updatesOf("A")) == 1 })
			rejection := fmt.Sprintf("fetch failed (1 in a row): rejected an empty list in place of %d entries: it is accepted if the feed is still empty after 1s; keeping %d entries", tt.seed, tt.seed)
			if _, ok := rec.event("A", slog.LevelWarn, rejection); ok != tt.wantRejected {
				t.Errorf("rejection event present = %v, want %v:%s", ok, tt.wantRejected, rec.dump())
			}
			if u := rec.updatesOf("A")[0]; len(u.entries) != 0 {
				t.Errorf("update has %d entries, want 0", len(u.entries))
			}
			if s := state(m, "A"); s.Entries != 0 || s.Failures != 0 {
				t.Errorf("state after accepting the empty list: %+v", s)
			}
			if want := 1 + btoi(tt.wantRejected); fs.count() < want {
				t.Errorf("%d requests, want at least %d", fs.count(), want)
			}
		})
	}
}

// TestManagerEmptyAnswersForLessThanAnInterval: a server that answers an
// empty list for a while (a CDN's or a provider's accident) and then the
// list again lifts no entry, however often it was asked meanwhile: the
// retries after the first rejection are rejected too, until the feed has
// been empty for a whole interval.
func TestManagerEmptyAnswersForLessThanAnInterval(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, "# DstIP\n# END 0 entries\n")
	var rec recorder
	m := NewManager(rec.options())
	const interval = 4 * time.Second // retries after 1 s, then 2 s: two empty answers within it
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: interval}}); err != nil {
		t.Fatal(err)
	}
	list, seed := docList(12)
	m.Seed("A", seed)
	run(t, m)

	waitFor(t, 5*time.Second, "a second empty answer", func() bool { return state(m, "A").Failures >= 2 })
	fs.set(list, 0)
	waitFor(t, 10*time.Second, "the list back", func() bool { return len(rec.updatesOf("A")) >= 1 })
	for i, u := range rec.updatesOf("A") {
		if len(u.entries) != 12 {
			t.Errorf("update %d has %d entries, want the 12 the feed lists again:%s", i, len(u.entries), rec.dump())
		}
	}
	if s := state(m, "A"); s.Entries != 12 || s.Failures != 0 {
		t.Errorf("state with the list back: %+v", s)
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}

func TestManagerSanitizes(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, "0.0.0.0/0\n127.0.0.1\n192.168.1.0/24\n203.0.113.0/24\n198.51.100.9\n")
	var rec recorder
	m := NewManager(rec.options())
	m.SetProtected(prefixes("203.0.113.10/32"))
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)

	waitFor(t, 5*time.Second, "the update", func() bool { return len(rec.updatesOf("A")) == 1 })
	if diff := cmp.Diff(prefixes("192.168.1.0/24", "198.51.100.9/32"), rec.updatesOf("A")[0].entries, cmpPrefix); diff != "" {
		t.Errorf("entries mismatch (-want +got):\n%s", diff)
	}
	for _, want := range []string{
		// The test server is on 127.0.0.1: the entry blocks the feed's own
		// server before it is loopback.
		`skipped 3 entries: 0.0.0.0/0 (would block all IPv4 traffic), 127.0.0.1/32 (covers the feed server 127.0.0.1 of feed "A"), 203.0.113.0/24 (overlaps whitelisted 203.0.113.10/32)`,
		"kept 1 entry overlapping local ranges: 192.168.1.0/24 (overlaps private range 192.168.0.0/16)",
	} {
		if _, ok := rec.event("A", slog.LevelWarn, want); !ok {
			t.Errorf("no event %q:%s", want, rec.dump())
		}
	}
}

func TestManagerSetFeeds(t *testing.T) {
	t.Parallel()
	bodyA, wantA := docList(2)
	a, b, c := newFeedServer(t, bodyA), newFeedServer(t, "192.0.2.2\n"), newFeedServer(t, "192.0.2.3\n")
	var rec recorder
	m := NewManager(rec.options())
	feedA := Feed{Name: "A", URL: a.URL, Interval: time.Hour, Level: "high"}
	feedB := Feed{Name: "B", URL: b.URL, Interval: time.Hour}
	if err := m.SetFeeds([]Feed{feedA, feedB}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "A and B", func() bool { return len(rec.updatesOf("A")) == 1 && len(rec.updatesOf("B")) == 1 })
	before := state(m, "A")

	// Reload: A unchanged, B removed, C added.
	feedC := Feed{Name: "C", URL: c.URL, Interval: time.Hour}
	if err := m.SetFeeds([]Feed{feedC, feedA}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "C and B's removal", func() bool { return len(rec.updatesOf("C")) == 1 && len(rec.updatesOf("B")) == 2 })
	if u := rec.updatesOf("B")[1]; u.entries != nil {
		t.Errorf("removed feed B: update with %v, want nil", u.entries)
	}
	if diff := cmp.Diff(before, state(m, "A")); diff != "" {
		t.Errorf("unchanged feed A lost its state (-before +after):\n%s", diff)
	}
	if a.count() != 1 {
		t.Errorf("unchanged feed A fetched %d times, want 1", a.count())
	}
	var names []string
	for _, s := range m.States() {
		names = append(names, s.Name)
	}
	if diff := cmp.Diff([]string{"C", "A"}, names); diff != "" {
		t.Errorf("States order (-want +got):\n%s", diff)
	}
	if _, ok := m.Entries("B"); ok {
		t.Error("removed feed B still has entries")
	}

	// A new level re-sends the same entries without a fetch.
	feedA.Level = "medium"
	if err := m.SetFeeds([]Feed{feedC, feedA}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A's level update", func() bool { return len(rec.updatesOf("A")) == 2 })
	if diff := cmp.Diff(update{feedA, wantA}, rec.updatesOf("A")[1], cmpPrefix, cmp.AllowUnexported(update{})); diff != "" {
		t.Errorf("level update mismatch (-want +got):\n%s", diff)
	}
	if a.count() != 1 {
		t.Errorf("a level change fetched A again")
	}

	// A new URL fetches at once; a shorter interval reschedules.
	feedA.URL = b.URL
	feedC.Interval = 2 * time.Second
	if err := m.SetFeeds([]Feed{feedC, feedA}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "A from its new URL", func() bool { return len(rec.updatesOf("A")) == 3 })
	if got := rec.updatesOf("A")[2].entries; !cmp.Equal(got, prefixes("192.0.2.2/32"), cmpPrefix) {
		t.Errorf("A after the URL change: %v", got)
	}
	if next := state(m, "C").NextFetch; time.Until(next) > 2*time.Second {
		t.Errorf("C's next fetch in %v after its interval became 2s", time.Until(next))
	}
}

func TestManagerSetFeedsInvalid(t *testing.T) {
	ok := Feed{Name: "A", URL: "https://127.0.0.1/list", Interval: time.Hour}
	tests := []struct {
		name    string
		feeds   []Feed
		errText string
	}{
		{"empty name", []Feed{{URL: ok.URL, Interval: time.Hour}}, "feeds[0]: empty name"},
		{"duplicate", []Feed{ok, ok}, `feeds[1]: duplicate name "A"`},
		{"interval", []Feed{{Name: "A", URL: ok.URL, Interval: 500 * time.Millisecond}}, `feed "A": interval 500ms is below the minimum of 1s`},
		{"URL", []Feed{{Name: "A", URL: "gopher://x", Interval: time.Hour}}, `feed "A": invalid feed URL: "gopher://x" is not an https, http or file URL`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			m := NewManager(Options{})
			if err := m.SetFeeds([]Feed{ok}); err != nil {
				t.Fatal(err)
			}
			err := m.SetFeeds(tt.feeds)
			if err == nil || !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error = %v, want one containing %q", err, tt.errText)
			}
			if s := m.States(); len(s) != 1 || s[0].Name != "A" {
				t.Errorf("a rejected SetFeeds changed the feeds: %+v", s)
			}
		})
	}
}

func TestCheckFeeds(t *testing.T) {
	tests := []struct {
		name  string
		feeds []Feed
		err   string // the whole error; "" for none
	}{
		{"none", nil, ""},
		{"good", []Feed{
			{Name: "A", URL: "https://feeds.example/a", Interval: time.Hour},
			{Name: "B", URL: "file:///var/lib/feeds/b.txt", Interval: MinInterval},
		}, ""},
		{"second empty", []Feed{{Name: "A", URL: "https://feeds.example/a", Interval: time.Hour}, {}}, "feeds[1]: empty name"},
		{"empty URL", []Feed{{Name: "A", Interval: time.Hour}}, `feed "A": invalid feed URL: a feed url may not be empty`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkFeeds(tt.feeds)
			if got := fmt.Sprint(err); (err == nil) != (tt.err == "") || (err != nil && got != tt.err) {
				t.Errorf("checkFeeds = %v, want %q", err, tt.err)
			}
			// SetFeeds says where the error came from.
			if err := NewManager(Options{}).SetFeeds(tt.feeds); tt.err != "" && fmt.Sprint(err) != "set feeds: "+tt.err {
				t.Errorf("SetFeeds = %v, want %q", err, "set feeds: "+tt.err)
			}
		})
	}
}

// TestManagerPolicyWarnings inspects the queued events without Run, so no
// feed is ever fetched.
func TestManagerPolicyWarnings(t *testing.T) {
	var rec recorder
	m := NewManager(rec.options())
	err := m.SetFeeds([]Feed{
		{Name: "fast https", URL: "https://feeds.example/list", Interval: time.Minute},
		{Name: "hourly https", URL: "https://feeds.example/list", Interval: time.Hour},
		{Name: "plain http", URL: "http://feeds.example/list", Interval: time.Hour},
		{Name: "local http", URL: "http://127.0.0.1:8080/list", Interval: time.Second},
	})
	if err != nil {
		t.Fatal(err)
	}
	for _, call := range m.callbacks.take() {
		call()
	}
	if _, ok := rec.event("fast https", slog.LevelWarn, "interval 1m0s is shorter than 5m0s"); !ok {
		t.Errorf("no interval warning:%s", rec.dump())
	}
	if _, ok := rec.event("plain http", slog.LevelWarn, "plain http"); !ok {
		t.Errorf("no plain http warning:%s", rec.dump())
	}
	if len(rec.events) != 2 {
		t.Errorf("want exactly 2 warnings, got:%s", rec.dump())
	}
}

func TestManagerShutdownCancelsFetches(t *testing.T) {
	t.Parallel()
	started := make(chan struct{})
	cancelled := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		close(started) // the interval is an hour: one request only
		<-r.Context().Done()
		close(cancelled)
	}))
	t.Cleanup(ts.Close)

	m := NewManager(Options{})
	if err := m.SetFeeds([]Feed{{Name: "A", URL: ts.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	<-started
	if err := m.Run(ctx); err == nil {
		t.Error("a second concurrent Run did not fail")
	}
	cancel()
	select {
	case <-done:
	case <-time.After(time.Second):
		t.Fatal("Run did not return within 1s of cancellation with a fetch in flight")
	}
	select {
	case <-cancelled:
	case <-time.After(time.Second):
		t.Error("the request in flight was not cancelled")
	}
	if s := state(m, "A"); s.Failures != 0 || s.LastError != "" {
		t.Errorf("shutdown counted as a failure: %+v", s)
	}
}

func TestManagerStartsAddedFeedsWhileRunning(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, "192.0.2.1\n")
	var rec recorder
	m := NewManager(rec.options())
	m.Seed("late", prefixes("192.0.2.9/32")) // before SetFeeds names it
	run(t, m)
	if err := m.SetFeeds([]Feed{{Name: "late", URL: fs.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 5*time.Second, "the new feed's update", func() bool { return len(rec.updatesOf("late")) == 1 })
	if _, ok := rec.event("late", slog.LevelInfo, "(+1 -1)"); !ok {
		t.Errorf("the update was not compared with the seed:%s", rec.dump())
	}
}

func TestBackoff(t *testing.T) {
	tests := []struct {
		interval time.Duration
		failures int
		want     time.Duration
	}{
		{time.Hour, 1, 30 * time.Second},
		{time.Hour, 2, time.Minute},
		{time.Hour, 4, 4 * time.Minute},
		{time.Hour, 8, time.Hour},
		{time.Hour, 1000, time.Hour},
		{5 * time.Minute, 4, 4 * time.Minute},
		{5 * time.Minute, 5, 5 * time.Minute},
		{time.Second, 1, 250 * time.Millisecond},
		{time.Second, 3, time.Second},
	}
	for _, tt := range tests {
		if got := backoff(tt.interval, tt.failures); got != tt.want {
			t.Errorf("backoff(%v, %d) = %v, want %v", tt.interval, tt.failures, got, tt.want)
		}
	}
	for range 1000 {
		if j := jitter(time.Second); j < 900*time.Millisecond || j > 1100*time.Millisecond {
			t.Fatalf("jitter(1s) = %v, outside ±10%%", j)
		}
	}
}

// feodoList renders ips as a Feodo Tracker ipblocklist.txt, footer included.
func feodoList(ips ...string) string {
	var b strings.Builder
	b.WriteString("# abuse.ch Feodo Tracker Botnet C2 IP Blocklist (IPs only)\n#\n# DstIP\n")
	for _, ip := range ips {
		b.WriteString(ip + "\n")
	}
	fmt.Fprintf(&b, "# END %d entries\n", len(ips))
	return b.String()
}

// TestManagerKeepsEntriesOnTruncatedList: a Feodo list cut short (here a
// body that lost its footer and half its last address) is a failed fetch:
// the entries in force stay, nothing reaches OnUpdate, and the complete
// list is taken on a later fetch.
func TestManagerKeepsEntriesOnTruncatedList(t *testing.T) {
	t.Parallel()
	full := feodoList("192.0.2.44", "198.51.100.23", "203.0.113.150")
	fs := newFeedServer(t, full)
	var rec recorder
	m := NewManager(rec.options())
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })

	fs.set(full[:strings.Index(full, "203.0.113.1")+len("203.0.113.1")], 0)
	waitFor(t, 5*time.Second, "a rejection", func() bool { return state(m, "A").Failures >= 1 })
	if s := state(m, "A"); s.Entries != 3 || !strings.Contains(s.LastError, "truncated list") {
		t.Errorf("state after a truncated list: %+v", s)
	}
	if got, _ := m.Entries("A"); len(got) != 3 || len(rec.updatesOf("A")) != 1 {
		t.Errorf("a truncated list changed the entries: %v, %d updates", got, len(rec.updatesOf("A")))
	}

	fs.set(feodoList("192.0.2.44", "203.0.113.150"), 0)
	waitFor(t, 5*time.Second, "the complete list", func() bool { return len(rec.updatesOf("A")) == 2 })
	if diff := cmp.Diff(prefixes("192.0.2.44/32", "203.0.113.150/32"), rec.updatesOf("A")[1].entries, cmpPrefix); diff != "" {
		t.Errorf("entries mismatch (-want +got):\n%s", diff)
	}
}

// TestManagerDistrustsEmptyListOfAnotherFormat: a Feodo list read from a
// file:// URL while a tool rewrites it is, at the worst moment, empty or a
// piece of its banner, which parses as an empty list of another format. It
// may not replace the list at once, however short: it is rejected once, so
// the rewritten file is read on the retry; a list that stays empty is
// accepted on that retry.
func TestManagerDistrustsEmptyListOfAnotherFormat(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		cut       string // what the fetch catches of the rewrite
		rewritten bool   // the rewrite ends before the retry
		want      []netip.Prefix
	}{
		{name: "empty file, rewritten", cut: "", rewritten: true, want: prefixes("203.0.113.7/32")},
		{name: "half a banner line, rewritten", cut: "# abuse.ch Feodo", rewritten: true, want: prefixes("203.0.113.7/32")},
		{name: "emptied for good", cut: "", want: []netip.Prefix{}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			path := filepath.Join(t.TempDir(), "ipblocklist.txt")
			write := func(body string) {
				if err := os.WriteFile(path, []byte(body), 0o644); err != nil {
					t.Fatal(err)
				}
			}
			write(feodoList("192.0.2.44", "198.51.100.23"))
			var rec recorder
			m := NewManager(rec.options())
			// 2 s: the retry after a rejection comes 500 ms later, time
			// enough to finish the rewrite.
			if err := m.SetFeeds([]Feed{{Name: "A", URL: "file://" + path, Interval: 2 * time.Second}}); err != nil {
				t.Fatal(err)
			}
			run(t, m)
			waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })

			write(tt.cut)
			waitFor(t, 5*time.Second, "the rejection", func() bool { return state(m, "A").Failures >= 1 })
			if tt.rewritten {
				write(feodoList("203.0.113.7"))
			}
			if _, ok := rec.event("A", slog.LevelWarn, "list in place of a feodo list of 2 entries: it is accepted if the feed is still empty after 2s; keeping 2 entries"); !ok {
				t.Errorf("no rejection event:%s", rec.dump())
			}
			waitFor(t, 5*time.Second, "the second update", func() bool { return len(rec.updatesOf("A")) == 2 })
			if diff := cmp.Diff(tt.want, rec.updatesOf("A")[1].entries, cmpPrefix); diff != "" {
				t.Errorf("entries mismatch (-want +got):\n%s", diff)
			}
		})
	}
}

// TestManagerAcceptsFeodoEmptyList: Feodo's recommended list is often empty,
// banner and "# END 0 entries": same format, so it replaces a short list at
// once.
func TestManagerAcceptsFeodoEmptyList(t *testing.T) {
	t.Parallel()
	fs := newFeedServer(t, feodoList("192.0.2.44", "198.51.100.23"))
	var rec recorder
	m := NewManager(rec.options())
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the first update", func() bool { return len(rec.updatesOf("A")) == 1 })
	fs.set(feodoList(), 0)
	waitFor(t, 5*time.Second, "the empty list", func() bool { return len(rec.updatesOf("A")) == 2 })
	if s := state(m, "A"); s.Failures != 0 || s.Entries != 0 || len(rec.updatesOf("A")[1].entries) != 0 {
		t.Errorf("state after the empty list: %+v:%s", s, rec.dump())
	}
}

// A fetch under way shows in the feed's state from its start to its
// answer: a server that hangs holds it for up to the fetch timeout, with
// no failure to show yet.
func TestManagerStateShowsFetchUnderWay(t *testing.T) {
	t.Parallel()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		fmt.Fprintln(w, "198.51.100.1")
	}))
	t.Cleanup(srv.Close)
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	m := NewManager(new(recorder).options())
	if err := m.SetFeeds([]Feed{{Name: "A", URL: srv.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	before := time.Now()
	run(t, m)
	waitFor(t, 5*time.Second, "the fetch to start", func() bool { return !state(m, "A").FetchingSince.IsZero() })
	if s := state(m, "A"); s.FetchingSince.Before(before) || s.Failures != 0 {
		t.Errorf("state while the server hangs: %+v", s)
	}
	close(release)
	waitFor(t, 5*time.Second, "the fetch to end", func() bool { return state(m, "A").Entries == 1 })
	if s := state(m, "A"); !s.FetchingSince.IsZero() {
		t.Errorf("FetchingSince = %v after the fetch ended", s.FetchingSince)
	}
}

// A fetch the host's own firewall blocks (default_outbound_policy block)
// times out; it fails with an error that says so, naming the connection
// and what to do, not with a bare timeout. The resolvers are named when no
// server was dialed (the name did not resolve). An error that proves the
// connection got through (refused: pfw never resets; an HTTP answer)
// names no firewall.
func TestManagerNamesTheFirewallThatBlocksAFetch(t *testing.T) {
	t.Parallel()
	blocked := func(proto uint8, a netip.Addr, port uint16) string {
		return "blocked outbound by Default policy; allow it"
	}
	dropAll := &http.Client{Transport: &http.Transport{DialContext: func(context.Context, string, string) (net.Conn, error) {
		return nil, &net.OpError{Op: "dial", Net: "tcp", Err: timeoutError{}}
	}}}
	var rec recorder
	opts := rec.options()
	opts.Blocked, opts.Fetcher = blocked, &Fetcher{Client: dropAll}
	m := NewManager(opts)
	m.resolvConfs = resolvConf(t, "")
	if err := m.SetFeeds([]Feed{{Name: "A", URL: "http://192.0.2.1:8080/list.txt", Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the failure", func() bool { return state(m, "A").Failures >= 1 })
	want := "(this firewall blocks pfwd's own connection to 192.0.2.1:8080: blocked outbound by Default policy; allow it)"
	if got := state(m, "A").LastError; !strings.HasSuffix(got, want) {
		t.Errorf("last error %q, want it to end in %q", got, want)
	}

	resolver := netip.MustParseAddr("192.0.2.53")
	timeout := &net.DNSError{Err: "i/o timeout", Name: "feeds.example", IsTimeout: true}
	if got, way := m.blockedHere(timeout, "https://feeds.example/list.txt", nil, []netip.Addr{resolver}); got != "this firewall blocks pfwd's DNS query to 192.0.2.53:53: blocked outbound by Default policy; allow it" || way.proto != 17 {
		t.Errorf("unresolved name: %q, %+v", got, way)
	}
	for _, err := range []error{
		&net.OpError{Op: "dial", Net: "tcp", Err: syscall.ECONNREFUSED},
		errors.New("HTTP 503 Service Unavailable"),
		&net.DNSError{Err: "no such host", Name: "feeds.example", IsNotFound: true},
	} {
		if got, _ := m.blockedHere(err, "https://192.0.2.1/list.txt", nil, []netip.Addr{resolver}); got != "" {
			t.Errorf("%v: %q, want no firewall named: the connection got through", err, got)
		}
	}
	if got, _ := m.blockedHere(timeout, "file:///srv/list.txt", nil, []netip.Addr{resolver}); got != "" {
		t.Errorf("a file:// feed: %q, want nothing", got)
	}
}

type timeoutError struct{}

func (timeoutError) Error() string   { return "i/o timeout" }
func (timeoutError) Timeout() bool   { return true }
func (timeoutError) Temporary() bool { return true }

// A config change that lets pfwd's own fetch out shows at once:
// RetryFailed fetches a feed the firewall blocked, once the rules let its
// way through, instead of after its backoff (30 s and more). A feed that
// fails for any other reason keeps its backoff: a script's burst of edits
// must not hammer a server that is down.
func TestManagerRetryFailedFetchesAtOnce(t *testing.T) {
	t.Parallel()
	body, _ := docList(2)
	fs := newFeedServer(t, body)
	down := newFeedServer(t, body)
	down.set(body, http.StatusServiceUnavailable)
	var blocking atomic.Bool
	blocking.Store(true)
	firewall := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, network, addr string) (net.Conn, error) {
		if blocking.Load() && strings.HasSuffix(fs.URL, addr) {
			return nil, &net.OpError{Op: "dial", Net: network, Err: timeoutError{}}
		}
		return (&net.Dialer{}).DialContext(ctx, network, addr)
	}}}
	var rec recorder
	opts := rec.options()
	opts.Fetcher = &Fetcher{Client: firewall}
	opts.Blocked = func(uint8, netip.Addr, uint16) string {
		if blocking.Load() {
			return "blocked outbound by Default policy"
		}
		return ""
	}
	m := NewManager(opts)
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Hour}, {Name: "down", URL: down.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "the failures", func() bool { return state(m, "A").Failures >= 1 && state(m, "down").Failures >= 1 })
	if next := time.Until(state(m, "A").NextFetch); next < 20*time.Second {
		t.Fatalf("next fetch in %v: the backoff is not what the test relies on", next)
	}
	m.RetryFailed() // still blocked: nothing
	time.Sleep(minRetryAfterFix + 100*time.Millisecond)
	blocking.Store(false)
	requests := down.count()
	for range 20 {
		m.RetryFailed()
	}
	waitFor(t, 5*time.Second, "the update after RetryFailed", func() bool { return len(rec.updatesOf("A")) == 1 })
	time.Sleep(200 * time.Millisecond)
	if n := down.count(); n != requests {
		t.Errorf("the server that is down was asked %d more times, want none before its backoff", n-requests)
	}
}
