package pushsim

import "time"

// window counts arrivals on one key in a strict sliding 1-second window:
// an arrival at t is counted with every arrival in (t-1s, t].
type window struct {
	times []time.Time // arrival times, oldest first, only those in the window
	head  int
}

// arrive records an arrival at now and returns how many arrivals the window
// ending at now holds, this one included.
func (w *window) arrive(now time.Time) int {
	if n := len(w.times); n > w.head && now.Before(w.times[n-1]) {
		now = w.times[n-1] // keep the window sorted whatever the caller's clock does
	}
	cut := now.Add(-time.Second)
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

// Violation is an arrival that made its sliding 1 s window exceed the limit.
type Violation struct {
	Provider string    `json:"provider"`
	App      string    `json:"app"`
	Group    string    `json:"group"`
	At       time.Time `json:"at"`
	InWindow int       `json:"in_window"`
	Limit    float64   `json:"limit"`
}
