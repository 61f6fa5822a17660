package nft

import (
	"fmt"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync/atomic"
	"testing"
)

func requireRoot(t testing.TB) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("skipping: kernel test needs root (it creates a network namespace)")
	}
}

var netnsSeq atomic.Int64

// testNetNS is a network namespace a test made for itself, removed when the
// test ends however it ends.
type testNetNS struct {
	name string
	fd   int
}

var notNameChar = regexp.MustCompile(`[^a-zA-Z0-9]+`)

func newNetNS(t testing.TB) *testNetNS {
	t.Helper()
	requireRoot(t)
	tn := notNameChar.ReplaceAllString(t.Name(), "-")
	if len(tn) > 40 {
		tn = tn[:40]
	}
	name := fmt.Sprintf("pfwtest-nft-%s-%d-%d", tn, os.Getpid(), netnsSeq.Add(1))
	if out, err := exec.Command("ip", "netns", "add", name).CombinedOutput(); err != nil {
		t.Fatalf("ip netns add %s: %v: %s", name, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("ip", "netns", "del", name).CombinedOutput(); err != nil {
			t.Errorf("ip netns del %s: %v: %s", name, err, out)
		}
	})
	f, err := os.Open("/var/run/netns/" + name)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return &testNetNS{name: name, fd: int(f.Fd())}
}

// run runs a command inside the namespace and returns its stdout.
func (n *testNetNS) run(t testing.TB, args ...string) string {
	t.Helper()
	out, err := n.try(args...)
	if err != nil {
		t.Fatalf("%s: %v", strings.Join(args, " "), err)
	}
	return out
}

func (n *testNetNS) try(args ...string) (string, error) {
	cmd := exec.Command("ip", append([]string{"netns", "exec", n.name}, args...)...)
	var stderr strings.Builder
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return string(out), fmt.Errorf("%w: %s", err, stderr.String())
	}
	return string(out), nil
}
