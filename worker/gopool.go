package worker

import (
	"sync/atomic"
	"time"
)

// goPool runs functions on goroutines it keeps for a while after each
// one ends, so a batch's send runs on a stack that has already grown to
// fit it. A new goroutine starts with a small stack that doubles several
// times deep inside the send (the limiter's wait, the HTTP call, the
// answer's decoding), and every doubling copies and adjusts each frame
// below it: in a 10M-target run that was 1.3 s of campaignd's 31 s of CPU.
// A goroutine idle for idle ends; the GC may still shrink an idle one's
// stack, which then grows again once.
type goPool struct {
	jobs    chan func() // unbuffered: a send succeeds only to an idle goroutine
	idle    time.Duration
	started atomic.Int64 // goroutines started so far
	live    atomic.Int64 // goroutines running now
	waiting atomic.Int64 // of them, idle ones
}

func newGoPool(idle time.Duration) *goPool {
	return &goPool{jobs: make(chan func()), idle: idle}
}

// run runs f on an idle goroutine of the pool, or on a new one.
func (p *goPool) run(f func()) {
	select {
	case p.jobs <- f:
	default:
		p.started.Add(1)
		p.live.Add(1)
		go p.loop(f)
	}
}

func (p *goPool) loop(f func()) {
	defer p.live.Add(-1)
	f()
	t := time.NewTimer(p.idle)
	defer t.Stop()
	for {
		p.waiting.Add(1)
		select {
		case f := <-p.jobs:
			p.waiting.Add(-1)
			f()
			t.Reset(p.idle)
		case <-t.C:
			p.waiting.Add(-1)
			return
		}
	}
}
