package daemon

import (
	"errors"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/internal/asuser"
)

// The lock refuses a second pfwd (a holder running as root), but a local
// user who takes the name first, listening or not, cannot keep pfwd from
// starting: pfwd runs without the lock and says why.
func TestInstanceLock(t *testing.T) {
	if !inFreshNetNS(t, 30*time.Second) {
		return
	}
	first, warning, err := lockInstance()
	if err != nil || warning != "" {
		t.Fatalf("first lockInstance = %v, %q", err, warning)
	}
	if _, _, err := lockInstance(); !errors.Is(err, errAnotherPfwd) {
		t.Errorf("second lockInstance while root holds the lock: %v, want errAnotherPfwd", err)
	}
	first.Close()
	again, _, err := lockInstance()
	if err != nil {
		t.Fatalf("lockInstance after the holder closed it: %v", err)
	}
	again.Close()

	squatter, err := asuser.ListenUnix(65534, instanceLockName)
	if err != nil {
		t.Fatalf("listen as uid 65534: %v", err)
	}
	lock, warning, err := lockInstance()
	if err != nil || lock != nil || !strings.Contains(warning, "uid 65534") {
		t.Errorf("with a user's listener on the name: lock %v, warning %q, err %v; want no lock and a warning naming uid 65534", lock, warning, err)
	}
	squatter.Close()

	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fd)
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: instanceLockName}); err != nil {
		t.Fatal(err)
	}
	lock, warning, err = lockInstance()
	if err != nil || lock != nil || !strings.Contains(warning, "does not answer") {
		t.Errorf("with the name bound by a socket that does not listen: lock %v, warning %q, err %v", lock, warning, err)
	}

	// A pfwd starting at the same moment has bound the name but not yet
	// listened: this one must wait for it, not take it for a squatter and
	// run without the lock.
	go func() {
		time.Sleep(50 * time.Millisecond)
		unix.Listen(fd, 8)
	}()
	if lock, warning, err := lockInstance(); !errors.Is(err, errAnotherPfwd) {
		t.Errorf("with a root pfwd between its bind and its listen: lock %v, warning %q, err %v; want errAnotherPfwd", lock, warning, err)
	}
}
