// Package ratelimit holds the provider's limits for every campaignd process
// sharing one Redis: calls per second per endpoint group and app, as
// reservations on a generic cell rate (GCRA) schedule kept in Redis.
//
// Each caller gets its own send time in one round trip (a Lua script reading
// Redis TIME) and waits exactly until then: no polling, no thundering herd.
// The callers of one process that reserve at once share the trip (one
// pipeline, each reservation still its own script run: internal/groupcommit).
// Consecutive reservations on a key are spaced by (1/R)·(1+Margin). The
// margin absorbs the jitter between the moment a process is told to send and
// the moment its call reaches the provider (timer overshoot, scheduling,
// loopback latency): R+1 sends are at least R·(1/R)(1+Margin) = 1 s +
// Margin·1 s apart, so as long as no call arrives more than Margin·1 s (15
// ms by default) later than the one R slots after it, no sliding 1-second
// window ever holds more than R arrivals, whatever R is. The price is Margin
// of the budget: 98.5% of R by default.
//
// Callers queue in their own process before they book (a few per key), so
// the shared schedule is booked less than a second ahead. A caller that
// wakes late for its slot (a stalled process) can then move the schedule on
// by its lateness instead of wasting the slot: the call R places later is
// not booked yet, so it is booked that much later and keeps its distance.
//
// A caller whose slot lies further than MaxWait ahead books nothing and gets
// a *RateLimited with the exact wait, so an asynq task can go back to its
// queue for that long instead of holding a worker. If Redis does not answer,
// nothing is granted (fail closed).
package ratelimit

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"strconv"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/groupcommit"
	"github.com/campaignd/campaignd/internal/optcheck"
	"github.com/campaignd/campaignd/provider"
)

// RateLimited says a call may not be sent before RetryIn has passed.
type RateLimited struct {
	Key     string
	RetryIn time.Duration
	Backlog bool // refused because the process holds enough waiting calls (Options.Backlog)
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
	// Adaptive: the provider's refusals lower the key's rate below
	// PerSecond for every process, and it climbs back while none come
	// (Limiter.Refused, adaptive.go).
	Adaptive bool
}

// Options tune a Limiter.
type Options struct {
	Prefix  string        // key prefix, default "campaignd:rl:"
	Margin  float64       // relative extra spacing, default 0.015
	MaxWait time.Duration // longest wait granted, default 10s
	// MaxLate is how late (after its slot) a call may be sent as booked; a
	// caller woken later than that (a slow Redis answer, a scheduling
	// hiccup) first moves the schedule on by its lateness beyond MaxLate,
	// or, if that is not possible, gives the slot up and reserves another.
	// Default 2 ms (timers on Linux wake up to ~1 ms late).
	MaxLate time.Duration
	// Guard is added to a late caller's lateness when the schedule is
	// moved on (the answer's transit and the send). Default 500 µs.
	Guard time.Duration
	// NewConnLate is how much later than its write a request on a plain
	// (not TLS) connection opened for it counts (see Grant.Sent): the
	// provider reads it only once it has accepted the connection, which
	// the client cannot see. make bench-apps measured 21 ms with 100 apps
	// opening connections within one second on two busy cores. Default
	// 50 ms; negative: none.
	NewConnLate time.Duration
	// AnswerSlack is how much slower than the fastest recent answer of
	// its host and group (answerTimes) a call's answer may come before the
	// excess counts as lateness: the provider may have read the call that
	// much later than it was written (its process waited for a core, a
	// packet was held up), and it stamped it no later than it answered.
	// The margin covers MaxLate + AnswerSlack. Default 10 ms; negative:
	// answers are not used.
	AnswerSlack time.Duration
	// LocalAhead bounds how far ahead one process books a key: at most
	// ceil(R × LocalAhead) of its callers hold a reservation at once, the
	// others queue in the process. Default 200 ms; negative: no local queue.
	LocalAhead time.Duration
	// Backlog bounds the calls a process keeps waiting on a key.
	Backlog BacklogOptions
	// Adapt tunes adaptive rates (Rate.Adaptive).
	Adapt AdaptOptions
	// Clock, when set, is a test clock: it replaces Redis TIME inside the
	// scripts (tests move time with it), and nothing sleeps on it.
	// Production leaves it nil: the scripts read Redis TIME, and the
	// limiter sleeps and measures lateness on the wall clock.
	Clock  clock.Clock
	Logger zerolog.Logger
}

// BacklogOptions bound the calls one process keeps waiting on a key.
type BacklogOptions struct {
	// Time bounds, by time, how many calls of one priority or better a
	// process keeps waiting on a key: about R × Time (at least the
	// places plus Min). A caller beyond it gets a *RateLimited with
	// RetryIn Retry at once, so that a batch goes back to its queue
	// instead of deciding now to send seconds later. Default 2s; negative:
	// no bound.
	Time  time.Duration
	Min   int           // at least this many places beyond the local ones; default 8
	Retry time.Duration // the longest RetryIn of a backlog refusal; default 1s
	// Lead is how long before the calls ahead of a refused caller
	// run out it is asked to come back (RetryIn: their drain time less
	// Lead, at least 100 ms, at most Retry), so that its
	// batch is back through its queue before the key's callers run out:
	// asynq forwards a task to come back up to a second late. Default
	// 1.5 s (a second of forwarding, and the rest of the first call's
	// spacing and the dequeue); negative: none.
	Lead time.Duration
}

// Limiter is safe for concurrent use by any number of goroutines and
// processes sharing the Redis.
type Limiter struct {
	rdb     redis.UniversalClient
	opts    Options
	wall    clock.Clock            // this process's clock: sleeps, lateness, round trips
	clock   *redisClock            // Redis time on this process's clock
	reserve *groupcommit.Committer // reserveScript: concurrent reservations share round trips
	answers *answerTimes           // the fastest recent answer per host and group (Grant.Sent)

	refusedMu sync.Mutex
	refusedAt map[string]time.Time // the last refusal for rate known per key (prefixed), local time

	mu     sync.Mutex
	queues map[string]*localQueue // local queues by key set
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field). A negative value where a field allows one
// ("negative: none") is kept.
func (o Options) WithDefaults() Options {
	o.Prefix = cmp.Or(o.Prefix, "campaignd:rl:")
	o.Margin = cmp.Or(o.Margin, 0.015)
	o.MaxWait = cmp.Or(o.MaxWait, 10*time.Second)
	o.MaxLate = cmp.Or(o.MaxLate, 2*time.Millisecond)
	o.Guard = cmp.Or(o.Guard, 500*time.Microsecond)
	o.NewConnLate = cmp.Or(o.NewConnLate, 50*time.Millisecond)
	o.AnswerSlack = cmp.Or(o.AnswerSlack, 10*time.Millisecond)
	o.LocalAhead = cmp.Or(o.LocalAhead, 200*time.Millisecond)
	o.Backlog.Time = cmp.Or(o.Backlog.Time, 2*time.Second)
	o.Backlog.Min = cmp.Or(o.Backlog.Min, 8)
	o.Backlog.Retry = cmp.Or(o.Backlog.Retry, time.Second)
	o.Backlog.Lead = cmp.Or(o.Backlog.Lead, 1500*time.Millisecond)
	o.Adapt = o.Adapt.WithDefaults()
	return o
}

// validate reports the fields out of range of options whose defaults are
// filled in; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("ratelimit: Options")
	c.Check("Margin", o.Margin > 0 && o.Margin < 1, o.Margin)
	c.Positive(o, "MaxWait", "MaxLate", "Guard")
	c.Check("Backlog.Min", o.Backlog.Min > 0, o.Backlog.Min)
	c.Check("Backlog.Retry", o.Backlog.Retry > 0, o.Backlog.Retry)
	c.Add(o.Adapt.validate())
	return c.Err()
}

// New returns a limiter on rdb. Options out of range are a caller's bug:
// New panics on them, naming the field.
func New(rdb redis.UniversalClient, opts Options) *Limiter {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		panic(err)
	}
	// "negative: none"
	opts.NewConnLate = max(opts.NewConnLate, 0)
	opts.Backlog.Lead = max(opts.Backlog.Lead, 0)
	wall := clock.Real{}
	return &Limiter{rdb: rdb, opts: opts, wall: wall, queues: map[string]*localQueue{}, clock: newRedisClock(wall.Now()),
		reserve: groupcommit.New(rdb, reserveScript, groupcommit.Options{}),
		answers: newAnswerTimes(answerPeriod), refusedAt: map[string]time.Time{}}
}

// luaPrelude starts every rate script: luaNow, and rd(k), which reads a
// key's "next free time µs:bookings so far" (a bare number, from an older
// version, counts as no bookings) and returns the two numbers.
const luaPrelude = luaNow + `
local function rd(k)
  local v = redis.call('GET', k)
  if not v then return 0, 0 end
  local a, b = string.match(v, '^(%-?%d+):(%d+)$')
  if a then return tonumber(a), tonumber(b) end
  return tonumber(v) or 0, 0
end
`

// luaNow defines nowUs(given): the time in µs, given (a test clock's time)
// or, when given < 0 (production passes -1), Redis TIME.
const luaNow = `
local function nowUs(given)
  local t = tonumber(given)
  if t >= 0 then return t end
  local r = redis.call('TIME')
  return tonumber(r[1]) * 1000000 + tonumber(r[2])
end
`

// reserve books the next common free slot of every key, if it is within
// maxwait and, when a horizon is given, within it. A key holds "next free
// time µs:bookings so far"; an adaptive key is spaced at its effective rate
// when that is lower than its limit (adaptive.go). KEYS[1..n]: rate keys;
// KEYS[n+1..2n]: their effective rates' keys. ARGV[1]: now in µs or -1 for
// Redis TIME; ARGV[2]: maxwait µs; ARGV[3]: horizon µs (0: none); ARGV[4]:
// the margin; ARGV[5..10]: the adaptive climb (AdaptOptions.args);
// ARGV[9+2i]: spacing of key i in µs at its limit; ARGV[10+2i]: key i's
// limit if adaptive, else 0. Returns {granted (0: beyond maxwait, 1: booked, 2:
// beyond the horizon), wait µs, slot µs, now µs, booking number on key 1,
// on key 2, …, the last refusal for rate on key 1 (µs, 0: none), on key 2,
// …} (the booking numbers and refusals only when granted).
var reserveScript = redis.NewScript(luaPrelude + luaEffective + `
local now = nowUs(ARGV[1])
local maxwait = tonumber(ARGV[2])
local horizon = tonumber(ARGV[3])
local margin = tonumber(ARGV[4])
local c = {tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10])}
local n = #KEYS / 2
local send = now
local counts, sps, lasts = {}, {}, {}
for i = 1, n do
  local tat, booked = rd(KEYS[i])
  counts[i] = booked
  if tat > send then send = tat end
  local sp, limit = tonumber(ARGV[9 + 2 * i]), tonumber(ARGV[10 + 2 * i])
  lasts[i] = 0
  if limit > 0 then
    local e, _, _, last = eff(KEYS[n + i], limit, c, now)
    lasts[i] = last
    if e < limit then
      local esp = math.floor(1e6 * (1 + margin) / e)
      if esp > sp then sp = esp end
    end
  end
  sps[i] = sp
end
local wait = send - now
if wait > maxwait then return {0, wait, send, now} end
if horizon > 0 and wait > horizon then return {2, wait, send, now} end
local out = {1, wait, send, now}
for i = 1, n do
  local nt = send + sps[i]
  redis.call('SET', KEYS[i], string.format('%.0f:%d', nt, counts[i] + 1), 'PX', math.floor((nt - now) / 1000) + 2000)
  out[4 + i] = counts[i] + 1
  out[4 + n + i] = lasts[i]
end
return out
`)

// backoffScript moves a key's next free slot to at least now + d.
// KEYS[1] the rate key; ARGV[1] now µs or -1 for Redis TIME, ARGV[2] d µs.
// Returns now + d (µs).
var backoffScript = redis.NewScript(luaPrelude + `
local now = nowUs(ARGV[1])
local until_ = now + tonumber(ARGV[2])
local tat, n = rd(KEYS[1])
if until_ > tat then
  redis.call('SET', KEYS[1], string.format('%.0f:%d', until_, n), 'PX', math.floor(tonumber(ARGV[2]) / 1000) + 2000)
end
return until_
`)

func (l *Limiter) nowArg() int64 {
	if l.opts.Clock == nil {
		return -1
	}
	return l.opts.Clock.Now().UnixMicro()
}

// Spacing is the time between two reservations on a key at rate r. A
// window holds whole calls, so a rate of 1/s or more counts as its whole
// part: 2.5/s spaced at 1/2.5 s would put 3 calls in 0.81 s, more than the
// 2.5 any second may hold; it is spaced as 2/s. Under 1/s, one call per 1/r s.
func (l *Limiter) Spacing(perSecond float64) time.Duration {
	if perSecond >= 1 {
		perSecond = math.Floor(perSecond)
	}
	return time.Duration(math.Ceil(1e6/perSecond*(1+l.opts.Margin))) * time.Microsecond
}

// Pace is the calls per second a key at limit is booked at, as Reserve
// spaces them: the margin and whole calls (Spacing), and the adapted rate
// effective when it is lower (Effective; 0: not adaptive). It is the rate
// the forecast and the ETA plan with.
func (l *Limiter) Pace(limit, effective float64) float64 {
	if limit <= 0 {
		return 0
	}
	sp := l.Spacing(limit)
	if effective > 0 && effective < limit {
		sp = max(sp, time.Duration(math.Floor(1e6*(1+l.opts.Margin)/effective))*time.Microsecond)
	}
	return float64(time.Second) / float64(sp)
}

// Reservation is a granted slot.
type Reservation struct {
	Wait   time.Duration // how long to wait before sending, from the script's run
	SendAt time.Time     // the slot in local time, never early (see redisClock)
	// earliest is the earliest local time the slot may be: a call's
	// lateness counts from here, so it is never less than it really is.
	earliest time.Time
	slot     int64 // the slot in Redis time, µs
	keys     []string
	perKey   []any     // per key: spacing µs, booking number, calls per window
	booked   time.Time // when the booking's answer came
}

// windowCalls is how many calls the strict reading allows in one window of
// a key: R for R ≥ 1 (whole calls), else 1 (one call per 1/R s).
func windowCalls(perSecond float64) int64 {
	return max(int64(perSecond), 1)
}

// Reserve books one call on every rate in one round trip: the send time is
// the first slot free on all of them. Rates with PerSecond <= 0 are
// unlimited and skipped. A wait beyond maxWait books nothing and returns a
// *RateLimited.
func (l *Limiter) Reserve(ctx context.Context, maxWait time.Duration, rates ...Rate) (Reservation, error) {
	return l.reserveWithin(ctx, maxWait, false, rates)
}

// beyondHorizon says a slot lies beyond its keys' booking horizon: nothing
// was booked, and the slot comes within the horizon in about in.
type beyondHorizon struct{ in time.Duration }

func (e *beyondHorizon) Error() string {
	return fmt.Sprintf("ratelimit: slot beyond the booking horizon for %s", e.in)
}

// Horizon is how far ahead of Redis's now a waiting caller may book a key
// at perSecond: half the distance from a call to the one R places after it
// (R calls per window, at least 1), about half a second. So the call R places
// after any call is booked only once that call is at least half a second
// past its slot: a call written late by less than that, however many
// processes book the key, can always move the schedule on (shift). A
// process books at most LocalAhead ahead anyway; the horizon only bounds
// several processes together.
func (l *Limiter) Horizon(perSecond float64) time.Duration {
	return time.Duration(windowCalls(perSecond)) * l.Spacing(perSecond) / 2
}

// reserveWithin is Reserve; with horizon, a slot further ahead than the
// shortest Horizon of the rates books nothing either, and the error is a
// *beyondHorizon.
func (l *Limiter) reserveWithin(ctx context.Context, maxWait time.Duration, horizon bool, rates []Rate) (Reservation, error) {
	keys := make([]string, 0, 2*len(rates))
	args := make([]any, 0, 2*len(rates)+10)
	perSecond := make([]float64, 0, len(rates))
	args = append(args, l.nowArg(), maxWait.Microseconds(), int64(0), l.opts.Margin)
	args = append(args, l.opts.Adapt.args(l.opts.Margin)...)
	var h time.Duration
	for _, r := range rates {
		if r.PerSecond <= 0 || math.IsInf(r.PerSecond, 1) || math.IsNaN(r.PerSecond) {
			continue
		}
		keys = append(keys, l.opts.Prefix+r.Key)
		limit := 0.0
		if r.Adaptive {
			limit = r.PerSecond
		}
		args = append(args, l.Spacing(r.PerSecond).Microseconds(), limit)
		perSecond = append(perSecond, r.PerSecond)
		if kh := l.Horizon(r.PerSecond); h == 0 || kh < h {
			h = kh
		}
	}
	if len(keys) == 0 {
		return Reservation{}, nil
	}
	n := len(keys)
	for _, k := range keys[:n] {
		keys = append(keys, effKey(k))
	}
	if horizon {
		args[2] = max(h.Microseconds(), 1)
	}
	// Reservations made at once go to Redis together, each still its own
	// script run.
	sent := l.wall.Now()
	res, err := l.reserve.Run(ctx, keys, args...).Int64Slice()
	if err != nil {
		return Reservation{}, fmt.Errorf("ratelimit: reserve %v: %w", keys, err)
	}
	got := l.wall.Now()
	if len(res) < 4 || (res[0] == 1 && len(res) != 4+2*n) {
		return Reservation{}, fmt.Errorf("ratelimit: reserve %v: unexpected answer %v", keys, res)
	}
	wait := time.Duration(res[1]) * time.Microsecond
	switch res[0] {
	case 0:
		return Reservation{}, &RateLimited{Key: rates[0].Key, RetryIn: wait}
	case 2:
		return Reservation{}, &beyondHorizon{in: wait - h}
	}
	// The calls R places after a late one keep their distance at the
	// limit's spacing (an effective rate's is longer: that only adds to it).
	per := make([]any, 0, 3*n)
	for i := range n {
		per = append(per, args[10+2*i], res[4+i], windowCalls(perSecond[i]))
	}
	r := Reservation{Wait: wait, SendAt: got.Add(wait), earliest: got.Add(wait), slot: res[2], keys: keys[:n:n], perKey: per, booked: got}
	for i := range n {
		if last := res[4+n+i]; last > 0 {
			// Redis time to this process's clock, on the early side (the
			// answer's arrival less the time since).
			l.noteRefusal(keys[i], got.Add(-time.Duration(res[3]-last)*time.Microsecond))
		}
	}
	if l.opts.Clock == nil {
		// The slot on this process's clock: sleep until its latest
		// possible time, count lateness from its earliest (redisClock).
		lo, hi := l.clock.observe(sent, got, res[3])
		r.SendAt = l.clock.local(r.slot, hi)
		if r.SendAt.Before(got) {
			r.SendAt = got
		}
		r.earliest = l.clock.local(r.slot, lo)
	}
	return r, nil
}

// book reserves a slot for a caller holding a place in its process's queue,
// within the keys' Horizon: while the free slot lies further ahead (other
// processes booked the key that far), the caller waits in the process until
// it comes within the horizon and asks again.
func (l *Limiter) book(ctx context.Context, rates []Rate) (Reservation, error) {
	for {
		r, err := l.reserveWithin(ctx, l.opts.MaxWait, l.opts.Clock == nil, rates)
		var far *beyondHorizon
		if !errors.As(err, &far) {
			return r, err
		}
		tm := time.NewTimer(max(far.in, time.Millisecond))
		select {
		case <-tm.C:
		case <-ctx.Done():
			tm.Stop()
			return Reservation{}, fmt.Errorf("ratelimit: wait: %w", ctx.Err())
		case <-giveUpOf(ctx):
			tm.Stop()
			return Reservation{}, &RateLimited{Key: "given up", RetryIn: l.opts.Backlog.Retry, Backlog: true}
		}
	}
}

// shiftScript lets a caller that is late for its slot still send: if the
// call R places after it is not booked yet on any key (fewer than R
// bookings since its own), it moves every key's next free time on so that
// the calls still to be booked keep their distance from its real send time
// (slot + shift): at least slot + shift + (bookings since it + 1) ×
// spacing. Nothing moves when the key has room anyway (sparse calls). It
// grants; otherwise it changes nothing and grants nothing. KEYS: rate
// keys; ARGV[1] now µs or -1; ARGV[2] slot µs; ARGV[3] shift µs; per key i:
// ARGV[1+3i] spacing µs, ARGV[2+3i] the caller's booking number,
// ARGV[3+3i] R (calls per window, at least 1). Returns {granted (0|1)}.
var shiftScript = redis.NewScript(luaPrelude + `
local now = nowUs(ARGV[1])
local slot = tonumber(ARGV[2])
local shift = tonumber(ARGV[3])
local tats, ns = {}, {}
for i, k in ipairs(KEYS) do
  local sp = tonumber(ARGV[1 + 3 * i])
  local seq = tonumber(ARGV[2 + 3 * i])
  local r = tonumber(ARGV[3 + 3 * i])
  local tat, n = rd(k)
  if n < seq or n - seq >= r then return {0} end
  local need = slot + shift + (n + 1 - seq) * sp
  if need > tat then tat = need end
  tats[i], ns[i] = tat, n
end
for i, k in ipairs(KEYS) do
  redis.call('SET', k, string.format('%.0f:%d', tats[i], ns[i]), 'PX', math.floor((tats[i] - now) / 1000) + 2000)
end
return {1}
`)

// shift moves the schedule on after reservation r's call was (or will be)
// sent late by late: by the lateness beyond MaxLate (which the margin
// covers, like any on-time call's jitter) plus Guard. already is what was
// moved for it before (at its wake, then at its write): the script is
// given the whole shift from the slot (its need is the slot + the whole
// shift + the bookings since, so a second call asks for no less than the
// first), and moved is the part that is new. granted is false when the
// call R places later is booked already (nothing can be moved then).
func (l *Limiter) shift(ctx context.Context, r Reservation, late, already time.Duration) (moved time.Duration, granted bool, err error) {
	total := late - l.opts.MaxLate + l.opts.Guard
	if total <= already {
		return 0, true, nil
	}
	d := total - already
	args := append([]any{l.nowArg(), r.slot, total.Microseconds()}, r.perKey...)
	res, err := shiftScript.Run(ctx, l.rdb, r.keys, args...).Int64Slice()
	if err != nil {
		return 0, false, fmt.Errorf("ratelimit: late send on %v: %w", r.keys, err)
	}
	if len(res) != 1 {
		return 0, false, fmt.Errorf("ratelimit: late send on %v: unexpected answer %v", r.keys, res)
	}
	if res[0] != 1 {
		return 0, false, nil
	}
	return d, true, nil
}

// Wait reserves a slot on every rate and sleeps until it (ctx-aware); see
// WaitGrant. The time waited is returned.
func (l *Limiter) Wait(ctx context.Context, rates ...Rate) (time.Duration, error) {
	_, waited, err := l.WaitGrant(ctx, rates...)
	return waited, err
}

// WaitGrant reserves a slot on every rate and sleeps until it (ctx-aware).
// A slot further than MaxWait ahead is not booked: the error is a
// *RateLimited. The grant should be told when the call was really written
// (Grant.Written); the time waited is returned.
//
// Callers queue in their process first (see Options.LocalAhead), so few
// reservations are booked ahead of time. The caller wakes at the answer's
// arrival + the wait (never early). If its timer woke it later than
// MaxLate (a scheduling hiccup), it sends only if the schedule can be moved
// on by its lateness (one more script call: the call R places later is not
// booked yet); otherwise it gives the slot up and reserves another, since a
// late call could crowd the window of the calls after it.
func (l *Limiter) WaitGrant(ctx context.Context, rates ...Rate) (*Grant, time.Duration, error) {
	start := l.wall.Now()
	check := checkOf(ctx)
	for requeue := 0; ; requeue++ {
		t, err := l.enter(ctx, rates)
		if err != nil {
			return nil, l.wall.Now().Sub(start), err
		}
		g, again, err := l.serve(ctx, t, check, rates, requeue < maxRequeues)
		if again {
			continue
		}
		return g, l.wall.Now().Sub(start), err
	}
}

// waitSlot sleeps until slot r; a holder of a worse priority whose earlier
// slot comes meanwhile may swap it in (see swapDown), and the earlier slot
// is returned then. On ctx's end the slot goes to the next waiter.
func (t *ticket) waitSlot(ctx context.Context, r Reservation) (Reservation, error) {
	d := r.SendAt.Sub(t.l.wall.Now())
	if d <= 0 {
		return r, nil
	}
	sl := t.sleep(r)
	var swap <-chan Reservation
	if sl != nil {
		swap = sl.swap
	}
	tm := time.NewTimer(d)
	defer tm.Stop()
	select {
	case <-tm.C:
		if !t.wake(sl) {
			return r, nil
		}
		earlier := <-sl.swap
		sl.back <- r
		return earlier, nil
	case earlier := <-swap:
		sl.back <- r
		return earlier, nil
	case <-ctx.Done():
		t.abandon(sl, r)
		return r, fmt.Errorf("ratelimit: wait: %w", ctx.Err())
	case <-giveUpOf(ctx):
		t.abandon(sl, r)
		return r, &RateLimited{Key: "given up", RetryIn: t.l.opts.Backlog.Retry, Backlog: true}
	}
}

// abandon gives up slot r (or the earlier one a swap brings) to the next
// waiter, or frees the place.
func (t *ticket) abandon(sl *sleeper, r Reservation) {
	if t.wake(sl) {
		earlier := <-sl.swap
		sl.back <- r
		r = earlier
	}
	if !t.handOver(r) {
		t.release()
	}
}

// maxRequeues bounds how often one caller steps aside for better-priority
// waiters before it sends in any case.
const maxRequeues = 64

// serve books (or takes the handed-over) slot of a caller holding place t
// and waits for it. At the slot it decides: a failed check sends nothing
// and hands the slot to the next waiter; a waiter of a better priority
// (when mayYield) gets the slot, and the caller queues again (again true).
func (l *Limiter) serve(ctx context.Context, t *ticket, check CheckFunc, rates []Rate, mayYield bool) (g *Grant, again bool, err error) {
	if t.handed == nil && t.waited && check != nil {
		if err := check(ctx); err != nil {
			t.release()
			return nil, false, err
		}
	}
	for attempt := 0; ; attempt++ {
		var r Reservation
		if t.handed != nil {
			r, t.handed = *t.handed, nil
		} else if r, err = l.book(ctx, rates); err != nil {
			t.release()
			return nil, false, err
		}
		if l.opts.Clock != nil { // test clock: nothing to sleep on
			t.release()
			return &Grant{l: l, r: r}, false, nil
		}
		r, err = t.waitSlot(ctx, r)
		if err != nil {
			return nil, false, err
		}
		if mayYield {
			// A holder of a better priority waiting for a later slot takes
			// this one; this caller waits for that later slot instead.
			for i := 0; i < maxRequeues; i++ {
				later, ok := t.swapDown(r)
				if !ok {
					break
				}
				if r, err = t.waitSlot(ctx, later); err != nil {
					return nil, false, err
				}
			}
		}
		// A refusal for rate came after this slot was booked (at the rate
		// before it): book again, at the rate after it.
		if attempt < 5 && l.refusedSinceBooked(r) {
			l.opts.Logger.Debug().Strs("keys", r.keys).Msg("ratelimit: refused for rate since the slot was booked; booking again")
			continue
		}
		g = &Grant{l: l, r: r}
		// The decision to send is taken now, at the slot.
		if check != nil {
			if err := check(ctx); err != nil {
				if !t.handOver(r) {
					t.release()
				}
				return nil, false, err
			}
		}
		if mayYield && t.outranked() && t.handOver(r) {
			return nil, true, nil
		}
		// Any call late for its slot could crowd the window of the call R
		// places after it, even one granted at once.
		late := l.wall.Now().Sub(r.earliest)
		if late <= l.opts.MaxLate || attempt >= 5 || len(r.keys) == 0 {
			t.release()
			return g, false, nil
		}
		moved, ok, err := l.shift(ctx, r, late, 0)
		if err != nil {
			t.release()
			return nil, false, err
		}
		if ok {
			g.moved = moved
			l.opts.Logger.Debug().Strs("keys", r.keys).Dur("late", late).Msg("ratelimit: late for the slot; schedule moved on")
			t.release()
			return g, false, nil
		}
		l.opts.Logger.Debug().Strs("keys", r.keys).Dur("late", late).Msg("ratelimit: too late for the slot; reserving another")
	}
}

// Grant is a granted slot, to be told when its call was written.
type Grant struct {
	l     *Limiter
	r     Reservation
	moved time.Duration // the schedule moved on for it so far
}

// answerPeriod is how long a fastest answer is remembered (one to two
// periods): long enough for thousands of calls at the usual rates, short
// enough to follow a path that got slower.
const answerPeriod = 30 * time.Second

// Sent tells the limiter what the client saw of the granted call's trip.
// Anything that held the call between the grant and the write (a new
// connection's dial or TLS handshake, a stalled process) made it late. So
// may what the client cannot see after the write: a request on a plain
// connection opened for it counts NewConnLate later (the provider reads it
// only once it has accepted the connection), and an answer slower than
// the fastest recent one to the same host and group by more than
// AnswerSlack counts the excess (the provider stamped the call no later
// than it answered; a provider whose process waited for a core stamps
// late and answers late). The larger of the two counts. If the call is
// then later than MaxLate, the schedule is moved on by that much while the
// call R places later is not booked yet (one script call, only then).
// Safe on a nil Grant.
func (g *Grant) Sent(s provider.Sent) {
	if g == nil || len(g.r.keys) == 0 || g.l.opts.Clock != nil || s.Written.IsZero() {
		return
	}
	late := s.Written.Sub(g.r.earliest)
	var unseen, slower time.Duration
	if s.NewPlainConn {
		unseen = g.l.opts.NewConnLate
	}
	if !s.Answered.IsZero() && g.l.opts.AnswerSlack > 0 {
		slower = g.l.answers.slower(s.Host, string(s.Group), s.Written, s.Answered.Sub(s.Written))
		unseen = max(unseen, slower-g.l.opts.AnswerSlack)
	}
	late += unseen
	if late-g.moved <= g.l.opts.MaxLate {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	moved, ok, err := g.l.shift(ctx, g.r, late, g.moved)
	switch {
	case err != nil:
		g.l.opts.Logger.Warn().Err(err).Msg("ratelimit: late send not compensated")
	case ok:
		g.moved += moved
		g.l.opts.Logger.Debug().Strs("keys", g.r.keys).Time("slot", g.r.earliest).Time("written", s.Written).Dur("late", late).Bool("new_conn", s.NewPlainConn).Dur("slower_answer", slower).Msg("ratelimit: written or read late; schedule moved on")
	default:
		g.l.opts.Logger.Warn().Strs("keys", g.r.keys).Dur("late", late).Bool("new_conn", s.NewPlainConn).Dur("slower_answer", slower).Msg("ratelimit: written or read late; the call R places later was booked already")
	}
}

// queue takes a place in the process's queue for rates' keys with the
// order of ctx (see enter); release gives it back.
func (l *Limiter) queue(ctx context.Context, rates []Rate) (release func(), err error) {
	t, err := l.enter(ctx, rates)
	if err != nil {
		return nil, err
	}
	return t.release, nil
}

const (
	maxPlaces = 256    // per key and process
	maxQueues = 10_000 // keys with a local queue, per process
)

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
	Adaptive func(app string) bool // optional: the app's group rates adapt to refusals (Rate.Adaptive)
	Observer WaitObserver          // optional
}

// Gate returns a provider.Gate over rates.
func (l *Limiter) Gate(rates RatesFunc) *Gate { return &Gate{L: l, Rates: rates} }

// Acquire implements provider.Gate.
func (g *Gate) Acquire(ctx context.Context, app string, group provider.Group) error {
	_, err := g.AcquireGrant(ctx, app, group)
	return err
}

// AcquireGrant implements provider.GrantingGate: the client tells the grant
// when its request was written (see Grant.Written).
func (g *Gate) AcquireGrant(ctx context.Context, app string, group provider.Group) (provider.Grant, error) {
	var rates []Rate
	if r, ok := g.Rates(app, group); ok && r > 0 {
		rates = append(rates, Rate{Key: GroupKey(app, group), PerSecond: r, Adaptive: g.Adaptive != nil && g.Adaptive(app)})
	}
	if group != provider.GroupToken {
		extra, _ := ctx.Value(extraKey{}).([]Rate)
		rates = append(rates, extra...)
	}
	if len(rates) == 0 {
		return nil, nil
	}
	grant, waited, err := g.L.WaitGrant(ctx, rates...)
	if g.Observer != nil {
		var rl *RateLimited
		switch {
		case err == nil:
			g.Observer.LimiterWait(app, string(group), waited)
		case errors.As(err, &rl):
			g.Observer.LimiterRefused(app, string(group))
		}
	}
	if err != nil || grant == nil {
		return nil, err // a nil *Grant must not become a non-nil interface
	}
	return grant, nil
}

// String describes a rate for logs.
func (r Rate) String() string {
	return r.Key + "@" + strconv.FormatFloat(r.PerSecond, 'g', -1, 64) + "/s"
}
