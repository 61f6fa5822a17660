package control

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pfw/pfw/internal/asuser"
)

func TestServeAndQuery(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run", "pfwd.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Mode()&os.ModeSocket == 0 {
		t.Fatalf("socket mode %v, err %v; want a 0600 socket", fi.Mode(), err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- Serve(ctx, l, func() Status {
			return Status{Running: true, PID: 42, Feeds: []FeedStatus{{Name: "f", Entries: 3}}}
		}, nil)
	}()
	st, err := Query(ctx, path)
	if err != nil {
		t.Fatal(err)
	}
	if !st.Running || st.PID != 42 || len(st.Feeds) != 1 || st.Feeds[0].Entries != 3 {
		t.Errorf("Query = %+v", st)
	}
	if _, err := Listen(path); err == nil {
		t.Error("Listen took over the socket of a live daemon")
	}
	cancel()
	if err := <-done; err != nil {
		t.Errorf("Serve after cancel: %v", err)
	}
}

func TestListenReplacesStaleSocket(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pfwd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	l.(*net.UnixListener).SetUnlinkOnClose(false)
	l.Close() // the file stays, as after kill -9
	l2, err := Listen(path)
	if err != nil {
		t.Fatalf("Listen over a stale socket: %v", err)
	}
	l2.Close()
}

func TestQueryNotRunning(t *testing.T) {
	_, err := Query(context.Background(), filepath.Join(t.TempDir(), "none.sock"))
	if !errors.Is(err, ErrNotRunning) {
		t.Errorf("Query without a daemon = %v, want ErrNotRunning", err)
	}
}

// What is not a socket refuses connections as a socket nobody listens on
// does, but a pfwd may run (its socket file was replaced): Query says
// what is there rather than that pfwd is not running.
func TestQueryOnWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "file")
	if err := os.WriteFile(file, nil, 0o600); err != nil {
		t.Fatal(err)
	}
	sub := filepath.Join(dir, "dir")
	if err := os.Mkdir(sub, 0o755); err != nil {
		t.Fatal(err)
	}
	for path, kind := range map[string]string{file: "a regular file", sub: "a directory"} {
		_, err := Query(context.Background(), path)
		if err == nil || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "is not a socket (it is "+kind+")") {
			t.Errorf("Query(%s) = %v, want an error naming %s, not ErrNotRunning", filepath.Base(path), err, kind)
		}
	}
}

// A pfwd that takes the connection but does not answer (still starting:
// its socket is made first, and served once the config is loaded) is
// said to be so, not "context deadline exceeded".
func TestQueryNoAnswerInTime(t *testing.T) {
	path := filepath.Join(t.TempDir(), "pfwd.sock")
	ln, err := net.Listen("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close() // never accepted: the connection waits in the backlog
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err = Query(ctx, path)
	if err == nil || errors.Is(err, ErrNotRunning) || !strings.Contains(err.Error(), "did not answer in time: it may still be starting") {
		t.Errorf("Query of a pfwd that does not answer: %v", err)
	}
}

// A --socket that is a symlink to pfwd's socket, with pfwd stopped (the
// link dangling, or its target a socket nobody listens on), means pfwd is
// not running, not "a symbolic link".
func TestQueryThroughASymlinkWithPfwdStopped(t *testing.T) {
	dir := t.TempDir()
	dangling := filepath.Join(dir, "dangling")
	if err := os.Symlink(filepath.Join(dir, "gone.sock"), dangling); err != nil {
		t.Fatal(err)
	}
	stale := filepath.Join(dir, "stale.sock")
	ln, err := net.Listen("unix", stale)
	if err != nil {
		t.Fatal(err)
	}
	ln.(*net.UnixListener).SetUnlinkOnClose(false)
	ln.Close()
	toStale := filepath.Join(dir, "to-stale")
	if err := os.Symlink(stale, toStale); err != nil {
		t.Fatal(err)
	}
	for _, path := range []string{dangling, toStale} {
		if _, err := Query(context.Background(), path); !errors.Is(err, ErrNotRunning) {
			t.Errorf("Query(%s) = %v, want ErrNotRunning", filepath.Base(path), err)
		}
	}
}

// A --socket that names a file or a directory by mistake must not delete
// it: a typo could name the config file.
func TestListenRefusesToRemoveWhatIsNotASocket(t *testing.T) {
	dir := t.TempDir()
	file := filepath.Join(dir, "firewall_rules.json")
	if err := os.WriteFile(file, []byte("important"), 0o644); err != nil {
		t.Fatal(err)
	}
	empty := filepath.Join(dir, "empty")
	os.Mkdir(empty, 0o755)
	for path, kind := range map[string]string{file: "a regular file", empty: "a directory"} {
		_, err := Listen(path)
		if err == nil || !strings.Contains(err.Error(), "exists and is not a socket (it is "+kind+")") {
			t.Errorf("Listen(%s) = %v, want a refusal naming %s", filepath.Base(path), err, kind)
		}
	}
	if b, err := os.ReadFile(file); err != nil || string(b) != "important" {
		t.Errorf("the file is %q, %v after Listen", b, err)
	}
	if fi, err := os.Stat(empty); err != nil || !fi.IsDir() {
		t.Errorf("the directory is gone after Listen: %v", err)
	}
}

func TestLongSocketPathSaysSo(t *testing.T) {
	path := "/tmp/" + strings.Repeat("d", 100) + "/pfwd.sock"
	want := "longer than the 107 a socket path may have"
	if _, err := Listen(path); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Listen = %v, want %q", err, want)
	}
	if _, err := Query(context.Background(), path); err == nil || !strings.Contains(err.Error(), want) {
		t.Errorf("Query = %v, want %q", err, want)
	}
}

// Clients holding connections open cannot take more than MaxConns of
// pfwd's descriptors (the rest wait in the backlog), service resumes when
// they go, and a connection left idle after a request is closed.
func TestServeCapsAndClosesIdleConnections(t *testing.T) {
	ctx, path := serveRunning(t)

	fds := func() int {
		ents, _ := os.ReadDir("/proc/self/fd")
		return len(ents)
	}
	before := fds()
	var held []net.Conn
	for range 200 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, c)
	}
	time.Sleep(200 * time.Millisecond)
	// Our 200 client ends, plus the server's accepted ends.
	if server := fds() - before - len(held); server > MaxConns+2 {
		t.Errorf("the server holds %d connections, want at most %d", server, MaxConns)
	}
	for _, c := range held {
		c.Close()
	}
	if _, err := Query(ctx, path); err != nil {
		t.Fatalf("no answer once the clients left: %v", err)
	}

	// Clients that hold every slot and never send a request are dropped
	// after idleTimeout: Query gets its answer while they stay connected.
	for range MaxConns + 4 {
		c, err := net.Dial("unix", path)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
	}
	time.Sleep(100 * time.Millisecond)
	if _, err := Query(ctx, path); err != nil {
		t.Errorf("no answer while %d connections sat idle: %v", MaxConns+4, err)
	}

	c, err := net.Dial("unix", path)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if _, err := c.Write([]byte("GET /status HTTP/1.1\r\nHost: pfwd\r\n\r\n")); err != nil {
		t.Fatal(err)
	}
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	start := time.Now()
	if _, err := io.Copy(io.Discard, c); err != nil {
		t.Fatalf("the idle connection was not closed within 10 s: %v", err)
	}
	if idle := time.Since(start); idle < idleTimeout*8/10 {
		t.Errorf("closed after %v, before the %v idle timeout", idle, idleTimeout)
	}
}

// Query closes its connection: a client asking every 50 ms (fwctl waiting
// for a reload) must not fill the server's MaxConns slots with kept-alive
// connections.
func TestQueriesDoNotHoldConnections(t *testing.T) {
	ctx, path := serveRunning(t)
	for i := range 3 * MaxConns {
		qctx, qcancel := context.WithTimeout(ctx, time.Second)
		_, err := Query(qctx, path)
		qcancel()
		if err != nil {
			t.Fatalf("query %d: %v", i+1, err)
		}
	}
}

// serveRunning serves a running status on a new socket until the test
// ends, and returns the test's context and the socket's path.
func serveRunning(t *testing.T) (context.Context, string) {
	t.Helper()
	path := filepath.Join(t.TempDir(), "pfwd.sock")
	l, err := Listen(path)
	if err != nil {
		t.Fatal(err)
	}
	go Serve(t.Context(), l, func() Status { return Status{Running: true} }, nil)
	return t.Context(), path
}

// With --socket in a read-only directory, the error is the one binding
// the socket gives: removing a stale socket that is not there must not
// fail first with a message about a "stale" file that never existed.
func TestListenOnReadOnlyFileSystemNamesBind(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a read-only file system in a private mount namespace")
	}
	dir := t.TempDir()
	errc := make(chan error, 1)
	go func() {
		// Never unlocked: this thread leaves the process's mount namespace,
		// and Go ends a thread whose goroutine exits while locked to it, so
		// the read-only mount dies with the goroutine.
		runtime.LockOSThread()
		if err := syscall.Unshare(syscall.CLONE_NEWNS); err != nil {
			errc <- fmt.Errorf("unshare mount namespace: %w", err)
			return
		}
		if err := syscall.Mount("", "/", "", syscall.MS_REC|syscall.MS_PRIVATE, ""); err != nil {
			errc <- fmt.Errorf("make mounts private: %w", err)
			return
		}
		if err := syscall.Mount("tmpfs", dir, "tmpfs", syscall.MS_RDONLY, "size=64k"); err != nil {
			errc <- fmt.Errorf("mount read-only tmpfs: %w", err)
			return
		}
		l, err := Listen(filepath.Join(dir, "pfwd.sock"))
		if err == nil {
			l.Close()
			err = errors.New("Listen succeeded")
		}
		errc <- err
	}()
	err := <-errc
	if !errors.Is(err, syscall.EROFS) || !strings.Contains(err.Error(), "bind: read-only file system") || strings.Contains(err.Error(), "stale") {
		t.Errorf("Listen in a read-only directory = %v, want the error of bind (EROFS), not of removing a stale socket", err)
	}
}

// ServeUntil's caller closes the listener once ctx is done, racing
// Shutdown, which closes it too: whichever wins, the stop is clean. Only
// a listener closed while ctx is still live is a failure.
func TestServeUntilStopsCleanlyWhoeverClosesTheListener(t *testing.T) {
	for i := range 200 {
		l, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ctx, cancel := context.WithCancel(t.Context())
		done := make(chan error, 1)
		go func() { done <- ServeUntil(ctx, &http.Server{}, l) }()
		if i%2 == 1 { // half the rounds stop a server that is surely accepting
			c, err := net.Dial("tcp", l.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			c.Close()
		}
		cancel()
		l.Close()
		if err := <-done; err != nil {
			t.Fatalf("round %d: ServeUntil after cancel and Close = %v, want nil", i, err)
		}
	}

	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	l.Close()
	if err := ServeUntil(t.Context(), &http.Server{}, l); !errors.Is(err, net.ErrClosed) {
		t.Errorf("ServeUntil on a listener closed while ctx is live = %v, want net.ErrClosed", err)
	}
}

// A pfwd answer is a few kilobytes; whatever answers on the socket may
// send an endless one, with or without a huge Content-Length. Query must
// give up at its cap, not read into memory until the timeout.
func TestQueryBoundsTheAnswer(t *testing.T) {
	path, answer := rawServer(t)
	for _, header := range []string{"", "Content-Length: 1099511627776\r\n"} {
		answer(func(c net.Conn) {
			c.Write([]byte("HTTP/1.1 200 OK\r\n" + header + "\r\n{\"version\":\""))
			chunk := bytes.Repeat([]byte("a"), 64<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return // Query hung up
				}
			}
		})
		var before, after runtime.MemStats
		runtime.ReadMemStats(&before)
		_, err := Query(t.Context(), path)
		runtime.ReadMemStats(&after)
		if err == nil || !strings.Contains(err.Error(), "over the limit") {
			t.Errorf("Query of an endless answer (%q) = %v, want an error saying it is over the limit", header, err)
		}
		if grew := after.TotalAlloc - before.TotalAlloc; grew > 8*maxAnswer {
			t.Errorf("Query of an endless answer (%q) allocated %d MiB", header, grew>>20)
		}
	}
}

func TestCheckPath(t *testing.T) {
	tests := []struct {
		name string
		path string
		ok   bool
	}{
		{"default", DefaultSocket, true},
		{"107 bytes, the most sun_path holds", "/" + strings.Repeat("s", 106), true},
		{"108 bytes", "/" + strings.Repeat("s", 107), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := checkPath(tt.path)
			if (err == nil) != tt.ok {
				t.Fatalf("checkPath(%d bytes) = %v, want ok=%v", len(tt.path), err, tt.ok)
			}
			if err != nil && !strings.Contains(err.Error(), "the path is 108 bytes, longer than the 107 a socket path may have") {
				t.Errorf("checkPath: %v", err)
			}
		})
	}
}

// DefaultSocket is the contract's; pfwd and fwctl both take it from here.
func TestDefaultSocket(t *testing.T) {
	if DefaultSocket != "/run/personal-firewall/pfwd.sock" {
		t.Errorf("DefaultSocket = %q", DefaultSocket)
	}
}

// pfwd runs as root. A process of another user answering on the socket
// path (one that took it in a directory others can write) must not have
// fwctl print the status it makes up.
func TestQueryTrustsOnlyRoot(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: the test listens as another user")
	}
	// Not t.TempDir: its parent is closed to other users.
	dir, err := os.MkdirTemp("", "pfw-control-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	if err := os.Chmod(dir, 0o777); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(dir, "pfwd.sock")
	l, err := asuser.ListenUnix(65534, path)
	if err != nil {
		t.Fatalf("listen as uid 65534: %v", err)
	}
	defer l.Close()
	go http.Serve(l, http.HandlerFunc(func(w http.ResponseWriter, _ *http.Request) {
		fmt.Fprint(w, `{"version":"FAKE","pid":1}`)
	}))
	_, err = Query(t.Context(), path)
	if !errors.Is(err, ErrNotPfwd) || !strings.Contains(err.Error(), "uid 65534: not pfwd") {
		t.Errorf("Query of a socket uid 65534 listens on = %v, want it refused (ErrNotPfwd)", err)
	}
}
