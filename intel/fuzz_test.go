package intel

import (
	"bytes"
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
	"testing/iotest"

	"github.com/google/go-cmp/cmp"
)

// FuzzParse feeds arbitrary bytes to Parse (seeded with every sample in
// testdata/ and the corpus in testdata/fuzz/FuzzParse) and checks the
// properties the daemon relies on: no panic; Invalid <= Lines; on success
// every entry is valid, masked, unmapped, zone-free and strictly sorted, and
// at most half the lines are invalid; on failure no entries and a known
// error; the same result whatever the read sizes; no success with a cap one
// byte or one entry too small; and Sanitize's output is safe to install.
func FuzzParse(f *testing.F) {
	files, err := os.ReadDir("testdata")
	if err != nil {
		f.Fatal(err)
	}
	for _, file := range files {
		if file.IsDir() {
			continue
		}
		data, err := os.ReadFile(filepath.Join("testdata", file.Name()))
		if err != nil {
			f.Fatal(err)
		}
		f.Add(data)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		res, err := Parse(bytes.NewReader(data))
		if res.Invalid < 0 || res.Invalid > res.Lines {
			t.Fatalf("Invalid %d, Lines %d", res.Invalid, res.Lines)
		}
		if (res.Invalid == 0) != (res.FirstInvalid == "") {
			t.Fatalf("Invalid %d but FirstInvalid %q", res.Invalid, res.FirstInvalid)
		}
		if err != nil {
			if res.Entries != nil {
				t.Fatalf("error %v with %d entries", err, len(res.Entries))
			}
			if !errors.Is(err, ErrNotBlocklist) && !errors.Is(err, ErrTooLarge) && !errors.Is(err, ErrTruncated) {
				t.Fatalf("unexpected error kind: %v", err)
			}
		} else {
			if res.Invalid*2 > res.Lines {
				t.Fatalf("accepted with %d of %d lines invalid", res.Invalid, res.Lines)
			}
			checkEntries(t, res.Entries, false)
		}

		// Reading one byte at a time must not change anything: line
		// splitting may not depend on how the body arrives.
		slow, slowErr := Parse(iotest.OneByteReader(bytes.NewReader(data)))
		if diff := cmp.Diff(res, slow, cmpPrefix); diff != "" || (err == nil) != (slowErr == nil) {
			t.Fatalf("one-byte reads changed the result (-whole +one-byte):\n%s\nerrors: %v / %v", diff, err, slowErr)
		}

		if len(data) < 64 {
			checkIPv4FastPath(t, string(data))
			checkParsePrefix(t, string(data))
		}

		// A cap never lets part of a body through: one byte or one entry
		// short, the same data must fail.
		if len(data) > 0 {
			if _, err := parse(bytes.NewReader(data), int64(len(data))-1, DefaultMaxEntries); err == nil {
				t.Fatalf("accepted %d bytes with a cap of %d", len(data), len(data)-1)
			}
		}
		if err == nil && len(res.Entries) > 0 {
			if _, err := parse(bytes.NewReader(data), DefaultMaxSize, len(res.Entries)-1); !errors.Is(err, ErrTooLarge) {
				t.Fatalf("%d entries with a cap of %d: error = %v, want ErrTooLarge", len(res.Entries), len(res.Entries)-1, err)
			}
		}

		if err == nil {
			kept, _ := Sanitize(res.Entries, Protected{})
			checkEntries(t, kept, true)
			for _, p := range kept {
				if (p.Addr().Is4() && p.Bits() < MinBitsIPv4) || (p.Addr().Is6() && p.Bits() < MinBitsIPv6) {
					t.Fatalf("Sanitize kept %v", p)
				}
				if r, ok := overlapping(p, unblockable); ok {
					t.Fatalf("Sanitize kept %v, which %s", p, r.reason)
				}
			}
		}
	})
}

// checkEntries asserts the shape of an entry list; disjoint also requires
// that no entry overlaps another.
func checkEntries(t *testing.T, entries []netip.Prefix, disjoint bool) {
	t.Helper()
	for i, p := range entries {
		if !p.IsValid() || p != p.Masked() || p.Addr().Is4In6() || p.Addr().Zone() != "" {
			t.Fatalf("entry %d: %v is not a canonical prefix", i, p)
		}
		if i == 0 {
			continue
		}
		prev := entries[i-1]
		if comparePrefix(prev, p) >= 0 {
			t.Fatalf("entries %d and %d out of order or duplicate: %v, %v", i-1, i, prev, p)
		}
		if disjoint && prev.Overlaps(p) {
			t.Fatalf("entries %d and %d overlap: %v, %v", i-1, i, prev, p)
		}
	}
}
