package queue

import (
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/nft"
	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// The kernel tests run in a network namespace of their own: pfw's table
// queues new flows on lo, a sender and receivers in the namespace count
// what the verdicts let through.

const (
	testQueue    = 7
	testPortLow  = 40000
	testPortHigh = 40011 // ports 40006-40011 are blocked by the test policy
)

var nsCounter atomic.Int32

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("kernel test: needs root for a network namespace and NFQUEUE (run `sudo make test`)")
	}
	if _, err := exec.LookPath("nft"); err != nil {
		tb.Skip("kernel test: nft not installed (apt-get install nftables)")
	}
}

// testNS makes a namespace with lo up and pfw's table queueing every new
// flow on lo to testQueue, removed at cleanup.
func testNS(tb testing.TB) string {
	tb.Helper()
	requireRoot(tb)
	ns := fmt.Sprintf("pfwq-%d-%d", os.Getpid()%100000, nsCounter.Add(1))
	for _, args := range [][]string{{"netns", "add", ns}, {"netns", "exec", ns, "ip", "link", "set", "lo", "up"}} {
		if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
			tb.Fatalf("ip %v: %v\n%s", args, err, out)
		}
		if args[0] == "netns" && args[1] == "add" {
			tb.Cleanup(func() { exec.Command("ip", "netns", "del", ns).Run() })
		}
	}
	f, err := os.Open("/run/netns/" + ns)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	// Every datagram must reach the queue: the tests send one-way UDP.
	fw, err := nft.Open(nft.Config{QueueNum: testQueue, Ifaces: []string{"lo"}, NetNS: int(f.Fd()), QueueUnreplied: true})
	if err != nil {
		tb.Fatalf("install the queueing table: %v", err)
	}
	tb.Cleanup(func() { fw.Close() })
	return ns
}

// inNS runs fn on a thread switched into namespace ns; sockets fn makes
// stay in ns.
func inNS(tb testing.TB, ns string, fn func()) {
	tb.Helper()
	done := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // never unlocked: the thread dies with the goroutine
		err := errors.New("stopped by a t.Fatal or t.Skip (see above)")
		// Sent even when fn ends with runtime.Goexit (a t.Fatal on this
		// goroutine): the test would wait for ever otherwise.
		defer func() { done <- err }()
		target, oerr := os.Open("/run/netns/" + ns)
		if oerr != nil {
			err = oerr
			return
		}
		defer target.Close()
		if serr := unix.Setns(int(target.Fd()), unix.CLONE_NEWNET); serr != nil {
			err = fmt.Errorf("setns %s: %w", ns, serr)
			return
		}
		fn()
		err = nil
	}()
	if err := <-done; err != nil {
		tb.Fatal(err)
	}
}

// testEngine allows by default and blocks UDP to the upper half of the
// test ports.
func testEngine(tb testing.TB) *verdict.Engine {
	tb.Helper()
	cfg, err := rules.Parse([]byte(fmt.Sprintf(`{"default_policy": "allow",
		"rules": [{"name": "upper half", "action": "block", "protocol": "udp", "ports": ["%d-%d"]}],
		"rate_limit": {"max_connections": 0, "window_seconds": 10}}`, testPortLow+6, testPortHigh)))
	if err != nil {
		tb.Fatal(err)
	}
	return verdict.NewEngine(verdict.Compile(cfg))
}

// recorder is an Observer counting decisions per destination port.
type recorder struct {
	mu      sync.Mutex
	byPort  map[uint16][2]int // [allowed, blocked]
	total   atomic.Int64
	badData atomic.Int64 // payloads that did not decode as the test's packets
}

func (r *recorder) Decided(p *verdict.Packet, dir rules.Direction, d verdict.Decision, payload []byte) {
	defer r.total.Add(1)
	if p.Status != verdict.StatusOK || p.Proto != verdict.ProtoUDP || len(payload) == 0 {
		r.badData.Add(1)
	}
	if dir == rules.DirOut {
		return // the same datagram leaving the sender; outbound is allowed by default
	}
	r.mu.Lock()
	c := r.byPort[p.DstPort]
	if d.Blocked() {
		c[1]++
	} else {
		c[0]++
	}
	r.byPort[p.DstPort] = c
	r.mu.Unlock()
}

// counts is [allowed, blocked] for inbound packets to port.
func (r *recorder) counts(port uint16) [2]int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.byPort[port]
}

// udpSocket is a raw-syscall UDP socket on 127.0.0.1 (port 0: any).
func udpSocket(tb testing.TB, port int) int {
	tb.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_DGRAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		tb.Fatal(err)
	}
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, 32<<20)
	unix.SetsockoptTimeval(fd, unix.SOL_SOCKET, unix.SO_RCVTIMEO, &unix.Timeval{Usec: 100000})
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: port}); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { unix.Close(fd) })
	return fd
}

// lab is a namespace with open queues, receivers on every test port and
// a sender.
type lab struct {
	ns     string
	q      *Queues
	obs    *recorder
	sender int
	recv   map[int]int // port -> fd
}

func newLab(tb testing.TB, cfg Config) *lab {
	tb.Helper()
	ns := testNS(tb)
	l := &lab{ns: ns, obs: &recorder{byPort: map[uint16][2]int{}}, recv: map[int]int{}}
	cfg.QueueNum, cfg.QueueCount = testQueue, 1
	inNS(tb, ns, func() {
		var err error
		if l.q, err = Open(cfg, testEngine(tb), l.obs); err != nil {
			tb.Error(err)
			return
		}
		l.sender = udpSocket(tb, 0)
		for p := testPortLow; p <= testPortHigh; p++ {
			l.recv[p] = udpSocket(tb, p)
		}
	})
	if l.q == nil {
		tb.FailNow()
	}
	tb.Cleanup(func() { l.q.Close() })
	if err := l.q.Start(tb.Context()); err != nil {
		tb.Fatal(err)
	}
	return l
}

// send sends n datagrams, three in a row to each port in turn, so that
// batches hold runs of both verdicts. Every datagram passes the queue
// twice: leaving the sender (output) and reaching the receiver (input).
func (l *lab) send(tb testing.TB, n int) {
	tb.Helper()
	msg := []byte("pfw queue test")
	var to [testPortHigh - testPortLow + 1]unix.SockaddrInet4 // made once: Sendto would allocate each
	for i := range to {
		to[i] = unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}, Port: testPortLow + i}
	}
	for i := range n {
		for {
			err := unix.Sendto(l.sender, msg, 0, &to[(i/3)%len(to)])
			if err == nil {
				break
			}
			if err != unix.ENOBUFS && err != unix.EAGAIN {
				tb.Fatal(err)
			}
			time.Sleep(time.Millisecond)
		}
	}
}

// received drains every receiver and counts datagrams per port.
func (l *lab) received() map[int]int {
	got := map[int]int{}
	buf := make([]byte, 64)
	for p, fd := range l.recv {
		for {
			// recvfrom without an address: unix.Recvfrom would allocate one per datagram.
			_, _, errno := unix.Syscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)), unix.MSG_DONTWAIT, 0, 0)
			if errno != 0 {
				break
			}
			got[p]++
		}
	}
	return got
}

// waitSeen waits until the worker and the observer have handled n
// datagrams (2n decisions).
func (l *lab) waitSeen(tb testing.TB, n uint64) {
	tb.Helper()
	n *= 2
	deadline := time.Now().Add(10 * time.Second)
	for l.q.C.Seen.Load() < n || uint64(l.obs.total.Load()) < n {
		if time.Now().After(deadline) {
			tb.Fatalf("the worker decided %d of %d packets within 10 s", l.q.C.Seen.Load(), n)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestVerdictsReachTheKernel(t *testing.T) {
	for _, tc := range []struct {
		name  string
		batch int
	}{
		{"one packet per read", 1},
		{"batches", 64},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A 4096-packet queue holds the whole burst: nothing may be lost.
			l := newLab(t, Config{Batch: tc.batch, MaxQueueLen: 4096})
			const n = 3600 // 300 per port
			l.send(t, n)
			l.waitSeen(t, n)
			time.Sleep(50 * time.Millisecond) // accepted packets reach the receivers
			got := l.received()
			for p := testPortLow; p <= testPortHigh; p++ {
				want, blocked := n/12, 0
				if p >= testPortLow+6 {
					want, blocked = 0, n/12
				}
				if got[p] != want {
					t.Errorf("port %d: %d datagrams arrived, want %d", p, got[p], want)
				}
				if c := l.obs.counts(uint16(p)); c != [2]int{n/12 - blocked, blocked} {
					t.Errorf("port %d: observer saw %d allowed, %d blocked; want %d, %d", p, c[0], c[1], n/12-blocked, blocked)
				}
			}
			if a, d := l.q.C.Accepted.Load(), l.q.C.Dropped.Load(); a != n+n/2 || d != n/2 {
				t.Errorf("counters: %d accepted, %d dropped, want %d and %d", a, d, n+n/2, n/2)
			}
			if e := l.q.C.VerdictErrors.Load() + l.q.C.ReadErrors.Load(); e != 0 {
				t.Errorf("%d verdict or read errors", e)
			}
			if b := l.obs.badData.Load(); b != 0 {
				t.Errorf("%d packets reached the observer without their headers", b)
			}
		})
	}
}

// TestNoAllocationsPerPacket counts the allocations of the whole process
// while packets are decided: the worker must make none per packet.
func TestNoAllocationsPerPacket(t *testing.T) {
	l := newLab(t, Config{MaxQueueLen: 8192})
	l.send(t, 600) // warm up: the observer's map, the runtime's poller
	l.waitSeen(t, 600)
	const n = 6000
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	l.send(t, n)
	l.waitSeen(t, 600+n)
	runtime.ReadMemStats(&after)
	allocs := after.Mallocs - before.Mallocs
	t.Logf("%d allocations in the process while deciding %d packets", allocs, n)
	if allocs > n/100 {
		t.Errorf("%d allocations while deciding %d packets, want none per packet", allocs, n)
	}
}

func TestCloseStopsTheWorker(t *testing.T) {
	l := newLab(t, Config{})
	l.send(t, 30)
	l.waitSeen(t, 30)
	done := make(chan error)
	go func() { done <- l.q.Close() }()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Close: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("Close did not return within 5 s")
	}
	if err := l.q.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestOpenRefusesATakenQueue(t *testing.T) {
	l := newLab(t, Config{})
	var err error
	inNS(t, l.ns, func() {
		var q *Queues
		if q, err = Open(Config{QueueNum: testQueue}, testEngine(t), nil); err == nil {
			q.Close()
		}
	})
	if err == nil || !strings.Contains(err.Error(), "open nfqueue 7: bind") || !strings.Contains(err.Error(), "another process reads this queue") {
		t.Errorf("second Open of queue %d: %v, want a bind error saying the queue is taken", testQueue, err)
	}
}

// BenchmarkQueue measures a packet's trip kernel → worker → verdict →
// kernel through one queue on lo, the sender included, reading one packet
// per system call and in batches. Profile the worker with -cpuprofile.
func BenchmarkQueue(b *testing.B) {
	for _, batch := range []int{1, 64} {
		b.Run(fmt.Sprintf("batch=%d", batch), func(b *testing.B) {
			l := newLab(b, Config{MaxQueueLen: 65536, Batch: batch})
			b.ReportAllocs()
			b.ResetTimer()
			start := l.q.C.Seen.Load() / 2
			// In chunks, so the sender never runs a whole queue ahead of
			// the worker: an overflow would drop what the benchmark waits for.
			const chunk = 4096
			for sent := 0; sent < b.N; sent += chunk {
				n := min(chunk, b.N-sent)
				l.send(b, n)
				l.waitSeen(b, start+uint64(max(0, sent+n-chunk)))
				l.received() // keep the receivers' buffers from filling
			}
			l.waitSeen(b, start+uint64(b.N))
			b.StopTimer()
			l.received()
		})
	}
}
