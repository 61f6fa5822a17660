// Package store is pfw's SQLite audit log: blocked and sampled allowed
// packets, threat-intel entries and counts of rows not logged.
//
// Invariant: logging never slows a verdict and never stops a reader. The
// packet path hands rows to a Writer that never blocks (a full buffer or the
// per-second cap turns rows into counts), one goroutine commits them in
// batched transactions, and the database is in WAL mode so fwctl reads a
// consistent snapshot while pfwd writes, without "database is locked". An
// unusable database never stops pfwd: the file is moved aside, kept, and
// a fresh one takes its place.
//
// # Opening
//
// pfwd calls Open, which creates the directory (0750) and file (0640) when
// missing, switches to WAL with synchronous=NORMAL and a 5 s busy timeout,
// and migrates the schema (PRAGMA user_version; see schema.go). A firewall
// must not stop because its audit log is unusable, so a file pfwd cannot
// use is moved to PATH.corrupt-<UTC time>, byte for byte and with its -wal
// and -shm files, and a fresh database is made; Store.MovedAside names the
// moved file and Store.MovedAsideReason says why, so the daemon can log it.
// Unusable means:
//
//   - not an SQLite database, or a corrupt header or schema;
//   - a schema version newer than this pfw (a downgrade; the newer pfw can
//     take the moved file back);
//   - a table that lacks the contract's leading columns (a seed-style
//     blocked_packets without packet_hash), or that does not take pfw's
//     writes, which SQLite is asked by preparing them: a view, or a
//     threat_intel whose ip is neither its PRIMARY KEY nor under a UNIQUE
//     index, where every feed save would fail on ON CONFLICT (ip).
//
// The file is inspected read-only before anything writes to it. Permission
// and I/O errors are returned, not repaired: the file may be fine. A
// version-0 file whose tables fit (the seed's) is adopted, rows and all:
// the missing tables are created.
//
// Damage deeper in the file is not looked for by Open, since quick_check
// reads every page (35 ms for 24 MB when cached, 460 ms cold). Instead
// Writer.Run runs one quick_check in the background when it starts, and
// watches its batches and retention passes: when one fails with
// SQLITE_CORRUPT or SQLITE_NOTADB, it moves the file aside the same way,
// opens a fresh database, tells WriterConfig.OnReopen and, for a batch,
// writes it again there, so no row is lost. After such a move another
// waits at least a minute, then twice as long each time fresh files fail
// too (a failing disk), up to an hour; batches in between are lost as
// usual.
//
// fwctl calls OpenReader, which opens read-only and never creates anything:
// with no file the error reads "no database at PATH (has pfwd run yet?)"
// and matches fs.ErrNotExist; with a file pfwd would move aside it reads
// "database is not set up (<what does not fit>): start pfwd once to create
// it" (a newer schema says so instead), and the file is left alone. The
// -wal and -shm files are kept when pfwd
// closes (SQLITE_FCNTL_PERSIST_WAL), because a reader that may not create
// files in the directory cannot open a WAL database without them; so a user
// the file's group lets read it can run fwctl even while pfwd is stopped.
//
// # Writing
//
//	s, err := store.Open(path)
//	w := s.NewWriter(store.WriterConfig{OnError: logIt})
//	go w.Run(ctx)             // until ctx ends, then a final bounded flush
//	w.Blocked(store.Row{...}) // from the packet path; never waits
//	...
//	<-runReturned; s.Close()
//
// Rows beyond MaxRowsPerSecond (default 2000, both tables together) and
// rows that find the buffer full are counted per log type and reason, in
// WriterStats and, per UTC hour, in log_suppressed, which Stats reports.
// Run also prunes, at start and every 10 minutes: rows beyond
// Retention.MaxRows per table (1,000,000), oldest first, whatever their
// age (an age bound, Retention.MaxAge, is off by default), and
// log_suppressed hours older than 30 days. It deletes 5,000 rows at a
// time, each DELETE a transaction of its own, and takes and commits new
// rows between them, so a pass over millions of rows (a minute) holds a
// new row back by a DELETE or two (a tenth of a second each), not the
// minute; a stop ends the DELETE under way, and the next Run prunes the
// rest.
//
// Run checks once a second (WriterConfig.CheckEvery, one stat) whether the
// file at the path is still the one it opened. When it was deleted (an
// operator clearing the log) or replaced, Store.Reopen closes the old
// pools, removes the old file's -wal and -shm (SQLite would replay them
// into the new database) and opens the path as Open does; OnReopen tells
// the daemon, which writes the threat entries in force again. It does so
// after a damaged file was moved aside too (see Opening): MovedAside then
// names the moved file. Rows the database refuses (a full disk) are
// dropped and counted in WriterStats.Lost, with the error in LastError.
//
// Rows that meet another program's write lock for the whole busy timeout
// (an sqlite3 shell's DELETE or VACUUM) are not refused, only delayed: Run
// keeps the batch and tries it again, 250 ms later and then twice as long
// each time up to 5 s, while new rows wait in the buffer (rows that find
// it full are counted as suppressed, as ever) and keep the stamps and the
// per-second cap of the second they were decided. Meanwhile OnError hears
// of each try and LastError says "waiting for the database lock". Only the
// final flush gives up: it waits for the lock until ShutdownTimeout runs
// out, then counts what it could not write as lost.
//
// # Tables
//
//	blocked_packets(id, timestamp, src_ip, dst_ip, src_port, dst_port, protocol, reason, packet_hash, direction)
//	allowed_packets(id, timestamp, src_ip, dst_ip, src_port, dst_port, protocol, direction)
//	threat_intel(ip PRIMARY KEY, threat_level, last_seen, source)
//	log_suppressed(hour, log_type, reason, count), primary key (hour, log_type, reason)
//
// id is AUTOINCREMENT, so ids only grow even after pruning empties a table,
// which `fwctl logs --follow` relies on. Timestamps are UTC text with
// milliseconds, "2026-11-25 15:04:05.123", which SQLite's date functions
// read and which sort as text; hours are "2026-11-25 15:00". Addresses are
// netip.Addr.String() text, so an IP filter compares strings. Ports are
// NULL when the packet has none (ICMP, non-first fragments), never 0.
// protocol is "tcp", "udp", "icmp", "icmpv6" or the protocol number.
// packet_hash is 16 lowercase hex digits. direction, pfw's column after the
// contract's, is "in" or "out"; rows from before it (and the seed's) hold
// NULL and count as inbound. threat_intel.ip is a bare address for a single
// IP and CIDR text otherwise; source is the feed's name (ThreatsBySource
// groups LoadThreats' rows by it). Both packet tables are indexed on
// timestamp, src_ip and dst_ip, and blocked_packets on the remote address
// (src_ip inbound, dst_ip outbound), which Stats ranks.
//
// DefaultPath is the contract's database path, for pfwd and fwctl alike.
package store
