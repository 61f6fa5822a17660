package intel

import (
	"bytes"
	"compress/gzip"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"runtime"
	"runtime/metrics"
	"strings"
	"testing"
	"testing/iotest"
	"time"
)

// endlessReader repeats block forever (or up to limit bytes, if set), like a
// server that never ends its body. It counts the bytes it served and, every
// MiB, samples the heap, so a test can tell how far a parse read and how much
// memory it held meanwhile.
type endlessReader struct {
	block    []byte
	limit    int64
	off      int
	served   int64
	peakHeap uint64
	sample   []metrics.Sample
}

func newEndlessReader(block []byte) *endlessReader {
	return &endlessReader{block: block, sample: []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}}}
}

func (r *endlessReader) Read(b []byte) (int, error) {
	if r.limit > 0 {
		if r.served >= r.limit {
			return 0, io.EOF
		}
		b = b[:min(int64(len(b)), r.limit-r.served)]
	}
	n := 0
	for n < len(b) {
		c := copy(b[n:], r.block[r.off:])
		n += c
		r.off = (r.off + c) % len(r.block)
	}
	if r.served>>20 != (r.served+int64(n))>>20 {
		metrics.Read(r.sample)
		r.peakHeap = max(r.peakHeap, r.sample[0].Value.Uint64())
	}
	r.served += int64(n)
	return n, nil
}

// lines joins n lines made by line(i).
func lines(n int, line func(i int) string) []byte {
	var b bytes.Buffer
	for i := range n {
		b.WriteString(line(i))
		b.WriteByte('\n')
	}
	return b.Bytes()
}

// distinctV4 is a block of distinct, unsorted IPv4 addresses: repeated, it
// yields valid lines forever.
var distinctV4 = lines(100_000, func(i int) string {
	x := uint32(i) * 2654435761
	return fmt.Sprintf("%d.%d.%d.%d", 1+x>>24%223, x>>16&0xff, x>>8&0xff, x&0xff)
})

var distinctV6 = lines(100_000, func(i int) string {
	x := uint32(i) * 2654435761
	return fmt.Sprintf("2001:db8:%x:%x::1", x>>16, x&0xffff)
})

// endlessCases are bodies that never end (or end just under the byte cap
// with far too many entries), what Parse must say about them, and the most
// it may allocate meanwhile (0: not checked). Before the caps were enforced
// while reading, these allocated 400-800 MiB and held up to 470 MiB live.
var endlessCases = []struct {
	name     string
	body     func() *endlessReader
	wantErr  string
	maxAlloc uint64
}{
	{
		name:    "valid IPv4 lines",
		body:    func() *endlessReader { return newEndlessReader(distinctV4) },
		wantErr: "over the limit of 250000 entries",
		// 8-byte keys, the last doubling included: 4 MiB.
		maxAlloc: 8 << 20,
	},
	{
		name:    "valid IPv6 lines",
		body:    func() *endlessReader { return newEndlessReader(distinctV6) },
		wantErr: "over the limit of 250000 entries",
		// 24-byte keys (12 MiB with the last doubling) and the string
		// net/netip parses, garbage at once (6 MiB).
		maxAlloc: 24 << 20,
	},
	{
		name: "short lines just under the byte cap",
		body: func() *endlessReader {
			r := newEndlessReader([]byte("1.2.3.4\n"))
			r.limit = DefaultMaxSize - 1
			return r
		},
		wantErr: "over the limit of 250000 entries",
		// Four million lines, but reading stops at entry 250,001.
		maxAlloc: 8 << 20,
	},
	{
		name:     "one endless line",
		body:     func() *endlessReader { return newEndlessReader([]byte("192.0.2.1192.0.2.1")) },
		wantErr:  "body over the limit of 32 MiB",
		maxAlloc: 1 << 20,
	},
	{
		name:     "junk lines",
		body:     func() *endlessReader { return newEndlessReader([]byte("not an address: example.com\n")) },
		wantErr:  "body over the limit of 32 MiB",
		maxAlloc: 1 << 20,
	},
	{
		name:     "hex junk lines",
		body:     func() *endlessReader { return newEndlessReader([]byte("deadbeef\n")) },
		wantErr:  "body over the limit of 32 MiB",
		maxAlloc: 1 << 20,
	},
	{
		// What may be IPv6 goes through net/netip, which allocates for
		// each error: garbage, collected as it goes (the peak is checked).
		name:    "IPv6-like junk lines",
		body:    func() *endlessReader { return newEndlessReader([]byte("dead:beef\n")) },
		wantErr: "body over the limit of 32 MiB",
	},
	{
		name:     "comments",
		body:     func() *endlessReader { return newEndlessReader([]byte("# DstIP, and nothing else\n")) },
		wantErr:  "body over the limit of 32 MiB",
		maxAlloc: 1 << 20,
	},
}

// TestParseEndless asserts that a body that never ends, or holds far too many
// entries, fails with ErrTooLarge naming the limit, stops being read at the
// limit, allocates no more than its case allows, and never holds more heap
// than the byte cap above what was in use before. Not parallel: it measures
// the heap, and runs before the parallel tests.
func TestParseEndless(t *testing.T) {
	for _, tt := range endlessCases {
		t.Run(tt.name, func(t *testing.T) {
			body := tt.body()
			var before, after runtime.MemStats
			runtime.GC()
			runtime.ReadMemStats(&before)
			res, err := Parse(body)
			runtime.ReadMemStats(&after)

			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tt.wantErr) {
				t.Fatalf("error = %v, want ErrTooLarge saying %q", err, tt.wantErr)
			}
			if res.Entries != nil {
				t.Errorf("rejected body returned %d entries", len(res.Entries))
			}
			// The byte after the cap is read, to tell the cap from an
			// excess; nothing more.
			if body.served > DefaultMaxSize+1 {
				t.Errorf("read %d bytes, want at most the %d-byte cap and one byte", body.served, DefaultMaxSize)
			}
			alloc := after.TotalAlloc - before.TotalAlloc
			if tt.maxAlloc > 0 && alloc > tt.maxAlloc {
				t.Errorf("allocated %.1f MiB, want at most %.0f MiB", mib(alloc), mib(tt.maxAlloc))
			}
			// GC pacing makes the peak vary; the bound holds with room
			// to spare (the worst case, IPv6 lines, peaks near 15 MiB).
			peak := body.peakHeap - min(body.peakHeap, before.HeapAlloc)
			if peak > DefaultMaxSize {
				t.Errorf("heap peaked %.1f MiB above its start, want at most the %.0f MiB byte cap", mib(peak), mib(DefaultMaxSize))
			}
			t.Logf("%v; read %.1f MiB, allocated %.1f MiB, heap peaked %.1f MiB above its start", err, mib(uint64(body.served)), mib(alloc), mib(peak))
		})
	}
}

func mib(n uint64) float64 { return float64(n) / (1 << 20) }

// BenchmarkParseEndless reports, for each endless body, the bytes allocated
// and the peak heap of the process seen while it was read (sampled every MiB).
func BenchmarkParseEndless(b *testing.B) {
	for _, tt := range endlessCases {
		b.Run(strings.ReplaceAll(tt.name, " ", "_"), func(b *testing.B) {
			b.ReportAllocs()
			var peak uint64
			for b.Loop() {
				body := tt.body()
				if _, err := Parse(body); !errors.Is(err, ErrTooLarge) {
					b.Fatal(err)
				}
				peak = max(peak, body.peakHeap)
			}
			b.ReportMetric(mib(peak), "peak-heap-MiB")
		})
	}
}

func TestParseEntryCap(t *testing.T) {
	v4 := func(i int) string { return fmt.Sprintf("192.0.2.%d", i) }
	tests := []struct {
		name    string
		body    []byte
		wantErr bool
	}{
		{"exactly the limit", lines(10, v4), false},
		{"one over the limit", lines(11, v4), true},
		{"duplicates count", lines(11, func(int) string { return "192.0.2.1" }), true},
		{"both families count", append(lines(6, v4), lines(5, func(i int) string { return fmt.Sprintf("2001:db8::%d", i) })...), true},
		{"comments and invalid lines do not count", append(lines(10, v4), "# comment\nnot an address\n"...), false},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			res, err := parse(bytes.NewReader(tt.body), DefaultMaxSize, 10)
			if !tt.wantErr {
				if err != nil || len(res.Entries) == 0 {
					t.Fatalf("error %v, %d entries; want success", err, len(res.Entries))
				}
				return
			}
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "over the limit of 10 entries (line 11)") {
				t.Errorf("error = %v, want ErrTooLarge naming the limit and the line", err)
			}
			if res.Entries != nil {
				t.Errorf("rejected body returned %d entries", len(res.Entries))
			}
		})
	}

	// The default, with a list of that many distinct addresses.
	full := distinctV4
	for bytes.Count(full, []byte("\n")) < DefaultMaxEntries {
		full = append(full, distinctV4...) // duplicates count: that is the point
	}
	atCap := full[:nthLineEnd(full, DefaultMaxEntries)]
	if res, err := Parse(bytes.NewReader(atCap)); err != nil || len(res.Entries) == 0 {
		t.Errorf("%d lines: error %v, %d entries; want success", DefaultMaxEntries, err, len(res.Entries))
	}
	overCap := full[:nthLineEnd(full, DefaultMaxEntries+1)]
	if _, err := Parse(bytes.NewReader(overCap)); !errors.Is(err, ErrTooLarge) {
		t.Errorf("%d lines: error = %v, want ErrTooLarge", DefaultMaxEntries+1, err)
	}
}

// nthLineEnd returns the offset just past the n-th newline of b.
func nthLineEnd(b []byte, n int) int {
	off := 0
	for range n {
		off += bytes.IndexByte(b[off:], '\n') + 1
	}
	return off
}

func TestCapReader(t *testing.T) {
	tests := []struct {
		name    string
		data    string
		limit   int64
		want    string
		wantErr bool
	}{
		{"empty", "", 0, "", false},
		{"under", "abc", 5, "abc", false},
		{"exactly", "abcde", 5, "abcde", false},
		{"one over", "abcdef", 5, "abcde", true},
		{"far over", strings.Repeat("x", 100), 5, "xxxxx", true},
		{"zero limit", "a", 0, "", true},
		{"no limit to speak of", "abc", math.MaxInt64, "abc", false},
	}
	for _, tt := range tests {
		for _, slow := range []bool{false, true} {
			t.Run(fmt.Sprintf("%s/one-byte=%v", tt.name, slow), func(t *testing.T) {
				var r io.Reader = strings.NewReader(tt.data)
				if slow {
					r = iotest.OneByteReader(r)
				}
				got, err := io.ReadAll(newCapReader(r, tt.limit))
				if string(got) != tt.want {
					t.Errorf("read %q, want %q", got, tt.want)
				}
				if tt.wantErr != errors.Is(err, ErrTooLarge) || (!tt.wantErr && err != nil) {
					t.Errorf("error = %v, want ErrTooLarge: %v", err, tt.wantErr)
				}
			})
		}
	}
}

func TestByteSize(t *testing.T) {
	for n, want := range map[int64]string{
		DefaultMaxSize: "32 MiB", 64 << 10: "64 KiB", 1500 << 10: "1500 KiB",
		999: "999 bytes", 1: "1 byte", 0: "0 bytes", 1<<20 + 1: "1048577 bytes",
	} {
		if got := byteSize(n); got != want {
			t.Errorf("byteSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// endlessHandler streams body forever, gzip-compressed if asked, until the
// client goes away.
func endlessHandler(block []byte, gz bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		var out io.Writer = w
		if gz {
			w.Header().Set("Content-Encoding", "gzip")
			zw := gzip.NewWriter(w)
			defer zw.Close()
			out = zw
		}
		for r.Context().Err() == nil {
			if _, err := out.Write(block); err != nil {
				return
			}
		}
	}
}

// TestFetchEndless serves bodies that never end, and a sparse file far over
// the cap: each fetch must fail with ErrTooLarge, naming the URL and the
// limit, as soon as the cap is reached.
func TestFetchEndless(t *testing.T) {
	tests := []struct {
		name    string
		handler http.HandlerFunc
		wantErr string
	}{
		{"valid lines", endlessHandler(distinctV4, false), "over the limit of 250000 entries"},
		{"one endless line", endlessHandler(bytes.Repeat([]byte("1"), 64<<10), false), "body over the limit of 32 MiB"},
		// 32 MiB of junk is about 100 KiB compressed: the cap applies to
		// what the body expands to.
		{"gzip bomb", endlessHandler(bytes.Repeat([]byte("junk\n"), 64<<10), true), "body over the limit of 32 MiB"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			ts := httptest.NewServer(tt.handler)
			defer ts.Close()
			var f Fetcher
			start := time.Now()
			_, err := f.Fetch(t.Context(), ts.URL+"/list.txt?key=secret", Validators{})
			if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), tt.wantErr) ||
				!strings.HasPrefix(err.Error(), "fetch "+ts.URL+"/list.txt?…: ") {
				t.Fatalf("error = %v, want ErrTooLarge naming the URL and saying %q", err, tt.wantErr)
			}
			if elapsed := time.Since(start); elapsed > 20*time.Second {
				t.Errorf("took %v to give up", elapsed)
			}
		})
	}

	t.Run("sparse file over the cap", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "huge.txt")
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 1<<30); err != nil {
			t.Fatal(err)
		}
		var f Fetcher
		_, err := f.Fetch(t.Context(), "file://"+path, Validators{})
		if !errors.Is(err, ErrTooLarge) || !strings.Contains(err.Error(), "1073741824 bytes, over the limit of 32 MiB") {
			t.Errorf("error = %v, want ErrTooLarge naming the size and the limit", err)
		}
	})
}

func TestManagerKeepsEntriesOverLimit(t *testing.T) {
	t.Parallel()
	ts := httptest.NewServer(endlessHandler([]byte("198.51.100.1\n198.51.100.2\n"), false))
	t.Cleanup(ts.Close)
	var rec recorder
	opts := rec.options()
	opts.Fetcher = &Fetcher{MaxEntries: 100}
	m := NewManager(opts)
	if err := m.SetFeeds([]Feed{{Name: "Endless", URL: ts.URL, Interval: time.Hour}}); err != nil {
		t.Fatal(err)
	}
	seed := prefixes("192.0.2.1/32", "192.0.2.2/32")
	m.Seed("Endless", seed)
	run(t, m)

	waitFor(t, 10*time.Second, "a failed attempt", func() bool { return state(m, "Endless").Failures >= 1 })
	if s := state(m, "Endless"); s.Entries != 2 || !strings.Contains(s.LastError, "too large: over the limit of 100 entries") {
		t.Errorf("state after an endless body: %+v", s)
	}
	if _, ok := rec.event("Endless", slog.LevelWarn, "over the limit of 100 entries (line 101); keeping 2 entries"); !ok {
		t.Errorf("no failure event naming the limit:%s", rec.dump())
	}
	if got, _ := m.Entries("Endless"); len(got) != 2 {
		t.Errorf("entries after the rejection: %v, want the seed %v", got, seed)
	}
	if n := len(rec.updatesOf("Endless")); n != 0 {
		t.Errorf("%d updates for a rejected body, want 0", n)
	}
}
