package store

import (
	"context"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
)

// A local-time batch keeps its zone apart from its targets.
func TestZoneLine(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, camp("z"), time.Now()); err != nil {
		t.Fatal(err)
	}
	zoned := AppendZoneLine(nil, "Asia/Tokyo")
	zoned = append(zoned, "u1\nu2"...)
	if err := s.PutJoinedBatches(ctx, "z", 0, [][]byte{zoned, []byte("u3")}, PlanSoFar{Targets: 3}); err != nil {
		t.Fatal(err)
	}
	r, err := s.BatchInfos(ctx, "z", 0, 2)
	if err != nil {
		t.Fatal(err)
	}
	if b := r.Batches[0]; b.Zone != "Asia/Tokyo" || len(b.Targets) != 2 || b.Targets[0] != "u1" || b.Targets[1] != "u2" {
		t.Errorf("zoned batch: %+v", b)
	}
	if b := r.Batches[1]; b.Zone != "" || len(b.Targets) != 1 || b.Targets[0] != "u3" {
		t.Errorf("plain batch: %+v", b)
	}
}

// Defer notes the batches that wait for their zone: next_opening is the
// earliest, and all says so once every batch left waits (the plan
// complete); Undefer takes them back out.
func TestDeferAndUndefer(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, camp("d"), time.Now()); err != nil {
		t.Fatal(err)
	}
	base := time.Date(2026, 12, 8, 0, 0, 0, 0, time.UTC)
	if err := s.PutJoinedBatches(ctx, "d", 0, [][]byte{[]byte("a"), []byte("b"), []byte("c")}, PlanSoFar{Targets: 3}); err != nil {
		t.Fatal(err)
	}
	all, earliest, err := s.Defer(ctx, "d", []int{1}, []time.Time{base.Add(2 * time.Hour)})
	if err != nil || all || !earliest.Equal(base.Add(2*time.Hour)) {
		t.Fatalf("Defer(1) = %v, %v, %v: want not all (not planned), the 02:00 opening", all, earliest, err)
	}
	if _, _, err := s.SetPlanned(ctx, "d", 3, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.RecordBatch(ctx, "d", 0, 1, nil, 0); err != nil {
		t.Fatal(err)
	}
	if all, _, err := s.Defer(ctx, "d", nil, nil); err != nil || all {
		t.Fatalf("batch 2 neither recorded nor waiting, yet all: %v %v", all, err)
	}
	all, earliest, err = s.Defer(ctx, "d", []int{2}, []time.Time{base.Add(time.Hour)})
	if err != nil || !all || !earliest.Equal(base.Add(time.Hour)) {
		t.Fatalf("Defer(2) = %v, %v, %v: want all, the 01:00 opening", all, earliest, err)
	}
	st, err := s.Status(ctx, "d")
	if err != nil || st.NextOpening == nil || !st.NextOpening.Equal(base.Add(time.Hour)) {
		t.Fatalf("next_opening %v (%v), want 01:00", st.NextOpening, err)
	}
	n, first, err := s.Waiting(ctx, "d")
	if err != nil || n != 2 || !first.Equal(base.Add(time.Hour)) {
		t.Fatalf("Waiting = %d, %s, %v", n, first, err)
	}
	if err := s.Undefer(ctx, "d", []int{2}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx, "d"); st.NextOpening == nil || !st.NextOpening.Equal(base.Add(2*time.Hour)) {
		t.Fatalf("after batch 2 went, next_opening %v, want 02:00", st.NextOpening)
	}
	if err := s.Undefer(ctx, "d", []int{1}); err != nil {
		t.Fatal(err)
	}
	if st, _ := s.Status(ctx, "d"); st.NextOpening != nil {
		t.Fatalf("nothing waits, next_opening %v", st.NextOpening)
	}
	if _, _, err := s.Defer(ctx, "nobody", []int{0}, []time.Time{base}); err == nil {
		t.Fatal("Defer on an unknown campaign: no error")
	}
	// A final campaign notes nothing.
	if _, _, err := s.Transition(ctx, "d", campaigns.StateCancelled); err != nil {
		t.Fatal(err)
	}
	if all, _, err := s.Defer(ctx, "d", []int{1}, []time.Time{base}); err != nil || all {
		t.Fatalf("Defer on a cancelled campaign: %v %v", all, err)
	}
	if n, _, _ := s.Waiting(ctx, "d"); n != 0 {
		t.Fatalf("%d batches wait on a cancelled campaign", n)
	}
}

// Advance answers first once per task.
func TestAdvance(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	for i, want := range []bool{true, false, false} {
		if first, err := s.Advance(ctx, "a", 7); err != nil || first != want {
			t.Fatalf("Advance #%d = %v, %v; want %v", i+1, first, err, want)
		}
	}
	if first, _ := s.Advance(ctx, "a", 8); !first {
		t.Fatal("another task's first Advance is not first")
	}
}
