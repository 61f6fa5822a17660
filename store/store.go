package store

import (
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	"github.com/mattn/go-sqlite3"
)

// DefaultPath is where pfwd keeps the database and fwctl reads it unless
// told otherwise (--db, $PFW_DB).
const DefaultPath = "/var/lib/personal-firewall/firewall.db"

// busyTimeout is how long a statement waits for another connection's lock
// before failing with "database is locked". Writers hold the lock for one
// batch (milliseconds), so five seconds only runs out when another program
// holds it longer (an sqlite3 shell's DELETE or VACUUM), which the Writer
// waits out (see Writer.commit). A variable so that tests can shorten it
// before they open a Store.
var busyTimeout = 5 * time.Second

// Connection parameters (go-sqlite3 DSN keys). The write pool begins every
// transaction IMMEDIATE: a deferred transaction that reads and then writes
// can fail with SQLITE_BUSY at once, without the busy timeout ever being
// consulted, when another connection committed in between. Read pools are
// opened read-only at the SQLite level as well, so fwctl can never write.
func writeParams() string {
	return fmt.Sprintf("_busy_timeout=%d&_journal_mode=WAL&_synchronous=NORMAL&_txlock=immediate", busyTimeout.Milliseconds())
}

func readParams() string {
	return fmt.Sprintf("mode=ro&_busy_timeout=%d&_query_only=1&_txlock=deferred", busyTimeout.Milliseconds())
}

// ErrReadOnly is returned by methods that write when the Store came from
// OpenReader.
var ErrReadOnly = errors.New("store opened read-only")

// Store is an open pfw database. Its methods are safe for concurrent use.
type Store struct {
	path     string
	readOnly bool

	// mu guards the pools: every method holds it shared while it uses
	// them, Reopen exclusively while it swaps them.
	mu sync.RWMutex
	// write is nil for a reader. It has a single connection, so writes from
	// one process queue in database/sql instead of contending inside SQLite.
	write *sql.DB
	// read serves queries; under WAL its connections never wait for write.
	read *sql.DB
	// movedAside and movedReason say where the last open moved an
	// unusable file and why.
	movedAside, movedReason string
	files                   dbFiles // the files Open opened, to notice them deleted or replaced
	// opened counts the pools openLocked put in place (or tried to): a
	// retention pass started on one file must not go on against the next,
	// whose inode number the kernel may well have reused.
	opened uint64
	// noDirection: the packet tables have no direction column yet (a
	// reader's database from the seed or an older pfw, which pfwd adds it
	// to on its next start); every row then counts as inbound.
	noDirection bool
	// pruneChunkRows is how many rows one retention DELETE removes:
	// pruneChunk, unless a test makes it small to stretch a pass.
	pruneChunkRows int
}

// Open opens the database at path for reading and writing, creating the
// parent directory (0750) and the file (0640) when missing, switching it to
// WAL mode and migrating its schema. A file pfwd cannot use is renamed to
// path.corrupt-<UTC time> (its -wal and -shm files with it) and a fresh
// database is created; MovedAside then names the renamed file and
// MovedAsideReason says what was wrong, so the daemon can say so. Unusable
// means not an SQLite database, a corrupt header or schema, or a schema
// that does not fit (see checkTables) or is newer than this pfw. I/O and
// permission errors are returned instead: the file may be fine.
func Open(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if err := os.MkdirAll(filepath.Dir(abs), 0o750); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	// Look at the file before opening it for writing: on a file shorter
	// than a page SQLite deletes a -wal it finds, and the switch to WAL
	// rewrites the header, but a bad file should be kept as it was for
	// whoever looks into what happened.
	err = checkHeader(abs)
	if err == nil {
		err = inspect(abs)
	}
	var s *Store
	if err == nil {
		s, err = openReadWrite(abs)
		if err == nil {
			return s, nil
		}
	}
	if !unusable(err) {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	aside, mvErr := moveAside(abs, time.Now())
	if mvErr != nil {
		return nil, fmt.Errorf("open store %s: %w; moving it aside failed: %w", path, err, mvErr)
	}
	s, err2 := openReadWrite(abs)
	if err2 != nil {
		return nil, fmt.Errorf("open store %s: fresh database after moving the bad one (%v) to %s: %w", path, err, aside, err2)
	}
	s.movedAside, s.movedReason = aside, err.Error()
	return s, nil
}

// inspect opens an existing, non-empty file read-only and reports whether
// it is a database pfwd cannot use (see unusable). Other failures are not
// its verdict to give: they are left to the read-write open, which sees
// the file as it will be used.
func inspect(path string) error {
	if fi, err := os.Stat(path); err != nil || fi.Size() == 0 {
		return nil
	}
	db := openDB(dsn(path, readParams()), nil)
	defer db.Close()
	if err := checkFits(context.Background(), db); unusable(err) {
		return err
	}
	return nil
}

// OpenReader opens an existing database read-only, for fwctl. It never
// creates the file: when there is none the error says so and satisfies
// errors.Is(err, fs.ErrNotExist). Readers work while pfwd writes, because the
// database is in WAL mode.
func OpenReader(path string) (*Store, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	fi, err := os.Stat(abs)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("open store: %w", noDatabaseError{path})
	}
	if err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	if fi.IsDir() {
		return nil, fmt.Errorf("open store %s: is a directory", path)
	}
	if err := checkHeader(abs); err != nil {
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	read := openDB(dsn(abs, readParams()), readFuncs)
	if err := checkReadable(context.Background(), read); err != nil {
		read.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	cols, err := tableColumns(context.Background(), read, tableBlocked)
	if err != nil {
		read.Close()
		return nil, fmt.Errorf("open store %s: %w", path, err)
	}
	return &Store{path: abs, readOnly: true, read: read, files: identify(abs), noDirection: !slices.Contains(cols, directionColumn)}, nil
}

// noDatabaseError is OpenReader's answer when there is no file: it says
// what that most likely means for the user, and matches fs.ErrNotExist
// for code without repeating "file does not exist" to people.
type noDatabaseError struct{ path string }

func (e noDatabaseError) Error() string {
	return "no database at " + e.path + " (has pfwd run yet?)"
}

func (noDatabaseError) Unwrap() error { return fs.ErrNotExist }

// checkReadable makes sure a reader sees a database it can read, so fwctl
// fails with one clear line instead of "no such table". A database with no
// schema version is read when it holds the contract's three tables with
// their columns: the seed wrote such files, and pfwd adopts them on its next
// start (migrations[0]); until then it has no log_suppressed table, which
// the queries treat as no suppressed rows.
func checkReadable(ctx context.Context, db *sql.DB) error {
	var version int
	err := db.QueryRowContext(ctx, "PRAGMA user_version").Scan(&version)
	switch {
	case err != nil:
		return err
	case version > schemaVersion:
		return newerSchema(version)
	case version == 0:
		err = checkTables(ctx, db, oldWriteProbes, contractTables...)
	case version < schemaVersion:
		// An older pfw's: read as it is until pfwd migrates it.
		err = checkTables(ctx, db, oldWriteProbes, allTables...)
	default:
		err = checkTables(ctx, db, writeProbes, allTables...)
	}
	if isMisfit(err) {
		// pfwd moves such a file aside and starts a fresh one.
		return fmt.Errorf("database is not set up (%w): start pfwd once to create it", err)
	}
	return err
}

// openReadWrite opens both pools on an absolute path and migrates.
func openReadWrite(path string) (*Store, error) {
	// Create the file ourselves: SQLite would use 0644, and it copies the
	// database's mode onto the -wal and -shm files, so this one mode decides
	// who may read the log.
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o640)
	if err != nil {
		return nil, err
	}
	f.Close()
	write := openDB(dsn(path, writeParams()), keepWALFiles)
	write.SetMaxOpenConns(1)
	write.SetMaxIdleConns(1)
	ctx := context.Background()
	if err := migrate(ctx, write); err != nil {
		write.Close()
		return nil, err
	}
	var mode string
	if err := write.QueryRowContext(ctx, "PRAGMA journal_mode").Scan(&mode); err != nil {
		write.Close()
		return nil, fmt.Errorf("read journal_mode: %w", err)
	}
	if mode != "wal" {
		// Without WAL a reader blocks the writer and the other way round;
		// better to say so now than to drop log rows later.
		write.Close()
		return nil, fmt.Errorf("journal_mode is %q, want wal (does the file system support shared memory?)", mode)
	}
	return &Store{path: path, write: write, read: openDB(dsn(path, readParams()), readFuncs), files: identify(path)}, nil
}

// connector hands database/sql connections from a go-sqlite3 driver of our
// own, so the write pool can have a ConnectHook without a driver name being
// registered process-wide.
type connector struct {
	driver *sqlite3.SQLiteDriver
	dsn    string
}

func (c connector) Connect(context.Context) (driver.Conn, error) { return c.driver.Open(c.dsn) }
func (c connector) Driver() driver.Driver                        { return c.driver }

func openDB(dsn string, hook func(*sqlite3.SQLiteConn) error) *sql.DB {
	return sql.OpenDB(connector{driver: &sqlite3.SQLiteDriver{ConnectHook: hook}, dsn: dsn})
}

// readFuncs registers the SQL functions the read queries use:
// pfw_in_prefix(ip, prefix) is 1 when the address text ip lies in the
// prefix text (as LogQuery.Net writes it), 0 otherwise, also for text that
// is no address.
func readFuncs(c *sqlite3.SQLiteConn) error {
	if err := c.RegisterFunc("pfw_in_prefix", inPrefix, true); err != nil {
		return fmt.Errorf("register pfw_in_prefix: %w", err)
	}
	return nil
}

// inPrefix takes any values: go-sqlite3 refuses a call whose arguments do
// not convert to the declared types, and a hand-made or seed row may hold
// NULL or a number in src_ip, which must not fail the whole query.
func inPrefix(ip, prefix any) bool {
	is, ok1 := ip.(string)
	ps, ok2 := prefix.(string)
	if !ok1 || !ok2 {
		return false
	}
	a, err := netip.ParseAddr(is)
	if err != nil {
		return false
	}
	p, err := netip.ParsePrefix(ps)
	return err == nil && p.Contains(a.Unmap())
}

// keepWALFiles makes the -wal and -shm files outlive pfwd. SQLite deletes
// them when the last connection closes, and a reader that may not create
// files in the directory (fwctl run by a user the database's group lets
// read it) cannot open a WAL database without them. journal_size_limit
// keeps the idle -wal small.
func keepWALFiles(c *sqlite3.SQLiteConn) error {
	if err := c.SetFileControlInt("main", sqlite3.SQLITE_FCNTL_PERSIST_WAL, 1); err != nil {
		return fmt.Errorf("keep WAL files: %w", err)
	}
	if _, err := c.Exec("PRAGMA journal_size_limit = 4194304", nil); err != nil {
		return fmt.Errorf("set journal_size_limit: %w", err)
	}
	return nil
}

// dsn builds a file: URI so that any byte in the path (?, #, %) is escaped
// rather than taken for a parameter.
func dsn(path, params string) string {
	u := url.URL{Scheme: "file", Path: path, RawQuery: params}
	return u.String()
}

// sqliteHeader starts every SQLite 3 database file.
const sqliteHeader = "SQLite format 3\x00"

// errNotDatabase is checkHeader's verdict on a file that is neither empty
// nor an SQLite database.
var errNotDatabase = errors.New("file is not a database (no SQLite header)")

// checkHeader fails with errNotDatabase when the file at path has content
// that does not start with the SQLite header. A missing or empty file
// passes: SQLite makes a database of it.
func checkHeader(path string) error {
	f, err := os.Open(path)
	if errors.Is(err, fs.ErrNotExist) {
		return nil
	}
	if err != nil {
		return err
	}
	defer f.Close()
	var head [len(sqliteHeader)]byte
	n, err := io.ReadFull(f, head[:])
	switch {
	case n == 0 && err == io.EOF:
		return nil
	case err == io.ErrUnexpectedEOF || (err == nil && string(head[:]) != sqliteHeader):
		return errNotDatabase
	}
	return err
}

// isNotDatabase reports whether err is SQLite's or checkHeader's verdict
// that the file is not a usable SQLite database: not one at all
// (SQLITE_NOTADB) or damaged (SQLITE_CORRUPT).
func isNotDatabase(err error) bool {
	if errors.Is(err, errNotDatabase) {
		return true
	}
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrNotADB || se.Code == sqlite3.ErrCorrupt)
}

// isLocked reports whether err is SQLite's "database is locked"
// (SQLITE_BUSY) or "database table is locked" (SQLITE_LOCKED): another
// connection held a lock past the busy timeout, and the same statement
// will work once it lets go.
func isLocked(err error) bool {
	var se sqlite3.Error
	return errors.As(err, &se) && (se.Code == sqlite3.ErrBusy || se.Code == sqlite3.ErrLocked)
}

// unusable reports whether err says the file is one pfwd cannot use, which
// are the only cases Open repairs by moving the file aside: not a database,
// damaged, or a schema that does not fit. Permission and I/O errors are not:
// moving a file we cannot read would hide the real problem.
func unusable(err error) bool { return isNotDatabase(err) || isMisfit(err) }

// moveAside renames a bad database and its -wal and -shm files out of the
// way. The WAL must go too: left behind, it would be replayed into the fresh
// database.
func moveAside(path string, now time.Time) (string, error) {
	base := path + ".corrupt-" + now.UTC().Format("20060102T150405Z")
	aside := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(aside); errors.Is(err, fs.ErrNotExist) {
			break
		}
		aside = fmt.Sprintf("%s-%d", base, i)
	}
	if err := os.Rename(path, aside); err != nil {
		return "", err
	}
	for _, suffix := range []string{"-wal", "-shm"} {
		err := os.Rename(path+suffix, aside+suffix)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return aside, err
		}
	}
	return aside, nil
}

// Close closes the database. Stop every Writer's Run first: rows it still
// holds are lost once the Store is closed.
func (s *Store) Close() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	// Readers first, so the write connection is the last one out and can
	// checkpoint the WAL back into the database file.
	err := s.read.Close()
	if s.write != nil {
		err = errors.Join(err, s.write.Close())
	}
	if err != nil {
		return fmt.Errorf("close store %s: %w", s.path, err)
	}
	return nil
}

// Path is the absolute path of the database file.
func (s *Store) Path() string { return s.path }

// MovedAside is where Open, or the last reopen (see Reopen and
// WriterConfig.OnReopen), moved an unusable file before creating a fresh
// database, or "" when it did not.
func (s *Store) MovedAside() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.movedAside
}

// MovedAsideReason says why the file MovedAside names was moved ("file is
// not a database (no SQLite header)", "no table threat_intel", "database
// disk image is malformed", ...), or "" when none was.
func (s *Store) MovedAsideReason() string {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.movedReason
}

// ReadOnly reports whether the Store came from OpenReader.
func (s *Store) ReadOnly() bool { return s.readOnly }
