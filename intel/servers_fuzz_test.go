package intel

import (
	"bufio"
	"bytes"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzReadResolvers feeds readResolvers any resolv.conf, a file DHCP
// clients and resolvconf rewrite from what the network says. Each address
// it returns is valid and comes, in order, from a "nameserver ADDRESS"
// line; nothing else is taken; and a missing second file changes nothing.
func FuzzReadResolvers(f *testing.F) {
	for _, seed := range []string{
		"# generated\nsearch example.com\nnameserver 192.0.2.53\n  nameserver\t2001:db8::53 # v6\nnameserver fe80::1%eth0\noptions edns0\n",
		"nameserver\nnameserver ns1.example\n#nameserver 192.0.2.1\n;nameserver 192.0.2.2\nnameservers 192.0.2.3\nnameserver 192.0.2.4\n\x00\xff",
		"nameserver 127.0.0.53\r\nnameserver ::ffff:192.0.2.1\r\n",
		"nameserver 192.0.2.1 192.0.2.2\nnameserver 0.0.0.0\nnameserver ::\n",
		"nameserver " + strings.Repeat("1", 70000) + "\nnameserver 192.0.2.9\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	dir := f.TempDir()
	path := filepath.Join(dir, "resolv.conf")
	f.Fuzz(func(t *testing.T, content []byte) {
		if err := os.WriteFile(path, content, 0o644); err != nil {
			t.Fatal(err)
		}
		got := readResolvers([]string{path, filepath.Join(dir, "missing.conf")})

		// The nameserver lines, as whitespace-separated fields, in order.
		var lines [][]string
		sc := bufio.NewScanner(bytes.NewReader(content))
		for sc.Scan() {
			if fields := strings.Fields(sc.Text()); len(fields) >= 2 && fields[0] == "nameserver" {
				lines = append(lines, fields)
			}
		}
		next := 0
		for _, a := range got {
			if !a.IsValid() {
				t.Fatalf("readResolvers returned an invalid address: %v", got)
			}
			for next < len(lines) && !sameAddr(lines[next][1], a) {
				next++
			}
			if next == len(lines) {
				t.Fatalf("%v is not from a nameserver line, in order (lines %q)", a, lines)
			}
			next++
		}
	})
}

func sameAddr(field string, a netip.Addr) bool {
	b, err := netip.ParseAddr(field)
	return err == nil && b == a
}
