package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/pfw/pfw/control"
)

// lockedBuffer is a log sink the socket keeper writes while the test reads.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// testSocket makes a control socket in a temporary directory, answering
// with a running pfwd's status and logging to log (nil: nowhere).
func testSocket(t *testing.T, log *lockedBuffer) (*controlSocket, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pfwd.sock")
	l, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	lg := slog.New(slog.DiscardHandler)
	if log != nil {
		lg = slog.New(NewLineHandler(log, slog.LevelInfo, false))
	}
	return newControlSocket(path, l, func() control.Status { return control.Status{Running: true, PID: 42} }, lg), path
}

// A removed control socket file is made again; a file put in its place is
// left alone and reported once; the socket goes when pfwd stops.
func TestControlSocketRemade(t *testing.T) {
	var logBuf lockedBuffer
	c, path := testSocket(t, &logBuf)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx, 20*time.Millisecond) }()
	answers := func() bool {
		q, qcancel := context.WithTimeout(context.Background(), time.Second)
		defer qcancel()
		st, err := control.Query(q, path)
		return err == nil && st.PID == 42
	}
	waitFor := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(3 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("%s did not happen within 3 s; log:\n%s", what, logBuf.String())
			}
			time.Sleep(10 * time.Millisecond)
		}
	}
	waitFor("the first answer", answers)

	for i := range 3 {
		if err := os.Remove(path); err != nil {
			t.Fatal(err)
		}
		waitFor("an answer after the file was removed", answers)
		if n := strings.Count(logBuf.String(), "The control socket's file was removed: made it again"); n != i+1 {
			t.Errorf("%d warnings after %d removals", n, i+1)
		}
		if fi, err := os.Stat(path); err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("the new socket: %v, mode %v; want 0600", err, fi.Mode().Perm())
		}
	}

	// A regular file in its place is not removed: reported, once.
	os.Remove(path)
	if err := os.WriteFile(path, []byte("not a socket"), 0o644); err != nil {
		t.Fatal(err)
	}
	waitFor("the error", func() bool { return strings.Contains(logBuf.String(), "could not be made again") })
	time.Sleep(100 * time.Millisecond)
	if n := strings.Count(logBuf.String(), "could not be made again"); n != 1 {
		t.Errorf("%d errors for one lasting problem, want 1", n)
	}
	if data, _ := os.ReadFile(path); string(data) != "not a socket" {
		t.Errorf("the file in the socket's place was changed: %q", data)
	}
	os.Remove(path)
	waitFor("an answer once the path is free", answers)

	// Shutdown closes the socket before the keeper has seen ctx end: the
	// keeper must not take the missing file for a removal and make it
	// again, or a stale socket would outlive pfwd.
	c.close()
	time.Sleep(100 * time.Millisecond)
	cancel()
	<-done
	if _, err := os.Lstat(path); !os.IsNotExist(err) {
		t.Errorf("the socket file outlived close: %v", err)
	}
	// Once run has returned, a request still in a server's hands reads
	// nothing of pfwd: shutdown is closing it.
	if st := c.answer(); st.Running {
		t.Errorf("an answer after run returned: %+v; want the zero status", st)
	}
}

// A directory made where the socket was is left alone, and both pfwd's
// log and fwctl's question say a directory is there: not a mode of
// "d---------", not "pfwd is not running".
func TestControlSocketReplacedByADirectory(t *testing.T) {
	var logBuf lockedBuffer
	c, path := testSocket(t, &logBuf)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx, 20*time.Millisecond) }()
	defer func() { cancel(); <-done; c.close() }()
	if err := os.Remove(path); err != nil {
		t.Fatal(err)
	}
	if err := os.Mkdir(path, 0o755); err != nil {
		t.Fatal(err)
	}
	const logged = "The control socket's file was removed or replaced and could not be made again"
	deadline := time.Now().Add(3 * time.Second)
	for !strings.Contains(logBuf.String(), logged) {
		if time.Now().After(deadline) {
			t.Fatalf("no error within 3 s; log:\n%s", logBuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	if out := logBuf.String(); !strings.Contains(out, "exists and is not a socket (it is a directory)") || strings.Contains(out, "---------") {
		t.Errorf("the log does not say a directory took the socket's place:\n%s", out)
	}
	_, err := control.Query(t.Context(), path)
	if err == nil || errors.Is(err, control.ErrNotRunning) || !strings.Contains(err.Error(), "it is a directory") {
		t.Errorf("Query = %v, want it to say a directory is there, not that pfwd is not running", err)
	}
	if fi, err := os.Lstat(path); err != nil || !fi.IsDir() {
		t.Errorf("the directory in the socket's place was touched: %v", err)
	}
}

// Stopping removes pfwd's own socket file, never a file that took its
// place.
func TestControlSocketCloseSparesOthersFiles(t *testing.T) {
	c, path := testSocket(t, nil)
	os.Remove(path)
	if err := os.WriteFile(path, []byte("someone else's"), 0o644); err != nil {
		t.Fatal(err)
	}
	c.close()
	if data, err := os.ReadFile(path); err != nil || string(data) != "someone else's" {
		t.Errorf("the file at the socket's path after close: %q, %v", data, err)
	}
}

// A server that stops on its own (its listener failed) is logged, and the
// socket is made again at once, whatever its file: fwctl must not call a
// filtering pfwd "not running".
func TestControlSocketServerDeathRemade(t *testing.T) {
	var logBuf lockedBuffer
	c, path := testSocket(t, &logBuf)
	ctx, cancel := context.WithCancel(t.Context())
	done := make(chan struct{})
	// No file checks: only the server's end may bring the socket back.
	go func() { defer close(done); c.run(ctx, time.Hour) }()
	defer func() { cancel(); <-done; c.close() }()
	answers := func() bool {
		q, qcancel := context.WithTimeout(context.Background(), time.Second)
		defer qcancel()
		st, err := control.Query(q, path)
		return err == nil && st.PID == 42
	}
	deadline := time.Now().Add(3 * time.Second)
	for !answers() {
		if time.Now().After(deadline) {
			t.Fatal("no first answer within 3 s")
		}
		time.Sleep(10 * time.Millisecond)
	}

	c.mu.Lock()
	c.l.Close() // Accept fails: the server stops
	c.mu.Unlock()
	deadline = time.Now().Add(3 * time.Second)
	for !answers() {
		if time.Now().After(deadline) {
			t.Fatalf("no answer within 3 s after the server stopped; log:\n%s", logBuf.String())
		}
		time.Sleep(10 * time.Millisecond)
	}
	log := logBuf.String()
	for _, want := range []string{" - ERROR - The control socket stopped answering: making it again", "use of closed network connection",
		" - WARNING - Made the control socket again: fwctl reaches pfwd"} {
		if !strings.Contains(log, want) {
			t.Errorf("the log lacks %q:\n%s", want, log)
		}
	}
}

// Stopping spares another pfwd's socket at the path even when the server
// closes its listener first, as it does once the context ends: a listener
// that unlinked its path on close removed the other's socket (found by the
// race detector: stop pfwd A after B took the path).
func TestControlSocketStopSparesAnotherSocket(t *testing.T) {
	c, path := testSocket(t, nil)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { defer close(done); c.run(ctx, time.Hour) }() // never checks the file: the other socket stays unnoticed
	os.Remove(path)
	other, err := control.Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	defer other.Close()
	cancel()
	<-done // the server has closed its listener
	c.close()
	if fi, err := os.Lstat(path); err != nil || fi.Mode().Type() != os.ModeSocket {
		t.Fatalf("the other socket at %s after stopping: %v, %v", path, fi, err)
	}
}
