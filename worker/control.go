package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/store"
)

// Control takes campaigns and the commands on them (submit, cancel,
// pause, resume), and ends a campaign at its expires_at. It implements
// intake's Service.
type Control struct {
	*ledger
	q     *queuer
	kinds kindSet
	tasks *Dispatcher // a task campaign's place in its app's queue
	rec   *Reconciler // the repair of a submitted-again campaign
}

// Submit stores a validated, normalized campaign and enqueues its plan task
// (at its start time when startAt is in the future). It returns only once
// both are done. An id already stored yields status "duplicate" and sends
// nothing again — but its work is made sure of first: a plan task never
// enqueued (a crash between the two steps) is enqueued now, and a campaign
// that is not final has its missing or archived tasks queued again at once
// (the reconciler's repair, without waiting for StallAfter).
func (ct *Control) Submit(ctx context.Context, c *campaigns.Campaign, startAt time.Time) (campaigns.Status, error) {
	created, st, err := ct.store.Create(ctx, c, startAt)
	if err != nil {
		return campaigns.Status{}, err
	}
	delayed := startAt.After(ct.clock.Now())
	if err := ct.q.plan(ctx, c, startAt, delayed); err != nil {
		return campaigns.Status{}, err
	}
	if err := ct.q.expire(ctx, c); err != nil {
		return campaigns.Status{}, err
	}
	if !created {
		if !st.Status.Final() {
			if err := ct.rec.repairNow(ctx, c.ID); err != nil {
				return campaigns.Status{}, err
			}
		}
		dup := st
		dup.Status = campaigns.StateDuplicate
		dup.At = ct.clock.Now().UTC()
		ct.publish(ctx, dup)
		return dup, nil
	}
	ct.publish(ctx, st)
	if delayed {
		if st2, changed, err := ct.store.Transition(ctx, c.ID, campaigns.StateScheduled, campaigns.StateAccepted); err == nil && changed {
			ct.publish(ctx, st2)
		}
	}
	return st, nil
}

// Cancel stops every batch of a campaign not yet sent (a task campaign
// still waiting leaves its queue; one created already cannot be recalled).
func (ct *Control) Cancel(ctx context.Context, id string) (campaigns.Status, error) {
	st, err := ct.change(ctx, id, campaigns.StateCancelled)
	if err == nil && st.Status == campaigns.StateCancelled {
		ct.tasks.control(ctx, id, campaigns.StateCancelled)
	}
	return st, err
}

// Pause holds a campaign's batches (or its waiting task) until Resume.
func (ct *Control) Pause(ctx context.Context, id string) (campaigns.Status, error) {
	st, err := ct.change(ctx, id, campaigns.StatePaused, campaigns.StateAccepted, campaigns.StateScheduled, campaigns.StateRunning)
	if err == nil && st.Status == campaigns.StatePaused {
		ct.tasks.control(ctx, id, campaigns.StatePaused)
	}
	return st, err
}

// Resume releases a paused campaign. One whose batches were all recorded
// while it was paused (calls that were on the wire) is finished now.
func (ct *Control) Resume(ctx context.Context, id string) (campaigns.Status, error) {
	if c, err := ct.campaign(ctx, id); err == nil {
		if k := ct.kinds.task(c); k != nil { // back to its place in the task queue
			st, err := ct.change(ctx, id, campaigns.StateScheduled, campaigns.StatePaused)
			if err != nil || st.Status != campaigns.StateScheduled {
				return st, err
			}
			ct.tasks.control(ctx, id, campaigns.StateScheduled)
			// Paused while its task was being created, which the provider
			// then did: the task is recorded, and the campaign is
			// finished now (it is in no queue any more).
			fin, finished, err := ct.store.FinishIfDone(ctx, id)
			if err != nil {
				return st, err
			}
			if finished {
				ct.tasks.forget(ctx, c, k)
				ct.publish(ctx, fin)
				return fin, nil
			}
			return st, nil
		}
	}
	st, err := ct.change(ctx, id, campaigns.StateRunning, campaigns.StatePaused)
	if err != nil || st.Status != campaigns.StateRunning {
		return st, err
	}
	fin, finished, err := ct.store.FinishIfDone(ctx, id)
	if err != nil {
		return st, err
	}
	if finished {
		ct.publishFinal(ctx, fin)
		return fin, nil
	}
	if c, err := ct.campaign(ctx, id); err == nil && c.LocalTime() {
		// Every batch it has left may wait for its zone (they come back
		// at their openings, not now): then it waits, scheduled.
		if all, opens, err := ct.store.Defer(ctx, id, nil, nil); err == nil && all {
			ct.windowClosed(ctx, id, opens)
			if now, err := ct.store.Status(ctx, id); err == nil {
				return now, nil
			}
		}
	}
	return st, nil
}

// handleExpire ends a campaign at its expires_at exactly (the task comes a
// little early and waits): what was not sent is dropped, and the final
// state is published.
func (ct *Control) handleExpire(ctx context.Context, t *asynq.Task) error {
	var p planPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("expire payload: %v: %w", err, asynq.SkipRetry)
	}
	c, err := ct.campaign(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil || c.ExpiresAt == nil {
		return err
	}
	wait := c.ExpiresAt.Sub(ct.clock.Now())
	if wait > time.Minute {
		return &retryLater{in: wait - ct.q.o.EarlyStart, reason: "not expired yet"}
	}
	if err := sleepCtx(ctx, wait); err != nil {
		return err
	}
	st, finished, err := ct.store.Expire(ctx, p.ID)
	if err != nil {
		return err
	}
	ct.states.forget(p.ID)
	if finished {
		ct.publishFinal(ctx, st)
		ct.log.Info().Str("campaign", p.ID).Str("status", string(st.Status)).Int64("sent", st.Sent).Int64("dropped", st.Dropped).Msg("campaign expired")
	}
	return nil
}
