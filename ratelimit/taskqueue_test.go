package ratelimit

import (
	"context"
	"testing"
	"time"
)

// The queue pops in priority, then submission order, skips held tasks,
// never past the caps, and a refused task keeps its place.
func TestTaskQueueDispatchesInOrderUnderTheCaps(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	tw := l.NewTaskWindow(TaskWindowConfig{MaxCreated: 2, Window: 10 * time.Second, MaxRunning: 2, TaskDuration: 3 * time.Second, Guard: time.Millisecond})
	ctx := context.Background()
	t0 := clk.Now()
	enq := func(kind TaskKind, id string, prio int, at time.Duration) {
		if err := tw.Enqueue(ctx, "app", TaskMember(kind, id), TaskScore(prio, t0.Add(at))); err != nil {
			t.Fatal(err)
		}
	}
	enq(TaskLabel, "normal-1", 1, 0)
	enq(TaskLabel, "normal-2", 1, time.Second)
	enq(TaskBroadcast, "high", 0, 2*time.Second)
	enq(TaskLabel, "held", 0, 3*time.Second)
	if err := tw.Hold(ctx, "app", TaskMember(TaskLabel, "held"), true); err != nil {
		t.Fatal(err)
	}
	pop := func(want string, wantWait time.Duration) {
		t.Helper()
		m, wait, err := tw.Dispatch(ctx, "app")
		if err != nil {
			t.Fatal(err)
		}
		if m != want || (want == "" && (wait-wantWait > time.Millisecond || wantWait-wait > time.Millisecond)) {
			t.Fatalf("dispatch: %q (wait %s), want %q (wait %s)", m, wait, want, wantWait)
		}
	}
	st, _ := tw.State(ctx, "app")
	est := tw.Estimate(st)
	if !est[TaskMember(TaskBroadcast, "high")].Equal(t0) || !est[TaskMember(TaskLabel, "normal-2")].After(t0.Add(10*time.Second)) {
		t.Fatalf("estimates %v", est)
	}
	pop("B:high", 0)
	if err := tw.Confirm(ctx, "app", "B:high"); err != nil {
		t.Fatal(err)
	}
	pop("L:normal-1", 0)
	pop("", 10*time.Second+time.Millisecond) // 2 creations in the window
	// The provider refused normal-1 after all: its slots come back, it keeps its place, everyone waits.
	if err := tw.Undo(ctx, "app", "L:normal-1", true); err != nil {
		t.Fatal(err)
	}
	if err := tw.Block(ctx, "app", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	pop("", 2*time.Second)
	clk.Advance(2 * time.Second)
	pop("L:normal-1", 0)
	if err := tw.Confirm(ctx, "app", "L:normal-1"); err != nil {
		t.Fatal(err)
	}
	// A popped task never confirmed nor undone is stale after a while.
	clk.Advance(11 * time.Second)
	pop("L:normal-2", 0)
	clk.Advance(time.Minute)
	stale, err := tw.Stale(ctx, "app", 30*time.Second)
	if err != nil || len(stale) != 1 || stale[0] != "L:normal-2" {
		t.Fatalf("stale %v %v", stale, err)
	}
	if err := tw.Hold(ctx, "app", "L:held", false); err != nil {
		t.Fatal(err)
	}
	pop("L:held", 0)
	pop("", -1)
}
