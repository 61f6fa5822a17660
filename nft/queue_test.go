package nft

import (
	"testing"

	"github.com/google/go-cmp/cmp"
	"github.com/google/nftables/expr"
	"github.com/google/nftables/xt"
)

func TestQueueExpr(t *testing.T) {
	// xt info bytes as on a little-endian host (xt_NFQ_info_v3 is in host order).
	info := func(b ...byte) *xt.Unknown { u := xt.Unknown(b); return &u }
	for _, tc := range []struct {
		mode       string
		num, total uint16
		bypass     bool
		want       expr.Any
	}{
		{QueueNative, 0, 1, true, &expr.Queue{Num: 0, Total: 1, Flag: expr.QueueFlagBypass}},
		{QueueNative, 3, 4, false, &expr.Queue{Num: 3, Total: 4, Flag: 0x02}},
		{QueueNative, 3, 4, true, &expr.Queue{Num: 3, Total: 4, Flag: expr.QueueFlagBypass | 0x02}},
		{QueueXT, 0, 1, true, &expr.Target{Name: "NFQUEUE", Rev: 3, Info: info(0, 0, 1, 0, 1, 0, 0, 0)}},
		{QueueXT, 0x0102, 4, false, &expr.Target{Name: "NFQUEUE", Rev: 3, Info: info(2, 1, 4, 0, 2, 0, 0, 0)}},
	} {
		got := queueExpr(tc.mode, tc.num, tc.total, tc.bypass)
		if diff := cmp.Diff(tc.want, got); diff != "" {
			t.Errorf("queueExpr(%q, %d, %d, %v) (-want +got):\n%s", tc.mode, tc.num, tc.total, tc.bypass, diff)
		}
	}
}
