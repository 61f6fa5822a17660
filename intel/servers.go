package intel

import (
	"bufio"
	"io"
	"net/netip"
	"net/url"
	"os"
	"slices"
	"strings"
	"sync"
	"time"
)

// resolvConfs are read at every fetch for the DNS servers pfwd and the host
// need. Behind systemd-resolved the first names only its stub, 127.0.0.53;
// the second holds the upstream servers it forwards to.
var resolvConfs = []string{"/etc/resolv.conf", "/run/systemd/resolve/resolv.conf"}

const (
	// maxNeeds bounds the addresses a Manager remembers as needed; past it
	// the least recently seen is forgotten. Feeds in use are seen at every
	// fetch, so only addresses no fetch has used for a long time go.
	maxNeeds = 1024
	// maxDialsPerFetch bounds the addresses one fetch may teach: a host
	// name may resolve to many, a redirect chain adds a few.
	maxDialsPerFetch = 64
)

// need is an address pfwd must be able to reach.
type need struct {
	// feeds are those it serves, the first learned first; "" stands for
	// the DNS resolvers.
	feeds []string
	seen  time.Time
}

// readResolvers returns the nameserver addresses of the given resolv.conf
// files. A missing or unreadable file, or a line that does not parse, is
// skipped: nothing here is worth failing a fetch for.
func readResolvers(paths []string) []netip.Addr {
	var out []netip.Addr
	for _, path := range paths {
		file, err := os.Open(path)
		if err != nil {
			continue
		}
		sc := bufio.NewScanner(io.LimitReader(file, 64<<10))
		for sc.Scan() {
			fields := strings.Fields(sc.Text())
			if len(fields) >= 2 && fields[0] == "nameserver" {
				if a, err := netip.ParseAddr(fields[1]); err == nil {
					out = append(out, a)
				}
			}
		}
		file.Close()
	}
	return out
}

// urlAddr returns the address an http(s) URL names literally, if it does.
func urlAddr(raw string) (netip.Addr, bool) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") {
		return netip.Addr{}, false
	}
	a, err := netip.ParseAddr(u.Hostname())
	return a, err == nil
}

// dialLog collects the servers one fetch dialed, from the transport's
// goroutines.
type dialLog struct {
	mu    sync.Mutex
	addrs []netip.Addr
}

func (d *dialLog) add(a netip.Addr) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, seen := range d.addrs {
		if seen == a {
			return
		}
	}
	if len(d.addrs) < maxDialsPerFetch {
		d.addrs = append(d.addrs, a)
	}
}

func (d *dialLog) list() []netip.Addr {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.addrs
}

// learn records addresses pfwd needs to reach: servers of the feed named
// feed, or DNS resolvers when feed is "". Entries already in force that
// cover an address it did not know are dropped at once, in every feed (each
// gets OnUpdate and a warning): they were accepted before the address was
// known, and would keep the fetch that could take them back from ever
// connecting. An address forgotten to make room (see maxNeeds) gives back
// the entries it alone refused, as SetProtected does. m.mu is held.
func (m *Manager) learn(feed string, addrs []netip.Addr, now time.Time) {
	var fresh Protected
	for _, a := range addrs {
		if a = a.Unmap().WithZone(""); !a.IsValid() {
			continue
		}
		if n, known := m.needs[a]; known {
			n.seen = now
			if !slices.Contains(n.feeds, feed) {
				n.feeds = append(n.feeds, feed)
			}
			m.needs[a] = n
			continue
		}
		m.needs[a] = need{feeds: []string{feed}, seen: now}
		if feed == "" {
			fresh.Resolvers = append(fresh.Resolvers, a)
		} else {
			fresh.FeedServers = append(fresh.FeedServers, FeedServer{Addr: a, Feed: feed})
		}
	}
	forgot := false
	for len(m.needs) > maxNeeds {
		m.forgetOldestNeed()
		forgot = true
	}
	if len(fresh.Resolvers)+len(fresh.FeedServers) == 0 {
		return
	}
	m.protectGen++ // (an address is forgotten only when one is learned)
	m.reprotectEverywhere(fresh, forgot)
}

func (m *Manager) forgetOldestNeed() {
	var oldest netip.Addr
	var when time.Time
	for a, n := range m.needs {
		if !oldest.IsValid() || n.seen.Before(when) {
			oldest, when = a, n.seen
		}
	}
	delete(m.needs, oldest)
}

// forgetServersOf drops feed from the feeds each learned address serves,
// and forgets the addresses it alone needed: a feed removed from the
// config, or one now fetched from another host, no longer needs its old
// server, which another feed may then block. When heir is not "", a feed
// of the new config fetched from the same host (the feed renamed, or a
// new one beside it), the addresses pass to heir instead: its first fetch
// would learn them again, too late to keep them protected meanwhile. It
// reports whether an address was forgotten; the caller gives back the
// entries that address alone refused (reprotectEverywhere), once it has
// learned what the new config needs. m.mu is held.
func (m *Manager) forgetServersOf(feed, heir string) (forgot bool) {
	for a, n := range m.needs {
		i := slices.Index(n.feeds, feed)
		if i < 0 {
			continue
		}
		feeds := slices.Delete(slices.Clone(n.feeds), i, i+1)
		if heir != "" && !slices.Contains(feeds, heir) {
			feeds = slices.Insert(feeds, i, heir)
		}
		if len(feeds) == 0 {
			delete(m.needs, a)
			forgot = true
			continue
		}
		n.feeds = feeds
		m.needs[a] = n
	}
	return forgot
}

// needed returns the addresses learned so far, for Sanitize.
func (m *Manager) needed() Protected {
	var p Protected
	for a, n := range m.needs {
		if slices.Contains(n.feeds, "") {
			p.Resolvers = append(p.Resolvers, a)
		} else {
			p.FeedServers = append(p.FeedServers, FeedServer{Addr: a, Feed: n.feeds[0]})
		}
	}
	return p
}
