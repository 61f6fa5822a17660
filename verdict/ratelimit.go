package verdict

import (
	crand "crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// DefaultLimiterSources is how many source addresses the rate limiter
// tracks at most. Each costs 80 bytes, so the default holds the limiter
// at 5 MiB however many sources a spoofed flood invents.
const DefaultLimiterSources = 1 << 16

const (
	limiterWays    = 8 // entries per bucket: the eviction neighbourhood
	limiterStripes = 64
	// limiterSlices is how many slices a window is counted in: a
	// source is let back in at most a slice (a tenth of the window)
	// after the window has really slid past its burst.
	limiterSlices = 10
)

// RateLimiter counts new connections per source address in a sliding
// window. It is a set-associative table: an address hashes to a bucket of
// eight entries, and a new address takes the bucket's free or stalest
// entry. Every operation is O(1) and allocation-free, memory is fixed at
// construction, and a flood of spoofed sources only evicts the idlest
// trackers of its own buckets.
//
// The window slides in slices of a tenth of it, anchored at a source's
// first connection: a connection is let in only if the slices that
// overlap the last window, the oldest partly overlapping one counted
// whole, hold fewer than max. That count is never below the true one, so
// no window of that length ever holds more than max connections from a
// source (an estimate that weighted the oldest part, as a two-window
// approximation does, let through up to half as many again), and a source
// is let back in at most a slice after its burst left the window.
//
// Only connections let in are counted. Counting refused attempts too kept
// a source that tried again locked out for as long as it tried: one
// whose steady rate was just under the limit, refused once when the
// whole-counted oldest slice tipped it over, was then refused for good.
// A flooding source gets max connections a window, as the limit says.
//
// Times are the caller's clock in ns, which should be monotonic (see
// Engine.Clock). A change of the window's length starts a source's count
// over: its slices were of the old length.
type RateLimiter struct {
	seed    uint64
	mask    uint64 // buckets-1
	entries []limiterEntry
	stripes [limiterStripes]stripe
	tracked atomic.Int64
}

type stripe struct {
	sync.Mutex
	_ [56]byte // one cache line per lock: workers on different cores do not share
}

type limiterEntry struct {
	key      u128
	anchor   int64 // start of slice 0: the source's first connection
	slice    int64 // the slices' length, a tenth of the window they count
	lastSeen int64 // 0 = free
	head     int64 // the newest slice counted
	// slices holds the counts of slices head-limiterSlices … head, slice
	// i at i % len: a window overlaps limiterSlices+1 of them.
	slices [limiterSlices + 1]uint32
}

// NewRateLimiter returns a limiter tracking about maxSources addresses
// (rounded up to a power of two; at least one bucket).
func NewRateLimiter(maxSources int) *RateLimiter {
	buckets := 1
	for buckets*limiterWays < maxSources {
		buckets <<= 1
	}
	var seed [8]byte
	_, _ = crand.Read(seed[:]) // a random seed keeps attackers from aiming at one bucket
	return &RateLimiter{
		seed:    binary.LittleEndian.Uint64(seed[:]) | 1,
		mask:    uint64(buckets - 1),
		entries: make([]limiterEntry, buckets*limiterWays),
	}
}

// Capacity is the number of sources the limiter can track.
func (l *RateLimiter) Capacity() int { return len(l.entries) }

// Tracked is the number of sources currently tracked.
func (l *RateLimiter) Tracked() int { return int(l.tracked.Load()) }

func limiterKey(a netip.Addr) u128 {
	if a.Is4() {
		return u128{0, 0xffff<<32 | uint64(addr4(a))}
	}
	return addr6(a)
}

func (l *RateLimiter) bucket(k u128) uint64 {
	h := (k.hi ^ l.seed) * 0x9e3779b97f4a7c15
	h ^= k.lo * 0xc2b2ae3d27d4eb4f
	h ^= h >> 29
	h *= 0xbf58476d1ce4e5b9
	h ^= h >> 32
	return h & l.mask
}

// Allow reports whether one more connection from src at now stays within
// limit per window, and if so counts it.
func (l *RateLimiter) Allow(src netip.Addr, now int64, limit int, window int64) bool {
	return l.touch(src, now, limit, window, true)
}

// Exceeded reports whether one more connection from src would be refused,
// without counting it.
func (l *RateLimiter) Exceeded(src netip.Addr, now int64, limit int, window int64) bool {
	return !l.touch(src, now, limit, window, false)
}

// victimOf picks the entry of a bucket that a new source takes: a free
// one, else the stalest of those whose source is under its limit or idle
// for a window (a spoofed flood, each source seen once, evicts its own
// kind), else the stalest of all. Evicting a source at its limit would
// give it a fresh count: one held by the kernel's guard, whose attempts
// no longer reach the limiter, was let back in with max new connections
// by a spoofed flood churning its bucket. The sum is of every slice kept,
// some perhaps past the window: it can only take a source for one at its
// limit, which keeps it.
func victimOf(ways []limiterEntry, now, window int64, limit int) int {
	under, any := -1, 0
	for i := range ways {
		w := &ways[i]
		if w.lastSeen == 0 {
			return i
		}
		if w.lastSeen < ways[any].lastSeen {
			any = i
		}
		var sum uint64
		for _, c := range w.slices {
			sum += uint64(c)
		}
		if (now-w.lastSeen > window || sum < uint64(limit)) && (under < 0 || w.lastSeen < ways[under].lastSeen) {
			under = i
		}
	}
	if under >= 0 {
		return under
	}
	return any
}

// touch answers whether one more connection from src stays within limit,
// and counts it if it does and count is set.
func (l *RateLimiter) touch(src netip.Addr, now int64, limit int, window int64, count bool) bool {
	if window <= 0 {
		return true
	}
	k := limiterKey(src)
	b := l.bucket(k)
	st := &l.stripes[b%limiterStripes]
	st.Lock()
	defer st.Unlock()
	ways := l.entries[b*limiterWays : (b+1)*limiterWays]
	var e *limiterEntry
	for i := range ways {
		if ways[i].lastSeen != 0 && ways[i].key == k {
			e = &ways[i]
			break
		}
	}
	slice := max(window/limiterSlices, 1)
	if e == nil {
		if !count {
			return 1 <= limit
		}
		e = &ways[victimOf(ways, now, window, limit)]
		if e.lastSeen == 0 {
			l.tracked.Add(1)
		}
		*e = limiterEntry{key: k, anchor: now, slice: slice}
	} else if e.slice != slice {
		// The window changed: the counts are in slices of the old
		// length, which cannot be mapped onto the new ones.
		*e = limiterEntry{key: k, anchor: now, slice: slice, lastSeen: e.lastSeen}
	}
	idx := e.head // the clock stepped back: keep counting in the newest slice
	if now >= e.anchor {
		idx = (now - e.anchor) / slice
	}
	if idx > e.head {
		// Slices that fell out of reach are zeroed on the way.
		for i := e.head + 1; i <= idx && i <= e.head+int64(len(e.slices)); i++ {
			e.slices[i%int64(len(e.slices))] = 0
		}
		e.head = idx
	}
	var sum uint64
	for _, c := range e.slices {
		sum += uint64(c)
	}
	allowed := sum+1 <= uint64(limit)
	if count {
		if allowed {
			e.slices[e.head%int64(len(e.slices))]++ // at most limit: no overflow
		}
		e.lastSeen = now // a source still trying stays tracked
	}
	return allowed
}
