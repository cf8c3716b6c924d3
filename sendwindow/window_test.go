package sendwindow

import (
	"strings"
	"testing"
	"time"
)

func mustLoad(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

func TestParseTimeOfDay(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in   string
		want TimeOfDay
		bad  string // in the error, when it is refused
	}{
		{"09:00", 9 * 3600, ""},
		{"21:30:15", 21*3600 + 30*60 + 15, ""},
		{"00:00", 0, ""},
		{"23:59:59", 86399, ""},
		{"24:00", 0, "not a time of day"},
		{"09:60", 0, "not a time of day"},
		{"9:00", 0, "want HH:MM"},
		{"09.00", 0, "want HH:MM"},
		{" 9:00", 0, "want HH:MM"},
		{"09:00:0x", 0, "want HH:MM"},
		{"", 0, "want HH:MM"},
		{"-1:00", 0, "want HH:MM"},
	} {
		got, err := ParseTimeOfDay(tc.in)
		if tc.bad != "" {
			if err == nil || !strings.Contains(err.Error(), tc.bad) {
				t.Errorf("%q: %v, %v; want an error saying %q", tc.in, got, err, tc.bad)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q: %v, %v; want %v", tc.in, got, err, tc.want)
		}
	}
	if _, field, err := New("09:00", "09:00", nil); field != "to" || err != ErrEmpty {
		t.Errorf("an empty window: %s %v", field, err)
	}
	if _, field, err := New("9", "10:00", nil); field != "from" || err == nil {
		t.Errorf("a bad from: %s %v", field, err)
	}
}

// Open, NextOpen and NextClose on fixed moments: a day window, one
// across midnight, and the nights clocks change in New York.
func TestWindow(t *testing.T) {
	t.Parallel()
	sh, ny := mustLoad(t, "Asia/Shanghai"), mustLoad(t, "America/New_York")
	at := func(loc *time.Location, s string) time.Time {
		v, err := time.ParseInLocation("2006-01-02 15:04:05", s, loc)
		if err != nil {
			t.Fatal(err)
		}
		return v
	}
	day, _, _ := New("09:00", "21:00", sh)
	night, _, _ := New("21:00", "08:00", sh)
	springNY, _, _ := New("02:30", "04:00", ny) // 2026-03-08: 02:00 → 03:00
	fallNY, _, _ := New("01:30", "03:00", ny)   // 2026-11-01: 02:00 → 01:00
	tests := []struct {
		name                  string
		w                     Window
		loc                   *time.Location
		t                     string
		open                  bool
		nextOpen, nextClose   string
		nextOpenLoc, closeLoc *time.Location
	}{
		{"day, before", day, sh, "2026-12-08 08:59:59", false, "2026-12-08 09:00:00", "2026-12-08 21:00:00", sh, sh},
		{"day, at opening", day, sh, "2026-12-08 09:00:00", true, "2026-12-08 09:00:00", "2026-12-08 21:00:00", sh, sh},
		{"day, inside", day, sh, "2026-12-08 15:00:00", true, "2026-12-08 15:00:00", "2026-12-08 21:00:00", sh, sh},
		{"day, at closing", day, sh, "2026-12-08 21:00:00", false, "2026-12-09 09:00:00", "2026-12-09 21:00:00", sh, sh},
		{"day, year's end", day, sh, "2026-12-31 23:00:00", false, "2027-01-01 09:00:00", "2027-01-01 21:00:00", sh, sh},
		{"night, evening", night, sh, "2026-12-08 22:00:00", true, "2026-12-08 22:00:00", "2026-12-09 08:00:00", sh, sh},
		{"night, after midnight", night, sh, "2026-12-09 03:00:00", true, "2026-12-09 03:00:00", "2026-12-09 08:00:00", sh, sh},
		{"night, at closing", night, sh, "2026-12-09 08:00:00", false, "2026-12-09 21:00:00", "2026-12-10 08:00:00", sh, sh},
		{"night, daytime", night, sh, "2026-12-09 12:00:00", false, "2026-12-09 21:00:00", "2026-12-10 08:00:00", sh, sh},
		// 02:30 does not exist on 2026-03-08 in New York: the window opens
		// when the clocks jump past it, 02:00 EST = 03:00 EDT.
		{"skipped opening", springNY, ny, "2026-03-08 01:00:00", false, "2026-03-08 03:00:00", "2026-03-08 04:00:00", ny, ny},
		// 01:30 happens twice on 2026-11-01: the window opens at the first.
		{"repeated opening", fallNY, ny, "2026-11-01 00:30:00", false, "2026-11-01 01:30:00", "2026-11-01 03:00:00", ny, ny},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			now := at(tc.loc, tc.t)
			if got := tc.w.Open(now); got != tc.open {
				t.Errorf("Open = %v, want %v", got, tc.open)
			}
			if got, want := tc.w.NextOpen(now), at(tc.nextOpenLoc, tc.nextOpen); !got.Equal(want) {
				t.Errorf("NextOpen = %s, want %s", got, want)
			}
			if got, want := tc.w.NextClose(now), at(tc.closeLoc, tc.nextClose); !got.Equal(want) {
				t.Errorf("NextClose = %s, want %s", got, want)
			}
			if o := tc.w.NextOpen(now); !tc.w.Open(o) {
				t.Errorf("closed at its own opening %s", o)
			}
		})
	}
	// Havana skips midnight (2026-03-08 00:00 → 01:00): a window opening
	// at 00:00 opens at the jump, on its own day.
	hav := mustLoad(t, "America/Havana")
	midnight, _, _ := New("00:00", "06:00", hav)
	if got, want := midnight.NextOpen(at(hav, "2026-03-07 23:00:00")), time.Date(2026, 3, 8, 5, 0, 0, 0, time.UTC); !got.Equal(want) {
		t.Errorf("skipped midnight: NextOpen = %s, want %s", got, want.In(hav))
	}
	// The repeated hour: 01:30 EDT and 01:30 EST are both inside, the
	// second an hour later.
	first := time.Date(2026, 11, 1, 5, 30, 0, 0, time.UTC) // 01:30 EDT
	if !fallNY.Open(first) || !fallNY.Open(first.Add(time.Hour)) {
		t.Errorf("the repeated 01:30 is not inside both times")
	}
}
