package ratelimit

import (
	"context"
	"fmt"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/testenv"
)

// Each answer bounds the offset between the clocks; the bounds narrow to
// the fastest round trip, loosen with time by maxDrift, and start again
// when the clocks jump apart (a failover to a host with another clock).
func TestRedisClockBoundsTheOffset(t *testing.T) {
	t.Parallel()
	c := newRedisClock(time.Now())
	at := func(us int64) time.Time { return c.base.Add(time.Duration(us) * time.Microsecond) }
	const redis = 1_700_000_000_000_000 // Redis TIME, µs; local = Redis − redis + 1000
	steps := []struct {
		name           string
		sent, got, now int64 // local µs since base; Redis µs
		lo, hi         int64 // offset bounds after it
	}{
		{"first answer: its round trip", 900, 1_400, redis + 200, 700 - redis, 1_200 - redis},
		{"a faster one narrows both", 1_950, 2_050, redis + 1_000, 950 - redis, 1_050 - redis},
		// 37,950 µs since the last: 18 µs looser on each side (500 ppm)
		{"a slow one only loosens them by the drift", 3_000, 40_000, redis + 3_050, 932 - redis, 1_068 - redis},
		// 10 s later: 5,000 µs looser each side, then narrowed by the answer
		{"10 s later, a fast answer", 10_040_000, 10_040_030, redis + 10_039_500, 500 - redis, 530 - redis},
		{"the clocks jumped 1 s apart: start again", 10_050_000, 10_050_100, redis + 11_049_000, -999_000 - redis, -998_900 - redis},
	}
	for _, st := range steps {
		lo, hi := c.observe(at(st.sent), at(st.got), st.now)
		if lo != st.lo || hi != st.hi {
			t.Fatalf("%s: bounds %d..%d, want %d..%d", st.name, lo+redis, hi+redis, st.lo+redis, st.hi+redis)
		}
	}
	if got, want := c.local(redis+2_000, 1_000-redis), at(3_000); !got.Equal(want) {
		t.Fatalf("local %v, want %v", got, want)
	}
}

// On a real Redis a reservation's slot lies between its earliest and its
// send time, which are at most one round trip apart, and the send time
// is never before the answer came.
func TestReservationIsPlacedWithinOneRoundTrip(t *testing.T) {
	t.Parallel()
	l := New(testenv.StartRedis(t).Client(t), Options{})
	ctx := context.Background()
	rate := Rate{Key: "rt", PerSecond: 100}
	for i := range 20 {
		before := time.Now()
		r, err := l.Reserve(ctx, time.Minute, rate)
		if err != nil {
			t.Fatal(err)
		}
		after := time.Now()
		if r.SendAt.Before(r.earliest) || r.SendAt.Sub(r.earliest) > after.Sub(before) {
			t.Fatalf("reservation %d: earliest %s, send %s after it; the round trip took %s", i, r.earliest.Format("15:04:05.000000"), r.SendAt.Sub(r.earliest), after.Sub(before))
		}
		if r.SendAt.Before(before) {
			t.Fatalf("reservation %d: send time before the request", i)
		}
	}
}

// slowAnswers delays the answers to the first n commands or pipelines it
// sees by d: the script has run, its answer is late.
type slowAnswers struct {
	d time.Duration
	n atomic.Int32
}

func (s *slowAnswers) DialHook(next redis.DialHook) redis.DialHook { return next }

func (s *slowAnswers) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		err := next(ctx, cmd)
		s.delay()
		return err
	}
}

func (s *slowAnswers) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		err := next(ctx, cmds)
		s.delay()
		return err
	}
}

// delay holds one of the first n answers back by d: real time, as the
// answer's transit takes it (the limiter reads the wall clock here).
func (s *slowAnswers) delay() {
	if s.n.Add(-1) >= 0 {
		time.Sleep(s.d)
	}
}

// A reservation whose answer comes 30 ms after the script booked its slot
// sends that late: its lateness counts from the slot, not from the
// answer, so the schedule is moved on for it and the call R places later
// keeps its distance (issue 22: a first call sent late by its answer's
// transit, then on-time calls, put 11 calls in one second at R = 10).
func TestLateAnswerMovesTheScheduleOn(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t)
	rdb := rd.Client(t)
	slow := &slowAnswers{d: 30 * time.Millisecond}
	l := New(rdb, Options{})
	ctx := context.Background()
	rate := Rate{Key: "slow", PerSecond: 10}
	if _, err := l.Reserve(ctx, time.Minute, Rate{Key: "warm", PerSecond: 10}); err != nil {
		t.Fatal(err) // a first answer, at full speed, to bound the clocks
	}
	rdb.AddHook(slow)
	slow.n.Store(1)
	g, _, err := l.WaitGrant(ctx, rate)
	if err != nil {
		t.Fatal(err)
	}
	v, err := rdb.Get(ctx, l.opts.Prefix+rate.Key).Result()
	if err != nil {
		t.Fatal(err)
	}
	var tat, n int64
	if _, err := fmt.Sscanf(v, "%d:%d", &tat, &n); err != nil {
		t.Fatalf("key %q: %v", v, err)
	}
	spacing := l.Spacing(10).Microseconds()
	// Moved on by the lateness beyond MaxLate (2 ms), plus Guard.
	if moved := tat - (g.r.slot + spacing); moved < (25 * time.Millisecond).Microseconds() {
		t.Fatalf("next free slot %d µs after the late call's slot + spacing, want ≥ 25 ms: the answer's 30 ms went uncounted", moved)
	}
}
