package main

// The unit under a real systemd: `make install` staged into a copy-on-write
// view of this machine's own root, booted with systemd-nspawn in a network
// namespace of its own, and driven with systemctl the way an administrator
// does. This is where a hardening directive that breaks pfwd would show
// (a refused system call, a read-only path, a missing capability): the
// other install tests only read the unit file.

import (
	"bufio"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/store"
)

// container is a systemd booted by systemd-nspawn.
type container struct {
	t    *testing.T
	init int // the container's PID 1, as this host sees it
}

// run runs a command in all the container's namespaces.
func (c *container) run(args ...string) (string, error) {
	out, err := exec.Command("nsenter", append([]string{"-t", strconv.Itoa(c.init), "-a"}, args...)...).CombinedOutput()
	return strings.TrimSpace(string(out)), err
}

func (c *container) mustRun(args ...string) string {
	c.t.Helper()
	out, err := c.run(args...)
	if err != nil {
		c.t.Fatalf("in the container: %s: %v\n%s", strings.Join(args, " "), err, out)
	}
	return out
}

// mainPID is the unit's main process, 0 when it has none.
func (c *container) mainPID() int {
	out, _ := c.run("systemctl", "show", "--property=MainPID", "--value", unitName)
	pid, _ := strconv.Atoi(out)
	return pid
}

func (c *container) tables() int {
	out, _ := c.run("nft", "list", "tables")
	return strings.Count(out, "table inet personal_firewall")
}

func TestUnitRunsUnderSystemd(t *testing.T) {
	requireKernel(t)
	for _, tool := range []string{"systemd-nspawn", "nsenter"} {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("systemd test: %s not installed (apt-get install systemd-container util-linux)", tool)
		}
	}
	if _, err := os.Stat("/lib/systemd/systemd"); err != nil {
		t.Skip("systemd test: no systemd to boot (apt-get install systemd)")
	}
	dir := t.TempDir()
	stage := filepath.Join(dir, "stage")
	makeTarget(t, "install", stage)

	// The root the container boots: this machine's, read-only below an
	// overlay that takes every write, so nothing here changes.
	root, upper, work := filepath.Join(dir, "root"), filepath.Join(dir, "upper"), filepath.Join(dir, "work")
	for _, d := range []string{root, upper, work} {
		if err := os.Mkdir(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if out, err := exec.Command("mount", "-t", "overlay", "overlay", "-o",
		"lowerdir=/,upperdir="+upper+",workdir="+work, root).CombinedOutput(); err != nil {
		t.Skipf("systemd test: cannot put an overlay over / here: %v\n%s", err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", root).CombinedOutput(); err != nil {
			t.Logf("umount %s: %v\n%s; detaching it", root, err, out)
			exec.Command("umount", "--lazy", root).Run()
		}
	})
	mustRun(t, "cp", "-a", stage+"/.", root+"/")
	// The installed default config, but without its feed: nothing may
	// fetch the real Feodo Tracker list (the container has no network to
	// reach it anyway). And no copy of this machine's id.
	confPath := filepath.Join(root, confDir, "firewall_rules.json")
	conf := map[string]any{}
	b, err := os.ReadFile(confPath)
	if err == nil {
		err = json.Unmarshal(b, &conf)
	}
	if err != nil {
		t.Fatalf("the installed default config: %v", err)
	}
	conf["threat_feeds"] = []any{}
	if b, err = json.Marshal(conf); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(confPath, b, 0o644); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(root, "etc", "machine-id"))

	c := boot(t, root, filepath.Join(dir, "console.log"))

	// A client namespace joined to the container's by a veth pair.
	id := fmt.Sprintf("%d", os.Getpid()%100000)
	sub := os.Getpid()%200 + 20
	client, clientIP, fwIP := "pfwsc-"+id, fmt.Sprintf("10.214.%d.2", sub), fmt.Sprintf("10.214.%d.1", sub)
	mustRun(t, "ip", "netns", "add", client)
	t.Cleanup(func() { exec.Command("ip", "netns", "del", client).Run() })
	mustRun(t, "ip", "link", "add", "pfwsd"+id+"a", "netns", client, "type", "veth", "peer", "name", "pfwsd"+id+"b", "netns", strconv.Itoa(c.init))
	mustRun(t, "ip", "-n", client, "addr", "add", clientIP+"/24", "dev", "pfwsd"+id+"a")
	mustRun(t, "ip", "-n", client, "link", "set", "pfwsd"+id+"a", "up")
	c.mustRun("ip", "addr", "add", fwIP+"/24", "dev", "pfwsd"+id+"b")
	c.mustRun("ip", "link", "set", "pfwsd"+id+"b", "up")
	l := &lab{t: t}
	reaches := func(proto, addr string, timeout time.Duration) bool {
		return l.sendFrom(client, proto, "", addr, 1, timeout) == 1
	}

	if out, err := c.run("systemctl", "start", unitName); err != nil {
		t.Fatalf("systemctl start %s: %v\n%s\npfwd's journal:\n%s", unitName, err, out, c.journal())
	}
	if c.mainPID() == 0 || c.tables() != 1 {
		t.Fatalf("after systemctl start: main pid %d, %d pfw tables\n%s", c.mainPID(), c.tables(), c.journal())
	}
	if out, err := c.run("fwctl", "status"); err != nil || !strings.Contains(out, "pfwd is running") {
		t.Errorf("fwctl status: %v\n%s", err, out)
	}
	// The log: the contract's lines in the journal and in the log file.
	for _, where := range [][]string{
		{"journalctl", "--no-pager", "-o", "cat", "-t", "pfwd"},
		{"cat", "/var/log/personal-firewall/firewall.log"},
	} {
		out, err := c.run(where...)
		lines := strings.Split(out, "\n")
		if err != nil || !strings.Contains(out, " - INFO - pfwd started ") {
			t.Errorf("%s: %v, no start-up line:\n%s", strings.Join(where, " "), err, out)
		}
		for _, line := range lines {
			if !logLine.MatchString(line) {
				t.Errorf("%s: line %q is not in the log format", strings.Join(where, " "), line)
			}
		}
	}

	// Packets reach pfwd through the queue and the kernel's log, and its
	// rows reach the database, with every hardening directive in force.
	if !reaches("icmp", fwIP, 3*time.Second) {
		t.Errorf("ping to the container: no answer under the default allow policy\n%s", c.journal())
	}
	if reaches("tcp", hostPort(fwIP, 23), time.Second) {
		t.Error("tcp port 23 (blocked by the default config) got through")
	}
	c.mustRun("fwctl", "blacklist", "add", clientIP)
	if !eventually(3*time.Second, func() bool { return !reaches("icmp", fwIP, 500*time.Millisecond) }) {
		t.Error("ping still answered after fwctl blacklist add")
	}
	c.waitReasons(t, "Rule: Block Telnet", "Blacklisted IP")

	c.mustRun("systemctl", "reload", unitName)
	if !eventually(5*time.Second, func() bool { return strings.Contains(c.journal(), "why=SIGHUP") }) {
		t.Errorf("systemctl reload: pfwd did not log a SIGHUP reload\n%s", c.journal())
	}
	before := c.mainPID()
	c.mustRun("systemctl", "restart", unitName)
	if pid := c.mainPID(); pid == 0 || pid == before || c.tables() != 1 {
		t.Errorf("after systemctl restart: main pid %d (was %d), %d pfw tables, want a new pid and one table", pid, before, c.tables())
	}
	c.mustRun("systemctl", "enable", unitName)
	if out, _ := c.run("systemctl", "is-enabled", unitName); out != "enabled" {
		t.Errorf("after systemctl enable: is-enabled says %q", out)
	}

	// A crash is restarted (RestartSec=5s), and the table is replaced, not
	// duplicated; the blacklist, saved in the config, still holds.
	crashed := c.mainPID()
	c.mustRun("kill", "-KILL", strconv.Itoa(crashed))
	if !eventually(20*time.Second, func() bool {
		pid := c.mainPID()
		active, _ := c.run("systemctl", "is-active", unitName)
		return pid != 0 && pid != crashed && c.tables() == 1 && active == "active"
	}) {
		t.Fatalf("not restarted after a crash: main pid %d, %d pfw tables\n%s", c.mainPID(), c.tables(), c.journal())
	}
	if !eventually(5*time.Second, func() bool {
		out, err := c.run("fwctl", "status")
		return err == nil && strings.Contains(out, "pfwd is running")
	}) {
		t.Error("fwctl status does not reach the restarted pfwd")
	}
	if reaches("icmp", fwIP, 500*time.Millisecond) {
		t.Error("after the restart the blacklisted client's ping is answered")
	}

	c.mustRun("systemctl", "stop", unitName)
	if n := c.tables(); n != 0 {
		t.Errorf("after systemctl stop: %d pfw tables, want none", n)
	}
	if out, err := c.run("test", "-e", "/run/personal-firewall"); err == nil {
		t.Errorf("after systemctl stop /run/personal-firewall is still there %s", out)
	}
	// pfwd's own lines (systemd's note of the kill above is not one).
	if out, _ := c.run("journalctl", "--no-pager", "-o", "cat", "-p", "warning", "-t", "pfwd"); out != "" && !strings.Contains(out, "No entries") {
		t.Errorf("pfwd logged warnings or errors under systemd:\n%s", out)
	}
}

// boot starts systemd-nspawn on root in a network namespace of its own and
// waits for the container's systemd to finish booting. The container is
// powered off in t.Cleanup.
func boot(t *testing.T, root, console string) *container {
	t.Helper()
	log, err := os.Create(console)
	if err != nil {
		t.Fatal(err)
	}
	name := fmt.Sprintf("pfwunit-%d", os.Getpid())
	// --register=no --keep-unit: this host need not run systemd or machined.
	cmd := exec.Command("systemd-nspawn", "--directory="+root, "--machine="+name, "--private-network",
		"--boot", "--register=no", "--keep-unit", "--console=passive",
		// Only what every service stands on: none of the services this
		// machine enables (databases, container engines) boots with it.
		"systemd.unit=basic.target")
	cmd.Stdout, cmd.Stderr = log, log
	if err := cmd.Start(); err != nil {
		t.Fatalf("systemd-nspawn: %v", err)
	}
	done := make(chan struct{})
	go func() { cmd.Wait(); close(done) }()
	c := &container{t: t}
	t.Cleanup(func() {
		if c.init != 0 {
			c.run("systemctl", "poweroff")
		}
		select {
		case <-done:
		case <-time.After(20 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		log.Close()
		if t.Failed() {
			b, _ := os.ReadFile(console)
			t.Logf("container console:\n%s", b)
		}
	})
	if !eventually(30*time.Second, func() bool {
		c.init = initOf(cmd.Process.Pid)
		if c.init == 0 {
			return false
		}
		out, _ := c.run("systemctl", "is-system-running")
		return out == "running" || out == "degraded"
	}) {
		out, _ := c.run("systemctl", "--failed", "--no-pager")
		t.Fatalf("the container's systemd did not finish booting in 30s (pid 1 = %d):\n%s", c.init, out)
	}
	if out, _ := c.run("systemctl", "is-system-running"); out == "degraded" {
		failed, _ := c.run("systemctl", "--failed", "--no-pager")
		t.Logf("the container booted degraded (units of this machine that fail in a container):\n%s", failed)
	}
	return c
}

// initOf finds the container's PID 1 among nspawn's descendants: the
// process whose innermost PID is 1.
func initOf(nspawn int) int {
	queue := []int{nspawn}
	for len(queue) > 0 {
		pid := queue[0]
		queue = queue[1:]
		if f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid)); err == nil {
			sc := bufio.NewScanner(f)
			for sc.Scan() {
				if ns, ok := strings.CutPrefix(sc.Text(), "NSpid:"); ok {
					if fs := strings.Fields(ns); len(fs) > 1 && fs[len(fs)-1] == "1" {
						f.Close()
						return pid
					}
				}
			}
			f.Close()
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%d/children", pid, pid))
		for _, s := range strings.Fields(string(b)) {
			if child, err := strconv.Atoi(s); err == nil {
				queue = append(queue, child)
			}
		}
	}
	return 0
}

// journal is the unit's log in the container.
func (c *container) journal() string {
	out, _ := c.run("journalctl", "--no-pager", "-o", "cat", "-u", unitName)
	return out
}

// waitReasons waits until the database in the container has a blocked row
// with each reason, read with fwctl as an administrator would.
func (c *container) waitReasons(t *testing.T, reasons ...string) {
	t.Helper()
	var rows []store.LogRow
	have := func(reason string) bool {
		for _, r := range rows {
			if r.Reason == reason {
				return true
			}
		}
		return false
	}
	all := func() bool {
		out, err := c.run("fwctl", "logs", "--type", "blocked", "--json")
		if err != nil || json.Unmarshal([]byte(out), &rows) != nil {
			return false
		}
		for _, r := range reasons {
			if !have(r) {
				return false
			}
		}
		return true
	}
	if !eventually(5*time.Second, all) {
		t.Errorf("blocked rows in the container's database: %+v; want the reasons %q", rows, reasons)
	}
}
