package control

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"net"
	"net/http"
	"path/filepath"
	"reflect"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// FuzzQuery answers Query with arbitrary bytes, as whatever listens on the
// socket path may send: an old or broken pfwd, another program. Query
// returns a Status or an error, never both; an error names the socket, so
// fwctl's one line says where it asked; and a Status comes only from a 200
// answer.
func FuzzQuery(f *testing.F) {
	ok := `{"running":true,"pid":42,"version":"dev","feeds":[{"name":"f","entries":3}],"sets":{"blacklist_v4":2}}`
	for _, seed := range []string{
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: " + strconv.Itoa(len(ok)) + "\r\n\r\n" + ok,
		"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n\r\n" + ok + "\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strconv.FormatInt(int64(len(ok)), 16) + "\r\n" + ok + "\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1099511627776\r\n\r\n{\"pid\":",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
		"HTTP/1.1 200 OK\r\n\r\n{\"pid\":\"42\"}",
		"HTTP/1.1 200 OK\r\n\r\n{\"sets\":{\"a\":1e400}}",
		"HTTP/1.1 200 OK\r\n\r\n[1,2,3]",
		"HTTP/1.1 200 OK\r\n\r\n{} trailing",
		"HTTP/1.1 200 OK\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 200 OK\r\n\r\n{}",
		"HTTP/1.1 301 Moved\r\nLocation: http://pfwd.example/status\r\n\r\n",
		"HTTP/1.1 302 Found\r\nLocation: https://pfwd/status\r\n\r\n",
		"HTTP/1.1 404 Not Found\r\nContent-Length: 9\r\n\r\nnot found",
		"HTTP/1.1 503 \x1b[31mred\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\n{\"running\":true}",
		"HTTP/2.0 200 OK\r\n\r\n{}",
		"SSH-2.0-OpenSSH_9.6\r\n",
		"",
		"\x00\x01\x02",
	} {
		f.Add([]byte(seed))
	}
	path, answer := rawServer(f)
	f.Fuzz(func(t *testing.T, resp []byte) {
		answer(func(c net.Conn) { c.Write(resp) })
		st, err := Query(context.Background(), path)
		if err != nil {
			if !reflect.DeepEqual(st, Status{}) {
				t.Fatalf("Query returned %+v and error %v", st, err)
			}
			if msg := err.Error(); !strings.Contains(msg, path) {
				t.Fatalf("error %q does not name the socket %s", msg, path)
			}
			return
		}
		if code := finalStatus(resp); code != http.StatusOK {
			t.Fatalf("Query accepted a %d answer as %+v", code, st)
		}
	})
}

// finalStatus is the status of the answer in resp that a client acts on:
// the first after any 1xx interim ones; 0 when there is none.
func finalStatus(resp []byte) int {
	br := bufio.NewReader(bytes.NewReader(resp))
	for {
		r, err := http.ReadResponse(br, nil)
		if err != nil {
			return 0
		}
		if r.StatusCode >= 200 || r.StatusCode == http.StatusSwitchingProtocols {
			return r.StatusCode
		}
	}
}

// rawServer listens on a socket in a temporary directory and answers each
// request there by calling the last function given to answer with the
// connection, which it closes afterwards.
func rawServer(tb testing.TB) (path string, answer func(func(net.Conn))) {
	tb.Helper()
	path = filepath.Join(tb.TempDir(), "pfwd.sock")
	l, err := net.Listen("unix", path)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { l.Close() })
	var mu sync.Mutex
	var respond func(net.Conn)
	go func() {
		for {
			c, err := l.Accept()
			if errors.Is(err, net.ErrClosed) {
				return
			}
			if err != nil {
				continue
			}
			mu.Lock()
			do := respond
			mu.Unlock()
			go func() {
				defer c.Close()
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil && do != nil {
					do(c)
				}
			}()
		}
	}()
	return path, func(fn func(net.Conn)) {
		mu.Lock()
		respond = fn
		mu.Unlock()
	}
}
