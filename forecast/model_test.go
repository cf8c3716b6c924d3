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

// A flow whose window closes midway waits for it to open again; another
// flow takes the whole pace meanwhile.
func TestRunWithAGate(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	// open [0 s, 5 s) and [20 s, …)
	gate := func(at time.Time) (bool, time.Time) {
		switch s := at.Sub(now); {
		case s < 5*time.Second:
			return true, now.Add(5 * time.Second)
		case s < 20*time.Second:
			return false, now.Add(20 * time.Second)
		}
		return true, time.Time{}
	}
	r := Run(Options{Now: now, Pace: 10}, []Flow{{ID: "me", Calls: 80, Gate: gate}}, "me")
	// 50 calls in the first 5 s, 30 more from 20 s: the last at 22.9 s.
	if got := r.Last.Sub(now).Seconds(); math.Abs(got-22.9) > 0.01 {
		t.Fatalf("last call at %.2f s, want 22.9", got)
	}
	r = Run(Options{Now: now, Pace: 10}, []Flow{{ID: "w", Calls: 1000, Gate: gate}, {ID: "me", Calls: 100}}, "me")
	// shares 5/s for 5 s (25 calls), then alone at 10/s: 7.5 s more.
	if got := r.Last.Sub(now).Seconds(); math.Abs(got-12.4) > 0.01 {
		t.Fatalf("beside a closed flow: last call at %.2f s, want 12.4", got)
	}
	never := func(at time.Time) (bool, time.Time) { return false, at.Add(time.Hour) }
	if r := Run(Options{Now: now, Pace: 10}, []Flow{{ID: "me", Calls: 1, Gate: never}}, "me"); r.Finished() {
		t.Fatalf("a flow never open finished: %+v", r)
	}
}

// A flow with parts (a local-time campaign's zones) calls while a part
// with calls left is open, its rate shared by its open parts; beside it,
// another flow gets an equal share only while it calls.
func TestRunWithParts(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	from := func(d time.Duration) func(time.Time) (bool, time.Time) { // open from now+d on
		return func(at time.Time) (bool, time.Time) {
			if at.Before(now.Add(d)) {
				return false, now.Add(d)
			}
			return true, time.Time{}
		}
	}
	parts := []Part{{Calls: 100}, {Calls: 50, Gate: from(time.Hour)}}
	r := Run(Options{Now: now, Pace: 10}, []Flow{{ID: "me", Calls: 150, Parts: parts}}, "me")
	// 100 calls in 10 s, then nothing until the second part opens an
	// hour in: its 50 calls take 5 s, the last at 1 h 4.9 s.
	if !r.First.Equal(now) || math.Abs(r.Last.Sub(now).Seconds()-3604.9) > 0.01 {
		t.Fatalf("first %s, last %.2f s after now; want now and 3604.9 s", r.First, r.Last.Sub(now).Seconds())
	}
	// Two parts open together empty together: 20 + 20 calls at 10/s.
	r = Run(Options{Now: now, Pace: 10}, []Flow{{ID: "me", Parts: []Part{{Calls: 20}, {Calls: 20, Gate: from(0)}}}}, "me")
	if math.Abs(r.Last.Sub(now).Seconds()-3.9) > 0.01 {
		t.Fatalf("two open parts: last %.2f s, want 3.9", r.Last.Sub(now).Seconds())
	}
	// Beside another flow: shares 5/s while its first part calls (100
	// calls: 20 s), the other then alone at 10/s until its own window.
	flows := []Flow{{ID: "me", Parts: parts}, {ID: "other", Calls: 300}}
	o := Run(Options{Now: now, Pace: 10}, flows, "other")
	// 100 calls in the 20 s shared, 200 more alone: 40 s, the last at 39.9 s.
	if math.Abs(o.Last.Sub(now).Seconds()-39.9) > 0.01 {
		t.Fatalf("the other flow's last call at %.2f s, want 39.9", o.Last.Sub(now).Seconds())
	}
	if r := Run(Options{Now: now, Pace: 10}, []Flow{{ID: "me", Parts: []Part{{Calls: 5, Gate: from(401 * 24 * time.Hour)}}}}, "me"); r.Finished() {
		t.Fatalf("a part never open within the horizon finished: %+v", r)
	}
}
