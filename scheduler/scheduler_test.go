package scheduler

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
)

type recorder struct {
	mu   sync.Mutex
	ids  []string
	at   []time.Time
	fail error
}

func (r *recorder) submit(_ context.Context, c *campaigns.Campaign, startAt time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.fail != nil {
		return r.fail
	}
	r.ids = append(r.ids, c.ID)
	r.at = append(r.at, startAt)
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func setup(t *testing.T, start time.Time, entries []Entry, processes int) (*clock.Fake, []*Scheduler, *recorder) {
	t.Helper()
	rdb := testenv.StartRedis(t).Client(t)
	clk := clock.NewFake(start)
	rec := &recorder{}
	var ss []*Scheduler
	for i := 0; i < processes; i++ {
		s, err := New(entries, rec.submit, Options{Redis: rdb, Clock: clk, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	return clk, ss, rec
}

func tickAll(t *testing.T, ss []*Scheduler) {
	t.Helper()
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Tick(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestEachTickFiresOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 12, 7, 8, 59, 0, 0, time.UTC)
	entries := []Entry{{Name: "digest", Spec: "0 9 * * MON", Location: time.UTC,
		Campaign: campaigns.Campaign{Kind: campaigns.KindLabelPush, Label: "weekly"}}}
	clk, ss, rec := setup(t, start, entries, 3)

	tickAll(t, ss) // 08:59: nothing due
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	clk.Advance(61 * time.Second) // 09:00:01 Monday
	tickAll(t, ss)
	tickAll(t, ss) // a second check in the same tick fires nothing more
	got := rec.got()
	if len(got) != 1 || got[0] != "cron-digest-20261207090000" {
		t.Fatalf("fired %v, want exactly [cron-digest-20261207090000]", got)
	}
	clk.Advance(7 * 24 * time.Hour)
	tickAll(t, ss)
	if got := rec.got(); len(got) != 2 || got[1] != "cron-digest-20261214090000" {
		t.Fatalf("second week: %v", got)
	}
}

func TestMissedTicksAreNotBackfilled(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	clk, ss, rec := setup(t, start, []Entry{{Name: "hourly", Spec: "@hourly"}}, 1)
	clk.Advance(5*time.Hour + 30*time.Minute) // every process was down for 5 ticks
	tickAll(t, ss)
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("backfilled stale ticks: %v", got)
	}
	clk.Advance(31 * time.Minute) // 06:01
	tickAll(t, ss)
	if got := rec.got(); len(got) != 1 || got[0] != "cron-hourly-20260101060000" {
		t.Fatalf("got %v", got)
	}
}

func TestZoneAndSeconds(t *testing.T) {
	t.Parallel()
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, spec string
		loc        *time.Location
		from, want time.Time
	}{
		{"five fields in zone", "0 9 * * *", sh, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)},
		{"six fields with seconds", "30 * * * * *", time.UTC, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)},
		{"descriptor", "@daily", time.UTC, time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec, tt.loc)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%s) = %s, want %s", tt.from, got, tt.want)
			}
		})
	}
	if _, err := Parse("61 * * * *", time.UTC); err == nil {
		t.Error("bad minute accepted")
	}
}

func TestFailedSubmitReleasesClaim(t *testing.T) {
	t.Parallel()
	start := time.Date(2026, 1, 1, 0, 0, 59, 0, time.UTC)
	clk, ss, rec := setup(t, start, []Entry{{Name: "m", Spec: "* * * * *"}}, 2)
	rec.fail = errors.New("redis down")
	clk.Advance(2 * time.Second)
	if err := ss[0].Tick(context.Background()); err == nil {
		t.Fatal("want the submit error reported")
	}
	rec.fail = nil
	if err := ss[1].Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.got(); len(got) != 1 || got[0] != "cron-m-20260101000100" {
		t.Fatalf("the other process should fire the released tick: %v", got)
	}
}
