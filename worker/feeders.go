package worker

import (
	"context"
	"sync"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
)

// feeders names, per app, the one batch task of this process that keeps
// feeding the app's calls to the limiter while the process is busy: it
// goes on sending its batches round after round (see sender.handle), while
// the app's other batch tasks go back to the queue when their calls are
// refused for now. So every app with work keeps its queue of calls filled
// by one worker, whatever other apps have queued: an app whose only tasks
// went back to asynq would wait for the forwarder and a free worker (up
// to seconds with many apps), and its queue would run dry meanwhile.
//
// A campaign with its own rate_limit does not take the role (see
// sender.handle).
//
// It also remembers the app's tasks that went back, so that a feeder that
// ends calls one of them back at once (asynq's forwarder would bring it a
// second late): that task becomes the next feeder.
type feeders struct {
	mu      sync.Mutex
	held    map[string]bool         // app → a task of this process feeds it
	bounced map[string][]bouncedRef // app → its batch tasks that went back, oldest first
}

// bouncedRef names a batch task that went back to its queue for later.
type bouncedRef struct{ queue, id string }

// maxBounced bounds the tasks remembered per app (the oldest go).
const maxBounced = 64

// take makes the caller app's feeder if no other task of this process is;
// the feeder calls give when it ends.
func (f *feeders) take(app string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.held[app] {
		return false
	}
	if f.held == nil {
		f.held = map[string]bool{}
	}
	f.held[app] = true
	return true
}

// takeFor makes a batch task of campaign c its app's feeder if it may be
// and no other task of this process is. A campaign with its own
// rate_limit never feeds its app: it would hold the role while its own
// limit keeps it slow, and the app's other campaigns would wait.
func (f *feeders) takeFor(c *campaigns.Campaign) bool {
	return c.RateLimit <= 0 && f.take(c.App)
}

// give ends app's feeder.
func (f *feeders) give(app string) {
	f.mu.Lock()
	delete(f.held, app)
	f.mu.Unlock()
}

// wentBack remembers that the task running with ctx (one of app's batch
// tasks) goes back to its queue.
func (f *feeders) wentBack(ctx context.Context, app string) {
	id, ok1 := asynq.GetTaskID(ctx)
	queue, ok2 := asynq.GetQueueName(ctx)
	if !ok1 || !ok2 {
		return
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.bounced == nil {
		f.bounced = map[string][]bouncedRef{}
	}
	refs := append(f.bounced[app], bouncedRef{queue, id})
	if len(refs) > maxBounced {
		refs = refs[len(refs)-maxBounced:]
	}
	f.bounced[app] = refs
}

// TaskRunner moves a task waiting for its retry to pending now
// (asynq.Inspector).
type TaskRunner interface {
	RunTask(queue, id string) error
}

// callBack moves the oldest of app's tasks that went back, and still wait
// for their time, to pending (a few tries: a remembered task may have run
// already, or not have gone back yet).
func (f *feeders) callBack(run TaskRunner, app string) {
	for try := 0; try < 4; try++ {
		f.mu.Lock()
		refs := f.bounced[app]
		if len(refs) == 0 {
			f.mu.Unlock()
			return
		}
		ref := refs[0]
		if len(refs) == 1 {
			delete(f.bounced, app)
		} else {
			f.bounced[app] = refs[1:]
		}
		f.mu.Unlock()
		if run.RunTask(ref.queue, ref.id) == nil {
			return
		}
	}
}
