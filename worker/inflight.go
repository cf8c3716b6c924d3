package worker

import (
	"context"
	"sync"
	"time"

	"github.com/campaignd/campaignd/campaigns"
)

// inFlight bounds the provider batches a process has in flight
// (Options.MaxInFlight). A slot is taken before the limiter is asked, so a
// granted send never waits for a connection; waiters are served by
// campaign priority, then in arrival order, so that a high campaign's
// batches never queue behind a big normal one's here either.
type inFlight struct {
	mu      sync.Mutex
	free    int
	waiters [3][]chan struct{} // by priority rank: high, normal, low
}

func newInFlight(n int) *inFlight { return &inFlight{free: n} }

func rank(p campaigns.Priority) int {
	switch p {
	case campaigns.PriorityHigh:
		return 0
	case campaigns.PriorityLow:
		return 2
	}
	return 1
}

// errGaveUp says a batch stopped waiting for a slot because its task will
// come back later anyway.
var errGaveUp = &retryLater{in: time.Second, reason: "another batch of the task must wait; the task comes back later"}

// acquire takes a slot, waiting by priority; closing giveUp stops the wait
// with errGaveUp.
func (f *inFlight) acquire(ctx context.Context, p campaigns.Priority, giveUp <-chan struct{}) error {
	f.mu.Lock()
	r := rank(p)
	if f.free > 0 {
		f.free--
		f.mu.Unlock()
		return nil
	}
	ch := make(chan struct{}, 1)
	f.waiters[r] = append(f.waiters[r], ch)
	f.mu.Unlock()
	var stop error
	select {
	case <-ch:
		return nil
	case <-giveUp:
		stop = errGaveUp
	case <-ctx.Done():
		stop = ctx.Err()
	}
	f.mu.Lock()
	for i, w := range f.waiters[r] {
		if w == ch {
			f.waiters[r] = append(f.waiters[r][:i], f.waiters[r][i+1:]...)
			f.mu.Unlock()
			return stop
		}
	}
	f.mu.Unlock()
	<-ch // handed a slot just now: pass it on
	f.release()
	return stop
}

// release frees a slot, to the best waiter if any.
func (f *inFlight) release() {
	f.mu.Lock()
	defer f.mu.Unlock()
	for r := range f.waiters {
		if len(f.waiters[r]) > 0 {
			ch := f.waiters[r][0]
			f.waiters[r] = f.waiters[r][1:]
			ch <- struct{}{}
			return
		}
	}
	f.free++
}
