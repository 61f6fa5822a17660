// Package sighup holds pfwd's SIGHUPs from the moment Go starts to
// initialize its packages, long before main runs. SIGHUP's default action
// kills, and Go applies it until a program asks for the signal: a reload
// sent the instant pfwd exists (a logrotate postrotate, a script racing a
// restart) used to kill it during the 10-20 ms its dependencies take to
// initialize, leaving the host unfiltered until a restart. This package
// imports nothing but the signal machinery, so the Go runtime initializes
// it among the first; what it holds, main applies once the daemon runs.
package sighup
