package ratelimit

import (
	"testing"
	"time"
)

// The fastest answer is remembered for one to two periods, per host and
// group, so a path that got slower for good stops counting as slow.
func TestAnswerTimesFollowTheFastestRecentAnswer(t *testing.T) {
	t.Parallel()
	a := newAnswerTimes(10 * time.Second)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	ms := time.Millisecond
	for i, tc := range []struct {
		group  string
		at     time.Duration // written, after t0
		took   time.Duration
		slower time.Duration
	}{
		{"a", 0, 5 * ms, 0},           // the host's first answer
		{"a", time.Second, 2 * ms, 0}, // faster
		{"a", 2 * time.Second, 9 * ms, 7 * ms},
		{"b", 2 * time.Second, 9 * ms, 7 * ms},    // a group's first: against the host's fastest
		{"b", 3 * time.Second, 9 * ms, 0},         // then against its own
		{"a", 3 * time.Second, 8 * ms, 6 * ms},    // groups are apart
		{"a", 11 * time.Second, 30 * ms, 28 * ms}, // a new period: the last one's fastest still counts
		{"a", 21 * time.Second, 30 * ms, 0},       // two periods on: 30 ms is the fastest now
		{"b", 22 * time.Second, 45 * ms, 15 * ms}, // b idle two periods: forgotten, against the host's 30 ms
		{"a", 45 * time.Second, 40 * ms, 0},       // all idle two periods: nothing to compare with
		{"a", 46 * time.Second, 0, 0},
		{"a", 47 * time.Second, 1 * ms, 1 * ms},
	} {
		if got := a.slower("h", tc.group, t0.Add(tc.at), tc.took); got != tc.slower {
			t.Errorf("%d: %s at %s took %s: slower by %s, want %s", i, tc.group, tc.at, tc.took, got, tc.slower)
		}
	}
}

// Hosts are apart: a host's first answer is compared with nothing.
func TestAnswerTimesKeepHostsApart(t *testing.T) {
	t.Parallel()
	a := newAnswerTimes(10 * time.Second)
	now := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	a.slower("fast", "push_single", now, time.Millisecond)
	if got := a.slower("far", "push_single", now, 200*time.Millisecond); got != 0 {
		t.Fatalf("another host's first answer slower by %s, want 0", got)
	}
	if got := a.slower("far", "token", now, 230*time.Millisecond); got != 30*time.Millisecond {
		t.Fatalf("the far host's first token answer slower by %s, want 30ms", got)
	}
}
