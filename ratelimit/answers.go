package ratelimit

import (
	"sync"
	"time"
)

// answerTimes keeps, per provider host and limit group, the fastest recent
// answer of this process's calls (from the request's write to the answer's
// first byte): one group's calls do the same work whatever the app, and
// there are many of them, so even where every app sends one call a second
// the fastest is one of a quiet moment. A call
// answered much slower than that may have been read that much later by the
// provider: its process or its network held it up after the write, which
// the client cannot see otherwise. The provider stamped it no later than
// it answered, so the answer's time over the fastest bounds the delay.
//
// The fastest answer is the minimum over the last one to two periods
// (two buckets), so that it follows a path that got slower.
type answerTimes struct {
	period time.Duration

	mu   sync.Mutex
	keys map[answerKey]*fastest
}

// answerKey is a host and one of its limit groups; group "" stands for
// every group of the host.
type answerKey struct{ host, group string }

type fastest struct {
	since     time.Time     // the current bucket's start
	cur, prev time.Duration // the fastest answer in each bucket; none: -1
}

const maxAnswerKeys = 1_000

func newAnswerTimes(period time.Duration) *answerTimes {
	return &answerTimes{period: period, keys: make(map[answerKey]*fastest)}
}

// slower records a call to host's group written at written and answered
// after took, and answers how much slower than the fastest recent answer
// there it was. A group's first call is compared with the fastest recent
// answer of any group of the host, and the host's first with nothing (0).
func (a *answerTimes) slower(host, group string, written time.Time, took time.Duration) time.Duration {
	took = max(took, 0)
	a.mu.Lock()
	defer a.mu.Unlock()
	f, all := a.get(answerKey{host, group}, written), a.get(answerKey{host, ""}, written)
	best, ok := f.best()
	if !ok {
		best, ok = all.best()
	}
	f.add(took)
	all.add(took)
	if !ok {
		return 0
	}
	return max(0, took-best)
}

// get answers key's record, its buckets moved on to now.
func (a *answerTimes) get(key answerKey, now time.Time) *fastest {
	f := a.keys[key]
	if f == nil {
		if len(a.keys) >= maxAnswerKeys {
			clear(a.keys)
		}
		f = &fastest{since: now, cur: -1, prev: -1}
		a.keys[key] = f
		return f
	}
	if d := now.Sub(f.since); d >= a.period {
		f.prev = f.cur
		if d >= 2*a.period {
			f.prev = -1
		}
		f.cur, f.since = -1, now
	}
	return f
}

// best is the fastest answer in the two buckets (false: none).
func (f *fastest) best() (time.Duration, bool) {
	switch {
	case f.cur < 0 && f.prev < 0:
		return 0, false
	case f.cur < 0:
		return f.prev, true
	case f.prev < 0:
		return f.cur, true
	}
	return min(f.cur, f.prev), true
}

func (f *fastest) add(took time.Duration) {
	if f.cur < 0 || took < f.cur {
		f.cur = took
	}
}
