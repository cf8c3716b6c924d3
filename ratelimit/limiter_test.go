package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"net"
	"sort"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
)

func setup(t *testing.T) (*Limiter, *clock.Fake, *testenv.Redis) {
	t.Helper()
	r := testenv.StartRedis(t)
	clk := clock.NewFake(testenv.Date(2026, 1, 1, 0, 0, 0, 0))
	return New(r.Client(t), Options{Clock: clk, Margin: 0.01}), clk, r
}

func TestReservationsAreSpaced(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	ctx := context.Background()
	spacing := l.Spacing(10) // 101 ms
	if spacing != 101*time.Millisecond {
		t.Fatalf("spacing %s", spacing)
	}
	steps := []struct {
		advance time.Duration
		want    time.Duration
	}{
		{0, 0},
		{0, 101 * time.Millisecond},
		{0, 202 * time.Millisecond},
		{50 * time.Millisecond, 253 * time.Millisecond},
		{time.Second, 0}, // idle: no burst is saved up
		{0, 101 * time.Millisecond},
	}
	for i, st := range steps {
		clk.Advance(st.advance)
		r, err := l.Reserve(ctx, time.Minute, Rate{Key: "k", PerSecond: 10})
		if err != nil {
			t.Fatal(err)
		}
		if r.Wait != st.want {
			t.Errorf("step %d: wait %s, want %s", i, r.Wait, st.want)
		}
	}
}

func TestMaxWaitRefusesWithoutBooking(t *testing.T) {
	t.Parallel()
	l, _, _ := setup(t)
	ctx := context.Background()
	for i := 0; i < 3; i++ {
		if _, err := l.Reserve(ctx, time.Minute, Rate{Key: "k", PerSecond: 1}); err != nil {
			t.Fatal(err)
		}
	}
	// Next slot is 2.02 s ahead.
	_, err := l.Reserve(ctx, time.Second, Rate{Key: "k", PerSecond: 1})
	var rl *RateLimited
	if !errors.As(err, &rl) || rl.RetryIn != 3030*time.Millisecond {
		t.Fatalf("want RateLimited in 3.03s, got %v", err)
	}
	// The refusal booked nothing: the next grant is still 3.03 s ahead.
	r, err := l.Reserve(ctx, time.Minute, Rate{Key: "k", PerSecond: 1})
	if err != nil || r.Wait != 3030*time.Millisecond {
		t.Fatalf("after refusal: %v %v", r, err)
	}
}

func TestSeveralRatesAreHonouredTogether(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	ctx := context.Background()
	app := Rate{Key: "app", PerSecond: 100}
	camp := Rate{Key: "campaign", PerSecond: 2}
	var waits []time.Duration
	for i := 0; i < 3; i++ {
		r, err := l.Reserve(ctx, time.Minute, app, camp)
		if err != nil {
			t.Fatal(err)
		}
		waits = append(waits, r.Wait)
	}
	if waits[1] != 505*time.Millisecond || waits[2] != 1010*time.Millisecond {
		t.Fatalf("the campaign's 2/s must space its calls: %v", waits)
	}
	// Another campaign on the same app is not held back by the first one's
	// own limit, only by the app's spacing after the last booking.
	r, err := l.Reserve(ctx, time.Minute, app, Rate{Key: "other", PerSecond: 50})
	if err != nil || r.Wait != 1010*time.Millisecond+10100*time.Microsecond {
		t.Fatalf("other campaign: %v %v", r, err)
	}
	clk.Advance(5 * time.Second)
	if r, _ := l.Reserve(ctx, time.Minute, app, camp); r.Wait != 0 {
		t.Fatalf("after idle: %v", r)
	}
}

func TestBackoffHoldsEveryone(t *testing.T) {
	t.Parallel()
	l, clk, _ := setup(t)
	ctx := context.Background()
	if err := l.Backoff(ctx, "k", 2*time.Second); err != nil {
		t.Fatal(err)
	}
	r, err := l.Reserve(ctx, time.Minute, Rate{Key: "k", PerSecond: 100})
	if err != nil || r.Wait != 2*time.Second {
		t.Fatalf("after backoff: %v %v", r, err)
	}
	clk.Advance(3 * time.Second)
	// A shorter backoff never shortens a wait already set.
	_ = l.Backoff(ctx, "k", time.Millisecond)
	if r, _ := l.Reserve(ctx, time.Minute, Rate{Key: "k", PerSecond: 100}); r.Wait != time.Millisecond {
		t.Fatalf("wait %s", r.Wait)
	}
}

func TestKeysExpire(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	rdb := r.Client(t)
	l := New(rdb, Options{})
	if _, err := l.Reserve(context.Background(), time.Minute, Rate{Key: "k", PerSecond: 10}); err != nil {
		t.Fatal(err)
	}
	ttl, err := rdb.PTTL(context.Background(), "campaignd:rl:k").Result()
	if err != nil || ttl <= 0 || ttl > 3*time.Second {
		t.Fatalf("ttl %s %v", ttl, err)
	}
}

func TestFailsClosed(t *testing.T) {
	t.Parallel()
	// Redis down: a port that drops every connection, held by this test.
	// (A stopped Redis's port can be taken by another test's Redis at
	// once, which then answers.)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = ln.Close() })
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			_ = c.Close()
		}
	}()
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String()})
	t.Cleanup(func() { _ = rdb.Close() })
	l := New(rdb, Options{Margin: 0.01})
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	if _, err := l.Wait(ctx, Rate{Key: "k", PerSecond: 10}); err == nil {
		t.Fatal("granted with Redis down")
	}
	g := l.Gate(func(string, provider.Group) (float64, bool) { return 10, true })
	if err := g.Acquire(ctx, "app", provider.GroupPushSingle); err == nil {
		t.Fatal("gate open with Redis down")
	}
}

func TestGateUsesGroupAndExtraRates(t *testing.T) {
	t.Parallel()
	l, _, _ := setup(t)
	rates := func(app string, g provider.Group) (float64, bool) {
		if g == provider.GroupToken {
			return 0, false
		}
		return 1000, true
	}
	g := l.Gate(rates)
	ctx := WithExtraRate(context.Background(), Rate{Key: "campaign:c1", PerSecond: 1000})
	for i := 0; i < 3; i++ {
		if err := g.Acquire(ctx, "default", provider.GroupPushSingle); err != nil {
			t.Fatal(err)
		}
	}
	if err := g.Acquire(ctx, "default", provider.GroupToken); err != nil {
		t.Fatal(err)
	}
	n, err := l.rdb.Exists(context.Background(), "campaignd:rl:app:default:push_single", "campaignd:rl:campaign:c1").Result()
	if err != nil || n != 2 {
		t.Fatalf("keys booked: %d %v", n, err)
	}
}

// TestConcurrentGrantsNeverExceedR checks on real time that many goroutines
// (two limiter instances, as two processes) waiting for slots never send more
// than R in any sliding second of their local grant times.
func TestConcurrentGrantsNeverExceedR(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	const R = 50
	limiters := []*Limiter{New(r.Client(t), Options{}), New(r.Client(t), Options{})}
	var mu sync.Mutex
	var times []time.Time
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for w := 0; w < 40; w++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			l := limiters[w%2]
			for ctx.Err() == nil {
				if _, err := l.Wait(ctx, Rate{Key: "k", PerSecond: R}); err != nil {
					return
				}
				mu.Lock()
				times = append(times, time.Now())
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	if worst := maxInWindow(times, time.Second); worst > R {
		t.Fatalf("%d grants in one second, limit %d", worst, R)
	}
	if len(times) < R { // sanity: it did grant
		t.Fatalf("only %d grants in 2 s", len(times))
	}
}

// maxInWindow is the most events in any half-open window (t-w, t].
func maxInWindow(times []time.Time, w time.Duration) int {
	best, lo := 0, 0
	for hi := range times {
		for !times[lo].After(times[hi].Add(-w)) {
			lo++
		}
		best = max(best, hi-lo+1)
	}
	return best
}

// A caller late for its slot may still send if the call R places later is
// not booked yet: the schedule moves on by its lateness (+ guard), so the
// calls after it keep their distance from its real send time. If that call
// is booked, nothing is granted (the caller gives the slot up).
func TestLateCallerMovesTheScheduleOn(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	clk := clock.NewFake(testenv.Date(2026, 1, 1, 0, 0, 0, 0))
	l := New(r.Client(t), Options{Clock: clk, Margin: 0.01, Guard: time.Millisecond, MaxLate: 2 * time.Millisecond})
	ctx := context.Background()
	rate := Rate{Key: "k", PerSecond: 10} // spacing 101 ms
	first, err := l.Reserve(ctx, time.Minute, rate)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ { // three more booked: slots at 101, 202, 303 ms
		if _, err := l.Reserve(ctx, time.Minute, rate); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(15 * time.Millisecond) // the first caller wakes 15 ms late
	_, ok, err := l.shift(ctx, first, 15*time.Millisecond, 0)
	if err != nil || !ok {
		t.Fatalf("late send with the 10th call unbooked: granted=%v err=%v", ok, err)
	}
	// The next free slot was 404 ms; it moves on by 15 − 2 (MaxLate, covered
	// by the margin) + 1 (guard) ms.
	next, err := l.Reserve(ctx, time.Minute, rate)
	if err != nil {
		t.Fatal(err)
	}
	if want := 404*time.Millisecond + 14*time.Millisecond - 15*time.Millisecond; next.Wait != want {
		t.Fatalf("next slot in %s, want %s", next.Wait, want)
	}

	// Book a whole second ahead: the call R places after a late one is
	// booked, so the late one may not send.
	late, err := l.Reserve(ctx, time.Minute, rate)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 11; i++ {
		if _, err := l.Reserve(ctx, time.Minute, rate); err != nil {
			t.Fatal(err)
		}
	}
	clk.Advance(late.Wait + 5*time.Millisecond)
	if _, ok, err := l.shift(ctx, late, 5*time.Millisecond, 0); err != nil || ok {
		t.Fatalf("late send with its R-th successor booked: granted=%v err=%v", ok, err)
	}
}

// At most ceil(R × LocalAhead) callers of one process hold a reservation on
// a key; the others wait in the process and get a place in turn, or a
// RateLimited after MaxWait.
func TestLocalQueueBoundsBookingsAhead(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{LocalAhead: 300 * time.Millisecond, MaxWait: 150 * time.Millisecond})
	ctx := context.Background()
	rates := []Rate{{Key: "k", PerSecond: 10}} // 3 places
	var releases []func()
	for i := 0; i < 3; i++ {
		rel, err := l.queue(ctx, rates)
		if err != nil {
			t.Fatal(err)
		}
		releases = append(releases, rel)
	}
	_, err := l.queue(ctx, rates)
	var rl *RateLimited
	if !errors.As(err, &rl) {
		t.Fatalf("a 4th place: %v, want RateLimited after MaxWait", err)
	}
	got := make(chan error, 1)
	go func() {
		rel, err := l.queue(ctx, rates)
		if err == nil {
			rel()
		}
		got <- err
	}()
	waitWaiting(t, l, 1)
	releases[0]()
	if err := <-got; err != nil {
		t.Fatalf("a place freed, the waiter got %v", err)
	}
	// Unlimited rates and a negative LocalAhead do not queue.
	if _, err := l.queue(ctx, []Rate{{Key: "free", PerSecond: 0}}); err != nil {
		t.Fatal(err)
	}
	off := New(r.Client(t), Options{LocalAhead: -1})
	for i := 0; i < 10; i++ {
		if _, err := off.queue(ctx, rates); err != nil {
			t.Fatal(err)
		}
	}
}

// A call written late after its grant (a new connection, a stalled
// process) moves the schedule on by the lateness beyond MaxLate + Guard;
// one written on time moves nothing, unless it went on a plain connection
// opened for it: that counts NewConnLate later.
func TestWrittenLateMovesTheScheduleOn(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{Margin: 0.01, MaxLate: 2 * time.Millisecond, Guard: time.Millisecond, NewConnLate: 30 * time.Millisecond})
	ctx := context.Background()
	for i, tc := range []struct {
		late    time.Duration
		newConn bool
		move    time.Duration
	}{
		{time.Millisecond, false, 0},
		{50 * time.Millisecond, false, 49 * time.Millisecond},
		{time.Millisecond, true, 30 * time.Millisecond},
	} {
		rate := Rate{Key: fmt.Sprintf("w%d", i), PerSecond: 10} // spacing 101 ms
		g, _, err := l.WaitGrant(ctx, rate)
		if err != nil {
			t.Fatal(err)
		}
		g.Sent(provider.Sent{Written: g.r.SendAt.Add(tc.late), NewPlainConn: tc.newConn})
		next, err := l.Reserve(ctx, time.Minute, rate)
		if err != nil {
			t.Fatal(err)
		}
		// the next slot is one spacing after the granted one, plus the move
		want := time.Until(g.r.SendAt.Add(101*time.Millisecond + tc.move))
		if d := next.Wait - want; d < -15*time.Millisecond || d > 15*time.Millisecond {
			t.Fatalf("written %s late (new connection %v): next slot in %s, want about %s", tc.late, tc.newConn, next.Wait, want)
		}
	}
}

// An answer slower than the key's fastest recent one by more than
// AnswerSlack counts the excess as lateness: the provider may have read
// the call that much later than it was written (its process waited for a
// core) and stamped it no later than it answered. The first answer, and
// one within the slack, move nothing.
func TestASlowAnswerMovesTheScheduleOn(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	l := New(r.Client(t), Options{Margin: 0.01, MaxLate: 2 * time.Millisecond, Guard: time.Millisecond, AnswerSlack: 10 * time.Millisecond})
	ctx := context.Background()
	rate := Rate{Key: "answers", PerSecond: 10} // spacing 101 ms
	for i, tc := range []struct {
		took time.Duration // from the write to the answer
		move time.Duration
	}{
		{40 * time.Millisecond, 0},                     // the first answer on the key: nothing to compare with
		{time.Millisecond, 0},                          // the fastest so far
		{8 * time.Millisecond, 0},                      // 7 ms slower: within the slack
		{31 * time.Millisecond, 19 * time.Millisecond}, // 30 ms slower: 20 ms late, moved by 20 − 2 + 1
	} {
		g, _, err := l.WaitGrant(ctx, rate)
		if err != nil {
			t.Fatal(err)
		}
		written := g.r.SendAt
		g.Sent(provider.Sent{Written: written, Answered: written.Add(tc.took), Host: "h", Group: provider.GroupPushSingle})
		next, err := l.Reserve(ctx, time.Minute, rate)
		if err != nil {
			t.Fatal(err)
		}
		want := time.Until(g.r.SendAt.Add(101*time.Millisecond + tc.move)) // one spacing after the grant, plus the move
		if d := next.Wait - want; d < -15*time.Millisecond || d > 15*time.Millisecond {
			t.Fatalf("call %d answered after %s: next slot in %s, want about %s", i, tc.took, next.Wait, want)
		}
		// The next WaitGrant books the slot after next's and waits for it.
	}
	off := New(r.Client(t), Options{AnswerSlack: -1})
	if off.opts.AnswerSlack >= 0 {
		t.Fatalf("a negative AnswerSlack is %s, want answers unused", off.opts.AnswerSlack)
	}
}

// Several processes booking one key book it no further ahead than its
// horizon (half the distance to the call R places later), so a call
// written late is compensated however many processes wait: at R = 2 three
// processes used to book a call, its successor and the call R places
// later at once, and the first call's lateness could move nothing.
func TestALateCallMovesTheScheduleOnWhateverTheProcesses(t *testing.T) {
	t.Parallel()
	r := testenv.StartRedis(t)
	const n = 3
	var ls [n]*Limiter
	var runs [n]scriptRuns
	for i := range ls {
		rdb := r.Client(t)
		rdb.AddHook(&runs[i])
		ls[i] = New(rdb, Options{Margin: 0.01})
	}
	rate := Rate{Key: "late", PerSecond: 2} // spacing 505 ms, horizon 505 ms
	if h := ls[0].Horizon(rate.PerSecond); h != 505*time.Millisecond {
		t.Fatalf("horizon %s, want 505ms", h)
	}
	ctx := context.Background()
	first, _, err := ls[0].WaitGrant(ctx, rate)
	if err != nil {
		t.Fatal(err)
	}
	type got struct {
		g   *Grant
		err error
	}
	rest := make(chan got, n-1)
	for _, l := range ls[1:] {
		go func() {
			g, _, err := l.WaitGrant(ctx, rate)
			rest <- got{g, err}
		}()
	}
	// Both have asked Redis for a slot: one booked the next (505 ms on),
	// the other was told the free slot lies beyond the horizon and waits
	// in its process.
	testenv.WaitUntil(t, 5*time.Second, "the other two processes to ask for a slot", func() bool {
		return runs[1].n.Load() >= 1 && runs[2].n.Load() >= 1
	})
	const late = 80 * time.Millisecond
	first.Sent(provider.Sent{Written: first.r.SendAt.Add(late)})
	var slots []int64
	for range n - 1 {
		x := <-rest
		if x.err != nil {
			t.Fatal(x.err)
		}
		slots = append(slots, x.g.r.slot)
	}
	last := max(slots[0], slots[1])
	// The call R = 2 places after the first keeps its full distance from
	// the first one's real send.
	if d := time.Duration(last-first.r.slot) * time.Microsecond; d < 2*505*time.Millisecond+late-3*time.Millisecond {
		t.Fatalf("the call 2 places after one written %s late is %s after its slot, want at least %s", late, d, 2*505*time.Millisecond+late-3*time.Millisecond)
	}
}

// A window holds whole calls: a fractional rate over 1/s is spaced as its
// whole part (3 calls at 2.5/s would fit in 0.81 s); under 1/s it is one call
// per 1/r s.
func TestFractionalRatesAreSpacedByWholeCalls(t *testing.T) {
	t.Parallel()
	l := New(nil, Options{Margin: 0.01})
	for _, tc := range []struct {
		rate float64
		want time.Duration
	}{
		{2.5, 505 * time.Millisecond},
		{2, 505 * time.Millisecond},
		{1.9, 1010 * time.Millisecond},
		{0.5, 2020 * time.Millisecond},
		{100, 10100 * time.Microsecond},
	} {
		if got := l.Spacing(tc.rate); got != tc.want {
			t.Errorf("Spacing(%v) = %s, want %s", tc.rate, got, tc.want)
		}
	}
}

// Pace is Spacing as a rate, or the adapted rate's spacing when lower, as
// the reserve script spaces calls.
func TestPace(t *testing.T) {
	t.Parallel()
	l := New(nil, Options{Margin: 0.01})
	for _, tc := range []struct {
		limit, effective, want float64
	}{
		{10, 0, 1e6 / 101000},
		{2.5, 0, 1e6 / 505000},
		{10, 10, 1e6 / 101000},
		{10, 4, 1e6 / 252500}, // floor(1e6·1.01/4) µs
		{10, 12, 1e6 / 101000},
		{0, 0, 0},
	} {
		if got := l.Pace(tc.limit, tc.effective); math.Abs(got-tc.want) > 1e-9 {
			t.Errorf("Pace(%v, %v) = %v, want %v", tc.limit, tc.effective, got, tc.want)
		}
	}
}

// A call found late at its wake and later again at its write is moved on
// by its whole lateness: the second move asks for the slot + the whole
// shift, not only the part the first did not cover (make bench-apps, 100
// apps: a first call moved 48 ms at its wake and written 75 ms late moved
// the schedule 48 ms in all, and 5 calls fell within 1 s at R = 4).
func TestLateAtWakeThenAtWriteMovesByTheWholeLateness(t *testing.T) {
	t.Parallel()
	l, _, r := setup(t)
	ctx := context.Background()
	rate := Rate{Key: "twice", PerSecond: 10} // spacing 101 ms
	first, err := l.Reserve(ctx, time.Minute, rate)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := l.Reserve(ctx, time.Minute, rate); err != nil { // the next call is booked
		t.Fatal(err)
	}
	moved, ok, err := l.shift(ctx, first, 50*time.Millisecond, 0) // late at its wake
	if err != nil || !ok {
		t.Fatalf("shift at the wake: %v %v", ok, err)
	}
	more, ok, err := l.shift(ctx, first, 75*time.Millisecond, moved) // later still at its write
	if err != nil || !ok {
		t.Fatalf("shift at the write: %v %v", ok, err)
	}
	if moved+more != 73500*time.Microsecond {
		t.Fatalf("moved %s then %s, want 73.5 ms in all (75 ms late, less MaxLate 2 ms, plus Guard 0.5 ms)", moved, more)
	}
	v, err := r.Client(t).Get(ctx, l.opts.Prefix+rate.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var tat, n int64
	if _, err := fmt.Sscanf(v, "%d:%d", &tat, &n); err != nil {
		t.Fatal(err)
	}
	// The call after the booked one keeps its distance from the late call's
	// real send: its slot + 73.5 ms + 2 spacings.
	if want := first.slot + 73_500 + 2*101_000; tat < want {
		t.Fatalf("next free slot %d µs after the late call's, want at least %d", tat-first.slot, want-first.slot)
	}
}

// scriptRuns is a redis.Hook counting the scripts its client's Redis has
// run and answered (a NOSCRIPT answer is not a run): a limiter's
// reservations.
type scriptRuns struct{ n atomic.Int32 }

func (s *scriptRuns) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *scriptRuns) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		s.count(cmd)
		return err
	}
}

func (s *scriptRuns) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		for _, cmd := range cmds {
			s.count(cmd)
		}
		return err
	}
}

func (s *scriptRuns) count(cmd redis.Cmder) {
	if name := cmd.Name(); (name == "evalsha" || name == "eval") && !redis.HasErrorPrefix(cmd.Err(), "NOSCRIPT") {
		s.n.Add(1)
	}
}
