package store

import (
	"os"
	"testing"
	"time"
)

// A retention pass the database's reopening interrupts must end there:
// its bounds (the highest id beyond the row cap) are the old file's. On
// ext4 the fresh file often gets the inode the old one just freed, so a
// pass that knew its file by inode went on deleting the new file's rows
// with ids at or below the old bound (it failed 2 runs in 6 that way);
// the Store now counts its openings.
func TestPruneStopsAtReopen(t *testing.T) {
	s := openTemp(t)
	s.pruneChunkRows = 20
	const limit, backlog, fresh = 100, 100_000, 50
	fillBlocked(t, s, backlog)

	pruned := make(chan Pruned, 1)
	reopened := make(chan struct{}, 1)
	startWriter(t, s, WriterConfig{CheckEvery: 10 * time.Millisecond,
		Retention: Retention{MaxRows: limit, Every: time.Hour},
		OnPrune:   func(p Pruned) { pruned <- p },
		OnReopen: func(err error) {
			if err != nil {
				t.Errorf("reopen: %v", err)
				return
			}
			// Rows in the fresh file before the writer's next step.
			fillBlocked(t, s, fresh)
			reopened <- struct{}{}
		}}, nil)
	time.Sleep(30 * time.Millisecond)
	oldID, _ := idOf(s.path)
	if err := os.Remove(s.path); err != nil {
		t.Fatal(err)
	}
	select {
	case <-reopened:
	case <-time.After(10 * time.Second):
		t.Fatal("no reopen")
	}
	newID, _ := idOf(s.path)
	var p Pruned
	select {
	case p = <-pruned:
	case <-time.After(time.Minute):
		t.Fatal("no OnPrune")
	}
	t.Logf("old inode %v, new inode %v, OnPrune %+v", oldID, newID, p)
	if p.Blocked >= backlog-limit {
		t.Skip("the pass ended before the reopen")
	}
	if n := count(t, s, "blocked_packets"); n != fresh {
		t.Errorf("%d rows in the fresh database after the interrupted pass, want the %d written to it", n, fresh)
	}
}
