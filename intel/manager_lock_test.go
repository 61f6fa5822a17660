package intel

import (
	"context"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/google/go-cmp/cmp"
)

// heldSanitize makes m's first Sanitize wait until released; entered is
// closed as it starts, calls counts every Sanitize. A test releases it in
// a cleanup registered after run's, so that it runs first (cleanups run
// last in, first out) and Run can return.
type heldSanitize struct {
	entered chan struct{}
	release func()
	calls   atomic.Int32
}

func holdSanitize(t *testing.T, m *Manager) *heldSanitize {
	h := &heldSanitize{entered: make(chan struct{})}
	released := make(chan struct{})
	var once sync.Once
	h.release = func() { once.Do(func() { close(released) }) }
	m.sanitize = func(entries []netip.Prefix, p Protected) ([]netip.Prefix, []Skipped) {
		if h.calls.Add(1) == 1 {
			close(h.entered)
			<-released
		}
		return Sanitize(entries, p)
	}
	return h
}

func (h *heldSanitize) waitEntered(t *testing.T) {
	t.Helper()
	select {
	case <-h.entered:
	case <-time.After(5 * time.Second):
		t.Fatal("the fetched list was never sanitized")
	}
}

// promptly fails the test when call has not returned within 2 s: it
// needs the Manager's lock, which no one may hold while a list is
// sanitized. (A failing test then releases Sanitize in its cleanup.)
func promptly(t *testing.T, what string, call func()) {
	t.Helper()
	done := make(chan struct{})
	go func() { defer close(done); call() }()
	select {
	case <-done:
	case <-time.After(2 * time.Second):
		t.Fatalf("%s waited for Sanitize: the lock is held while a list is sanitized", what)
	}
}

// sanitizing runs a Manager with feed A fetching url, and returns once the
// fetched list is held inside Sanitize (released at cleanup).
func sanitizing(t *testing.T, url string) (*Manager, *recorder, *heldSanitize) {
	t.Helper()
	rec := new(recorder)
	m := NewManager(rec.options())
	held := holdSanitize(t, m)
	if err := m.SetFeeds([]Feed{{Name: "A", URL: url, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	t.Cleanup(held.release)
	held.waitEntered(t)
	return m, rec, held
}

// A list is sanitized without the Manager's lock (90 ms for 250,000
// entries), so pfwd's status, which calls States, answers meanwhile; a
// whitelist set while it runs still applies to the list put in force.
func TestManagerStatesAnswerWhileSanitizing(t *testing.T) {
	t.Parallel()
	body, all := docList(5)
	m, rec, held := sanitizing(t, newFeedServer(t, body).URL)

	var s []FeedState
	promptly(t, "States", func() { s = m.States() })
	if len(s) != 1 || s[0].Entries != 0 || !s[0].LastSuccess.IsZero() {
		t.Errorf("States while sanitizing = %+v, want A with nothing in force yet", s)
	}

	whitelisted := all[2]
	promptly(t, "SetProtected", func() { m.SetProtected([]netip.Prefix{whitelisted}) })
	held.release()
	waitFor(t, 5*time.Second, "the update", func() bool { return len(rec.updatesOf("A")) == 1 })
	want := append(append([]netip.Prefix{}, all[:2]...), all[3:]...)
	if diff := cmp.Diff(want, rec.updatesOf("A")[0].entries, cmpPrefix); diff != "" {
		t.Errorf("entries in force (-want +got):\n%s", diff)
	}
	if n := held.calls.Load(); n != 2 {
		t.Errorf("Sanitize ran %d times, want 2: again after the whitelist changed", n)
	}
}

// The answer of the old URL, sanitized while the URL changed, is dropped:
// only the new URL's list is ever put in force.
func TestManagerDropsListSanitizedAcrossURLChange(t *testing.T) {
	t.Parallel()
	oldBody, _ := docList(3)
	newServer := newFeedServer(t, "192.0.2.2\n")
	m, rec, held := sanitizing(t, newFeedServer(t, oldBody).URL)
	var err error
	promptly(t, "SetFeeds", func() { err = m.SetFeeds([]Feed{{Name: "A", URL: newServer.URL + "/new", Interval: time.Hour}}) })
	if err != nil {
		t.Fatal(err)
	}
	held.release()
	// One goroutine fetches a feed: the old answer is done with before the
	// new URL is fetched.
	waitFor(t, 5*time.Second, "the new URL's update", func() bool { return len(rec.updatesOf("A")) > 0 })
	ups := rec.updatesOf("A")
	if len(ups) != 1 {
		t.Fatalf("%d updates, want only the new URL's: %+v", len(ups), ups)
	}
	if diff := cmp.Diff(prefixes("192.0.2.2/32"), ups[0].entries, cmpPrefix); diff != "" {
		t.Errorf("entries in force (-want +got):\n%s", diff)
	}
}

// A feed removed while its list is sanitized gets nothing put in force.
func TestManagerDropsListOfFeedRemovedWhileSanitizing(t *testing.T) {
	t.Parallel()
	body, _ := docList(3)
	fs := newFeedServer(t, body)
	var rec recorder
	m := NewManager(rec.options())
	held := holdSanitize(t, m)
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	removed := m.feeds["A"]
	m.mu.Unlock()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- m.Run(ctx) }()
	stop := sync.OnceValue(func() error { held.release(); cancel(); return <-done })
	t.Cleanup(func() { stop() })
	held.waitEntered(t)
	var err error
	promptly(t, "SetFeeds", func() { err = m.SetFeeds(nil) })
	if err != nil {
		t.Fatal(err)
	}
	held.release()
	// The update removal queued (nil entries) is delivered before Run is
	// stopped, which waits for the fetch to end.
	waitFor(t, 5*time.Second, "the removal's update", func() bool { return len(rec.updatesOf("A")) > 0 })
	if err := stop(); err != nil {
		t.Fatal(err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if removed.entries != nil || !removed.state.LastSuccess.IsZero() {
		t.Errorf("the removed feed took its list: %d entries, last success %v", len(removed.entries), removed.state.LastSuccess)
	}
	for _, u := range rec.updatesOf("A") {
		if u.entries != nil {
			t.Errorf("an update with %d entries for a removed feed", len(u.entries))
		}
	}
}
