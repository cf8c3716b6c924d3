package worker

import (
	"fmt"
	"testing"

	"github.com/campaignd/campaignd/campaigns"
)

// Every contract kind is handled, each declares the unit of work the
// provider allows per call and the limit groups it spends.
func TestKindsDeclareTheirUnits(t *testing.T) {
	t.Parallel()
	want := map[campaigns.Kind]string{
		campaigns.KindBatchPush:    "map[easemob:100] [push_single]",
		campaigns.KindSinglePush:   "map[easemob:1] [push_sync]",
		campaigns.KindLabelPush:    "map[easemob:1] [push_label]",
		campaigns.KindBroadcast:    "map[easemob:1] [push_task]",
		campaigns.KindLabelMembers: "map[easemob:100 engagelab:1000] [label label_user tags]",
		campaigns.KindUserSettings: "map[easemob:1] [user notification]",
		campaigns.KindTemplate:     "map[easemob:1] [template]",
	}
	infos := KindInfos()
	if len(infos) != len(campaigns.Kinds) {
		t.Fatalf("%d kinds handled, the contract has %d", len(infos), len(campaigns.Kinds))
	}
	for i, ki := range infos {
		if ki.Kind != campaigns.Kinds[i] {
			t.Errorf("kind %d is %s, want %s (contract order)", i, ki.Kind, campaigns.Kinds[i])
		}
		if got := fmt.Sprint(ki.Unit, ki.Groups); got != want[ki.Kind] {
			t.Errorf("%s: %s, want %s", ki.Kind, got, want[ki.Kind])
		}
		if _, ok := Kinds()[ki.Kind]; !ok {
			t.Errorf("%s is listed but not accepted", ki.Kind)
		}
	}
}
