// Package control is pfwd's control socket: a root-only (0600) Unix
// socket speaking HTTP/JSON, through which fwctl asks the running daemon
// for its state. It carries no configuration changes: those go through the
// config file, which pfwd watches, so the file stays the single truth.
//
// Invariant: the socket is created with mode 0600 before it accepts, a
// stale socket left by a crashed pfwd is replaced, and a live one is never
// stolen (Listen fails if another pfwd answers on it). Relisten makes the
// socket again for a pfwd already running (its file was removed) without
// touching the process-wide umask, which other goroutines' files would
// get. Status is the whole answer; its JSON keys are what `fwctl status
// --json` prints, among them config_digest (the config in force, which
// fwctl compares with the file to know an edit is applied) and reload (a
// reload under way; config_digest names its config only once the kernel
// holds it).
//
// pfwd listens, and fwctl asks, at DefaultSocket unless told otherwise. A
// path longer than the kernel's 107 bytes is refused by Listen and Query
// alike with an error saying so, rather than bind's bare EINVAL.
package control
