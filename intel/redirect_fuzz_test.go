package intel

import (
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// FuzzRefuseLocalRedirect feeds the redirect guard any Location a feed
// server may send, resolved against the feed's URL as net/http does. A
// redirect it lets through names a host that is not this one by any
// spelling the client or a resolver accepts: no loopback, unspecified or
// own address however net/netip or inet_aton reads it (127.1, 0x7f.1,
// 2130706433), no localhost, no non-ASCII name (net/http dials its IDNA
// mapping); the verdict ignores case and a final dot; a feed on this host
// may redirect anywhere; and a refusal is one printable line.
func FuzzRefuseLocalRedirect(f *testing.F) {
	for _, s := range []string{
		"http://127.0.0.1:9999/x", "http://127.8.9.10/x", "http://[::1]:9999/x", "http://[::ffff:127.0.0.1]/x",
		"http://0.0.0.0/x", "http://[::]/x", "http://10.77.0.1/x", "https://[fe80::1%25eth1]/x",
		"http://localhost/x", "http://LocalHost./x", "http://admin.localhost/x", "http://127.1/x",
		"http://2130706433/x", "http://0x7f.1/x", "http://0X7F.0.0.1/x", "http://017700000001/x", "http://010.077.000.001/x",
		"http://１２７.０.０.１/x", "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/x", "http://127。0。0。1/x", "http://[::127.0.0.1]/x",
		"http://mirror.example/x", "https://[2001:db8::1]/x", "http://1e100.net/x", "http://0x7f.example/x",
		"/relative", "//127.0.0.1/x", "https:127.0.0.1", "http://user@127.0.0.1/", "http://127.0.0.1./x",
	} {
		f.Add(s, false)
	}
	f.Add("http://localhost/y", true)
	f.Add("http://１２７.０.０.１/y", true)
	host := []netip.Addr{netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("fe80::1%eth0")}
	remote, _ := url.Parse("http://feed.example/list")
	onHost, _ := url.Parse("http://10.77.0.1:8000/list")
	f.Fuzz(func(t *testing.T, location string, fromHost bool) {
		origin := remote
		if fromHost {
			origin = onHost
		}
		target, err := origin.Parse(location) // as net/http resolves a Location
		if err != nil {
			return
		}
		err = refuseLocalRedirect(target, origin, host)
		if fromHost {
			if err != nil {
				t.Fatalf("a feed on this host may redirect within it: %v", err)
			}
			return
		}
		if err != nil {
			msg := err.Error()
			if strings.IndexFunc(msg, func(r rune) bool { return !unicode.IsPrint(r) }) >= 0 {
				t.Fatalf("refusal of %q holds an unprintable character: %q", location, msg)
			}
			return
		}
		name := target.Hostname()
		if strings.IndexFunc(name, func(r rune) bool { return r > unicode.MaxASCII }) >= 0 {
			t.Fatalf("redirect to %q let through: a non-ASCII name is dialed as its IDNA mapping", name)
		}
		lower := strings.TrimSuffix(strings.ToLower(name), ".")
		if lower == "localhost" || strings.HasSuffix(lower, ".localhost") {
			t.Fatalf("redirect to %q let through", name)
		}
		if a, err := netip.ParseAddr(lower); err == nil && isThisHost(a.Unmap().WithZone(""), host) {
			t.Fatalf("redirect to %q let through", name)
		}
		if a, ok := inetAton(lower); ok && isThisHost(a, host) {
			t.Fatalf("redirect to %q let through: inet_aton reads it as %v", name, a)
		}
		for _, other := range []string{strings.ToUpper(name), name + "."} {
			u := *target
			if u.Host = other; strings.Contains(other, ":") {
				u.Host = "[" + other + "]"
			}
			if err := refuseLocalRedirect(&u, origin, host); err != nil {
				t.Fatalf("redirect to %q let through, but to %q refused: %v", name, other, err)
			}
		}
	})
}

func isThisHost(a netip.Addr, host []netip.Addr) bool {
	if a.IsLoopback() || a.IsUnspecified() {
		return true
	}
	for _, h := range host {
		if h.WithZone("") == a {
			return true
		}
	}
	return false
}

// inetAton reads s the way glibc's getaddrinfo does before it asks DNS
// (inet_aton): one to four parts, each decimal, octal (a leading 0) or
// hex (0x and a digit at least), the last filling the bytes left.
func inetAton(s string) (netip.Addr, bool) {
	parts := strings.Split(s, ".")
	if len(parts) > 4 {
		return netip.Addr{}, false
	}
	var v uint64
	for i, p := range parts {
		base := 10
		switch {
		case strings.HasPrefix(p, "0x"):
			p, base = p[2:], 16 // "0x" alone is no number to getaddrinfo
		case len(p) > 1 && p[0] == '0':
			p, base = p[1:], 8
		}
		n, err := strconv.ParseUint(p, base, 32)
		if err != nil || strings.ContainsAny(p, "+-_") {
			return netip.Addr{}, false
		}
		if i < len(parts)-1 {
			if n > 255 {
				return netip.Addr{}, false
			}
			v = v<<8 | n
			continue
		}
		left := 4 - i // bytes the last part fills
		if n >= 1<<(8*left) {
			return netip.Addr{}, false
		}
		v = v<<(8*left) | n
	}
	return netip.AddrFrom4([4]byte{byte(v >> 24), byte(v >> 16), byte(v >> 8), byte(v)}), true
}
