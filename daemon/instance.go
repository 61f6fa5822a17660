package daemon

import (
	"errors"
	"fmt"
	"io"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/nft"
)

// instanceLockName is pfwd's single-instance lock in its network
// namespace: an abstract unix socket name. Abstract names belong to a
// network namespace and vanish with the socket, however its process
// ends, so a crashed pfwd never leaves the lock behind.
const instanceLockName = "@pfwd/inet " + nft.DefaultTable

// errAnotherPfwd is why a second pfwd in a network namespace refuses to
// start.
var errAnotherPfwd = errors.New("another pfwd runs in this network namespace (pfw's table is one per namespace); stop it first (`fwctl status` with its --socket names it)")

// lockInstance takes the lock, or fails with errAnotherPfwd. The control
// socket alone cannot be the lock: a second pfwd given another --socket
// (and --queue, --db) passed it, and with --fail-closed, whose table the
// kernel does not tie to its maker, silently took over the first one's
// table, which then queued to nobody once the second stopped.
func lockInstance() (io.Closer, error) {
	fd, err := unix.Socket(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, fmt.Errorf("single-instance lock: socket: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrUnix{Name: instanceLockName}); err != nil {
		unix.Close(fd)
		if errors.Is(err, unix.EADDRINUSE) {
			return nil, errAnotherPfwd
		}
		return nil, fmt.Errorf("single-instance lock %q: %w", instanceLockName, err)
	}
	return fdCloser(fd), nil
}

type fdCloser int

func (fd fdCloser) Close() error { return unix.Close(int(fd)) }
