package daemon

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
	"sync"
)

// memoryFloor is the soft memory limit pfwd keeps while its live heap is
// small. Without one the Go runtime lets the heap grow to twice what is
// live before collecting, and keeps the pages afterwards: loading a
// 100,000-entry feed (34 MiB live at its peak, 20 MiB once loaded) left
// pfwd at 85-100 MiB RSS. With this floor the peak was 45 MiB.
const memoryFloor = 40 << 20

// loadGCPercent is GOGC while a load runs (see beginLoad): the heap grows
// a tenth past what is live before each collection, which keeps a load's
// peak near its live heap, as the floor did for small loads, without a
// limit the load can pass. In make bench (100,000 threat entries, then two
// reloads) the peak RSS was 62.6 MiB at 25 and 51-52 MiB at 10; a
// 500,000-entry reload takes 3.5 s instead of about 3.
const loadGCPercent = 10

// loads counts the loads under way: the limit is process-wide, and a
// reload and a feed update may overlap.
var loads struct {
	mu          sync.Mutex
	n           int
	gcPercent   int // GOGC before the first of them began
	setGC       bool
	heapAtBegin uint64 // heap objects' bytes when the first of them began
}

// loadGrowth is how much the heap must have grown over the loads for their
// end to collect and hand memory back at once: a fetch that brought a
// 304, an error or a small list (every fetch is a load, since its parse
// may be large) costs no forced collection.
const loadGrowth = 4 << 20

// heapObjects is the bytes of live and not yet swept heap objects.
func heapObjects() uint64 {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}
	metrics.Read(s)
	if s[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return s[0].Value.Uint64()
}

// beginLoad prepares the collector for a load that may make the live
// heap much larger (start-up, a reload, a feed update), and returns the
// function that ends it; calling that more than once is harmless.
//
// A soft limit below the live heap has the collector run without pause:
// a reload of 500,000 entries under the 40 MiB floor took ten times as
// long, and every goroutine that allocated (a status request among them)
// waited seconds on the collector. So the limit is lifted while a load
// runs and GOGC lowered instead, which follows the live heap however
// large; the last load to end sets the limit from the new live heap
// (tuneMemoryLimit). GOMEMLIMIT and GOGC in the environment win.
func beginLoad() (end func()) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return func() {}
	}
	loads.mu.Lock()
	if loads.n == 0 {
		loads.heapAtBegin = heapObjects()
		debug.SetMemoryLimit(math.MaxInt64)
		if loads.setGC = os.Getenv("GOGC") == ""; loads.setGC {
			loads.gcPercent = debug.SetGCPercent(loadGCPercent)
		}
	}
	loads.n++
	loads.mu.Unlock()
	var once sync.Once
	return func() { once.Do(endLoad) }
}

func endLoad() {
	loads.mu.Lock()
	defer loads.mu.Unlock()
	if loads.n--; loads.n > 0 {
		return
	}
	if loads.setGC {
		debug.SetGCPercent(loads.gcPercent)
	}
	tuneMemoryLimit(heapObjects() > loads.heapAtBegin+loadGrowth)
}

// tuneMemoryLimit sets the runtime's soft memory limit to the floor or,
// once the threat entries make the live heap larger, to twice the live
// heap: between loads the heap stays near what is live, and the collector
// never runs flat out. With collect it first collects and hands the
// garbage of the load just ended back to the kernel (milliseconds, once
// per load that grew the heap), so that the live figure is the new one.
// GOMEMLIMIT in the environment wins.
func tuneMemoryLimit(collect bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if collect {
		debug.FreeOSMemory()
	}
	s := []metrics.Sample{{Name: "/gc/heap/live:bytes"}}
	metrics.Read(s)
	live := uint64(0)
	if s[0].Value.Kind() == metrics.KindUint64 {
		live = s[0].Value.Uint64()
	}
	limit := max(uint64(memoryFloor), 2*live)
	debug.SetMemoryLimit(int64(min(limit, math.MaxInt64)))
}
