package store

import (
	"fmt"
	"math"
	"net/netip"
	"strconv"
	"strings"
	"time"
)

// timeLayout is how every timestamp column is written: UTC, millisecond
// precision, and a shape SQLite's date functions read (datetime(timestamp)
// works) and that sorts as text in time order, so range queries can compare
// strings and use the timestamp indexes.
const timeLayout = "2006-01-02 15:04:05.000"

// hourLayout names an hour bucket (log_suppressed.hour, Stats.LastDay). It
// is the prefix of timeLayout that SQLite still reads as a time.
const hourLayout = "2006-01-02 15:04"

// Row is one packet log row. It is a plain value, cheap to copy through the
// writer's channel; the writer turns it into column text.
type Row struct {
	Time     time.Time // zero: the writer stamps the time it dequeues the row
	Src, Dst netip.Addr
	// SrcPort and DstPort are stored only when HasPorts is true; otherwise
	// both columns are NULL, which keeps "no port" apart from port 0.
	SrcPort, DstPort uint16
	HasPorts         bool
	Proto            uint8
	// Reason is written for blocked rows. For allowed rows it is not
	// stored, but suppressed allowed rows are still counted under it.
	Reason string
	// Hash is written for blocked rows as 16 lowercase hex digits.
	Hash uint64
	// Outbound says the packet was leaving the host, so its remote
	// address is Dst; the direction column holds "out", else "in".
	Outbound bool
}

// direction is the direction column's text, boxed once so that binding it
// does not allocate per row.
func (r *Row) direction() any {
	if r.Outbound {
		return directionOut
	}
	return directionIn
}

var directionIn, directionOut any = "in", "out"

// protoNames holds ProtoName's answers, built once so naming a protocol
// never allocates on the write path.
var protoNames = func() (names [256]string) {
	for i := range names {
		names[i] = strconv.Itoa(i)
	}
	names[1], names[6], names[17], names[58] = "icmp", "tcp", "udp", "icmpv6"
	return names
}()

// ProtoName is the protocol column's text: "tcp", "udp", "icmp", "icmpv6",
// or the IP protocol number in decimal for anything else.
func ProtoName(p uint8) string { return protoNames[p] }

// formatTime renders t as a timestamp column value.
func formatTime(t time.Time) string { return t.UTC().Format(timeLayout) }

// hourOf names the UTC hour t falls in.
func hourOf(t time.Time) string { return t.UTC().Truncate(time.Hour).Format(hourLayout) }

// hashHex renders a packet hash as exactly 16 lowercase hex digits, so the
// column has one spelling per hash and can be compared as text.
func hashHex(h uint64) string {
	const digits = "0123456789abcdef"
	var b [16]byte
	for i := len(b) - 1; i >= 0; i-- {
		b[i] = digits[h&0xf]
		h >>= 4
	}
	return string(b[:])
}

// portArg is the SQL argument for a port column: NULL when the packet has
// no ports.
func portArg(has bool, port uint16) any {
	if !has {
		return nil
	}
	return int64(port)
}

// port scans a port column leniently: pfwd writes an integer or NULL, but
// in a database someone else wrote the column may hold text ("443"), a
// real (443.0) or anything else. A value that is no whole number reads as
// no port, rather than failing the whole listing.
type port struct{ p **int }

func (c port) Scan(v any) error {
	*c.p = nil
	var n int64
	switch v := v.(type) {
	case int64:
		n = v
	case float64:
		if v != math.Trunc(v) || math.Abs(v) > 1<<31 {
			return nil
		}
		n = int64(v)
	case string:
		var err error
		if n, err = strconv.ParseInt(strings.TrimSpace(v), 10, 32); err != nil {
			return nil
		}
	case []byte:
		return c.Scan(string(v))
	default: // NULL, a time, a bool
		return nil
	}
	i := int(n)
	*c.p = &i
	return nil
}

// text scans a text column leniently into a string. pfwd writes every text
// column itself, but fwctl also reads databases pfwd has not written: the
// seed's, or rows added by hand. There a column may be NULL (read as ""),
// declared DATETIME (go-sqlite3 hands a time.Time, rendered in timeLayout),
// or hold a number; none of that should make a whole listing fail.
type text struct{ s *string }

func (t text) Scan(v any) error {
	switch v := v.(type) {
	case nil:
		*t.s = ""
	case string:
		*t.s = v
	case []byte:
		*t.s = string(v)
	case time.Time:
		*t.s = formatTime(v)
	case int64:
		*t.s = strconv.FormatInt(v, 10)
	case float64:
		*t.s = strconv.FormatFloat(v, 'g', -1, 64)
	case bool:
		*t.s = strconv.FormatBool(v)
	default:
		return fmt.Errorf("cannot read %T as text", v)
	}
	return nil
}
