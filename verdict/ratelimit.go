package verdict

import (
	crand "crypto/rand"
	"encoding/binary"
	"net/netip"
	"sync"
	"sync/atomic"
)

// DefaultLimiterSources is how many source addresses the rate limiter
// tracks at most. Each costs 48 bytes, so the default holds the limiter
// at 3 MiB however many sources a spoofed flood invents.
const DefaultLimiterSources = 1 << 16

const (
	limiterWays    = 8 // entries per bucket: the eviction neighbourhood
	limiterStripes = 64
)

// RateLimiter counts new connections per source address in a sliding
// window. It is a set-associative table: an address hashes to a bucket of
// eight entries, and a new address takes the bucket's free or stalest
// entry. Every operation is O(1) and allocation-free, memory is fixed at
// construction, and a flood of spoofed sources only evicts the idlest
// trackers of its own buckets.
//
// The window slides by weighting the previous fixed window by how much of
// it still overlaps the sliding one (prev·(1−elapsed/window) + current).
// Windows are anchored at a source's first connection (and re-anchored
// after two idle windows), so a burst from a fresh source is counted
// exactly: the (max+1)th connection within one window is refused.
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
	key       u128
	anchor    int64 // start of the current fixed window, unix ns
	lastSeen  int64 // unix ns; 0 = free
	cur, prev uint32
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
	switch elapsed := now - e.anchor; {
	case elapsed < 0: // the clock stepped back: keep counting in this window
	case elapsed >= 2*window:
		e.anchor, e.prev, e.cur = now, 0, 0
	case elapsed >= window:
		e.anchor, e.prev, e.cur = e.anchor+window, e.cur, 0
	}
	overlap := 1 - float64(now-e.anchor)/float64(window)
	if overlap > 1 {
		overlap = 1
	}
	estimate := float64(e.prev)*overlap + float64(e.cur)
	allowed := estimate+1 <= float64(max)
	if n > 0 {
		e.cur += min(n, ^uint32(0)-e.cur) // saturating
		e.lastSeen = now
	}
	return allowed
}
