package main

// End-to-end tests of threat intelligence (issue 4): a real pfwd fetches
// feeds from a local HTTP server running in the firewall namespace (or a
// file:// URL), and the tests check what users rely on: the client's
// traffic blocked both ways with reason "Threat intel: <feed>", entries
// removed when the feed drops them, kept through outages and garbage, kept
// across an offline restart, dangerous entries refused, and what fwctl
// threats, status and explain show. No test fetches a real feed.
//
// Feed files are templates in testdata/feeds: {{client}}, {{client2}},
// {{client6}} and {{client24}} become the lab's addresses at run time.

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/pfw/pfw/control"
	"github.com/pfw/pfw/store"
)

// feedWait bounds waits for a fetch: intervals are 1 s, backoff after a
// failure a quarter of it, so anything due arrives within a few seconds.
const feedWait = 10 * time.Second

// feedServer is the test binary serving a directory over HTTP on
// 127.0.0.1 inside the firewall namespace, where pfwd fetches from.
type feedServer struct {
	l    *lab
	dir  string
	port int
	cmd  *exec.Cmd
}

// startFeedServer starts a feed server for the lab's files in dir/feeds.
func (l *lab) startFeedServer() *feedServer {
	l.t.Helper()
	fs := &feedServer{l: l, dir: filepath.Join(l.dir, "feeds")}
	if err := os.MkdirAll(fs.dir, 0o755); err != nil {
		l.t.Fatal(err)
	}
	cmd := exec.Command("ip", "netns", "exec", l.fw, os.Args[0])
	cmd.Env = append(os.Environ(), "PFW_E2E_HELPER=feeds", "PFW_FEED_DIR="+fs.dir)
	stdout, _ := cmd.StdoutPipe()
	cmd.Stderr = os.Stderr
	if err := cmd.Start(); err != nil {
		l.t.Fatal(err)
	}
	fs.cmd = cmd
	l.t.Cleanup(fs.stop)
	line, err := bufio.NewReader(stdout).ReadString('\n')
	port, perr := strconv.Atoi(strings.TrimPrefix(strings.TrimSpace(line), "ready "))
	if err != nil || perr != nil {
		l.t.Fatalf("feed server did not start: %q %v", line, err)
	}
	fs.port = port
	return fs
}

// stop kills the server: fetches then fail with "connection refused".
func (fs *feedServer) stop() {
	if fs.cmd == nil {
		return
	}
	// ip netns exec execs the helper, so the process is the server itself.
	fs.cmd.Process.Kill()
	fs.cmd.Wait()
	fs.cmd = nil
}

func (fs *feedServer) url(name string) string {
	return fmt.Sprintf("http://127.0.0.1:%d/%s", fs.port, name)
}

// put replaces a served file atomically, so no fetch reads half of it.
func (fs *feedServer) put(name string, body []byte) {
	fs.l.t.Helper()
	putFile(fs.l.t, filepath.Join(fs.dir, name), body)
}

func putFile(t *testing.T, file string, body []byte) {
	t.Helper()
	tmp := file + ".tmp"
	if err := os.WriteFile(tmp, body, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, file); err != nil {
		t.Fatal(err)
	}
}

// feedServeMain is the feed server helper. It answers with an ETag of the
// content and honours If-None-Match, as feed providers do; it sends no
// Last-Modified, whose one-second resolution would make a file rewritten
// within the same second look unchanged.
func feedServeMain() int {
	dir := os.Getenv("PFW_FEED_DIR")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	fmt.Printf("ready %d\n", ln.Addr().(*net.TCPAddr).Port)
	err = http.Serve(ln, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, err := os.ReadFile(filepath.Join(dir, path.Base(r.URL.Path)))
		if err != nil {
			http.NotFound(w, r)
			return
		}
		sum := sha256.Sum256(body)
		etag := `"` + hex.EncodeToString(sum[:8]) + `"`
		w.Header().Set("ETag", etag)
		if r.Header.Get("If-None-Match") == etag {
			w.WriteHeader(http.StatusNotModified)
			return
		}
		w.Header().Set("Content-Type", http.DetectContentType(body))
		w.Write(body)
	}))
	fmt.Fprintln(os.Stderr, err)
	return 1
}

// feedText is a testdata/feeds template with the lab's addresses filled in.
func (l *lab) feedText(name string) []byte {
	l.t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "feeds", name))
	if err != nil {
		l.t.Fatal(err)
	}
	return []byte(strings.NewReplacer(
		"{{client}}", l.clientIP, "{{client2}}", l.clientIP2, "{{client6}}", l.clientIP6,
		"{{client24}}", l.client24(), "{{client31}}", l.client31(), "{{fw}}", l.fwIP,
	).Replace(string(b)))
}

// client24 is the client's IPv4 /24 (which holds the firewall host's
// address too) as a feed (and threat_intel) spells it.
func (l *lab) client24() string {
	return netip.PrefixFrom(netip.MustParseAddr(l.clientIP), 24).Masked().String()
}

// client31 is the /31 of the client's two IPv4 addresses (x.2 and x.3),
// which spares the firewall host's x.1.
func (l *lab) client31() string {
	return netip.PrefixFrom(netip.MustParseAddr(l.clientIP), 31).Masked().String()
}

// feedConf is one threat_feeds item of the config.
type feedConf struct {
	Name     string `json:"name"`
	URL      string `json:"url"`
	Interval string `json:"interval"`
	Level    string `json:"threat_level"`
}

// intelConfig is an allow-all config (whitelist 127.0.0.1 and ::1 only,
// so no feed entry for the lab is refused as covering it) with feeds.
func (l *lab) intelConfig(feeds ...feedConf) string {
	l.t.Helper()
	doc := l.configDoc("allow", ``, `"127.0.0.1", "::1"`, ``, 1000)
	list, err := json.Marshal(append([]feedConf{}, feeds...)) // [] for none, not null
	if err != nil {
		l.t.Fatal(err)
	}
	const empty = `"threat_feeds": []`
	if !strings.Contains(doc, empty) {
		l.t.Fatal("configDoc has no empty threat_feeds to replace")
	}
	return strings.Replace(doc, empty, `"threat_feeds": `+string(list), 1)
}

func (l *lab) status() control.Status {
	l.t.Helper()
	out, err := l.fwctl("status", "--json")
	if err != nil {
		l.t.Fatalf("fwctl status --json: %v\n%s", err, out)
	}
	var st control.Status
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		l.t.Fatalf("fwctl status --json: %v\n%s", err, out)
	}
	return st
}

func (l *lab) feedState(name string) control.FeedStatus {
	l.t.Helper()
	st := l.status()
	for _, f := range st.Feeds {
		if f.Name == name {
			return f
		}
	}
	l.t.Fatalf("fwctl status lists no feed %q: %+v", name, st.Feeds)
	return control.FeedStatus{}
}

// waitFeed waits until the feed's status satisfies cond.
func (l *lab) waitFeed(name, what string, cond func(control.FeedStatus) bool) control.FeedStatus {
	l.t.Helper()
	var f control.FeedStatus
	if !eventually(feedWait, func() bool { f = l.feedState(name); return cond(f) }) {
		l.t.Fatalf("feed %q: %s did not happen within %v; status: %+v", name, what, feedWait, f)
	}
	return f
}

// threatRow is a row of `fwctl threats --json`.
type threatRow struct {
	IP          string `json:"ip"`
	ThreatLevel string `json:"threat_level"`
	LastSeen    string `json:"last_seen"`
	Source      string `json:"source"`
}

func (l *lab) threats(limit int) []threatRow {
	l.t.Helper()
	out, err := l.fwctl("threats", "--limit", strconv.Itoa(limit), "--json")
	if err != nil {
		l.t.Fatalf("fwctl threats: %v\n%s", err, out)
	}
	var rows []threatRow
	if err := json.Unmarshal([]byte(out), &rows); err != nil {
		l.t.Fatalf("fwctl threats --json: %v\n%s", err, out)
	}
	return rows
}

func threatOf(rows []threatRow, ip string) (threatRow, bool) {
	i := slices.IndexFunc(rows, func(r threatRow) bool { return r.IP == ip })
	if i < 0 {
		return threatRow{}, false
	}
	return rows[i], true
}

// waitThreat waits until threat_intel holds (or no longer holds) ip. The
// daemon saves the rows after the kernel sets and the pipeline took the
// entries, so a row in the database means the block is in force.
func (l *lab) waitThreat(ip string, present bool) {
	l.t.Helper()
	if !eventually(feedWait, func() bool {
		_, ok := threatOf(l.threats(0), ip)
		return ok == present
	}) {
		l.t.Fatalf("threat_intel row for %s present=%v not reached within %v: %+v", ip, present, feedWait, l.threats(0))
	}
}

type explainOut struct {
	Verdict string `json:"verdict"`
	Reason  string `json:"reason"`
	Step    string `json:"step"`
}

func (l *lab) explainJSON(args ...string) explainOut {
	l.t.Helper()
	out, err := l.fwctl(append([]string{"explain", "--json"}, args...)...)
	if err != nil {
		l.t.Fatalf("fwctl explain %v: %v\n%s", args, err, out)
	}
	var ex explainOut
	if err := json.Unmarshal([]byte(out), &ex); err != nil {
		l.t.Fatalf("fwctl explain --json: %v\n%s", err, out)
	}
	return ex
}

// serveIn is serve in any namespace of the lab (the client's, for traffic
// the firewall host starts).
// expectFrom makes one attempt from ns, from source src (empty: the
// kernel's choice; icmp always uses it), and checks whether it got through.
// An attempt that should pass may take 3 s: a lab's first IPv6 contact
// waits about a second for neighbor discovery. One that should fail is
// given 1 s, plenty on a veth, so blocks cost little time.
func (l *lab) expectFrom(ns, proto, src, addr string, want bool) {
	l.t.Helper()
	timeout := time.Second
	if want {
		timeout = 3 * time.Second
	}
	if got := l.sendFrom(ns, proto, src, addr, 1, timeout) == 1; got != want {
		l.t.Errorf("%s from %s (%s) to %s: got through = %v, want %v", proto, ns, orKernel(src), addr, got, want)
	}
}

func orKernel(src string) string {
	if src == "" {
		return "source chosen by the kernel"
	}
	return src
}

// logText is pfwd's application log so far.
func (l *lab) logText() string {
	b, err := os.ReadFile(l.logPath)
	if err != nil {
		l.t.Fatal(err)
	}
	return string(b)
}

// waitLog waits until a log line holds every part.
func (l *lab) waitLog(parts ...string) string {
	l.t.Helper()
	var found string
	if !eventually(feedWait, func() bool {
		for line := range strings.SplitSeq(l.logText(), "\n") {
			if containsAll(line, parts) {
				found = line
				return true
			}
		}
		return false
	}) {
		l.t.Fatalf("no log line with %q within %v:\n%s", parts, feedWait, l.logText())
	}
	return found
}

func containsAll(s string, parts []string) bool {
	for _, p := range parts {
		if !strings.Contains(s, p) {
			return false
		}
	}
	return true
}

const feodo = "Feodo Tracker"

// startFeodoLab is a lab whose pfwd takes the Feodo-format test feed (the
// client's first address listed among four others) over HTTP, echo servers
// on tcp/22 and udp/53 in the firewall namespace, and the feed in force.
func startFeodoLab(t *testing.T) (*lab, *feedServer) {
	l := newLab(t)
	fs := l.startFeedServer()
	fs.put("ipblocklist.txt", l.feedText("feodo_ipblocklist.txt"))
	l.writeConfig(l.intelConfig(feedConf{Name: feodo, URL: fs.url("ipblocklist.txt"), Interval: "1s", Level: "critical"}))
	l.serve([]int{22}, []int{53})
	l.startPfwd()
	l.waitThreat(l.clientIP, true)
	return l, fs
}

func isIntelRow(reason, src, dst, proto string) func(store.LogRow) bool {
	return func(r store.LogRow) bool {
		return r.Reason == reason && (src == "" || r.SrcIP == src) && (dst == "" || r.DstIP == dst) && r.Protocol == proto
	}
}

// A whitelisted address inside a feed's network is let in, and the rest
// of the network stays blocked: the whitelist is checked first, in the
// kernel and the pipeline, so the feed's entry need not be dropped for it
// (it used to be, unblocking the whole network for one address).
func TestThreatFeedAroundAWhitelistedAddress(t *testing.T) {
	l := newLab(t)
	fs := l.startFeedServer()
	network := netip.PrefixFrom(netip.MustParseAddr(l.clientIP), 31).Masked() // the client's two addresses, not the host's
	fs.put("list.txt", []byte(network.String()+"\n"))
	const name = "Network list"
	doc := l.intelConfig(feedConf{Name: name, URL: fs.url("list.txt"), Interval: "1h", Level: "high"})
	doc = strings.Replace(doc, `"whitelist_ips": ["127.0.0.1", "::1"]`, `"whitelist_ips": ["127.0.0.1", "::1", "`+l.clientIP+`"]`, 1)
	l.writeConfig(doc)
	l.serve([]int{22}, nil)
	l.startPfwd()
	l.waitThreat(network.String(), true)
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), true)
	l.expectFrom(l.client, "tcp", l.clientIP2, hostPort(l.fwIP, 22), false)
	if ex := l.explainJSON("--src", l.clientIP2); ex.Verdict != "block" || ex.Reason != "Threat intel: "+name {
		t.Errorf("fwctl explain --src %s = %+v, want block / Threat intel: %s", l.clientIP2, ex, name)
	}
	if log := l.logText(); strings.Contains(log, "overlaps whitelisted") {
		t.Errorf("the feed's entry was skipped for the whitelist:\n%s", log)
	}
}

func TestThreatFeedBlocksInbound(t *testing.T) {
	l, _ := startFeodoLab(t)

	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)
	l.expectFrom(l.client, "udp", l.clientIP, hostPort(l.fwIP, 53), false)
	l.expectFrom(l.client, "icmp", "", l.fwIP, false) // ping's source is the first address, the listed one
	// The client's other addresses are not listed.
	l.expectFrom(l.client, "tcp", l.clientIP2, hostPort(l.fwIP, 22), true)
	l.expectFrom(l.client, "tcp", "", hostPort(l.fwIP6, 22), true)

	reason := "Threat intel: " + feodo
	for _, proto := range []string{"tcp", "udp", "icmp"} {
		if _, ok := l.waitRow(isIntelRow(reason, l.clientIP, l.fwIP, proto)); !ok {
			t.Errorf("no blocked %s row from %s with reason %q: %+v", proto, l.clientIP, reason, l.rows("blocked"))
		}
	}

	rows := l.threats(0)
	if len(rows) != 5 {
		t.Errorf("fwctl threats lists %d entries, want the feed's 5: %+v", len(rows), rows)
	}
	r, ok := threatOf(rows, l.clientIP)
	if !ok || r.Source != feodo || r.ThreatLevel != "critical" || r.LastSeen == "" {
		t.Errorf("fwctl threats entry for %s = %+v (found %v), want source %q, threat_level critical, a last_seen", l.clientIP, r, ok, feodo)
	}
	if got := l.status().Sets["intel_v4"]; got != 5 {
		t.Errorf("intel_v4 holds %d entries, want 5", got)
	}

	for _, args := range [][]string{
		{"--src", l.clientIP, "--dst", l.fwIP, "--dst-port", "22"},
		{"--direction", "out", "--dst", l.clientIP, "--protocol", "udp", "--dst-port", "53"},
	} {
		if ex := l.explainJSON(args...); ex.Verdict != "block" || ex.Reason != reason {
			t.Errorf("fwctl explain %v = %+v, want block / %q", args, ex, reason)
		}
	}
	if ex := l.explainJSON("--src", l.clientIP2); ex.Verdict != "allow" {
		t.Errorf("fwctl explain --src %s (not listed) = %+v, want allow", l.clientIP2, ex)
	}
}

func TestThreatFeedBlocksOutbound(t *testing.T) {
	l, _ := startFeodoLab(t)
	// Infected hosts calling out to their C&C: the listed address is the
	// destination, the firewall host the one that starts the flow.
	l.serveIn(l.client, []int{8080}, []int{5353})

	l.expectFrom(l.fw, "tcp", "", hostPort(l.clientIP, 8080), false)
	l.expectFrom(l.fw, "udp", "", hostPort(l.clientIP, 5353), false)
	l.expectFrom(l.fw, "icmp", "", l.clientIP, false)
	// No udp counterpart: the echo server answers from the client's first
	// address, whatever address was asked, and that one is listed.
	l.expectFrom(l.fw, "tcp", "", hostPort(l.clientIP2, 8080), true)

	reason := "Threat intel: " + feodo
	for _, proto := range []string{"tcp", "udp", "icmp"} {
		if _, ok := l.waitRow(isIntelRow(reason, l.fwIP, l.clientIP, proto)); !ok {
			t.Errorf("no blocked outbound %s row to %s with reason %q: %+v", proto, l.clientIP, reason, l.rows("blocked"))
		}
	}
}

func TestThreatFeedRemovalUnblocks(t *testing.T) {
	l, fs := startFeodoLab(t)
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)

	fs.put("ipblocklist.txt", l.feedText("feodo_without_client.txt"))
	l.waitThreat(l.clientIP, false)
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), true)
	l.expectFrom(l.client, "icmp", "", l.fwIP, true)
	if rows := l.threats(0); len(rows) != 4 {
		t.Errorf("fwctl threats lists %d entries after the feed dropped one, want 4: %+v", len(rows), rows)
	}
	if st := l.status(); st.Sets["intel_v4"] != 4 || st.Feeds[0].Entries != 4 {
		t.Errorf("after removal: intel_v4 %d, feed entries %d, want 4 and 4", st.Sets["intel_v4"], st.Feeds[0].Entries)
	}
	if ex := l.explainJSON("--src", l.clientIP); ex.Verdict != "allow" {
		t.Errorf("fwctl explain after removal = %+v, want allow", ex)
	}
	l.waitLog(" - INFO - Threat feed: updated: 4 entries (+0 -1)", "feed=\""+feodo+"\"")
}

// TestThreatFeedConfigChanges edits the feed in the config of a running
// pfwd: a new threat_level reaches the saved entries, and a feed removed
// from the config takes its entries with it.
func TestThreatFeedConfigChanges(t *testing.T) {
	l, fs := startFeodoLab(t)
	url := fs.url("ipblocklist.txt")

	l.writeConfig(l.intelConfig(feedConf{Name: feodo, URL: url, Interval: "1s", Level: "low"}))
	if !eventually(feedWait, func() bool {
		r, ok := threatOf(l.threats(0), l.clientIP)
		return ok && r.ThreatLevel == "low"
	}) {
		t.Errorf("threat_level low not saved after the reload: %+v", l.threats(0))
	}
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)

	l.writeConfig(l.intelConfig())
	l.waitThreat(l.clientIP, false)
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), true)
	if rows := l.threats(0); len(rows) != 0 {
		t.Errorf("fwctl threats after the feed left the config: %+v, want none", rows)
	}
	if st := l.status(); st.Sets["intel_v4"] != 0 || len(st.Feeds) != 0 {
		t.Errorf("after the feed left the config: intel_v4 %d, feeds %+v; want 0 and none", st.Sets["intel_v4"], st.Feeds)
	}
}

// TestThreatFeedsSharingAnEntry runs two feeds that list the same address:
// the database, fwctl threats and fwctl explain name the first feed in the
// config, as the pipeline does, and when that feed drops the address the
// other keeps it blocked and named.
func TestThreatFeedsSharingAnEntry(t *testing.T) {
	l := newLab(t)
	fs := l.startFeedServer()
	fs.put("ipblocklist.txt", l.feedText("feodo_ipblocklist.txt"))
	fs.put("other.txt", []byte(l.clientIP+"\n198.51.100.99\n"))
	const other = "Other list"
	feeds := []feedConf{
		{Name: feodo, URL: fs.url("ipblocklist.txt"), Interval: "1s", Level: "critical"},
		{Name: other, URL: fs.url("other.txt"), Interval: "1s", Level: "medium"},
	}
	l.writeConfig(l.intelConfig(feeds...))
	l.serve([]int{22}, nil)
	l.startPfwd()
	l.waitFeed(other, "2 entries", func(f control.FeedStatus) bool { return f.Entries == 2 })
	l.waitThreat("198.51.100.99", true)

	named := func(feed, level string) {
		t.Helper()
		if !eventually(feedWait, func() bool {
			r, ok := threatOf(l.threats(0), l.clientIP)
			return ok && r.Source == feed && r.ThreatLevel == level
		}) {
			r, _ := threatOf(l.threats(0), l.clientIP)
			t.Fatalf("threat_intel row for %s = %+v, want source %q, level %s", l.clientIP, r, feed, level)
		}
		if ex := l.explainJSON("--src", l.clientIP); ex.Verdict != "block" || ex.Reason != "Threat intel: "+feed {
			t.Errorf("fwctl explain --src %s = %+v, want block / Threat intel: %s", l.clientIP, ex, feed)
		}
		l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)
		if _, ok := l.waitRow(isIntelRow("Threat intel: "+feed, l.clientIP, l.fwIP, "tcp")); !ok {
			t.Errorf("no blocked row from %s naming %s: %+v", l.clientIP, feed, l.rows("blocked"))
		}
	}
	named(feodo, "critical")

	// The first feed drops the address: the second still lists it.
	fs.put("ipblocklist.txt", l.feedText("feodo_without_client.txt"))
	named(other, "medium")
	if rows := l.threats(0); len(rows) != 6 {
		t.Errorf("fwctl threats lists %d entries, want Feodo's 4 and the other's 2: %+v", len(rows), rows)
	}

	// It lists it again, and the other feed is moved first: the order of
	// the config decides.
	fs.put("ipblocklist.txt", l.feedText("feodo_ipblocklist.txt"))
	l.waitFeed(feodo, "5 entries", func(f control.FeedStatus) bool { return f.Entries == 5 })
	l.writeConfig(l.intelConfig(feeds[1], feeds[0]))
	named(other, "medium")
	l.writeConfig(l.intelConfig(feeds[0]))
	named(feodo, "critical")
}

func TestThreatFeedKeepsEntriesThroughBadDays(t *testing.T) {
	l, fs := startFeodoLab(t)
	blocked := func(when string) {
		t.Helper()
		if n := l.sendFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), 1, time.Second); n != 0 {
			t.Errorf("%s: the listed client got through", when)
		}
		if _, ok := threatOf(l.threats(0), l.clientIP); !ok {
			t.Errorf("%s: the threat_intel row of %s is gone", when, l.clientIP)
		}
	}

	for _, bad := range []struct{ file, errPart string }{
		{"garbage.html", "looks like an HTML page"},
		{"garbage.bin", "binary data"},
	} {
		fs.put("ipblocklist.txt", l.feedText(bad.file))
		f := l.waitFeed(feodo, "rejecting "+bad.file, func(f control.FeedStatus) bool {
			return strings.Contains(f.LastError, bad.errPart)
		})
		if f.Failures < 1 || f.Entries != 5 {
			t.Errorf("after %s: failures %d, entries %d; want >= 1 and the 5 kept", bad.file, f.Failures, f.Entries)
		}
		blocked("after " + bad.file)
		l.waitLog(" - WARNING - Threat feed: fetch failed", bad.errPart, "keeping 5 entries")
	}

	fs.stop()
	f := l.waitFeed(feodo, "failing on a stopped server", func(f control.FeedStatus) bool {
		return strings.Contains(f.LastError, "connection refused")
	})
	if f.Failures < 1 || f.Entries != 5 || f.LastSuccess.IsZero() {
		t.Errorf("server down: %+v, want failures >= 1, the 5 entries kept and the last success", f)
	}
	blocked("server down")
	l.waitLog(" - WARNING - Threat feed: fetch failed", "connection refused")
	if got := l.status().Sets["intel_v4"]; got != 5 {
		t.Errorf("intel_v4 holds %d entries after the bad fetches, want the 5 kept", got)
	}
}

func TestThreatFeedOfflineRestart(t *testing.T) {
	l, fs := startFeodoLab(t)
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)
	if err := l.stopPfwd(syscall.SIGTERM); err != nil {
		t.Fatalf("pfwd exit after SIGTERM: %v", err)
	}
	fs.stop()

	// No feed can answer now: whatever blocks comes from the database.
	l.startPfwd()
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)
	l.expectFrom(l.client, "icmp", "", l.fwIP, false)
	l.expectFrom(l.client, "tcp", l.clientIP2, hostPort(l.fwIP, 22), true)
	if !strings.Contains(l.logText(), " - INFO - Loaded threat entries from the database entries=5 feeds=1") {
		t.Errorf("the log does not say the entries came from the database")
	}
	if _, ok := l.waitRow(isIntelRow("Threat intel: "+feodo, l.clientIP, l.fwIP, "tcp")); !ok {
		t.Errorf("no Threat intel row after the offline restart: %+v", l.rows("blocked"))
	}
	f := l.waitFeed(feodo, "failing offline", func(f control.FeedStatus) bool { return f.Failures >= 1 })
	if f.Entries != 5 || !f.LastSuccess.IsZero() {
		t.Errorf("offline feed after restart: %+v, want the 5 seeded entries and no success yet", f)
	}
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)

	// The feed left the config while pfwd was stopped: its saved entries
	// must not block anything at the next start.
	if err := l.stopPfwd(syscall.SIGTERM); err != nil {
		t.Fatalf("pfwd exit after SIGTERM: %v", err)
	}
	l.writeConfig(l.intelConfig())
	l.startPfwd()
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), true)
	if rows := l.threats(0); len(rows) != 0 {
		t.Errorf("fwctl threats after starting without the feed: %+v, want none", rows)
	}
}

func TestThreatFeedFormats(t *testing.T) {
	l := newLab(t)
	fs := l.startFeedServer()
	fs.put("drop.txt", l.feedText("spamhaus_drop.txt"))
	v6file := filepath.Join(l.dir, "ipv6_plain.txt")
	putFile(t, v6file, l.feedText("ipv6_plain.txt"))
	const drop, v6 = "Spamhaus DROP", "Lab v6 list"
	l.writeConfig(l.intelConfig(
		feedConf{Name: drop, URL: fs.url("drop.txt"), Interval: "1s", Level: "high"},
		feedConf{Name: v6, URL: "file://" + v6file, Interval: "1s", Level: "medium"},
	))
	l.serve([]int{22}, nil)
	l.serveIn(l.client, []int{8080}, nil)
	l.startPfwd()
	l.waitThreat(l.client31(), true)
	l.waitThreat(l.clientIP6, true)

	// The /31 covers both of the client's IPv4 addresses.
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)
	l.expectFrom(l.client, "tcp", l.clientIP2, hostPort(l.fwIP, 22), false)
	l.expectFrom(l.client, "tcp", l.clientIP6, hostPort(l.fwIP6, 22), false)
	l.expectFrom(l.fw, "tcp", "", hostPort(l.clientIP6, 8080), false) // IPv6 outbound: the destination matched
	for _, want := range []struct{ reason, src, dst string }{
		{"Threat intel: " + drop, l.clientIP2, l.fwIP},
		{"Threat intel: " + v6, l.clientIP6, l.fwIP6},
		{"Threat intel: " + v6, l.fwIP6, l.clientIP6},
	} {
		if _, ok := l.waitRow(isIntelRow(want.reason, want.src, want.dst, "tcp")); !ok {
			t.Errorf("no blocked row %s -> %s with reason %q: %+v", want.src, want.dst, want.reason, l.rows("blocked"))
		}
	}

	rows := l.threats(0)
	for _, want := range []threatRow{
		{IP: l.client31(), ThreatLevel: "high", Source: drop},
		{IP: "198.51.100.0/25", ThreatLevel: "high", Source: drop},
		{IP: l.clientIP6, ThreatLevel: "medium", Source: v6},
		{IP: "2001:db8:abcd::/48", ThreatLevel: "medium", Source: v6},
	} {
		if r, ok := threatOf(rows, want.IP); !ok || r.ThreatLevel != want.ThreatLevel || r.Source != want.Source {
			t.Errorf("fwctl threats entry %s = %+v (found %v), want level %s, source %s", want.IP, r, ok, want.ThreatLevel, want.Source)
		}
	}
	if len(rows) != 7 {
		t.Errorf("fwctl threats lists %d entries, want 4 + 3: %+v", len(rows), rows)
	}
	if ex := l.explainJSON("--src", l.clientIP6, "--protocol", "udp"); ex.Verdict != "block" || ex.Reason != "Threat intel: "+v6 {
		t.Errorf("fwctl explain --src %s = %+v, want block by %s", l.clientIP6, ex, v6)
	}
	l.waitLog("Threat feed: updated: 4 entries", "format spamhaus-drop", `feed="`+drop+`"`)
	// A plain list with a "#" header is indistinguishable from FireHOL's.
	l.waitLog("Threat feed: updated: 3 entries", `feed="`+v6+`"`)
}

func TestThreatFeedRefusesDangerousEntries(t *testing.T) {
	l := newLab(t)
	fs := l.startFeedServer()
	fs.put("list.txt", l.feedText("dangerous.txt"))
	const name = "Careless list"
	l.writeConfig(l.intelConfig(feedConf{Name: name, URL: fs.url("list.txt"), Interval: "1s", Level: "low"}))
	l.serve([]int{22}, nil)
	l.startPfwd()
	l.waitThreat(l.clientIP2, true)

	// 0.0.0.0/0, ::/0 and 2.0.0.0/7 would block everyone, the host's own
	// address and its /24 would cut it off its network: only the client's
	// second address is applied.
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), true)
	l.expectFrom(l.client, "tcp", l.clientIP6, hostPort(l.fwIP6, 22), true)
	l.expectFrom(l.client, "tcp", l.clientIP2, hostPort(l.fwIP, 22), false)
	if rows := l.threats(0); len(rows) != 1 {
		t.Errorf("fwctl threats = %+v, want only %s", rows, l.clientIP2)
	}
	st := l.status()
	if st.Sets["intel_v4"] != 1 || st.Sets["intel_v6"] != 0 {
		t.Errorf("intel sets: v4 %d, v6 %d, want 1 and 0", st.Sets["intel_v4"], st.Sets["intel_v6"])
	}
	line := l.waitLog(" - WARNING - Threat feed: skipped 7 entries", `feed="`+name+`"`)
	// The line names five, IPv4 first in address order: ::/0 and ::1 are
	// the "2 more".
	for _, e := range []string{"0.0.0.0/0", "2.0.0.0/7", "127.0.0.1",
		l.fwIP + "/32 (covers this host's address " + l.fwIP + ")", l.client24() + " (covers this host's address " + l.fwIP + ")",
		"and 2 more"} {
		if !strings.Contains(line, e) {
			t.Errorf("the warning does not name %s: %s", e, line)
		}
	}
}

func TestThreatFeedStatus(t *testing.T) {
	l, fs := startFeodoLab(t)
	f := l.waitFeed(feodo, "a success", func(f control.FeedStatus) bool { return !f.LastSuccess.IsZero() })
	now := time.Now()
	if f.URL != fs.url("ipblocklist.txt") || f.Entries != 5 || f.LastError != "" || f.Failures != 0 {
		t.Errorf("healthy feed status = %+v, want its URL, 5 entries, no error", f)
	}
	if now.Sub(f.LastSuccess) > 5*time.Second || !f.NextFetch.After(f.LastSuccess) || f.NextFetch.Sub(f.LastSuccess) > 2*time.Second {
		t.Errorf("healthy feed status = %+v: want a recent last success and the next fetch about 1 s after it", f)
	}
	out, err := l.fwctl("status")
	if err != nil {
		t.Fatalf("fwctl status: %v\n%s", err, out)
	}
	header := regexp.MustCompile(`(?m)^\s*NAME\s+ENTRIES\s+LAST SUCCESS\s+NEXT FETCH\s+FAILURES\s+LAST ERROR\s*$`)
	healthy := regexp.MustCompile(`(?m)^\s*` + feodo + `\s+5\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \(\d+s ago\)\s+\d{4}-\d\d-\d\d \d\d:\d\d:\d\d \((in \d+s|\d+s ago)\)\s+0\s+-\s*$`)
	if !strings.Contains(out, "Feeds:") || !header.MatchString(out) || !healthy.MatchString(out) {
		t.Errorf("fwctl status does not show the healthy feed's row:\n%s", out)
	}

	fs.stop()
	f = l.waitFeed(feodo, "a failure", func(f control.FeedStatus) bool { return f.Failures >= 1 })
	if !strings.Contains(f.LastError, "connection refused") || f.Entries != 5 {
		t.Errorf("failing feed status = %+v, want the error and the 5 entries kept", f)
	}
	out, _ = l.fwctl("status")
	failing := regexp.MustCompile(`(?m)^\s*` + feodo + `\s+5\s+\d{4}-.*\s[1-9]\d*\s+.*connection refused`)
	if !failing.MatchString(out) {
		t.Errorf("fwctl status does not show the failing feed's row:\n%s", out)
	}
}

// TestThreatFeedLargeUpdate applies a 100,000-entry feed through the
// daemon and logs how long the update took (the figure is under
// 2 s; timing is not asserted, since test machines vary).
func TestThreatFeedLargeUpdate(t *testing.T) {
	l := newLab(t)
	fs := l.startFeedServer()
	const n = 100_000
	var b strings.Builder
	b.WriteString("# pfw e2e: 100,000 scattered addresses, then the lab client\n")
	base := netip.MustParseAddr("20.0.0.0").As4()
	start := uint32(base[0])<<24 | uint32(base[1])<<16 | uint32(base[2])<<8 | uint32(base[3])
	for i := range uint32(n) {
		a := start + i*37 // scattered, as real lists are: no two adjacent
		fmt.Fprintf(&b, "%d.%d.%d.%d\n", byte(a>>24), byte(a>>16), byte(a>>8), byte(a))
	}
	b.WriteString(l.clientIP + "\n")
	fs.put("big.txt", []byte(b.String()))
	const name = "Big list"
	l.writeConfig(l.intelConfig(feedConf{Name: name, URL: fs.url("big.txt"), Interval: "1s", Level: "high"}))
	l.serve([]int{22}, nil)
	l.startPfwd()

	line := l.waitLog(" - INFO - Threat feed updated", `feed="`+name+`"`, fmt.Sprintf("entries=%d", n+1))
	if m := regexp.MustCompile(`applied_in=(\S+)`).FindStringSubmatch(line); m != nil {
		t.Logf("a %d-entry feed update (kernel sets, pipeline and database): applied_in=%s", n+1, m[1])
	} else {
		t.Errorf("the update line has no applied_in: %s", line)
	}
	if got := l.status().Sets["intel_v4"]; got != n+1 {
		t.Errorf("intel_v4 holds %d entries, want %d", got, n+1)
	}
	l.expectFrom(l.client, "tcp", l.clientIP, hostPort(l.fwIP, 22), false)
	if rows := l.threats(3); len(rows) != 3 {
		t.Errorf("fwctl threats --limit 3 gave %d rows", len(rows))
	}
	// The next fetches are answered 304 (ETag): no second 100k update.
	time.Sleep(2 * time.Second)
	if c := strings.Count(l.logText(), "Threat feed updated feed=\""+name+"\""); c != 1 {
		t.Errorf("%d updates of an unchanged feed, want 1", c)
	}
}

// `rm firewall.db` while pfwd runs (to clear the log): pfwd notices within
// a second, makes a new database, writes the threat entries in force to it
// again (no refetch: the feed's interval is an hour), and logs the rows
// that follow where fwctl reads them.
func TestDatabaseDeletedWhileRunning(t *testing.T) {
	l := newLab(t)
	v6file := filepath.Join(l.dir, "ipv6_plain.txt")
	putFile(t, v6file, l.feedText("ipv6_plain.txt"))
	const v6 = "Lab v6 list"
	l.writeConfig(l.intelConfig(feedConf{Name: v6, URL: "file://" + v6file, Interval: "1h", Level: "medium"}))
	l.serve([]int{22}, nil)
	l.startPfwd()
	l.waitThreat(l.clientIP6, true)
	l.expectFrom(l.client, "tcp", l.clientIP6, hostPort(l.fwIP6, 22), false)
	if _, ok := l.waitRow(isIntelRow("Threat intel: "+v6, l.clientIP6, l.fwIP6, "tcp")); !ok {
		t.Fatalf("no blocked row before the rm: %+v", l.rows("blocked"))
	}

	if err := os.Remove(l.db()); err != nil {
		t.Fatal(err)
	}
	l.waitLog("The log database was deleted, replaced or emptied while pfwd ran: opened it again")
	l.waitLog("Threat feed: entries saved to the new database", `feed="`+v6+`"`, "entries=3")
	if rows := l.threats(0); len(rows) != 3 {
		t.Errorf("fwctl threats after the rm: %+v, want the feed's 3 entries", rows)
	} else if r, ok := threatOf(rows, l.clientIP6); !ok || r.Source != v6 || r.ThreatLevel != "medium" {
		t.Errorf("fwctl threats entry %s = %+v, want source %q level medium", l.clientIP6, r, v6)
	}
	if n := len(l.rows("blocked")); n != 0 {
		t.Errorf("the new database has %d blocked rows before any new traffic", n)
	}
	l.expectFrom(l.client, "tcp", l.clientIP6, hostPort(l.fwIP6, 22), false)
	if _, ok := l.waitRow(isIntelRow("Threat intel: "+v6, l.clientIP6, l.fwIP6, "tcp")); !ok {
		t.Errorf("no blocked row in the new database: %+v", l.rows("blocked"))
	}
	if st := l.status(); st.LogRows.Lost != 0 {
		t.Errorf("fwctl status: %d log rows lost around the rm (%s)", st.LogRows.Lost, st.LogRows.LastError)
	}
}
