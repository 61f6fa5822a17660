package queue

import (
	"encoding/binary"
	"fmt"
	"net/netip"
	"slices"
	"strings"
	"testing"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// FuzzCollect feeds a worker whole datagrams as recvmmsg hands them over:
// several netlink messages, packets, acknowledgements and errors, cut or
// lying about their lengths. The worker takes exactly the packets the
// acknowledgement path's walker (forEachMsg) and parsePacket see, in
// order, with their ids; every payload lies inside the datagram and was
// decoded whole; every packet has a decision; and each error counter
// counts only what it says.
func FuzzCollect(f *testing.F) {
	udp := ipv4UDP([4]byte{198, 51, 100, 1}, [4]byte{192, 0, 2, 1}, 40000, 53)
	for _, seed := range [][]byte{
		nlmsg(typePacket, packetMsg(1, 1, udp)),
		append(nlmsg(typePacket, packetMsg(1, 1, udp)), nlmsg(typePacket, packetMsg(2, hookLocalOut, udp[:24]))...),
		slices.Concat(nlmsg(unix.NLMSG_ERROR, []byte{0xfe, 0xff, 0xff, 0xff}), nlmsg(typePacket, packetMsg(3, 1, udp)), nlmsg(unix.NLMSG_ERROR, make([]byte, 4))),
		nlmsg(typePacket, appendAttr([]byte{2, 0, 0, 7}, nfqaPayload, udp)), // no packet header: no id
		nlmsg(typePacket, packetMsg(4, 1, nil)),
		nlmsg(typePacket, packetMsg(5, 1, udp))[:40], // cut by a short read
		append(nlmsg(typePacket, packetMsg(6, 1, udp)), 0xff, 0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0),
		{15, 0, 0, 0, 0, 3, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0},
		{},
	} {
		f.Add(seed)
	}
	engine := testEngine(f)
	f.Fuzz(func(t *testing.T, b []byte) {
		// A batch larger than the messages b can hold: collect never
		// sends, which needs a socket.
		q := &Queues{cfg: Config{Batch: len(b)/nlmsgHdrLen + 1}, engine: engine}
		w := newWorker(q, nil)
		w.collect(b)

		var wantIDs []uint32
		packets, errors := 0, 0
		forEachMsg(b, func(typ uint16, m []byte) {
			switch typ {
			case typePacket:
				packets++
				if p, ok := parsePacket(m[nlmsgHdrLen:]); ok {
					wantIDs = append(wantIDs, p.id)
				}
			case unix.NLMSG_ERROR:
				errors++
			}
		})
		if !slices.Equal(w.ids[:w.n], wantIDs) {
			t.Fatalf("worker took ids %v, the message walker sees %v", w.ids[:w.n], wantIDs)
		}
		if readErrs := q.C.ReadErrors.Load(); readErrs < uint64(packets-w.n) || readErrs > uint64(packets-w.n+1) {
			t.Fatalf("%d read errors for %d packet messages of which %d had an id", readErrs, packets, w.n)
		}
		if verdictErrs := q.C.VerdictErrors.Load(); verdictErrs > uint64(errors) {
			t.Fatalf("%d verdict errors from %d error messages", verdictErrs, errors)
		}
		if q.C.Seen.Load() != 0 || len(w.out) != 0 {
			t.Fatalf("collect sent verdicts")
		}
		start := uintptr(unsafe.Pointer(unsafe.SliceData(b)))
		for i := range w.n {
			p := w.payloads[i]
			if len(p) > 0 {
				at := uintptr(unsafe.Pointer(unsafe.SliceData(p)))
				if at < start || at+uintptr(len(p)) > start+uintptr(len(b)) {
					t.Fatalf("payload %d (%d bytes) lies outside the %d-byte datagram", i, len(p), len(b))
				}
			}
			if w.pkts[i].Length != len(p) {
				t.Fatalf("packet %d decoded from %d bytes, its payload has %d", i, w.pkts[i].Length, len(p))
			}
			if d := w.decs[i]; (d.Action != rules.ActionAllow && d.Action != rules.ActionBlock) || d.Reason == "" {
				t.Fatalf("packet %d: decision %+v", i, d)
			}
		}
	})
}

// FuzzKernelDropReason feeds the NFLOG listener's reasoning what the
// kernel may report for a packet it dropped: any log prefix (ours are
// PrefixIntel, PrefixRateLimit and the blacklist's; a rule added by hand
// to the same group may log anything), any payload, either direction.
// The answer is always a block by the blacklist, a feed or the rate limit
// with a reason as the contract spells it, never a rule's or the default
// policy's, and asking does not count towards the rate limit.
func FuzzKernelDropReason(f *testing.F) {
	listed := [4]byte{203, 0, 113, 7}
	fed := [4]byte{198, 51, 100, 66}
	local := [4]byte{192, 168, 50, 1}
	for _, seed := range []struct {
		prefix  string
		payload []byte
		out     bool
	}{
		{PrefixIntel, ipv4UDP(fed, local, 5000, 53), false},
		{PrefixIntel, ipv4UDP(local, fed, 5000, 53), true},
		{PrefixIntel + " v6", ipv4UDP([4]byte{198, 51, 100, 99}, local, 1, 2), false},
		{"pfw blacklist", ipv4UDP(listed, local, 5000, 53), false},
		{PrefixRateLimit, ipv4UDP([4]byte{198, 51, 100, 1}, local, 40000, 22), false},
		{"pfw ratelimi", ipv4UDP([4]byte{198, 51, 100, 1}, local, 40000, 22), false},
		{"", nil, false},
		{"something else", []byte{0x45, 0, 0}, true},
		{"\x00\xff", []byte{0x60, 0, 0, 0}, false},
	} {
		f.Add(seed.prefix, seed.payload, seed.out)
	}
	cfg, err := rules.Parse([]byte(`{"blacklist_ips": ["203.0.113.7", "2001:db8:bad::/48"],
		"rules": [{"name": "allow all", "action": "allow"}],
		"rate_limit": {"max_connections": 1, "window_seconds": 60}}`))
	if err != nil {
		f.Fatal(err)
	}
	engine := verdict.NewEngine(verdict.Compile(cfg))
	engine.SetIntel(verdict.NewIntel([]verdict.FeedEntries{{Name: "Feodo Tracker", Prefixes: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4(fed), 32)}}}))
	engine.SetIntel(verdict.NewIntel([]verdict.FeedEntries{{Name: "Spamhaus DROP", Prefixes: []netip.Prefix{netip.MustParsePrefix("2001:db8:f00d::/48")}}}))
	k := &KernelDrops{engine: engine}
	f.Fuzz(func(t *testing.T, prefix string, payload []byte, out bool) {
		dir := rules.DirIn
		if out {
			dir = rules.DirOut
		}
		var p verdict.Packet
		p.Decode(payload)
		d := k.reason(&p, dir, prefix)
		if !d.Blocked() || d.Rule != -1 {
			t.Fatalf("reason(%q) = %+v: want a block that names no rule", prefix, d)
		}
		switch d.Step {
		case verdict.StepRateLimit:
			if d.Reason != verdict.ReasonRateLimited {
				t.Fatalf("rate-limit step with reason %q", d.Reason)
			}
		case verdict.StepBlacklist:
			if d.Reason != verdict.ReasonBlacklisted {
				t.Fatalf("blacklist step with reason %q", d.Reason)
			}
		case verdict.StepThreatIntel:
			if !strings.HasPrefix(d.Reason, "Threat intel: ") || d.Reason == "Threat intel: " {
				t.Fatalf("threat-intel step with reason %q", d.Reason)
			}
		default:
			t.Fatalf("reason(%q) = %+v: the kernel drops only for the lists, the feeds and the rate limit", prefix, d)
		}
		if strings.HasPrefix(prefix, PrefixRateLimit) && d.Step != verdict.StepRateLimit {
			t.Fatalf("a %q drop is named %q", prefix, d.Reason)
		}
		if again := k.reason(&p, dir, prefix); again != d {
			t.Fatalf("asking twice gave %+v, then %+v", d, again)
		}
	})
}

// nlmsg is one netlink message of type typ around body, padded.
func nlmsg(typ uint16, body []byte) []byte {
	b := make([]byte, nlmsgHdrLen, nlmsgHdrLen+len(body)+3)
	binary.NativeEndian.PutUint32(b, uint32(nlmsgHdrLen+len(body)))
	binary.NativeEndian.PutUint16(b[4:], typ)
	b = append(b, body...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// ipv4UDP is a minimal IPv4 UDP packet (checksums left zero: nothing
// here checks them).
func ipv4UDP(src, dst [4]byte, sport, dport uint16) []byte {
	b := []byte{0x45, 0, 0, 28, 0, 0, 0x40, 0, 64, 17, 0, 0}
	b = append(append(b, src[:]...), dst[:]...)
	b = binary.BigEndian.AppendUint16(b, sport)
	b = binary.BigEndian.AppendUint16(b, dport)
	return append(b, 0, 8, 0, 0)
}

// TestCollectDecidesCutPacket: recvmmsg cuts a message that outgrows its
// buffer. The packet still waits in the kernel, and the next batch
// verdict would answer it undecided, so the worker decides what arrived:
// a cut after the headers is decided on them, a cut inside them drops.
func TestCollectDecidesCutPacket(t *testing.T) {
	engine := testEngine(t)
	blocked := ipv4UDP([4]byte{198, 51, 100, 1}, [4]byte{192, 0, 2, 1}, 40000, testPortHigh)
	blocked = append(blocked, make([]byte, 1400)...)
	for _, tc := range []struct {
		name   string
		keep   int // bytes of the message that arrived
		reason string
	}{
		{"after the headers", 120, "Rule: upper half"},
		{"inside the IP header", 60, "Malformed packet"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			q := &Queues{cfg: Config{Batch: 4}, engine: engine}
			w := newWorker(q, nil)
			msg := nlmsg(typePacket, packetMsg(9, 1, blocked))
			w.collect(msg[:tc.keep])
			if w.n != 1 || w.ids[0] != 9 {
				t.Fatalf("worker took %d packets (ids %v), want packet 9", w.n, w.ids[:w.n])
			}
			if d := w.decs[0]; d.Action != rules.ActionBlock || d.Reason != tc.reason {
				t.Errorf("decision %v %q, want block %q", d.Action, d.Reason, tc.reason)
			}
			if got := q.C.ReadErrors.Load(); got != 1 {
				t.Errorf("%d read errors, want 1 for the cut message", got)
			}
		})
	}
}

// The worker's path for a batch allocates nothing: recvmmsg of the queued
// messages, decode and decide (the rate limit on), the verdicts' write,
// and the call of the Observer (a no-op here; pfwd's auditor is
// daemon's TestAuditorDoesNotAllocate). It runs run's loop body over a
// socket pair standing in for the netlink socket, so it needs no root;
// queue_test.go's kernel test covers the real socket.
func TestWorkerPathDoesNotAllocate(t *testing.T) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_DGRAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		t.Fatal(err)
	}
	peer := fds[1]
	defer unix.Close(peer)
	const batch = 8
	s, err := newSock(fds[0], 0, batch, 1024+1024)
	if err != nil {
		t.Fatal(err)
	}
	defer s.close()
	// The rate limit on, so its memo of counted flows and its table are
	// on the path too.
	cfg, err := rules.Parse([]byte(fmt.Sprintf(`{"rules": [{"name": "upper half", "action": "block", "protocol": "udp", "ports": ["%d-%d"]}],
		"rate_limit": {"max_connections": 1000000, "window_seconds": 10}}`, testPortLow+batch/2, testPortHigh)))
	if err != nil {
		t.Fatal(err)
	}
	q := &Queues{cfg: Config{Batch: batch}, engine: verdict.NewEngine(verdict.Compile(cfg)), obs: nopObserver{}}
	w := newWorker(q, s)
	var msgs [][]byte
	for i := range batch {
		port := uint16(testPortLow + i) // half allowed, half blocked by the test policy
		msgs = append(msgs, nlmsg(typePacket, packetMsg(uint32(i+1), 1, ipv4UDP([4]byte{198, 51, 100, 1}, [4]byte{192, 0, 2, 1}, 40000, port))))
	}
	out := make([]byte, 64<<10)
	// Each round from new source ports: new flows, which the rate limit
	// counts (the UDP source port sits after the netlink and nfgenmsg
	// headers, two attributes, the payload attribute's header and the IP
	// header).
	const sportAt = nlmsgHdrLen + nfgenmsgLen + 12 + 8 + nlaHdrLen + 20
	round := uint16(0)
	one := func() {
		round++
		for _, m := range msgs {
			binary.BigEndian.PutUint16(m[sportAt:], 1024+round)
			if _, err := unix.Write(peer, m); err != nil {
				t.Fatal(err)
			}
		}
		n, err := s.receive()
		if err != nil || n != batch {
			t.Fatalf("receive = %d, %v; want %d messages", n, err, batch)
		}
		w.now = q.engine.Clock()
		for i := range n {
			w.collect(s.datagram(i))
		}
		w.finish()
		if _, err := unix.Read(peer, out); err != nil {
			t.Fatalf("no verdicts written: %v", err)
		}
	}
	one()
	if got := q.C.Seen.Load(); got != batch || w.pkts[0].SrcPort != 1025 {
		t.Fatalf("%d packets decided, the first from port %d; want %d, from 1025", got, w.pkts[0].SrcPort, batch)
	}
	if allocs := testing.AllocsPerRun(200, one); allocs != 0 {
		t.Errorf("%v allocations per batch of %d packets, want 0", allocs, batch)
	}
}

type nopObserver struct{}

func (nopObserver) Decided(*verdict.Packet, rules.Direction, verdict.Decision, []byte) {}
