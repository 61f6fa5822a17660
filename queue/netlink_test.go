package queue

import (
	"bytes"
	"encoding/binary"
	"testing"

	"github.com/google/go-cmp/cmp"
	"golang.org/x/sys/unix"

	"github.com/pfw/pfw/rules"
	"github.com/pfw/pfw/verdict"
)

// packetMsg builds a NFQNL_MSG_PACKET body (after the nlmsghdr) the way the
// kernel lays it out: nfgenmsg, packet header, interface, payload.
func packetMsg(id uint32, hook uint8, payload []byte) []byte {
	b := []byte{unix.AF_INET, 0, 0, 7} // nfgenmsg, queue 7
	hdr := binary.BigEndian.AppendUint32(nil, id)
	hdr = append(hdr, 0x08, 0x00, hook) // hw_protocol IPv4, hook
	b = appendAttr(b, nfqaPacketHdr, hdr)
	b = appendAttr(b, 5, binary.BigEndian.AppendUint32(nil, 2)) // NFQA_IFINDEX_INDEV
	if payload != nil {
		b = appendAttr(b, nfqaPayload, payload)
	}
	return b
}

func TestParsePacket(t *testing.T) {
	payload := bytes.Repeat([]byte{0x45}, 41) // odd length: the attribute is padded
	full := packetMsg(0xdeadbeef, hookLocalOut, payload)
	for _, tc := range []struct {
		name   string
		msg    []byte
		want   queuedPacket
		wantOK bool
	}{
		{"whole", full, queuedPacket{id: 0xdeadbeef, hook: hookLocalOut, payload: payload}, true},
		{"no payload", packetMsg(9, 1, nil), queuedPacket{id: 9, hook: 1}, true},
		{"cut inside the payload keeps what came", full[:len(full)-10], queuedPacket{id: 0xdeadbeef, hook: hookLocalOut, payload: payload[:len(payload)-7]}, true},
		{"no packet header", appendAttr([]byte{2, 0, 0, 7}, nfqaPayload, payload), queuedPacket{payload: payload}, false},
		{"packet header too short", appendAttr([]byte{2, 0, 0, 7}, nfqaPacketHdr, []byte{1, 2, 3}), queuedPacket{}, false},
		{"attribute length below its header", append([]byte{2, 0, 0, 7}, 2, 0, 1, 0), queuedPacket{}, false},
		{"empty", nil, queuedPacket{}, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got, ok := parsePacket(tc.msg)
			if ok != tc.wantOK {
				t.Errorf("ok = %v, want %v", ok, tc.wantOK)
			}
			if diff := cmp.Diff(tc.want, got, cmp.AllowUnexported(queuedPacket{}), cmp.Comparer(bytes.Equal)); diff != "" {
				t.Errorf("parsePacket (-want +got):\n%s", diff)
			}
		})
	}
}

func TestParsePacketAllocatesNothing(t *testing.T) {
	msg := packetMsg(1, 1, make([]byte, 256))
	if n := testing.AllocsPerRun(100, func() { parsePacket(msg) }); n != 0 {
		t.Errorf("parsePacket: %v allocations, want 0", n)
	}
}

// sentVerdict is one verdict message, decoded.
type sentVerdict struct {
	Batch   bool
	Queue   uint16
	Verdict uint32
	ID      uint32
}

// decodeVerdicts decodes the verdict messages in b.
func decodeVerdicts(t *testing.T, b []byte) []sentVerdict {
	t.Helper()
	var out []sentVerdict
	forEachMsg(b, func(typ uint16, m []byte) {
		if len(m) != verdictMsgLen {
			t.Fatalf("verdict message of %d bytes, want %d", len(m), verdictMsgLen)
		}
		if flags := binary.NativeEndian.Uint16(m[6:]); flags != unix.NLM_F_REQUEST {
			t.Errorf("flags %#x: a verdict must not ask for an acknowledgement", flags)
		}
		attrType := binary.NativeEndian.Uint16(m[22:])
		if attrType != nfqaVerdictHdr {
			t.Errorf("attribute %d, want NFQA_VERDICT_HDR", attrType)
		}
		out = append(out, sentVerdict{
			Batch:   typ == nfnlSubsysQueue<<8|nfqnlMsgVerdictBatch,
			Queue:   binary.BigEndian.Uint16(m[18:]),
			Verdict: binary.BigEndian.Uint32(m[24:]),
			ID:      binary.BigEndian.Uint32(m[28:]),
		})
	})
	return out
}

func TestAppendVerdicts(t *testing.T) {
	allow := verdict.Decision{Action: rules.ActionAllow}
	block := verdict.Decision{Action: rules.ActionBlock}
	for _, tc := range []struct {
		name         string
		decs         []verdict.Decision
		single       bool
		want         []sentVerdict
		wantAccepted int
	}{
		{"one", []verdict.Decision{allow}, false, []sentVerdict{{false, 3, nfAccept, 10}}, 1},
		{"one run", []verdict.Decision{block, block, block}, false, []sentVerdict{{true, 3, nfDrop, 12}}, 0},
		{"runs", []verdict.Decision{allow, allow, block, allow, block, block}, false, []sentVerdict{
			{true, 3, nfAccept, 11}, {false, 3, nfDrop, 12}, {false, 3, nfAccept, 13}, {true, 3, nfDrop, 15},
		}, 3},
		{"single after lost verdicts", []verdict.Decision{allow, allow, block}, true, []sentVerdict{
			{false, 3, nfAccept, 10}, {false, 3, nfAccept, 11}, {false, 3, nfDrop, 12},
		}, 2},
		{"none", nil, false, nil, 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := make([]uint32, len(tc.decs))
			for i := range ids {
				ids[i] = 10 + uint32(i)
			}
			out, accepted := appendVerdicts(nil, 3, ids, tc.decs, tc.single)
			if diff := cmp.Diff(tc.want, decodeVerdicts(t, out)); diff != "" {
				t.Errorf("verdicts (-want +got):\n%s", diff)
			}
			if accepted != tc.wantAccepted {
				t.Errorf("accepted %d, want %d", accepted, tc.wantAccepted)
			}
		})
	}
}

func TestAppendVerdictsReusesItsBuffer(t *testing.T) {
	ids := []uint32{1, 2, 3, 4}
	decs := []verdict.Decision{{Action: rules.ActionAllow}, {Action: rules.ActionBlock}, {Action: rules.ActionAllow}, {Action: rules.ActionBlock}}
	buf := make([]byte, 0, 4*verdictMsgLen)
	if n := testing.AllocsPerRun(100, func() { appendVerdicts(buf[:0], 1, ids, decs, false) }); n != 0 {
		t.Errorf("appendVerdicts into a large enough buffer: %v allocations, want 0", n)
	}
}

func TestConfigMsg(t *testing.T) {
	cfg := Config{CopyRange: 256, MaxQueueLen: 4096}
	b := configMsg(5, 1, nfqnlCfgCmdBind, &cfg)
	if got := binary.NativeEndian.Uint32(b); int(got) != len(b) {
		t.Fatalf("nlmsg_len %d, message %d bytes", got, len(b))
	}
	if typ, flags := binary.NativeEndian.Uint16(b[4:]), binary.NativeEndian.Uint16(b[6:]); typ != typeConfig || flags != unix.NLM_F_REQUEST|unix.NLM_F_ACK {
		t.Errorf("type %#x flags %#x, want config with ack", typ, flags)
	}
	if q := binary.BigEndian.Uint16(b[18:]); q != 5 {
		t.Errorf("res_id %d, want queue 5", q)
	}
	attrs := map[uint16][]byte{}
	for a := b[20:]; len(a) >= nlaHdrLen; {
		l := int(binary.NativeEndian.Uint16(a))
		attrs[binary.NativeEndian.Uint16(a[2:])] = a[nlaHdrLen:l]
		a = a[min(nlaAlign(l), len(a)):]
	}
	want := map[uint16][]byte{
		nfqaCfgCmd:         {nfqnlCfgCmdBind, 0, 0, 0},
		nfqaCfgParams:      {0, 0, 1, 0, nfqnlCopyPacket},
		nfqaCfgQueueMaxLen: {0, 0, 0x10, 0},
		nfqaCfgFlags:       {0, 0, 0, nfqaCfgFGSO},
		nfqaCfgMask:        {0, 0, 0, nfqaCfgFGSO | nfqaCfgFFailOpen}, // fail-open explicitly off
	}
	if diff := cmp.Diff(want, attrs); diff != "" {
		t.Errorf("config attributes (-want +got):\n%s", diff)
	}
}

func FuzzParsePacket(f *testing.F) {
	f.Add(packetMsg(1, 1, []byte{0x45, 0, 0, 20}))
	f.Add(packetMsg(2, 3, nil))
	f.Add([]byte{2, 0, 0, 7, 4, 0, 1, 0, 255, 255})
	f.Fuzz(func(t *testing.T, b []byte) {
		p, _ := parsePacket(b)
		if len(p.payload) > len(b) {
			t.Fatalf("payload of %d bytes from a %d-byte message", len(p.payload), len(b))
		}
		forEachMsg(b, func(_ uint16, m []byte) {
			if len(m) < nlmsgHdrLen || len(m) > len(b) {
				t.Fatalf("message of %d bytes from a %d-byte datagram", len(m), len(b))
			}
		})
	})
}
