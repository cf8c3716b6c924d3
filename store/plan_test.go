package store

import (
	"context"
	"errors"
	"testing"
	"time"
)

// The first proposal is kept: later calls return it without proposing,
// whatever they would propose; a plan begun before a field existed reads
// it as its zero value.
func TestPlanParamsAreChosenOnce(t *testing.T) {
	t.Parallel()
	s := setup(t)
	ctx := context.Background()
	if _, _, err := s.Create(ctx, camp("p"), time.Now()); err != nil {
		t.Fatal(err)
	}
	want := PlanParams{Seed: 1<<63 + 5, Parts: 3, Lines: 1234, Digest: "SHA-256=x", Sorted: true}
	got, err := s.PlanParams(ctx, "p", func() (PlanParams, error) { return want, nil })
	if err != nil || got != want {
		t.Fatalf("first call: %+v, %v; want %+v", got, err, want)
	}
	again, err := s.PlanParams(ctx, "p", func() (PlanParams, error) {
		t.Fatal("proposed again")
		return PlanParams{}, nil
	})
	if err != nil || again != want {
		t.Fatalf("second call: %+v, %v", again, err)
	}

	// stored by a campaignd from before plan_sorted
	if _, _, err := s.Create(ctx, camp("old"), time.Now()); err != nil {
		t.Fatal(err)
	}
	if err := s.rdb.HSet(ctx, s.key("old"), "plan_seed", "7", "plan_parts", "2", "plan_lines", "10", "plan_digest", "d").Err(); err != nil {
		t.Fatal(err)
	}
	old, err := s.PlanParams(ctx, "old", func() (PlanParams, error) { return PlanParams{}, errors.New("proposed for a stored plan") })
	if err != nil || old != (PlanParams{Seed: 7, Parts: 2, Lines: 10, Digest: "d"}) {
		t.Fatalf("a plan stored without plan_sorted: %+v, %v", old, err)
	}

	// a lost race: the script keeps the stored parameters, and says so
	if _, _, err := s.Create(ctx, camp("race"), time.Now()); err != nil {
		t.Fatal(err)
	}
	got, err = s.PlanParams(ctx, "race", func() (PlanParams, error) {
		// another process stores its parameters (without plan_sorted) first
		return PlanParams{Seed: 9, Parts: 1}, s.rdb.HSet(ctx, s.key("race"), "plan_seed", "8", "plan_parts", "4", "plan_lines", "0", "plan_digest", "").Err()
	})
	if err != nil || got != (PlanParams{Seed: 8, Parts: 4}) {
		t.Fatalf("after a lost race: %+v, %v", got, err)
	}
	if _, err := s.PlanParams(ctx, "missing", func() (PlanParams, error) { return want, nil }); !errors.Is(err, ErrNotFound) {
		t.Fatalf("a missing campaign: %v", err)
	}
}
