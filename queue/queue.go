package queue

import (
	"context"
	"errors"
	"fmt"
	"sync/atomic"

	nfqueue "github.com/florianl/go-nfqueue/v2"
	"github.com/mdlayher/netlink"

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
	// are all the pipeline reads (default 256).
	CopyRange uint32
	// ReadBuffer is the socket receive buffer in bytes (default 8 MiB).
	ReadBuffer int
}

func (c *Config) setDefaults() {
	if c.QueueCount == 0 {
		c.QueueCount = 1
	}
	if c.MaxQueueLen == 0 {
		c.MaxQueueLen = 4096
	}
	if c.CopyRange == 0 {
		c.CopyRange = 256
	}
	if c.ReadBuffer == 0 {
		c.ReadBuffer = 8 << 20
	}
}

// Counters are totals since the queues opened; safe to read any time.
type Counters struct {
	Seen, Accepted, Dropped atomic.Uint64
	VerdictErrors           atomic.Uint64 // SetVerdict failed: the kernel keeps the packet until the queue flushes
	ReadErrors              atomic.Uint64 // socket errors, ENOBUFS included
}

// Queues are the open NFQUEUE sockets.
type Queues struct {
	cfg     Config
	engine  *verdict.Engine
	obs     Observer
	sockets []*nfqueue.Nfqueue
	stop    context.CancelFunc
	C       Counters
}

// Hook numbers of the netfilter inet hooks, as NFQUEUE reports them.
const (
	hookLocalOut    = 3
	hookPostRouting = 4
)

// Open binds the queues. Nothing is read until Start.
func Open(cfg Config, engine *verdict.Engine, obs Observer) (*Queues, error) {
	cfg.setDefaults()
	q := &Queues{cfg: cfg, engine: engine, obs: obs}
	for i := range cfg.QueueCount {
		num := cfg.QueueNum + i
		nf, err := nfqueue.Open(&nfqueue.Config{
			NfQueue:      num,
			MaxQueueLen:  cfg.MaxQueueLen,
			MaxPacketLen: cfg.CopyRange,
			Copymode:     nfqueue.NfQnlCopyPacket,
			// GSO: take aggregated packets whole instead of making the
			// kernel segment them first; pfw never rewrites payloads.
			// No FailOpen: an overflowing queue must drop, not accept.
			Flags: nfqueue.NfQaCfgFlagGSO,
		})
		if err != nil {
			q.Close()
			return nil, fmt.Errorf("open nfqueue %d: %w", num, err)
		}
		q.sockets = append(q.sockets, nf)
		// Without NoENOBUFS a full socket buffer makes reads fail with
		// ENOBUFS; the kernel then drops (the queue is not fail-open),
		// and we would rather count than error.
		if err := nf.SetOption(netlink.NoENOBUFS, true); err != nil {
			q.Close()
			return nil, fmt.Errorf("nfqueue %d: set NoENOBUFS: %w", num, err)
		}
		if err := nf.Con.SetReadBuffer(cfg.ReadBuffer); err != nil {
			q.Close()
			return nil, fmt.Errorf("nfqueue %d: set read buffer: %w", num, err)
		}
	}
	return q, nil
}

// Start runs one worker per queue until ctx is done or Close.
func (q *Queues) Start(ctx context.Context) error {
	ctx, q.stop = context.WithCancel(ctx)
	for i, nf := range q.sockets {
		w := &worker{q: q, nf: nf}
		hook := func(a nfqueue.Attribute) int { w.handle(a); return 0 }
		errFn := func(err error) int {
			if ctx.Err() != nil {
				return 1
			}
			q.C.ReadErrors.Add(1)
			return 0 // keep reading: a transient error must not stop the firewall
		}
		if err := nf.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
			q.stop()
			return fmt.Errorf("register nfqueue %d: %w", q.cfg.QueueNum+uint16(i), err)
		}
	}
	return nil
}

// Close stops the workers, unbinds the queues and waits for them (each
// socket's Close joins its reader). Packets
// the kernel still holds are then handled by the nft rule's bypass flag
// (accepted) or dropped (fail-closed).
func (q *Queues) Close() error {
	if q.stop != nil {
		q.stop()
	}
	var errs []error
	for _, nf := range q.sockets {
		if err := nf.Close(); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// worker decides the packets of one queue. It owns its Packet, so
// decoding allocates nothing.
type worker struct {
	q  *Queues
	nf *nfqueue.Nfqueue
	p  verdict.Packet
}

func (w *worker) handle(a nfqueue.Attribute) {
	if a.PacketID == nil {
		return
	}
	id := *a.PacketID
	var payload []byte
	if a.Payload != nil {
		payload = *a.Payload
	}
	dir := rules.DirIn
	if a.Hook != nil && (*a.Hook == hookLocalOut || *a.Hook == hookPostRouting) {
		dir = rules.DirOut
	}
	w.p.Decode(payload)
	d := w.q.engine.Decide(&w.p, dir)
	v := nfqueue.NfAccept
	if d.Blocked() {
		v = nfqueue.NfDrop
	}
	w.q.C.Seen.Add(1)
	if err := w.nf.SetVerdict(id, v); err != nil {
		w.q.C.VerdictErrors.Add(1)
	}
	if v == nfqueue.NfDrop {
		w.q.C.Dropped.Add(1)
	} else {
		w.q.C.Accepted.Add(1)
	}
	if w.q.obs != nil {
		w.q.obs.Decided(&w.p, dir, d, payload)
	}
}
