package daemon

import (
	"context"
	"sync"
	"time"
)

// Shutdown's bounds (see shutdown).
const (
	// shutdownGrace is how long database work begun before shutdown may
	// go on (a feed's quarter of a million threat rows takes seconds):
	// then the daemon's lifetime context ends, cutting it short.
	shutdownGrace = 5 * time.Second
	// stopWait is how long shutdown waits for one part to stop once
	// asked: past the grace, and past the log writer's final flush (5 s).
	stopWait = 10 * time.Second
)

// spawn runs run on a goroutine of its own, under a context derived from
// parent, and registers its stop (see onStop): cancel that context and
// wait for run to return, at most d.stopWait. name says what it is in the
// log line of a stop that timed out.
func (d *Daemon) spawn(parent context.Context, name string, run func(context.Context)) {
	ctx, cancel := context.WithCancel(parent)
	done := make(chan struct{})
	go func() {
		defer close(done)
		run(ctx)
	}()
	d.onStop(func() {
		cancel()
		d.waitFor(name, done)
	})
}

// onStop registers stop for shutdown, which calls the stops newest first:
// what started last, and may use what started before it, stops first.
func (d *Daemon) onStop(stop func()) {
	d.stops = append(d.stops, stop)
}

// runStops calls the registered stops, newest first.
func (d *Daemon) runStops() {
	for i := len(d.stops) - 1; i >= 0; i-- {
		d.stops[i]()
	}
	d.stops = nil
}

// waitFor waits until done is closed, at most d.stopWait, and reports
// whether it was. Shutdown must end (systemd kills pfwd 30 s after
// SIGTERM, the table still in place): what does not stop in time is left
// running, and named in the log.
func (d *Daemon) waitFor(what string, done <-chan struct{}) bool {
	t := time.NewTimer(d.stopWait)
	defer t.Stop()
	select {
	case <-done:
		return true
	case <-t.C:
		d.log.Error("Shutdown: "+what+" did not stop in time; going on without it", "waited", d.stopWait)
		return false
	}
}

// waitSaves waits for the threat saves running in the background (see
// waitFor).
func (d *Daemon) waitSaves() {
	done := make(chan struct{})
	go func() {
		d.saves.close() // waits for the saves under way; none starts after
		close(done)
	}()
	d.waitFor("saving the threat entries to the database", done)
}

// goSave runs a database save in the background, unless shutdown has
// begun waiting for them (a writer whose stop timed out may still ask for
// one then): it is dropped, the store is about to close.
func (d *Daemon) goSave(save func()) {
	if !d.saves.enter() {
		return
	}
	go func() {
		defer d.saves.leave()
		save()
	}()
}

// gate lets calls in until it is closed; close waits for the calls inside
// to leave. A server whose handlers read the daemon's parts calls them
// through one and closes it on its way out, so that once it stopped no
// request of its reads what shutdown closes next: http.Server's Serve
// returns while handlers still run.
type gate struct {
	mu     sync.RWMutex
	closed bool
}

// enter reports whether the call may go on; if so, leave must follow. It
// never waits: a close under way (waiting for the calls inside to leave)
// already turns new calls away.
func (g *gate) enter() bool {
	if !g.mu.TryRLock() {
		return false
	}
	if g.closed {
		g.mu.RUnlock()
		return false
	}
	return true
}

func (g *gate) leave() { g.mu.RUnlock() }

func (g *gate) close() {
	g.mu.Lock()
	defer g.mu.Unlock()
	g.closed = true
}
