// Package forecast models when a limit group's calls go: campaigns
// (flows) share the group's pace, higher priorities first, an equal
// share for each campaign of one priority (a campaign held by its own
// rate_limit leaves the rest to the others), each from its start. It is
// the limiter's order (ratelimit's local queue: priority, then a fair
// turn per campaign) seen as rates, and answers both the forecast of a
// campaign not yet sent and the ETA of one sending.
//
// The model is pure: its inputs (paces, calls left, starts) are read by
// the caller, and its clock is the now it is given.
package forecast

import (
	"maps"
	"math"
	"slices"
	"time"
)

// Flow is one campaign's calls left on a group.
type Flow struct {
	ID    string
	Rank  int       // campaigns.Priority.Rank(): lower is served first
	Calls float64   // calls left
	Cap   float64   // calls/s the campaign may not pass (its rate_limit as paced); 0: none
	From  time.Time // its first call is not before (its start)
	Held  bool      // paused: takes nothing
	// Gate, when set, opens and closes the flow (its send window): it
	// tells whether the flow may call at t, and when that next changes.
	Gate func(t time.Time) (open bool, change time.Time)
}

// gated reports whether f may call at t, and when that next changes
// (zero: never).
func (f Flow) gated(t time.Time) (bool, time.Time) {
	if f.Gate == nil {
		return true, time.Time{}
	}
	return f.Gate(t)
}

// Result is when one flow's calls go.
type Result struct {
	First time.Time // its first call; zero if it never calls
	Last  time.Time // its last call; zero if it does not finish
	Rate  float64   // calls/s it gets at its first call
	// DoneBy is how many of its calls are made by Options.Until (all of
	// them when it finishes before, or when Until is zero).
	DoneBy float64
}

// Finished reports whether the flow makes all its calls.
func (r Result) Finished() bool { return !r.Last.IsZero() }

// Options are what Run is given besides the flows.
type Options struct {
	Now   time.Time
	Pace  float64   // calls/s the group is booked at (margin and adaptation included)
	Until time.Time // when set, Result.DoneBy counts the calls made by then (expires_at)
}

// maxSteps bounds a simulation: each step ends with a flow finishing,
// starting, or its window opening or closing, so it is reached only by
// thousands of flows, or by windows over many days.
const maxSteps = 100_000

// horizon is how far ahead a simulation looks: a flow not done by then
// is not finished.
const horizon = 400 * 24 * time.Hour

// Run simulates the group from o.Now until the flow id has made all its
// calls (or cannot: held, or no pace) and answers for it. Flows that are
// not id's competitors (another app) must not be given.
func Run(o Options, flows []Flow, id string) Result {
	left := make([]float64, len(flows))
	me := -1
	for i, f := range flows {
		left[i] = f.Calls
		if f.ID == id {
			me = i
		}
	}
	var res Result
	if me < 0 {
		return res
	}
	total := flows[me].Calls
	if total <= 0 {
		res.DoneBy = 0
		res.First, res.Last = laterOf(o.Now, flows[me].From), laterOf(o.Now, flows[me].From)
		return res
	}
	t := o.Now
	alloc := make([]float64, len(flows))
	untilDone := false
	for range maxSteps {
		share(o.Pace, flows, left, t, alloc)
		a := alloc[me]
		if a > 0 && res.First.IsZero() {
			res.First, res.Rate = t, a
		}
		dt := math.Inf(1)
		for i, f := range flows {
			switch {
			case alloc[i] > 0:
				dt = math.Min(dt, left[i]/alloc[i])
			case left[i] > 0 && !f.Held && f.From.After(t):
				dt = math.Min(dt, f.From.Sub(t).Seconds())
			}
			if left[i] > 0 && !f.Held {
				if _, change := f.gated(t); change.After(t) {
					dt = math.Min(dt, change.Sub(t).Seconds())
				}
			}
		}
		if t.Sub(o.Now) > horizon {
			break
		}
		if !o.Until.IsZero() && !untilDone && o.Until.After(t) {
			dt = math.Min(dt, o.Until.Sub(t).Seconds())
		}
		if math.IsInf(dt, 1) { // nothing more happens: id is held, or no pace
			break
		}
		for i := range flows {
			left[i] = math.Max(0, left[i]-alloc[i]*dt)
		}
		t = t.Add(time.Duration(dt * float64(time.Second)))
		if !o.Until.IsZero() && !untilDone && !t.Before(o.Until) {
			untilDone, res.DoneBy = true, total-left[me]
		}
		if left[me] <= 1e-9 {
			// n calls at a/s go at first, first+1/a, …: the last one a
			// spacing before the fluid model empties.
			res.Last = t.Add(-time.Duration(float64(time.Second) / a))
			if res.Last.Before(res.First) {
				res.Last = res.First
			}
			if o.Until.IsZero() || !untilDone {
				res.DoneBy = total
			}
			return res
		}
	}
	if !untilDone {
		res.DoneBy = total - left[me]
	}
	return res
}

// share sets alloc to each flow's calls/s at t: the pace goes to the
// ranks in order; within a rank, equal shares, a flow capped lower than
// its share leaving the rest to the others (max-min fairness).
func share(pace float64, flows []Flow, left []float64, t time.Time, alloc []float64) {
	clear(alloc)
	ranks := map[int][]int{}
	for i, f := range flows {
		if open, _ := f.gated(t); left[i] > 0 && !f.Held && !f.From.After(t) && open {
			ranks[f.Rank] = append(ranks[f.Rank], i)
		}
	}
	free := pace
	for _, r := range slices.Sorted(maps.Keys(ranks)) {
		idx := ranks[r]
		slices.SortFunc(idx, func(a, b int) int { return cmpCap(flows[a].Cap, flows[b].Cap) })
		for n, i := range idx {
			give := free / float64(len(idx)-n)
			if c := flows[i].Cap; c > 0 && c < give {
				give = c
			}
			alloc[i] = give
			free -= give
		}
	}
}

// cmpCap orders caps lowest first, no cap (0) last.
func cmpCap(a, b float64) int {
	switch {
	case a == b:
		return 0
	case a == 0:
		return 1
	case b == 0:
		return -1
	case a < b:
		return -1
	}
	return 1
}

func laterOf(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}
