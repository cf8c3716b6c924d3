package pushsim

import (
	"sort"
	"time"
)

// window counts arrivals on one key in a strict sliding window: an arrival at
// t is counted with every arrival in (t-span, t]. The span is 1 s (see
// judgeSpan for limits under 1 call/s).
type window struct {
	times []time.Time // arrival times, oldest first, only those in the window
	head  int
}

// outOfOrder is how much older than the newest arrival an arrival may be
// stamped and still be judged where it belongs.
const outOfOrder = time.Second

// arrive records an arrival at t (stamped when its request reached the
// handler, so a little out of order under concurrency) at its place in
// time, and returns the largest count of arrivals in a window (u-span, u]
// that holds it: its own window, and those of later arrivals it now falls
// into.
func (w *window) arrive(t time.Time, span time.Duration) int {
	live := w.times[w.head:]
	i := sort.Search(len(live), func(k int) bool { return live[k].After(t) })
	w.times = append(w.times, time.Time{})
	copy(w.times[w.head+i+1:], w.times[w.head+i:])
	w.times[w.head+i] = t
	cut := w.times[len(w.times)-1].Add(-span - outOfOrder)
	for w.head < len(w.times) && !w.times[w.head].After(cut) {
		w.head++
	}
	if w.head > 1024 && w.head*2 > len(w.times) {
		w.times = append(w.times[:0], w.times[w.head:]...)
		w.head = 0
	}
	live = w.times[w.head:]
	first := sort.Search(len(live), func(k int) bool { return !live[k].Before(t) })
	most := 0
	for k := first; k < len(live) && live[k].Sub(t) < span; k++ {
		end := live[k]
		lo := sort.Search(len(live), func(j int) bool { return live[j].After(end.Add(-span)) })
		hi := sort.Search(len(live), func(j int) bool { return live[j].After(end) })
		most = max(most, hi-lo)
	}
	return most
}

// judgeSpan returns the window and the arrivals it may hold for a limit of
// r calls/s: (t-1s, t] and r for r >= 1 — an arrival that makes the count
// exceed r is a violation. A limit under 1 call/s cannot be judged on one
// second (a single call would exceed it), so it is judged as one call in any
// 1/r seconds: 0.5/s allows one call in any 2 s.
func judgeSpan(r float64) (time.Duration, float64) {
	if r >= 1 {
		return time.Second, r
	}
	return time.Duration(float64(time.Second) / r), 1
}

// Violation is an arrival that made its sliding 1 s window exceed the limit.
type Violation struct {
	Provider string    `json:"provider"`
	App      string    `json:"app"`
	Group    string    `json:"group"`
	At       time.Time `json:"at"`
	InWindow int       `json:"in_window"`
	Limit    float64   `json:"limit"`
}
