package campaigns

import (
	"bytes"
	"strings"
	"time"

	"github.com/campaignd/campaignd/sendwindow"
)

// SendWindow is a campaign's daily send window (docs/interface.md §4.1):
// its calls start only between From and To, local time in Timezone (the
// app's when empty); From later than To is a window across midnight.
type SendWindow struct {
	From      string `json:"from"`
	To        string `json:"to"`
	Timezone  string `json:"timezone,omitempty"`
	LocalTime bool   `json:"local_time,omitempty"`
}

// Window is the campaign's send window in its zone (appLoc when it names
// none); ok is false without one, or when it does not compile (a
// campaign intake took always compiles).
func (c *Campaign) Window(appLoc *time.Location) (w sendwindow.Window, ok bool) {
	if c.SendWindow == nil {
		return w, false
	}
	w, _, err := c.SendWindow.compile(appLoc)
	return w, err == nil
}

// compile reads the window; the error names its field (from, to,
// timezone).
func (s *SendWindow) compile(appLoc *time.Location) (sendwindow.Window, string, error) {
	loc := appLoc
	if s.Timezone != "" {
		l, err := time.LoadLocation(s.Timezone)
		if err != nil {
			return sendwindow.Window{}, "timezone", err
		}
		loc = l
	}
	return sendwindow.New(s.From, s.To, loc)
}

// checkSendWindow reports the window's problems, naming send_window.from,
// .to, .timezone or .local_time.
func (c *Campaign) checkSendWindow(appLoc *time.Location) FieldErrors {
	s := c.SendWindow
	if s == nil {
		return nil
	}
	var errs FieldErrors
	if s.From == "" {
		errs = append(errs, fe("send_window.from", "is required (HH:MM or HH:MM:SS)"))
	}
	if s.To == "" {
		errs = append(errs, fe("send_window.to", "is required (HH:MM or HH:MM:SS)"))
	}
	if len(errs) > 0 {
		return errs
	}
	if _, field, err := s.compile(appLoc); err != nil {
		if field == "timezone" {
			return FieldErrors{fe("send_window.timezone", "unknown time zone %q", s.Timezone)}
		}
		return FieldErrors{fe("send_window."+field, "%v", err)}
	}
	if s.LocalTime && (c.Kind == KindLabelPush || c.Kind == KindBroadcast || c.Kind == KindTemplate) {
		return append(errs, fe("send_window.local_time", "is for the kinds with targets: a %s has no target of its own zone", c.Kind))
	}
	return errs
}

// LocalTime reports whether each target's own zone decides its window
// (send_window.local_time).
func (c *Campaign) LocalTime() bool { return c.SendWindow != nil && c.SendWindow.LocalTime }

// WindowIn is the campaign's send window in zone loc (a local-time
// target's); ok is false without a window.
func (c *Campaign) WindowIn(loc *time.Location) (w sendwindow.Window, ok bool) {
	w, ok = c.Window(loc)
	if ok {
		w.Loc = loc
	}
	return w, ok
}

// SplitZone splits a local-time target, "id,Zone", at its last comma
// (zone names have none): its id, and its zone. given is false without a
// comma: the target takes the window's zone. An id that holds a comma
// must therefore give its zone.
func SplitZone(target string) (id, zone string, given bool) {
	i := strings.LastIndexByte(target, ',')
	if i < 0 {
		return target, "", false
	}
	return target[:i], target[i+1:], true
}

// SplitZoneBytes is SplitZone on an audience line (no copy).
func SplitZoneBytes(line []byte) (id, zone []byte, given bool) {
	i := bytes.LastIndexByte(line, ',')
	if i < 0 {
		return line, nil, false
	}
	return line[:i], line[i+1:], true
}

// FirstOpening is start, or the send window's next opening when it is
// closed then (local time: start, the plan sorts the targets by zone); it fills the window's zone with the app's (appLoc) when it
// names none, so that the stored campaign carries it.
func (c *Campaign) FirstOpening(appLoc *time.Location, start time.Time) time.Time {
	if c.SendWindow == nil {
		return start
	}
	if c.SendWindow.Timezone == "" && appLoc != nil {
		c.SendWindow.Timezone = appLoc.String()
	}
	w, ok := c.Window(appLoc)
	if !ok || c.SendWindow.LocalTime {
		return start // local time: each zone's batches wait for their own opening
	}
	return w.NextOpen(start)
}
