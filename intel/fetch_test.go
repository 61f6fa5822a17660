package intel

import (
	"bytes"
	"compress/gzip"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"hash/fnv"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

func TestMain(m *testing.M) {
	Version = "1.2.3-test"
	os.Exit(m.Run())
}

// feedServer serves one mutable body over loopback HTTP, with an ETag
// derived from the body so conditional requests work like at a real
// provider. Every test server in this package listens on 127.0.0.1 only.
type feedServer struct {
	*httptest.Server
	mu       sync.Mutex
	body     string
	status   int // 0: 200
	requests int
	agents   []string
}

func newFeedServer(t *testing.T, body string) *feedServer {
	t.Helper()
	fs := &feedServer{body: body}
	fs.Server = httptest.NewServer(http.HandlerFunc(fs.serve))
	t.Cleanup(fs.Close)
	return fs
}

func (fs *feedServer) serve(w http.ResponseWriter, r *http.Request) {
	fs.mu.Lock()
	fs.requests++
	fs.agents = append(fs.agents, r.UserAgent())
	body, status := fs.body, fs.status
	fs.mu.Unlock()
	if status != 0 && status != http.StatusOK {
		http.Error(w, "boom", status)
		return
	}
	h := fnv.New64a()
	h.Write([]byte(body))
	etag := fmt.Sprintf(`"%x"`, h.Sum64())
	w.Header().Set("ETag", etag)
	if r.Header.Get("If-None-Match") == etag {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	w.Header().Set("Content-Type", "text/plain")
	fmt.Fprint(w, body)
}

func (fs *feedServer) set(body string, status int) {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	fs.body, fs.status = body, status
}

func (fs *feedServer) count() int {
	fs.mu.Lock()
	defer fs.mu.Unlock()
	return fs.requests
}

func TestFetchETag(t *testing.T) {
	fs := newFeedServer(t, "192.0.2.1\n198.51.100.0/24\n")
	var f Fetcher
	first, err := f.Fetch(t.Context(), fs.URL+"/list.txt", Validators{})
	if err != nil {
		t.Fatal(err)
	}
	if first.NotModified || len(first.Result.Entries) != 2 || first.Validators.ETag == "" {
		t.Fatalf("first fetch: %+v", first)
	}
	second, err := f.Fetch(t.Context(), fs.URL+"/list.txt", first.Validators)
	if err != nil {
		t.Fatal(err)
	}
	if !second.NotModified || second.Result.Entries != nil || second.Validators != first.Validators {
		t.Errorf("second fetch with the ETag: %+v, want NotModified and the same validators", second)
	}
	fs.set("203.0.113.1\n", 0)
	third, err := f.Fetch(t.Context(), fs.URL+"/list.txt", first.Validators)
	if err != nil {
		t.Fatal(err)
	}
	if third.NotModified || len(third.Result.Entries) != 1 || third.Validators.ETag == first.Validators.ETag {
		t.Errorf("fetch after a change: %+v", third)
	}
}

func TestFetchLastModified(t *testing.T) {
	modified := time.Date(2026, 10, 8, 9, 15, 3, 0, time.UTC)
	var sawIMS []string
	var mu sync.Mutex
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		sawIMS = append(sawIMS, r.Header.Get("If-Modified-Since"))
		mu.Unlock()
		// ServeContent answers If-Modified-Since with 304 by itself.
		http.ServeContent(w, r, "drop.txt", modified, strings.NewReader("192.0.2.0/24 ; SBL000001\n"))
	}))
	defer ts.Close()

	var f Fetcher
	first, err := f.Fetch(t.Context(), ts.URL+"/drop.txt", Validators{})
	if err != nil {
		t.Fatal(err)
	}
	if want := modified.Format(http.TimeFormat); first.Validators.LastModified != want {
		t.Fatalf("LastModified = %q, want %q", first.Validators.LastModified, want)
	}
	second, err := f.Fetch(t.Context(), ts.URL+"/drop.txt", first.Validators)
	if err != nil {
		t.Fatal(err)
	}
	if !second.NotModified {
		t.Errorf("fetch with If-Modified-Since was not NotModified: %+v", second)
	}
	if sawIMS[0] != "" || sawIMS[1] != first.Validators.LastModified {
		t.Errorf("If-Modified-Since sent: %q", sawIMS)
	}
}

func TestFetchUserAgent(t *testing.T) {
	fs := newFeedServer(t, "192.0.2.1\n")
	if _, err := new(Fetcher).Fetch(t.Context(), fs.URL, Validators{}); err != nil {
		t.Fatal(err)
	}
	if got := fs.agents[0]; got != "pfw/1.2.3-test" {
		t.Errorf("User-Agent = %q, want pfw/1.2.3-test", got)
	}
}

func TestFetchSizeCap(t *testing.T) {
	body := strings.Repeat("192.0.2.1\n", 100) // 1000 bytes
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	zw.Write([]byte(body))
	zw.Close()

	tests := []struct {
		name    string
		handler http.HandlerFunc
	}{
		{"Content-Length over the cap", func(w http.ResponseWriter, r *http.Request) {
			fmt.Fprint(w, body)
		}},
		{"chunked, no Content-Length", func(w http.ResponseWriter, r *http.Request) {
			for line := range strings.Lines(body) {
				fmt.Fprint(w, line)
				w.(http.Flusher).Flush()
			}
		}},
		{"small gzip body that expands over the cap", func(w http.ResponseWriter, r *http.Request) {
			w.Header().Set("Content-Encoding", "gzip")
			w.Write(gz.Bytes())
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			f := Fetcher{MaxSize: 999}
			_, err := f.Fetch(t.Context(), ts.URL, Validators{})
			if !errors.Is(err, ErrTooLarge) {
				t.Errorf("error = %v, want ErrTooLarge", err)
			}
			f.MaxSize = 1000
			if _, err := f.Fetch(t.Context(), ts.URL, Validators{}); err != nil {
				t.Errorf("body of exactly MaxSize: %v", err)
			}
		})
	}
}

func TestFetchRejects(t *testing.T) {
	html, err := os.ReadFile(filepath.Join("testdata", "html_error.html"))
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name    string
		status  int
		body    string
		wantErr error
		errText string
	}{
		{name: "500", status: 500, body: "x", errText: "HTTP 500 Internal Server Error"},
		{name: "404", status: 404, body: "x", errText: "HTTP 404 Not Found"},
		{name: "HTML with status 200", body: string(html), wantErr: ErrNotBlocklist, errText: "looks like an HTML page"},
		{name: "garbage", body: "hello\nworld\n", wantErr: ErrNotBlocklist, errText: "2 of 2 data lines"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			fs := newFeedServer(t, tt.body)
			fs.set(tt.body, tt.status)
			_, err := new(Fetcher).Fetch(t.Context(), fs.URL+"/feed?key=SECRET", Validators{})
			if err == nil {
				t.Fatal("no error")
			}
			if tt.wantErr != nil && !errors.Is(err, tt.wantErr) {
				t.Errorf("error = %v, want %v", err, tt.wantErr)
			}
			var se *StatusError
			if tt.status != 0 && (!errors.As(err, &se) || se.Code != tt.status) {
				t.Errorf("error %v is not a StatusError %d", err, tt.status)
			}
			if !strings.Contains(err.Error(), tt.errText) {
				t.Errorf("error %q does not contain %q", err, tt.errText)
			}
			if strings.Contains(err.Error(), "SECRET") {
				t.Errorf("error %q shows the query string", err)
			}
			if want := "fetch " + fs.URL + "/feed?…: "; !strings.HasPrefix(err.Error(), want) {
				t.Errorf("error %q does not start with %q", err, want)
			}
		})
	}
}

// slowServer holds every request until the client gives up or the test ends;
// with headerFirst it sends the headers and one line first, then stalls the
// body.
func slowServer(t *testing.T, headerFirst bool) *httptest.Server {
	t.Helper()
	release := make(chan struct{})
	ts := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if headerFirst {
			fmt.Fprintln(w, "192.0.2.1")
			w.(http.Flusher).Flush()
		}
		select {
		case <-r.Context().Done():
		case <-release:
		}
	}))
	t.Cleanup(func() { close(release); ts.Close() })
	return ts
}

func TestFetchTimeout(t *testing.T) {
	for _, headerFirst := range []bool{false, true} {
		t.Run(fmt.Sprintf("headers sent=%v", headerFirst), func(t *testing.T) {
			ts := slowServer(t, headerFirst)
			f := Fetcher{Client: NewHTTPClient(time.Second, 300*time.Millisecond)}
			start := time.Now()
			_, err := f.Fetch(t.Context(), ts.URL, Validators{})
			elapsed := time.Since(start)
			var ne net.Error
			if !errors.As(err, &ne) || !ne.Timeout() {
				t.Errorf("error = %v, want a timeout", err)
			}
			if elapsed > 2*time.Second {
				t.Errorf("gave up after %v, want about 300ms", elapsed)
			}
		})
	}
}

func TestFetchContextCancel(t *testing.T) {
	ts := slowServer(t, false)
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	_, err := new(Fetcher).Fetch(ctx, ts.URL, Validators{})
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("error = %v, want context.DeadlineExceeded", err)
	}
}

// TestFetchTLS checks that certificates are verified (httptest's is
// self-signed) and that a trusted https feed may not redirect to http.
func TestFetchTLS(t *testing.T) {
	plain := newFeedServer(t, "192.0.2.1\n")
	ts := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/redirect" {
			http.Redirect(w, r, plain.URL, http.StatusFound)
			return
		}
		fmt.Fprintln(w, "198.51.100.1")
	}))
	defer ts.Close()

	_, err := new(Fetcher).Fetch(t.Context(), ts.URL, Validators{})
	var verr *tls.CertificateVerificationError
	if !errors.As(err, &verr) {
		t.Errorf("self-signed certificate: error = %v, want a verification error", err)
	}

	client := NewHTTPClient(time.Second, 5*time.Second)
	client.Transport.(*http.Transport).TLSClientConfig = ts.Client().Transport.(*http.Transport).TLSClientConfig.Clone()
	f := Fetcher{Client: client}
	resp, err := f.Fetch(t.Context(), ts.URL, Validators{})
	if err != nil || len(resp.Result.Entries) != 1 {
		t.Fatalf("trusted certificate: %v, %+v", err, resp)
	}
	_, err = f.Fetch(t.Context(), ts.URL+"/redirect", Validators{})
	if err == nil || !strings.Contains(err.Error(), "refusing redirect from https to http") {
		t.Errorf("https to http redirect: error = %v", err)
	}
	if plain.count() != 0 {
		t.Errorf("the http server was contacted %d times after a refused redirect", plain.count())
	}
}

func TestFetchFile(t *testing.T) {
	path := filepath.Join(t.TempDir(), "list.txt")
	if err := os.WriteFile(path, []byte("192.0.2.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	var f Fetcher
	first, err := f.Fetch(t.Context(), "file://"+path, Validators{})
	if err != nil || len(first.Result.Entries) != 1 {
		t.Fatalf("first read: %v, %+v", err, first)
	}
	second, err := f.Fetch(t.Context(), "file://"+path, first.Validators)
	if err != nil || !second.NotModified {
		t.Fatalf("unchanged file: %v, %+v, want NotModified", err, second)
	}
	if err := os.WriteFile(path, []byte("192.0.2.1\n198.51.100.1\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	third, err := f.Fetch(t.Context(), "file://"+path, first.Validators)
	if err != nil || third.NotModified || len(third.Result.Entries) != 2 {
		t.Fatalf("changed file: %v, %+v", err, third)
	}
	f.MaxSize = 10
	if _, err := f.Fetch(t.Context(), "file://"+path, Validators{}); !errors.Is(err, ErrTooLarge) {
		t.Errorf("file over MaxSize: error = %v, want ErrTooLarge", err)
	}
	if _, err := f.Fetch(t.Context(), "file://"+filepath.Dir(path), Validators{}); err == nil || !strings.Contains(err.Error(), "not a regular file") {
		t.Errorf("directory: error = %v", err)
	}
	// A file that is not a blocklist: the error names the line, but does
	// not quote a local file's text into the log.
	if err := os.WriteFile(path, []byte("root:$y$j9T$secret:20228:0:99999:7:::\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	f.MaxSize = 0
	if _, err := f.Fetch(t.Context(), "file://"+path, Validators{}); !errors.Is(err, ErrNotBlocklist) || strings.Contains(err.Error(), "secret") || !strings.Contains(err.Error(), "line 1") {
		t.Errorf("a local file that is not a blocklist: error = %v, want ErrNotBlocklist naming line 1 without its text", err)
	}
	// A named pipe with no writer: opening it must not wait for one, or
	// the feed hangs for good and every stop waits on it.
	fifo := filepath.Join(t.TempDir(), "fifo.txt")
	if err := syscall.Mkfifo(fifo, 0o600); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { _, err := f.Fetch(t.Context(), "file://"+fifo, Validators{}); done <- err }()
	select {
	case err := <-done:
		if err == nil || !strings.Contains(err.Error(), "not a regular file") {
			t.Errorf("named pipe: error = %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("fetching a named pipe still blocks after 5 s")
	}
}
