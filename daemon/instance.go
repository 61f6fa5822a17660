package daemon

import (
	"errors"
	"fmt"
	"io"
	"net"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/control"
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

// instanceLock holds the name: a listener that accepts and closes every
// connection, so that a pfwd that finds the name taken can ask the kernel
// who holds it (SO_PEERCRED) without filling a backlog.
type instanceLock struct{ ln *net.UnixListener }

func (l instanceLock) Close() error { return l.ln.Close() }

// lockInstance takes the lock. The control socket alone cannot be the
// lock: a second pfwd given another --socket (and --queue, --db) passed
// it, and with --fail-closed, whose table the kernel does not tie to its
// maker, silently took over the first one's table, which then queued to
// nobody once the second stopped.
//
// Abstract names carry no permissions: any local user may bind this one
// first. A holder running as root is taken for a pfwd (errAnotherPfwd);
// anyone else cannot keep pfwd from starting: lockInstance then returns
// no lock and, in warning, why pfwd runs without it.
func lockInstance() (lock io.Closer, warning string, err error) {
	addr := &net.UnixAddr{Name: instanceLockName, Net: "unix"}
	ln, err := net.ListenUnix("unix", addr)
	if err == nil {
		go func() {
			for {
				c, err := ln.Accept()
				if err != nil {
					return // closed
				}
				c.Close()
			}
		}()
		return instanceLock{ln}, "", nil
	}
	if !errors.Is(err, unix.EADDRINUSE) {
		return nil, "", fmt.Errorf("single-instance lock %q: %w", instanceLockName, err)
	}
	// A pfwd starting at the same moment holds the name between its bind
	// and its listen, when a connection is refused: ask again for a
	// moment before taking the holder for a squatter that does not answer.
	cred, err := lockHolder(addr)
	for try := 0; errors.Is(err, unix.ECONNREFUSED) && try < 10; try++ {
		time.Sleep(20 * time.Millisecond)
		cred, err = lockHolder(addr)
	}
	switch {
	case err != nil:
		return nil, fmt.Sprintf("the single-instance lock %q is taken by a process that does not answer (%v): not a pfwd; running without the lock", instanceLockName, err), nil
	case cred.Uid == 0:
		return nil, "", fmt.Errorf("%w (pid %d)", errAnotherPfwd, cred.Pid)
	default:
		return nil, fmt.Sprintf("the single-instance lock %q is taken by pid %d, uid %d: not a pfwd (it runs as root); running without the lock", instanceLockName, cred.Pid, cred.Uid), nil
	}
}

// lockHolder returns the credentials of the process listening on addr.
func lockHolder(addr *net.UnixAddr) (*unix.Ucred, error) {
	c, err := net.DialUnix("unix", nil, addr)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	return control.PeerCred(c)
}
