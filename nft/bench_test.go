package nft

import (
	"math/rand/v2"
	"net/netip"
	"testing"
)

// BenchmarkUpdateSets100k measures what a big threat feed costs: filling a
// fresh table's intel set with 100,000 /32s in one transaction ("full"), and
// then updates that replace 1% of them ("churn1pct", sent as a difference:
// 1,000 deleted, 1,000 added).
func BenchmarkUpdateSets100k(b *testing.B) {
	const n = 100_000
	r := rand.New(rand.NewPCG(3, 4))
	hosts := randomHosts(r, n+n/100)
	full, other := hosts[:n], append(hosts[n/100:n:n], hosts[n:]...)

	b.Run("full", func(b *testing.B) {
		ns := newNetNS(b)
		b.ReportAllocs()
		for b.Loop() {
			b.StopTimer()
			fw, err := Open(Config{NetNS: ns.fd})
			if err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
			if err := fw.UpdateSets(map[List][]netip.Prefix{Intel: full}); err != nil {
				b.Fatal(err)
			}
			b.StopTimer()
			if err := fw.Close(); err != nil {
				b.Fatal(err)
			}
			b.StartTimer()
		}
	})
	b.Run("churn1pct", func(b *testing.B) {
		ns := newNetNS(b)
		fw, err := Open(Config{NetNS: ns.fd, InitialSets: map[List][]netip.Prefix{Intel: full}})
		if err != nil {
			b.Fatal(err)
		}
		defer fw.Close()
		b.ReportAllocs()
		sets := [][]netip.Prefix{other, full}
		i := 0
		for b.Loop() {
			if err := fw.UpdateSets(map[List][]netip.Prefix{Intel: sets[i%2]}); err != nil {
				b.Fatal(err)
			}
			i++
		}
	})
}
