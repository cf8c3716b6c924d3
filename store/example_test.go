package store_test

import (
	"context"
	"fmt"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/store"
)

// A campaign's life in the store, as the worker drives it: created once,
// its batches planned, each batch's outcome recorded once, and the final
// status read back.
func Example() {
	rdb, stop := testenv.RedisForExample()
	defer stop()
	s := store.New(rdb, store.Options{})
	ctx := context.Background()

	c := &campaigns.Campaign{ID: "spring-sale", App: "default", Kind: campaigns.KindBatchPush,
		Targets: []string{"u1", "u2", "u3"}}
	created, st, err := s.Create(ctx, c, time.Now())
	fmt.Println("created:", created, st.Status, err)
	created, st, _ = s.Create(ctx, c, time.Now()) // the same id again is left as it is
	fmt.Println("created again:", created, st.Status)

	// The plan stores the batches, then the final totals.
	if err := s.PutBatches(ctx, c.ID, 0, [][]string{{"u1", "u2"}, {"u3"}}, 3); err != nil {
		fmt.Println(err)
		return
	}
	st, _, _ = s.Transition(ctx, c.ID, campaigns.StateRunning)
	fmt.Println(st.Status, "with", st.BatchesTotal, "batches stored")
	st, _, _ = s.SetPlanned(ctx, c.ID, 3, 2)
	fmt.Println("planned:", st.Planned, "targets:", st.TargetsTotal)

	// Each batch is recorded once: a redelivered record changes nothing,
	// and the caller recording the last batch finishes the campaign.
	_, first, finished, _ := s.RecordBatch(ctx, c.ID, 0, 2, nil, 0)
	fmt.Println("batch 0: first", first, "finished", finished)
	_, first, _, _ = s.RecordBatch(ctx, c.ID, 0, 2, nil, 0)
	fmt.Println("batch 0 again: first", first)
	refused := []campaigns.Failure{{Target: "u3", Reason: "user not found"}}
	_, first, finished, _ = s.RecordBatch(ctx, c.ID, 1, 0, refused, 0)
	fmt.Println("batch 1: first", first, "finished", finished)

	st, _ = s.Status(ctx, c.ID)
	fmt.Printf("%s: sent %d, failed %d, batches %d/%d\n", st.Status, st.Sent, st.Failed, st.BatchesDone, st.BatchesTotal)
	_, _ = s.EachFailure(ctx, c.ID, func(f campaigns.Failure) error {
		fmt.Println("refused:", f.Target, "-", f.Reason)
		return nil
	})
	// Output:
	// created: true accepted <nil>
	// created again: false accepted
	// running with 2 batches stored
	// planned: true targets: 3
	// batch 0: first true finished false
	// batch 0 again: first false
	// batch 1: first true finished true
	// partially_failed: sent 2, failed 1, batches 2/2
	// refused: u3 - user not found
}

// List pages through the stored campaigns, newest submission first,
// optionally only those in one state; CountByState counts them all.
func ExampleStore_List() {
	rdb, stop := testenv.RedisForExample()
	defer stop()
	s := store.New(rdb, store.Options{})
	ctx := context.Background()

	for _, id := range []string{"a", "b", "c"} {
		c := &campaigns.Campaign{ID: id, App: "default", Kind: campaigns.KindBatchPush, Targets: []string{"u1"}}
		if _, _, err := s.Create(ctx, c, time.Now()); err != nil {
			fmt.Println(err)
			return
		}
	}
	_, _, _ = s.Transition(ctx, "b", campaigns.StateCancelled)

	q := store.ListQuery{Limit: 2}
	for page := 1; ; page++ {
		sts, next, err := s.List(ctx, q)
		if err != nil {
			fmt.Println(err)
			return
		}
		for _, st := range sts {
			fmt.Printf("page %d: %s %s\n", page, st.ID, st.Status)
		}
		if next == "" {
			break
		}
		q.Cursor = next
	}

	accepted, _, _ := s.List(ctx, store.ListQuery{Status: campaigns.StateAccepted})
	fmt.Println("accepted:", len(accepted))
	counts, _ := s.CountByState(ctx)
	fmt.Println("cancelled:", counts[campaigns.StateCancelled], "accepted:", counts[campaigns.StateAccepted])
	// Output:
	// page 1: c accepted
	// page 1: b cancelled
	// page 2: a accepted
	// accepted: 2
	// cancelled: 1 accepted: 2
}
