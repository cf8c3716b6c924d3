package ratelimit

import (
	"sync"
	"time"
)

// redisClock places Redis-time slots on this process's clock.
//
// A slot is booked in Redis time (TIME, inside the script). Placing it
// from the answer's arrival (arrival + wait) never sends early, but sends
// late by the answer's transit, and that lateness went uncounted: under
// load (many keys live, a burst of starts) an answer took 20–30 ms, the
// first call of a key went out that late, the next one on time, and 11
// calls fell within one second at a limit of 10 (make bench-apps, 10 apps
// on 3 processes).
//
// Each answer bounds the offset between the clocks: the script ran at
// Redis time now, somewhere between the request's send and the answer's
// arrival, so (send − now) ≤ offset ≤ (arrival − now) on this process's
// monotonic clock. The tightest bounds seen are kept, loosened by maxDrift
// per unit of time elapsed (the two clocks may be slewed apart), and
// reset when a new answer falls outside them (a failover to a host with
// another clock). A slot then starts no earlier than slot + lo and no
// later than slot + hi, hi − lo being about the fastest round trip seen
// (a fraction of a millisecond on a LAN). A caller sleeps until slot + hi
// (never early), and counts its lateness from slot + lo (never less than
// it really is).
type redisClock struct {
	base time.Time // local monotonic origin

	mu     sync.Mutex
	valid  bool
	lo, hi int64 // offset bounds, µs: local (since base) − Redis
	at     int64 // local µs since base of the last update
}

// maxDrift is how fast the two clocks are assumed to move apart at most
// (NTP slews a clock by at most 500 ppm).
const maxDrift = 500e-6

func newRedisClock(now time.Time) *redisClock { return &redisClock{base: now} }

// observe narrows the bounds with one answer: the request left at sent,
// the answer came at got, and the script ran at Redis time now (µs).
// It returns the bounds to place this answer's slot with.
func (c *redisClock) observe(sent, got time.Time, now int64) (lo, hi int64) {
	l := got.Sub(c.base).Microseconds()
	a, b := sent.Sub(c.base).Microseconds()-now, l-now
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.valid {
		loose := int64(float64(l-c.at) * maxDrift)
		c.lo, c.hi = c.lo-loose, c.hi+loose
	}
	if !c.valid || a > c.hi || b < c.lo {
		c.lo, c.hi = a, b // first answer, or the clocks jumped apart
	} else {
		c.lo, c.hi = max(c.lo, a), min(c.hi, b)
	}
	c.valid, c.at = true, l
	return c.lo, c.hi
}

// local is Redis time us (µs) on this process's clock, given an offset.
func (c *redisClock) local(us, offset int64) time.Time {
	return c.base.Add(time.Duration(us+offset) * time.Microsecond)
}
