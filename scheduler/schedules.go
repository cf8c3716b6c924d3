package scheduler

import (
	"time"

	"github.com/robfig/cron/v3"
)

// ScheduleInfo is a read-only view of one entry, for the schedules API,
// page and CLI.
type ScheduleInfo struct {
	Name string
	Spec string // the cron spec as configured
	Zone string // the zone's name ("UTC" when the entry has none)
	// Next holds the next fire times after now, in the entry's zone; fewer
	// than asked when the spec runs out (a 30 February never comes).
	Next []time.Time
	// Last is the most recent fire time at or before now, in the entry's
	// zone; zero when there is none (see Schedules). LastID is its
	// campaign id (TickID), "" when Last is zero.
	Last   time.Time
	LastID string
}

// maxLookBack bounds how far back Schedules looks for an entry's last
// fire time: a spec that last matched before that (or never) has none.
// robfig/cron's Next gives up after five years too.
const maxLookBack = 5 * 366 * 24 * time.Hour

// Schedules tells each entry's spec, zone, next n fire times and last fire
// time, in config order.
//
// The last fire time is computed from the spec, not from what this process
// fired: it is the same on every process, also one started after the tick,
// and it is the tick whose campaign (LastID) any process submitted, if one
// was running then and the tick was within the grace. robfig/cron cannot
// step backwards, so it is found with Next: the latest x with Next(x) <= now
// is searched for by doubling a window back from now (from one minute up to
// maxLookBack) and then halving it to the second, and Last is Next(x): about
// 50 calls of Next, whatever the spec. A spec that is not a cron expression
// (@every 1h) has no fixed fire times, as its ticks count from when the
// process started: its Last is the latest tick this Scheduler saw come due,
// zero before the first.
func (s *Scheduler) Schedules(n int) []ScheduleInfo {
	now := s.opts.Clock.Now()
	type snap struct {
		name, spec string
		loc        *time.Location
		sched      cron.Schedule
		seen       time.Time
	}
	s.mu.Lock()
	snaps := make([]snap, 0, len(s.entries))
	for _, e := range s.entries {
		snaps = append(snaps, snap{e.Name, e.Spec, e.loc, e.sched, e.seen})
	}
	s.mu.Unlock()

	out := make([]ScheduleInfo, 0, len(snaps))
	for _, e := range snaps {
		info := ScheduleInfo{Name: e.name, Spec: e.spec, Zone: e.loc.String(), Next: nextFires(e.sched, now, n)}
		for i := range info.Next {
			info.Next[i] = info.Next[i].In(e.loc)
		}
		last := e.seen
		if _, ok := e.sched.(*cron.SpecSchedule); ok {
			last = lastFire(e.sched, now)
		}
		if !last.IsZero() {
			info.Last, info.LastID = last.In(e.loc), TickID(e.name, last)
		}
		out = append(out, info)
	}
	return out
}

// nextFires returns up to n fire times after now.
func nextFires(sched cron.Schedule, now time.Time, n int) []time.Time {
	out := make([]time.Time, 0, max(n, 0))
	for t := now; len(out) < n; {
		t = sched.Next(t)
		if t.IsZero() {
			break
		}
		out = append(out, t)
	}
	return out
}

// lastFire returns the most recent fire time of sched at or before now,
// within maxLookBack; zero if there is none. Fire times are whole seconds,
// and Next(x) is the first one after x, so "Next(x) <= now" holds for every
// x before the answer and for none from it on: a binary search over x
// finds it.
func lastFire(sched cron.Schedule, now time.Time) time.Time {
	firesBy := func(x time.Time) bool {
		t := sched.Next(x)
		return !t.IsZero() && !t.After(now)
	}
	hi := now.Truncate(time.Second) // Next(hi) >= hi+1s > now: firesBy(hi) is false
	var lo time.Time
	for w := time.Minute; ; w *= 2 {
		w = min(w, maxLookBack)
		lo = hi.Add(-w)
		if firesBy(lo) {
			break
		}
		if w == maxLookBack {
			return time.Time{}
		}
	}
	// firesBy(lo) and not firesBy(hi), both whole seconds.
	for hi.Sub(lo) > time.Second {
		mid := lo.Add(hi.Sub(lo) / 2).Truncate(time.Second)
		if firesBy(mid) {
			lo = mid
		} else {
			hi = mid
		}
	}
	return sched.Next(lo)
}
