// Package nft keeps pfw's ruleset in the kernel: one table, inet
// personal_firewall, whose sets say which remote addresses are whitelisted,
// blacklisted or listed by a threat feed, and whose chains send every other
// new flow to pfwd through an NFQUEUE.
//
// Invariant: pfw touches no table but its own, there is never more than one
// of it, and every change to it is one netlink transaction, so a packet meets
// the old ruleset or the new one, never a half-made one: no set is ever
// empty or half filled on its way to new contents.
//
// # Use
//
//	fw, err := nft.Open(nft.Config{QueueNum: 0, InitialSets: lists})
//	...
//	err = fw.UpdateSets(map[nft.List][]netip.Prefix{nft.Intel: feedEntries})
//	n, err := fw.KillFlows(ctx, func(f nft.Flow) bool { return blocked(f) })
//	err = fw.Close() // the table goes (default mode) or stays (FailClosed)
//
// A List (Whitelist, Blacklist, Intel) is held in two interval sets, one per
// family: whitelist_v4 and whitelist_v6, blacklist_v4 …, intel_v6.
// UpdateSets replaces only the lists it is given, each whole, so the config
// lists and the feed entries can be updated at different times.
// Changes are serialized: one transaction is sent at a time, and a large one
// (a million elements) takes seconds. QueueMode, SetSizes and FastPath never
// wait for it: they report the state the last completed change left, so a
// status request may call them at any time and never sees a change before
// the kernel has it.
//
// # The ruleset
//
// Chains input and output (type filter, priority filter + 20, policy accept)
// hold the same rules, in this order; the remote address is the source on
// input and the destination on output, and each rule carries a comment:
//
//  1. iif "lo" accept: loopback is not filtered, unless Config.Ifaces names
//     "lo".
//  2. iifname != "eth0" … accept: with Config.Ifaces, the other interfaces
//     are not filtered.
//  3. icmpv6 type { nd-router-solicit … nd-neighbor-advert } ip6 hoplimit
//     255 accept: IPv6 cannot reach its neighbors without neighbor
//     discovery, and hop limit 255 means the packet comes from this link
//     (RFC 4861). ufw and firewalld accept it the same way. Then the same
//     for multicast listener discovery (RFC 3810: query, reports, done),
//     hop limit 1 from a link-local or the unspecified source: without it
//     a host drops out of its groups where switches snoop MLD, its
//     solicited-node group among them. Off with
//     Config.FilterNeighborDiscovery.
//     Input only, then: a bare TCP SYN whose conntrack entry is
//     established jumps to input_reopened, which holds the guard's rules
//     (9) and the queue (10). Conntrack starts a new entry for a SYN on an
//     old tuple only after a FIN, or a reset from the SYN's side; such a
//     SYN reopens the tuple all the same, and the rules below would accept
//     it uncounted by the rate limit (guard.go, reopenRule).
//  4. ct label 126 (or 127) accept: the fast path. A flow whose conntrack
//     entry carries the bit of the lists' current generation passed them
//     since they last changed (fastpath.go says how the bit switches, so
//     that listing an address still stops its open flows at once).
//     With Config.Ifaces, then ct label set 125: every flow past the
//     interface rule is labelled as filtered, for good, so that a rule
//     change can tell the open flows it must cut (fastpath.go).
//  5. remote address in @whitelist_v4 / @whitelist_v6: accept.
//  6. in @blacklist_v4 / _v6: jump to the chain <hook>_blacklist, which logs
//     (NFLOG group Config.LogGroup, prefix "pfw blacklist", at most
//     Config.LogRate packets a second for both families) and drops. One set
//     lookup per list and family, not one per rule.
//  7. in @intel_v4 / _v6: the same through <hook>_intel, prefix "pfw intel".
//  8. ct state established,related ct label set 126 (or 127) accept: pfwd
//     decides a flow once, by its first packets; the rest stays in the
//     kernel. The list drops come before this rule, so listing an address
//     also cuts its open flows.
//     Then ct status confirmed accept: a flow whose first packet pfwd let
//     through but that no reply answered yet (one-way UDP, a retransmitted
//     SYN) is still new to conntrack; without this rule each of its
//     packets would be queued and counted as a new connection.
//  9. input only: a connection attempt (not TCP, or a bare SYN) from a
//     source in @ratelimit_v4 / _v6 jumps to input_ratelimit, which logs
//     (prefix "pfw ratelimit") and drops: the guard, guard.go.
//  10. queue to Config.QueueNum … QueueNum+QueueCount-1 (fanned out by CPU
//     when there are several), with the bypass flag unless FailClosed: with
//     no reader the packet is then accepted (fail open) or dropped.

// Each address match tests meta nfproto first, so a v4 set only ever sees
// IPv4 packets in this inet table.
//
// # Priority
//
// In one hook every base chain runs, in priority order: an accept only ends
// its own chain, a drop is final. So the verdict is the same whatever the
// order (a packet passes only if every firewall accepts it), and the order
// decides only which packets reach pfwd. Filter + 20 runs after
// iptables-nft and ufw (filter, 0) and firewalld (filter + 10): a packet one
// of them drops costs no trip to user space and never shows in pfw's log as
// allowed. It is distinct from theirs because chains of equal priority run in
// an undefined order, and below security (50). Docker and libvirt filter the
// forward hook, which pfw leaves alone. Conntrack (-200) and destination NAT
// (-100) have run by then, so the output chain sees the address a packet
// really goes to.
//
// # Queue modes
//
// The native queue expression needs CONFIG_NFT_QUEUE, which some kernels
// (pfw's CI among them) lack. Open sends its first transaction with it; if
// the kernel answers ENOENT, it sends the same transaction with the iptables
// NFQUEUE target (revision 3) run by nft_compat. QueueMode says which was
// used; Config.ForceQueueMode picks one. nft prints the xt target as
// `xt target "NFQUEUE"`, its translation, or nothing, depending on whether
// the iptables extension libraries are installed.
//
// # Ownership and crashes
//
// By default the table has the owner flag (NFT_TABLE_F_OWNER): it belongs to
// the Firewall's netlink socket, so no other process can change it and the
// kernel deletes it when the socket closes, also when pfwd is killed with
// SIGKILL: pfwd's rules never outlive it, and traffic flows (fail open).
// Every change goes through that one socket, and a second Open fails while
// the first Firewall lives. google/nftables v0.3.0 cannot set a table's
// flags, so the owned table is created by a hand-written batch on the same
// socket, and the ruleset and initial sets follow in a second transaction;
// the empty table in between filters nothing, which is what the default
// (fail-open) mode promises whenever pfwd is not in charge.
//
// With FailClosed the table has no owner and outlives the process: queued
// traffic is dropped while no pfwd listens, as asked. Close leaves it;
// Remove, or RemoveTable from another process, deletes it. The next
// fail-closed Open replaces it in one transaction that deletes the stale
// table and creates the new one, so there is no moment without rules; a
// default-mode Open replaces it through the owned-table path above. An
// unowned table is open to anyone: `nft flush ruleset` deletes it (the
// owned one it skips). Firewall records the table's shape (chains, rule
// counts, sets) and the nftables ruleset generation after each change it
// makes. Repair, which pfwd calls every second in this mode, reads the
// generation (one small request); only when somebody else has committed
// since does it compare the shape and the list sets' elements, and it
// reinstalls the table when either differs, with the sets as fw last left
// them (repair.go, generation.go).
//
// # Sets
//
// Prefixes are merged into disjoint ranges before they reach the kernel,
// which rejects overlapping intervals. A range is a start element and an
// end element at the address after its last; a range that reaches
// 255.255.255.255 or ffff:…:ffff has no such address and is only a start
// element, as nft writes it. An update is sent as the difference between
// the ranges the sets hold and the ones asked for, in one transaction of
// messages small enough for a netlink attribute (64 kB); the socket's send
// buffer grows to fit the batch (100,000 prefixes is about 4 MB).
//
// # Conntrack
//
// KillFlows dumps the conntrack table and deletes the entries the caller's
// function picks, so a flow a new rule would block does not live on through
// the ct state rule. The fast path clears its retired label bit the same
// way, entry by entry. Both walks read the table a datagram at a time and
// end early when told to (KillFlows' context, Close for the clear), so a
// table a flood filled holds up no stop.
//
// Everything here needs CAP_NET_ADMIN. The package never logs; errors name
// the operation and the table or set.
package nft
