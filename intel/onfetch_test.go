package intel

import (
	"net/netip"
	"sync"
	"testing"
	"time"
)

// OnFetch brackets each fetch, the body's parse included: the daemon
// readies its memory limit for a large list there. Its end comes before
// OnUpdate hands the list over, and once per fetch, failed ones too.
func TestManagerOnFetchBracketsEachFetch(t *testing.T) {
	t.Parallel()
	body, _ := docList(3)
	fs := newFeedServer(t, body)
	var mu sync.Mutex
	var begun, ended int
	var endedBeforeUpdate []bool
	var rec recorder
	opts := rec.options()
	onUpdate := opts.OnUpdate
	opts.OnUpdate = func(f Feed, entries []netip.Prefix) {
		mu.Lock()
		endedBeforeUpdate = append(endedBeforeUpdate, ended == begun)
		mu.Unlock()
		onUpdate(f, entries)
	}
	opts.OnFetch = func() func() {
		mu.Lock()
		begun++
		mu.Unlock()
		return func() {
			mu.Lock()
			ended++
			mu.Unlock()
		}
	}
	m := NewManager(opts)
	if err := m.SetFeeds([]Feed{{Name: "A", URL: fs.URL, Interval: time.Second, Level: "high"}}); err != nil {
		t.Fatal(err)
	}
	run(t, m)
	waitFor(t, 5*time.Second, "a fetch after the first update", func() bool { return len(rec.updatesOf("A")) == 1 && fs.count() >= 2 })
	waitFor(t, 2*time.Second, "every fetch to end", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return begun >= 2 && ended == begun
	})
	mu.Lock()
	defer mu.Unlock()
	if len(endedBeforeUpdate) != 1 || !endedBeforeUpdate[0] {
		t.Errorf("OnFetch's end before OnUpdate: %v, want [true]", endedBeforeUpdate)
	}
}
