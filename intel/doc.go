// Package intel keeps threat-feed blocklists current: it fetches them, parses
// them, removes the entries that would hurt the host, and schedules the next
// fetch.
//
// Invariant: a feed's entries in force are only ever a list that passed
// Sanitize, fetched (a complete list that parsed as a blocklist) or seeded
// from the database, checked against what is protected now: every failure
// (network error, HTTP error, oversized body, an HTML page or binary data, a
// Feodo list cut short, a list that empties itself at once) keeps the
// previous entries in force, every growth of what is protected drops the
// entries in force it refuses at once, and every shrink puts back at once
// the entries of that list refused only for the protection gone. The
// package never logs: it reports through callbacks and errors.
//
// # Parsing
//
// Parse reads any of the formats pfw knows, told apart by content, not by URL:
//
//	feodo          abuse.ch ipblocklist.txt: "#" banner, "# DstIP", one IP a line, "# END N entries"
//	feodo-csv      abuse.ch ipblocklist.csv: "#" header, first_seen_utc,dst_ip,dst_port,... (quoted or not, CRLF)
//	spamhaus-drop  Spamhaus DROP/EDROP: ";" comments, "1.10.16.0/20 ; SBL256894"
//	firehol        FireHOL .ipset/.netset: "#" header, one IP or CIDR a line
//	plain          one IP or CIDR a line; "#" and ";" start comments anywhere
//
// IPv4 and IPv6 are both accepted. Entries come back masked (10.1.2.3/8 is
// 10.0.0.0/8), single addresses as /32 or /128, IPv4-mapped IPv6 as IPv4,
// sorted, without duplicates or entries covered by a wider one. A data line
// must hold exactly one address: "0.0.0.0 example.com" (a hosts file) is
// invalid, not a block of 0.0.0.0. Invalid lines are counted (Result.Invalid,
// Result.FirstInvalid for the log) and skipped; but when more than half of the
// data lines are invalid, or the content looks like HTML, or it holds NUL
// bytes or invalid UTF-8, the whole response is rejected with an error
// wrapping ErrNotBlocklist. A list of comments only is a valid empty list.
//
// A Feodo list must end where it says it does. abuse.ch closes every
// ipblocklist.txt, the empty recommended list included, with "# END N
// entries", N its data lines: a feodo body without that footer, or a feodo or
// feodo-csv body with a footer whose N differs from the data lines before it
// (invalid and duplicate lines count, each footer covering the lines since
// the one before, so joined lists pass), is rejected with an error wrapping
// ErrTruncated. Such a body was cut short (a file:// copy read while a tool
// rewrites it, an HTTP/1.0 body ended by a dropped connection) and would
// otherwise stand for the whole list for an interval; a cut inside an
// address can even turn 203.0.113.150 into 203.0.113.1. The CSV variant's
// footer is checked when present but not required; FireHOL, Spamhaus and
// plain lists have no footer and are never judged by one (FireHOL's
// republished feodo.ipset is FireHOL format: its "# Entries" header is not
// checked, since trimmed or aggregated copies keep it). A body cut before
// the banner names the list is only comments, an empty list of another
// format, which the Manager does not let replace the list at once.
// Parse is bounded: it reads at most DefaultMaxSize (32 MiB) and
// DefaultMaxEntries (250,000) addresses, and fails with ErrTooLarge the moment
// a body goes beyond either, without reading on; lines over 4 KiB are invalid
// and are never held in memory whole. Lines are parsed in place from a 4 KiB
// buffer and addresses kept as 8-byte keys (24 for IPv6) until the end: an
// endless or hostile body is refused holding at most 4 MiB of keys (12 MiB if
// all IPv6), well under the byte cap, and an accepted list costs one
// []netip.Prefix of its exact size.
//
// # Sanitizing
//
// The kernel applies feed entries in both directions (inbound sources,
// outbound destinations), so an entry also cuts pfwd's own way out. Sanitize
// refuses 0.0.0.0/0 and ::/0, IPv4 prefixes shorter than /8, IPv6 shorter
// than /16, and entries
//
//   - covering an address pfwd needs (Protected): one of the host's own
//     (Manager.SetHostAddrs; the entry would cut the host off its network,
//     gateway and resolver included), a feed server, a DNS resolver;
//   - overlapping, inside or covering, a range every host needs: loopback,
//     0.0.0.0/8 (DHCP's source), 255.255.255.255, multicast 224.0.0.0/4 and
//     ff00::/8 (mDNS, neighbour discovery, DHCPv6), NAT64 64:ff9b::/96 and
//     64:ff9b:1::/48 and 6to4 2002::/16 (each maps all of IPv4);
//   - overlapping a protected (whitelisted) prefix.
//
// The refusal names the first that applies, in that order: "covers the feed
// server 10.77.0.9 of feed "X"", "overlaps IPv4 multicast 224.0.0.0/4". It
// keeps but reports entries overlapping private, CGNAT, unique-local and
// link-local ranges: FireHOL's level1 list holds 10.0.0.0/8 and
// 192.168.0.0/16, which cut a LAN off when applied blindly. Summarize renders
// the report as one log line per kind.
//
// A feed must not block its own server, or another feed's: the fetch that
// could take the entry back would never connect again. The Manager learns
// the addresses it needs and remembers them (the last 1024 seen, and a
// server only while a feed in the config is fetched from its host: one
// removed, or moved to another host, gives back at once the entries its
// servers alone refused): literal addresses in feed URLs (at SetFeeds and
// every fetch), the nameservers of
// /etc/resolv.conf and /run/systemd/resolve/resolv.conf (read at every
// fetch; a missing or odd file is no error), and the address of every
// connection a fetch made or tried, redirects and proxies included (learned
// before the body is sanitized, so a feed on a host name cannot block the
// server it was just read from). Entries in force that what is protected
// refuses once it grows (a new host address from SetHostAddrs, a new
// whitelisted prefix from SetProtected, a server or resolver learned later
// than the list or seed was accepted, after a DNS change) are dropped from
// every feed at once, through OnUpdate and a warning "dropped N entries in
// force: ..." giving Sanitize's reasons, even when the fetch that learned
// the address failed: they do not wait an interval for the next fetch. The
// price: whoever controls a feed's server, a plain-http path to it or
// pfwd's DNS can make up to 64 addresses a fetch unblockable by feeds (not
// by the config's blacklist), a lesser harm than a feed cut off for good.
//
// Protection that shrinks gives back just as fast. A feed keeps, beside
// its entries in force, those of the same list refused for protection
// alone (a whitelisted prefix, a host address, a server or resolver):
// entries that would have been kept with nothing protected, typically a
// handful, at most 4096 a feed (those beyond come back with the next
// fetch, which is then made unconditional). When a whitelisted prefix or
// a host address goes (or a server is forgotten to make room for newer
// ones), those it alone refused go into force again at once, through
// OnUpdate and an info "restored N entries refused for a protection now
// gone: ...", without a fetch: the next one is usually a 304 confirming
// the list as it was filtered, and would bring nothing back before the
// feed's content changes. Entries refused for what protection cannot
// change (0.0.0.0/0, a /4, loopback, multicast...) are never kept nor
// given back.
//
// A seed from the database (Manager.Seed) is checked like a fetched list:
// the database may predate a check or a change of the host's addresses, or
// have been edited. Seed reports what it refused as "from the database:
// skipped N entries: ..." and returns what it kept, which is all the caller
// may put in force.
//
// # Fetching
//
// A Fetcher reads https, http and file:///path URLs, exactly those
// rules.ParseFeedURL accepts: `fwctl check` applies the same check to the
// config, so a valid config never holds a feed the daemon refuses. It fetches
// with connect and total timeouts (DefaultConnectTimeout, DefaultTimeout),
// caps on the body after decompression (MaxSize, DefaultMaxSize by default)
// and on its entries (MaxEntries, DefaultMaxEntries), beyond which the fetch
// fails with ErrTooLarge and the connection is dropped, not drained;
// conditional requests (ETag / If-Modified-Since: a 304 is a success that
// changes nothing), the User-Agent "pfw/<Version>" (set Version at start),
// and verified TLS. Redirects from https to http are refused, and so are
// redirects to this host (a literal loopback or unspecified address,
// "localhost", a numeric form like 127.1, or for a Manager an address of
// SetHostAddrs), which would let a feed make pfwd call its local services,
// unless the feed's URL is on this host itself. Errors show the URL without
// its user, password or query, which may hold an access key.
//
// # Scheduling
//
// A Manager runs every feed of a config:
//
//	m := intel.NewManager(intel.Options{
//		OnUpdate: func(f intel.Feed, entries []netip.Prefix) { /* kernel sets, DB, pipeline */ },
//		OnEvent:  func(e intel.Event) { logger.Log(ctx, e.Level, e.Msg, "feed", e.Feed) },
//	})
//	if err := m.SetFeeds(feeds); err != nil { ... }
//	m.SetProtected(neverBlock)                       // optional; pfwd passes none (its whitelist is checked before the feeds)
//	m.SetHostAddrs(hostAddrs)                         // before Seed: it checks against them
//	inForce := m.Seed("Feodo Tracker", entriesFromDB) // before Run: an offline boot stays protected
//	/* put inForce, not entriesFromDB, in the kernel sets and the pipeline */
//	go m.Run(ctx) // returns once ctx is done and all fetches ended
//
// Each feed is fetched when Run starts, then every Interval ±10%. After a
// failure it is retried with exponential backoff: 30 s (interval/4 for
// intervals under 2 min), doubling, capped at the interval. Each accepted
// fetch calls OnUpdate with the complete new list: the feed is the truth for
// its entries, and the caller applies the difference. A 304 calls nothing. A
// list that comes back empty where ShrinkThreshold (10) or more entries were
// in force (fetched or seeded), or where any entries of a list of another
// format were (an empty or half-written file:// copy of a Feodo list reads as
// an empty plain or firehol list), is rejected as a failure (retried with
// that backoff, which soon reads a rewritten file) and accepted only once the
// feed has stayed empty for a whole Interval: empty answers for a minute lift
// no entry. SetFeeds applies a config reload: unchanged feeds keep
// their entries, state and timer; removed feeds get OnUpdate(feed, nil). An
// https feed with an interval under PoliteInterval (5 min), and a plain http
// feed not on loopback, draw a warning event. States reports each feed for
// `fwctl status`, and never waits for a fetch or for Sanitize: a fetched
// list is sanitized with the Manager's lock released (about 90 ms for
// 250,000 entries), then applied only if the feed still exists with the
// same URL, and sanitized again first if the whitelist, the host's
// addresses or the servers pfwd needs changed meanwhile.
package intel
