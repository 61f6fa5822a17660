package control

import (
	"context"
	"errors"
	"net"
	"os"
	"path/filepath"
	"testing"
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
		})
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
