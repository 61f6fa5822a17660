package main

// The load generator and the sink of the load benchmark and the flood
// tests. Both are this test binary re-executed inside a namespace
// (PFW_E2E_HELPER=load), so they cost no external tool. The generator
// speaks raw syscalls — sendmmsg on raw IPv4 sockets for floods with a new
// source port or a spoofed source per packet, on connected UDP sockets for
// established flows — because Go's net package spends more per packet than
// the firewall under test. The sink counts what reaches each port, read
// with recvmmsg for the same reason.

import (
	"bufio"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"github.com/florianl/go-nfqueue/v2"
	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/intel"
	"github.com/pfw/pfw/nft"
)

// Generator kinds.
const (
	genTCPBulk  = "tcp-bulk"  // Flows TCP connections writing as fast as they can
	genUDPFlows = "udp-flows" // Flows UDP flows, each answered once by the sink, then sent without pause
	genUDPNew   = "udp-new"   // raw UDP, a new source port (and with SrcNet a new source) per packet
	genSYNNew   = "syn-new"   // raw TCP SYNs, the same
)

// genSpec is what the generator is asked to send. It travels as JSON in
// PFW_LOAD_SPEC.
type genSpec struct {
	Kind     string
	Src      string // source address; raw kinds write it in the header
	SrcNet   string // raw kinds: a different source address from this prefix per packet (spoofing)
	Dst      string
	Port     int // destination port
	Flows    int // tcp-bulk, udp-flows: how many
	Threads  int // sending threads (default 1)
	Payload  int // UDP payload bytes (default 18: a 64-byte frame)
	Rate     int // packets per second over all threads; 0 = as fast as possible
	Count    int // raw kinds: stop after this many packets (0 = Duration only)
	Duration time.Duration
}

// genResult is the generator's report.
type genResult struct {
	Sent    uint64  `json:"sent"`  // packets (raw, udp-flows) handed to the kernel
	Bytes   uint64  `json:"bytes"` // payload bytes written (tcp-bulk)
	Seconds float64 `json:"seconds"`
	Err     string  `json:"err,omitempty"`
}

// sinkStats is the sink's report: packets per UDP port, bytes per TCP port.
type sinkStats struct {
	UDP map[int]uint64 `json:"udp"`
	TCP map[int]uint64 `json:"tcp"`
}

// loadMain runs the generator or the sink (PFW_LOAD_ROLE).
func loadMain() int {
	switch role := os.Getenv("PFW_LOAD_ROLE"); role {
	case "sink":
		return sinkMain(splitInts(os.Getenv("PFW_UDP")), splitInts(os.Getenv("PFW_TCP")))
	case "ruleset":
		return rulesetMain(os.Getenv("PFW_BLACKLIST"), os.Getenv("PFW_FEED"))
	case "naive":
		return naiveMain(os.Getenv("PFW_BLACKLIST"), os.Getenv("PFW_FEED"))
	case "gen":
		var spec genSpec
		if err := json.Unmarshal([]byte(os.Getenv("PFW_LOAD_SPEC")), &spec); err != nil {
			fmt.Fprintln(os.Stderr, "load generator spec:", err)
			return 2
		}
		res, err := generate(spec)
		if err != nil {
			res.Err = err.Error()
		}
		json.NewEncoder(os.Stdout).Encode(res)
		return 0
	default:
		fmt.Fprintf(os.Stderr, "unknown load role %q\n", role)
		return 2
	}
}

// --- the ruleset alone ---

// rulesetMain installs the ruleset pfwd would, with pfwd's default
// options, blacklist as its one blacklisted address and the addresses of
// the feed file as threat entries, but binds no queue: what the rules send
// to the queue meets its bypass flag and is accepted. That is the kernel's
// share of a firewall's cost without the user-space part. It prints
// "ready" and holds the table until stdin closes.
func rulesetMain(blacklist, feed string) int {
	sets, err := rulesetLists(blacklist, feed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "ruleset helper:", err)
		return 1
	}
	fw, err := nft.Open(nft.Config{QueueCount: uint16(runtime.NumCPU()), LogGroup: 27, InitialSets: sets})
	if err != nil {
		fmt.Fprintln(os.Stderr, "ruleset helper:", err)
		return 1
	}
	defer fw.Close()
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// naiveMain is the design the issue measures pfwd against: pfwd's ruleset
// with a single queue, read by the plain go-nfqueue loop its README shows
// (one packet per read, one verdict per write), accepting every packet
// without even deciding. The queue holds as many packets as pfwd's, so that
// the difference is the loop. It prints "ready" and runs until stdin
// closes.
func naiveMain(blacklist, feed string) int {
	sets, err := rulesetLists(blacklist, feed)
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive helper:", err)
		return 1
	}
	fw, err := nft.Open(nft.Config{QueueCount: 1, LogGroup: 27, InitialSets: sets})
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive helper:", err)
		return 1
	}
	defer fw.Close()
	nf, err := nfqueue.Open(&nfqueue.Config{
		NfQueue: 0, MaxPacketLen: 0xffff, MaxQueueLen: 4096,
		Copymode: nfqueue.NfQnlCopyPacket, WriteTimeout: 15 * time.Millisecond,
	})
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive helper: open queue:", err)
		return 1
	}
	defer nf.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	err = nf.RegisterWithErrorFunc(ctx, func(a nfqueue.Attribute) int {
		nf.SetVerdict(*a.PacketID, nfqueue.NfAccept)
		return 0
	}, func(error) int { return 0 }) // ENOBUFS and the like: keep reading
	if err != nil {
		fmt.Fprintln(os.Stderr, "naive helper: register:", err)
		return 1
	}
	fmt.Println("ready")
	io.Copy(io.Discard, os.Stdin)
	return 0
}

// rulesetLists are the kernel lists of the benchmark's pfwd config: the
// loopback whitelist, blacklist, and the feed's entries as intel.
func rulesetLists(blacklist, feed string) (map[nft.List][]netip.Prefix, error) {
	bl, err := netip.ParseAddr(blacklist)
	if err != nil {
		return nil, fmt.Errorf("blacklist: %w", err)
	}
	f, err := os.Open(feed)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	res, err := intel.Parse(f) // the parser pfwd reads feeds with
	if err != nil {
		return nil, fmt.Errorf("%s: %w", feed, err)
	}
	return map[nft.List][]netip.Prefix{
		nft.Whitelist: {netip.MustParsePrefix("127.0.0.1/32"), netip.MustParsePrefix("::1/128")},
		nft.Blacklist: {netip.PrefixFrom(bl, 32)},
		nft.Intel:     res.Entries,
	}, nil
}

// startRuleset runs rulesetMain (role "ruleset") or naiveMain ("naive") in
// namespace ns until tb's cleanup.
func startRuleset(tb testing.TB, ns, role, blacklist, feed string) {
	tb.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=load", "PFW_LOAD_ROLE="+role, "PFW_BLACKLIST="+blacklist, "PFW_FEED="+feed)
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { in.Close(); cmd.Wait() })
	if line, err := bufio.NewReader(stdout).ReadString('\n'); err != nil || line != "ready\n" {
		tb.Fatalf("%s helper did not start: %q %v", role, line, err)
	}
}

// --- the sink ---

// sinkMain listens on the ports, prints "ready", then answers each "stats"
// line on stdin with a sinkStats line; it exits when stdin closes.
func sinkMain(udpPorts, tcpPorts []int) int {
	udp := map[int]*atomic.Uint64{}
	tcp := map[int]*atomic.Uint64{}
	for _, p := range udpPorts {
		fd, err := udpSinkSocket(p)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
		n := new(atomic.Uint64)
		udp[p] = n
		go drainUDP(fd, n)
	}
	for _, p := range tcpPorts {
		n := new(atomic.Uint64)
		tcp[p] = n
		err := serveTCP(p, func(c net.Conn) {
			buf := make([]byte, 256<<10)
			for {
				k, err := c.Read(buf)
				n.Add(uint64(k))
				if err != nil {
					return
				}
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("ready")
	sc := bufio.NewScanner(os.Stdin)
	for sc.Scan() {
		st := sinkStats{UDP: map[int]uint64{}, TCP: map[int]uint64{}}
		for p, n := range udp {
			st.UDP[p] = n.Load()
		}
		for p, n := range tcp {
			st.TCP[p] = n.Load()
		}
		json.NewEncoder(os.Stdout).Encode(st)
	}
	return 0
}

// udpSinkSocket is a blocking dual-stack UDP socket with a large buffer.
func udpSinkSocket(port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("sink udp socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_IPV6, unix.IPV6_V6ONLY, 0)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 16<<20)
	if err := unix.Bind(fd, &unix.SockaddrInet6{Port: port}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("sink udp bind %d: %w", port, err)
	}
	return fd, nil
}

// drainUDP reads datagrams in batches and counts them; a datagram starting
// with 'E' is echoed, which is how a udp-flows sender gets its flow
// established in conntrack before it floods.
func drainUDP(fd int, n *atomic.Uint64) {
	runtime.LockOSThread()
	const batch = 64
	bufs := make([][2048]byte, batch)
	names := make([]unix.RawSockaddrInet6, batch)
	iovs := make([]unix.Iovec, batch)
	msgs := make([]mmsghdr, batch)
	for {
		for i := range msgs {
			iovs[i] = unix.Iovec{Base: &bufs[i][0]}
			iovs[i].SetLen(len(bufs[i]))
			msgs[i] = mmsghdr{hdr: unix.Msghdr{Name: (*byte)(unsafe.Pointer(&names[i])), Namelen: uint32(unsafe.Sizeof(names[i])), Iov: &iovs[i], Iovlen: 1}}
		}
		got, err := mmsg(unix.SYS_RECVMMSG, fd, msgs, unix.MSG_WAITFORONE)
		if err != nil {
			if errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN) {
				continue
			}
			return
		}
		n.Add(uint64(got))
		for i := range got {
			if msgs[i].len > 0 && bufs[i][0] == 'E' {
				unix.Syscall6(unix.SYS_SENDTO, uintptr(fd), uintptr(unsafe.Pointer(&bufs[i][0])), uintptr(msgs[i].len),
					0, uintptr(unsafe.Pointer(&names[i])), uintptr(msgs[i].hdr.Namelen))
			}
		}
	}
}

// mmsghdr is struct mmsghdr, which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// mmsg calls sendmmsg or recvmmsg and returns how many messages it moved.
func mmsg(trap uintptr, fd int, msgs []mmsghdr, flags int) (int, error) {
	r, _, errno := unix.Syscall6(trap, uintptr(fd), uintptr(unsafe.Pointer(&msgs[0])), uintptr(len(msgs)), uintptr(flags), 0, 0)
	if errno != 0 {
		return 0, errno
	}
	return int(r), nil
}

// --- the generator ---

func generate(s genSpec) (genResult, error) {
	s.Threads = max(s.Threads, 1)
	if s.Payload == 0 {
		s.Payload = 18
	}
	start := time.Now()
	var (
		res  genResult
		err  error
		sent atomic.Uint64
	)
	switch s.Kind {
	case genTCPBulk:
		res.Bytes, err = tcpBulk(s)
	case genUDPFlows:
		err = udpFlows(s, &sent)
	case genUDPNew, genSYNNew:
		err = rawFlood(s, &sent)
	default:
		err = fmt.Errorf("unknown generator kind %q", s.Kind)
	}
	res.Sent = sent.Load()
	res.Seconds = time.Since(start).Seconds()
	return res, err
}

func tcpBulk(s genSpec) (uint64, error) {
	var total atomic.Uint64
	var wg sync.WaitGroup
	errs := make(chan error, s.Flows)
	deadline := time.Now().Add(s.Duration)
	d := net.Dialer{Timeout: 3 * time.Second, LocalAddr: &net.TCPAddr{IP: net.ParseIP(s.Src)}}
	for range max(s.Flows, 1) {
		wg.Go(func() {
			c, err := d.Dial("tcp", net.JoinHostPort(s.Dst, strconv.Itoa(s.Port)))
			if err != nil {
				errs <- err
				return
			}
			defer c.Close()
			c.SetWriteDeadline(deadline)
			buf := make([]byte, 128<<10)
			for time.Now().Before(deadline) {
				n, err := c.Write(buf)
				total.Add(uint64(n))
				if err != nil {
					return
				}
			}
		})
	}
	wg.Wait()
	close(errs)
	return total.Load(), <-errs
}

// udpFlows opens Flows connected UDP sockets, has each flow answered once
// (so conntrack holds it as established), then sends in batches from
// Threads threads until Duration is over.
func udpFlows(s genSpec, sent *atomic.Uint64) error {
	dst, err := netip.ParseAddr(s.Dst)
	if err != nil {
		return err
	}
	src, _ := netip.ParseAddr(s.Src)
	fds := make([]int, max(s.Flows, 1))
	for i := range fds {
		if fds[i], err = udpFlowSocket(src, dst, s.Port); err != nil {
			return err
		}
		defer unix.Close(fds[i])
	}
	payload := make([]byte, s.Payload)
	payload[0] = 'D'
	deadline := time.Now().Add(s.Duration)
	var wg sync.WaitGroup
	for th := range s.Threads {
		wg.Go(func() {
			runtime.LockOSThread()
			const batch = 64
			iov := unix.Iovec{Base: &payload[0]}
			iov.SetLen(len(payload))
			msgs := make([]mmsghdr, batch)
			for i := range msgs {
				msgs[i].hdr.Iov, msgs[i].hdr.Iovlen = &iov, 1
			}
			pace := newPacer(s.Rate, s.Threads)
			for f := th; time.Now().Before(deadline); f += s.Threads {
				n, err := mmsg(unix.SYS_SENDMMSG, fds[f%len(fds)], msgs, 0)
				if err == nil {
					sent.Add(uint64(n))
				}
				pace.wait(batch)
			}
		})
	}
	wg.Wait()
	return nil
}

// udpFlowSocket connects a UDP socket and waits for the sink's echo of a
// handshake datagram, retrying a few times.
func udpFlowSocket(src, dst netip.Addr, port int) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, err
	}
	if src.IsValid() {
		if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: src.As4()}); err != nil {
			unix.Close(fd)
			return -1, fmt.Errorf("bind %s: %w", src, err)
		}
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Addr: dst.As4(), Port: port}); err != nil {
		unix.Close(fd)
		return -1, err
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 300000})
	buf := make([]byte, 64)
	for range 10 {
		unix.Write(fd, []byte("E"))
		if n, err := unix.Read(fd, buf); err == nil && n > 0 {
			return fd, nil
		}
	}
	unix.Close(fd)
	return -1, fmt.Errorf("udp flow to %s:%d: no answer to the handshake", dst, port)
}

// rawFlood sends crafted IPv4 UDP datagrams or TCP SYNs, each with a new
// source port and, with SrcNet, a new source address, until Duration or
// Count.
func rawFlood(s genSpec, sent *atomic.Uint64) error {
	dst, err := netip.ParseAddr(s.Dst)
	if err != nil || !dst.Is4() {
		return fmt.Errorf("raw flood: destination %q is not IPv4", s.Dst)
	}
	src, _ := netip.ParseAddr(s.Src)
	var spoof netip.Prefix
	if s.SrcNet != "" {
		if spoof, err = netip.ParsePrefix(s.SrcNet); err != nil || !spoof.Addr().Is4() {
			return fmt.Errorf("raw flood: source prefix %q is not IPv4", s.SrcNet)
		}
	} else if !src.Is4() {
		return fmt.Errorf("raw flood: source %q is not IPv4", s.Src)
	}
	deadline := time.Now().Add(s.Duration)
	var budget atomic.Int64
	budget.Store(int64(s.Count))
	errs := make(chan error, s.Threads)
	var wg sync.WaitGroup
	for th := range s.Threads {
		wg.Go(func() {
			runtime.LockOSThread()
			f, err := newRawFlooder(s, src, dst, spoof, uint64(th))
			if err != nil {
				errs <- err
				return
			}
			defer unix.Close(f.fd)
			pace := newPacer(s.Rate, s.Threads)
			for time.Now().Before(deadline) {
				n := len(f.msgs)
				if s.Count > 0 {
					left := budget.Add(-int64(n))
					if left < 0 {
						n += int(left)
					}
					if n <= 0 {
						return
					}
				}
				f.fill(n)
				if k, err := mmsg(unix.SYS_SENDMMSG, f.fd, f.msgs[:n], 0); err == nil {
					sent.Add(uint64(k))
				}
				pace.wait(n)
			}
		})
	}
	wg.Wait()
	close(errs)
	return <-errs
}

// rawFlooder is one thread's raw socket and batch of packets.
type rawFlooder struct {
	fd     int
	syn    bool
	pkts   [][]byte
	iovs   []unix.Iovec
	msgs   []mmsghdr
	dst    unix.RawSockaddrInet4
	src    [4]byte
	spoof  netip.Prefix
	seq    uint64 // packets made so far by this thread
	stride uint64 // threads
	offset uint64 // this thread's first packet
}

const rawBatch = 64

func newRawFlooder(s genSpec, src, dst netip.Addr, spoof netip.Prefix, thread uint64) (*rawFlooder, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return nil, fmt.Errorf("raw socket: %w", err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_SNDBUFFORCE, 4<<20)
	f := &rawFlooder{fd: fd, syn: s.Kind == genSYNNew, spoof: spoof, stride: uint64(s.Threads), offset: thread}
	f.dst = unix.RawSockaddrInet4{Family: unix.AF_INET, Addr: dst.As4()}
	if src.Is4() {
		f.src = src.As4()
	}
	proto, l4 := byte(unix.IPPROTO_UDP), 8+s.Payload
	if f.syn {
		proto, l4 = unix.IPPROTO_TCP, 20
	}
	for range rawBatch {
		p := make([]byte, 20+l4)
		p[0], p[8], p[9] = 0x45, 64, proto
		binary.BigEndian.PutUint16(p[2:], uint16(len(p)))
		copy(p[12:16], f.src[:])
		d4 := dst.As4()
		copy(p[16:20], d4[:])
		binary.BigEndian.PutUint16(p[22:], uint16(s.Port))
		if f.syn {
			p[32] = 5 << 4 // data offset: 20 bytes
			p[33] = 0x02   // SYN
			binary.BigEndian.PutUint16(p[34:], 64240)
		} else {
			binary.BigEndian.PutUint16(p[24:], uint16(l4)) // checksum 0: none, valid for IPv4
		}
		f.pkts = append(f.pkts, p)
	}
	f.iovs = make([]unix.Iovec, rawBatch)
	f.msgs = make([]mmsghdr, rawBatch)
	for i := range f.msgs {
		f.iovs[i] = unix.Iovec{Base: &f.pkts[i][0]}
		f.iovs[i].SetLen(len(f.pkts[i]))
		f.msgs[i].hdr = unix.Msghdr{Name: (*byte)(unsafe.Pointer(&f.dst)), Namelen: unix.SizeofSockaddrInet4, Iov: &f.iovs[i], Iovlen: 1}
	}
	return f, nil
}

// fill stamps the next n packets with their source port (1024-65535 in
// turn) and, when spoofing, a source address: a walk through the prefix
// that visits every address once before it repeats.
func (f *rawFlooder) fill(n int) {
	for i := range n {
		k := f.seq*f.stride + f.offset
		f.seq++
		p := f.pkts[i]
		binary.BigEndian.PutUint16(p[20:], uint16(1024+k%64512))
		if f.spoof.IsValid() {
			bits := 32 - f.spoof.Bits()
			mask := uint64(1)<<bits - 1
			host := (k * 2654435761) & mask // odd multiplier: a permutation of the host part
			base := f.spoof.Masked().Addr().As4()
			binary.BigEndian.PutUint32(p[12:16], binary.BigEndian.Uint32(base[:])|uint32(host))
		}
		if f.syn {
			binary.BigEndian.PutUint32(p[24:], uint32(k*7919)) // sequence number
			p[36], p[37] = 0, 0
			binary.BigEndian.PutUint16(p[36:], tcpChecksum(p))
		}
	}
}

// tcpChecksum is the TCP checksum of the IPv4 packet p (header 20 bytes).
func tcpChecksum(p []byte) uint16 {
	seg := p[20:]
	sum := uint32(0)
	for i := 12; i < 20; i += 2 { // pseudo header: addresses
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	sum += unix.IPPROTO_TCP + uint32(len(seg))
	for i := 0; i+1 < len(seg); i += 2 {
		sum += uint32(binary.BigEndian.Uint16(seg[i:]))
	}
	if len(seg)%2 == 1 {
		sum += uint32(seg[len(seg)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	return ^uint16(sum)
}

// pacer holds one thread to its share of a packet rate.
type pacer struct {
	perPacket time.Duration
	next      time.Time
}

func newPacer(rate, threads int) *pacer {
	if rate <= 0 {
		return &pacer{}
	}
	return &pacer{perPacket: time.Duration(float64(time.Second) * float64(threads) / float64(rate)), next: time.Now()}
}

func (p *pacer) wait(n int) {
	if p.perPacket == 0 {
		return
	}
	p.next = p.next.Add(time.Duration(n) * p.perPacket)
	if d := time.Until(p.next); d > 0 {
		time.Sleep(d)
	} else if d < -100*time.Millisecond {
		p.next = time.Now() // fell behind: do not burst to catch up
	}
}

// --- the test side ---

// sinkProc is a running sink.
type sinkProc struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// startSink runs a sink in namespace ns counting udpPorts and tcpPorts.
func startSink(tb testing.TB, ns string, udpPorts, tcpPorts []int) *sinkProc {
	tb.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=load", "PFW_LOAD_ROLE=sink", "PFW_UDP="+ints(udpPorts), "PFW_TCP="+ints(tcpPorts))
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { in.Close(); cmd.Process.Kill(); cmd.Wait() })
	s := &sinkProc{cmd: cmd, in: in, out: bufio.NewReader(stdout)}
	if line, err := s.out.ReadString('\n'); err != nil || line != "ready\n" {
		tb.Fatalf("sink did not start: %q %v", line, err)
	}
	return s
}

// stats reads the sink's counters; tb is the test or benchmark asking.
func (s *sinkProc) stats(tb testing.TB) sinkStats {
	tb.Helper()
	if _, err := io.WriteString(s.in, "stats\n"); err != nil {
		tb.Fatalf("sink: %v", err)
	}
	line, err := s.out.ReadString('\n')
	var st sinkStats
	if err == nil {
		err = json.Unmarshal([]byte(line), &st)
	}
	if err != nil {
		tb.Fatalf("sink stats %q: %v", line, err)
	}
	return st
}

// genCmd is the command running spec in namespace ns.
func genCmd(ns string, spec genSpec) *exec.Cmd {
	b, _ := json.Marshal(spec)
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=load", "PFW_LOAD_ROLE=gen", "PFW_LOAD_SPEC="+string(b))
	cmd.Stderr = os.Stderr
	return cmd
}

// generate runs spec in namespace ns and returns its report.
func runGen(tb testing.TB, ns string, spec genSpec) genResult {
	tb.Helper()
	out, err := genCmd(ns, spec).Output()
	if err != nil {
		tb.Fatalf("load generator %s: %v\n%s", spec.Kind, err, out)
	}
	var res genResult
	if err := json.Unmarshal(out, &res); err != nil {
		tb.Fatalf("load generator output %q: %v", out, err)
	}
	if res.Err != "" {
		tb.Fatalf("load generator %s: %s", spec.Kind, res.Err)
	}
	return res
}

// goGen runs spec in the background; the returned func waits for it.
func goGen(tb testing.TB, ns string, spec genSpec) (wait func() genResult) {
	tb.Helper()
	done := make(chan genResult, 1)
	go func() {
		out, err := genCmd(ns, spec).Output()
		var res genResult
		if err != nil {
			res.Err = fmt.Sprintf("%v: %s", err, out)
		} else if err := json.Unmarshal(out, &res); err != nil {
			res.Err = fmt.Sprintf("output %q: %v", out, err)
		}
		done <- res
	}()
	return func() genResult {
		tb.Helper()
		res := <-done
		if res.Err != "" {
			tb.Fatalf("load generator %s: %s", spec.Kind, res.Err)
		}
		return res
	}
}
