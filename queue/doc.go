// Package queue is where packets come up from the kernel: NFQUEUE workers
// that decide each queued packet and give the kernel its verdict, and an
// NFLOG listener that reports the drops the kernel made by itself
// (blacklist and threat-intel sets), so those reach the log too.
//
// Invariant: every packet read from a queue gets exactly one verdict, on
// the worker that read it, before the next packet is read; a lost verdict
// would stall the flow until the kernel's queue fills. Each queue number
// has its own socket and worker, so several cores decide in parallel. The
// queues are bound without the fail-open flag: when a queue overflows the
// kernel drops, it never lets a flood through undecided.
//
// One packet: kernel (nft rule `queue num 0-1`) → worker.handle → Packet.Decode
// → Engine.Decide → SetVerdict(ACCEPT|DROP) → Observer.Decided (counters,
// log row). The Observer runs on the worker goroutine and must not block.
package queue
