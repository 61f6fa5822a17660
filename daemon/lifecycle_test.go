package daemon

import (
	"context"
	"log/slog"
	"slices"
	"strings"
	"testing"
	"time"
)

// shutdownDaemon is a Daemon with nothing started and short shutdown
// bounds, logging into the returned buffer.
func shutdownDaemon(grace, wait time.Duration) (*Daemon, *lockedBuffer) {
	logBuf := new(lockedBuffer)
	d := newDaemon(Options{}, slog.New(NewLineHandler(logBuf, slog.LevelInfo, false)))
	d.grace, d.stopWait = grace, wait
	return d, logBuf
}

// Shutdown stops what started, newest first, each goroutine after its
// context ended.
func TestShutdownStopsNewestFirst(t *testing.T) {
	d, _ := shutdownDaemon(time.Second, time.Second)
	var order []string
	d.onStop(func() { order = append(order, "listener") })
	for _, name := range []string{"writer", "feeds", "control socket"} {
		d.spawn(context.Background(), name, func(ctx context.Context) {
			<-ctx.Done()
			order = append(order, name) // no race: stops run one at a time and wait
		})
	}
	d.shutdown()
	if want := []string{"control socket", "feeds", "writer", "listener"}; !slices.Equal(order, want) {
		t.Errorf("stopped %q; want %q", order, want)
	}
}

// Work that runs under the daemon's lifetime (a threat save) is cut short
// once the grace is over: shutdown then goes on without a complaint.
func TestShutdownGraceEndsLifetime(t *testing.T) {
	d, logBuf := shutdownDaemon(50*time.Millisecond, 5*time.Second)
	d.spawn(context.Background(), "the threat feeds", func(context.Context) {
		<-d.life.Done() // a feed update's save, which outlives the feeds' context
	})
	start := time.Now()
	d.shutdown()
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("shutdown took %v; want about the 50 ms grace", took)
	}
	if strings.Contains(logBuf.String(), "did not stop in time") {
		t.Errorf("a part that stopped within the grace was reported:\n%s", logBuf.String())
	}
}

// What does not stop in time is left behind, and named in the log:
// shutdown must end before systemd kills pfwd.
func TestShutdownBounded(t *testing.T) {
	d, logBuf := shutdownDaemon(50*time.Millisecond, 100*time.Millisecond)
	stuck := make(chan struct{})
	defer close(stuck)
	d.spawn(context.Background(), "the stuck part", func(context.Context) { <-stuck })
	d.goSave(func() { <-stuck })
	start := time.Now()
	d.shutdown()
	// A writer whose stop timed out may still ask for a save: it is
	// dropped, at once, for the store is closing.
	asked := time.Now()
	d.goSave(func() { t.Error("a save started after shutdown had waited for saves") })
	if waited := time.Since(asked); waited > 100*time.Millisecond {
		t.Errorf("asking for a save after shutdown waited %v", waited)
	}
	if took := time.Since(start); took > 2*time.Second {
		t.Errorf("shutdown took %v; want about two waits of 100 ms", took)
	}
	for _, want := range []string{
		" - ERROR - Shutdown: the stuck part did not stop in time; going on without it waited=100ms",
		" - ERROR - Shutdown: saving the threat entries to the database did not stop in time; going on without it waited=100ms",
	} {
		if !strings.Contains(logBuf.String(), want) {
			t.Errorf("the log lacks %q:\n%s", want, logBuf.String())
		}
	}
}
