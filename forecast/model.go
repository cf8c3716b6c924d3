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
	// Parts, when set, are the flow's calls by the window each waits for
	// (a local-time campaign's zones): the flow calls while one of its
	// parts with calls left is open, its rate shared by its open parts
	// in proportion to their calls left. Calls is their sum; Gate is not
	// used.
	Parts []Part
}

// Part is some of a flow's calls that wait for their own window.
type Part struct {
	Calls float64
	Gate  func(t time.Time) (open bool, change time.Time) // nil: always open
}

// gated reports whether f may call at t, and when that next changes
// (zero: never).
func (f Flow) gated(t time.Time) (bool, time.Time) {
	if f.Gate == nil {
		return true, time.Time{}
	}
	return f.Gate(t)
}

// gate reports whether a gate (nil: always open) is open at t, and when
// that next changes (zero: never).
func gate(g func(time.Time) (bool, time.Time), t time.Time) (bool, time.Time) {
	if g == nil {
		return true, time.Time{}
	}
	return g(t)
}

// state is a simulation's calls left: per flow, and per part of the
// flows with parts.
type state struct {
	flows []Flow
	left  []float64
	parts [][]float64 // parts[i][j]: flow i's part j's calls left (nil without parts)
}

func newState(flows []Flow) *state {
	s := &state{flows: flows, left: make([]float64, len(flows)), parts: make([][]float64, len(flows))}
	for i, f := range flows {
		s.left[i] = f.Calls
		if len(f.Parts) > 0 {
			s.parts[i] = make([]float64, len(f.Parts))
			s.left[i] = 0
			for j, p := range f.Parts {
				s.parts[i][j] = p.Calls
				s.left[i] += p.Calls
			}
		}
	}
	return s
}

// open reports whether flow i may call at t (a flow with parts: one of
// its parts with calls left is open), and when that next changes (zero:
// never).
func (s *state) open(i int, t time.Time) (bool, time.Time) {
	f := s.flows[i]
	if s.parts[i] == nil {
		return f.gated(t)
	}
	any := false
	var next time.Time
	for j, p := range f.Parts {
		if s.parts[i][j] <= 0 {
			continue
		}
		o, change := gate(p.Gate, t)
		any = any || o
		if change.After(t) && (next.IsZero() || change.Before(next)) {
			next = change
		}
	}
	return any, next
}

// spend takes dt seconds of flow i's rate a from its calls left (a flow
// with parts: from its open parts, in proportion to their calls left).
func (s *state) spend(i int, a, dt float64, t time.Time) {
	if a <= 0 {
		return
	}
	s.left[i] = math.Max(0, s.left[i]-a*dt)
	if s.parts[i] == nil {
		return
	}
	var openLeft float64
	for j, p := range s.flows[i].Parts {
		if o, _ := gate(p.Gate, t); o {
			openLeft += s.parts[i][j]
		}
	}
	if openLeft <= 0 {
		return
	}
	for j, p := range s.flows[i].Parts {
		if o, _ := gate(p.Gate, t); o {
			s.parts[i][j] = math.Max(0, s.parts[i][j]-a*dt*s.parts[i][j]/openLeft)
		}
	}
}

// untilEmpty is how many seconds flow i at rate a takes to empty (a flow
// with parts: its open parts, which its rate empties together).
func (s *state) untilEmpty(i int, a float64, t time.Time) float64 {
	if s.parts[i] == nil {
		return s.left[i] / a
	}
	var openLeft float64
	for j, p := range s.flows[i].Parts {
		if o, _ := gate(p.Gate, t); o {
			openLeft += s.parts[i][j]
		}
	}
	return openLeft / a
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
	st := newState(flows)
	me := -1
	for i, f := range flows {
		if f.ID == id {
			me = i
		}
	}
	var res Result
	if me < 0 {
		return res
	}
	total := st.left[me]
	if total <= 0 {
		res.DoneBy = 0
		res.First, res.Last = laterOf(o.Now, flows[me].From), laterOf(o.Now, flows[me].From)
		return res
	}
	t := o.Now
	alloc := make([]float64, len(flows))
	untilDone := false
	for range maxSteps {
		share(o.Pace, st, t, alloc)
		a := alloc[me]
		if a > 0 && res.First.IsZero() {
			res.First, res.Rate = t, a
		}
		dt := math.Inf(1)
		for i, f := range flows {
			switch {
			case alloc[i] > 0:
				dt = math.Min(dt, st.untilEmpty(i, alloc[i], t))
			case st.left[i] > 0 && !f.Held && f.From.After(t):
				dt = math.Min(dt, f.From.Sub(t).Seconds())
			}
			if st.left[i] > 0 && !f.Held {
				if _, change := st.open(i, t); change.After(t) {
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
			st.spend(i, alloc[i], dt, t)
		}
		t = t.Add(time.Duration(dt * float64(time.Second)))
		if !o.Until.IsZero() && !untilDone && !t.Before(o.Until) {
			untilDone, res.DoneBy = true, total-st.left[me]
		}
		if st.left[me] <= 1e-9 {
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
		res.DoneBy = total - st.left[me]
	}
	return res
}

// share sets alloc to each flow's calls/s at t: the pace goes to the
// ranks in order; within a rank, equal shares, a flow capped lower than
// its share leaving the rest to the others (max-min fairness).
func share(pace float64, st *state, t time.Time, alloc []float64) {
	clear(alloc)
	flows := st.flows
	ranks := map[int][]int{}
	for i, f := range flows {
		if open, _ := st.open(i, t); st.left[i] > 0 && !f.Held && !f.From.After(t) && open {
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
