package intel

import (
	"bufio"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/netip"
	"reflect"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// FuzzFetch answers a feed fetch with arbitrary bytes from a server on
// loopback: status line, headers (Content-Length, Content-Encoding,
// Location, ETag), body. Every connection the client makes, whatever the
// address it dials, goes to that server, so a redirect sends nothing on
// the network, and the address is recorded. It checks what the Manager and the log rely on: a Response or
// an error, never both; the error names the feed's URL and never shows its
// access key, nor a control character the server sent (it goes to the
// log); a StatusError carries the standard text, not the server's; no
// redirect dials this host (loopback, localhost, its own address), however
// the Location spells it, nor goes past the redirect cap; 304 comes with no entries; and entries,
// within both caps, are canonical and sorted.
func FuzzFetch(f *testing.F) {
	gz := func(s string) string {
		var b bytes.Buffer
		w := gzip.NewWriter(&b)
		w.Write([]byte(s))
		w.Close()
		return b.String()
	}
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\nETag: \"v2\"\r\nContent-Length: 22\r\n\r\n192.0.2.1\n198.51.100.0/24\n",
		"HTTP/1.1 200 OK\r\n\r\n# Feodo Tracker Botnet C2 IP Blocklist\n# DstIP\n192.0.2.1\n# END 1 entries\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n192.0.2.1\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 30\r\n\r\n192.0.2.1\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\na\r\n192.0.2.1\n\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gz(strings.Repeat("192.0.2.1\n", 2000)),
		"HTTP/1.1 200 OK\r\nContent-Encoding: gzip\r\n\r\n" + gz("198.51.100.7\n"),
		"HTTP/1.1 304 Not Modified\r\nETag: \"v3\"\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: http://127.0.0.1:8080/list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: http://localhost./list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: http://10.77.0.1/list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: http://0x7f.1/list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: http://１２７.０.０.１/list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: http://%E2%93%9B%E2%93%9E%E2%93%92%E2%93%90%E2%93%9B%E2%93%97%E2%93%9E%E2%93%A2%E2%93%A3/list\r\n\r\n",
		"HTTP/1.1 301 Moved\r\nLocation: http://mirror.example/list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: /again?key=other\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: https://mirror.example/list\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: ht\x7ftp://x\r\n\r\n",
		"HTTP/1.1 503 \x1b[31mService Unavailable\r\nRetry-After: 120\r\n\r\n",
		"HTTP/1.1 999 Whatever\r\n\r\n",
		"HTTP/1.1 200 OK\r\n\r\n<html><body>captive portal</body></html>\n",
		"HTTP/1.0 200 OK\r\n\r\n2001:db8::/32\n::ffff:192.0.2.1\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n192.0.2.1\n",
		"\x1b[2J\r\n\r\n",
		"",
	} {
		f.Add([]byte(seed))
	}
	srv := newRawHTTPServer(f)
	host := []netip.Addr{netip.MustParseAddr("10.77.0.1")}
	var (
		mu     sync.Mutex
		dialed []string // the addresses net/http asked for, in order
	)
	client := &http.Client{
		Transport: &http.Transport{
			Proxy:             nil,
			DisableKeepAlives: true, // each request its own connection: the server closes after one answer
			DialContext: func(ctx context.Context, _, addr string) (net.Conn, error) {
				mu.Lock()
				dialed = append(dialed, addr)
				mu.Unlock()
				var d net.Dialer
				return d.DialContext(ctx, "tcp", srv.addr)
			},
		},
		Timeout:       5 * time.Second,
		CheckRedirect: checkRedirect,
	}
	fetcher := &Fetcher{Client: client, MaxSize: 4 << 10, MaxEntries: 64}
	const feedURL = "http://feeds.example/list.txt?key=S3CR3TKEY"
	prev := Validators{ETag: `"v1"`, LastModified: "Wed, 25 Nov 2026 15:04:05 GMT"}

	f.Fuzz(func(t *testing.T, answer []byte) {
		srv.answerWith(answer)
		mu.Lock()
		dialed = nil
		mu.Unlock()
		resp, err := fetcher.fetch(context.Background(), feedURL, prev, fetchOpts{host: host})
		mu.Lock()
		asked := slices.Clone(dialed)
		mu.Unlock()

		if len(asked) > maxRedirects+1 {
			t.Fatalf("%d connections: past the cap of %d redirects", len(asked), maxRedirects)
		}
		for i, addr := range asked {
			hostname, _, _ := net.SplitHostPort(addr)
			if why := localHost(hostname, host); i > 0 && why != "" {
				t.Fatalf("a redirect dialed %s (%s); dialed: %q", addr, why, asked)
			}
		}
		if err != nil {
			if !reflect.DeepEqual(resp, Response{}) {
				t.Fatalf("fetch returned %+v and error %v", resp, err)
			}
			msg := err.Error()
			if !strings.HasPrefix(msg, "fetch http://feeds.example/list.txt?…: ") || strings.Contains(msg, "S3CR3TKEY") {
				t.Fatalf("error does not name the feed without its key: %s", msg)
			}
			if i := strings.IndexFunc(msg, func(r rune) bool { return r < 0x20 || r == 0x7f }); i >= 0 {
				t.Fatalf("error holds control character %q: %q", msg[i], msg)
			}
			var se *StatusError
			if errors.As(err, &se) && se.Status != fmt.Sprintf("%d %s", se.Code, http.StatusText(se.Code)) {
				t.Fatalf("status error %q is not the standard text of %d", se.Status, se.Code)
			}
			return
		}
		if resp.NotModified {
			if !reflect.DeepEqual(resp.Result, Result{}) {
				t.Fatalf("not modified, with a result: %+v", resp.Result)
			}
			return
		}
		res := resp.Result
		if len(res.Entries) > fetcher.MaxEntries || res.Invalid*2 > res.Lines {
			t.Fatalf("accepted %d entries, %d of %d lines invalid", len(res.Entries), res.Invalid, res.Lines)
		}
		checkEntries(t, res.Entries, false)
	})
}

// rawHTTPServer answers every HTTP request on a loopback port with the
// same raw bytes and closes the connection.
type rawHTTPServer struct {
	addr   string
	mu     sync.Mutex
	answer []byte
}

func newRawHTTPServer(tb testing.TB) *rawHTTPServer {
	tb.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	s := &rawHTTPServer{addr: l.Addr().String()}
	go func() {
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			go s.serve(c)
		}
	}()
	return s
}

func (s *rawHTTPServer) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := http.ReadRequest(bufio.NewReader(c)); err != nil {
		return // a TLS handshake, for a redirect to https
	}
	s.mu.Lock()
	answer := s.answer
	s.mu.Unlock()
	c.Write(answer)
}

func (s *rawHTTPServer) answerWith(b []byte) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.answer = b
}
