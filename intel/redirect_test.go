package intel

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"
)

// redirectTransport redirects from to to and answers any other URL with a
// one-address list, recording what was asked; it sends nothing on the
// network.
type redirectTransport struct {
	from, to string
	mu       sync.Mutex
	asked    []string
}

func (rt *redirectTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	rt.mu.Lock()
	rt.asked = append(rt.asked, req.URL.String())
	rt.mu.Unlock()
	resp := &http.Response{StatusCode: http.StatusOK, Header: http.Header{}, Request: req,
		Body: io.NopCloser(strings.NewReader("192.0.2.1\n"))}
	if req.URL.String() == rt.from {
		resp.StatusCode = http.StatusFound
		resp.Header.Set("Location", rt.to)
	}
	return resp, nil
}

func (rt *redirectTransport) wasAsked(u string) bool {
	rt.mu.Lock()
	defer rt.mu.Unlock()
	return slices.Contains(rt.asked, u)
}

func TestFetchRefusesRedirectsToThisHost(t *testing.T) {
	const remote = "http://feed.example/list"
	host := []netip.Addr{netip.MustParseAddr("10.77.0.1"), netip.MustParseAddr("fe80::1%eth0")}
	tests := []struct {
		from, to string
		wantErr  string // "" when the redirect is followed
	}{
		{remote, "http://127.0.0.1:9999/x", "127.0.0.1 is loopback"},
		{remote, "http://127.8.9.10/x", "127.8.9.10 is loopback"},
		{remote, "http://[::1]:9999/x", "::1 is loopback"},
		{remote, "http://[::ffff:127.0.0.1]/x", "127.0.0.1 is loopback"},
		{remote, "http://0.0.0.0:9999/x", "0.0.0.0 is unspecified"},
		{remote, "http://[::]:9999/x", ":: is unspecified"},
		{remote, "http://10.77.0.1:9999/x", "10.77.0.1 is this host's address"},
		{remote, "https://[fe80::1%25eth1]/x", "fe80::1 is this host's address"},
		{remote, "http://localhost:9999/x", "localhost is loopback"},
		{remote, "http://LocalHost./x", "localhost is loopback"},
		{remote, "http://admin.localhost/x", "admin.localhost is loopback"},
		{remote, "http://127.1/x", "127.1 is not a standard IP address"},
		{remote, "http://2130706433/x", "2130706433 is not a standard IP address"},
		{remote, "http://0x7f.1/x", "0x7f.1 is not a standard IP address"},
		{remote, "http://010.077.000.001/x", "010.077.000.001 is not a standard IP address"},
		// Found by FuzzFetch's dial check: net/http dials the IDNA mapping
		// of a non-ASCII name, so these reached loopback services.
		{remote, "http://１２７.０.０.１:9999/x", `"\uff11\uff12\uff17.\uff10.\uff10.\uff11" is not an ASCII host name`},
		{remote, "http://ⓛⓞⓒⓐⓛⓗⓞⓢⓣ/x", "is not an ASCII host name"},
		{remote, "http://127。0。0。1/x", "is not an ASCII host name"},
		// Found by FuzzRefuseLocalRedirect: the server's name went into the
		// error, and so the log, unquoted (here a right-to-left override).
		{remote, "http://%E2%80%AE127.1/x", `"\u202e127.1" is not an ASCII host name`},
		{remote, "http://%E2%93%9B%E2%93%9E%E2%93%92%E2%93%90%E2%93%9B%E2%93%97%E2%93%9E%E2%93%A2%E2%93%A3/x", "is not an ASCII host name"},
		// Elsewhere, and names, are followed.
		{remote, "http://mirror.example/x", ""},
		{remote, "http://10.77.0.2:9999/x", ""},
		{remote, "https://[2001:db8::1]/x", ""},
		{remote, "http://1e100.net/x", ""},
		{remote, "http://0x7f.example/x", ""},
		// A feed configured on this host may redirect within it.
		{"http://127.0.0.1:8000/x", "http://127.0.0.1:9000/y", ""},
		{"http://10.77.0.1/x", "http://localhost/y", ""},
		{"http://127.0.0.1:8000/x", "http://１２７.０.０.１:9000/y", ""},
	}
	for _, tt := range tests {
		t.Run(tt.from+" to "+tt.to, func(t *testing.T) {
			rt := &redirectTransport{from: tt.from, to: tt.to}
			f := &Fetcher{Client: &http.Client{Transport: rt}}
			resp, err := f.fetch(t.Context(), tt.from, Validators{}, fetchOpts{host: host})
			if tt.wantErr == "" {
				if err != nil || len(resp.Result.Entries) != 1 {
					t.Fatalf("fetch = %+v, %v; want the redirect followed", resp, err)
				}
				return
			}
			if err == nil || !strings.Contains(err.Error(), "refusing redirect to ") || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want a refused redirect: %s", err, tt.wantErr)
			}
			if len(rt.asked) != 1 {
				t.Errorf("requests %q, want only the first", rt.asked)
			}
		})
	}
}

// TestFetchRedirectPolicyKept checks that the guard adds to a client's own
// redirect policy and does not replace it: NewHTTPClient's cap of 5.
func TestFetchRedirectPolicyKept(t *testing.T) {
	loop := listenOn(t, "127.0.0.1:0", http.RedirectHandler("/again", http.StatusFound))
	f := &Fetcher{Client: NewHTTPClient(time.Second, 5*time.Second)}
	_, err := f.fetch(t.Context(), loop.URL, Validators{}, fetchOpts{})
	if err == nil || !strings.Contains(err.Error(), "stopped after 5 redirects") {
		t.Errorf("error = %v, want NewHTTPClient's redirect cap", err)
	}
}

// listenOn starts an HTTP server with handler on addr (a loopback address).
func listenOn(t *testing.T, addr string, handler http.Handler) *httptest.Server {
	t.Helper()
	l, err := net.Listen("tcp", addr)
	if err != nil {
		t.Fatalf("listen on %s: %v", addr, err)
	}
	ts := httptest.NewUnstartedServer(handler)
	ts.Listener.Close()
	ts.Listener = l
	ts.Start()
	t.Cleanup(ts.Close)
	return ts
}

// TestFetchReportsServers checks that every server a fetch connects to is
// reported, a redirect's target included, and a server that refuses the
// connection too.
func TestFetchReportsServers(t *testing.T) {
	second := listenOn(t, "127.0.0.2:0", http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "192.0.2.1\n")
	}))
	first := listenOn(t, "127.0.0.1:0", http.RedirectHandler(second.URL+"/list", http.StatusFound))
	closed := listenOn(t, "127.0.0.3:0", http.NotFoundHandler())
	closed.Close() // nothing listens there any more: the connection is refused

	tests := []struct {
		name, url string
		want      []netip.Addr
		wantErr   bool
	}{
		{name: "redirect", url: first.URL, want: []netip.Addr{netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2")}},
		{name: "refused connection", url: closed.URL, want: []netip.Addr{netip.MustParseAddr("127.0.0.3")}, wantErr: true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var dialed dialLog
			_, err := new(Fetcher).fetch(t.Context(), tt.url, Validators{}, fetchOpts{dialed: dialed.add})
			if (err != nil) != tt.wantErr {
				t.Fatalf("error = %v, want an error: %v", err, tt.wantErr)
			}
			if got := dialed.list(); !slices.Equal(got, tt.want) {
				t.Errorf("dialed %v, want %v", got, tt.want)
			}
		})
	}
}
