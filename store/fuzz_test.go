package store

import (
	"context"
	"net/netip"
	"testing"
	"time"
)

// FuzzLenientRows puts rows of any shape into the tables fwctl reads, the
// way a seed database or a hand edit can: each text column NULL, an
// integer, a real, text (any bytes), a blob, a time or a boolean; ports
// NULL or any integer. fwctl's reads never fail on such a row: Logs (plain
// and with a CIDR filter), Stats, Threats and LoadThreats. Text and blob
// values read back as their bytes, NULL as "". The CIDR filter selects a
// row exactly when one of its addresses, as text, is an address in the
// prefix. LoadThreats gives only valid, masked entries that PrefixText
// spells back the same, and skips the rest.
func FuzzLenientRows(f *testing.F) {
	const text3 = 3 | 3<<3 | 3<<6 | 3<<9 | 3<<12 | 3<<15 | 3<<18 | 3<<21 | 3<<24 | 3<<27 | 3<<30
	f.Add(uint64(text3), "2026-11-25 15:04:05.123", "203.0.113.7", "192.0.2.1", "tcp", int64(22), 0.0, "203.0.113.0/24")
	f.Add(uint64(text3), "2026-11-25 15:04:05.123", "::ffff:203.0.113.7", "2001:db8::1", "icmpv6", int64(-1), 0.0, "::/0")
	f.Add(uint64(text3), "x", "fe80::1%eth0", "192.0.2.9/24", "", int64(1<<40), 0.0, "fe80::/10")
	f.Add(uint64(0), "", "", "", "", int64(0), 0.0, "0.0.0.0/0")
	f.Add(uint64(0x1249249249249249), "", "", "", "", int64(42), 1.5, "192.0.2.0/24")              // integers
	f.Add(uint64(0x2492492492492492), "", "", "", "", int64(42), 1e300, "192.0.2.0/24")            // reals
	f.Add(uint64(0x4924924924924924), "\xff\x00", "1.2.3.4", "", "", int64(42), 0.0, "1.2.3.4/32") // blobs
	f.Add(uint64(0x5b6db6db6db6db6d), "", "", "", "", int64(42), 0.0, "")                          // times, booleans
	s := openTemp(f)
	ctx := context.Background()
	now := time.Date(2026, 11, 25, 16, 0, 0, 0, time.UTC)
	f.Fuzz(func(t *testing.T, kinds uint64, a, b, c, d string, n int64, x float64, filter string) {
		column := 0
		value := func(s string) any { // the next column's value, of the kind kinds says
			k := (kinds >> (3 * column)) & 7
			column++
			switch k {
			case 1:
				return n
			case 2:
				return x
			case 3:
				return s
			case 4:
				return []byte(s)
			case 5:
				return now.Add(time.Duration(n))
			case 6:
				return n%2 == 0
			}
			return nil
		}
		port := func() any { return value(d) } // any kind: a port column may hold text, a real, a blob
		ts, src, dst, sport, dport, proto, reason, hash, dir := value(a), value(b), value(c), port(), port(), value(d), value(a), value(b), value(c)
		ip, level, seen, source := value(b), value(d), value(a), value(c)
		t.Cleanup(func() {
			if _, err := s.write.ExecContext(ctx, "DELETE FROM blocked_packets; DELETE FROM threat_intel"); err != nil {
				t.Fatal(err)
			}
		})
		_, err := s.write.ExecContext(ctx, `INSERT INTO blocked_packets (timestamp, src_ip, dst_ip, src_port, dst_port,
			protocol, reason, packet_hash, direction) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
			ts, src, dst, sport, dport, proto, reason, hash, dir)
		if err == nil {
			checkLogRow(t, s, src, dst, proto, reason, filter)
			st, err := s.Stats(ctx, now)
			if err != nil || st.Blocked != 1 {
				t.Fatalf("Stats over the row: %+v, %v", st, err)
			}
		}
		if _, err := s.write.ExecContext(ctx, `INSERT INTO threat_intel (ip, threat_level, last_seen, source)
			VALUES (?, ?, ?, ?)`, ip, level, seen, source); err != nil {
			return // NOT NULL or a NaN: no such row can exist
		}
		rows, err := s.Threats(ctx, 0)
		if err != nil || len(rows) != 1 {
			t.Fatalf("Threats over the row: %+v, %v", rows, err)
		}
		if want, ok := textOf(ip); ok && rows[0].IP != want {
			t.Fatalf("threat ip %q reads back as %q", want, rows[0].IP)
		}
		loaded, err := s.LoadThreats(ctx)
		if err != nil || len(loaded) > 1 {
			t.Fatalf("LoadThreats over the row: %+v, %v", loaded, err)
		}
		for _, th := range loaded {
			p := th.IP
			if !p.IsValid() || p != p.Masked() {
				t.Fatalf("LoadThreats gave %v from ip %q", p, rows[0].IP)
			}
			if p.Addr().Is4In6() {
				t.Fatalf("LoadThreats gave the IPv4-mapped %v from ip %q: it would never match an IPv4 packet", p, rows[0].IP)
			}
			if again, err := parsePrefixText(PrefixText(p)); err != nil || again != p {
				t.Fatalf("LoadThreats gave %v, which PrefixText spells %q and reads back as %v, %v", p, PrefixText(p), again, err)
			}
		}
	})
}

// checkLogRow checks that Logs returns the one row with the text values
// it was given, and that a CIDR filter selects it exactly when one of its
// addresses lies in the prefix.
func checkLogRow(t *testing.T, s *Store, src, dst, proto, reason any, filter string) {
	t.Helper()
	rows, err := s.Logs(context.Background(), LogQuery{Table: "blocked"})
	if err != nil || len(rows) != 1 {
		t.Fatalf("Logs over the row: %+v, %v", rows, err)
	}
	r := rows[0]
	for _, c := range []struct {
		name string
		in   any
		got  string
	}{{"src_ip", src, r.SrcIP}, {"dst_ip", dst, r.DstIP}, {"protocol", proto, r.Protocol}, {"reason", reason, r.Reason}} {
		if want, ok := textOf(c.in); ok && c.got != want {
			t.Fatalf("%s %q reads back as %q", c.name, want, c.got)
		}
	}
	p, err := netip.ParsePrefix(filter)
	if err != nil {
		return
	}
	in := func(v any) bool {
		s, ok := v.(string) // what SQLite keeps as text; a blob or number is no address
		if !ok {
			return false
		}
		a, err := netip.ParseAddr(s)
		return err == nil && p.Masked().Contains(a.Unmap())
	}
	rows, err = s.Logs(context.Background(), LogQuery{Table: "blocked", Net: p})
	if err != nil {
		t.Fatalf("Logs in %v: %v", p, err)
	}
	if want := in(src) || in(dst); (len(rows) == 1) != want {
		t.Fatalf("Logs in %v over src %q, dst %q: %d rows, want the row: %v", p, r.SrcIP, r.DstIP, len(rows), want)
	}
}

// textOf is what a text or blob value reads back as; ok is false for the
// other kinds, which SQLite converts its own way.
func textOf(v any) (string, bool) {
	switch v := v.(type) {
	case nil:
		return "", true
	case string:
		return v, true
	case []byte:
		return string(v), true
	}
	return "", false
}
