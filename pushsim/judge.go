package pushsim

import "time"

// window counts arrivals on one key in a strict sliding window: an arrival at
// t is counted with every arrival in (t-span, t]. The span is 1 s (see
// judgeSpan for limits under 1 call/s).
type window struct {
	times []time.Time // arrival times, oldest first, only those in the window
	head  int
}

// arrive records an arrival at now and returns how many arrivals the window
// (now-span, now] holds, this one included.
func (w *window) arrive(now time.Time, span time.Duration) int {
	if n := len(w.times); n > w.head && now.Before(w.times[n-1]) {
		now = w.times[n-1] // keep the window sorted whatever the caller's clock does
	}
	cut := now.Add(-span)
	for w.head < len(w.times) && !w.times[w.head].After(cut) {
		w.head++
	}
	if w.head > 1024 && w.head*2 > len(w.times) {
		w.times = append(w.times[:0], w.times[w.head:]...)
		w.head = 0
	}
	w.times = append(w.times, now)
	return len(w.times) - w.head
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
