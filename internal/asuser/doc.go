// Package asuser lets root tests listen on a unix socket as another user,
// the way an unprivileged local user's process would: pfw trusts a socket's
// holder by its credentials (SO_PEERCRED), and its tests need a holder that
// is not root. Only the calling goroutine's OS thread changes its effective
// uid, with a raw setresuid that Go does not apply to the other threads, and
// that thread ends with the goroutine: nothing else in the test process ever
// runs without root.
package asuser
