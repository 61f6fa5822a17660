package nft

import (
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// The kernel numbers the nftables ruleset of a network namespace: every
// committed transaction, anyone's, adds one to its generation. With
// FailClosed, fw notes the generation its own commits made (flush), so
// Repair can tell in one small request that nobody committed anything
// since, and look at the table and its set elements only when somebody
// did.

// generationReader asks the kernel for the ruleset generation.
type generationReader struct{ conn *netlink.Conn }

func dialGeneration(netns int) (*generationReader, error) {
	c, err := netlink.Dial(unix.NETLINK_NETFILTER, &netlink.Config{NetNS: netns})
	if err != nil {
		return nil, fmt.Errorf("nft: netlink for the ruleset generation: %w", err)
	}
	return &generationReader{conn: c}, nil
}

// read returns the current generation (NFT_MSG_GETGEN).
func (g *generationReader) read() (uint32, error) {
	msgs, err := g.conn.Execute(netlink.Message{
		Header: netlink.Header{Type: netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | unix.NFT_MSG_GETGEN), Flags: netlink.Request},
		Data:   []byte{unix.AF_UNSPEC, unix.NFNETLINK_V0, 0, 0}, // struct nfgenmsg
	})
	if err != nil {
		return 0, fmt.Errorf("nft: read the ruleset generation: %w", err)
	}
	for _, m := range msgs {
		if id, ok := parseGeneration(m.Data); ok {
			return id, nil
		}
	}
	return 0, errors.New("nft: read the ruleset generation: the answer holds none")
}

// parseGeneration reads NFTA_GEN_ID from a NEWGEN message's payload.
func parseGeneration(b []byte) (uint32, bool) {
	if len(b) < 4 {
		return 0, false
	}
	ad, err := netlink.NewAttributeDecoder(b[4:])
	if err != nil {
		return 0, false
	}
	ad.ByteOrder = binary.BigEndian
	for ad.Next() {
		if ad.Type() == unix.NFTA_GEN_ID && len(ad.Bytes()) == 4 {
			return ad.Uint32(), true
		}
	}
	return 0, false
}

func (g *generationReader) close() error { return g.conn.Close() }

// flush commits what is queued on fw.conn (fw.mu held). With FailClosed it
// reads the generation before and after: when the commit was the only one
// in between, the one after is fw's own; otherwise (a failed read, a
// refused batch, a commit by someone else in the same instant) fw knows
// no generation, and the next Repair looks at the table itself.
func (fw *Firewall) flush() error {
	if fw.gen == nil {
		return fw.conn.Flush()
	}
	before, berr := fw.gen.read()
	err := fw.conn.Flush()
	after, aerr := fw.gen.read()
	fw.genKnown = err == nil && berr == nil && aerr == nil && after == before+1
	fw.genID = after
	return err
}
