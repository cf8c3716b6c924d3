// Package sendwindow is the arithmetic of a daily send window (the
// contract's send_window, docs/interface.md §4.1): a time of day it
// opens and one it closes in a zone, across midnight when it opens later
// than it closes. It answers whether a moment is inside, when the window
// next opens and when an open window closes, through daylight-saving
// changes. It is pure: the caller gives every moment.
package sendwindow

import (
	"errors"
	"fmt"
	"time"
)

// TimeOfDay is a time of day, in seconds since midnight.
type TimeOfDay int

// ParseTimeOfDay reads "HH:MM" or "HH:MM:SS" (two digits each, 00:00 to
// 23:59:59).
func ParseTimeOfDay(s string) (TimeOfDay, error) {
	var h, m, sec int
	switch len(s) {
	case 5:
		if _, err := fmt.Sscanf(s, "%02d:%02d", &h, &m); err != nil || s[2] != ':' {
			return 0, fmt.Errorf("%q: want HH:MM or HH:MM:SS", s)
		}
	case 8:
		if _, err := fmt.Sscanf(s, "%02d:%02d:%02d", &h, &m, &sec); err != nil || s[2] != ':' || s[5] != ':' {
			return 0, fmt.Errorf("%q: want HH:MM or HH:MM:SS", s)
		}
	default:
		return 0, fmt.Errorf("%q: want HH:MM or HH:MM:SS", s)
	}
	for _, c := range s {
		if c != ':' && (c < '0' || c > '9') {
			return 0, fmt.Errorf("%q: want HH:MM or HH:MM:SS", s)
		}
	}
	if h > 23 || m > 59 || sec > 59 {
		return 0, fmt.Errorf("%q: not a time of day (00:00 to 23:59:59)", s)
	}
	return TimeOfDay(h*3600 + m*60 + sec), nil
}

func (d TimeOfDay) String() string {
	return fmt.Sprintf("%02d:%02d:%02d", int(d)/3600, int(d)/60%60, int(d)%60)
}

// Window is a daily window: open from From (included) to To (excluded),
// local time in Loc; across midnight when From is later than To.
type Window struct {
	From, To TimeOfDay
	Loc      *time.Location
}

// ErrEmpty is a window that opens when it closes.
var ErrEmpty = errors.New("from and to are the same time: the window would never open (or never close)")

// New reads a window; the error names the field at fault ("from", "to").
func New(from, to string, loc *time.Location) (Window, string, error) {
	f, err := ParseTimeOfDay(from)
	if err != nil {
		return Window{}, "from", err
	}
	t, err := ParseTimeOfDay(to)
	if err != nil {
		return Window{}, "to", err
	}
	if f == t {
		return Window{}, "to", ErrEmpty
	}
	if loc == nil {
		loc = time.UTC
	}
	return Window{From: f, To: t, Loc: loc}, "", nil
}

// acrossMidnight reports whether the window closes on the day after it
// opens.
func (w Window) acrossMidnight() bool { return w.From > w.To }

// clockOf is t's local time of day in the window's zone.
func (w Window) clockOf(t time.Time) TimeOfDay {
	l := t.In(w.Loc)
	return TimeOfDay(l.Hour()*3600 + l.Minute()*60 + l.Second())
}

// Open reports whether t is inside the window.
func (w Window) Open(t time.Time) bool {
	c := w.clockOf(t)
	if w.acrossMidnight() {
		return c >= w.From || c < w.To
	}
	return c >= w.From && c < w.To
}

// at is the moment of time of day d on the local day of t shifted by
// days. A time of day a daylight-saving change skips (02:30 on the night
// clocks go from 02:00 to 03:00) is the moment the clocks jump past it
// (03:00); one it repeats is its first occurrence.
func (w Window) at(t time.Time, days int, d TimeOfDay) time.Time {
	l := t.In(w.Loc)
	y, m, day := l.Date()
	target := time.Date(y, m, day+days, 0, 0, 0, 0, time.UTC) // the local date wanted
	v := time.Date(y, m, day+days, int(d)/3600, int(d)/60%60, int(d)%60, 0, w.Loc)
	// reached: the local clock at x has reached d on the target date (or
	// passed that date). Go puts a skipped time before its jump.
	reached := func(x time.Time) bool {
		lx := x.In(w.Loc)
		xy, xm, xd := lx.Date()
		date := time.Date(xy, xm, xd, 0, 0, 0, 0, time.UTC)
		return date.After(target) || date.Equal(target) && w.clockOf(x) >= d
	}
	if reached(v) {
		return v
	}
	lo, hi := int64(0), int64(3*3600) // no jump is longer
	for lo < hi {
		mid := (lo + hi) / 2
		if reached(v.Add(time.Duration(mid) * time.Second)) {
			hi = mid
		} else {
			lo = mid + 1
		}
	}
	return v.Add(time.Duration(lo) * time.Second)
}

// NextOpen is t when the window is open at t, else when it next opens.
func (w Window) NextOpen(t time.Time) time.Time {
	if w.Open(t) {
		return t
	}
	for days := 0; days <= 2; days++ {
		if o := w.at(t, days, w.From); o.After(t) {
			return o
		}
	}
	return w.at(t, 3, w.From) // unreachable: a day always has its From
}

// NextClose is when the window open at t closes; when it is closed at t,
// when its next opening closes.
func (w Window) NextClose(t time.Time) time.Time {
	o := w.NextOpen(t)
	for days := 0; days <= 2; days++ {
		if c := w.at(o, days, w.To); c.After(o) {
			return c
		}
	}
	return w.at(o, 3, w.To)
}
