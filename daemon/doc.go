// Package daemon is pfwd: it wires the config (rules), the pipeline
// (verdict), the kernel ruleset (nft), the packet queues (queue), the
// audit log (store), the threat feeds (intel) and the control socket
// (control) into one running firewall, and keeps them in step on reloads.
//
// Invariant: the kernel sets and the pipeline always hold the same
// whitelist, blacklist and threat entries, so the kernel's fast path and
// user space decide every packet alike. A reload is all or nothing: an
// invalid config file, or one the kernel refuses, leaves the rules in
// force untouched, threat feeds included (the feed manager learns of a
// config only once the kernel holds it), and is logged with its error.
//
// Run takes Options: DefaultOptions and Validate hold pfwd's defaults and
// ranges, so cmd/pfwd only maps its flags onto them. A SIGHUP reaches the
// daemon as a value on Options.Reload, applied by Run's loop.
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
// kernel's drops from it are read every 100 ms (for the counts and the
// log), and it is released as soon as the limiter would accept it again.
//
// The audit log never keeps pfwd from filtering: store moves an unusable
// database aside, and one that cannot be opened at all is replaced by a
// temporary database for this run, named in the log and in status. Its
// directory beside the control socket is locked while pfwd runs and
// removed at stop; one a killed pfwd left is removed by the next start
// (tempdb.go). A save of the threat entries that the database refuses (a
// full disk) is made again, with backoff, until one succeeds, and status
// shows the error on the feeds until then: fwctl threats and explain read
// those entries, and the next start is seeded from them.
//
// Recurring error lines (a full disk failing every flush, a table check
// failing every second) are written once per 30 s per kind, the next line
// counting those left out (logLimited); per-packet lines have their own,
// faster sampler.
//
// Start-up binds the queues first and installs the table last, so no
// packet is queued before a worker listens. Every goroutine Run starts
// goes through spawn (lifecycle.go), which registers its stop beside
// those of the queues and listeners. Shutdown runs the other way, newest
// first: stop the servers, watcher and feeds, stop taking packets, answer
// those in flight, flush the log, remove the table (kept with
// FailClosed). Each step is bounded in time: a part that does not stop
// within 10 s is named in the log and left behind, and database work
// begun earlier (a quarter of a million threat rows) runs under the
// daemon's lifetime, which ends 5 s into shutdown. The servers read the
// daemon's parts through a gate they close on their way out, so no
// request reads what shutdown closes.
package daemon
