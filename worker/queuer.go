package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
)

// queuer enqueues a campaign's asynq tasks, each under its deterministic
// TaskID, so that enqueueing one twice (a retry, a redelivery, the
// reconciler racing a live task) leaves one task.
type queuer struct {
	client *asynq.Client
	o      QueueOptions
}

// plan enqueues c's plan task, at its start (EarlyStart before) when it is
// delayed.
func (q *queuer) plan(ctx context.Context, c *campaigns.Campaign, startAt time.Time, delayed bool) error {
	payload, _ := json.Marshal(planPayload{ID: c.ID})
	opts := []asynq.Option{
		asynq.TaskID(c.ID + ":plan"), asynq.Queue(QueueFor(c.Priority)),
		asynq.MaxRetry(q.o.MaxRetry), asynq.Retention(q.o.Retention), asynq.Timeout(30 * time.Minute),
	}
	if delayed {
		opts = append(opts, asynq.ProcessAt(startAt.Add(-q.o.EarlyStart)))
	}
	_, err := q.client.EnqueueContext(ctx, asynq.NewTask(TypePlan, payload), opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue plan of %s: %w", c.ID, err)
	}
	return nil
}

// planAgain enqueues c's plan task once more, to run at at (a task
// campaign whose send window closed before its task was created comes
// back to the task queue at the opening); its TaskID names the time, so
// that each opening has one.
func (q *queuer) planAgain(ctx context.Context, c *campaigns.Campaign, at time.Time) error {
	payload, _ := json.Marshal(planPayload{ID: c.ID})
	_, err := q.client.EnqueueContext(ctx, asynq.NewTask(TypePlan, payload),
		asynq.TaskID(fmt.Sprintf("%s:plan@%d", c.ID, at.Unix())), asynq.Queue(QueueFor(c.Priority)),
		asynq.MaxRetry(q.o.MaxRetry), asynq.Retention(q.o.Retention), asynq.Timeout(30*time.Minute),
		asynq.ProcessAt(at.Add(-q.o.EarlyStart)))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue plan of %s at %s: %w", c.ID, at, err)
	}
	return nil
}

// expire enqueues the task that ends a campaign at its expires_at (a
// little early: it waits out the rest), so that it is final within
// moments of it even when its batches wait in asynq's retry set.
func (q *queuer) expire(ctx context.Context, c *campaigns.Campaign) error {
	if c.ExpiresAt == nil {
		return nil
	}
	payload, _ := json.Marshal(planPayload{ID: c.ID})
	_, err := q.client.EnqueueContext(ctx, asynq.NewTask(TypeExpire, payload),
		asynq.TaskID(c.ID+":expire"), asynq.Queue("high"), asynq.MaxRetry(q.o.MaxRetry),
		asynq.ProcessAt(c.ExpiresAt.Add(-q.o.EarlyStart)), asynq.Timeout(time.Minute))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue expiry of %s: %w", c.ID, err)
	}
	return nil
}

// batch enqueues c's batch task n.
func (q *queuer) batch(ctx context.Context, c *campaigns.Campaign, n int) error {
	payload, _ := json.Marshal(batchPayload{ID: c.ID, N: n})
	_, err := q.client.EnqueueContext(ctx, asynq.NewTask(TypeBatch, payload),
		asynq.TaskID(fmt.Sprintf("%s:g:%d", c.ID, n)), asynq.Queue(QueueFor(c.Priority)),
		asynq.MaxRetry(q.o.MaxRetry), asynq.Timeout(5*time.Minute))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue batch %d of %s: %w", n, c.ID, err)
	}
	return nil
}

// batchRange enqueues batch tasks from..to-1 from a few goroutines (asynq
// has no batch enqueue).
func (q *queuer) batchRange(ctx context.Context, c *campaigns.Campaign, from, to int) error {
	parallel := min(8, to-from)
	errs := make(chan error, parallel)
	for w := 0; w < parallel; w++ {
		go func() {
			var err error
			for i := from + w; i < to && err == nil; i += parallel {
				err = q.batch(ctx, c, i)
			}
			errs <- err
		}()
	}
	var first error
	for w := 0; w < parallel; w++ {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	return first
}

// tasksFor is how many batch tasks cover batches batches.
func (q *queuer) tasksFor(batches int64) int64 {
	g := int64(q.o.BatchesPerTask)
	return (batches + g - 1) / g
}
