package nft

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"github.com/google/nftables"
	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// DefaultTable is the name of pfw's table in the inet family.
const DefaultTable = "personal_firewall"

// DefaultLogRate is how many packets per second the kernel logs for each
// blacklist and intel rule when Config.LogRate is 0.
const DefaultLogRate = 50

// Config says what ruleset Open installs. The zero value is pfwd's default:
// table inet personal_firewall, queue 0, every interface but lo, fail open.
type Config struct {
	// Table is the table's name (family inet); default DefaultTable.
	Table string
	// QueueNum is the first NFQUEUE; QueueCount (default 1) queues from it
	// on are used, fanned out by CPU when there are several.
	QueueNum, QueueCount uint16
	// Ifaces, when not empty, limits filtering to these interfaces: packets
	// on any other interface are accepted. Naming "lo" filters loopback too.
	Ifaces []string
	// FailClosed: packets to queue are dropped while no reader listens
	// (default: accepted), and the table outlives the process: Close leaves
	// it in place, Remove deletes it.
	FailClosed bool
	// FilterNeighborDiscovery queues IPv6 neighbor discovery like any
	// traffic. By default it is accepted in the kernel, as ufw and firewalld
	// do: without it IPv6 stops working whenever pfwd blocks or is away.
	FilterNeighborDiscovery bool
	// LogGroup is the NFLOG group of the kernel's blacklist and intel drops;
	// LogRate (default DefaultLogRate) caps them, per second and per rule.
	LogGroup uint16
	LogRate  uint32
	// NetNS is an fd of the network namespace to work in; 0 is the
	// process's own. For tests.
	NetNS int
	// DisableFastPath leaves out the conntrack-label fast path (see
	// fastpath.go): every established packet meets the list lookups.
	DisableFastPath bool
	// ForceQueueMode is QueueNative or QueueXT to use only that; empty
	// tries the native queue expression first.
	ForceQueueMode string
	// QueueUnreplied leaves out the ct status confirmed rule, so every
	// packet conntrack calls new is queued, also those of a flow let
	// through that has no reply yet. For tests of the queue itself, which
	// count one-way datagrams through it.
	QueueUnreplied bool
	// InitialSets are loaded in the transaction that creates the table, so
	// the table never exists without them.
	InitialSets map[List][]netip.Prefix
}

func (c *Config) setDefaults() error {
	if c.Table == "" {
		c.Table = DefaultTable
	}
	if len(c.Table) >= unix.NFT_TABLE_MAXNAMELEN {
		return fmt.Errorf("table name %.20q…: longer than %d bytes", c.Table, unix.NFT_TABLE_MAXNAMELEN-1)
	}
	if c.QueueCount == 0 {
		c.QueueCount = 1
	}
	if int(c.QueueNum)+int(c.QueueCount)-1 > 0xffff {
		return fmt.Errorf("queues %d..%d: past the last queue, 65535", c.QueueNum, int(c.QueueNum)+int(c.QueueCount)-1)
	}
	for i, name := range c.Ifaces {
		if err := CheckIfname(name); err != nil {
			return fmt.Errorf("ifaces[%d]: %w", i, err)
		}
	}
	if c.LogRate == 0 {
		c.LogRate = DefaultLogRate
	}
	switch c.ForceQueueMode {
	case "", QueueNative, QueueXT:
	default:
		return fmt.Errorf("queue mode %q: want %q, %q or empty", c.ForceQueueMode, QueueNative, QueueXT)
	}
	for l := range c.InitialSets {
		if !validList(l) {
			return fmt.Errorf("initial sets: unknown list %q", l)
		}
	}
	return nil
}

// filtersLoopback reports whether lo is filtered like any interface.
func (c *Config) filtersLoopback() bool { return slices.Contains(c.Ifaces, "lo") }

// CheckIfname reports whether name can be an interface's name, by the
// kernel's rule (dev_valid_name): 1-15 bytes, not "." or "..", no slash,
// colon or white space. Whether such an interface exists is another matter:
// the rules match interfaces by name, so one that appears later is filtered
// from then on.
func CheckIfname(name string) error {
	if name == "" || len(name) >= unix.IFNAMSIZ || name == "." || name == ".." ||
		strings.ContainsAny(name, "/: \t\n\v\f\r") {
		return fmt.Errorf("%q is not an interface name (1-%d bytes, no slash, colon or space)", name, unix.IFNAMSIZ-1)
	}
	return nil
}

// Firewall is pfw's table in the kernel. Its methods are safe for concurrent
// use; every change goes through its one netlink socket (which owns the
// table in the default mode).
type Firewall struct {
	mu         sync.Mutex
	cfg        Config
	conn       *nftables.Conn
	sock       *netlink.Conn // conn's lasting socket, for its buffers and the owned table
	sendBuffer int           // bytes the socket's send buffer was set to
	table      *nftables.Table
	sets       map[string]*nftables.Set
	ranges     map[string][]addrRange // what each kernel set holds
	queueMode  string
	broken     error // set when a batch could not be built: nothing more is sent
	closed     bool
	fast       fastPath
	shape      string // the table as fw last left it (FailClosed only; see Repair)
	// life ends with Stop (or Close): the walks through the conntrack
	// table that fw runs, or waits for under mu, end with it.
	life     context.Context
	endLife  context.CancelFunc
	gen      *generationReader // FailClosed only; nil when the kernel would not answer
	genID    uint32            // the ruleset generation after fw's last commit
	genKnown bool              // genID is the one fw's own last commit made

	// shown is what QueueMode, SetSizes and FastPath report: copied under
	// mu at the end of every change (publish), read without it, so a
	// status request never waits for a transaction of a million elements
	// to be sent. It lags the kernel, never leads it.
	shown atomic.Pointer[shownState]
}

// shownState is a Firewall's reportable state as of its last change.
type shownState struct {
	queueMode string
	sizes     map[string]int // set name -> ranges; never changed once shown
	fastOn    bool
	fastOff   error
}

// publish makes what fw now holds what its readers see; fw.mu is held (or
// fw is not shared yet).
func (fw *Firewall) publish() {
	sizes := make(map[string]int, len(Lists)*len(families))
	for _, l := range Lists {
		for _, f := range families {
			sizes[setName(l, f)] = len(fw.ranges[setName(l, f)])
		}
	}
	fw.shown.Store(&shownState{queueMode: fw.queueMode, sizes: sizes, fastOn: fw.fast.armed, fastOff: fw.fast.off})
}

// Open installs the table with its ruleset and cfg.InitialSets. A stale
// table of the same name (left by a fail-closed pfwd) is deleted in the
// transaction that creates the new one; a table owned by a live process is
// an error; every other table is left alone.
func Open(cfg Config) (*Firewall, error) { return OpenContext(context.Background(), cfg) }

// OpenContext is Open whose walks through the conntrack table, Open's own
// (the fast path's first clear) and those after it, end with ctx as with
// Stop: a stop asked for during the start is not held up by a table a
// flood filled.
func OpenContext(ctx context.Context, cfg Config) (*Firewall, error) {
	cfg.Ifaces = slices.Clone(cfg.Ifaces)
	if err := cfg.setDefaults(); err != nil {
		return nil, fmt.Errorf("nft: open: %w", err)
	}
	fw := &Firewall{cfg: cfg, ranges: make(map[string][]addrRange)}
	fw.life, fw.endLife = context.WithCancel(ctx)
	want, err := wantedRanges(cfg.InitialSets)
	if err != nil {
		return nil, fmt.Errorf("nft: open: initial sets: %w", err)
	}
	conn, err := nftables.New(nftables.AsLasting(), nftables.WithNetNSFd(cfg.NetNS), nftables.WithSockOptions(fw.tuneSocket))
	if err != nil {
		return nil, fmt.Errorf("nft: open: netlink: %w", err)
	}
	fw.conn = conn
	if cfg.FailClosed {
		// Without it Repair compares the table's shape at every check, as
		// it did before, and no set elements.
		fw.gen, _ = dialGeneration(cfg.NetNS)
	}
	stale, err := fw.install(want)
	if err != nil {
		_ = conn.CloseLasting() // an owned table, if made, goes with the socket
		if fw.gen != nil {
			fw.gen.close()
		}
		return nil, fmt.Errorf("nft: open table inet %s: %w", cfg.Table, err)
	}
	if fw.fast.supported {
		fw.arm(stale)
		if fw.broken != nil {
			_ = fw.Remove()
			return nil, fmt.Errorf("nft: open table inet %s: %w", cfg.Table, fw.broken)
		}
	}
	fw.recordShape()
	fw.publish()
	return fw, nil
}

// install creates the table with its ruleset and initial sets, trying the
// queue modes in turn (the only way to know whether the kernel has the
// native queue expression is to send it), first with the fast path's
// label rules, then without them. It reports whether it replaced a stale
// table.
func (fw *Firewall) install(want map[string][]addrRange) (stale bool, err error) {
	old, err := fw.findTable()
	if err != nil {
		return false, err
	}
	if old != nil && tableFlags(old)&tableFlagOwner != 0 {
		return false, errTaken
	}
	owned := !fw.cfg.FailClosed
	if owned {
		if err := fw.createOwnedTable(old != nil); err != nil {
			if errors.Is(err, unix.EPERM) {
				err = fmt.Errorf("%w: %w", errTaken, err) // taken since we looked
			}
			return false, fmt.Errorf("create owned table: %w", err)
		}
	}
	fw.table = &nftables.Table{Name: fw.cfg.Table, Family: nftables.TableFamilyINet}

	labels := []bool{true, false}
	if fw.cfg.DisableFastPath {
		labels = []bool{false}
	}
	var labelErr error
	for _, withLabels := range labels {
		err := fw.installModes(want, old != nil, owned, withLabels)
		if err == nil {
			fw.fast.supported = withLabels
			if labelErr != nil {
				fw.fast.off = fmt.Errorf("fast path off: the kernel refused the conntrack label rules: %w", labelErr)
			}
			return old != nil, nil
		}
		if fw.broken != nil || errors.Is(err, errTaken) {
			return false, err
		}
		if labelErr != nil {
			return false, errors.Join(labelErr, err)
		}
		labelErr = err
	}
	return false, labelErr
}

func (fw *Firewall) installModes(want map[string][]addrRange, stale, owned, withLabels bool) error {
	modes := []string{QueueNative, QueueXT}
	if fw.cfg.ForceQueueMode != "" {
		modes = []string{fw.cfg.ForceQueueMode}
	}
	label := -1
	if withLabels {
		label = labelBits[0]
	}
	var errs []error
	for _, mode := range modes {
		err := fw.installRuleset(want, mode, label, stale, owned)
		if err == nil || fw.broken != nil {
			return err
		}
		if mode != QueueNative || !errors.Is(err, unix.ENOENT) {
			return errors.Join(append(errs, fmt.Errorf("%s: %w", mode, err))...)
		}
		// ENOENT for a batch that only creates: an expression type the
		// kernel lacks, and the queue expression is the one it may lack.
		errs = append(errs, fmt.Errorf("%s: the kernel has no nft_queue (CONFIG_NFT_QUEUE); %s works without it: %w", mode, QueueXT, err))
	}
	return errors.Join(errs...)
}

// installRuleset sends, in one transaction, the table's ruleset with
// queue mode mode and the established rule labelling with bit label (none
// when negative), and the sets holding want. Unless owned (the owned table
// was made on its own, first) it adds the table, deleting the one of the
// same name first when stale. On success fw's queue mode and ranges are
// what it sent; a batch it could not build marks fw broken.
func (fw *Firewall) installRuleset(want map[string][]addrRange, mode string, label int, stale, owned bool) error {
	if !owned {
		if stale {
			fw.conn.DelTable(fw.table)
		}
		fw.conn.AddTable(fw.table)
	}
	fw.sets = newSets(fw.table)
	if err := addRuleset(fw.conn, &fw.cfg, fw.table, fw.sets, mode, label); err != nil {
		return fw.fail(err)
	}
	n, err := fw.queueDiff(nil, want)
	if err != nil {
		return fw.fail(err)
	}
	if err := fw.growSendBuffer(n); err != nil {
		return fw.fail(err)
	}
	if err := fw.flush(); err != nil {
		return err
	}
	fw.queueMode, fw.ranges = mode, want
	return nil
}

// fail ends a change that could not be completed after some of its
// messages were queued on fw.conn: the next Flush must not send half of
// it. The queued messages are discarded (see discard), so fw stays usable
// and the caller may try the change again; only if they cannot be is fw
// broken for good.
func (fw *Firewall) fail(err error) error {
	if derr := fw.discard(); derr != nil {
		fw.broken = fmt.Errorf("nft: batch left unsent: %w", errors.Join(err, derr))
	}
	return err
}

// abortTable is a table name no table can have (the kernel's limit is
// NFT_TABLE_MAXNAMELEN-1 bytes), so a message deleting it is refused by
// the kernel's attribute checks whatever the ruleset holds.
var abortTable = strings.Repeat("x", unix.NFT_TABLE_MAXNAMELEN)

// discard empties fw.conn's queue without changing the kernel.
// google/nftables empties it only by sending it, so the queued messages
// go out behind one the kernel must refuse: a transaction is all or
// nothing, so it aborts them all. Flush empties the queue whatever
// happens, and no outcome commits anything (a batch too large for the
// socket is not sent at all), so the question is only whether fw.conn
// still works: if the first answer is not that refusal, the refusal alone
// is sent once more. It fails when even that is not refused as it must
// be: google/nftables keeps a serialization error for good, or the socket
// failed.
func (fw *Firewall) discard() error {
	var err error
	for range 2 {
		fw.conn.DelTable(&nftables.Table{Name: abortTable, Family: nftables.TableFamilyINet})
		if err = fw.conn.Flush(); errors.Is(err, unix.ERANGE) {
			return nil
		}
	}
	if err == nil {
		err = errors.New("the kernel took it") // cannot happen: the name is too long
	}
	return fmt.Errorf("discard a half-built batch: %w", err)
}

var errTaken = errors.New("the table exists and belongs to a running process (another pfwd?)")

// tableFlags returns t's flags. google/nftables v0.3.0 decodes the
// big-endian attribute in host byte order; encoding it back the same way
// recovers the kernel's bytes.
func tableFlags(t *nftables.Table) uint32 {
	return binary.BigEndian.Uint32(binary.NativeEndian.AppendUint32(nil, t.Flags))
}

// findTable returns the table of our name, nil when there is none.
func (fw *Firewall) findTable() (*nftables.Table, error) {
	tables, err := fw.conn.ListTablesOfFamily(nftables.TableFamilyINet)
	if err != nil {
		return nil, fmt.Errorf("list tables: %w", err)
	}
	for _, t := range tables {
		if t.Name == fw.cfg.Table {
			return t, nil
		}
	}
	return nil, nil
}

// wantedRanges turns lists of prefixes into the ranges of their sets. A
// list given is given whole: both of its sets are replaced.
func wantedRanges(lists map[List][]netip.Prefix) (map[string][]addrRange, error) {
	want := make(map[string][]addrRange)
	for l, prefixes := range lists {
		if !validList(l) {
			return nil, fmt.Errorf("unknown list %q", l)
		}
		v4, v6, err := splitFamilies(l, prefixes)
		if err != nil {
			return nil, err
		}
		want[setName(l, ipv4)] = mergeRanges(v4)
		want[setName(l, ipv6)] = mergeRanges(v6)
	}
	return want, nil
}

// queueDiff queues the element changes that turn the sets named in want
// from old into want: deletions first, then additions, each in chunks that
// fit a netlink attribute. It returns the approximate size of what it
// queued.
func (fw *Firewall) queueDiff(old, want map[string][]addrRange) (int, error) {
	size := 0
	var elems []nftables.SetElement
	for _, name := range slices.Sorted(maps.Keys(want)) {
		del, add := diffRanges(old[name], want[name])
		set := fw.sets[name]
		keyLen := ipv4.addrLen
		if strings.HasSuffix(name, ipv6.suffix) {
			keyLen = ipv6.addrLen
		}
		for _, op := range []struct {
			ranges []addrRange
			apply  func(*nftables.Set, []nftables.SetElement) error
		}{{del, fw.conn.SetDeleteElements}, {add, fw.conn.SetAddElements}} {
			for _, chunk := range chunkRanges(op.ranges, keyLen) {
				// The library encodes the elements at once and keeps none of
				// them, so one slice of elements serves every chunk; the
				// keys of a chunk share one allocation.
				elems = elems[:0]
				keys := make([]byte, 0, 2*len(chunk)*keyLen)
				for _, r := range chunk {
					elems, keys = appendElements(elems, keys, r)
				}
				if err := op.apply(set, elems); err != nil {
					return 0, fmt.Errorf("set %s: %w", name, err)
				}
				size += len(chunk)*elementBytes(keyLen) + 256
			}
		}
	}
	return size, nil
}

// UpdateSets replaces the contents of the lists given (each list whole: its
// IPv4 and its IPv6 set) and leaves the others alone. The change is sent as
// a difference, the ranges that vanished deleted and the new ones added, in
// one transaction: a packet sees the old sets or the new ones, never a mix.
// Overlapping and adjacent prefixes are merged first.
func (fw *Firewall) UpdateSets(lists map[List][]netip.Prefix) error {
	want, err := wantedRanges(lists)
	if err != nil {
		return fmt.Errorf("nft: update sets: %w", err)
	}
	fw.mu.Lock()
	defer fw.mu.Unlock()
	defer fw.publish() // also after a failure: resync may have learnt what the kernel holds
	if err := fw.usable(); err != nil {
		return err
	}
	n, err := fw.queueDiff(fw.ranges, want)
	if err != nil {
		return fw.fail(fmt.Errorf("nft: update sets: %w", err))
	}
	if n == 0 {
		return nil
	}
	// Before anything else can fail: a discarded batch goes out too.
	if err := fw.growSendBuffer(n); err != nil {
		return fw.fail(fmt.Errorf("nft: update sets: %w", err))
	}
	switched, err := fw.prepareListChange()
	if err != nil {
		return fw.fail(fmt.Errorf("nft: update sets: %w", err))
	}
	if err := fw.flush(); err != nil {
		err = fmt.Errorf("nft: update sets of table inet %s: %w", fw.cfg.Table, err)
		// The batch is atomic, so the kernel should still hold the old
		// sets; read them back in case an acknowledgement, not the change,
		// was lost.
		if rerr := fw.resync(slices.Collect(maps.Keys(want))); rerr != nil {
			err = errors.Join(err, rerr)
		}
		return err
	}
	maps.Copy(fw.ranges, want)
	switched()
	fw.recordShape() // the fast path may have gone in this transaction
	return nil
}

// resync reads the named sets back from the kernel.
func (fw *Firewall) resync(names []string) error {
	for _, name := range names {
		elems, err := fw.conn.GetSetElements(fw.sets[name])
		if err != nil {
			return fmt.Errorf("nft: read back set %s: %w", name, err)
		}
		fw.ranges[name] = rangesFromElements(elems)
	}
	return nil
}

func (fw *Firewall) usable() error {
	if fw.closed {
		return errors.New("nft: firewall closed")
	}
	return fw.broken
}

// QueueMode says how packets reach the NFQUEUE: QueueNative or QueueXT.
func (fw *Firewall) QueueMode() string { return fw.shown.Load().queueMode }

// SetSizes returns, for every set, how many address ranges it holds once
// overlapping and adjacent prefixes are merged: the sizes the last change
// that completed left. It does not wait for a change being sent, so it is
// safe for status requests.
func (fw *Firewall) SetSizes() map[string]int {
	return maps.Clone(fw.shown.Load().sizes)
}

// Stop ends the walks through the conntrack table fw is running (the fast
// path's clear of its retired label bit), without waiting for fw's lock:
// a list change waiting for such a walk under that lock then goes on at
// once, so a stop is not held up by a table a flood filled. fw stays
// usable; its fast path goes off at the next list change, the clear being
// unfinished. Close, which a stop calls next, does the rest.
func (fw *Firewall) Stop() { fw.endLife() }

// Close ends pfwd's hold on the kernel. In the default mode it deletes the
// table (closing the socket would too: the table is owned by it). With
// FailClosed the table and its queue rule stay, so traffic that needs pfwd
// is dropped until a new pfwd replaces the table or Remove deletes it.
func (fw *Firewall) Close() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.closed {
		return nil
	}
	var err error
	if !fw.cfg.FailClosed {
		err = fw.deleteTable()
	}
	return errors.Join(err, fw.shutdown())
}

// Remove deletes the table, in either mode, and closes fw.
func (fw *Firewall) Remove() error {
	fw.mu.Lock()
	defer fw.mu.Unlock()
	if fw.closed {
		return RemoveTable(fw.cfg)
	}
	return errors.Join(fw.deleteTable(), fw.shutdown())
}

func (fw *Firewall) deleteTable() error {
	fw.conn.DelTable(fw.table)
	if err := fw.flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: delete table inet %s: %w", fw.cfg.Table, err)
	}
	return nil
}

func (fw *Firewall) shutdown() error {
	fw.closed = true
	fw.endLife()
	fw.waitClear()
	if fw.gen != nil {
		fw.gen.close()
	}
	if err := fw.conn.CloseLasting(); err != nil {
		return fmt.Errorf("nft: close netlink socket: %w", err)
	}
	return nil
}

// RemoveTable deletes the table cfg names, if it exists and no running
// process owns it: the clean-up after a fail-closed pfwd that is not coming
// back. Only cfg.Table and cfg.NetNS are used.
func RemoveTable(cfg Config) error {
	if err := cfg.setDefaults(); err != nil {
		return fmt.Errorf("nft: remove table: %w", err)
	}
	conn, err := nftables.New(nftables.WithNetNSFd(cfg.NetNS))
	if err != nil {
		return fmt.Errorf("nft: remove table: netlink: %w", err)
	}
	conn.DelTable(&nftables.Table{Name: cfg.Table, Family: nftables.TableFamilyINet})
	if err := conn.Flush(); err != nil && !errors.Is(err, unix.ENOENT) {
		return fmt.Errorf("nft: remove table inet %s: %w", cfg.Table, err)
	}
	return nil
}
