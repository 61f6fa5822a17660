package main

// The end-to-end harness: a client and a firewall host in network
// namespaces made by the test, joined by a veth pair, pfwd (the real
// binary) running in the firewall namespace, and traffic sent by this test
// binary re-executed inside the namespaces. Everything is removed in
// t.Cleanup, even when the test fails.

import (
	"bufio"
	"bytes"
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
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/florianl/go-nflog/v2"
	"golang.org/x/sys/unix"
)

var (
	buildOnce sync.Once
	binDir    string
	buildErr  error
	nsCounter atomic.Int32
)

// binaries builds bin/pfwd and bin/fwctl once per test run.
func binaries(t *testing.T) (pfwd, fwctl string) {
	t.Helper()
	buildOnce.Do(func() {
		binDir, buildErr = os.MkdirTemp("", "pfw-e2e-bin-")
		if buildErr != nil {
			return
		}
		for _, cmd := range []string{"pfwd", "fwctl"} {
			out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "github.com/pfw/pfw/cmd/"+cmd).CombinedOutput()
			if err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		t.Fatal(buildErr)
	}
	return filepath.Join(binDir, "pfwd"), filepath.Join(binDir, "fwctl")
}

func TestMain(m *testing.M) {
	if mode := os.Getenv("PFW_E2E_HELPER"); mode != "" {
		os.Exit(helperMain(mode))
	}
	code := m.Run()
	if binDir != "" {
		os.RemoveAll(binDir)
	}
	os.Exit(code)
}

func requireKernel(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("end-to-end test: skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("end-to-end test: needs root to create network namespaces and run pfwd (run `sudo make test`)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("end-to-end test: %s not installed (apt-get install iproute2 nftables)", tool)
		}
	}
}

// lab is one client/firewall pair.
type lab struct {
	t          *testing.T
	client, fw string // namespace names
	clientIP   string // 10.x.y.2 on the client
	clientIP2  string // a second source address on the client
	fwIP       string
	clientIP6  string
	fwIP6      string
	dir        string // config, db, log, socket
	pfwdBin    string
	fwctlBin   string
	pfwd       *exec.Cmd
	pfwdDone   chan error
	logPath    string
	stderr     *os.File // pfwd's stderr when set (default: /dev/null)
}

func (l *lab) config() string { return filepath.Join(l.dir, "firewall_rules.json") }
func (l *lab) db() string     { return filepath.Join(l.dir, "firewall.db") }
func (l *lab) socket() string { return filepath.Join(l.dir, "pfwd.sock") }

// mustRun runs a command and fails the test with its output if it fails.
func mustRun(tb testing.TB, args ...string) string {
	tb.Helper()
	out, err := exec.Command(args[0], args[1:]...).CombinedOutput()
	if err != nil {
		tb.Fatalf("%s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return string(out)
}

// linkPair makes namespaces client and fw joined by a veth pair (eth0 on
// both sides), gives each side its addresses (IPv6 without duplicate
// address detection, so they work at once) and brings everything up. The
// caller removes the namespaces.
func linkPair(tb testing.TB, client, fw, veth string, clientAddrs, fwAddrs []string) {
	tb.Helper()
	mustRun(tb, "ip", "netns", "add", client)
	mustRun(tb, "ip", "netns", "add", fw)
	mustRun(tb, "ip", "link", "add", veth+"a", "netns", client, "type", "veth", "peer", "name", veth+"b", "netns", fw)
	cmds := [][]string{
		{client, "ip", "link", "set", "lo", "up"},
		{fw, "ip", "link", "set", "lo", "up"},
		{client, "ip", "link", "set", veth + "a", "name", "eth0"},
		{fw, "ip", "link", "set", veth + "b", "name", "eth0"},
	}
	for ns, addrs := range map[string][]string{client: clientAddrs, fw: fwAddrs} {
		for _, a := range addrs {
			c := []string{ns, "ip", "addr", "add", a, "dev", "eth0"}
			if strings.Contains(a, ":") {
				c = append(c, "nodad")
			}
			cmds = append(cmds, c)
		}
	}
	cmds = append(cmds, []string{client, "ip", "link", "set", "eth0", "up"}, []string{fw, "ip", "link", "set", "eth0", "up"})
	for _, c := range cmds {
		mustRun(tb, append([]string{"ip", "netns", "exec"}, c...)...)
	}
}

// newLab makes the namespaces and the veth pair.
func newLab(t *testing.T) *lab {
	t.Helper()
	requireKernel(t)
	pfwd, fwctl := binaries(t)
	n := int(nsCounter.Add(1))
	id := fmt.Sprintf("%d-%d", os.Getpid()%100000, n)
	sub := (os.Getpid()+n)%200 + 20
	l := &lab{
		t: t, client: "pfwc-" + id, fw: "pfwf-" + id,
		clientIP: fmt.Sprintf("10.213.%d.2", sub), clientIP2: fmt.Sprintf("10.213.%d.3", sub), fwIP: fmt.Sprintf("10.213.%d.1", sub),
		clientIP6: fmt.Sprintf("fd00:213:%d::2", sub), fwIP6: fmt.Sprintf("fd00:213:%d::1", sub),
		dir: t.TempDir(), pfwdBin: pfwd, fwctlBin: fwctl,
	}
	l.logPath = filepath.Join(l.dir, "firewall.log")
	t.Cleanup(l.destroy)
	linkPair(t, l.client, l.fw, "pfwv"+id,
		[]string{l.clientIP + "/24", l.clientIP2 + "/24", l.clientIP6 + "/64"},
		[]string{l.fwIP + "/24", l.fwIP6 + "/64"})
	return l
}

func (l *lab) destroy() {
	l.stopPfwd(syscall.SIGKILL)
	exec.Command("ip", "netns", "del", l.client).Run()
	exec.Command("ip", "netns", "del", l.fw).Run()
	if l.t.Failed() {
		if b, err := os.ReadFile(l.logPath); err == nil {
			l.t.Logf("pfwd log:\n%s", b)
		}
	}
}

// writeConfig writes the config file pfwd will read.
func (l *lab) writeConfig(doc string) {
	l.t.Helper()
	if err := os.WriteFile(l.config(), []byte(doc), 0o644); err != nil {
		l.t.Fatal(err)
	}
}

// startPfwd runs pfwd in the firewall namespace and waits until its
// control socket answers (the table is installed before that).
func (l *lab) startPfwd(extra ...string) {
	l.t.Helper()
	start := time.Now()
	defer func() { l.t.Logf("pfwd started in %v", time.Since(start).Round(time.Millisecond)) }()
	args := append([]string{"netns", "exec", l.fw, l.pfwdBin, "--config", l.config(), "--db", l.db(),
		"--socket", l.socket(), "--log-file", l.logPath, "--stats-every", "2s"}, extra...)
	cmd := exec.Command("ip", args...)
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=")
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if l.stderr != nil {
		cmd.Stderr = l.stderr
	}
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.pfwd = cmd
	l.pfwdDone = make(chan error, 1)
	go func() { l.pfwdDone <- cmd.Wait() }()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-l.pfwdDone:
			l.pfwd = nil
			log, _ := os.ReadFile(l.logPath)
			l.t.Fatalf("pfwd exited at start: %v\n%s", err, log)
		default:
		}
		if out, err := exec.Command(l.fwctlBin, "--socket", l.socket(), "status", "--json").Output(); err == nil && strings.Contains(string(out), `"running": true`) || err == nil {
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	l.t.Fatal("pfwd did not answer on its control socket within 15 s")
}

// stopPfwd signals pfwd and waits for it (10 s at most, then SIGKILL).
func (l *lab) stopPfwd(sig syscall.Signal) error {
	if l.pfwd == nil {
		return nil
	}
	start := time.Now()
	defer func() { l.t.Logf("pfwd stopped by %v in %v", sig, time.Since(start).Round(time.Millisecond)) }()
	// ip netns exec execs pfwd, so the process is pfwd itself.
	l.pfwd.Process.Signal(sig)
	var err error
	select {
	case err = <-l.pfwdDone:
	case <-time.After(10 * time.Second):
		l.pfwd.Process.Kill()
		err = <-l.pfwdDone
		err = errors.Join(errors.New("pfwd did not stop within 10 s"), err)
	}
	l.pfwd = nil
	return err
}

// stopClean stops pfwd with SIGTERM and fails the test unless it exits 0.
func (l *lab) stopClean() {
	l.t.Helper()
	if err := l.stopPfwd(syscall.SIGTERM); err != nil {
		l.t.Errorf("pfwd exit after SIGTERM: %v", err)
	}
}

// in runs a command in a namespace and returns its combined output.
func (l *lab) in(ns string, args ...string) (string, error) {
	out, err := exec.Command("ip", append([]string{"netns", "exec", ns}, args...)...).CombinedOutput()
	return string(out), err
}

func (l *lab) ruleset() string {
	out, err := l.in(l.fw, "nft", "list", "tables")
	if err != nil {
		l.t.Fatalf("nft list tables: %v\n%s", err, out)
	}
	return out
}

// fwctl runs bin/fwctl against this lab's files.
func (l *lab) fwctl(args ...string) (string, error) {
	full := append([]string{"--config", l.config(), "--db", l.db(), "--socket", l.socket()}, args...)
	out, err := exec.Command(l.fwctlBin, full...).CombinedOutput()
	return string(out), err
}

// serve starts the test binary as a TCP and UDP echo server in the
// firewall namespace, on every port listed, v4 and v6.
func (l *lab) serve(tcpPorts, udpPorts []int) { l.serveIn(l.fw, tcpPorts, udpPorts) }

// serveIn is serve in any namespace of the lab.
func (l *lab) serveIn(ns string, tcpPorts, udpPorts []int) {
	l.t.Helper()
	l.serveEnv(ns, "PFW_TCP="+ints(tcpPorts), "PFW_UDP="+ints(udpPorts))
}

// servePush runs push servers in the firewall namespace: they send on
// their own to whoever connects (TCP) or sends a datagram (UDP).
func (l *lab) servePush(tcpPorts, udpPorts []int) {
	l.t.Helper()
	l.serveEnv(l.fw, "PFW_PUSH_TCP="+ints(tcpPorts), "PFW_PUSH_UDP="+ints(udpPorts))
}

// serveEnv runs serveMain in ns with env saying what to serve.
func (l *lab) serveEnv(ns string, env ...string) {
	l.t.Helper()
	l.runHelper(ns, "serve", env...)
}

// runHelper runs the helper mode in ns and waits for its "ready".
func (l *lab) runHelper(ns, mode string, env ...string) {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(append(os.Environ(), "PFW_E2E_HELPER="+mode), env...)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil || strings.TrimSpace(line) != "ready" {
		l.t.Fatalf("echo server in %s did not start: %q %v", ns, line, err)
	}
}

func ints(xs []int) string {
	s := make([]string, len(xs))
	for i, x := range xs {
		s[i] = strconv.Itoa(x)
	}
	return strings.Join(s, ",")
}

// probe is one traffic attempt's outcome.
type probe struct {
	OK  int    `json:"ok"`
	Err string `json:"err,omitempty"`
}

// send makes count attempts of proto ("tcp", "udp", "icmp") from the
// client namespace to addr (host:port, or host for icmp), optionally from
// source address src, and returns how many got through.
func (l *lab) send(proto, src, addr string, count int, timeout time.Duration) int {
	l.t.Helper()
	return l.sendFrom(l.client, proto, src, addr, count, timeout)
}

// sendFrom is send from any namespace of the lab.
func (l *lab) sendFrom(ns, proto, src, addr string, count int, timeout time.Duration) int {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", ns, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=send", "PFW_PROTO="+proto, "PFW_SRC="+src, "PFW_ADDR="+addr,
		"PFW_COUNT="+strconv.Itoa(count), "PFW_TIMEOUT="+timeout.String())
	out, err := cmd.Output()
	if err != nil {
		l.t.Fatalf("traffic helper in %s: %v\n%s", ns, err, out)
	}
	var p probe
	if err := json.Unmarshal(out, &p); err != nil {
		l.t.Fatalf("traffic helper output %q: %v", out, err)
	}
	return p.OK
}

func (l *lab) expect(proto, addr string, want bool) {
	l.t.Helper()
	start := time.Now()
	defer func() {
		l.t.Logf("%s %s want %v took %v", proto, addr, want, time.Since(start).Round(time.Millisecond))
	}()
	// An attempt that should pass gets 3 s: the first IPv6 contact waits
	// for neighbour discovery. One that should fail is given up after 1 s.
	timeout := time.Second
	if want {
		timeout = 3 * time.Second
	}
	if got := l.send(proto, "", addr, 1, timeout) == 1; got != want {
		l.t.Errorf("%s to %s: got through = %v, want %v", proto, addr, got, want)
	}
}

// eventually retries cond for up to d (config changes apply within 1 s).
func eventually(d time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return true
		}
		if time.Now().After(deadline) {
			return false
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func hostPort(h string, p int) string { return net.JoinHostPort(h, strconv.Itoa(p)) }

// helperMain is the traffic helper, run inside a namespace.
func helperMain(mode string) int {
	switch mode {
	case "serve":
		return serveMain()
	case "send":
		return sendMain()
	case "load":
		return loadMain() // loadgen_test.go
	case "feeds":
		return feedServeMain() // intel_e2e_test.go
	case "scrape":
		return scrapeMain() // metrics_e2e_test.go
	case "hold":
		return holdMain()
	case "stream":
		return streamMain()
	case "nflog":
		return nflogMain()
	}
	fmt.Fprintln(os.Stderr, "unknown helper mode", mode)
	return 2
}

func splitInts(s string) []int {
	var out []int
	for _, f := range strings.Split(s, ",") {
		if n, err := strconv.Atoi(f); err == nil {
			out = append(out, n)
		}
	}
	return out
}

func serveMain() int {
	for _, p := range splitInts(os.Getenv("PFW_TCP")) {
		err := serveTCP(p, func(c net.Conn) {
			buf := make([]byte, 64)
			for {
				c.SetDeadline(time.Now().Add(30 * time.Second))
				n, err := c.Read(buf)
				if err != nil {
					return
				}
				if _, err := c.Write(buf[:n]); err != nil {
					return
				}
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// Abort servers reset each connection they accept (SO_LINGER 0): a
	// server that aborts, which leaves the client's tuple reusable in
	// conntrack's old entry.
	for _, p := range splitInts(os.Getenv("PFW_ABORT_TCP")) {
		err := serveTCP(p, func(c net.Conn) { c.(*net.TCPConn).SetLinger(0) })
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	// Push servers speak on their own: a byte every 50 ms to each TCP
	// client, a datagram every 50 ms (for a minute) to each UDP sender.
	for _, p := range splitInts(os.Getenv("PFW_PUSH_TCP")) {
		err := serveTCP(p, func(c net.Conn) {
			for {
				c.SetWriteDeadline(time.Now().Add(5 * time.Second))
				if _, err := c.Write([]byte{'x'}); err != nil {
					return
				}
				time.Sleep(50 * time.Millisecond)
			}
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	for _, p := range splitInts(os.Getenv("PFW_PUSH_UDP")) {
		pushing := map[string]bool{} // the one reading goroutine's
		err := serveUDP(p, func(pc net.PacketConn, _ []byte, from net.Addr) {
			if pushing[from.String()] {
				return
			}
			pushing[from.String()] = true
			go func() {
				for range 1200 {
					pc.WriteTo([]byte("x"), from)
					time.Sleep(50 * time.Millisecond)
				}
			}()
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	for _, p := range splitInts(os.Getenv("PFW_UDP")) {
		err := serveUDP(p, func(pc net.PacketConn, data []byte, from net.Addr) {
			if bytes.HasPrefix(data, []byte(sinkPayload)) {
				return // one-way traffic: never answered
			}
			pc.WriteTo(data, from)
		})
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			return 1
		}
	}
	fmt.Println("ready")
	select {}
}

// serveUDP listens on port (v4 and v6) and calls handle for every
// datagram, from one goroutine.
func serveUDP(port int, handle func(pc net.PacketConn, data []byte, from net.Addr)) error {
	pc, err := net.ListenPacket("udp", fmt.Sprintf("[::]:%d", port))
	if err != nil {
		return err
	}
	go func() {
		buf := make([]byte, 1500)
		for {
			n, from, err := pc.ReadFrom(buf)
			if err != nil {
				return
			}
			handle(pc, buf[:n], from)
		}
	}()
	return nil
}

// serveTCP listens on port (v4 and v6) and runs handle for every
// connection in its own goroutine, closing it afterwards.
func serveTCP(port int, handle func(net.Conn)) error {
	ln, err := net.Listen("tcp", fmt.Sprintf("[::]:%d", port))
	if err != nil {
		return err
	}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				handle(c)
			}()
		}
	}()
	return nil
}

// connectFromOnePort connects over TCP from source port 41000, so that
// every connection reuses one tuple. With echo it checks an echo, then
// closes with a reset, so the next connection reuses the tuple at once
// (conntrack drops the closed entry and sees the next SYN as new);
// without, it waits for the server to end the connection (an abort
// server resets it at once, leaving the tuple in its established entry).
func connectFromOnePort(src, addr string, timeout time.Duration, echo bool) error {
	d := net.Dialer{Timeout: timeout, LocalAddr: &net.TCPAddr{IP: net.ParseIP(src), Port: 41000},
		Control: func(_, _ string, c syscall.RawConn) error {
			return c.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEADDR, 1) })
		}}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return err
	}
	if echo {
		c.(*net.TCPConn).SetLinger(0) // close with a reset
		return echoOn(c, timeout)
	}
	defer c.Close()
	c.SetReadDeadline(time.Now().Add(timeout))
	c.Read(make([]byte, 1)) // the reset
	return nil
}

func sendMain() int {
	proto, src, addr := os.Getenv("PFW_PROTO"), os.Getenv("PFW_SRC"), os.Getenv("PFW_ADDR")
	count, _ := strconv.Atoi(os.Getenv("PFW_COUNT"))
	timeout, _ := time.ParseDuration(os.Getenv("PFW_TIMEOUT"))
	if proto == "udp-oneway" {
		return sendOneWay(src, addr, count)
	}
	ok := 0
	var lastErr error
	for range count {
		var err error
		switch proto {
		case "tcp", "udp", "tcp-padded6", "tcp-padded6-long":
			err = echo(proto, src, addr, timeout)
		case "tcp-sameport", "tcp-sameport-connect":
			err = connectFromOnePort(src, addr, timeout, proto == "tcp-sameport")
		case "udp-mapped6":
			err = echoMapped6(src, addr, timeout)
		case "icmp":
			var out []byte
			out, err = exec.Command("ping", "-c", "1", "-W", strconv.Itoa(max(1, int(timeout.Seconds()))), addr).CombinedOutput()
			if err != nil {
				err = fmt.Errorf("%v: %s", err, out)
			}
		default:
			err = fmt.Errorf("unknown proto %q", proto)
		}
		if err == nil {
			ok++
		} else {
			lastErr = err
		}
	}
	p := probe{OK: ok}
	if lastErr != nil {
		p.Err = lastErr.Error()
	}
	json.NewEncoder(os.Stdout).Encode(p)
	return 0
}

// sinkPayload starts a datagram the lab's UDP servers do not answer.
const sinkPayload = "sink\n"

// sendOneWay sends count datagrams, 2 ms apart, from one socket: one UDP
// flow that no reply ever answers (syslog, statsd). OK counts the sends.
func sendOneWay(src, addr string, count int) int {
	var laddr *net.UDPAddr
	if src != "" {
		laddr = &net.UDPAddr{IP: net.ParseIP(src)}
	}
	raddr, err := net.ResolveUDPAddr("udp", addr)
	var p probe
	if err == nil {
		// Unconnected, so the ICMP errors a closed port sends back do
		// not fail the next write.
		var c *net.UDPConn
		if c, err = net.ListenUDP("udp", laddr); err == nil {
			for range count {
				if _, werr := c.WriteToUDP([]byte(sinkPayload), raddr); werr == nil {
					p.OK++
				}
				time.Sleep(2 * time.Millisecond)
			}
			c.Close()
		}
	}
	if err != nil {
		p.Err = err.Error()
	}
	json.NewEncoder(os.Stdout).Encode(p)
	return 0
}

// paddedDstOpts is an IPv6 Destination Options header of size bytes (a
// multiple of 8) filled with options the receiver skips (type 0x1e: the
// kernel refuses PadN longer than 7 bytes), at most 255 bytes each.
func paddedDstOpts(size int) []byte {
	opts := make([]byte, size)
	opts[1] = byte(size/8 - 1)
	for i := 2; i < size; {
		n := min(size-i-2, 255)
		opts[i], opts[i+1] = 0x1e, byte(n)
		i += 2 + n
	}
	return opts
}

// echo sends a line and waits for it to come back. proto "tcp-padded6" is
// TCP over IPv6 with a 248-byte Destination Options header on every
// packet, whose TCP header still lies inside NFQUEUE's copy range;
// "tcp-padded6-long" has a 1016-byte one, which puts it past the range.
func echo(proto, src, addr string, timeout time.Duration) error {
	d := net.Dialer{Timeout: timeout}
	if pad := map[string]int{"tcp-padded6": 248, "tcp-padded6-long": 1016}[proto]; pad > 0 {
		proto = "tcp6"
		opts := paddedDstOpts(pad)
		d.Control = func(_, _ string, c syscall.RawConn) error {
			var serr error
			if err := c.Control(func(fd uintptr) {
				serr = unix.SetsockoptString(int(fd), unix.IPPROTO_IPV6, unix.IPV6_DSTOPTS, string(opts))
			}); err != nil {
				return err
			}
			return serr
		}
	}
	if src != "" {
		ip := net.ParseIP(src)
		if strings.HasPrefix(proto, "tcp") {
			d.LocalAddr = &net.TCPAddr{IP: ip}
		} else {
			d.LocalAddr = &net.UDPAddr{IP: ip}
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), timeout)
	defer cancel()
	c, err := d.DialContext(ctx, proto, addr)
	if err != nil {
		return err
	}
	return echoOn(c, timeout)
}

// echoOn sends a line on c and checks it comes back, then closes c.
func echoOn(c net.Conn, timeout time.Duration) error {
	defer c.Close()
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write([]byte("pfw\n")); err != nil {
		return err
	}
	buf := make([]byte, 16)
	n, err := c.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != "pfw\n" {
		return fmt.Errorf("echo: got %q", buf[:n])
	}
	return nil
}

// echoMapped6 sends a UDP line to addr (an IPv6 host and port) in an IPv6
// packet whose source is src4, an IPv4 address of this namespace, in its
// IPv4-mapped form (::ffff:a.b.c.d). A dual-stack server takes the sender
// for src4 and answers over IPv4, to the port this waits on.
func echoMapped6(src4, addr string, timeout time.Duration) error {
	src, err := netip.ParseAddr(src4)
	if err != nil || !src.Is4() {
		return fmt.Errorf("udp-mapped6: source %q is not IPv4", src4)
	}
	dst, err := netip.ParseAddrPort(addr)
	if err != nil || !dst.Addr().Is6() {
		return fmt.Errorf("udp-mapped6: destination %q is not IPv6", addr)
	}
	answer, err := net.ListenUDP("udp4", &net.UDPAddr{IP: src.AsSlice()})
	if err != nil {
		return err
	}
	defer answer.Close()
	sport := uint16(answer.LocalAddr().(*net.UDPAddr).Port)
	fd, err := unix.Socket(unix.AF_INET6, unix.SOCK_RAW|unix.SOCK_CLOEXEC, unix.IPPROTO_RAW)
	if err != nil {
		return fmt.Errorf("udp-mapped6: raw socket: %w", err)
	}
	defer unix.Close(fd)
	payload := []byte("pfw\n")
	pkt := make([]byte, 40+8+len(payload))
	pkt[0], pkt[6], pkt[7] = 0x60, unix.IPPROTO_UDP, 64
	binary.BigEndian.PutUint16(pkt[4:], uint16(8+len(payload)))
	mapped, d16 := netip.AddrFrom16(src.As16()).As16(), dst.Addr().As16()
	copy(pkt[8:24], mapped[:])
	copy(pkt[24:40], d16[:])
	binary.BigEndian.PutUint16(pkt[40:], sport)
	binary.BigEndian.PutUint16(pkt[42:], dst.Port())
	binary.BigEndian.PutUint16(pkt[44:], uint16(8+len(payload)))
	copy(pkt[48:], payload)
	binary.BigEndian.PutUint16(pkt[46:], udp6Checksum(pkt))
	if err := unix.Sendto(fd, pkt, 0, &unix.SockaddrInet6{Addr: d16}); err != nil {
		return fmt.Errorf("udp-mapped6: send: %w", err)
	}
	answer.SetReadDeadline(time.Now().Add(timeout))
	buf := make([]byte, 16)
	n, err := answer.Read(buf)
	if err != nil {
		return err
	}
	if string(buf[:n]) != string(payload) {
		return fmt.Errorf("udp-mapped6: got %q", buf[:n])
	}
	return nil
}

// udp6Checksum is the UDP checksum of the IPv6 packet p (no extension
// headers), which IPv6 makes mandatory.
func udp6Checksum(p []byte) uint16 {
	seg := p[40:]
	sum := uint32(unix.IPPROTO_UDP) + uint32(len(seg))
	for i := 8; i < 40; i += 2 { // source and destination addresses
		sum += uint32(binary.BigEndian.Uint16(p[i:]))
	}
	for i := 0; i+1 < len(seg); i += 2 {
		if i != 6 { // the checksum field itself
			sum += uint32(binary.BigEndian.Uint16(seg[i:]))
		}
	}
	if len(seg)%2 == 1 {
		sum += uint32(seg[len(seg)-1]) << 8
	}
	for sum > 0xffff {
		sum = sum>>16 + sum&0xffff
	}
	if c := ^uint16(sum); c != 0 {
		return c
	}
	return 0xffff
}

// heldConn is a TCP connection kept open across a rule change.
type heldConn struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Reader
}

// hold opens a TCP connection from the client to addr and keeps it.
func (l *lab) hold(addr string) *heldConn {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.client, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=hold", "PFW_ADDR="+addr)
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	h := &heldConn{cmd: cmd, in: in, out: bufio.NewReader(stdout)}
	if !h.ping() {
		l.t.Fatalf("held connection to %s did not open", addr)
	}
	return h
}

// ping echoes one line over the held connection (1 s timeout).
func (h *heldConn) ping() bool {
	fmt.Fprintln(h.in, "ping")
	line, err := h.out.ReadString('\n')
	return err == nil && strings.TrimSpace(line) == "ok"
}

func holdMain() int {
	c, err := net.DialTimeout("tcp", os.Getenv("PFW_ADDR"), time.Second)
	if err != nil {
		fmt.Println("dial:", err)
	}
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		if c == nil {
			fmt.Println("no connection")
			continue
		}
		c.SetDeadline(time.Now().Add(time.Second))
		buf := make([]byte, 16)
		_, err := c.Write([]byte("pfw\n"))
		if err == nil {
			_, err = io.ReadFull(c, buf[:4])
		}
		if err != nil {
			fmt.Println("error:", err)
			continue
		}
		fmt.Println("ok")
	}
	return 0
}

// stream is a client of a push server (serveMain's PFW_PUSH_*): it counts
// what the server sends on its own.
type stream struct {
	in  io.WriteCloser
	out *bufio.Reader
}

// streamFrom connects from the client namespace to a push server at addr
// over proto ("tcp" or "udp") and waits until the server's data flows.
func (l *lab) streamFrom(proto, addr string) *stream {
	l.t.Helper()
	cmd := exec.Command("ip", "netns", "exec", l.client, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=stream", "PFW_PROTO="+proto, "PFW_ADDR="+addr)
	in, _ := cmd.StdinPipe()
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	l.t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	s := &stream{in: in, out: bufio.NewReader(stdout)}
	if !eventually(3*time.Second, func() bool { return s.count() > 0 }) {
		l.t.Fatalf("no data from the push server at %s (%s)", addr, proto)
	}
	return s
}

// count is how many bytes (TCP) or datagrams (UDP) arrived since the last
// count.
func (s *stream) count() int {
	fmt.Fprintln(s.in, "count")
	line, err := s.out.ReadString('\n')
	if err != nil {
		return -1
	}
	n, _ := strconv.Atoi(strings.TrimSpace(line))
	return n
}

func streamMain() int {
	proto, addr := os.Getenv("PFW_PROTO"), os.Getenv("PFW_ADDR")
	c, err := net.DialTimeout(proto, addr, 2*time.Second)
	if err != nil {
		fmt.Fprintln(os.Stderr, "dial:", err)
		return 1
	}
	if proto == "udp" {
		c.Write([]byte("push\n")) // the server's cue
	}
	var n atomic.Int64
	go func() {
		buf := make([]byte, 1500)
		for {
			k, err := c.Read(buf)
			if err != nil {
				if proto == "tcp" {
					return
				}
				continue // an ICMP error read back on the UDP socket
			}
			if proto == "tcp" {
				n.Add(int64(k))
			} else {
				n.Add(1)
			}
		}
	}()
	in := bufio.NewScanner(os.Stdin)
	for in.Scan() {
		fmt.Println(n.Swap(0))
	}
	return 0
}

// holdNFLOG binds NFLOG group in the firewall namespace, as another
// logging program would, until the test ends.
func (l *lab) holdNFLOG(group int) {
	l.t.Helper()
	l.runHelper(l.fw, "nflog", "PFW_GROUP="+strconv.Itoa(group))
}

func nflogMain() int {
	group, _ := strconv.Atoi(os.Getenv("PFW_GROUP"))
	nl, err := nflog.Open(&nflog.Config{Group: uint16(group), Copymode: nflog.CopyPacket})
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	err = nl.RegisterWithErrorFunc(context.Background(),
		func(nflog.Attribute) int { return 0 }, func(error) int { return 0 })
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Println("ready")
	select {}
}
