package worker

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/provider"
)

// retryLater is a handler result that sends the task back to its queue after
// a delay without spending its retry budget.
type retryLater struct {
	in     time.Duration
	reason string
	// opens, for a call refused because its send window is closed, is
	// when it opens: a task whose window opens within windowLead waits
	// for it in the process (asynq would bring it back up to a second
	// late), and one whose window opens later comes back windowLead
	// early to do so.
	opens time.Time
	// zoned says the window closed is the zone's of a local-time batch
	// (send_window.local_time): the batch waits for it apart, and the
	// campaign's other zones go on.
	zoned bool
}

// windowLead is how long before its send window opens a batch task comes
// back, and how long a task waits in the process for an opening.
const windowLead = 1500 * time.Millisecond

func (e *retryLater) Error() string { return fmt.Sprintf("retry in %s: %s", e.in, e.reason) }

// asRetryLater recognises every "not now" answer: our own, the limiter's,
// and the provider's rate-limit answers.
func asRetryLater(err error) (*retryLater, bool) {
	var rl *retryLater
	if errors.As(err, &rl) {
		return rl, true
	}
	var ra interface{ RetryAfter() time.Duration }
	if errors.As(err, &ra) {
		return &retryLater{in: max(ra.RetryAfter(), 50*time.Millisecond), reason: err.Error()}, true
	}
	if d, ok := provider.IsRateLimited(err); ok {
		if d <= 0 {
			d = time.Second
		}
		return &retryLater{in: d, reason: err.Error()}, true
	}
	return nil, false
}

// IsFailure tells asynq which errors spend a retry: not the "not now" ones.
func IsFailure(err error) bool {
	_, later := asRetryLater(err)
	return !later
}

// RetryDelay waits as long as a "not now" answer asks, retries a failing
// provider every second for a while, and backs off exponentially (capped
// at 1 minute) after other failures.
func RetryDelay(n int, err error, t *asynq.Task) time.Duration {
	if rl, ok := asRetryLater(err); ok {
		return rl.in
	}
	if k, ok := provider.ClassOf(err); ok && k == provider.ClassTransient {
		// The provider is failing (5xx, timeouts, dropped connections):
		// its first FlatRetries retries come a second apart (each call
		// still through the limiter), so that sending resumes within
		// about a second of its recovery; then they back off.
		if n < FlatRetries {
			return time.Second
		}
		n -= FlatRetries
	}
	d := time.Duration(1<<min(n, 6)) * time.Second
	return min(d, time.Minute)
}

// FlatRetries is how many retries of a batch the provider is failing for
// come a second apart (about half a minute of outage) before they back
// off; DefaultMaxRetry leaves 10 backed-off retries (about 5 more minutes)
// after them before the batch's targets are recorded as failed.
const FlatRetries = 30

// DefaultMaxRetry is Options.MaxRetry's default.
const DefaultMaxRetry = FlatRetries + 10

func sleepCtx(ctx context.Context, d time.Duration) error {
	if d <= 0 {
		return nil
	}
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	}
}
