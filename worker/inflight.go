package worker

import (
	"context"
	"sync"
	"time"

	"github.com/campaignd/campaignd/campaigns"
)

// inFlight bounds the provider batches a process has in flight
// (Options.MaxInFlight). A slot is taken before the limiter is asked, so a
// granted send never waits for a connection. A slot is held while its call
// waits for its turn at the limiter (up to the queue's horizon, about 2 s of
// the app's calls), so the slots are shared out between apps, not handed
// out in arrival order: a freed slot goes to a waiter of the best priority,
// among those to the app that holds the fewest slots, and within an app in
// arrival order. An app with work but no slot gets the next one freed,
// whatever other apps have queued (with first-come order, 20 apps whose
// backlogs filled the slots held a newly started app's calls for up to
// 1.8 s: make bench-apps, internal/manyapps).
type inFlight struct {
	mu      sync.Mutex
	free    int
	held    map[string]int                                // app → slots it holds
	waiters [campaigns.Ranks]map[string][]*inFlightWaiter // by priority rank (Priority.Rank), app → waiters in arrival order
	seq     uint64                                        // arrival counter
}

type inFlightWaiter struct {
	ch  chan struct{}
	seq uint64
}

func newInFlight(n int) *inFlight {
	f := &inFlight{free: n, held: map[string]int{}}
	for r := range f.waiters {
		f.waiters[r] = map[string][]*inFlightWaiter{}
	}
	return f
}

// errGaveUp says a batch stopped waiting for a slot because its task will
// come back later anyway.
var errGaveUp = &retryLater{in: time.Second, reason: "another batch of the task must wait; the task comes back later"}

// acquire takes a slot for one of app's calls, waiting by priority and
// share (see inFlight); closing giveUp stops the wait with errGaveUp. The
// slot is given back with release(app).
func (f *inFlight) acquire(ctx context.Context, app string, p campaigns.Priority, giveUp <-chan struct{}) error {
	f.mu.Lock()
	if f.free > 0 {
		f.free--
		f.held[app]++
		f.mu.Unlock()
		return nil
	}
	r := p.Rank()
	f.seq++
	w := &inFlightWaiter{ch: make(chan struct{}, 1), seq: f.seq}
	f.waiters[r][app] = append(f.waiters[r][app], w)
	f.mu.Unlock()
	var stop error
	select {
	case <-w.ch:
		return nil
	case <-giveUp:
		stop = errGaveUp
	case <-ctx.Done():
		stop = ctx.Err()
	}
	f.mu.Lock()
	q := f.waiters[r][app]
	for i, x := range q {
		if x == w {
			if len(q) == 1 {
				delete(f.waiters[r], app)
			} else {
				f.waiters[r][app] = append(q[:i:i], q[i+1:]...)
			}
			f.mu.Unlock()
			return stop
		}
	}
	f.mu.Unlock()
	<-w.ch // handed a slot just now: pass it on
	f.release(app)
	return stop
}

// release gives back a slot of app's, to the best waiter if any.
func (f *inFlight) release(app string) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held[app]--; f.held[app] <= 0 {
		delete(f.held, app)
	}
	for r := range f.waiters {
		if len(f.waiters[r]) == 0 {
			continue
		}
		next, best := "", (*inFlightWaiter)(nil)
		for a, q := range f.waiters[r] {
			if best == nil || f.held[a] < f.held[next] || (f.held[a] == f.held[next] && q[0].seq < best.seq) {
				next, best = a, q[0]
			}
		}
		if q := f.waiters[r][next]; len(q) == 1 {
			delete(f.waiters[r], next)
		} else {
			f.waiters[r][next] = q[1:]
		}
		f.held[next]++
		best.ch <- struct{}{}
		return
	}
	f.free++
}
