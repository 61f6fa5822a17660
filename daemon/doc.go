// Package daemon is pfwd: it wires the config (rules), the pipeline
// (verdict), the kernel ruleset (nft), the packet queues (queue), the
// audit log (store), the threat feeds (intel) and the control socket
// (control) into one running firewall, and keeps them in step on reloads.
//
// Invariant: the kernel sets and the pipeline always hold the same
// whitelist, blacklist and threat entries, so the kernel's fast path and
// user space decide every packet alike. A reload is all or nothing: an
// invalid config file, or one the kernel refuses, leaves the rules in
// force untouched and is logged with its error.
//
// Changes of the kernel sets (reloads, feed updates, repairs) are made one
// at a time under Daemon.mu, in the order they change the lists; one of a
// million entries holds it for seconds. Status (status.go) never takes it:
// it reads what the last completed change published (shownState, and the
// nft Firewall's own copy), so fwctl status answers at once throughout,
// shows a reload or feed update under way, and names a new config
// (config_digest) only once the kernel holds it. While such a load runs
// the soft memory limit is lifted for a lower GOGC (memory.go): a limit
// below the live heap would run the collector flat out and stall every
// goroutine that allocates, status requests included.
//
// The config watcher (watch.go) watches directories, not the file, and
// follows symlinks hop by hop, with a once-a-second identity check as the
// safety net for what inotify misses (a replaced directory).
//
// The rate-limit guard (guard.go) extends the rate limit into the kernel:
// a source the limiter refuses is held in nft's ratelimit sets, the
// kernel's drops from it are counted back into the limiter every 100 ms,
// and it is released as soon as the limiter would accept it again.
//
// The audit log never keeps pfwd from filtering: store moves an unusable
// database aside, and one that cannot be opened at all is replaced by a
// temporary database for this run, named in the log and in status.
//
// Start-up binds the queues first and installs the table last, so no
// packet is queued before a worker listens. Shutdown runs the other way:
// stop taking packets, answer those in flight, flush the log, remove the
// table (kept with FailClosed), each step bounded in time.
package daemon
