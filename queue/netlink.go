package queue

import (
	"encoding/binary"
	"fmt"
	"os"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The nfnetlink_queue protocol (include/uapi/linux/netfilter/nfnetlink_queue.h),
// spoken directly: go-nfqueue allocates a message, a buffer and a pointer
// per attribute for every packet and reads one packet per system call,
// which cost more than everything pfw does with the packet.
const (
	nfnlSubsysQueue = 3

	nfqnlMsgPacket       = 0
	nfqnlMsgVerdict      = 1
	nfqnlMsgConfig       = 2
	nfqnlMsgVerdictBatch = 3

	nfqaPacketHdr  = 1
	nfqaVerdictHdr = 2
	nfqaPayload    = 10

	nfqaCfgCmd         = 1
	nfqaCfgParams      = 2
	nfqaCfgQueueMaxLen = 3
	nfqaCfgMask        = 4
	nfqaCfgFlags       = 5

	nfqnlCfgCmdBind   = 1
	nfqnlCfgCmdUnbind = 2
	nfqnlCopyPacket   = 2

	nfqaCfgFFailOpen = 1 << 0
	nfqaCfgFGSO      = 1 << 2

	// Verdicts (include/uapi/linux/netfilter.h).
	nfDrop   = 0
	nfAccept = 1

	nlmsgHdrLen   = 16
	nfgenmsgLen   = 4
	nlaHdrLen     = 4
	nlaTypeMask   = 0x3fff // without NLA_F_NESTED and NLA_F_NET_BYTEORDER
	verdictMsgLen = nlmsgHdrLen + nfgenmsgLen + nlaHdrLen + 8
)

// Message types as they appear in nlmsghdr.
const (
	typePacket = nfnlSubsysQueue<<8 | nfqnlMsgPacket
	typeConfig = nfnlSubsysQueue<<8 | nfqnlMsgConfig
)

// queuedPacket is what one NFQUEUE message says about a packet.
type queuedPacket struct {
	id      uint32
	hook    uint8
	payload []byte // into the receive buffer; nil when the message had none
}

// parsePacket reads a NFQNL_MSG_PACKET's attributes (b starts after the
// nlmsghdr). It allocates nothing: payload points into b. ok is false
// when the packet header attribute, which carries the id, is missing.
func parsePacket(b []byte) (p queuedPacket, ok bool) {
	if len(b) < nfgenmsgLen {
		return p, false
	}
	b = b[nfgenmsgLen:]
	for len(b) >= nlaHdrLen {
		l := int(binary.NativeEndian.Uint16(b))
		typ := binary.NativeEndian.Uint16(b[2:]) & nlaTypeMask
		if l < nlaHdrLen {
			break
		}
		// An attribute cut by a truncated read keeps what arrived: the
		// payload's headers are all that is needed.
		data := b[nlaHdrLen:min(l, len(b))]
		switch typ {
		case nfqaPacketHdr:
			// struct nfqnl_msg_packet_hdr { __be32 packet_id; __be16 hw_protocol; __u8 hook; }
			if len(data) >= 7 {
				p.id, p.hook, ok = binary.BigEndian.Uint32(data), data[6], true
			}
		case nfqaPayload:
			p.payload = data
		}
		next := nlaAlign(l)
		if next >= len(b) {
			break
		}
		b = b[next:]
	}
	return p, ok
}

func nlaAlign(n int) int { return (n + 3) &^ 3 }

// putNlmsg writes a netlink header and an nfgenmsg for queue num at the
// start of b (which must have room) and returns the offset after them.
func putNlmsg(b []byte, typ, flags uint16, seq uint32, num uint16) int {
	binary.NativeEndian.PutUint16(b[4:], typ)
	binary.NativeEndian.PutUint16(b[6:], flags)
	binary.NativeEndian.PutUint32(b[8:], seq)
	binary.NativeEndian.PutUint32(b[12:], 0) // to the kernel
	b[16], b[17] = unix.AF_UNSPEC, 0         // nfgenmsg: family, version
	binary.BigEndian.PutUint16(b[18:], num)
	return nlmsgHdrLen + nfgenmsgLen
}

// appendAttr appends one netlink attribute, padded.
func appendAttr(b []byte, typ uint16, data []byte) []byte {
	b = binary.NativeEndian.AppendUint16(b, uint16(nlaHdrLen+len(data)))
	b = binary.NativeEndian.AppendUint16(b, typ)
	b = append(b, data...)
	for len(b)%4 != 0 {
		b = append(b, 0)
	}
	return b
}

// appendVerdict appends a verdict for packet id; with batch, a verdict for
// every packet of the queue up to and including id.
func appendVerdict(b []byte, num uint16, id uint32, verdict uint32, batch bool) []byte {
	typ := uint16(nfnlSubsysQueue<<8 | nfqnlMsgVerdict)
	if batch {
		typ = nfnlSubsysQueue<<8 | nfqnlMsgVerdictBatch
	}
	off := len(b)
	b = append(b, make([]byte, verdictMsgLen)...)[:off+verdictMsgLen] // no allocation once b has grown
	m := b[off:]
	binary.NativeEndian.PutUint32(m, verdictMsgLen)
	n := putNlmsg(m, typ, unix.NLM_F_REQUEST, 0, num)
	binary.NativeEndian.PutUint16(m[n:], nlaHdrLen+8)
	binary.NativeEndian.PutUint16(m[n+2:], nfqaVerdictHdr)
	// struct nfqnl_msg_verdict_hdr { __be32 verdict; __be32 id; }
	binary.BigEndian.PutUint32(m[n+4:], verdict)
	binary.BigEndian.PutUint32(m[n+8:], id)
	return b
}

// configMsg is one NFQNL_MSG_CONFIG for queue num with cmd and, for a
// bind, the copy mode, copy range, queue length and flags, so the queue
// is set up whole in one message.
func configMsg(num uint16, seq uint32, cmd uint8, cfg *Config) []byte {
	b := make([]byte, nlmsgHdrLen+nfgenmsgLen, 64)
	putNlmsg(b, typeConfig, unix.NLM_F_REQUEST|unix.NLM_F_ACK, seq, num)
	b = appendAttr(b, nfqaCfgCmd, []byte{cmd, 0, 0, 0}) // struct nfqnl_msg_config_cmd { u8 command; u8 pad; __be16 pf; }
	if cmd == nfqnlCfgCmdBind {
		params := binary.BigEndian.AppendUint32(nil, cfg.CopyRange) // struct nfqnl_msg_config_params { __be32 copy_range; u8 copy_mode; }
		b = appendAttr(b, nfqaCfgParams, append(params, nfqnlCopyPacket))
		b = appendAttr(b, nfqaCfgQueueMaxLen, binary.BigEndian.AppendUint32(nil, cfg.MaxQueueLen))
		// GSO: take aggregated packets whole instead of making the kernel
		// segment them first; pfw never rewrites payloads. FailOpen is in
		// the mask and cleared: an overflowing queue must drop, not accept.
		b = appendAttr(b, nfqaCfgFlags, binary.BigEndian.AppendUint32(nil, nfqaCfgFGSO))
		b = appendAttr(b, nfqaCfgMask, binary.BigEndian.AppendUint32(nil, nfqaCfgFGSO|nfqaCfgFFailOpen))
	}
	binary.NativeEndian.PutUint32(b, uint32(len(b)))
	return b
}

// mmsghdr is struct mmsghdr, which x/sys/unix does not define.
type mmsghdr struct {
	hdr unix.Msghdr
	len uint32
	_   [4]byte
}

// sock is one NFQUEUE netlink socket. Its descriptor is non-blocking and in
// Go's poller: receive waits there only when the queue is empty, and Close
// (or a deadline) wakes it.
type sock struct {
	num  uint16
	file *os.File
	raw  syscall.RawConn

	// Receive ring: one buffer per message, read by recvmmsg.
	bufs []byte
	size int // bytes per buffer
	iovs []unix.Iovec
	msgs []mmsghdr

	// Set by recvFn, which is a method value made once so that handing it
	// to RawConn.Read allocates nothing.
	got    int
	err    error
	recvFn func(fd uintptr) bool
	out    []byte // what writeFn sends
	wrote  error
	sendFn func(fd uintptr) bool
}

// openSock makes the netlink socket for queue num: receive buffer of
// readBuffer bytes, no ENOBUFS, batch buffers of msgSize bytes.
func openSock(num uint16, batch, msgSize, readBuffer int) (*sock, error) {
	fd, err := unix.Socket(unix.AF_NETLINK, unix.SOCK_RAW|unix.SOCK_CLOEXEC|unix.SOCK_NONBLOCK, unix.NETLINK_NETFILTER)
	if err != nil {
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	fail := func(op string, err error) (*sock, error) {
		unix.Close(fd)
		return nil, fmt.Errorf("%s: %w", op, err)
	}
	if err := unix.Bind(fd, &unix.SockaddrNetlink{Family: unix.AF_NETLINK}); err != nil {
		return fail("bind netlink socket", err)
	}
	// The forced size passes net.core.rmem_max, which would otherwise cap a
	// flood's backlog at a few hundred packets.
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUFFORCE, readBuffer); err != nil {
		if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_RCVBUF, readBuffer); err != nil {
			return fail("set receive buffer", err)
		}
	}
	// Without NETLINK_NO_ENOBUFS a full socket buffer makes the next read
	// fail with ENOBUFS; the kernel drops the packet either way (the queue
	// is not fail-open), and we would rather count than error.
	if err := unix.SetsockoptInt(fd, unix.SOL_NETLINK, unix.NETLINK_NO_ENOBUFS, 1); err != nil {
		return fail("set NETLINK_NO_ENOBUFS", err)
	}
	return newSock(fd, num, batch, msgSize)
}

// newSock makes a sock of the non-blocking datagram socket fd, which it
// takes over (closes on failure): a netlink one, or in tests one end of a
// socket pair.
func newSock(fd int, num uint16, batch, msgSize int) (*sock, error) {
	s := &sock{num: num, file: os.NewFile(uintptr(fd), fmt.Sprintf("nfqueue-%d", num)), size: msgSize}
	var err error
	if s.raw, err = s.file.SyscallConn(); err != nil {
		s.file.Close()
		return nil, fmt.Errorf("netlink socket: %w", err)
	}
	s.bufs = make([]byte, batch*msgSize)
	s.iovs = make([]unix.Iovec, batch)
	s.msgs = make([]mmsghdr, batch)
	for i := range s.msgs {
		s.iovs[i].Base = &s.bufs[i*msgSize]
		s.iovs[i].SetLen(msgSize)
		s.msgs[i].hdr.Iov, s.msgs[i].hdr.Iovlen = &s.iovs[i], 1
	}
	s.recvFn = s.recvmmsg
	s.sendFn = s.send
	return s, nil
}

func (s *sock) recvmmsg(fd uintptr) bool {
	for i := range s.msgs {
		s.msgs[i].len = 0
		s.msgs[i].hdr.Flags = 0
	}
	r, _, errno := unix.Syscall6(unix.SYS_RECVMMSG, fd, uintptr(unsafe.Pointer(&s.msgs[0])), uintptr(len(s.msgs)), 0, 0, 0)
	switch errno {
	case 0:
		s.got, s.err = int(r), nil
	case unix.EAGAIN:
		return false // wait in the poller
	case unix.EINTR:
		return s.recvmmsg(fd)
	default:
		s.got, s.err = 0, errno
	}
	return true
}

// receive waits for at least one message and reads as many as are waiting,
// up to the batch size. The i-th is datagram(i), valid until the next call.
func (s *sock) receive() (int, error) {
	if err := s.raw.Read(s.recvFn); err != nil {
		return 0, err
	}
	return s.got, s.err
}

// datagram is the i-th message of the last receive.
func (s *sock) datagram(i int) []byte {
	return s.bufs[i*s.size : i*s.size+int(min(s.msgs[i].len, uint32(s.size)))]
}

func (s *sock) send(fd uintptr) bool {
	for {
		_, err := unix.Write(int(fd), s.out)
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return false
		}
		s.wrote = err
		return true
	}
}

// write sends b, one or more netlink messages, in one system call.
func (s *sock) write(b []byte) error {
	s.out = b
	err := s.raw.Write(s.sendFn)
	s.out = nil
	if err != nil {
		return err
	}
	return s.wrote
}

// exec sends one request asking for an acknowledgement and waits for it
// (timeout at most). Packets that arrive meanwhile are handed to onPacket
// with their datagram, so none goes without a verdict.
func (s *sock) exec(req []byte, timeout time.Duration, onPacket func([]byte)) error {
	seq := binary.NativeEndian.Uint32(req[8:])
	if err := s.write(req); err != nil {
		return err
	}
	s.file.SetReadDeadline(time.Now().Add(timeout))
	defer s.file.SetReadDeadline(time.Time{})
	for {
		n, err := s.receive()
		if err != nil {
			return err
		}
		acked, ackErr := false, error(nil)
		for i := range n {
			forEachMsg(s.datagram(i), func(typ uint16, m []byte) {
				switch {
				case typ == unix.NLMSG_ERROR && len(m) >= nlmsgHdrLen+4 && binary.NativeEndian.Uint32(m[8:]) == seq:
					acked = true
					if errno := -int32(binary.NativeEndian.Uint32(m[nlmsgHdrLen:])); errno != 0 {
						ackErr = unix.Errno(errno)
					}
				case typ == typePacket && onPacket != nil:
					onPacket(m)
				}
			})
		}
		if acked {
			return ackErr
		}
	}
}

// nextMsg splits the first netlink message off a datagram; ok is false
// when none is left or its length is impossible. A message longer than
// the datagram was cut by the read (recvmmsg truncates what outgrows its
// buffer): m is then what arrived, cut is set and rest is empty. A cut
// packet message still waits in the kernel for its verdict and must be
// decided like any other, or a later batch verdict would answer it
// undecided; its headers normally arrived whole, and a packet cut before
// them decodes as malformed and is dropped.
func nextMsg(b []byte) (typ uint16, m, rest []byte, cut, ok bool) {
	if len(b) < nlmsgHdrLen {
		return 0, nil, nil, false, false
	}
	l := int(binary.NativeEndian.Uint32(b))
	if l < nlmsgHdrLen {
		return 0, nil, nil, false, false
	}
	typ = binary.NativeEndian.Uint16(b[4:])
	if l > len(b) {
		return typ, b, nil, true, true
	}
	return typ, b[:l], b[min(nlaAlign(l), len(b)):], false, true
}

// forEachMsg calls fn with the type and bytes of each netlink message in a
// datagram, a cut last one included (see nextMsg), stopping at one whose
// length is impossible.
func forEachMsg(b []byte, fn func(typ uint16, m []byte)) {
	for {
		typ, m, rest, _, ok := nextMsg(b)
		if !ok {
			return
		}
		fn(typ, m)
		b = rest
	}
}

// close closes the socket; a receive waiting on it returns an error.
func (s *sock) close() error { return s.file.Close() }
