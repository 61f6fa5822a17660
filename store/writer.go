package store

import (
	"cmp"
	"context"
	"database/sql"
	"database/sql/driver"
	"errors"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

// WriterConfig tunes a Writer. Zero fields take the defaults noted.
type WriterConfig struct {
	// Buffer is how many rows may wait for the writer (default 16384).
	// When it is full, Blocked and Allowed count the row as suppressed
	// instead of waiting.
	Buffer int
	// MaxRowsPerSecond caps rows written per wall-clock second, both tables
	// together (default 2000, negative: no cap). Rows beyond it are counted
	// per reason in log_suppressed instead of written, so a flood cannot
	// grow the database by gigabytes.
	MaxRowsPerSecond int
	// FlushEvery is how long a row may wait before its batch is committed
	// (default 250ms).
	FlushEvery time.Duration
	// MaxBatch commits early once this many rows are waiting (default 1024).
	MaxBatch int
	// ShutdownTimeout bounds the final flush when Run's context ends
	// (default 5s), its wait for another program's lock on the database
	// included.
	ShutdownTimeout time.Duration
	// Retention is applied by Run at start and then every Retention.Every,
	// a chunk at a time between batches (see pruneChunk).
	Retention Retention
	// CheckEvery is how often Run looks whether the database file was
	// deleted or replaced, and reopens it if so (default 1s; one stat).
	CheckEvery time.Duration
	// OnReopen, when set, is called from Run's goroutine after it reopened
	// the database, with nil or why the new one could not be opened (Run
	// then tries again every CheckEvery). Run reopens when the file was
	// deleted or replaced, and when it found the file damaged: then it
	// moved the file aside first, and Store.MovedAside and
	// MovedAsideReason say where and why. The new database has no threat
	// entries: the daemon writes them again.
	OnReopen func(error)
	// OnError, when set, is called from Run's goroutine for every failed
	// batch or retention pass, so the daemon can log it (rate-limited on
	// its side), and for every try of a batch that waits for another
	// program's lock on the database ("waiting for the database lock").
	// It must not block for long: rows queue up meanwhile.
	OnError func(error)
	// OnPrune, when set, is called from Run's goroutine after a retention
	// pass deleted packet rows, with how many: an audit log must not lose
	// rows in silence. A pass shutdown interrupts reports what it deleted
	// so far.
	OnPrune func(Pruned)
}

func (c WriterConfig) withDefaults() WriterConfig {
	c.Buffer = cmp.Or(max(c.Buffer, 0), 16384)
	c.MaxRowsPerSecond = cmp.Or(c.MaxRowsPerSecond, 2000)
	c.FlushEvery = cmp.Or(max(c.FlushEvery, 0), 250*time.Millisecond)
	c.MaxBatch = cmp.Or(max(c.MaxBatch, 0), 1024)
	c.ShutdownTimeout = cmp.Or(max(c.ShutdownTimeout, 0), 5*time.Second)
	c.CheckEvery = cmp.Or(max(c.CheckEvery, 0), time.Second)
	c.Retention = c.Retention.withDefaults()
	return c
}

// logType says which table a row belongs to. Its String is the value of
// LogQuery.Table and of log_suppressed.log_type.
type logType uint8

const (
	logBlocked logType = iota
	logAllowed
)

func (l logType) String() string {
	if l == logAllowed {
		return "allowed"
	}
	return "blocked"
}

// entry is one queued row.
type entry struct {
	row Row
	log logType
}

// suppressKey identifies a suppressed-row counter.
type suppressKey struct {
	log    logType
	reason string
}

// WriterStats are a Writer's counters since NewWriter.
type WriterStats struct {
	Blocked, Allowed uint64 // rows committed
	// Suppressed counts rows not written because the buffer was full or
	// the per-second cap was reached; SuppressedBy splits it per log type
	// and reason, largest first.
	Suppressed   uint64
	SuppressedBy []SuppressedCount
	Batches      uint64 // committed transactions
	Errors       uint64 // failed batches, tries of a batch waiting for the database lock, and retention passes
	Lost         uint64 // rows in batches that failed to commit
	Queued       int    // rows waiting in the buffer now
	// LastError is why a batch waits for the database lock while one
	// does, else the last failed batch's or retention pass's error, ""
	// if none.
	LastError string
}

// Writer moves log rows from the packet path to the database. Blocked and
// Allowed never wait: they put the row in a bounded buffer or, when it is
// full, count it. Run, in one goroutine, commits the buffer in batched
// transactions. A Writer must not be copied.
type Writer struct {
	store *Store
	cfg   WriterConfig
	queue chan entry
	flush chan chan error // Flush's requests to Run
	done  chan struct{}   // closed when Run returns
	ran   atomic.Bool
	now   func() time.Time // the clock of the per-second cap and recoverDamaged; tests replace it
	// skipDamageCheck turns off Run's start-up integrity check, so that
	// tests reach damage through a batch.
	skipDamageCheck bool

	blocked, allowed      atomic.Uint64
	suppressed            atomic.Uint64
	batches, errors, lost atomic.Uint64

	mu              sync.Mutex
	lastErr         string
	lockErr         string                 // why the batch waits for the database lock, "" when it does not
	pendingSupp     map[suppressKey]uint64 // not yet in log_suppressed
	suppressedByKey map[suppressKey]uint64 // since NewWriter, for Stats

	// Owned by Run's goroutine.
	batch    []entry
	capped   map[suppressKey]uint64 // over the cap, not yet in pendingSupp
	window   int64                  // the newest Unix second the cap counts
	inWindow int                    // rows stamped in window accepted
	inPrev   int                    // rows stamped in the second before window accepted
	inserts  [2]*sql.Stmt           // by logType
	// lockRetry is the pause before the next try of a batch that waits
	// for another program's lock on the database, 0 when none does.
	lockRetry time.Duration
	stopping  bool // the final flush is under way: a batch that meets the lock is lost
	// pruning is the retention pass under way, nil between passes.
	pruning *pruneJob
	// No damaged file is moved aside before recoverAfter; recoverWait is
	// the pause after the last one (see recoverDamaged).
	recoverAfter time.Time
	recoverWait  time.Duration
}

// The pause after moving a damaged database aside before another may be:
// it starts at minRecoverWait and doubles while fresh files fail too (a
// failing disk), up to maxRecoverWait, so such a disk gets at most one
// moved-aside file an hour rather than one per batch.
const (
	minRecoverWait = time.Minute
	maxRecoverWait = time.Hour
)

// A batch that met another program's lock on the database for the whole
// busy timeout is tried again minLockRetry later, then twice as long after
// each try that fails too, up to maxLockRetry: the lock may last as long
// as a VACUUM of the whole file, but rows must land soon after it ends.
// Those tries wait lockPoll for the lock rather than the busy timeout, so
// that Run stays free for its ticks, Flush and shutdown meanwhile.
const (
	minLockRetry = 250 * time.Millisecond
	maxLockRetry = 5 * time.Second
	lockPoll     = 100 * time.Millisecond
)

// errLockWait marks the error of a batch kept to be tried again because
// another program holds the database's lock.
var errLockWait = errors.New("waiting for the database lock")

// NewWriter makes a Writer for s; start its Run in a goroutine. It panics
// when s is read-only, which is a wiring mistake, not a run-time condition.
func (s *Store) NewWriter(cfg WriterConfig) *Writer {
	if s.ReadOnly() {
		panic("store: NewWriter on a Store from OpenReader")
	}
	cfg = cfg.withDefaults()
	return &Writer{
		store:           s,
		cfg:             cfg,
		queue:           make(chan entry, cfg.Buffer),
		flush:           make(chan chan error),
		done:            make(chan struct{}),
		now:             time.Now,
		pendingSupp:     make(map[suppressKey]uint64),
		suppressedByKey: make(map[suppressKey]uint64),
		batch:           make([]entry, 0, cfg.MaxBatch),
		capped:          make(map[suppressKey]uint64),
	}
}

// Blocked queues a row for blocked_packets. It never blocks; false means
// the buffer was full and the row was counted as suppressed under r.Reason.
func (w *Writer) Blocked(r Row) bool { return w.enqueue(entry{row: r, log: logBlocked}) }

// Allowed queues a sampled row for allowed_packets, like Blocked.
func (w *Writer) Allowed(r Row) bool { return w.enqueue(entry{row: r, log: logAllowed}) }

// BlockedNotLogged counts n blocked rows that were never offered (the
// kernel dropped the packets and logged only some, at a bounded rate) as
// suppressed under reason.
func (w *Writer) BlockedNotLogged(reason string, n uint64) {
	if n == 0 {
		return
	}
	w.mu.Lock()
	w.addSuppressedLocked(suppressKey{logBlocked, reason}, n)
	w.mu.Unlock()
}

func (w *Writer) enqueue(e entry) bool {
	select {
	case w.queue <- e:
		return true
	default:
		w.mu.Lock()
		w.addSuppressedLocked(suppressKey{e.log, e.row.Reason}, 1)
		w.mu.Unlock()
		return false
	}
}

func (w *Writer) addSuppressedLocked(k suppressKey, n uint64) {
	w.pendingSupp[k] += n
	w.suppressedByKey[k] += n
	w.suppressed.Add(n)
}

// Stats returns the counters. It is cheap enough for every metrics scrape.
func (w *Writer) Stats() WriterStats {
	st := WriterStats{
		Blocked:    w.blocked.Load(),
		Allowed:    w.allowed.Load(),
		Suppressed: w.suppressed.Load(),
		Batches:    w.batches.Load(),
		Errors:     w.errors.Load(),
		Lost:       w.lost.Load(),
		Queued:     len(w.queue),
	}
	w.mu.Lock()
	st.LastError = cmp.Or(w.lockErr, w.lastErr)
	st.SuppressedBy = make([]SuppressedCount, 0, len(w.suppressedByKey))
	for k, n := range w.suppressedByKey {
		st.SuppressedBy = append(st.SuppressedBy, SuppressedCount{Type: k.log.String(), Reason: k.reason, Count: int64(n)})
	}
	w.mu.Unlock()
	sortSuppressed(st.SuppressedBy)
	return st
}

// errWriterStopped is what Flush returns once Run has returned.
var errWriterStopped = errors.New("writer is not running")

// Flush waits until every row queued before the call is committed. Run must
// be running; after it has returned, Flush fails at once.
func (w *Writer) Flush(ctx context.Context) error {
	reply := make(chan error, 1)
	select {
	case w.flush <- reply:
	case <-w.done:
		return fmt.Errorf("flush log: %w", errWriterStopped)
	case <-ctx.Done():
		return fmt.Errorf("flush log: %w", ctx.Err())
	}
	select {
	case err := <-reply:
		return err
	case <-ctx.Done():
		return fmt.Errorf("flush log: %w", ctx.Err())
	}
}

// Run writes queued rows until ctx is done, then commits what is still
// buffered, taking at most ShutdownTimeout, and returns. It returns nil after
// a clean shutdown and the final flush's error otherwise; errors of earlier
// batches go to OnError and the counters, since Run must keep going. Call it
// once.
func (w *Writer) Run(ctx context.Context) error {
	if !w.ran.CompareAndSwap(false, true) {
		return errors.New("store: Writer.Run called twice")
	}
	defer close(w.done)
	// A batch that has started is finished even when ctx ends meanwhile:
	// cancelling it would throw away rows that are a commit away.
	work := context.WithoutCancel(ctx)
	defer w.closeStatements()

	// Damage shows only where a statement reads: in pages inserts never
	// touch (old rows fwctl reads, threat_intel) it would stay for good.
	// One quick_check per Run reads every page, off the write path; Open
	// cannot afford to (half a second for 24 MB with a cold cache).
	damage := make(chan damageReport, 1)
	checkCtx, stopCheck := context.WithCancel(ctx)
	checkDone := make(chan struct{})
	go func() {
		defer close(checkDone)
		if w.skipDamageCheck {
			return
		}
		if file, err := w.store.checkDamage(checkCtx); isNotDatabase(err) {
			damage <- damageReport{file, err}
		}
	}()
	defer func() { stopCheck(); <-checkDone }()

	// The flush ticker runs only while rows or counts wait: an idle
	// pfwd must not wake four times a second to commit nothing. Counts
	// producers leave without a row (BlockedNotLogged, a full queue) are
	// committed at the next check tick when it is stopped. While a batch
	// waits for the database lock, it ticks the tries instead.
	flushTick := time.NewTicker(w.cfg.FlushEvery)
	defer flushTick.Stop()
	tickEvery := w.cfg.FlushEvery // 0 while stopped
	retime := func() {
		every := w.lockRetry
		if every == 0 && w.pending() {
			every = w.cfg.FlushEvery
		}
		switch {
		case every == tickEvery:
		case every == 0:
			flushTick.Stop()
		default:
			flushTick.Reset(every)
		}
		tickEvery = every
	}
	checkTick := time.NewTicker(w.cfg.CheckEvery)
	defer checkTick.Stop()
	var pruneTick <-chan time.Time
	if w.cfg.Retention.Every > 0 {
		w.pruning = w.store.newPrune(w.cfg.Retention, w.now())
		t := time.NewTicker(w.cfg.Retention.Every)
		defer t.Stop()
		pruneTick = t.C
	}
	for {
		// While a batch waits for the database lock, new rows wait in the
		// queue, whose bound counts what it cannot take, rather than in
		// the batch, which nothing bounds; and they are counted against
		// the cap only when taken, by their stamps, as always.
		queue := w.queue
		if w.lockRetry > 0 {
			queue = nil
		}
		// A retention pass takes its turn with the rest, a chunk at a
		// time: select picks at random among ready cases, so the rows
		// arriving meanwhile are taken and committed between chunks, and
		// a flood cannot hold the pass off either. It waits while a batch
		// waits for the database lock, which its DELETEs would wait for
		// too, for the whole busy timeout.
		var pruneNext <-chan struct{}
		if w.pruning != nil && w.lockRetry == 0 {
			pruneNext = alwaysReady
		}
		select {
		case e := <-queue:
			w.accept(e)
			// Take what else is waiting without going through select
			// again per row. The bound counts rows taken, not rows kept:
			// under a flood past the cap the queue never empties, and the
			// ticks and Flush requests must still get their turn.
			for i := 1; i < w.cfg.MaxBatch && w.drainOne(); i++ {
			}
			if len(w.batch) >= w.cfg.MaxBatch {
				w.report(w.commit(work))
			}
			retime()
		case <-flushTick.C:
			w.report(w.commit(work))
			retime()
		case <-pruneTick:
			if w.pruning == nil { // one still under way goes on
				w.pruning = w.store.newPrune(w.cfg.Retention, w.now())
			}
		case <-pruneNext:
			w.pruneStep(ctx)
		case <-checkTick.C:
			w.reopenIfReplaced()
			if tickEvery == 0 && w.pending() {
				w.report(w.commit(work))
				retime()
			}
		case d := <-damage:
			if w.store.isOpen(d.file) {
				w.recoverDamaged(d.err)
			}
		case reply := <-w.flush:
			// A batch waiting for the lock goes first; the queue stays
			// behind it until it is in.
			var err error
			if w.lockRetry > 0 {
				err = w.commitAll(work)
			}
			if w.lockRetry == 0 {
				w.drain(len(w.queue))
				err = errors.Join(err, w.commitAll(work))
			}
			w.report(err)
			retime()
			reply <- err
		case <-ctx.Done():
			w.endPrune() // the next Run prunes what is left
			final, cancel := context.WithTimeout(work, w.cfg.ShutdownTimeout)
			defer cancel()
			w.stopping = true
			w.drain(len(w.queue))
			if err := w.commitAll(final); err != nil {
				return fmt.Errorf("log writer shutdown: %w", err)
			}
			return nil
		}
	}
}

// drainOne takes one waiting row if there is one.
func (w *Writer) drainOne() bool {
	select {
	case e := <-w.queue:
		w.accept(e)
		return true
	default:
		return false
	}
}

// drain takes up to n waiting rows.
func (w *Writer) drain(n int) {
	for i := 0; i < n && w.drainOne(); i++ {
	}
}

// pending reports whether rows or suppression counts wait for a commit.
func (w *Writer) pending() bool {
	if len(w.batch) > 0 || len(w.capped) > 0 {
		return true
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	return len(w.pendingSupp) > 0
}

// lateRows is how many seconds late a row may come and still be counted
// with the second before the newest; one later still restarts the count.
const lateRows = 60

// accept applies the per-second cap and adds the row to the batch.
func (w *Writer) accept(e entry) {
	now := w.now()
	if e.row.Time.IsZero() {
		e.row.Time = now
	}
	if limit := w.cfg.MaxRowsPerSecond; limit > 0 {
		// The cap counts by the rows' stamps, the second their packets
		// were decided: rows come off the queue a little late and a
		// little out of order, so the second before the newest is
		// counted too, and rows later still share its count (they
		// must not start one of their own each). A clock stepped back
		// starts the count over: the writer's own clock says so (rows
		// stamped before the step would otherwise all share the count
		// of one second until the clock caught up), or a stamp a minute
		// back.
		in := &w.inWindow
		if now.Unix() < w.window-1 {
			w.window, w.inPrev, w.inWindow = e.row.Time.Unix(), 0, 0
		}
		switch sec := e.row.Time.Unix(); {
		case sec == w.window:
		case sec < w.window && sec >= w.window-lateRows:
			in = &w.inPrev
		case sec == w.window+1:
			w.window, w.inPrev, w.inWindow = sec, w.inWindow, 0
		default:
			w.window, w.inPrev, w.inWindow = sec, 0, 0
		}
		if *in >= limit {
			w.capped[suppressKey{e.log, e.row.Reason}]++
			return
		}
		*in++
	}
	w.batch = append(w.batch, e)
}

// commitAll commits the batch, in MaxBatch pieces when drain made it
// larger, and the pending suppression counts. It stops early when a piece
// waits for the database lock.
func (w *Writer) commitAll(ctx context.Context) error {
	var errs error
	for {
		errs = errors.Join(errs, w.commit(ctx))
		if len(w.batch) == 0 || w.lockRetry > 0 {
			return errs
		}
	}
}

// commit writes up to MaxBatch rows of the batch and the pending
// suppression counts in one transaction. When the database turns out to be
// damaged, it is replaced (see recoverDamaged) and the transaction tried
// once more on the fresh one. When another program held the database's
// lock for the whole busy timeout (an sqlite3 shell's DELETE or VACUUM),
// the rows are kept and tried again after lockRetry, whose pause grows
// while the lock lasts; only the final flush gives up on them, at its
// deadline. On any other failure the rows are dropped (counted in Lost: a
// full disk or a file that is no database would refuse a retry too, and
// holding rows would only grow memory). The suppression counts, a handful
// of integers, are kept for the next commit either way.
func (w *Writer) commit(ctx context.Context) error {
	n := min(len(w.batch), w.cfg.MaxBatch)
	rows := w.batch[:n]
	w.mu.Lock()
	for k, c := range w.capped {
		w.addSuppressedLocked(k, c)
	}
	clear(w.capped)
	// Take the pending map only when it has counts; an empty one stays
	// with the producers, who may fill it the moment the lock is released.
	var supp map[suppressKey]uint64
	if len(w.pendingSupp) > 0 {
		supp = w.pendingSupp
		w.pendingSupp = make(map[suppressKey]uint64, len(supp))
	}
	w.mu.Unlock()
	if len(rows) == 0 && len(supp) == 0 {
		return nil
	}

	wait := w.lockWait(ctx)
	err := w.writeTx(ctx, rows, supp, w.now(), wait)
	if err != nil && w.recoverDamaged(fmt.Errorf("write log rows: %w", err)) {
		err = w.writeTx(ctx, rows, supp, w.now(), wait)
	}
	if err != nil && isLocked(err) && !w.stopping {
		w.lockRetry = min(max(2*w.lockRetry, minLockRetry), maxLockRetry)
		err = fmt.Errorf("write %d log rows to %s: %w, which another program holds (next try in %v): %w",
			len(w.batch), w.store.path, errLockWait, w.lockRetry, err)
		w.errors.Add(1)
		w.mu.Lock()
		w.lockErr = err.Error()
		for k, c := range supp {
			w.pendingSupp[k] += c
		}
		w.mu.Unlock()
		return err
	}
	w.lockRetry = 0
	w.mu.Lock()
	w.lockErr = ""
	w.mu.Unlock()
	if err == nil {
		var allowed uint64
		for _, e := range rows {
			if e.log == logAllowed {
				allowed++
			}
		}
		w.allowed.Add(allowed)
		w.blocked.Add(uint64(len(rows)) - allowed)
		w.batches.Add(1)
	}
	// Keep the batch's backing array for the next batch; rows shares it,
	// so it is not used after this.
	rest := copy(w.batch, w.batch[n:])
	clear(w.batch[rest:])
	w.batch = w.batch[:rest]
	if err != nil {
		w.errors.Add(1)
		w.lost.Add(uint64(n))
		w.mu.Lock()
		for k, c := range supp {
			w.pendingSupp[k] += c
		}
		w.mu.Unlock()
		return fmt.Errorf("write %d log rows to %s: %w", n, w.store.path, err)
	}
	return nil
}

const (
	insertBlocked    = `INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, reason, packet_hash, direction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`
	insertAllowed    = `INSERT INTO allowed_packets (timestamp, src_ip, dst_ip, src_port, dst_port, protocol, direction) VALUES (?, ?, ?, ?, ?, ?, ?)`
	upsertSuppressed = `INSERT INTO log_suppressed (hour, log_type, reason, count) VALUES (?, ?, ?, ?)
		ON CONFLICT (hour, log_type, reason) DO UPDATE SET count = count + excluded.count`
)

// lockWait is how long the next transaction may wait for another
// connection's lock: the busy timeout, only lockPoll while a batch already
// waits for the lock (Run must get back to its ticks), and in the final
// flush until its deadline, whether a batch waits or not.
func (w *Writer) lockWait(ctx context.Context) time.Duration {
	if deadline, ok := ctx.Deadline(); ok {
		return max(time.Until(deadline), time.Millisecond)
	}
	if w.lockRetry > 0 {
		return lockPoll
	}
	return busyTimeout
}

// writeTx is one transaction: the rows, then the suppression counts under
// the hour of now. It waits up to lockWait for another connection's lock.
func (w *Writer) writeTx(ctx context.Context, rows []entry, supp map[suppressKey]uint64, now time.Time, lockWait time.Duration) error {
	w.store.mu.RLock()
	defer w.store.mu.RUnlock()
	if err := w.prepare(ctx); err != nil {
		return err
	}
	// The busy timeout is the connection's, which the threat saves and
	// retention share: set for this transaction alone, and set back.
	// database/sql's context does not reach SQLite's wait for a lock.
	conn, err := w.store.write.Conn(ctx)
	if err != nil {
		return err
	}
	defer conn.Close()
	if lockWait != busyTimeout {
		if err := setBusyTimeout(ctx, conn, lockWait); err != nil {
			return err
		}
		defer func() {
			if err := setBusyTimeout(context.WithoutCancel(ctx), conn, busyTimeout); err != nil {
				// Not back to the pool with a timeout others do not
				// expect: a fresh connection has the right one.
				conn.Raw(func(any) error { return driver.ErrBadConn })
			}
		}()
	}
	tx, err := conn.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	defer tx.Rollback()
	// The write pool has one connection, so these are the statements
	// prepared on it and database/sql does not prepare them again.
	blocked := tx.StmtContext(ctx, w.inserts[logBlocked])
	allowed := tx.StmtContext(ctx, w.inserts[logAllowed])
	for _, e := range rows {
		r := &e.row
		ts, src, dst := formatTime(r.Time), r.Src.String(), r.Dst.String()
		sport, dport := portArg(r.HasPorts, r.SrcPort), portArg(r.HasPorts, r.DstPort)
		if e.log == logAllowed {
			_, err = allowed.ExecContext(ctx, ts, src, dst, sport, dport, ProtoName(r.Proto), r.direction())
		} else {
			_, err = blocked.ExecContext(ctx, ts, src, dst, sport, dport, ProtoName(r.Proto), r.Reason, hashHex(r.Hash), r.direction())
		}
		if err != nil {
			return err
		}
	}
	if len(supp) > 0 {
		hour := hourOf(now)
		for k, c := range supp {
			if _, err := tx.ExecContext(ctx, upsertSuppressed, hour, k.log.String(), k.reason, int64(c)); err != nil {
				return err
			}
		}
	}
	return tx.Commit()
}

// setBusyTimeout sets how long conn's statements wait for another
// connection's lock.
func setBusyTimeout(ctx context.Context, conn *sql.Conn, d time.Duration) error {
	if _, err := conn.ExecContext(ctx, fmt.Sprintf("PRAGMA busy_timeout = %d", d.Milliseconds())); err != nil {
		return fmt.Errorf("set busy_timeout: %w", err)
	}
	return nil
}

// prepare prepares the insert statements once per Run.
func (w *Writer) prepare(ctx context.Context) error {
	for lt, q := range [2]string{logBlocked: insertBlocked, logAllowed: insertAllowed} {
		if w.inserts[lt] != nil {
			continue
		}
		st, err := w.store.write.PrepareContext(ctx, q)
		if err != nil {
			return fmt.Errorf("prepare insert: %w", err)
		}
		w.inserts[lt] = st
	}
	return nil
}

func (w *Writer) closeStatements() {
	for i, st := range w.inserts {
		if st != nil {
			st.Close()
			w.inserts[i] = nil
		}
	}
}

// reopenIfReplaced reopens the database when its file was deleted or
// replaced. The statements on the old pools are closed first, so the old
// connection can close at once and let go of its WAL files.
func (w *Writer) reopenIfReplaced() {
	if !w.store.Replaced() {
		return
	}
	w.closeStatements()
	reopened, err := w.store.Reopen()
	if reopened && w.cfg.OnReopen != nil {
		w.cfg.OnReopen(err)
	}
}

// damageReport is the background integrity check's finding: the file it
// checked, and the error that shows it damaged.
type damageReport struct {
	file fileID
	err  error
}

// recoverDamaged moves a damaged database aside and opens a fresh one
// (Store.replaceDamaged) when cause says the file is damaged (SQLITE_CORRUPT
// or SQLITE_NOTADB) and the pause after the last such move is over, then
// tells OnReopen. It reports whether a fresh database is open. Without it a
// file damaged past its header would refuse every batch, across restarts
// too, since Open reads only the header and the schema.
func (w *Writer) recoverDamaged(cause error) bool {
	if !isNotDatabase(cause) {
		return false
	}
	now := w.now()
	if now.Before(w.recoverAfter) {
		return false
	}
	if w.recoverAfter.IsZero() || now.Sub(w.recoverAfter) > maxRecoverWait {
		w.recoverWait = minRecoverWait // the first time, or after a long calm
	} else {
		w.recoverWait = min(2*w.recoverWait, maxRecoverWait)
	}
	w.recoverAfter = now.Add(w.recoverWait)
	w.closeStatements()
	err := w.store.replaceDamaged(cause)
	if w.cfg.OnReopen != nil {
		w.cfg.OnReopen(err)
	}
	return err == nil
}

// alwaysReady is a closed channel: a select case on it is always ready.
var alwaysReady = func() chan struct{} {
	c := make(chan struct{})
	close(c)
	return c
}()

// pruneStep runs the next chunk of the retention pass and reports the pass
// when it is over. It runs under Run's own context, so shutdown interrupts
// a chunk in progress, and a stop waits for no more than that.
func (w *Writer) pruneStep(ctx context.Context) {
	done, err := w.store.pruneStep(ctx, w.pruning)
	if !done {
		return
	}
	w.endPrune()
	if err != nil && ctx.Err() == nil {
		w.errors.Add(1)
		w.report(err)
		w.recoverDamaged(err)
	}
}

// endPrune ends the retention pass under way, if any, and tells OnPrune
// how many packet rows it deleted.
func (w *Writer) endPrune() {
	j := w.pruning
	w.pruning = nil
	if j != nil && j.pruned.Blocked+j.pruned.Allowed > 0 && w.cfg.OnPrune != nil {
		w.cfg.OnPrune(j.pruned)
	}
}

// report records err as the last error and tells OnError. A batch that
// waits for the database lock is not recorded: commit keeps why it waits
// in lockErr, which Stats shows only while it does, since the rows are not
// lost.
func (w *Writer) report(err error) {
	if err == nil {
		return
	}
	if !errors.Is(err, errLockWait) {
		w.mu.Lock()
		w.lastErr = err.Error()
		w.mu.Unlock()
	}
	if w.cfg.OnError != nil {
		w.cfg.OnError(err)
	}
}

// sortSuppressed orders counts largest first, then by type and reason, so
// output is stable.
func sortSuppressed(s []SuppressedCount) {
	slices.SortFunc(s, func(a, b SuppressedCount) int {
		return cmp.Or(cmp.Compare(b.Count, a.Count), cmp.Compare(a.Type, b.Type), cmp.Compare(a.Reason, b.Reason))
	})
}
