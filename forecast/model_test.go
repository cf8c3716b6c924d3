package forecast

import (
	"math"
	"testing"
	"time"
)

func TestRun(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	sec := func(s float64) time.Time { return now.Add(time.Duration(s * float64(time.Second))) }
	const pace = 10.0
	tests := []struct {
		name        string
		flows       []Flow
		until       time.Time
		first, last float64 // seconds from now; last < 0: does not finish
		doneBy      float64
	}{
		{"alone", []Flow{{ID: "me", Calls: 60}}, time.Time{}, 0, 5.9, 60},
		{"shares its priority", []Flow{{ID: "big", Calls: 1000}, {ID: "me", Calls: 20}}, time.Time{}, 0, 3.8, 20},
		{"after a higher priority", []Flow{{ID: "hi", Rank: 0, Calls: 100}, {ID: "me", Rank: 1, Calls: 10}}, time.Time{}, 10, 10.9, 10},
		{"a lower priority waits", []Flow{{ID: "lo", Rank: 2, Calls: 100}, {ID: "me", Rank: 1, Calls: 10}}, time.Time{}, 0, 0.9, 10},
		{"beside a capped one", []Flow{{ID: "slow", Calls: 1000, Cap: 2}, {ID: "me", Calls: 16}}, time.Time{}, 0, 1.875, 16},
		{"its own cap", []Flow{{ID: "me", Calls: 10, Cap: 2}}, time.Time{}, 0, 4.5, 10},
		{"a paused one takes nothing", []Flow{{ID: "p", Calls: 1000, Held: true}, {ID: "me", Calls: 10}}, time.Time{}, 0, 0.9, 10},
		{"starts later", []Flow{{ID: "me", Calls: 10, From: sec(30)}}, time.Time{}, 30, 30.9, 10},
		{"the other finishes first", []Flow{{ID: "a", Calls: 10}, {ID: "me", Calls: 30}}, time.Time{}, 0, 3.9, 30},
		{"expires midway", []Flow{{ID: "me", Calls: 100}}, sec(4), 0, 9.9, 40},
		{"held itself", []Flow{{ID: "me", Calls: 10, Held: true}}, time.Time{}, -1, -1, 0},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			r := Run(Options{Now: now, Pace: pace, Until: tc.until}, tc.flows, "me")
			near := func(got time.Time, want float64) bool {
				return math.Abs(got.Sub(now).Seconds()-want) < 0.01
			}
			if tc.first < 0 {
				if !r.First.IsZero() || r.Finished() {
					t.Fatalf("%+v: want no call", r)
				}
				return
			}
			if !near(r.First, tc.first) || !near(r.Last, tc.last) || math.Abs(r.DoneBy-tc.doneBy) > 0.01 {
				t.Fatalf("first %v last %v done %.2f; want %.2f s, %.2f s, %.2f",
					r.First.Sub(now), r.Last.Sub(now), r.DoneBy, tc.first, tc.last, tc.doneBy)
			}
		})
	}
}
