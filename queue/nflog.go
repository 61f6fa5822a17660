package queue

import (
	"context"
	"fmt"
	"strings"
	"sync/atomic"

	nflog "github.com/florianl/go-nflog/v2"
	"github.com/mdlayher/netlink"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// PrefixIntel is the log prefix of the nft rule that reports threat-intel
// drops (nft.LogPrefix(nft.Intel)), so the listener can tell an intel drop
// from a blacklist one even when an update raced the packet.
const PrefixIntel = "pfw intel"

// PrefixRateLimit is the log prefix of the kernel guard's drops
// (nft.GuardLogPrefix): a connection attempt from a source over the rate
// limit.
const PrefixRateLimit = "pfw ratelimit"

// KernelDrops listens on an NFLOG group for the packets the kernel
// dropped by itself and reports them to the Observer with their reason.
type KernelDrops struct {
	nl       *nflog.Nflog
	engine   *verdict.Engine
	obs      Observer
	group    uint16
	stop     context.CancelFunc
	Received atomic.Uint64
	Errors   atomic.Uint64
}

// OpenKernelDrops binds NFLOG group.
func OpenKernelDrops(group uint16, engine *verdict.Engine, obs Observer) (*KernelDrops, error) {
	// Timeout 10 (1/100 s): the kernel hands logged drops over within
	// 100 ms of the first one it holds, in one datagram of up to QThresh
	// (fewer when its buffer, a few KiB, fills first). By default it
	// batches them for up to a second, so a drop's row was stamped (and
	// its reason looked up) up to a second late; one datagram per drop
	// (QThresh 1), on the other hand, woke pfwd for each of the log rules'
	// 50 a second, which under a blacklisted flood cost a quarter of its
	// CPU time.
	nl, err := nflog.Open(&nflog.Config{Group: group, Copymode: nflog.CopyPacket, Bufsize: 256, QThresh: 64, Timeout: 10})
	if err != nil {
		return nil, fmt.Errorf("open nflog group %d: %w", group, err)
	}
	if err := nl.SetOption(netlink.NoENOBUFS, true); err != nil {
		nl.Close()
		return nil, fmt.Errorf("nflog group %d: set NoENOBUFS: %w", group, err)
	}
	return &KernelDrops{nl: nl, group: group, engine: engine, obs: obs}, nil
}

// Start reads logged drops until ctx is done.
func (k *KernelDrops) Start(ctx context.Context) error {
	ctx, k.stop = context.WithCancel(ctx)
	var p verdict.Packet // the listener is one goroutine: one Packet
	hook := func(a nflog.Attribute) int {
		if a.Payload == nil {
			return 0
		}
		k.Received.Add(1)
		dir := rules.DirIn
		if a.Hook != nil {
			dir = dirOfHook(*a.Hook)
		}
		prefix := ""
		if a.Prefix != nil {
			prefix = *a.Prefix
		}
		p.Decode(*a.Payload)
		k.obs.Decided(&p, dir, k.reason(&p, dir, prefix), *a.Payload)
		return 0
	}
	errFn := func(err error) int {
		if ctx.Err() != nil {
			return 1
		}
		k.Errors.Add(1)
		return 0
	}
	if err := k.nl.RegisterWithErrorFunc(ctx, hook, errFn); err != nil {
		return fmt.Errorf("listen for kernel drops on NFLOG group %d (is another pfwd or a logging daemon bound to it?): %w", k.group, err)
	}
	return nil
}

// reason asks the pipeline why the kernel dropped p (the guard's drops
// say so in their prefix: the rate limit is history, not a list). The sets and the
// pipeline hold the same entries, so it answers with the blacklist or the
// feed; if an update raced the drop, the log prefix still names the set.
func (k *KernelDrops) reason(p *verdict.Packet, dir rules.Direction, prefix string) verdict.Decision {
	if strings.HasPrefix(prefix, PrefixRateLimit) {
		return verdict.RateLimited()
	}
	d := k.engine.Explain(p, dir)
	if d.Step == verdict.StepBlacklist || d.Step == verdict.StepThreatIntel {
		return d
	}
	if strings.HasPrefix(prefix, PrefixIntel) {
		// An update raced the drop: the entry left the pipeline before
		// NFLOG delivered it, but the entries it replaced still name the
		// feed for a moment.
		if d, ok := k.engine.RecentIntel(p.Remote(dir)); ok {
			return d
		}
		return verdict.IntelWithdrawn()
	}
	return verdict.Blacklisted()
}

// Close stops the listener. The reader is cancelled first: go-nflog's
// Close waits for it, and it only stops when its context ends.
func (k *KernelDrops) Close() error {
	if k.stop != nil {
		k.stop()
	}
	return k.nl.Close()
}
