package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"net/url"
	"os"
	"path/filepath"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/rules"
)

// DefaultSocket is where pfwd listens and fwctl asks unless told otherwise
// (--socket, $PFW_SOCKET).
const DefaultSocket = "/run/personal-firewall/pfwd.sock"

// maxPath is the longest socket path the kernel takes (sun_path is 108
// bytes with its terminating NUL).
const maxPath = 107

// checkPath refuses a socket path the kernel would not take. Said up
// front, the reason is clear; bind and connect would only fail with
// EINVAL.
func checkPath(path string) error {
	if len(path) > maxPath {
		return fmt.Errorf("control socket %s: the path is %d bytes, longer than the %d a socket path may have", path, len(path), maxPath)
	}
	return nil
}

// MaxConns is how many control connections pfwd serves at once; more
// wait in the listen backlog (fwctl asks one question per connection).
const MaxConns = 16

// idleTimeout closes a control connection that has sent no request for
// that long. fwctl writes its request as soon as it connects, so two
// seconds leave room for a fwctl descheduled on a loaded machine; the 5 s
// before let MaxConns connections that never send anything (a leaking
// local tool) keep fwctl status from an answer within its own 3 s.
const idleTimeout = 2 * time.Second

// Listen creates the control socket at path, mode 0600, replacing a stale
// socket file but refusing to take over one that a live pfwd answers on,
// and refusing to remove anything that is not a socket (a mistyped
// --socket must not delete the config file it names).
func Listen(path string) (net.Listener, error) { return listen(path, true) }

// Relisten is Listen for a process already running, which makes its
// socket again: it leaves the process-wide umask alone, since other
// goroutines may be creating files meanwhile and would get its mode. The
// socket file then exists with the umask's mode (0700 under the unit,
// 0755 with root's usual 022: connecting needs write permission either
// way) until its chmod to 0600 a moment later.
func Relisten(path string) (net.Listener, error) { return listen(path, false) }

func listen(path string, umask bool) (net.Listener, error) {
	if err := checkPath(path); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, 200*time.Millisecond); err == nil {
		c.Close()
		return nil, fmt.Errorf("control socket %s: another pfwd is running", path)
	}
	// Only a socket that exists is stale. Removing a path that is not there
	// can still fail (EROFS on a read-only file system, EACCES), and that
	// error would hide the one listening gives, which names the real
	// problem.
	switch fi, err := os.Lstat(path); {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("control socket: %w", err)
	case fi.Mode().Type() != os.ModeSocket:
		return nil, fmt.Errorf("control socket %s: exists and is not a socket (it is %s); pfwd does not remove it", path, rules.FileKind(fi.Mode()))
	default:
		if err := os.Remove(path); err != nil && !errors.Is(err, os.ErrNotExist) {
			return nil, fmt.Errorf("control socket: remove stale %s: %w", path, err)
		}
	}
	var l net.Listener
	var err error
	if umask {
		old := syscall.Umask(0o177) // the socket must never exist with looser permissions
		l, err = net.Listen("unix", path)
		syscall.Umask(old)
	} else {
		l, err = net.Listen("unix", path)
	}
	if err != nil {
		return nil, fmt.Errorf("control socket: %w", err)
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, fmt.Errorf("control socket: %w", err)
	}
	return l, nil
}

// Serve answers GET /status with status() until ctx is done, at most
// MaxConns connections at once, each closed after idleTimeout idle. errorLog,
// when not nil, gets net/http's own errors (failed accepts, bad requests).
func Serve(ctx context.Context, l net.Listener, status func() Status, errorLog *log.Logger) error {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /status", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(status())
	})
	l = LimitListener(l, MaxConns)
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: idleTimeout, WriteTimeout: 5 * time.Second,
		IdleTimeout: idleTimeout, ErrorLog: errorLog}
	if err := ServeUntil(ctx, srv, l); err != nil {
		return fmt.Errorf("control socket: %w", err)
	}
	return nil
}

// ServeUntil serves srv on l until ctx is done, then shuts srv down,
// giving requests in flight a second. It returns nil when it stopped
// because ctx is done, or the error that stopped it before.
//
// A stop on purpose shows in two ways: Shutdown makes Serve return
// http.ErrServerClosed, but only if it closes l first. Whoever opened l
// usually closes it too once ctx is done (pfwd's daemon does), and when
// that wins the race, Accept fails with net.ErrClosed instead: after ctx
// is done that is no failure either.
func ServeUntil(ctx context.Context, srv *http.Server, l net.Listener) error {
	go func() {
		<-ctx.Done()
		shut, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		srv.Shutdown(shut)
	}()
	err := srv.Serve(l)
	if errors.Is(err, http.ErrServerClosed) || (ctx.Err() != nil && errors.Is(err, net.ErrClosed)) {
		return nil
	}
	return err
}

// maxAnswer bounds the status answer Query reads. pfwd's is a few
// kilobytes; whatever else answers on the socket could otherwise stream
// an endless one into fwctl's memory until the timeout.
const maxAnswer = 1 << 20

// ErrNotRunning means no pfwd answers on the socket.
var ErrNotRunning = errors.New("pfwd is not running")

// noAnswerError is a query that took a connection but got no answer in
// time; it unwraps to the timeout, which callers test for.
type noAnswerError struct {
	path string
	err  error
}

func (e *noAnswerError) Error() string {
	return fmt.Sprintf("pfwd on %s did not answer in time: it may still be starting (a large config takes seconds) or be stuck; try again", e.path)
}

func (e *noAnswerError) Unwrap() error { return e.err }

// Query asks the pfwd listening at path for its status.
func Query(ctx context.Context, path string) (Status, error) {
	if err := checkPath(path); err != nil {
		return Status{}, err
	}
	client := &http.Client{
		Timeout: 3 * time.Second,
		// One question per connection: a kept-alive one would hold one of
		// the server's MaxConns slots until its idle timeout.
		Transport: &http.Transport{DisableKeepAlives: true, DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			c, err := d.DialContext(ctx, "unix", path)
			if err != nil {
				return nil, err
			}
			// pfwd runs as root: an answer from another user's process
			// (one that took the path in a directory others can write)
			// would be a status made up by that user.
			cred, err := PeerCred(c.(*net.UnixConn))
			if err == nil && cred.Uid != 0 && int(cred.Uid) != os.Geteuid() {
				err = &notPfwdError{path: path, pid: cred.Pid, uid: cred.Uid}
			}
			if err != nil {
				c.Close()
				return nil, err
			}
			return c, nil
		}},
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://pfwd/status", nil)
	if err != nil {
		return Status{}, err
	}
	resp, err := client.Do(req)
	if err != nil {
		if np := (*notPfwdError)(nil); errors.As(err, &np) {
			return Status{}, np
		}
		if errors.Is(err, os.ErrNotExist) || errors.Is(err, syscall.ECONNREFUSED) {
			// Connecting to what is not a socket is refused too, but a
			// pfwd may well run (its socket was replaced): say what is
			// there, not that pfwd is not running.
			// (Stat, not Lstat: a symlink to pfwd's socket, stale while
			// pfwd is stopped, is no pfwd, not "a symbolic link".)
			if fi, serr := os.Stat(path); serr == nil && fi.Mode().Type() != os.ModeSocket {
				return Status{}, fmt.Errorf("control socket %s is not a socket (it is %s), so whether pfwd runs cannot be asked; "+
					"a running pfwd makes its socket again within a second once the path is free", path, rules.FileKind(fi.Mode()))
			}
			return Status{}, fmt.Errorf("%w (no daemon on %s)", ErrNotRunning, path)
		}
		if errors.Is(err, os.ErrPermission) {
			return Status{}, fmt.Errorf("control socket %s: permission denied (run as root)", path)
		}
		if ue := (*url.Error)(nil); errors.As(err, &ue) && ue.Timeout() {
			// The socket is there and takes connections, but no answer
			// came: a pfwd still starting (a config of a million
			// addresses takes seconds to load) answers only once started.
			return Status{}, &noAnswerError{path: path, err: err}
		}
		return Status{}, fmt.Errorf("query pfwd on %s: %w", path, err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return Status{}, fmt.Errorf("query pfwd on %s: %s", path, resp.Status)
	}
	body := &io.LimitedReader{R: resp.Body, N: maxAnswer + 1}
	var st Status
	if err := json.NewDecoder(body).Decode(&st); err != nil {
		if body.N <= 0 {
			return Status{}, fmt.Errorf("query pfwd on %s: the answer is over the limit of %d bytes", path, maxAnswer)
		}
		return Status{}, fmt.Errorf("query pfwd on %s: %w", path, err)
	}
	return st, nil
}

// ErrNotPfwd means the process holding the control socket cannot be pfwd:
// it runs as neither root nor the asking user, so its answer is not
// trusted. Something holds the socket all the same: for fwctl that is a
// pfwd it cannot hear, as when one hangs.
var ErrNotPfwd = errors.New("the control socket is not held by pfwd")

// notPfwdError is ErrNotPfwd for one holder.
type notPfwdError struct {
	path string
	pid  int32
	uid  uint32
}

func (e *notPfwdError) Is(target error) bool { return target == ErrNotPfwd }

func (e *notPfwdError) Error() string {
	return fmt.Sprintf("control socket %s is held by pid %d, uid %d: not pfwd, which runs as root; its answer is not trusted", e.path, e.pid, e.uid)
}

// PeerCred returns the credentials of the process at the other end of c
// (for a listening socket's clients, of the process that listened).
func PeerCred(c *net.UnixConn) (*unix.Ucred, error) {
	raw, err := c.SyscallConn()
	if err != nil {
		return nil, err
	}
	var cred *unix.Ucred
	var credErr error
	if err := raw.Control(func(fd uintptr) {
		cred, credErr = unix.GetsockoptUcred(int(fd), unix.SOL_SOCKET, unix.SO_PEERCRED)
	}); err != nil {
		return nil, err
	}
	return cred, credErr
}
