package nft

import (
	"encoding/binary"
	"testing"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// newGenMessage is a NEWGEN payload as the kernel sends it: struct
// nfgenmsg, then the generation id, the process id and name.
func newGenMessage(t testing.TB, id uint32) []byte {
	ae := netlink.NewAttributeEncoder()
	ae.ByteOrder = binary.BigEndian
	ae.Uint32(unix.NFTA_GEN_ID, id)
	ae.Uint32(unix.NFTA_GEN_PROC_PID, 4242)
	ae.String(unix.NFTA_GEN_PROC_NAME, "nft")
	b, err := ae.Encode()
	if err != nil {
		t.Fatal(err)
	}
	return append([]byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, b...)
}

func TestParseGeneration(t *testing.T) {
	if id, ok := parseGeneration(newGenMessage(t, 0xdeadbeef)); !ok || id != 0xdeadbeef {
		t.Errorf("parseGeneration = %#x, %v; want 0xdeadbeef, true", id, ok)
	}
	for name, b := range map[string][]byte{
		"empty":          nil,
		"header only":    {unix.AF_UNSPEC, 0, 0, 0},
		"short id":       {unix.AF_UNSPEC, 0, 0, 0, 6, 0, unix.NFTA_GEN_ID, 0, 1, 2},
		"truncated attr": {unix.AF_UNSPEC, 0, 0, 0, 8, 0, unix.NFTA_GEN_ID},
	} {
		if id, ok := parseGeneration(b); ok {
			t.Errorf("%s: parseGeneration = %d, true; want no generation", name, id)
		}
	}
}

// The kernel's answer is bytes from outside the process: no input may
// panic.
func FuzzParseGeneration(f *testing.F) {
	f.Add(newGenMessage(f, 1))
	f.Add([]byte{unix.AF_UNSPEC, 0, 0, 0, 8, 0, unix.NFTA_GEN_ID, 0, 0, 0, 0, 7})
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, b []byte) {
		parseGeneration(b)
	})
}

// The kernel answers NFT_MSG_GETGEN, and every commit moves the
// generation on by one.
func TestGenerationCountsCommits(t *testing.T) {
	ns := newNetNS(t)
	g, err := dialGeneration(ns.fd)
	if err != nil {
		t.Fatal(err)
	}
	defer g.close()
	before, err := g.read()
	if err != nil {
		t.Fatal(err)
	}
	ns.run(t, "nft", "add", "table", "inet", "gen_test")
	after, err := g.read()
	if err != nil {
		t.Fatal(err)
	}
	if after != before+1 {
		t.Errorf("generation %d after one commit, was %d", after, before)
	}
}
