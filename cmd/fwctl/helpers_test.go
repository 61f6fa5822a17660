package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
)

// testConfig is the contract's example grown with the cases explain needs:
// a rule with sources before a catch-all for the same port, a disabled
// rule, and an outbound rule.
const testConfig = `{
  "default_policy": "allow",
  "rules": [
    {"name": "Block Telnet and SMB", "action": "block", "protocol": "tcp", "ports": [23, 445]},
    {"name": "Game servers", "action": "allow", "protocol": "udp", "ports": ["27000-27050"],
     "src_ips": ["198.51.100.0/24", "2001:db8::/32"], "direction": "in", "enabled": false},
    {"name": "SSH from the lab", "action": "allow", "protocol": "tcp", "ports": [22],
     "src_ips": ["10.0.0.0/8", "2001:db8:1::/48"]},
    {"name": "Block SSH", "action": "block", "protocol": "tcp", "ports": [22]},
    {"name": "No outbound SMTP", "action": "block", "protocol": "tcp", "ports": [25], "direction": "out"}
  ],
  "whitelist_ips": ["127.0.0.1", "::1"],
  "blacklist_ips": ["203.0.113.7", "192.0.2.0/24", "2001:db8:dead::/48"],
  "rate_limit": {"max_connections": 100, "window_seconds": 10},
  "allowed_sample_rate": 0.01,
  "threat_feeds": [
    {"name": "Feodo Tracker", "url": "https://feodotracker.abuse.ch/downloads/ipblocklist.txt",
     "interval": "1h", "threat_level": "high"},
    {"name": "Spamhaus DROP", "url": "https://www.spamhaus.org/drop/drop.txt", "interval": "6h",
     "threat_level": "critical"}
  ]
}
`

// testEnv is one test's files. The PFW_* variables point at them, so a
// test that forgets --config can never touch /etc.
type testEnv struct {
	dir, config, db, socket string
}

func newEnv(t *testing.T, config string) *testEnv {
	t.Helper()
	dir := t.TempDir()
	e := &testEnv{
		dir:    dir,
		config: filepath.Join(dir, "firewall_rules.json"),
		db:     filepath.Join(dir, "firewall.db"),
		socket: filepath.Join(dir, "pfwd.sock"),
	}
	if config != "" {
		if err := os.WriteFile(e.config, []byte(config), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PFW_CONFIG", e.config)
	t.Setenv("PFW_DB", e.db)
	t.Setenv("PFW_SOCKET", e.socket)
	return e
}

// result is one fwctl run.
type result struct {
	code           int
	stdout, stderr string
}

func (r result) String() string {
	return fmt.Sprintf("exit %d\nstdout:\n%s\nstderr:\n%s", r.code, r.stdout, r.stderr)
}

func fwctl(t *testing.T, args ...string) result {
	t.Helper()
	var out, errOut bytes.Buffer
	code := run(args, &out, &errOut)
	return result{code: code, stdout: out.String(), stderr: errOut.String()}
}

// mustRun runs fwctl and fails the test unless it exits 0.
func mustRun(t *testing.T, args ...string) result {
	t.Helper()
	r := fwctl(t, args...)
	if r.code != 0 {
		t.Fatalf("fwctl %s: %v", strings.Join(args, " "), r)
	}
	return r
}

// decode unmarshals a --json output strictly into v.
func decode(t *testing.T, r result, v any) {
	t.Helper()
	dec := json.NewDecoder(strings.NewReader(r.stdout))
	dec.DisallowUnknownFields()
	if err := dec.Decode(v); err != nil {
		t.Fatalf("decode %q: %v", r.stdout, err)
	}
}

// checkErrorLine asserts one "fwctl: " line on stderr containing want.
func checkErrorLine(t *testing.T, r result, want string) {
	t.Helper()
	lines := strings.Split(strings.TrimRight(r.stderr, "\n"), "\n")
	if !strings.HasPrefix(lines[0], "fwctl: ") || !strings.Contains(lines[0], want) {
		t.Errorf("stderr = %q, want a first line \"fwctl: ...%s...\"", r.stderr, want)
	}
	if r.code == 1 && len(lines) != 1 {
		t.Errorf("stderr has %d lines, want 1: %q", len(lines), r.stderr)
	}
}

// syncBuffer is a bytes.Buffer that a running command writes while the
// test reads it.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// runBackground starts fwctl and returns its output buffers and a stop
// function that cancels it (as SIGINT would) and returns its exit code.
func runBackground(args ...string) (stdout, stderr *syncBuffer, stop func() int) {
	stdout, stderr = &syncBuffer{}, &syncBuffer{}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan int, 1)
	go func() { done <- runContext(ctx, args, stdout, stderr) }()
	return stdout, stderr, func() int {
		cancel()
		return <-done
	}
}
