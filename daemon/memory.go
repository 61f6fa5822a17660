package daemon

import (
	"math"
	"os"
	"runtime/debug"
	"runtime/metrics"
)

// memoryFloor is the soft memory limit pfwd keeps while its live heap is
// small. Without one the Go runtime lets the heap grow to twice what is
// live before collecting, and keeps the pages afterwards: loading a
// 100,000-entry feed (34 MiB live at its peak, 20 MiB once loaded) left
// pfwd at 85-100 MiB RSS. With this floor the peak was 45 MiB.
const memoryFloor = 40 << 20

// tuneMemoryLimit sets the runtime's soft memory limit to the floor or,
// once the threat entries make the live heap larger, to twice the live
// heap, so a large feed costs collections only while it loads, never a
// collector running flat out. After a load (afterLoad) it first collects
// and hands the load's garbage back to the kernel: that happens once per
// feed update, and costs milliseconds. GOMEMLIMIT in the environment wins.
func tuneMemoryLimit(afterLoad bool) {
	if os.Getenv("GOMEMLIMIT") != "" {
		return
	}
	if afterLoad {
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
