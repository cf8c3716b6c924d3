package scheduler

import (
	"context"
	"slices"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
)

func mustZone(t *testing.T, name string) *time.Location {
	t.Helper()
	loc, err := time.LoadLocation(name)
	if err != nil {
		t.Fatal(err)
	}
	return loc
}

// bruteLast is the last fire time at or before now found the slow way:
// every fire time from `from` on, with Next, as Tick sees them.
func bruteLast(t *testing.T, spec string, loc *time.Location, from, now time.Time) time.Time {
	t.Helper()
	sched, err := Parse(spec, loc)
	if err != nil {
		t.Fatal(err)
	}
	var last time.Time
	for f := sched.Next(from); !f.IsZero() && !f.After(now); f = sched.Next(f) {
		last = f
	}
	return last
}

func TestSchedules(t *testing.T) {
	t.Parallel()
	sh := mustZone(t, "Asia/Shanghai")
	ny := mustZone(t, "America/New_York")
	utc := func(y int, mo time.Month, d, h, mi, s int) time.Time {
		return time.Date(y, mo, d, h, mi, s, 0, time.UTC)
	}
	tests := []struct {
		name     string
		spec     string
		loc      *time.Location // nil: the entry has none (UTC)
		now      time.Time
		wantZone string
		wantNext []time.Time // UTC instants; also checked to be in the entry's zone
		wantLast time.Time   // zero: none
		wantID   string
		walkBack int // years bruteLast walks (default: 60 days)
	}{
		{name: "weekly in Shanghai, midweek", spec: "0 9 * * MON", loc: sh, now: utc(2026, 12, 9, 12, 0, 0), wantZone: "Asia/Shanghai",
			wantNext: []time.Time{utc(2026, 12, 14, 1, 0, 0), utc(2026, 12, 21, 1, 0, 0), utc(2026, 12, 28, 1, 0, 0)},
			wantLast: utc(2026, 12, 7, 1, 0, 0), wantID: "cron-weekly-in-Shanghai-midweek-20261207010000"},
		{name: "exactly at a tick: it is the last", spec: "0 9 * * MON", loc: sh, now: utc(2026, 12, 7, 1, 0, 0), wantZone: "Asia/Shanghai",
			wantNext: []time.Time{utc(2026, 12, 14, 1, 0, 0), utc(2026, 12, 21, 1, 0, 0), utc(2026, 12, 28, 1, 0, 0)},
			wantLast: utc(2026, 12, 7, 1, 0, 0), wantID: "cron-exactly-at-a-tick-it-is-the-last-20261207010000"},
		{name: "a nanosecond before a tick", spec: "0 9 * * MON", loc: sh, now: utc(2026, 12, 7, 1, 0, 0).Add(-time.Nanosecond), wantZone: "Asia/Shanghai",
			wantNext: []time.Time{utc(2026, 12, 7, 1, 0, 0), utc(2026, 12, 14, 1, 0, 0), utc(2026, 12, 21, 1, 0, 0)},
			wantLast: utc(2026, 11, 30, 1, 0, 0), wantID: "cron-a-nanosecond-before-a-tick-20261130010000"},
		{name: "seconds", spec: "*/10 * * * * *", now: utc(2026, 1, 1, 0, 0, 45).Add(500 * time.Millisecond), wantZone: "UTC",
			wantNext: []time.Time{utc(2026, 1, 1, 0, 0, 50), utc(2026, 1, 1, 0, 1, 0), utc(2026, 1, 1, 0, 1, 10)},
			wantLast: utc(2026, 1, 1, 0, 0, 40), wantID: "cron-seconds-20260101000040"},
		{name: "descriptor", spec: "@daily", loc: time.UTC, now: utc(2026, 3, 1, 0, 0, 0), wantZone: "UTC",
			wantNext: []time.Time{utc(2026, 3, 2, 0, 0, 0), utc(2026, 3, 3, 0, 0, 0), utc(2026, 3, 4, 0, 0, 0)},
			wantLast: utc(2026, 3, 1, 0, 0, 0), wantID: "cron-descriptor-20260301000000"},
		// 8 March 2026: New York goes from EST (-5) to EDT (-4) at 02:00.
		{name: "across daylight saving", spec: "0 9 * * *", loc: ny, now: utc(2026, 3, 8, 20, 0, 0), wantZone: "America/New_York",
			wantNext: []time.Time{utc(2026, 3, 9, 13, 0, 0), utc(2026, 3, 10, 13, 0, 0), utc(2026, 3, 11, 13, 0, 0)},
			wantLast: utc(2026, 3, 8, 13, 0, 0), wantID: "cron-across-daylight-saving-20260308130000"},
		{name: "the day before, in standard time", spec: "0 9 * * *", loc: ny, now: utc(2026, 3, 8, 12, 0, 0), wantZone: "America/New_York",
			wantNext: []time.Time{utc(2026, 3, 8, 13, 0, 0), utc(2026, 3, 9, 13, 0, 0), utc(2026, 3, 10, 13, 0, 0)},
			wantLast: utc(2026, 3, 7, 14, 0, 0), wantID: "cron-the-day-before-in-standard-time-20260307140000"},
		{name: "leap day: years back and ahead", spec: "0 0 29 2 *", loc: time.UTC, now: utc(2026, 3, 1, 0, 0, 0), wantZone: "UTC",
			wantNext: []time.Time{utc(2028, 2, 29, 0, 0, 0), utc(2032, 2, 29, 0, 0, 0), utc(2036, 2, 29, 0, 0, 0)},
			wantLast: utc(2024, 2, 29, 0, 0, 0), wantID: "cron-leap-day-years-back-and-ahead-20240229000000", walkBack: 5},
		{name: "30 February never comes", spec: "0 0 30 2 *", loc: time.UTC, now: utc(2026, 3, 1, 0, 0, 0), wantZone: "UTC",
			wantNext: []time.Time{}, walkBack: 5},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			name := safeName(tt.name)
			s, err := New([]Entry{{Name: name, Spec: tt.spec, Location: tt.loc}}, (&recorder{}).submit,
				Options{Clock: clock.NewFake(tt.now), Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			got := s.Schedules(3)
			if len(got) != 1 {
				t.Fatalf("%d schedules, want 1", len(got))
			}
			info := got[0]
			if info.Name != name || info.Spec != tt.spec || info.Zone != tt.wantZone {
				t.Errorf("name %q spec %q zone %q, want %q %q %q", info.Name, info.Spec, info.Zone, name, tt.spec, tt.wantZone)
			}
			if !slices.EqualFunc(info.Next, tt.wantNext, time.Time.Equal) {
				t.Errorf("next %v, want %v", info.Next, tt.wantNext)
			}
			for _, n := range append(slices.Clone(info.Next), info.Last) {
				if n.Location().String() != tt.wantZone {
					t.Errorf("%s is not in the entry's zone %s", n, tt.wantZone)
				}
			}
			if !info.Last.Equal(tt.wantLast) || info.LastID != tt.wantID {
				t.Errorf("last %s %q, want %s %q", info.Last, info.LastID, tt.wantLast, tt.wantID)
			}
			// The search agrees with walking the spec forward, as Tick does.
			loc := tt.loc
			if loc == nil {
				loc = time.UTC
			}
			from := tt.now.AddDate(0, 0, -60)
			if tt.walkBack > 0 {
				from = tt.now.AddDate(-tt.walkBack, 0, 0)
			}
			if brute := bruteLast(t, tt.spec, loc, from, tt.now); !brute.Equal(info.Last) {
				t.Errorf("last %s, but walking Next gives %s", info.Last, brute)
			}
		})
	}
}

func safeName(s string) string {
	b := []byte(s)
	out := b[:0]
	dash := false
	for _, c := range b {
		ok := c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9'
		switch {
		case ok:
			out = append(out, c)
			dash = false
		case !dash && len(out) > 0:
			out = append(out, '-')
			dash = true
		}
	}
	return string(out)
}

// The last fire time moves with the clock, on every minute boundary of a
// busy spec, and matches the tick the Scheduler fires.
func TestSchedulesLastFollowsTheClock(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 7, 8, 58, 30, 0, time.UTC)
	clk := clock.NewFake(start)
	rec := &recorder{}
	s, err := New([]Entry{
		{Name: "minutely", Spec: "* * * * *"},
		{Name: "digest", Spec: "0 9 * * MON", Campaign: campaigns.Campaign{Kind: campaigns.KindLabelPush, Label: "weekly"}},
	}, rec.submit, Options{Clock: clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	steps := []struct {
		advance    time.Duration
		wantLastID map[string]string
	}{
		{0, map[string]string{"minutely": "cron-minutely-20261207085800", "digest": "cron-digest-20261130090000"}},
		{29 * time.Second, map[string]string{"minutely": "cron-minutely-20261207085800", "digest": "cron-digest-20261130090000"}},
		{time.Second, map[string]string{"minutely": "cron-minutely-20261207085900", "digest": "cron-digest-20261130090000"}},
		{61 * time.Second, map[string]string{"minutely": "cron-minutely-20261207090000", "digest": "cron-digest-20261207090000"}},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		if err := s.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		got := map[string]string{}
		for _, info := range s.Schedules(1) {
			got[info.Name] = info.LastID
			if len(info.Next) != 1 || !info.Next[0].After(clk.Now()) {
				t.Errorf("step %d: %s next %v, want one after %s", i, info.Name, info.Next, clk.Now())
			}
		}
		for name, want := range st.wantLastID {
			if got[name] != want {
				t.Errorf("step %d (%s): %s last %q, want %q", i, clk.Now().Format(time.TimeOnly), name, got[name], want)
			}
		}
	}
	// What Tick fired is what Schedules names as last.
	if fired := rec.got(); !slices.Contains(fired, "cron-digest-20261207090000") || !slices.Contains(fired, "cron-minutely-20261207090000") {
		t.Errorf("fired %v", fired)
	}
	if got := s.Schedules(0); len(got) != 2 || len(got[0].Next) != 0 || got[0].Name != "minutely" || got[1].Name != "digest" {
		t.Errorf("Schedules(0) = %+v, want both entries in config order, no next", got)
	}
}

// @every has no fixed fire times (its ticks count from the start of the
// process): its last is the latest tick the Scheduler saw come due.
func TestSchedulesEveryUsesTheTicksSeen(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk := clock.NewFake(start)
	s, err := New([]Entry{{Name: "e", Spec: "@every 1h"}}, (&recorder{}).submit, Options{Clock: clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		advance  time.Duration
		wantLast time.Time
	}{
		{0, time.Time{}},
		{30 * time.Minute, time.Time{}},
		{31 * time.Minute, start.Add(time.Hour)},
		{3 * time.Hour, start.Add(4 * time.Hour)}, // 04:01: ticks missed while down are seen too
	}
	for _, tt := range tests {
		clk.Advance(tt.advance)
		if err := s.Tick(context.Background()); err != nil {
			t.Fatal(err)
		}
		info := s.Schedules(2)[0]
		if !info.Last.Equal(tt.wantLast) {
			t.Errorf("at %s: last %s, want %s", clk.Now(), info.Last, tt.wantLast)
		}
		if tt.wantLast.IsZero() != (info.LastID == "") {
			t.Errorf("at %s: last id %q", clk.Now(), info.LastID)
		}
		if len(info.Next) != 2 || !info.Next[1].Equal(info.Next[0].Add(time.Hour)) {
			t.Errorf("at %s: next %v", clk.Now(), info.Next)
		}
	}
}

// The search finds what walking the spec forward finds, at any moment of a
// year, daylight-saving changes (a skipped and a repeated hour) included.
func TestLastFireAgreesWithWalkingNext(t *testing.T) {
	t.Parallel()
	ny := mustZone(t, "America/New_York")
	specs := []struct {
		spec string
		loc  *time.Location
		days int // how far back the walk starts: more than the longest gap
	}{
		{"30 1 * * *", ny, 2}, // 01:30 comes twice on 1 November 2026
		{"30 2 * * *", ny, 2}, // 02:30 does not come on 8 March 2026
		{"*/15 * * * *", ny, 1},
		{"0 9 * * MON-FRI", mustZone(t, "Asia/Shanghai"), 4},
		{"15 30 8 * * SUN", time.UTC, 8},
	}
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	// A fixed walk through the year: every 17h13m17.3s, and around each
	// daylight-saving change every 3 minutes.
	var nows []time.Time
	for n := start; n.Year() == 2026; n = n.Add(17*time.Hour + 13*time.Minute + 17300*time.Millisecond) {
		nows = append(nows, n)
	}
	for _, change := range []time.Time{time.Date(2026, 3, 8, 6, 0, 0, 0, time.UTC), time.Date(2026, 11, 1, 4, 0, 0, 0, time.UTC)} {
		for m := -180; m <= 180; m += 3 {
			nows = append(nows, change.Add(time.Duration(m)*time.Minute))
		}
	}
	for _, sp := range specs {
		sched, err := Parse(sp.spec, sp.loc)
		if err != nil {
			t.Fatal(err)
		}
		for _, now := range nows {
			want := bruteLast(t, sp.spec, sp.loc, now.AddDate(0, 0, -sp.days), now)
			if got := lastFire(sched, now); !got.Equal(want) {
				t.Fatalf("%q in %s at %s: last %s, walking Next gives %s", sp.spec, sp.loc, now, got, want)
			}
		}
	}
}
