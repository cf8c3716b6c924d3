package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/campaignd/campaignd/internal/optcheck"
	"github.com/redis/go-redis/v9"
)

// An adaptive rate (Rate.Adaptive) learns the share of its limit that is
// left when campaignd is not the only client of a provider key (the app's
// own backend spends it too, or the customer's plan is lower than the
// configured limit). Its effective rate lives in Redis beside the key, so
// every process books with the same value in the same script run:
//
//   - a refusal for rate lowers it (multiplicative decrease, ×Decrease) and
//     remembers the rate of a second before (the peak: the rate that
//     filled the provider's window), at most once per Hold, so that the
//     refusals of calls sent before a decrease, which the provider's
//     window still holds, count once;
//   - it stays there until Hold has passed since the decrease and since
//     the last refusal (the provider's window, which counts the refused
//     calls too, has to empty first), then climbs back, computed when
//     read: quickly (Fast × the peak per second) to a plateau a little
//     under the peak (the lower of (1 − Near) × the peak and a call fewer
//     in a second than the peak put there), stays there for Plateau, and
//     then climbs at Increase × the limit per second, probing for the peak
//     (the next refusal comes there) and finding the limit again once the
//     other client has gone;
//   - it is never below Floor × the limit.
//
// Why not a plain additive increase: its sawtooth from 0.8 of the peak
// back to it spent 82–84% of what was left in the end-to-end tests, under
// the 85% asked: the peak is where refusals begin, and the average is 0.9
// of it. A climb that starts during the hold undoes each decrease before
// the window has emptied: configured at twice the real limit, the rate
// fell only 5% a second and half the calls were refused. docs/ratelimit.md
// has the measurements.
//
// The state is "rate:since:peak:last" (calls/s after the last decrease,
// its time in µs, the peak, the last refusal's time in µs) under Prefix +
// key + ":eff", expiring once the rate is back at the limit, and the
// refusals of the last RefusalWindow in a sorted set under Prefix + key +
// ":refused".

// AdaptOptions tune adaptive rates.
type AdaptOptions struct {
	Decrease      float64       // the factor a refusal multiplies the rate by; default 0.8
	Hold          time.Duration // no climb and no second decrease for this long after a decrease; default 1 s (the provider's window)
	Fast          float64       // the climb to the plateau, a share of the peak per second; default 0.1
	Near          float64       // the plateau is the peak less this share of it, or a call fewer in a second than the peak put there when that is lower; default 0.05
	Plateau       time.Duration // how long the rate stays on the plateau; default 10 s
	Increase      float64       // the climb after the plateau, a share of the limit per second; default 0.04
	Floor         float64       // the least share of the limit; default 0.05
	RefusalWindow time.Duration // refusals are counted over this long (Adapted.Refusals); default 1 min
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o AdaptOptions) WithDefaults() AdaptOptions {
	o.Decrease = cmp.Or(o.Decrease, 0.8)
	o.Fast = cmp.Or(o.Fast, 0.1)
	o.Plateau = cmp.Or(o.Plateau, 10*time.Second)
	o.Increase = cmp.Or(o.Increase, 0.04)
	o.Near = cmp.Or(o.Near, 0.05)
	o.Hold = cmp.Or(o.Hold, time.Second)
	o.Floor = cmp.Or(o.Floor, 0.05)
	o.RefusalWindow = cmp.Or(o.RefusalWindow, time.Minute)
	return o
}

// validate reports the fields out of range of options whose defaults are
// filled in; it changes nothing.
func (o AdaptOptions) validate() error {
	c := optcheck.New("ratelimit: AdaptOptions")
	c.Check("Decrease", o.Decrease > 0 && o.Decrease < 1, o.Decrease)
	c.Positive(o, "Fast", "Plateau", "Increase", "Hold", "RefusalWindow")
	c.Check("Near", o.Near > 0 && o.Near < 1, o.Near)
	c.Check("Floor", o.Floor > 0 && o.Floor <= 1, o.Floor)
	return c.Err()
}

// args are the climb's ARGV, in luaEffective's order (margin: the
// limiter's).
func (o AdaptOptions) args(margin float64) []any {
	return []any{o.Fast, o.Plateau.Seconds(), o.Increase, o.Near, o.Hold.Seconds(), margin}
}

func effKey(key string) string     { return key + ":eff" }
func refusedKey(key string) string { return key + ":refused" }

// luaEffective defines climb(e, dt, peak, limit, c) and eff(k, limit, c,
// at): the effective rate stored at k (see above) at time at (µs), climbed
// back since its last decrease, at most limit; the time of that
// decrease (0: none); the peak; the time of the last refusal; and the rate
// set at the decrease. c is the climb: {fast, plateau s, increase, near, hold s}; climb answers
// the rate dt seconds after the hold, and the time left over once at the
// limit.
const luaEffective = `
local function climb(e, dt, peak, limit, c)
  -- the plateau: at most (1 - near) of the peak, and a call fewer in a
  -- second than the peak put there (calls at a/s, spaced evenly, put
  -- ceil(a) in a second, or one more when a is within a call's jitter
  -- under a whole number), less a tenth of a call for that jitter
  local top = math.min(peak * (1 - c[4]), limit)
  if peak >= 2 then
    top = math.min(top, (math.ceil(peak / (1 + c[6]) + 0.05) - 1.1) * (1 + c[6]))
  end
  if e < top then
    local need = (top - e) / (c[1] * peak)
    if dt <= need then return e + dt * c[1] * peak, 0 end
    dt, e = dt - need, top
  end
  if dt <= c[2] then return e, 0 end
  dt = dt - c[2]
  local need = (limit - e) / (c[3] * limit)
  if dt <= need then return e + dt * c[3] * limit, 0 end
  return limit, dt - need
end
local function eff(k, limit, c, at)
  local v = redis.call('GET', k)
  if not v then return limit, 0, limit, 0 end
  local e0, t0, peak, last = string.match(v, '^([%d%.eE%+%-]+):(%-?%d+):([%d%.eE%+%-]+):(%-?%d+)$')
  if not e0 then return limit, 0, limit, 0 end
  e0, t0, peak, last = tonumber(e0), tonumber(t0), tonumber(peak), tonumber(last)
  -- flat until a hold has passed since the decrease and the last refusal
  local dt = (at - math.max(t0, last)) / 1e6 - c[5]
  if dt < 0 then dt = 0 end
  local e = climb(e0, dt, peak, limit, c)
  return e, t0, peak, last, e0
end
`

// refusedScript records a refusal for rate on a key and lowers its
// effective rate unless it was lowered less than hold ago. KEYS[1]: the
// effective rate's key; KEYS[2]: the refusals' sorted set. ARGV[1]: now µs
// or -1 for Redis TIME; ARGV[2]: the limit (calls/s); ARGV[3]: the
// decrease factor; ARGV[4]: hold µs; ARGV[5]: the floor (a share of the
// limit); ARGV[6]: the refusal window µs; ARGV[7..12]: the climb
// (AdaptOptions.args). Returns {1 if lowered else 0, the effective rate
// in thousandths of a call per second, the refusals within the window}.
var refusedScript = redis.NewScript(luaNow + luaEffective + `
local now = nowUs(ARGV[1])
local limit, factor, hold = tonumber(ARGV[2]), tonumber(ARGV[3]), tonumber(ARGV[4])
local floor, window = tonumber(ARGV[5]), tonumber(ARGV[6])
local c = {tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9]), tonumber(ARGV[10]), tonumber(ARGV[11]), tonumber(ARGV[12])}
redis.call('ZADD', KEYS[2], now, string.format('%.0f:%d', now, redis.call('ZCARD', KEYS[2])))
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now - window)
redis.call('PEXPIRE', KEYS[2], math.floor(window / 1000) + 1000)
local n = redis.call('ZCARD', KEYS[2])
local e, since, peak0, _, e0 = eff(KEYS[1], limit, c, now)
if since > 0 and now - since < hold then
  -- the refusal is noted (callers booked before it send nothing), the rate stays
  local ttl = redis.call('PTTL', KEYS[1])
  if ttl > 0 then
    redis.call('SET', KEYS[1], string.format('%.6f:%.0f:%.6f:%.0f', e0, since, peak0, now), 'PX', ttl)
  end
  return {0, math.floor(e * 1000), n}
end
-- The window that overflowed holds the last second of calls: the peak is
-- the rate a second ago (at the top of a climb, the rate now is higher
-- than the one that filled the window).
local peak = eff(KEYS[1], limit, c, now - 1e6)
e = e * factor
if e < floor * limit then e = floor * limit end
-- the state expires once the climb is back at the limit
local _, left = climb(e, 1e9, peak, limit, c)
local back = (1e9 - left + c[5]) * 1000
redis.call('SET', KEYS[1], string.format('%.6f:%.0f:%.6f:%.0f', e, now, peak, now), 'PX', math.floor(back) + 1000)
return {1, math.floor(e * 1000), n}
`)

// effectiveScript reads a key's effective rate and its recent refusals.
// KEYS[1]: the effective rate's key; KEYS[2]: the refusals' sorted set.
// ARGV[1]: now µs or -1; ARGV[2]: the limit; ARGV[3]: the refusal window
// µs; ARGV[4..9]: the climb. Returns {the effective rate in thousandths,
// the refusals within the window}.
var effectiveScript = redis.NewScript(luaNow + luaEffective + `
local now = nowUs(ARGV[1])
local c = {tonumber(ARGV[4]), tonumber(ARGV[5]), tonumber(ARGV[6]), tonumber(ARGV[7]), tonumber(ARGV[8]), tonumber(ARGV[9])}
local e = eff(KEYS[1], tonumber(ARGV[2]), c, now)
return {math.floor(e * 1000), redis.call('ZCOUNT', KEYS[2], now - tonumber(ARGV[3]), '+inf')}
`)

// Adapted is an adaptive rate's state.
type Adapted struct {
	Effective float64 // calls/s the key is booked at now (at most its limit)
	Limit     float64 // the configured limit
	Lowered   bool    // this refusal lowered it (Refused)
	Refusals  int     // refusals for rate within AdaptOptions.RefusalWindow
}

// Refused records that the provider refused a call on rate's key for its
// rate, and lowers the key's effective rate for every process (at most
// once per Hold).
func (l *Limiter) Refused(ctx context.Context, rate Rate) (Adapted, error) {
	o := l.opts.Adapt
	k := l.opts.Prefix + rate.Key
	args := append([]any{l.nowArg(), rate.PerSecond, o.Decrease, o.Hold.Microseconds(), o.Floor, o.RefusalWindow.Microseconds()}, o.args(l.opts.Margin)...)
	res, err := refusedScript.Run(ctx, l.rdb, []string{effKey(k), refusedKey(k)}, args...).Int64Slice()
	if err != nil {
		return Adapted{}, fmt.Errorf("ratelimit: refusal on %s: %w", rate.Key, err)
	}
	if len(res) != 3 {
		return Adapted{}, fmt.Errorf("ratelimit: refusal on %s: unexpected answer %v", rate.Key, res)
	}
	l.noteRefusal(k, l.wall.Now())
	return Adapted{Effective: float64(res[1]) / 1000, Limit: rate.PerSecond, Lowered: res[0] == 1, Refusals: int(res[2])}, nil
}

// Effective reads the effective rates of rates' keys (one round trip).
func (l *Limiter) Effective(ctx context.Context, rates ...Rate) ([]Adapted, error) {
	if len(rates) == 0 {
		return nil, nil
	}
	o := l.opts.Adapt
	// A pipeline cannot fall back from EVALSHA to EVAL: load the script
	// first (idempotent).
	if err := effectiveScript.Load(ctx, l.rdb).Err(); err != nil {
		return nil, fmt.Errorf("ratelimit: effective rates: %w", err)
	}
	pipe := l.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(rates))
	for i, r := range rates {
		k := l.opts.Prefix + r.Key
		args := append([]any{l.nowArg(), r.PerSecond, o.RefusalWindow.Microseconds()}, o.args(l.opts.Margin)...)
		cmds[i] = effectiveScript.EvalSha(ctx, pipe, []string{effKey(k), refusedKey(k)}, args...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("ratelimit: effective rates: %w", err)
	}
	out := make([]Adapted, len(rates))
	for i, c := range cmds {
		res, err := c.Int64Slice()
		if err != nil {
			return nil, fmt.Errorf("ratelimit: effective rate of %s: %w", rates[i].Key, err)
		}
		if len(res) != 2 {
			return nil, fmt.Errorf("ratelimit: effective rate of %s: unexpected answer %v", rates[i].Key, res)
		}
		out[i] = Adapted{Effective: float64(res[0]) / 1000, Limit: rates[i].PerSecond, Refusals: int(res[1])}
	}
	return out, nil
}

// noteRefusal records that a call on key (prefixed) was refused for rate at
// at (local time), if that is later than what is known.
func (l *Limiter) noteRefusal(key string, at time.Time) {
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	if at.After(l.refusedAt[key]) {
		if _, ok := l.refusedAt[key]; !ok && len(l.refusedAt) >= maxQueues {
			clear(l.refusedAt)
		}
		l.refusedAt[key] = at
	}
}

// refusedSinceBooked says whether a refusal for rate on one of r's keys is
// known that came after r was booked: the provider's window was full then,
// and r's slot was booked at the rate before it (a call sent on it would
// likely be refused too, and count in the window again).
func (l *Limiter) refusedSinceBooked(r Reservation) bool {
	l.refusedMu.Lock()
	defer l.refusedMu.Unlock()
	for _, k := range r.keys {
		if l.refusedAt[k].After(r.booked) {
			return true
		}
	}
	return false
}
