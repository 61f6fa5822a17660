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
	anchor   int64 // start of slice 0, unix ns: the source's first connection
	lastSeen int64 // unix ns; 0 = free
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

// Allow counts one new connection from src at now (unix ns) and reports
// whether it stays within max per window. Refused attempts count too, so a
// source that keeps flooding stays refused until its rate drops.
func (l *RateLimiter) Allow(src netip.Addr, now int64, max int, window int64) bool {
	return l.touch(src, now, max, window, 1)
}

// Refused counts n attempts from src at now that were refused elsewhere:
// by the kernel's guard, which drops a source's new connections while it
// stays over the limit. They count as Allow's refused attempts do.
func (l *RateLimiter) Refused(src netip.Addr, n uint32, now int64, max int, window int64) {
	if n > 0 {
		l.touch(src, now, max, window, n)
	}
}

// Exceeded reports whether one more connection from src would be refused,
// without counting it.
func (l *RateLimiter) Exceeded(src netip.Addr, now int64, max int, window int64) bool {
	return !l.touch(src, now, max, window, 0)
}

// touch answers whether one more connection from src stays within max,
// and counts n attempts (0: only asks).
func (l *RateLimiter) touch(src netip.Addr, now int64, max int, window int64, n uint32) bool {
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
	victim := 0
	for i := range ways {
		if ways[i].lastSeen != 0 && ways[i].key == k {
			e = &ways[i]
			break
		}
		if ways[i].lastSeen < ways[victim].lastSeen {
			victim = i
		}
	}
	if e == nil {
		if n == 0 {
			return 1 <= max
		}
		e = &ways[victim]
		if e.lastSeen == 0 {
			l.tracked.Add(1)
		}
		*e = limiterEntry{key: k, anchor: now}
	}
	slice := window / limiterSlices
	if slice < 1 {
		slice = 1
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
	var count uint64
	for _, c := range e.slices {
		count += uint64(c)
	}
	allowed := count+1 <= uint64(max)
	if n > 0 {
		c := &e.slices[e.head%int64(len(e.slices))]
		*c += min(n, ^uint32(0)-*c) // saturating
		e.lastSeen = now
	}
	return allowed
}
