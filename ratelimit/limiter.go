// Package ratelimit holds the provider's limits for every campaignd process
// sharing one Redis: calls per second per endpoint group and app, as
// reservations on a generic cell rate (GCRA) schedule kept in Redis.
//
// Each caller gets its own send time in one round trip (a Lua script reading
// Redis TIME) and waits exactly until then: no polling, no thundering herd.
// Consecutive reservations on a key are spaced by (1/R)·(1+Margin). The
// margin absorbs the jitter between the moment a process is told to send and
// the moment its call reaches the provider (timer overshoot, scheduling,
// loopback latency): R+1 sends are at least R·(1/R)(1+Margin) = 1 s +
// Margin·1 s apart, so as long as no call arrives more than Margin·1 s (10
// ms by default) later than the one R slots after it, no sliding 1-second
// window ever holds more than R arrivals, whatever R is. The price is Margin
// of the budget: 99% of R by default.
//
// A caller whose slot lies further than MaxWait ahead books nothing and gets
// a *RateLimited with the exact wait, so an asynq task can go back to its
// queue for that long instead of holding a worker. If Redis does not answer,
// nothing is granted (fail closed).
package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/provider"
)

// RateLimited says a call may not be sent before RetryIn has passed.
type RateLimited struct {
	Key     string
	RetryIn time.Duration
}

func (e *RateLimited) Error() string {
	return fmt.Sprintf("rate limited on %s: next slot in %s", e.Key, e.RetryIn.Round(time.Millisecond))
}

// RetryAfter lets callers treat it like a provider rate-limit answer.
func (e *RateLimited) RetryAfter() time.Duration { return e.RetryIn }

// Rate is a limit on one key, in calls per second.
type Rate struct {
	Key       string
	PerSecond float64
}

// Options tune a Limiter.
type Options struct {
	Prefix  string        // key prefix, default "campaignd:rl:"
	Margin  float64       // relative extra spacing, default 0.01
	MaxWait time.Duration // longest wait granted, default 10s
	// MaxLate is how late (after its slot) a call may still be sent; a
	// caller woken later than that (a slow Redis answer, a scheduling
	// hiccup) gives the slot up and reserves another, since a late call
	// could crowd the window of the calls after it. Default Margin × 1 s / 4.
	MaxLate time.Duration
	// Now, when set, replaces Redis TIME inside the scripts (tests move time
	// with it). Production leaves it nil.
	Now    func() time.Time
	Logger zerolog.Logger
}

// Limiter is safe for concurrent use by any number of goroutines and
// processes sharing the Redis.
type Limiter struct {
	rdb  redis.UniversalClient
	opts Options
}

// New returns a limiter on rdb.
func New(rdb redis.UniversalClient, opts Options) *Limiter {
	if opts.Prefix == "" {
		opts.Prefix = "campaignd:rl:"
	}
	if opts.Margin <= 0 {
		opts.Margin = 0.01
	}
	if opts.MaxWait <= 0 {
		opts.MaxWait = 10 * time.Second
	}
	if opts.MaxLate <= 0 {
		opts.MaxLate = time.Duration(opts.Margin * float64(time.Second) / 4)
	}
	return &Limiter{rdb: rdb, opts: opts}
}

// reserve books the next common free slot of every key, if it is within
// maxwait. KEYS: rate keys. ARGV[1]: now in µs or -1 for Redis TIME;
// ARGV[2]: maxwait µs; ARGV[2+i]: spacing of key i in µs.
// Returns {granted (0|1), wait µs}.
var reserveScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local maxwait = tonumber(ARGV[2])
local send = now
for i, k in ipairs(KEYS) do
  local tat = tonumber(redis.call('GET', k) or '0')
  if tat > send then send = tat end
end
local wait = send - now
if wait > maxwait then return {0, wait, send, now} end
for i, k in ipairs(KEYS) do
  local nt = send + tonumber(ARGV[2 + i])
  redis.call('SET', k, nt, 'PX', math.floor((nt - now) / 1000) + 2000)
end
return {1, wait, send, now}
`)

// backoffScript moves a key's next free slot to at least now + d.
var backoffScript = redis.NewScript(`
local now = tonumber(ARGV[1])
if now < 0 then
  local t = redis.call('TIME')
  now = tonumber(t[1]) * 1000000 + tonumber(t[2])
end
local until_ = now + tonumber(ARGV[2])
local tat = tonumber(redis.call('GET', KEYS[1]) or '0')
if until_ > tat then
  redis.call('SET', KEYS[1], until_, 'PX', math.floor(tonumber(ARGV[2]) / 1000) + 2000)
end
return until_
`)

func (l *Limiter) nowArg() int64 {
	if l.opts.Now == nil {
		return -1
	}
	return l.opts.Now().UnixMicro()
}

// Spacing is the time between two reservations on a key at rate r.
func (l *Limiter) Spacing(perSecond float64) time.Duration {
	return time.Duration(math.Ceil(1e6/perSecond*(1+l.opts.Margin))) * time.Microsecond
}

// Reservation is a granted slot.
type Reservation struct {
	Wait   time.Duration // how long to wait before sending, from the script's run
	SendAt time.Time     // the slot in local time: when the answer arrived + Wait
}

// Reserve books one call on every rate in one round trip: the send time is
// the first slot free on all of them. Rates with PerSecond <= 0 are
// unlimited and skipped. A wait beyond maxWait books nothing and returns a
// *RateLimited.
func (l *Limiter) Reserve(ctx context.Context, maxWait time.Duration, rates ...Rate) (Reservation, error) {
	keys := make([]string, 0, len(rates))
	args := make([]any, 0, len(rates)+2)
	args = append(args, l.nowArg(), maxWait.Microseconds())
	for _, r := range rates {
		if r.PerSecond <= 0 || math.IsInf(r.PerSecond, 1) || math.IsNaN(r.PerSecond) {
			continue
		}
		keys = append(keys, l.opts.Prefix+r.Key)
		args = append(args, l.Spacing(r.PerSecond).Microseconds())
	}
	if len(keys) == 0 {
		return Reservation{}, nil
	}
	res, err := reserveScript.Run(ctx, l.rdb, keys, args...).Int64Slice()
	if err != nil {
		return Reservation{}, fmt.Errorf("ratelimit: reserve %v: %w", keys, err)
	}
	got := time.Now()
	if len(res) != 4 {
		return Reservation{}, fmt.Errorf("ratelimit: reserve %v: unexpected answer %v", keys, res)
	}
	wait := time.Duration(res[1]) * time.Microsecond
	if res[0] == 0 {
		return Reservation{}, &RateLimited{Key: rates[0].Key, RetryIn: wait}
	}
	// The slot is placed from the answer's arrival: never early, and late
	// by the answer's transit at most.
	return Reservation{Wait: wait, SendAt: got.Add(wait)}, nil
}

// Wait reserves a slot on every rate and sleeps until it (ctx-aware). A slot
// further than MaxWait ahead is not booked: the error is a *RateLimited. The
// time waited is returned.
//
// The caller wakes at the answer's arrival + the wait (never early). If its
// timer woke it later than MaxLate (a scheduling hiccup), the slot is given
// up and another reserved: a late call could crowd the window of the calls
// after it.
func (l *Limiter) Wait(ctx context.Context, rates ...Rate) (time.Duration, error) {
	start := time.Now()
	for attempt := 0; ; attempt++ {
		r, err := l.Reserve(ctx, l.opts.MaxWait, rates...)
		if err != nil {
			return time.Since(start), err
		}
		if l.opts.Now != nil { // test clock: nothing to sleep on
			return r.Wait, nil
		}
		if d := time.Until(r.SendAt); d > 0 {
			t := time.NewTimer(d)
			select {
			case <-t.C:
			case <-ctx.Done():
				t.Stop()
				return time.Since(start), fmt.Errorf("ratelimit: wait: %w", ctx.Err())
			}
		}
		// Only a caller that had to queue for its slot (the key is busy)
		// can crowd the next second with a late call.
		late := time.Since(r.SendAt)
		if r.Wait < time.Millisecond || late <= l.opts.MaxLate || attempt >= 5 {
			return time.Since(start), nil
		}
		l.opts.Logger.Debug().Dur("late", late).Msg("ratelimit: too late for the slot; reserving another")
	}
}

// Backoff pushes key's next free slot at least d into the future, for every
// process (after the provider still answered 429 / LimitException).
func (l *Limiter) Backoff(ctx context.Context, key string, d time.Duration) error {
	if err := backoffScript.Run(ctx, l.rdb, []string{l.opts.Prefix + key}, l.nowArg(), d.Microseconds()).Err(); err != nil {
		return fmt.Errorf("ratelimit: backoff %s: %w", key, err)
	}
	return nil
}

// GroupKey is the key of an app's endpoint group.
func GroupKey(app string, g provider.Group) string { return "app:" + app + ":" + string(g) }

type extraKey struct{}

// WithExtraRate adds a rate every gated call made with ctx must also honour
// (a campaign's own rate_limit).
func WithExtraRate(ctx context.Context, r Rate) context.Context {
	prev, _ := ctx.Value(extraKey{}).([]Rate)
	return context.WithValue(ctx, extraKey{}, append(append([]Rate(nil), prev...), r))
}

// RatesFunc tells a group's calls per second for an app (false: unlimited).
type RatesFunc func(app string, g provider.Group) (float64, bool)

// WaitObserver is told how long each granted call waited, or that it was
// handed back (refused).
type WaitObserver interface {
	LimiterWait(app, group string, waited time.Duration)
	LimiterRefused(app, group string)
}

// Gate adapts the limiter to provider.Gate: every HTTP request of a client
// waits for its app's group slot (and any extra rate in its context).
type Gate struct {
	L        *Limiter
	Rates    RatesFunc
	Observer WaitObserver // optional
}

// Gate returns a provider.Gate over rates.
func (l *Limiter) Gate(rates RatesFunc) *Gate { return &Gate{L: l, Rates: rates} }

// Acquire implements provider.Gate.
func (g *Gate) Acquire(ctx context.Context, app string, group provider.Group) error {
	var rates []Rate
	if r, ok := g.Rates(app, group); ok && r > 0 {
		rates = append(rates, Rate{Key: GroupKey(app, group), PerSecond: r})
	}
	if group != provider.GroupToken {
		extra, _ := ctx.Value(extraKey{}).([]Rate)
		rates = append(rates, extra...)
	}
	if len(rates) == 0 {
		return nil
	}
	waited, err := g.L.Wait(ctx, rates...)
	if g.Observer != nil {
		var rl *RateLimited
		switch {
		case err == nil:
			g.Observer.LimiterWait(app, string(group), waited)
		case errors.As(err, &rl):
			g.Observer.LimiterRefused(app, string(group))
		}
	}
	return err
}

// String describes a rate for logs.
func (r Rate) String() string {
	return r.Key + "@" + strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"
}
