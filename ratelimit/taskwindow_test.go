package ratelimit

import (
	"context"
	"errors"
	"testing"
	"time"
)

func TestTaskWindowCaps(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	tw := l.NewTaskWindow(TaskWindowConfig{MaxCreated: 3, Window: 10 * time.Second, MaxRunning: 2, TaskDuration: 4 * time.Second, Guard: time.Millisecond})
	ctx := context.Background()
	acquire := func(kind TaskKind, id string) (Lease, time.Duration) {
		t.Helper()
		le, err := tw.Acquire(ctx, "app", kind, id, 0)
		var rl *RateLimited
		if errors.As(err, &rl) {
			return le, rl.RetryIn
		}
		if err != nil {
			t.Fatal(err)
		}
		return le, 0
	}
	steps := []struct {
		advance time.Duration
		kind    TaskKind
		id      string
		wait    time.Duration // 0 = granted
	}{
		{0, TaskLabel, "l1", 0},
		{0, TaskLabel, "l2", 0},
		{0, TaskLabel, "l3", 4*time.Second + time.Millisecond},  // 2 running until 4.001 s
		{0, TaskLabel, "l1", 0},                                 // idempotent: same lease
		{4*time.Second + time.Millisecond, TaskLabel, "l3", 0},  // label tasks ended
		{0, TaskBroadcast, "b1", 6 * time.Second},               // 3 creations until 10.001 s
		{6 * time.Second, TaskBroadcast, "b1", 0},               // first creations left the window
		{0, TaskBroadcast, "b2", 0},                             // l3 ended at 8 s: one running, two creations
		{0, TaskLabel, "l4", 10*time.Second + time.Millisecond}, // 3 creations, and b1, b2 hold until 20.002 s
		{10*time.Second + time.Millisecond, TaskLabel, "l4", 0}, // broadcast windows over
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		_, wait := acquire(st.kind, st.id)
		if wait != st.wait {
			t.Fatalf("step %d (%s): wait %s, want %s", i, st.id, wait, st.wait)
		}
	}
}

func TestTaskWindowReleaseAndBroadcastHold(t *testing.T) {
	t.Parallel()
	l, _, _ := setup(t)
	tw := l.NewTaskWindow(TaskWindowConfig{MaxCreated: 10, Window: time.Minute, MaxRunning: 1, TaskDuration: time.Minute})
	ctx := context.Background()
	le, err := tw.Acquire(ctx, "app", TaskLabel, "l1", 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := tw.Acquire(ctx, "app", TaskLabel, "l2", 0); err == nil {
		t.Fatal("second running task granted")
	}
	if err := tw.Release(ctx, "app", le); err != nil {
		t.Fatal(err)
	}
	b, err := tw.Acquire(ctx, "app", TaskBroadcast, "b1", 0)
	if err != nil {
		t.Fatalf("after release: %v", err)
	}
	_ = tw.Release(ctx, "app", b) // a broadcast cannot be released
	if _, err := tw.Acquire(ctx, "app", TaskLabel, "l3", 0); err == nil {
		t.Fatal("a broadcast's slot was freed early")
	}
	// Apps are independent.
	if _, err := tw.Acquire(ctx, "other", TaskLabel, "x", 0); err != nil {
		t.Fatal(err)
	}
}

func TestTaskWindowStartDateHoldsUntilTheTaskEnds(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	tw := l.NewTaskWindow(TaskWindowConfig{MaxCreated: 10, Window: time.Minute, MaxRunning: 1, TaskDuration: time.Minute, Guard: time.Millisecond})
	ctx := context.Background()
	if _, err := tw.Acquire(ctx, "app", TaskLabel, "later", 2*time.Hour); err != nil {
		t.Fatal(err)
	}
	clk.Advance(2 * time.Hour)
	_, err := tw.Acquire(ctx, "app", TaskLabel, "next", 0)
	var rl *RateLimited
	if !errors.As(err, &rl) || rl.RetryIn != time.Minute+time.Millisecond {
		t.Fatalf("a scheduled label task holds its slot until start + duration: %v", err)
	}
}
