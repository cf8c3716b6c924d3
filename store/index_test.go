package store

import (
	"context"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
)

// The by-state counts follow every change and drop a finished campaign
// when its keys expire; a new Store (a restart) reads the same counts.
func TestCountsFollowStatesAndExpiry(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	s := New(rdb, Options{FinishedTTL: time.Second, BatchTTL: time.Second})
	ctx := context.Background()
	for _, id := range []string{"a", "b", "c"} {
		if _, _, err := s.Create(ctx, camp(id), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Transition(ctx, "b", campaigns.StateRunning); err != nil {
		t.Fatal(err)
	}
	if _, _, err := s.Transition(ctx, "c", campaigns.StateCancelled); err != nil {
		t.Fatal(err)
	}
	want := map[campaigns.State]int64{campaigns.StateAccepted: 1, campaigns.StateRunning: 1, campaigns.StateCancelled: 1}
	check := func(s *Store, want map[campaigns.State]int64) {
		t.Helper()
		got, err := s.CountByState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		for _, st := range campaigns.StoredStates() {
			if got[st] != want[st] {
				t.Fatalf("counts %v, want %v", got, want)
			}
		}
	}
	check(s, want)
	check(New(rdb, Options{}), want) // a restarted process
	// c's keys expire after 1 s: it leaves the counts.
	testenv.WaitFor(t, 5*time.Second, "the expired campaign to leave the counts", func() (map[campaigns.State]int64, bool) {
		got, err := s.CountByState(ctx)
		if err != nil {
			t.Fatal(err)
		}
		return got, got[campaigns.StateCancelled] == 0
	})
	check(s, map[campaigns.State]int64{campaigns.StateAccepted: 1, campaigns.StateRunning: 1})
	if n, _ := rdb.ZCard(ctx, s.idx()).Result(); n != 2 {
		t.Fatalf("index holds %d campaigns, want 2", n)
	}
}

// A Redis written by a campaignd older than the index is indexed once.
func TestMigrateIndexesOldCampaigns(t *testing.T) {
	t.Parallel()
	rdb := testenv.StartRedis(t).Client(t)
	s := New(rdb, Options{})
	ctx := context.Background()
	for _, id := range []string{"old-1", "old-2"} {
		if _, _, err := s.Create(ctx, camp(id), time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, _, err := s.Transition(ctx, "old-2", campaigns.StateCompleted); err != nil {
		t.Fatal(err)
	}
	// Forget the index, as an older version never wrote it.
	for _, k := range []string{s.idx(), s.idxState("accepted"), s.idxState("completed"), s.idxExpiry()} {
		rdb.Del(ctx, k)
	}
	rdb.HSet(ctx, s.opts.Prefix+"states", "accepted", 7)
	for range 2 { // twice: the second is a no-op
		if err := s.Migrate(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got, err := s.CountByState(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if got[campaigns.StateAccepted] != 1 || got[campaigns.StateCompleted] != 1 {
		t.Fatalf("counts after migration %v", got)
	}
	if n, _ := rdb.ZCard(ctx, s.idxExpiry()).Result(); n != 1 {
		t.Fatalf("expiry entries %d, want 1 (the completed campaign)", n)
	}
	if n, _ := rdb.Exists(ctx, s.opts.Prefix+"states").Result(); n != 0 {
		t.Fatal("the old counters are still there")
	}
}
