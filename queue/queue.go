package queue

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// Observer is told about every packet pfw decided or the kernel dropped.
// It is called on the worker goroutine, after the verdict was sent; payload
// is only valid during the call.
type Observer interface {
	Decided(p *verdict.Packet, dir rules.Direction, d verdict.Decision, payload []byte)
}

// Config sizes the queues.
type Config struct {
	QueueNum   uint16 // first queue number
	QueueCount uint16 // queues QueueNum..QueueNum+QueueCount-1, one worker each
	// MaxQueueLen is how many packets the kernel holds per queue while the
	// worker is busy; beyond it the kernel drops (default 4096).
	MaxQueueLen uint32
	// CopyRange is how many bytes of each packet are copied up: headers
	// are all the pipeline reads, but an IPv6 packet's extension headers
	// come before its ports, so the range leaves room for chains far
	// longer than real traffic carries (default 1024). Only a flow's first
	// packets are queued, so the extra bytes cost little.
	CopyRange uint32
	// ReadBuffer is the socket receive buffer in bytes (default 8 MiB).
	ReadBuffer int
	// Batch is how many packets a worker reads per system call at most
	// (default 64). Their verdicts go back in one write.
	Batch int
}

func (c *Config) setDefaults() {
	if c.QueueCount == 0 {
		c.QueueCount = 1
	}
	if c.MaxQueueLen == 0 {
		c.MaxQueueLen = 4096
	}
	if c.CopyRange == 0 {
		c.CopyRange = 1024
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 8 << 20
	}
	if c.Batch <= 0 {
		c.Batch = 64
	}
}

// Counters are totals since the queues opened; safe to read any time.
type Counters struct {
	Seen, Accepted, Dropped atomic.Uint64
	// VerdictErrors counts verdicts the kernel refused or that could not
	// be sent (a packet the kernel then holds until the queue is closed).
	VerdictErrors atomic.Uint64
	ReadErrors    atomic.Uint64 // socket errors, messages without a packet id or cut by the read
}

// Queues are the open NFQUEUE sockets.
type Queues struct {
	cfg     Config
	engine  *verdict.Engine
	obs     Observer
	workers []*worker
	stop    context.CancelFunc
	running sync.WaitGroup
	closed  sync.Once
	C       Counters
}

// Hook numbers of the netfilter inet hooks, as NFQUEUE reports them.
const (
	hookLocalOut    = 3
	hookPostRouting = 4
)

// bindTimeout bounds the wait for the kernel's answer to a bind.
const bindTimeout = 5 * time.Second

// Open binds the queues. Nothing is read until Start, except packets that
// arrive while a bind is being acknowledged, which are decided at once.
func Open(cfg Config, engine *verdict.Engine, obs Observer) (*Queues, error) {
	cfg.setDefaults()
	q := &Queues{cfg: cfg, engine: engine, obs: obs}
	for i := range cfg.QueueCount {
		num := cfg.QueueNum + i
		w, err := q.bind(num)
		if err != nil {
			q.Close()
			return nil, fmt.Errorf("open nfqueue %d: %w", num, err)
		}
		q.workers = append(q.workers, w)
	}
	return q, nil
}

// bind opens queue num's socket and configures the queue in one message:
// copy mode and range, length, flags.
func (q *Queues) bind(num uint16) (*worker, error) {
	// Room for the copied bytes and the attributes around them (packet
	// header, interfaces, hardware address, capture length, skb info).
	msgSize := int(q.cfg.CopyRange) + 1024
	s, err := openSock(num, q.cfg.Batch, msgSize, q.cfg.ReadBuffer)
	if err != nil {
		return nil, err
	}
	w := newWorker(q, s)
	onPacket := func(m []byte) {
		w.add(m[nlmsgHdrLen:])
		w.finish()
	}
	if err := s.exec(configMsg(num, 1, nfqnlCfgCmdBind, &q.cfg), bindTimeout, onPacket); err != nil {
		s.close()
		// The kernel answers EPERM when another socket has the queue bound
		// (nfqnl_recv_config), EBUSY on older kernels; pfwd runs as root, so
		// neither is about privileges.
		if errors.Is(err, unix.EPERM) || errors.Is(err, unix.EBUSY) {
			return nil, fmt.Errorf("bind: %w (another process reads this queue: a second pfwd, or use --queue)", err)
		}
		return nil, fmt.Errorf("bind: %w", err)
	}
	return w, nil
}

// Start runs one worker per queue until ctx is done or Close.
func (q *Queues) Start(ctx context.Context) error {
	ctx, q.stop = context.WithCancel(ctx)
	for _, w := range q.workers {
		q.running.Go(func() { w.run(ctx) })
	}
	go func() {
		<-ctx.Done()
		for _, w := range q.workers {
			// A deadline in the past wakes a worker waiting for packets.
			w.s.file.SetReadDeadline(time.Unix(1, 0))
		}
	}()
	return nil
}

// Close stops the workers, waits for them, and closes the sockets, which
// unbinds the queues: the kernel drops what it still held for them, and
// new packets meet the nft rule's bypass flag (accepted) or are dropped
// (fail-closed).
func (q *Queues) Close() error {
	var errs []error
	q.closed.Do(func() {
		if q.stop != nil {
			q.stop()
		}
		q.running.Wait()
		for _, w := range q.workers {
			if err := w.s.close(); err != nil {
				errs = append(errs, fmt.Errorf("close nfqueue %d: %w", w.s.num, err))
			}
		}
	})
	return errors.Join(errs...)
}

// worker decides the packets of one queue, a batch at a time: everything
// read by one recvmmsg is decided, the verdicts go back in one write — a
// run of packets sharing a verdict as one batch verdict — and then the
// Observer hears of each. It owns its buffers, so a packet costs no
// allocation.
type worker struct {
	q *Queues
	s *sock

	// The batch being decided, by index.
	n        int
	pkts     []verdict.Packet
	decs     []verdict.Decision
	dirs     []rules.Direction
	ids      []uint32
	payloads [][]byte
	now      int64 // the engine's Clock when the batch was read; 0 lets the engine read it

	out   []byte // verdict messages of the batch
	retry []byte // verdicts a failed write did not deliver, sent before the next ones
	// single is set once verdicts were lost for good: from then on every
	// packet gets its own verdict, so none can answer a lost one's packet.
	single bool
}

func newWorker(q *Queues, s *sock) *worker {
	n := q.cfg.Batch
	return &worker{
		q: q, s: s,
		pkts: make([]verdict.Packet, n), decs: make([]verdict.Decision, n), dirs: make([]rules.Direction, n),
		ids: make([]uint32, n), payloads: make([][]byte, n),
		out: make([]byte, 0, n*verdictMsgLen),
	}
}

func (w *worker) run(ctx context.Context) {
	for {
		n, err := w.s.receive()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, os.ErrClosed) {
				return
			}
			w.q.C.ReadErrors.Add(1)
			time.Sleep(time.Millisecond) // a lasting error must not spin a core
			continue
		}
		w.now = w.q.engine.Clock() // once per batch: the clock costs as much as a decision
		for i := range n {
			w.collect(w.s.datagram(i))
		}
		w.finish()
	}
}

// collect decides the packets of one datagram (one, in practice), a cut
// one included, and counts the errors the kernel reports for earlier
// verdicts.
func (w *worker) collect(b []byte) {
	for len(b) >= nlmsgHdrLen {
		typ, m, rest, cut, ok := nextMsg(b)
		if !ok || cut {
			w.q.C.ReadErrors.Add(1)
		}
		if !ok {
			return
		}
		switch typ {
		case typePacket:
			w.add(m[nlmsgHdrLen:])
		case unix.NLMSG_ERROR:
			// Verdicts ask for no acknowledgement, so only refusals come
			// back: a verdict for a packet the kernel no longer holds.
			if len(m) >= nlmsgHdrLen+4 && binary.NativeEndian.Uint32(m[nlmsgHdrLen:]) != 0 {
				w.q.C.VerdictErrors.Add(1)
			}
		}
		b = rest
	}
}

// add decodes and decides one packet message into the batch.
func (w *worker) add(m []byte) {
	qp, ok := parsePacket(m)
	if !ok {
		w.q.C.ReadErrors.Add(1) // no id: nothing can answer it
		return
	}
	if w.n == len(w.pkts) {
		w.finish()
	}
	i := w.n
	w.n++
	dir := dirOfHook(qp.hook)
	w.pkts[i].Decode(qp.payload)
	w.decs[i] = w.q.engine.DecideAt(&w.pkts[i], dir, w.now)
	w.dirs[i], w.ids[i], w.payloads[i] = dir, qp.id, qp.payload
}

// finish sends the batch's verdicts, counts them and tells the Observer.
func (w *worker) finish() {
	n := w.n
	if n == 0 {
		return
	}
	w.n = 0
	var accepted int
	w.out, accepted = appendVerdicts(w.out[:0], w.s.num, w.ids[:n], w.decs[:n], w.single)
	w.send(n)
	w.q.C.Seen.Add(uint64(n))
	w.q.C.Accepted.Add(uint64(accepted))
	w.q.C.Dropped.Add(uint64(n - accepted))
	if w.q.obs != nil {
		for i := range n {
			w.q.obs.Decided(&w.pkts[i], w.dirs[i], w.decs[i], w.payloads[i])
		}
	}
}

// maxRetry bounds the verdicts kept for resending after failed writes.
const maxRetry = 64 << 10

// send writes the batch's verdicts, after any a failed write left behind:
// a later batch verdict must never answer a packet whose own verdict was
// lost, and in one write the kernel applies them in order.
func (w *worker) send(n int) {
	msgs := w.out
	if len(w.retry) > 0 {
		w.retry = append(w.retry, w.out...)
		msgs = w.retry
	}
	var err error
	for range 3 {
		if err = w.s.write(msgs); err == nil {
			w.retry = w.retry[:0]
			return
		}
	}
	w.q.C.VerdictErrors.Add(uint64(n))
	if len(w.retry) == 0 {
		w.retry = append(w.retry, w.out...)
	}
	if len(w.retry) > maxRetry {
		// The socket is beyond help: those packets stay queued until
		// Close, and batch verdicts must no longer sweep them.
		w.retry, w.single = w.retry[:0], true
	}
}

// appendVerdicts appends the verdict messages for packets ids decided
// decs, in order, and returns how many were accepted. Each run of packets
// sharing a verdict is answered by one batch verdict, unless single.
func appendVerdicts(out []byte, num uint16, ids []uint32, decs []verdict.Decision, single bool) ([]byte, int) {
	accepted := 0
	for i := 0; i < len(ids); {
		v := verdictOf(decs[i])
		j := i
		for !single && j+1 < len(ids) && verdictOf(decs[j+1]) == v {
			j++
		}
		// A batch verdict covers every packet still queued up to its id:
		// exactly this run, since the runs before it were answered first
		// and the kernel queues in id order.
		out = appendVerdict(out, num, ids[j], v, j > i)
		if v == nfAccept {
			accepted += j - i + 1
		}
		i = j + 1
	}
	return out, accepted
}

func verdictOf(d verdict.Decision) uint32 {
	if d.Blocked() {
		return nfDrop
	}
	return nfAccept
}

// dirOfHook is the direction of a packet met at netfilter hook h: the
// output and postrouting hooks see outbound packets, the others inbound.
func dirOfHook(h uint8) rules.Direction {
	if h == hookLocalOut || h == hookPostRouting {
		return rules.DirOut
	}
	return rules.DirIn
}
