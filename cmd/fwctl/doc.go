// Command fwctl controls the pfw personal firewall: it edits the rules
// file, explains verdicts, and reads the packet log and the daemon's state.
//
// Invariant: fwctl never changes the firewall except through the rules
// file, and only through rules.Update, so every change is validated, locked
// against concurrent edits and written atomically, and a failed command
// leaves the file byte-for-byte as it was; pfwd picks the new file up
// within a second. When a pfwd runs on the edited file, an edit waits up
// to 3 s for it to apply the change, and as long as pfwd reports a reload
// in progress (status reload.in_progress) up to 2 minutes, and warns on
// stderr when it did not (applied.go); a pfwd that holds its socket but
// does not answer within a second (hung, stopped) gets a warning that
// whether the change is in force is unknown. Exit status: 0 success, 1 an error (one line on stderr,
// "fwctl: ..."), 2 bad usage: what the usage line alone shows to be wrong
// (an unknown command or flag, a command flag that takes a value given twice, a
// wrong number of arguments, a missing required flag, a word outside the
// choices it lists such as allow|block, or a non-number where it says N). A well-formed request that cannot be
// done — rule 9 of 5, a bad IP address or port, no daemon — is an error.
//
// Commands (run `fwctl help COMMAND` for each one's flags):
//
//	list                                   the rules, numbered
//	add NAME ACTION [--protocol P] [--ports 23,445,8000-8100] [--src-ips A,B] [--direction in|out] [--position N]
//	remove N | toggle N                    by the number list shows
//	blacklist add|remove IP... | blacklist list    (the same for whitelist)
//	check [FILE]                           validate a config without applying it
//	explain --src IP [--dst IP] [--protocol P] [--dst-port N] [--direction in|out]
//	logs [--type blocked|allowed] [--limit 50] [--ip IP|CIDR] [--since 1h|2d|TIME] [--follow]
//	stats | threats [--limit 50] | status
//
// Global flags, accepted before or after the command: --config FILE
// ($PFW_CONFIG), --db FILE ($PFW_DB), --socket FILE ($PFW_SOCKET) and
// --json. Flags may follow positional arguments (`fwctl add Telnet block
// --protocol tcp --ports 23`): urfave/cli stops reading flags at the first
// positional, so reorderArgs moves them in front before parsing; "--" ends
// the flags. Each flag that takes a value is given at most once (a list
// flag takes one comma-separated list: --ports 23,445), in any spelling:
// urfave/cli would keep only the last of two.
//
// With --json, list prints an array of rules (the config keys plus
// "number"), logs and threats arrays of rows keyed by column name (logs
// --follow: one object per line), explain {"verdict", "reason", "step",
// "step_number", ...}, stats and status one object, check {"file",
// "valid", "error", "rules"}; add, remove and toggle the rule they
// changed (with its "number"), and blacklist/whitelist add {"added",
// "already_listed", "entries"} and remove {"removed", "entries"}, entries
// being the whole list after the change.
//
// With no rules file yet, list, blacklist/whitelist list and explain show
// the embedded default (what pfwd writes and enforces on its first start)
// with a note on stderr, and an edit that succeeds creates the file from
// the default with the edit applied; a failed one creates nothing. But
// when a pfwd runs on the missing file (deleted by mistake: pfwd keeps
// the rules it last loaded), every command that reads or edits it, check
// included, fails with exit 1 and says to restore the file or stop pfwd:
// the default would misstate the rules in force, and an edit would have
// pfwd swap them for the default's.
// Read-only commands never create anything: logs, stats and threats open
// the database read-only (WAL mode lets them read while pfwd writes) and
// fail when there is none; explain then simply checks no threat entries.
// They also read a database the seed made (its three tables, no schema
// version), which pfwd adopts on its next start. While the pfwd on the
// socket logs to a temporary database because it could not open the
// configured one, they read that one instead, with a note on stderr;
// given --db or $PFW_DB naming the file pfwd could not open, they read it
// as asked and warn where pfwd logs (database.go).
//
// status answers "is pfwd running" on stdout either way; when it is not,
// the exit status is 1 (as with firewall-cmd --state) and stderr says why.
package main
