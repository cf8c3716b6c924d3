package store

import (
	"context"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
)

func setup(t *testing.T) *Store {
	t.Helper()
	return New(testenv.StartRedis(t).Client(t), Options{})
}

func camp(id string) *campaigns.Campaign {
	return &campaigns.Campaign{ID: id, App: "default", Kind: campaigns.KindBatchPush, Targets: []string{"a", "b"}}
}

func TestCreateIsAtomic(t *testing.T) {
	t.Parallel()
	s := setup(t)
	var created atomic.Int32
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ok, _, err := s.Create(context.Background(), camp("one"), time.Now())
			if err != nil {
				t.Error(err)
			}
			if ok {
				created.Add(1)
			}
		}()
	}
	wg.Wait()
	if created.Load() != 1 {
		t.Fatalf("created %d times", created.Load())
	}
	counts, _ := s.CountByState(context.Background())
	if counts[campaigns.StateAccepted] != 1 {
		t.Fatalf("state counts %v", counts)
	}
}

func TestRecordBatchOnceAndOneFinisher(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, camp("c"), time.Now()); err != nil {
		t.Fatal(err)
	}
	const batches = 50
	for n := 0; n < batches; n++ {
		if err := s.PutBatches(ctx, "c", n, [][]string{{fmt.Sprintf("t%d", n)}}, int64(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.SetPlanned(ctx, "c", batches, batches); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, "c", campaigns.StateRunning); err != nil {
		t.Fatal(err)
	}
	var firsts, finishers atomic.Int32
	var wg sync.WaitGroup
	for n := 0; n < batches; n++ {
		for dup := 0; dup < 3; dup++ { // every batch recorded by three workers at once
			wg.Add(1)
			go func() {
				defer wg.Done()
				var fails []campaigns.Failure
				sent := int64(1)
				if n == 7 {
					fails, sent = []campaigns.Failure{{Target: "t7", Reason: "FAIL: appUser not exists"}}, 0
				}
				_, first, finished, err := s.RecordBatch(ctx, "c", n, sent, fails, 0)
				if err != nil {
					t.Error(err)
				}
				if first {
					firsts.Add(1)
				}
				if finished {
					finishers.Add(1)
				}
			}()
		}
	}
	wg.Wait()
	if firsts.Load() != batches || finishers.Load() != 1 {
		t.Fatalf("first records %d (want %d), finishers %d (want 1)", firsts.Load(), batches, finishers.Load())
	}
	st, err := s.Status(ctx, "c")
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != campaigns.StatePartiallyFailed || st.Sent != 49 || st.Failed != 1 || st.BatchesDone != batches {
		t.Fatalf("%+v", st)
	}
	var got []campaigns.Failure
	if _, err := s.EachFailure(ctx, "c", func(f campaigns.Failure) error { got = append(got, f); return nil }); err != nil || len(got) != 1 || got[0].Target != "t7" {
		t.Fatalf("failures %v %v", got, err)
	}
	counts, _ := s.CountByState(ctx)
	if counts[campaigns.StatePartiallyFailed] != 1 || counts[campaigns.StateRunning] != 0 {
		t.Fatalf("counts %v", counts)
	}
}

func TestTransitions(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Transition(ctx, "nope", campaigns.StateCancelled); err == nil {
		t.Fatal("unknown id accepted")
	}
	_, _, _ = s.Create(ctx, camp("x"), time.Now())
	if _, ok, _ := s.Transition(ctx, "x", campaigns.StateRunning, campaigns.StatePaused); ok {
		t.Fatal("resume of a campaign that is not paused")
	}
	if _, ok, _ := s.Transition(ctx, "x", campaigns.StateCancelled); !ok {
		t.Fatal("cancel refused")
	}
	if _, ok, _ := s.Transition(ctx, "x", campaigns.StateRunning); ok {
		t.Fatal("a final state changed")
	}
	if _, found, err := s.Lookup(ctx, "missing"); found || err != nil {
		t.Fatalf("lookup of a missing id: %v %v", found, err)
	}
}

func TestBatchInfosReadsARange(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, err := s.BatchInfos(ctx, "nope", 0, 4); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown campaign: %v", err)
	}
	if _, _, err := s.Create(ctx, camp("r"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.PutBatches(ctx, "r", 0, [][]string{{"a", "b"}, {"c"}, {"d"}}, 4); err != nil {
		t.Fatal(err)
	}
	if r, err := s.BatchInfos(ctx, "r", 0, 1); err != nil || r.Planned || r.Status.BatchesTotal != 3 {
		t.Fatalf("before SetPlanned: %+v %v", r, err)
	}
	if _, _, err := s.SetPlanned(ctx, "r", 4, 3); err != nil {
		t.Fatal(err)
	}
	if _, _, _, err := s.RecordBatch(ctx, "r", 1, 1, nil, 0); err != nil {
		t.Fatal(err)
	}
	r, err := s.BatchInfos(ctx, "r", 0, 4)
	if err != nil {
		t.Fatal(err)
	}
	want := []BatchSlot{
		{Targets: []string{"a", "b"}},
		{Done: true, Targets: []string{"c"}},
		{Targets: []string{"d"}},
		{Missing: true},
	}
	if !reflect.DeepEqual(r.Batches, want) {
		t.Fatalf("batches %+v, want %+v", r.Batches, want)
	}
	if !r.Planned || r.Status.BatchesTotal != 3 || r.Status.BatchesDone != 1 || r.Status.TargetsTotal != 4 {
		t.Fatalf("status %+v", r.Status)
	}
	if len(r.Storage) != 4 {
		t.Errorf("storage %q, want the 4 targets", r.Storage)
	}

	// Into a buffer: the same batches, in the buffer's storage; one too
	// small is replaced.
	for _, size := range []int{8, 2} {
		buf := make([]string, 1, size)
		ri, err := s.BatchInfosInto(ctx, "r", 0, 4, buf)
		if err != nil {
			t.Fatal(err)
		}
		if !reflect.DeepEqual(ri.Batches, want) {
			t.Fatalf("into a buffer of %d: batches %+v, want %+v", size, ri.Batches, want)
		}
		if reused := &ri.Storage[0] == &buf[:1][0]; reused != (size >= 4) {
			t.Errorf("buffer of %d: storage reused %v", size, reused)
		}
		// A batch's targets cannot grow into the next batch's.
		if got := append(ri.Batches[0].Targets, "x"); ri.Batches[1].Targets[0] != "c" || len(got) != 3 {
			t.Errorf("appending to batch 0 changed batch 1: %q", ri.Batches[1].Targets)
		}
	}
}

func TestSplitLinesIsStringsSplit(t *testing.T) {
	t.Parallel()
	for _, s := range []string{"a", "a\nb", "a\n\nb", "a\n", "\n", "\na", "ab\ncd\nef"} {
		got := splitLines([]string{"keep"}, s)
		if want := append([]string{"keep"}, strings.Split(s, "\n")...); !reflect.DeepEqual(got, want) {
			t.Errorf("splitLines(%q) = %q, want %q", s, got, want)
		}
	}
}

// Batches are sent while planning goes on: recording them all before the
// plan is complete must not finish the campaign; SetPlanned then does, once.
func TestSetPlannedFinishesWhatWasSentDuringPlanning(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.SetPlanned(ctx, "nope", 1, 1); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown campaign: %v", err)
	}
	for _, tc := range []struct {
		id         string
		recordAll  bool
		wantFinish bool
	}{{"all-sent", true, true}, {"one-left", false, false}} {
		if _, _, err := s.Create(ctx, camp(tc.id), time.Now()); err != nil {
			t.Fatal(err)
		}
		if _, _, err := s.Transition(ctx, tc.id, campaigns.StateRunning); err != nil {
			t.Fatal(err)
		}
		if err := s.PutBatches(ctx, tc.id, 0, [][]string{{"a"}, {"b"}}, 2); err != nil {
			t.Fatal(err)
		}
		for n := 0; n < 2; n++ {
			if n == 1 && !tc.recordAll {
				break
			}
			_, _, finished, err := s.RecordBatch(ctx, tc.id, n, 1, nil, 0)
			if err != nil || finished {
				t.Fatalf("%s: record %d during planning: finished=%v err=%v", tc.id, n, finished, err)
			}
		}
		st, finished, err := s.SetPlanned(ctx, tc.id, 2, 2)
		if err != nil || finished != tc.wantFinish {
			t.Fatalf("%s: SetPlanned finished=%v err=%v, want finished=%v", tc.id, finished, err, tc.wantFinish)
		}
		if tc.wantFinish && (st.Status != campaigns.StateCompleted || st.Sent != 2) {
			t.Fatalf("%s: %+v", tc.id, st)
		}
		if !tc.wantFinish {
			if _, _, finished, err := s.RecordBatch(ctx, tc.id, 1, 1, nil, 0); err != nil || !finished {
				t.Fatalf("%s: last record after planning: finished=%v err=%v", tc.id, finished, err)
			}
		}
		// a second SetPlanned (a re-run plan) finishes nothing again
		if _, finished, err := s.SetPlanned(ctx, tc.id, 2, 2); err != nil || finished {
			t.Fatalf("%s: second SetPlanned finished=%v err=%v", tc.id, finished, err)
		}
	}
	counts, _ := s.CountByState(ctx)
	if counts[campaigns.StateCompleted] != 2 || counts[campaigns.StateRunning] != 0 {
		t.Fatalf("counts %v", counts)
	}
}

// TestRecordsAfterScriptFlush: records group-committed in one pipeline
// still land when Redis has lost its script cache (a restart, SCRIPT
// FLUSH): each is run again on its own, which loads the script.
func TestRecordsAfterScriptFlush(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, camp("f"), time.Now()); err != nil {
		t.Fatal(err)
	}
	const batches = 40
	for n := 0; n < batches; n++ {
		if err := s.PutBatches(ctx, "f", n, [][]string{{fmt.Sprintf("t%d", n)}}, int64(n+1)); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.SetPlanned(ctx, "f", batches, batches); err != nil {
		t.Fatal(err)
	}
	for round := 0; round < 2; round++ {
		if err := s.rdb.ScriptFlush(ctx).Err(); err != nil {
			t.Fatal(err)
		}
		var wg sync.WaitGroup
		for n := round * batches / 2; n < (round+1)*batches/2; n++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				if _, first, _, err := s.RecordBatch(ctx, "f", n, 1, nil, 0); err != nil || !first {
					t.Errorf("batch %d: first %v, %v", n, first, err)
				}
			}()
		}
		wg.Wait()
	}
	st, err := s.Status(ctx, "f")
	if err != nil || st.Sent != batches || st.BatchesDone != batches || st.Status != campaigns.StateCompleted {
		t.Fatalf("status %+v, %v", st, err)
	}
}
