package nft

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	"github.com/mdlayher/netlink"
	"golang.org/x/sys/unix"
)

// tableFlagOwner is NFT_TABLE_F_OWNER (Linux 5.12): the table belongs to the
// netlink socket that created it; only that socket may change it, and the
// kernel deletes it when the socket closes, however the process ends.
const tableFlagOwner = 0x2

// recvBuffer holds the kernel's acknowledgements of a batch: one per
// message, and a set update of 100,000 prefixes is about 70 messages.
const recvBuffer = 4 << 20

// tuneSocket is run on the lasting netlink socket when it is dialed. It keeps
// the socket so the send buffer can grow to the size of a batch, and asks for
// short, explained error acknowledgements.
func (fw *Firewall) tuneSocket(c *netlink.Conn) error {
	fw.sock = c
	// An error acknowledgement does not echo the failed message, which for
	// a 60 kB element message would soon fill the receive buffer. (Extended
	// acknowledgements stay off: mdlayher/netlink v1.11 cannot read their
	// errno from a capped acknowledgement.)
	if err := c.SetOption(netlink.CapAcknowledge, true); err != nil {
		return fmt.Errorf("set NETLINK_CAP_ACK: %w", err)
	}
	return setBuffer(c, unix.SO_RCVBUFFORCE, unix.SO_RCVBUF, recvBuffer)
}

// growSendBuffer makes the socket's send buffer hold a batch of n bytes: a
// batch is sent in one sendmsg, which the kernel refuses (EMSGSIZE) when it
// is larger than the buffer, and a set of 100,000 prefixes is about 4 MB.
func (fw *Firewall) growSendBuffer(n int) error {
	n += 64 << 10 // batch headers, rules and slack
	if n <= fw.sendBuffer {
		return nil
	}
	if err := setBuffer(fw.sock, unix.SO_SNDBUFFORCE, unix.SO_SNDBUF, n); err != nil {
		return err
	}
	fw.sendBuffer = n
	return nil
}

// setBuffer sets a socket buffer size with the *FORCE option, which ignores
// net.core.[rw]mem_max but needs CAP_NET_ADMIN, and falls back to the plain
// option (capped by the sysctl) without it.
func setBuffer(c *netlink.Conn, force, plain, n int) error {
	rc, err := c.SyscallConn()
	if err != nil {
		return fmt.Errorf("netlink socket: %w", err)
	}
	var serr error
	err = rc.Control(func(fd uintptr) {
		serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, force, n)
		if errors.Is(serr, unix.EPERM) {
			serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, plain, n)
		}
	})
	if err == nil {
		err = serr
	}
	if err != nil {
		return fmt.Errorf("size netlink socket buffer to %d bytes: %w", n, err)
	}
	return nil
}

// createOwnedTable creates the table with the owner flag, deleting a stale
// table of the same name in the same transaction when replace is set.
//
// google/nftables v0.3.0 always sends a table's flags as 0, so this one
// batch is written by hand on the same socket; the chains, sets and rules
// follow in a second transaction through the nftables.Conn.
func (fw *Firewall) createOwnedTable(replace bool) error {
	table := func(typ int, flags uint32, hdr netlink.HeaderFlags) netlink.Message {
		ae := netlink.NewAttributeEncoder()
		ae.ByteOrder = binary.BigEndian
		ae.String(unix.NFTA_TABLE_NAME, fw.cfg.Table)
		ae.Uint32(unix.NFTA_TABLE_FLAGS, flags)
		attrs, _ := ae.Encode() // cannot fail: a string and a uint32
		return netlink.Message{
			Header: netlink.Header{
				Type:  netlink.HeaderType(unix.NFNL_SUBSYS_NFTABLES<<8 | typ),
				Flags: netlink.Request | netlink.Acknowledge | hdr,
			},
			Data: append(nfgenmsg(unix.NFPROTO_INET, 0), attrs...),
		}
	}
	batch := func(typ int) netlink.Message {
		return netlink.Message{
			Header: netlink.Header{Type: netlink.HeaderType(typ), Flags: netlink.Request},
			Data:   nfgenmsg(unix.AF_UNSPEC, unix.NFNL_SUBSYS_NFTABLES),
		}
	}
	msgs := []netlink.Message{batch(unix.NFNL_MSG_BATCH_BEGIN)}
	if replace {
		msgs = append(msgs, table(unix.NFT_MSG_DELTABLE, 0, 0))
	}
	msgs = append(msgs,
		table(unix.NFT_MSG_NEWTABLE, tableFlagOwner, netlink.Create|netlink.Excl),
		batch(unix.NFNL_MSG_BATCH_END))

	if _, err := fw.sock.SendMessages(msgs); err != nil {
		return fmt.Errorf("send: %w", err)
	}
	// A read deadline keeps a lost acknowledgement from hanging start-up.
	if err := fw.sock.SetReadDeadline(time.Now().Add(5 * time.Second)); err != nil {
		return fmt.Errorf("set read deadline: %w", err)
	}
	defer fw.sock.SetReadDeadline(time.Time{})
	var errs []error
	for range len(msgs) - 2 {
		if _, err := fw.sock.Receive(); err != nil {
			errs = append(errs, err)
			// The kernel answers a whole batch it refuses outright with a
			// single error; waiting for more acks would only time out.
			if errors.Is(err, unix.EPERM) || errors.Is(err, unix.ENOBUFS) {
				break
			}
		}
	}
	return errors.Join(errs...)
}

// nfgenmsg is the header of every nfnetlink message: family, version 0, and
// the resource id in network byte order.
func nfgenmsg(family uint8, resID uint16) []byte {
	return []byte{family, unix.NFNETLINK_V0, byte(resID >> 8), byte(resID)}
}
