package nft

import (
	"encoding/binary"

	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

// The two ways to send a packet to an NFQUEUE; QueueMode reports the one in
// use and Config.ForceQueueMode picks one.
const (
	// QueueNative is nftables' own queue expression (kernel CONFIG_NFT_QUEUE).
	QueueNative = "nft queue"
	// QueueXT is the iptables NFQUEUE target (CONFIG_NETFILTER_XT_TARGET_NFQUEUE)
	// run by nft_compat, for kernels built without nft_queue.
	QueueXT = "xt NFQUEUE (nft_compat)"
)

// xt_NFQ_info_v3 flags (include/uapi/linux/netfilter/xt_NFQUEUE.h); the same
// values as NFT_QUEUE_FLAG_BYPASS and NFT_QUEUE_FLAG_CPU_FANOUT.
const (
	nfqFlagBypass    = 0x01
	nfqFlagCPUFanout = 0x02
)

// queueExpr returns the verdict expression sending a packet to queues
// num..num+total-1: fanned out by CPU when there are several (the CPU
// that handles a packet picks its queue, so the queues share the load the
// way the NIC already spread it over the cores), and with the bypass flag
// when no reader listening must mean "accept" rather than "drop".
func queueExpr(mode string, num, total uint16, bypass bool) expr.Any {
	var flags uint16
	if bypass {
		flags |= nfqFlagBypass
	}
	if total > 1 {
		flags |= nfqFlagCPUFanout
	}
	if mode == QueueNative {
		return &expr.Queue{Num: num, Total: total, Flag: expr.QueueFlag(flags)}
	}
	// struct xt_NFQ_info_v3 { __u16 queuenum, queues_total, flags; } in host
	// byte order, padded to 8 bytes (XT_ALIGN) as nft_compat checks.
	info := make(xt.Unknown, 8)
	binary.NativeEndian.PutUint16(info[0:], num)
	binary.NativeEndian.PutUint16(info[2:], total)
	binary.NativeEndian.PutUint16(info[4:], flags)
	return &expr.Target{Name: "NFQUEUE", Rev: 3, Info: &info}
}
