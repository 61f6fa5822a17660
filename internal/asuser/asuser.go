package asuser

import (
	"net"
	"runtime"
	"syscall"
)

// ListenUnix listens on the unix socket addr (a path, or an abstract name
// starting with "@") with uid as its effective user id.
func ListenUnix(uid int, addr string) (*net.UnixListener, error) {
	type result struct {
		ln  *net.UnixListener
		err error
	}
	done := make(chan result, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread goes with the goroutine
		keep := ^uintptr(0)    // -1: leave that id as it is
		if _, _, errno := syscall.RawSyscall(syscall.SYS_SETRESUID, keep, uintptr(uid), keep); errno != 0 {
			done <- result{err: errno}
			return
		}
		ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: addr, Net: "unix"})
		done <- result{ln, err}
	}()
	r := <-done
	return r.ln, r.err
}
