package main

// BenchmarkLoad is `make bench`'s load benchmark: the same traffic through
// two identical client/host namespace pairs, one with pfwd and one without
// a firewall, in one run, each figure printed beside its baseline; the
// new-flow flood also goes through a third pair holding pfwd's ruleset
// without pfwd, the ceiling of that figure, and a fourth where a naive
// go-nfqueue loop reads the queue, the design the goal is set against.
// Run it as root with -benchtime=1x (each ratio is the median of benchRounds rounds of a few
// seconds each; the whole takes about four minutes):
//
//	go test -run '^$' -bench Load -benchtime=1x ./cmd/pfwd/

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
	"unicode/utf8"

	"github.com/mdlayher/netlink"
	"github.com/ti-mo/conntrack"

	"github.com/pfw/pfw/store"
)

// Ports of the sink; the threat feeds; how long one measurement lasts and
// how many alternating baseline/pfwd rounds make a figure.
const (
	benchTCPPort     = 5201
	benchUDPPort     = 5202
	benchUDPFlood    = 5203
	benchRealFeed    = "../../testdata/feeds/feodo.ipset" // Feodo Tracker's list, as FireHOL republishes it
	benchRealEntries = 235
	benchFeedSize    = 100_000 // the stress feed
	benchPhase       = 3 * time.Second
	benchRounds      = 5
	benchRateLimit   = 100 // the default config's connections per 10 s, for the rate-limited flood
	// benchSpoofNet is where the new-flow flood's sources come from: with
	// the generator's walk of addresses and ports, 33 M distinct flows
	// before one repeats. One source has only 64,512 ports, and a flow
	// pfwd let through stays in the kernel (ct status confirmed): a flood
	// that repeated them would no longer be new flows.
	benchSpoofNet = "172.24.0.0/13"
)

// benchNet is one client/host pair of the benchmark: the client namespace
// runs the generator, the host namespace the sink and, for the guarded
// pair, pfwd.
type benchNet struct {
	client, fw          string
	clientIP, clientIP2 string
	fwIP                string
	dir                 string
	sink                *sinkProc
	pfwd                *exec.Cmd
	pfwdDone            chan error
	feed                string // the threat feed in force, once it is the stress feed
}

func requireRoot(tb testing.TB) {
	tb.Helper()
	if os.Geteuid() != 0 {
		tb.Skip("load benchmark: needs root to create network namespaces and run pfwd (run `sudo make bench`)")
	}
	for _, tool := range []string{"ip", "nft"} {
		if _, err := exec.LookPath(tool); err != nil {
			tb.Skipf("load benchmark: %s not installed (apt-get install iproute2 nftables)", tool)
		}
	}
}

// benchBinaries builds pfwd and fwctl once, sharing the e2e tests' build.
func benchBinaries(tb testing.TB) (pfwd, fwctl string) {
	tb.Helper()
	buildOnce.Do(func() {
		if binDir, buildErr = os.MkdirTemp("", "pfw-e2e-bin-"); buildErr != nil {
			return
		}
		for _, cmd := range []string{"pfwd", "fwctl"} {
			if out, err := exec.Command("go", "build", "-o", filepath.Join(binDir, cmd), "github.com/pfw/pfw/cmd/"+cmd).CombinedOutput(); err != nil {
				buildErr = fmt.Errorf("go build %s: %v\n%s", cmd, err, out)
				return
			}
		}
	})
	if buildErr != nil {
		tb.Fatal(buildErr)
	}
	return filepath.Join(binDir, "pfwd"), filepath.Join(binDir, "fwctl")
}

// mustRun runs a command and fails tb with its output when it fails.
// newBenchNet makes a namespace pair joined by a veth, removed at cleanup.
func newBenchNet(tb testing.TB, tag string, subnet int) *benchNet {
	tb.Helper()
	id := fmt.Sprintf("%s-%d", tag, os.Getpid()%100000)
	n := &benchNet{
		client: "pfwbc-" + id, fw: "pfwbf-" + id,
		clientIP: fmt.Sprintf("10.%d.%d.2", 216+subnet/256, subnet%256), clientIP2: fmt.Sprintf("10.%d.%d.3", 216+subnet/256, subnet%256),
		fwIP: fmt.Sprintf("10.%d.%d.1", 216+subnet/256, subnet%256), dir: tb.TempDir(),
	}
	tb.Cleanup(func() {
		n.stopPfwd()
		exec.Command("ip", "netns", "del", n.client).Run()
		exec.Command("ip", "netns", "del", n.fw).Run()
	})
	linkPair(tb, n.client, n.fw, "pfwb"+tag[:1]+strconv.Itoa(os.Getpid()%100000),
		[]string{n.clientIP + "/24", n.clientIP2 + "/24"}, []string{n.fwIP + "/24"})
	// The spoofed sources only need to arrive (the sink never answers).
	mustRun(tb, "ip", "netns", "exec", n.fw, "sysctl", "-qw", "net.ipv4.conf.all.rp_filter=0", "net.ipv4.conf.eth0.rp_filter=0")
	// The benchmark speaks IPv4 only. Without IPv6 the fresh links send no
	// MLD reports or router solicitations, which pfwd would decide and
	// count among the flows it let through (the rate-limited figure).
	for _, ns := range []string{n.client, n.fw} {
		mustRun(tb, "ip", "netns", "exec", ns, "sysctl", "-qw", "net.ipv6.conf.all.disable_ipv6=1", "net.ipv6.conf.default.disable_ipv6=1")
	}
	n.sink = startSink(tb, n.fw, []int{benchUDPPort, benchUDPFlood}, []int{benchTCPPort})
	return n
}

// flushConntrack empties the host namespace's conntrack table, so that a
// flood with spoofed sources meets no flow of the round before it.
func (n *benchNet) flushConntrack(tb testing.TB) {
	tb.Helper()
	f, err := os.Open("/var/run/netns/" + n.fw)
	if err != nil {
		tb.Fatal(err)
	}
	defer f.Close()
	c, err := conntrack.Dial(&netlink.Config{NetNS: int(f.Fd())})
	if err != nil {
		tb.Fatalf("conntrack in %s: %v", n.fw, err)
	}
	defer c.Close()
	if err := c.Flush(); err != nil {
		tb.Fatalf("flush conntrack in %s: %v", n.fw, err)
	}
}

// respec is spec, written for n's addresses, with to's addresses instead.
func (n *benchNet) respec(spec genSpec, to *benchNet) genSpec {
	r := strings.NewReplacer(n.fwIP, to.fwIP, n.clientIP2, to.clientIP2, n.clientIP, to.clientIP)
	spec.Dst, spec.Src = r.Replace(spec.Dst), r.Replace(spec.Src)
	return spec
}

// The config has a directory of its own, as by default (/etc/personal-
// firewall, the database in /var/lib/personal-firewall): pfwd watches the
// config's directory, and the database's writes beside it woke the
// watcher, a tenth of pfwd's CPU in the rate-limited flood, which a
// default install does not pay.
func (n *benchNet) config() string { return filepath.Join(n.dir, "etc", "firewall_rules.json") }
func (n *benchNet) db() string     { return filepath.Join(n.dir, "firewall.db") }
func (n *benchNet) socket() string { return filepath.Join(n.dir, "pfwd.sock") }

// startPfwd runs pfwd with the default shape of config (allow by default,
// the contract's blocked ports), the second client address blacklisted and
// the rate limit off; its threat feed is the real Feodo Tracker list the
// default config subscribes to (benchRealFeed, 235 entries). It waits until
// the feed is in force.
func (n *benchNet) startPfwd(tb testing.TB, pfwdBin, fwctlBin string) {
	tb.Helper()
	real, err := filepath.Abs(benchRealFeed)
	if err != nil {
		tb.Fatal(err)
	}
	n.writeConfig(tb, real, 0)
	cmd := exec.Command("ip", "netns", "exec", n.fw, pfwdBin, "--config", n.config(), "--db", n.db(),
		"--socket", n.socket(), "--log-file", filepath.Join(n.dir, "firewall.log"))
	cmd.Env = append(os.Environ(), "JOURNAL_STREAM=")
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	n.pfwd, n.pfwdDone = cmd, make(chan error, 1)
	go func() { n.pfwdDone <- cmd.Wait() }()
	n.waitFeed(tb, fwctlBin, benchRealEntries)
}

// writeConfig writes pfwd's config with feed as its one threat feed and
// maxConn new connections per 10 s and source (0: no limit), atomically
// (pfwd watches the file and reloads what it finds).
func (n *benchNet) writeConfig(tb testing.TB, feed string, maxConn int) {
	tb.Helper()
	cfg := fmt.Sprintf(`{
  "default_policy": "allow",
  "rules": [{"name": "Block Telnet and SMB", "action": "block", "protocol": "tcp", "ports": [23, 135, 139, 445, 3389]}],
  "whitelist_ips": ["127.0.0.1", "::1"],
  "blacklist_ips": [%q],
  "rate_limit": {"max_connections": %d, "window_seconds": 10},
  "allowed_sample_rate": 0.01,
  "threat_feeds": [{"name": "Bench feed", "url": "file://%s", "interval": "1h", "threat_level": "high"}]
}`, n.clientIP2, maxConn, feed)
	if err := os.MkdirAll(filepath.Dir(n.config()), 0o755); err != nil {
		tb.Fatal(err)
	}
	tmp := n.config() + ".tmp"
	if err := os.WriteFile(tmp, []byte(cfg), 0o644); err != nil {
		tb.Fatal(err)
	}
	if err := os.Rename(tmp, n.config()); err != nil {
		tb.Fatal(err)
	}
}

// useStressFeed switches the feed to benchFeedSize addresses scattered over
// 20.0.0.0/8 (never contacted) and waits until they are in force.
func (n *benchNet) useStressFeed(tb testing.TB, fwctlBin string) {
	tb.Helper()
	feed := filepath.Join(n.dir, "stress-feed.txt")
	var sb strings.Builder
	sb.WriteString("# pfw load benchmark: addresses scattered over 20.0.0.0/8, never contacted\n")
	for i := range benchFeedSize {
		v := 20<<24 + i*97
		fmt.Fprintf(&sb, "%d.%d.%d.%d\n", v>>24, v>>16&255, v>>8&255, v&255)
	}
	if err := os.WriteFile(feed, []byte(sb.String()), 0o644); err != nil {
		tb.Fatal(err)
	}
	n.feed = feed
	n.writeConfig(tb, feed, 0)
	n.waitFeed(tb, fwctlBin, benchFeedSize)
}

// limitRate turns the rate limit on (maxConn per 10 s) or off (0) and
// waits until pfwd has reloaded.
func (n *benchNet) limitRate(tb testing.TB, fwctlBin string, maxConn int) {
	tb.Helper()
	before, err := pfwdStatus(fwctlBin, n.socket())
	if err != nil {
		tb.Fatal(err)
	}
	n.writeConfig(tb, n.feed, maxConn)
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if st, err := pfwdStatus(fwctlBin, n.socket()); err == nil && st.ConfigLoadedAt.After(before.ConfigLoadedAt) {
			// What a reload leaves running (the conntrack walk that cuts
			// flows the new rules block, collecting the old config) is
			// the change's cost, not the next phase's.
			time.Sleep(time.Second)
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	tb.Fatal("pfwd did not reload its config within 10 s")
}

// waitFeed waits until pfwd's feed holds entries, in the kernel and the
// pipeline and in the database: the save of 100,000 entries, which follows
// the kernel's, costs pfwd about half a second of CPU and garbage to
// collect, and a phase measured while it ran counted it as the flood's
// (the rate-limited flood's CPU read 2-7 % by whether it did).
func (n *benchNet) waitFeed(tb testing.TB, fwctlBin string, entries int) {
	tb.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for time.Now().Before(deadline) {
		select {
		case err := <-n.pfwdDone:
			n.pfwd = nil
			log, _ := os.ReadFile(filepath.Join(n.dir, "firewall.log"))
			tb.Fatalf("pfwd exited: %v\n%s", err, log)
		default:
		}
		if st, err := pfwdStatus(fwctlBin, n.socket()); err == nil && len(st.Feeds) == 1 && st.Feeds[0].Entries == entries &&
			n.savedThreats() == entries {
			time.Sleep(time.Second) // the garbage of the change, collected
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	tb.Fatalf("pfwd did not load the %d-entry feed within 30 s", entries)
}

// savedThreats is how many threat entries pfwd's database holds (-1 when
// it cannot be read).
func (n *benchNet) savedThreats() int {
	s, err := store.OpenReader(n.db())
	if err != nil {
		return -1
	}
	defer s.Close()
	threats, err := s.LoadThreats(context.Background())
	if err != nil {
		return -1
	}
	return len(threats)
}

func (n *benchNet) stopPfwd() {
	if n.pfwd == nil {
		return
	}
	n.pfwd.Process.Signal(syscall.SIGTERM)
	select {
	case <-n.pfwdDone:
	case <-time.After(10 * time.Second):
		n.pfwd.Process.Kill()
		<-n.pfwdDone
	}
	n.pfwd = nil
}

// statusDoc is the part of `fwctl status --json` the load tests read.
type statusDoc struct {
	PID            int       `json:"pid"`
	ConfigLoadedAt time.Time `json:"config_loaded_at"`
	Packets        struct {
		Seen, Allowed, Blocked uint64
		KernelBlocked          uint64 `json:"kernel_blocked"`
		QueueDrops             uint64 `json:"queue_drops"`
	} `json:"packets"`
	LogRows struct {
		Written, Suppressed uint64
	} `json:"log_rows"`
	RateLimiter struct {
		Tracked, Capacity int
		KernelHeld        int    `json:"kernel_held"`
		KernelDropped     uint64 `json:"kernel_dropped"`
	} `json:"rate_limiter"`
	Feeds []struct {
		Name    string `json:"name"`
		Entries int    `json:"entries"`
	} `json:"feeds"`
}

func pfwdStatus(fwctlBin, socket string) (statusDoc, error) {
	var st statusDoc
	out, err := exec.Command(fwctlBin, "--socket", socket, "status", "--json").Output()
	if err != nil {
		return st, fmt.Errorf("fwctl status: %w", err)
	}
	err = json.Unmarshal(out, &st)
	return st, err
}

// procCPU is the CPU time pid has used (user + system).
func procCPU(tb testing.TB, pid int) time.Duration {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		tb.Fatal(err)
	}
	// Fields after the command name, which may hold spaces: utime and
	// stime are the 12th and 13th (fields 14 and 15 of proc(5)).
	f := strings.Fields(string(b[strings.LastIndexByte(string(b), ')')+2:]))
	ut, _ := strconv.ParseUint(f[11], 10, 64)
	st, _ := strconv.ParseUint(f[12], 10, 64)
	const clkTck = 100 // USER_HZ, fixed at 100 in the Linux ABI
	return time.Duration(ut+st) * time.Second / clkTck
}

// procStatusKiB reads a "Vm…: N kB" line of /proc/pid/status.
func procStatusKiB(tb testing.TB, pid int, key string) float64 {
	tb.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		tb.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			v, _ := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			return v
		}
	}
	tb.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

// benchRow is one line of the printed table.
type benchRow struct {
	figure, unit       string
	withPfwd, baseline float64
	noBaseline         bool // the figure has no no-firewall counterpart
	ratio              float64
	goal               string
	met                bool
	note               string
}

// measured is one phase's outcome on one pair.
type measured struct {
	received, sent float64 // sink units (packets or bytes), generator packets
	seconds        float64
	cpu            time.Duration // pfwd's, when it runs
	queueDrops     uint64
	allowed        uint64 // packets pfwd accepted: the new flows it let through
}

func (m measured) rate() float64 { return m.received / m.seconds }

// measure runs spec from n's client and counts what n's sink got on port.
func (n *benchNet) measure(tb testing.TB, spec genSpec, tcp bool, fwctlBin string) measured {
	tb.Helper()
	count := func() float64 {
		st := n.sink.stats(tb)
		if tcp {
			return float64(st.TCP[spec.Port])
		}
		return float64(st.UDP[spec.Port])
	}
	if spec.SrcNet != "" {
		n.flushConntrack(tb)
	}
	var st0 statusDoc
	var cpu0 time.Duration
	if n.pfwd != nil {
		st0, _ = pfwdStatus(fwctlBin, n.socket())
		cpu0 = procCPU(tb, n.pfwd.Process.Pid)
	}
	before := count()
	res := runGen(tb, n.client, spec)
	time.Sleep(200 * time.Millisecond) // what is in flight lands
	m := measured{received: count() - before, sent: float64(res.Sent), seconds: res.Seconds}
	if n.pfwd != nil {
		m.cpu = procCPU(tb, n.pfwd.Process.Pid) - cpu0
		if st1, err := pfwdStatus(fwctlBin, n.socket()); err == nil {
			m.queueDrops = st1.Packets.QueueDrops - st0.Packets.QueueDrops
			m.allowed = st1.Packets.Allowed - st0.Packets.Allowed
		}
	}
	if spec.SrcNet != "" {
		// The conntrack hash table is one for all namespaces: the flood's
		// entries, left in place, would lengthen the chains the next
		// pair's flood walks and evicts from, so each measurement would
		// pay for the one before it.
		n.flushConntrack(tb)
	}
	if spec.Kind == genTCPBulk {
		m.received = m.received / (1 << 20) // MiB
	}
	return m
}

func BenchmarkLoad(b *testing.B) {
	requireRoot(b)
	pfwdBin, fwctlBin := benchBinaries(b)
	sub := os.Getpid()%100 + 20
	plain := newBenchNet(b, "plain", sub)
	guarded := newBenchNet(b, "guard", sub+100)
	guarded.startPfwd(b, pfwdBin, fwctlBin)
	pid := guarded.pfwd.Process.Pid
	var rows []benchRow

	// rounds runs spec benchRounds times on the plain pair, then the
	// guarded one and any others (the spec's addresses are the plain
	// pair's; each pair's are swapped in), so all sides see the same state
	// of the machine; it returns each pair's rounds in that order.
	rounds := func(tb testing.TB, spec genSpec, tcp bool, others ...*benchNet) [][]measured {
		pairs := append([]*benchNet{plain, guarded}, others...)
		ms := make([][]measured, len(pairs))
		for range benchRounds {
			for i, n := range pairs {
				ms[i] = append(ms[i], n.measure(tb, plain.respec(spec, n), tcp, fwctlBin))
			}
		}
		return ms
	}
	ratioRow := func(b *testing.B, figure, unit string, ms [][]measured, goal float64) {
		bases, withs := ms[0], ms[1]
		base, with := median(bases), median(withs)
		r := benchRow{figure: figure, unit: unit, withPfwd: with.rate(), baseline: base.rate()}
		// The ratio is the median of each round's own ratio: a round's two
		// runs are adjacent, so a drift of the machine's speed between
		// rounds does not count.
		ratios := make([]float64, len(bases))
		for i := range bases {
			ratios[i] = withs[i].rate() / bases[i].rate()
		}
		slices.Sort(ratios)
		r.ratio = ratios[len(ratios)/2]
		if goal > 0 {
			r.goal, r.met = fmt.Sprintf(">= %.2f", goal), r.ratio >= goal
		}
		r.note = fmt.Sprintf("pfwd CPU %.0f%% of a core", 100*with.cpu.Seconds()/with.seconds)
		if with.queueDrops > 0 {
			r.note += fmt.Sprintf(", %d queue drops", with.queueDrops)
		}
		rows = append(rows, r)
		if goal > 0 { // the figure of this sub-benchmark; rows without a goal only explain it
			b.ReportMetric(r.withPfwd, unit)
			b.ReportMetric(r.baseline, "baseline-"+unit)
			b.ReportMetric(r.ratio, "ratio")
		}
	}
	udpFlows := genSpec{Kind: genUDPFlows, Src: plain.clientIP, Dst: plain.fwIP, Port: benchUDPPort, Flows: 4, Threads: 2, Duration: benchPhase}

	// Established flows with the threat feed users run: the real Feodo
	// Tracker list.
	b.Run("established-tcp", func(b *testing.B) {
		spec := genSpec{Kind: genTCPBulk, Src: plain.clientIP, Dst: plain.fwIP, Port: benchTCPPort, Flows: 2, Duration: benchPhase}
		ratioRow(b, "established TCP, 2 flows", "MiB/s", rounds(b, spec, true), 0.95)
	})
	b.Run("established-udp", func(b *testing.B) {
		ratioRow(b, "established UDP, 4 flows, 64 B frames", "pkt/s", rounds(b, udpFlows, false), 0.95)
	})

	// Everything after this runs with benchFeedSize threat entries.
	guarded.useStressFeed(b, fwctlBin)
	b.Run("established-udp-100k", func(b *testing.B) {
		ratioRow(b, fmt.Sprintf("  the same with %d threat entries", benchFeedSize), "pkt/s", rounds(b, udpFlows, false), 0.95)
	})
	b.Run("new-flow-flood", func(b *testing.B) {
		// A third pair holds pfwd's ruleset with nobody reading the queue
		// (the bypass flag accepts): the same flood through it is the
		// kernel's share of the cost alone, conntrack and the chain — the
		// ceiling of any ratio an NFQUEUE firewall can reach here. A
		// fourth reads the queue with the naive design the issue sets the
		// goal against: one queue, go-nfqueue, a verdict per packet.
		kernel := newBenchNet(b, "kernel", sub+200)
		startRuleset(b, kernel.fw, "ruleset", kernel.clientIP2, guarded.feed)
		naive := newBenchNet(b, "naive", sub+300)
		startRuleset(b, naive.fw, "naive", naive.clientIP2, guarded.feed)
		spec := genSpec{Kind: genUDPNew, SrcNet: benchSpoofNet, Dst: plain.fwIP, Port: benchUDPFlood, Threads: 2, Duration: benchPhase}
		ms := rounds(b, spec, false, kernel, naive)
		ratioRow(b, "UDP flood, new flow per packet, decided in user space", "pkt/s", ms[:2], 0.50)
		ratioRow(b, "  the same, pfwd's ruleset without a queue reader (ceiling)", "pkt/s", [][]measured{ms[0], ms[2]}, 0)
		rows[len(rows)-1].note = "the queue's bypass accepts: conntrack and the chain alone"
		ratioRow(b, "  the same, one queue read by a naive go-nfqueue loop", "pkt/s", [][]measured{ms[0], ms[3]}, 0)
		rows[len(rows)-1].note = "accepts every packet, a read and a verdict per packet"
	})
	b.Run("blacklist-flood", func(b *testing.B) {
		spec := genSpec{Kind: genUDPNew, Src: plain.clientIP2, Dst: plain.fwIP, Port: benchUDPFlood, Threads: 2, Duration: benchPhase}
		ms := rounds(b, spec, false)
		base, with := median(ms[0]), median(ms[1])
		share := with.received / with.sent
		cpu := 100 * with.cpu.Seconds() / with.seconds
		rows = append(rows,
			benchRow{figure: "blacklisted-source flood: share through", unit: "%", withPfwd: 100 * share, baseline: 100 * base.received / base.sent,
				ratio: share, goal: "0", met: with.received == 0, note: fmt.Sprintf("%.0f pkt/s sent", with.sent/with.seconds)},
			benchRow{figure: "blacklisted-source flood: pfwd CPU", unit: "% core", withPfwd: cpu, noBaseline: true, goal: "< 5", met: cpu < 5})
		b.ReportMetric(100*share, "%through")
		b.ReportMetric(cpu, "%cpu")
	})
	b.Run("rate-limited-flood", func(b *testing.B) {
		// One source opening new flows as fast as it can, the rate limit
		// on: the guard holds it in the kernel after its 100 allowed. One
		// source has 64,512 ports, so the flood comes back to each many
		// times: the packets of the 100 flows let through stay in the
		// kernel (they are those flows, not new ones), so what counts is
		// the flows pfwd accepted.
		guarded.limitRate(b, fwctlBin, benchRateLimit)
		defer guarded.limitRate(b, fwctlBin, 0)
		spec := genSpec{Kind: genUDPNew, Src: guarded.clientIP, Dst: guarded.fwIP, Port: benchUDPFlood, Threads: 2, Duration: benchPhase}
		m := guarded.measure(b, spec, false, fwctlBin)
		cpu := 100 * m.cpu.Seconds() / m.seconds
		rows = append(rows,
			benchRow{figure: "one-source flood over the rate limit: new flows let through", unit: "flows", withPfwd: float64(m.allowed), noBaseline: true,
				goal: fmt.Sprintf("<= %d", benchRateLimit), met: m.allowed <= benchRateLimit,
				note: fmt.Sprintf("%.0f pkt/s sent over 64,512 source ports; %.0f packets of the flows let through arrived", m.sent/m.seconds, m.received)},
			benchRow{figure: "the same flood: pfwd CPU", unit: "% core", withPfwd: cpu, noBaseline: true, goal: "< 5", met: cpu < 5})
		b.ReportMetric(float64(m.allowed), "flows-through")
		b.ReportMetric(cpu, "%cpu")
	})
	b.Run("peak-rss", func(b *testing.B) {
		hwm := procStatusKiB(b, pid, "VmHWM") / 1024
		rss := procStatusKiB(b, pid, "VmRSS") / 1024
		rows = append(rows, benchRow{figure: fmt.Sprintf("pfwd peak RSS (VmHWM), %d threat entries", benchFeedSize), unit: "MiB",
			withPfwd: hwm, noBaseline: true, goal: "< 64", met: hwm < 64, note: fmt.Sprintf("RSS now %.1f MiB", rss)})
		b.ReportMetric(hwm, "MiB-peak-RSS")
	})
	printBenchTable(rows)
}

// median is the round with the median rate (the middle one of an odd
// number of rounds).
func median(ms []measured) measured {
	ms = slices.Clone(ms)
	slices.SortFunc(ms, func(a, b measured) int { return cmp.Compare(a.rate(), b.rate()) })
	return ms[len(ms)/2]
}

func printBenchTable(rows []benchRow) {
	host, _ := os.Hostname()
	fmt.Printf("\npfw load benchmark — %d CPUs (%s, %s): the generator, the sink and pfwd share them,\n", runtime.NumCPU(), host, kernelRelease())
	fmt.Printf("so every figure is lower than on a machine where they would not compete.\n")
	fmt.Printf("Baseline: the same traffic through an identical namespace pair without any firewall, same run.\n\n")
	w := len("figure")
	for _, r := range rows {
		w = max(w, utf8.RuneCountInString(r.figure+" ("+r.unit+")"))
	}
	fmt.Printf("%-*s %14s %14s %8s %8s %s\n", w, "figure", "with pfwd", "no firewall", "ratio", "goal", "")
	for _, r := range rows {
		base, ratio := fmt.Sprintf("%.1f", r.baseline), fmt.Sprintf("%.3f", r.ratio)
		if r.noBaseline {
			base, ratio = "-", "-"
		}
		verdict := "MET"
		switch {
		case r.goal == "":
			r.goal, verdict = "-", "(no goal)"
		case !r.met:
			verdict = "MISSED"
		}
		fmt.Printf("%-*s %14s %14s %8s %8s %s  %s\n", w, r.figure+" ("+r.unit+")", fmt.Sprintf("%.1f", r.withPfwd), base, ratio, r.goal, verdict, r.note)
	}
	fmt.Printf("\nDecode+decide ns/packet and allocs, store rows/s and set update times: the package benchmarks above.\n\n")
}

func kernelRelease() string {
	var u syscall.Utsname
	if syscall.Uname(&u) != nil {
		return "?"
	}
	var b []byte
	for _, c := range u.Release {
		if c == 0 {
			break
		}
		b = append(b, byte(c))
	}
	return "Linux " + string(b)
}
