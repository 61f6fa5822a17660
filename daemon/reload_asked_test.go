package daemon

import (
	"fmt"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/pfw/pfw/rules"
)

// A reload asked for through Options.Reload (pfwd's SIGHUP) is applied
// with "SIGHUP" as its reason, and Ready is called again once it ended
// (READY=1 after RELOADING=1, for systemd); one asked for while the
// daemon starts is applied once it runs.
func TestReloadAsked(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	opts := testOptions(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"]}`)
	reload := make(chan struct{}, 1)
	reload <- struct{}{} // before the start
	readyAgain := make(chan struct{}, 4)
	opts.Reload, opts.Ready = reload, func() { readyAgain <- struct{}{} }
	logBuf := startTestDaemon(t, opts)

	const line = " - INFO - Config unchanged: the rules in force stay why=SIGHUP"
	for i := range 2 {
		select {
		case <-readyAgain:
		case <-time.After(10 * time.Second):
			t.Fatalf("reload %d: Ready not called again within 10 s; log:\n%s", i+1, logBuf.String())
		}
		if n := strings.Count(logBuf.String(), line); n != i+1 {
			t.Fatalf("reload %d: %d lines %q; want %d:\n%s", i+1, n, line, i+1, logBuf.String())
		}
		reload <- struct{}{}
	}
}

// A config file mended back to the rules in force after an invalid edit
// gets a log line: the log's last word on the file must not stay the
// error, though nothing is applied. A mere touch of the file stays quiet.
func TestMendedConfigIsLogged(t *testing.T) {
	if !inFreshNetNS(t, 60*time.Second) {
		return
	}
	opts := testOptions(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"]}`)
	cfgPath := opts.ConfigPath
	good := parseConfig(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"]}`)
	logBuf := startTestDaemon(t, opts)
	waitLog := func(what, text string) {
		t.Helper()
		deadline := time.Now().Add(10 * time.Second)
		for !strings.Contains(logBuf.String(), text) {
			if time.Now().After(deadline) {
				t.Fatalf("no %s line %q within 10 s:\n%s", what, text, logBuf.String())
			}
			time.Sleep(20 * time.Millisecond)
		}
	}
	if err := os.WriteFile(cfgPath, []byte(`{"default_policy": "maybe"}`), 0o644); err != nil {
		t.Fatal(err)
	}
	waitLog("rejection", "ERROR - Config not reloaded")
	if err := rules.Save(cfgPath, good); err != nil {
		t.Fatal(err)
	}
	waitLog("mended", "INFO - Config file valid again: it holds the rules in force, which stay why=\"file changed\"")
	if err := rules.Save(cfgPath, good); err != nil { // a touch
		t.Fatal(err)
	}
	time.Sleep(500 * time.Millisecond)
	if n := strings.Count(logBuf.String(), "Config file valid again"); n != 1 {
		t.Errorf("%d lines \"Config file valid again\", want 1 (a touch is quiet):\n%s", n, logBuf.String())
	}

	// A reload says what changed.
	if err := rules.Save(cfgPath, parseConfig(t, `{"default_policy": "allow", "whitelist_ips": ["127.0.0.1", "::1"],
		"blacklist_ips": ["203.0.113.7"], "rules": [{"name": "SSH", "action": "allow", "protocol": "tcp", "ports": [22]}]}`)); err != nil {
		t.Fatal(err)
	}
	waitLog("reload", `INFO - Config reloaded: rule "SSH" added; blacklist +1 -0 (+203.0.113.7) why="file changed" rules=1`)

	// A generated file that changes many rules gets a bounded line.
	var many []string
	for i := range 25 {
		many = append(many, fmt.Sprintf(`{"name": "R%d", "action": "block", "protocol": "tcp", "ports": [%d]}`, i, 1000+i))
	}
	if err := rules.Save(cfgPath, parseConfig(t, `{"default_policy": "allow", "rules": [`+strings.Join(many, ",")+`]}`)); err != nil {
		t.Fatal(err)
	}
	waitLog("bounded reload", `rule "R9" added; and 18 more changes why="file changed" rules=25`) // 25 rules, SSH, the two lists
}
