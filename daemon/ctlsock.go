package daemon

import (
	"context"
	"errors"
	"io/fs"
	"log"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"time"

	"github.com/pfw/pfw/control"
)

// controlSocket serves fwctl on the control socket, and makes the socket
// again when its file goes (a clean-up of /run, a mistaken rm) or its
// server stops on its own: pfwd would filter on, but fwctl status would
// call it not running, edits could not wait for it to apply them, and the
// single-instance lock would be gone.
type controlSocket struct {
	path   string
	status func() control.Status
	errLog *log.Logger
	log    *slog.Logger

	// ended gets a server's listener and error when it stopped on its own
	// (its listener failed): run then makes the socket again.
	ended chan serverEnd
	// servers are those serve started; answering lets their status calls
	// in. run waits for the first and closes the second as it returns, so
	// nothing of it reads pfwd's state after that.
	servers   sync.WaitGroup
	answering gate

	mu     sync.Mutex // guards what follows
	l      net.Listener
	ino    uint64             // the socket file's inode, to tell it from a new file
	stop   context.CancelFunc // stops serving l
	closed bool               // pfwd is stopping: make no new socket
}

// serverEnd is how a server stopped on its own.
type serverEnd struct {
	l   net.Listener
	err error
}

func newControlSocket(path string, l net.Listener, status func() control.Status, lg *slog.Logger) *controlSocket {
	return &controlSocket{path: path, l: keepFile(l), ino: inodeOf(path), status: status, log: lg,
		errLog: slog.NewLogLogger(lg.Handler(), slog.LevelWarn), ended: make(chan serverEnd)}
}

// keepFile has l leave its file alone when closed. The server closes its
// listener as soon as its context ends, before close can tell whether the
// file at the path is still this pfwd's (another pfwd may have made its
// socket there after this one's was removed); close removes the file
// itself, once it knows.
func keepFile(l net.Listener) net.Listener {
	if ul, ok := l.(*net.UnixListener); ok {
		ul.SetUnlinkOnClose(false)
	}
	return l
}

// serve starts answering on c.l. Caller holds mu, or is the only user.
func (c *controlSocket) serve(ctx context.Context) {
	sctx, cancel := context.WithCancel(ctx)
	c.stop = cancel
	l := c.l
	c.servers.Go(func() {
		// Serve returns an error only when it stopped on its own: its
		// listener failed. Then pfwd filters on while fwctl calls it not
		// running, unless the socket is made again.
		if err := control.Serve(sctx, l, c.answer, c.errLog); err != nil {
			select {
			case c.ended <- serverEnd{l, err}:
			case <-sctx.Done(): // replaced, or pfwd is stopping
			}
		}
	})
}

// answer is a status request's answer, none once run has returned.
func (c *controlSocket) answer() control.Status {
	if !c.answering.enter() {
		return control.Status{} // pfwd is stopping: running false
	}
	defer c.answering.leave()
	return c.status()
}

// run serves until ctx is done, checking every interval that the socket
// file is still the one pfwd listens on, and making the socket again when
// its file is gone or its server stopped.
func (c *controlSocket) run(ctx context.Context, every time.Duration) {
	defer func() {
		c.servers.Wait() // ctx ended: they stop at once
		c.answering.close()
	}()
	c.mu.Lock()
	c.serve(ctx)
	c.mu.Unlock()
	t := time.NewTicker(every)
	defer t.Stop()
	warned := false
	serverDown := false // the server of c.l stopped: make the socket again whatever its file
	for {
		select {
		case <-ctx.Done():
			return
		case end := <-c.ended:
			c.mu.Lock()
			current, closed := end.l == c.l, c.closed
			c.mu.Unlock()
			if !current || closed { // a listener replaced or closed on purpose
				continue
			}
			c.log.Error("The control socket stopped answering: making it again (fwctl cannot reach pfwd meanwhile)", "err", end.err)
			serverDown = true
		case <-t.C:
		}
		if ino := inodeOf(c.path); !serverDown && ino != 0 && ino == c.ino {
			warned = false
			continue
		}
		l, err := control.Relisten(c.path)
		if err != nil {
			if !warned {
				// Not "gone": something else may have taken the path,
				// and err says what.
				c.log.Error("The control socket's file was removed or replaced and could not be made again: fwctl cannot reach pfwd", "err", err)
				warned = true
			}
			continue
		}
		c.mu.Lock()
		if c.closed { // close removed the file, not someone else
			c.mu.Unlock()
			l.Close()
			return
		}
		stopOld := c.stop // its listener leaves the path, now the new socket's, alone
		c.l, c.ino = keepFile(l), inodeOf(c.path)
		c.serve(ctx)
		c.mu.Unlock()
		stopOld() // shuts the old server down, closing its listener
		if serverDown {
			c.log.Warn("Made the control socket again: fwctl reaches pfwd", "socket", c.path)
		} else {
			c.log.Warn("The control socket's file was removed: made it again", "socket", c.path)
		}
		serverDown, warned = false, false
	}
}

// close closes the socket in use, removing its file.
func (c *controlSocket) close() {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.closed = true
	// The file at the path may be another's by now (a regular file put
	// there, a socket another pfwd made after this one's went): only the
	// socket this pfwd made is removed.
	if ino := inodeOf(c.path); ino != 0 && ino == c.ino {
		if err := os.Remove(c.path); err != nil && !errors.Is(err, fs.ErrNotExist) {
			c.log.Warn("Could not remove the control socket's file", "socket", c.path, "err", err)
		}
	}
	c.l.Close()
}

// inodeOf is the inode of the file at path, 0 when there is none.
func inodeOf(path string) uint64 {
	fi, err := os.Lstat(path)
	if err != nil {
		return 0
	}
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Ino
	}
	return 0
}
