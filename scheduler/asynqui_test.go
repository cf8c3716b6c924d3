package scheduler

import (
	"context"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
)

// The asynq Inspector (what the web UI's Schedulers tab reads) sees
// campaignd's schedules with their spec, next and previous run, and the
// ticks submitted in their history. Its fake clock is far from the wall
// clock asynq reads with, and `make test` moves it a year either way.
func TestSchedulesShowInTheAsynqUI(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t)
	sh, _ := time.LoadLocation("Asia/Shanghai")
	clk := clock.NewFake(testenv.Date(2026, 12, 7, 0, 59, 59, 0)) // Monday 08:59:59 in Shanghai
	rec := &recorder{}
	s, err := New([]Entry{{Name: "weekly", Spec: "0 9 * * MON", Location: sh,
		Campaign: campaigns.Campaign{App: "default", Kind: campaigns.KindLabelPush, Label: "fans"}}},
		rec.submit, Options{Redis: rd.Client(t), Clock: clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	clk.Advance(2 * time.Second)
	if err := s.Tick(ctx); err != nil {
		t.Fatal(err)
	}
	if err := s.publishUI(ctx); err != nil {
		t.Fatal(err)
	}
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: rd.Addr})
	t.Cleanup(func() { _ = insp.Close() })
	entries, err := insp.SchedulerEntries()
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 {
		t.Fatalf("%d entries, want 1: %+v", len(entries), entries)
	}
	e := entries[0]
	tick := testenv.Date(2026, 12, 7, 1, 0, 0, 0)
	if e.Spec != "CRON_TZ=Asia/Shanghai 0 9 * * MON" || e.Task.Type() != uiTaskType ||
		!e.Next.Equal(tick.Add(7*24*time.Hour)) || !e.Prev.Equal(tick) {
		t.Fatalf("entry %+v (next %s, prev %s)", e, e.Next, e.Prev)
	}
	events, err := insp.ListSchedulerEnqueueEvents(e.ID)
	if err != nil {
		t.Fatal(err)
	}
	if len(events) != 1 || events[0].TaskID != TickID("weekly", tick) || !events[0].EnqueuedAt.Equal(tick) {
		t.Fatalf("history %+v", events)
	}
}
