package ratelimit

import (
	"context"
	"math"
	"testing"
	"time"
)

// An adaptive rate falls by a fifth on a refusal, at most once per hold,
// stays there until a hold has passed since the last refusal, climbs back
// quickly to a call fewer in a second than the rate a second before the
// refusal put there, stays there for the plateau, then climbs at the
// normal pace to the limit.
func TestAnAdaptiveRateFallsOnRefusalsAndClimbsBack(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	ctx := context.Background()
	rate := Rate{Key: "app:a:push_single", PerSecond: 10, Adaptive: true}
	for i, st := range []struct {
		advance time.Duration
		refuse  bool
		lowered bool
		want    float64 // the effective rate after the step
	}{
		{0, false, false, 10},
		{0, true, true, 8},                             // peak 10
		{500 * time.Millisecond, true, false, 8},       // within the hold: counts, lowers nothing
		{500 * time.Millisecond, false, false, 8},      // flat until a hold after the last refusal
		{200 * time.Millisecond, true, true, 6.4},      // the peak is the rate a second ago, 8
		{time.Second, false, false, 6.4},               // held
		{1380 * time.Millisecond, false, false, 6.969}, // 0.8/s (a tenth of the peak) up to the plateau: 6.9 calls a second (the peak put 8 in a second), spaced with the margin
		{10 * time.Second, false, false, 7.2365},       // 10 s on the plateau, then 0.4/s (4% of the limit) for 0.67 s
		{time.Minute, false, false, 10},                // at 0.4/s to the limit
	} {
		clk.Advance(st.advance)
		if st.refuse {
			ad, err := l.Refused(ctx, rate)
			if err != nil {
				t.Fatal(err)
			}
			if ad.Lowered != st.lowered || math.Abs(ad.Effective-st.want) > 0.002 {
				t.Fatalf("step %d: refused: lowered %v to %.3f, want %v and %.3f", i, ad.Lowered, ad.Effective, st.lowered, st.want)
			}
		}
		got, err := l.Effective(ctx, rate)
		if err != nil {
			t.Fatal(err)
		}
		if math.Abs(got[0].Effective-st.want) > 0.002 {
			t.Fatalf("step %d: effective %.3f, want %.3f", i, got[0].Effective, st.want)
		}
		// Refusals are counted over the last minute.
		if want := map[bool]int{false: 3, true: 0}[i == 8]; i >= 4 && got[0].Refusals != want {
			t.Fatalf("step %d: %d refusals in the last minute, want %d", i, got[0].Refusals, want)
		}
	}
}

// Reservations on an adaptive key are spaced at its effective rate; a key
// that is not adaptive ignores it.
func TestReservationsFollowTheEffectiveRate(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	ctx := context.Background()
	rate := Rate{Key: "app:b:push_single", PerSecond: 10, Adaptive: true}
	if _, err := l.Refused(ctx, rate); err != nil { // 8/s: spaced 1.01/8 s
		t.Fatal(err)
	}
	for _, tc := range []struct {
		rate Rate
		want time.Duration
	}{
		{rate, 126250 * time.Microsecond},
		{Rate{Key: rate.Key, PerSecond: 10}, 101 * time.Millisecond},
	} {
		clk.Advance(time.Hour) // the key idle; the rate back at its limit after an hour…
		if _, err := l.Refused(ctx, rate); err != nil {
			t.Fatal(err)
		}
		if _, err := l.Reserve(ctx, time.Minute, tc.rate); err != nil {
			t.Fatal(err)
		}
		r, err := l.Reserve(ctx, time.Minute, tc.rate)
		if err != nil {
			t.Fatal(err)
		}
		if r.Wait != tc.want {
			t.Errorf("adaptive %v: second call in %s, want %s", tc.rate.Adaptive, r.Wait, tc.want)
		}
	}
}

// Refusals never take the rate below the floor.
func TestAnAdaptiveRateKeepsItsFloor(t *testing.T) {
	t.Parallel()
	_, clk, r := setup(t)
	l := New(r.Client(t), Options{Clock: clk, Adapt: AdaptOptions{Hold: time.Millisecond}})
	ctx := context.Background()
	rate := Rate{Key: "app:c:push_single", PerSecond: 10, Adaptive: true}
	var ad Adapted
	for range 30 {
		var err error
		if ad, err = l.Refused(ctx, rate); err != nil {
			t.Fatal(err)
		}
		clk.Advance(time.Millisecond)
	}
	if ad.Effective != 0.5 {
		t.Fatalf("after 30 refusals: %.3f/s, want the floor 0.5", ad.Effective)
	}
}
