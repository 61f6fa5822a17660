package intel

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptrace"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"syscall"
	"time"
	"unicode"

	"github.com/pfw/pfw/rules"
)

// Version is pfw's version, sent in the User-Agent ("pfw/<Version>") so feed
// operators can tell who is fetching. The daemon sets it once at start.
var Version = "dev"

// Timeouts of the client NewHTTPClient builds for a nil Fetcher.Client.
const (
	// DefaultConnectTimeout bounds the TCP connect and, separately, the TLS
	// handshake.
	DefaultConnectTimeout = 10 * time.Second
	// DefaultTimeout bounds a whole request, body included: 32 MiB at
	// 4 Mbit/s still fits.
	DefaultTimeout = 90 * time.Second
)

// maxRedirects is lower than net/http's 10: feed URLs redirect once (to a CDN)
// if at all.
const maxRedirects = 5

// Validators are the conditional-request tokens of the last accepted body,
// sent back so an unchanged feed costs its provider a 304 and no transfer.
type Validators struct {
	ETag         string // sent as If-None-Match
	LastModified string // sent as If-Modified-Since
}

// Response is the outcome of one successful Fetch.
type Response struct {
	// NotModified is true when the source reported no change since the
	// Validators passed in (HTTP 304, or an unchanged file); Result is then
	// empty and the previous entries stand.
	NotModified bool
	// Result is the parsed body (not yet sanitized).
	Result Result
	// Validators are to be passed to the next Fetch, once the caller has
	// accepted Result. A caller that rejects Result must keep its old
	// Validators, or the next fetch would be a 304 for the rejected body.
	Validators Validators
}

// StatusError reports an HTTP response other than 200 or 304.
type StatusError struct {
	Code   int
	Status string // e.g. "503 Service Unavailable"
}

func (e *StatusError) Error() string { return "HTTP " + e.Status }

// Fetcher downloads and parses feeds over http, https or from file:// URLs.
// The zero value is ready to use; a Fetcher is safe for concurrent use.
type Fetcher struct {
	// Client is used for http and https; nil means a shared client from
	// NewHTTPClient(DefaultConnectTimeout, DefaultTimeout).
	Client *http.Client
	// MaxSize caps a body in bytes (after decompression); 0 means
	// DefaultMaxSize (32 MiB). A larger body fails with ErrTooLarge as soon
	// as the excess arrives: an endless body is not read to its end.
	MaxSize int64
	// MaxEntries caps the addresses of a body, duplicates included; 0 means
	// DefaultMaxEntries (250,000). More fail with ErrTooLarge.
	MaxEntries int
}

var defaultClient = NewHTTPClient(DefaultConnectTimeout, DefaultTimeout)

// NewHTTPClient returns a client for feeds: connectTimeout bounds the TCP
// connect and the TLS handshake, timeout the whole request including the body.
// It keeps net/http's defaults otherwise: certificates are verified, proxies
// come from HTTPS_PROXY/HTTP_PROXY/NO_PROXY, gzip is negotiated. Redirects are
// limited to 5 and may not go from https to http, since a downgrade would let
// anyone on the path rewrite the blocklist.
func NewHTTPClient(connectTimeout, timeout time.Duration) *http.Client {
	t := http.DefaultTransport.(*http.Transport).Clone()
	dialer := &net.Dialer{Timeout: connectTimeout, KeepAlive: 30 * time.Second}
	t.DialContext = dialer.DialContext
	t.TLSHandshakeTimeout = connectTimeout
	t.ResponseHeaderTimeout = timeout
	t.MaxResponseHeaderBytes = 64 << 10
	return &http.Client{Transport: t, Timeout: timeout, CheckRedirect: checkRedirect}
}

// checkRedirect is the redirect policy of NewHTTPClient's clients; every
// Fetch adds refuseLocalRedirect in front of its client's own policy.
func checkRedirect(req *http.Request, via []*http.Request) error {
	if len(via) >= maxRedirects {
		return fmt.Errorf("stopped after %d redirects", maxRedirects)
	}
	if via[0].URL.Scheme == "https" && req.URL.Scheme != "https" {
		return fmt.Errorf("refusing redirect from https to %s", displayURL(req.URL))
	}
	return nil
}

// guardRedirects returns a copy of c whose redirect policy first refuses
// redirects to this host (refuseLocalRedirect), then applies c's own (or
// net/http's default of 10 redirects at most). The copy shares c's
// transport and its connections.
func guardRedirects(c *http.Client, host []netip.Addr) *http.Client {
	guarded := *c
	next := c.CheckRedirect
	guarded.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if err := refuseLocalRedirect(req.URL, via[0].URL, host); err != nil {
			return err
		}
		if next != nil {
			return next(req, via)
		}
		if len(via) >= 10 {
			return errors.New("stopped after 10 redirects")
		}
		return nil
	}
	return &guarded
}

// refuseLocalRedirect refuses a redirect to this host: a feed server (or
// anyone on a plain http path) could otherwise make pfwd send requests to
// its own local services, the way a browser is turned against a LAN. Only
// literal hosts are judged (loopback, unspecified, one of host, "localhost"
// and *.localhost), plus numeric forms a resolver might read as an IPv4
// address (127.1, 2130706433, 0x7f.1), which no real host name takes, and
// non-ASCII names, which net/http maps before dialing (１２７.０.０.１ is
// 127.0.0.1); a name that resolves to this host is left alone. A feed configured on this host
// (origin is local itself) may redirect within it.
func refuseLocalRedirect(target, origin *url.URL, host []netip.Addr) error {
	var why string
	if strings.IndexFunc(target.Hostname(), func(r rune) bool { return r > unicode.MaxASCII }) >= 0 {
		// net/http dials the IDNA mapping of such a name, not the name:
		// "１２７.０.０.１" is dialed as 127.0.0.1, "ⓛⓞⓒⓐⓛⓗⓞⓢⓣ" as
		// localhost. No feed needs one; judging it as written would miss
		// every such spelling of this host. Quoted, since the server
		// chose it and the error goes to the log.
		why = fmt.Sprintf("%+q is not an ASCII host name, and the client may map it to this host", target.Hostname())
	} else {
		why = localHost(target.Hostname(), host)
	}
	if why == "" || localHost(origin.Hostname(), host) != "" {
		return nil
	}
	return fmt.Errorf("refusing redirect to %s: %s", displayURL(target), why)
}

// localHost says how hostname names this host, or "" when it does not
// literally do so.
func localHost(hostname string, host []netip.Addr) string {
	name := strings.TrimSuffix(strings.ToLower(hostname), ".")
	if name == "localhost" || strings.HasSuffix(name, ".localhost") {
		return name + " is loopback"
	}
	a, err := netip.ParseAddr(name)
	if err != nil {
		if numericHost(name) {
			return name + " is not a standard IP address, and resolvers may read it as one"
		}
		return ""
	}
	a = a.Unmap().WithZone("")
	switch {
	case a.IsLoopback():
		return a.String() + " is loopback"
	case a.IsUnspecified():
		return a.String() + " is unspecified (this host)"
	case slices.ContainsFunc(host, func(h netip.Addr) bool { return h.Unmap().WithZone("") == a }):
		return a.String() + " is this host's address"
	}
	return ""
}

// numericHost reports whether name's last label is a number (decimal, or
// hex with 0x): a top-level domain never is, and inet_aton reads such names
// as IPv4 addresses.
func numericHost(name string) bool {
	label := name[strings.LastIndexByte(name, '.')+1:]
	digits := "0123456789"
	if rest, ok := strings.CutPrefix(label, "0x"); ok {
		label, digits = rest, "0123456789abcdef"
	}
	return label != "" && strings.Trim(label, digits) == ""
}

// fetchOpts are what a Manager adds to a Fetch.
type fetchOpts struct {
	// host are this host's addresses: a redirect to one is refused like
	// one to loopback.
	host []netip.Addr
	// dialed, if set, receives the address of every server a connection of
	// the fetch went to or was tried to, redirects and proxies included. It
	// may be called from several goroutines at once.
	dialed func(netip.Addr)
}

// traceDials reports to dialed the servers the requests under ctx connect
// to.
func traceDials(ctx context.Context, dialed func(netip.Addr)) context.Context {
	note := func(addr string) {
		if ap, err := netip.ParseAddrPort(addr); err == nil {
			dialed(ap.Addr().Unmap().WithZone(""))
		}
	}
	return httptrace.WithClientTrace(ctx, &httptrace.ClientTrace{
		// Before connecting, with the resolved address: an address the
		// kernel already drops is learned from the attempt that times out.
		ConnectStart: func(_, addr string) { note(addr) },
		// A reused connection dials nothing, nor may a custom transport
		// through net.Dialer.
		GotConn: func(info httptrace.GotConnInfo) { note(info.Conn.RemoteAddr().String()) },
	})
}

// UserAgent is the User-Agent header sent with every request.
func UserAgent() string { return "pfw/" + Version }

// parseFeedURL is rules.ParseFeedURL, the check `fwctl check` applies to
// the config, so that a feed the config accepts is one the Fetcher and
// SetFeeds accept, and the reverse: http or https with a host, or file://
// with an absolute path (for air-gapped machines fed by hand or by another
// tool).
func parseFeedURL(raw string) (*url.URL, error) {
	u, err := rules.ParseFeedURL(raw)
	if err != nil {
		return nil, fmt.Errorf("invalid feed URL: %w", err)
	}
	return u, nil
}

// displayURL renders u for logs and errors without what may be secret: the
// user, password and query (abuse.ch and others take access keys there).
func displayURL(u *url.URL) string { return rules.RedactURL(u) }

// Fetch downloads rawURL and parses it. prev are the Validators of the entries
// the caller holds (zero for none); when the source reports no change, Fetch
// returns NotModified without a body. Errors name the URL (without query or
// password) and wrap ErrTooLarge, ErrNotBlocklist, ErrTruncated,
// *StatusError, or the network error.
//
// A redirect to this host (loopback, the unspecified address, "localhost")
// is refused unless the URL is on this host itself.
func (f *Fetcher) Fetch(ctx context.Context, rawURL string, prev Validators) (Response, error) {
	return f.fetch(ctx, rawURL, prev, fetchOpts{})
}

func (f *Fetcher) fetch(ctx context.Context, rawURL string, prev Validators, o fetchOpts) (Response, error) {
	u, err := parseFeedURL(rawURL)
	if err != nil {
		return Response{}, fmt.Errorf("fetch feed: %w", err)
	}
	var resp Response
	if u.Scheme == "file" {
		resp, err = f.fetchFile(u.Path, prev)
	} else {
		resp, err = f.fetchHTTP(ctx, u, prev, o)
	}
	if err != nil {
		return Response{}, fmt.Errorf("fetch %s: %w", displayURL(u), err)
	}
	return resp, nil
}

// limits returns the caps of one body: bytes and entries.
func (f *Fetcher) limits() (maxBytes int64, maxEntries int) {
	maxBytes, maxEntries = f.MaxSize, f.MaxEntries
	if maxBytes <= 0 {
		maxBytes = DefaultMaxSize
	}
	if maxEntries <= 0 {
		maxEntries = DefaultMaxEntries
	}
	return maxBytes, maxEntries
}

func (f *Fetcher) fetchHTTP(ctx context.Context, u *url.URL, prev Validators, o fetchOpts) (Response, error) {
	client := f.Client
	if client == nil {
		client = defaultClient
	}
	client = guardRedirects(client, o.host)
	if o.dialed != nil {
		ctx = traceDials(ctx, o.dialed)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, u.String(), nil)
	if err != nil {
		return Response{}, err
	}
	req.Header.Set("User-Agent", UserAgent())
	req.Header.Set("Accept", "text/plain, text/csv;q=0.9, */*;q=0.1")
	if prev.ETag != "" {
		req.Header.Set("If-None-Match", prev.ETag)
	}
	if prev.LastModified != "" {
		req.Header.Set("If-Modified-Since", prev.LastModified)
	}
	r, err := client.Do(req)
	if err != nil {
		var ue *url.Error
		if errors.As(err, &ue) {
			err = ue.Err // its text repeats the full URL, query included
		}
		return Response{}, err
	}
	defer r.Body.Close()

	switch r.StatusCode {
	case http.StatusOK:
	case http.StatusNotModified:
		next := prev
		if etag := r.Header.Get("ETag"); etag != "" {
			next.ETag = etag
		}
		return Response{NotModified: true, Validators: next}, nil
	default:
		// Draining a little lets the connection be reused for the retry.
		_, _ = io.CopyN(io.Discard, r.Body, 64<<10)
		// The standard reason phrase, not the server's: that text would go
		// to the log unchecked.
		return Response{}, &StatusError{Code: r.StatusCode, Status: fmt.Sprintf("%d %s", r.StatusCode, http.StatusText(r.StatusCode))}
	}
	maxBytes, maxEntries := f.limits()
	if r.ContentLength > maxBytes {
		return Response{}, fmt.Errorf("%w: Content-Length %d is over the limit of %s", ErrTooLarge, r.ContentLength, byteSize(maxBytes))
	}
	// parse reads the body as a stream and stops at the first cap; closing
	// a body that was not read to its end drops the connection rather than
	// draining it, so an endless body costs nothing more.
	res, err := parse(r.Body, maxBytes, maxEntries)
	if err != nil {
		return Response{}, err
	}
	return Response{
		Result:     res,
		Validators: Validators{ETag: r.Header.Get("ETag"), LastModified: r.Header.Get("Last-Modified")},
	}, nil
}

// fetchFile reads a local feed. Its validator is the file's modification time
// and size, so an untouched file is NotModified like an HTTP 304.
func (f *Fetcher) fetchFile(path string, prev Validators) (Response, error) {
	// O_NONBLOCK: opening a named pipe with no writer must not wait for
	// one; it is refused below like any file that is not regular.
	file, err := os.OpenFile(path, os.O_RDONLY|syscall.O_NONBLOCK, 0)
	if err != nil {
		return Response{}, err
	}
	defer file.Close()
	st, err := file.Stat()
	if err != nil {
		return Response{}, err
	}
	if !st.Mode().IsRegular() {
		return Response{}, fmt.Errorf("%s is not a regular file", path)
	}
	tag := fmt.Sprintf("%x-%x", st.ModTime().UnixNano(), st.Size())
	if prev.ETag == tag {
		return Response{NotModified: true, Validators: prev}, nil
	}
	maxBytes, maxEntries := f.limits()
	if st.Size() > maxBytes {
		return Response{}, fmt.Errorf("%w: the file has %d bytes, over the limit of %s", ErrTooLarge, st.Size(), byteSize(maxBytes))
	}
	// The file may grow while it is read: parse enforces the caps again.
	// Its lines are not quoted: see parseQuoting.
	res, err := parseQuoting(file, maxBytes, maxEntries, false)
	if err != nil {
		return Response{}, err
	}
	return Response{Result: res, Validators: Validators{ETag: tag}}, nil
}
