package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/campaignd/campaignd/internal/testenv"
)

// lineUp counts the callers waiting for a place in l's local queues and
// the holders sleeping until their booked slot.
func (l *Limiter) lineUp() (waiting, sleeping int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.queues {
		waiting += len(q.waiters)
		sleeping += len(q.sleepers)
	}
	return waiting, sleeping
}

// waitWaiting waits until n callers wait for a place in l's local queues.
func waitWaiting(t *testing.T, l *Limiter, n int) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("%d callers waiting for a place", n), func() (int, bool) {
		w, _ := l.lineUp()
		return w, w == n
	})
}

// waitSleeping waits until n holders sleep until their booked slot.
func waitSleeping(t *testing.T, l *Limiter, n int) {
	t.Helper()
	testenv.WaitFor(t, 5*time.Second, fmt.Sprintf("%d holders sleeping until their slot", n), func() (int, bool) {
		_, s := l.lineUp()
		return s, s == n
	})
}

// queueOrder holds every place of a queue, lines waiters up with the given
// orders (in that arrival order), then frees one place at a time and
// returns the order in which the waiters got theirs.
func queueOrder(t *testing.T, l *Limiter, rates []Rate, holders int, waiters []order) []int {
	t.Helper()
	ctx := context.Background()
	var held []*ticket
	for range holders {
		tk, err := l.enter(ctx, rates)
		if err != nil {
			t.Fatal(err)
		}
		held = append(held, tk)
	}
	got := make(chan int, len(waiters))
	tickets := make(chan *ticket, len(waiters))
	for i, o := range waiters {
		go func() {
			tk, err := l.enter(WithOrder(ctx, o.prio, o.flow), rates)
			if err != nil {
				t.Errorf("waiter %d: %v", i, err)
				return
			}
			got <- i
			tickets <- tk
		}()
		waitWaiting(t, l, i+1) // arrival order
	}
	var out []int
	held[0].release()
	for range waiters {
		select {
		case i := <-got:
			out = append(out, i)
			(<-tickets).release()
		case <-time.After(5 * time.Second):
			t.Fatalf("waiters served so far: %v", out)
		}
	}
	for _, tk := range held[1:] {
		tk.release()
	}
	return out
}

func TestLocalQueueServesByPriorityThenFairlyByFlow(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{LocalAhead: 100 * time.Millisecond, MaxWait: 10 * time.Second})
	rates := []Rate{{Key: "k", PerSecond: 10}} // 1 place
	tests := []struct {
		name    string
		waiters []order
		want    []int
	}{
		{"arrival order within a flow", []order{{1, "a"}, {1, "a"}, {1, "a"}}, []int{0, 1, 2}},
		{"high before normal before low", []order{{2, "low"}, {1, "normal"}, {0, "high"}, {1, "normal"}}, []int{2, 1, 3, 0}},
		{"two flows of one priority take turns", []order{{1, "a"}, {1, "a"}, {1, "a"}, {1, "a"}, {1, "b"}, {1, "b"}},
			[]int{0, 4, 1, 5, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := queueOrder(t, l, []Rate{{Key: rates[0].Key + tt.name, PerSecond: 10}}, 1, tt.waiters)
			if fmt.Sprint(got) != fmt.Sprint(tt.want) {
				t.Fatalf("served %v, want %v", got, tt.want)
			}
		})
	}
}

// A process keeps about R × Backlog waiting calls of a priority or better;
// a caller beyond that is refused at once (asked back when the calls ahead
// have drained, at most Backlog.Retry), but a better priority still gets
// in.
func TestLocalQueueBacklogIsBoundedByTime(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{LocalAhead: 100 * time.Millisecond, Backlog: BacklogOptions{Time: time.Second, Min: 1, Retry: 700 * time.Millisecond, Lead: -1},
		MaxWait: 10 * time.Second})
	rates := []Rate{{Key: "b", PerSecond: 5}} // 1 place, backlog 5
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	holder, err := l.enter(ctx, rates)
	if err != nil {
		t.Fatal(err)
	}
	defer holder.release()
	var wg sync.WaitGroup
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if tk, err := l.enter(WithOrder(ctx, 1, "n"), rates); err == nil {
				tk.release()
			}
		}()
	}
	waitWaiting(t, l, 4)
	_, err = l.enter(WithOrder(ctx, 1, "n"), rates)
	var rl *RateLimited
	if !errors.As(err, &rl) || !rl.Backlog || rl.RetryIn != 700*time.Millisecond {
		t.Fatalf("a 6th normal caller: %v, want an immediate backlog refusal", err)
	}
	// Another campaign of the same priority gets in past the bound up to
	// its share of the 4 waiting places (2 of 2 campaigns': its turns come
	// among the first); a third caller of it is refused.
	other := make(chan error, 2)
	for i := range 2 {
		go func() {
			tk, err := l.enter(WithOrder(ctx, 1, "m"), rates)
			if err == nil {
				tk.release()
			}
			other <- err
		}()
		waitWaiting(t, l, 5+i)
	}
	if _, err = l.enter(WithOrder(ctx, 1, "m"), rates); !errors.As(err, &rl) || !rl.Backlog {
		t.Fatalf("a third caller of another campaign: %v, want a backlog refusal", err)
	}
	high := make(chan error, 1)
	go func() {
		tk, err := l.enter(WithOrder(ctx, 0, "h"), rates)
		if err == nil {
			tk.release()
		}
		high <- err
	}()
	waitWaiting(t, l, 7) // the high caller waits too
	holder.release()
	if err := <-high; err != nil {
		t.Fatalf("a high caller behind a full normal backlog: %v", err)
	}
	for range 2 {
		if err := <-other; err != nil {
			t.Fatalf("the other campaign's caller: %v", err)
		}
	}
	cancel()
	wg.Wait()
}

// A call whose check fails at its slot sends nothing and its slot goes to
// the next waiter, which sends at once instead of booking a later slot.
func TestFailedCheckHandsTheSlotOn(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{LocalAhead: 100 * time.Millisecond}) // R=10: 1 place
	rates := []Rate{{Key: "h", PerSecond: 10}}
	ctx := context.Background()
	// Occupy the schedule a little so that the first caller waits for its slot.
	if _, err := l.Reserve(ctx, time.Second, rates...); err != nil {
		t.Fatal(err)
	}
	paused := errors.New("campaign paused")
	firstErr := make(chan error, 1)
	go func() {
		_, _, err := l.WaitGrant(WithCheck(ctx, func(context.Context) error { return paused }), rates...)
		firstErr <- err
	}()
	waitSleeping(t, l, 1) // the first holds the place and the slot at ~100 ms
	t0 := time.Now()
	g, _, err := l.WaitGrant(ctx, rates...)
	if err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	if err := <-firstErr; !errors.Is(err, paused) {
		t.Fatalf("the checked caller: %v", err)
	}
	// Its own slot would have been ~200 ms ahead; the handed one ~80 ms.
	if took > 150*time.Millisecond || g.r.slot == 0 {
		t.Fatalf("the waiter got a slot after %s: the failed caller's slot was not handed on", took)
	}
	// Nothing more was booked for it: the next reservation is the third.
	next, err := l.Reserve(ctx, time.Second, rates...)
	if err != nil {
		t.Fatal(err)
	}
	if n := next.perKey[1].(int64); n != 3 {
		t.Fatalf("booking number %d, want 3 (two slots booked before it, one handed on)", n)
	}
}

// A waiter of a better priority takes the next slot that comes, even one
// booked by a waiting caller of a lower priority, who queues again.
func TestBetterPriorityTakesTheNextSlot(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{LocalAhead: 200 * time.Millisecond, MaxWait: 20 * time.Second}) // R=10: 2 places
	rates := []Rate{{Key: "p", PerSecond: 10}}
	ctx := context.Background()
	var mu sync.Mutex
	var order []string
	var wg sync.WaitGroup
	for i := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, _, err := l.WaitGrant(WithOrder(ctx, 2, "low"), rates...); err != nil {
				t.Error(err)
			}
			mu.Lock()
			order = append(order, fmt.Sprintf("low%d", i))
			mu.Unlock()
		}()
	}
	// The first two lows have sent (their slots, ~0 and ~100 ms, passed on
	// the real clock); the next two hold the booked slots (~200, ~300 ms)
	// and wait for them, the other lows wait for a place.
	testenv.WaitUntil(t, 5*time.Second, "two lows sent and two sleeping until their slots", func() bool {
		mu.Lock()
		sent := len(order)
		mu.Unlock()
		_, sleeping := l.lineUp()
		return sent >= 2 && sleeping == 2
	})
	t0 := time.Now()
	if _, _, err := l.WaitGrant(WithOrder(ctx, 0, "high"), rates...); err != nil {
		t.Fatal(err)
	}
	took := time.Since(t0)
	mu.Lock()
	before := len(order)
	mu.Unlock()
	wg.Wait()
	if took > 150*time.Millisecond {
		t.Fatalf("high waited %s behind lows (R=10: at most one interval)", took)
	}
	if before > 3 {
		t.Fatalf("%d lows went before the high caller", before)
	}
}

// A holder of a worse priority whose slot comes first gives it to a holder
// of a better priority waiting for a later slot, and takes that one.
func TestHoldersSwapSlotsByPriority(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{LocalAhead: 200 * time.Millisecond}) // R=10: 2 places
	rates := []Rate{{Key: "s", PerSecond: 10}}
	ctx := context.Background()
	if _, err := l.Reserve(ctx, time.Second, rates...); err != nil { // the next slot is ~100 ms ahead
		t.Fatal(err)
	}
	t0 := time.Now()
	lowAt := make(chan time.Duration, 1)
	go func() {
		if _, _, err := l.WaitGrant(WithOrder(ctx, 2, "low"), rates...); err != nil {
			t.Error(err)
		}
		lowAt <- time.Since(t0)
	}()
	waitSleeping(t, l, 1)                                                          // low books ~100 ms
	if _, _, err := l.WaitGrant(WithOrder(ctx, 0, "high"), rates...); err != nil { // books ~200 ms
		t.Fatal(err)
	}
	highAt := time.Since(t0)
	low := <-lowAt
	if highAt > 150*time.Millisecond || low < 180*time.Millisecond {
		t.Fatalf("high sent at %s, low at %s: want high on the earlier slot (~100 ms), low on the later (~200 ms)", highAt, low)
	}
}

// A caller refused for a full backlog is asked back Backlog.Lead before
// the calls ahead of it run out: within [100 ms, Backlog.Retry].
func TestBacklogRetryComesBackBeforeTheQueueRunsOut(t *testing.T) {
	t.Parallel()
	l := New(nil, Options{Margin: 0.015})
	tests := []struct {
		ahead int
		rate  float64
		want  time.Duration
	}{
		{20, 10, 20*l.Spacing(10) - 1500*time.Millisecond}, // 2.03 s of calls: back in 0.53 s
		{9, 4, 9*l.Spacing(4) - 1500*time.Millisecond},     // 2.28 s: back in 0.78 s
		{9, 1, time.Second},              // 9.1 s: at most Backlog.Retry
		{9, 100, 100 * time.Millisecond}, // 91 ms: at least 100 ms
	}
	for _, tt := range tests {
		if got := l.backlogRetry(tt.ahead, tt.rate); got != tt.want {
			t.Errorf("%d ahead at %g/s: back in %s, want %s", tt.ahead, tt.rate, got, tt.want)
		}
	}
}
