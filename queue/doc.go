// Package queue is where packets come up from the kernel: NFQUEUE workers
// that decide each queued packet and give the kernel its verdict, and an
// NFLOG listener that reports the drops the kernel made by itself
// (blacklist and threat-intel sets), so those reach the log too.
//
// Invariant: every packet read from a queue gets exactly one verdict, from
// the worker that read it, before that worker reads again; a lost verdict
// would hold the packet until the queue closes. Each queue number has its
// own socket and worker, so several cores decide in parallel. The queues
// are bound without the fail-open flag: when a queue overflows the kernel
// drops, it never lets a flood through undecided.
//
// One batch: kernel (nft rule `queue flags bypass,fanout to 0-1`) → recvmmsg of up to
// Config.Batch packet messages → per packet Packet.Decode and
// Engine.Decide → one write of the verdicts, each run of packets sharing a
// verdict answered by one batch verdict (NFQNL_MSG_VERDICT_BATCH) →
// Observer.Decided per packet (counters, log row). The Observer runs on the
// worker goroutine and must not block.
//
// The netlink protocol is spoken directly (netlink.go) rather than through
// go-nfqueue, which allocates a message, a buffer and a pointer per
// attribute for every packet and reads one packet per system call: here a
// packet costs no allocation and a batch two system calls.
package queue
