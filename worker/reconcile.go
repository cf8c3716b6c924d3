package worker

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/store"
)

// The reconciler repairs broken chains. A campaign's batch tasks enqueue
// their successors; a task that asynq archived (a SkipRetry, retries spent
// on store errors) or that was deleted or archived from the UI never does,
// and its campaign would stay running forever. Every process runs the
// reconciler; a lock in Redis lets one of them do each round, and every
// repair is idempotent (deterministic TaskIDs, batches recorded once), so
// a race with a live task sends nothing twice.
//
// A round looks at the campaigns that are accepted, scheduled or running
// (from the campaign index) and, for each that has made no progress for
// StallAfter (its state, planned flag and recorded batches unchanged, by
// any process's reading), makes sure its missing work is queued:
//   - not yet planned: its plan task;
//   - planned: every batch task whose batches are not all recorded and
//     whose predecessor (BatchWindow places before) is done, which that
//     predecessor would have enqueued;
//   - every batch recorded: it is finished with its final state.
//
// An archived task is deleted and enqueued afresh (with its retries
// back); after maxRepairs repairs of the same task its unrecorded batches
// are recorded as failed, so that the campaign ends.
//
// The same repair runs at once, without the stall wait, when an id that is
// stored and not final is submitted again (Submit, before it answers
// duplicate). On a campaign that is sending, it may enqueue a successor a
// moment before its predecessor does (the predecessor's enqueue is then
// refused by the TaskID), or a task that ended just after its batches
// were read (it finds them recorded and sends nothing).

const maxRepairs = 3

// Reconciler repairs broken chains (see above).
type Reconciler struct {
	*ledger
	q     *queuer
	kinds kindSet
	insp  *asynq.Inspector // nil: the reconciler does nothing
	o     ReconcileOptions
}

// Run runs reconcile rounds until ctx ends; it returns nil then.
func (s *Reconciler) Run(ctx context.Context) error {
	if s.insp == nil {
		return nil
	}
	every := max(s.o.StallAfter/3, 100*time.Millisecond)
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
		ok, err := s.store.Lock(ctx, "reconcile", every*9/10)
		if err != nil || !ok {
			continue
		}
		if err := s.Reconcile(ctx); err != nil && ctx.Err() == nil {
			s.log.Warn().Err(err).Msg("reconcile round")
		}
	}
}

// Reconcile runs one round.
func (s *Reconciler) Reconcile(ctx context.Context) error {
	keep := map[string]bool{}
	for _, state := range []campaigns.State{campaigns.StateAccepted, campaigns.StateScheduled, campaigns.StateRunning} {
		ids, err := s.store.InState(ctx, state, 10_000)
		if err != nil {
			return err
		}
		for _, id := range ids {
			keep[id] = true
			if err := s.reconcileOne(ctx, id); err != nil {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				s.log.Warn().Err(err).Str("campaign", id).Msg("reconcile")
			}
		}
	}
	return s.store.ForgetReconcile(ctx, keep)
}

func (s *Reconciler) reconcileOne(ctx context.Context, id string) error {
	p, ok, err := s.repairable(ctx, id)
	if err != nil || !ok {
		return err
	}
	fp := fmt.Sprintf("%s/%t/%d", p.State, p.Planned, p.BatchesDone)
	since, err := s.store.Unchanged(ctx, id, fp)
	if err != nil {
		return err
	}
	if s.clock.Now().Sub(since) < s.o.StallAfter {
		return nil
	}
	return s.repair(ctx, id, p, "stalled")
}

// repairNow runs a campaign's repair at once, whatever its progress: a
// redelivered or re-published id of a campaign that is not final makes
// sure its work is queued before it is answered duplicate. When the work
// is queued or running, nothing is enqueued (a live task is left alone,
// and TaskIDs refuse a second copy of it).
func (s *Reconciler) repairNow(ctx context.Context, id string) error {
	if s.insp == nil {
		return nil
	}
	p, ok, err := s.repairable(ctx, id)
	if err != nil || !ok || p.State.Final() {
		return err
	}
	return s.repair(ctx, id, p, "duplicate submit")
}

// repairable reads a campaign's progress; ok is false for an unknown
// campaign and for the kinds whose work lives in the task queue.
func (s *Reconciler) repairable(ctx context.Context, id string) (store.Progress, bool, error) {
	p, err := s.store.Progress(ctx, id)
	if errors.Is(err, store.ErrNotFound) {
		return p, false, nil
	}
	if err != nil {
		return p, false, err
	}
	if k, ok := s.kinds.m[p.Kind]; !ok || k.task != nil {
		return p, false, nil // label pushes and broadcasts live in the task queue
	}
	return p, true, nil
}

// repair makes sure a campaign's missing work is queued (see above): its
// plan task while it is not planned; once planned, every batch task with
// batches left whose predecessor is done; and a campaign whose batches are
// all recorded is finished. why names the occasion in the log.
func (s *Reconciler) repair(ctx context.Context, id string, p store.Progress, why string) error {
	c, err := s.campaign(ctx, id)
	if err != nil {
		return err
	}
	queue := QueueFor(c.Priority)
	if !p.Planned {
		now := s.clock.Now()
		return s.ensureTask(ctx, c, queue, c.ID+":plan", why, func() error {
			return s.q.plan(ctx, c, p.StartAt, p.StartAt.After(now))
		}, nil)
	}
	if p.BatchesDone >= p.BatchesTotal {
		st, finished, err := s.store.FinishIfDone(ctx, id)
		if err != nil {
			return err
		}
		if finished {
			s.publishFinal(ctx, st)
			s.log.Warn().Str("campaign", id).Str("status", string(st.Status)).Str("why", why).Msg("repair: campaign finished (all its batches were recorded)")
		}
		return nil
	}
	bits, err := s.store.DoneBatches(ctx, id)
	if err != nil {
		return err
	}
	g := int64(s.q.o.BatchesPerTask)
	taskDone := func(k int64) bool {
		for n := k * g; n < min((k+1)*g, p.BatchesTotal); n++ {
			if !bits.Has(n) {
				return false
			}
		}
		return true
	}
	w := int64(s.q.o.BatchWindow)
	for k := range s.q.tasksFor(p.BatchesTotal) {
		if taskDone(k) || (k >= w && !taskDone(k-w)) {
			continue
		}
		err := s.ensureTask(ctx, c, queue, fmt.Sprintf("%s:g:%d", c.ID, k), why, func() error {
			return s.q.batch(ctx, c, int(k))
		}, func(lastErr string) error { return s.failGroup(ctx, c, int(k), lastErr) })
		if err != nil {
			return err
		}
	}
	return nil
}

// ensureTask enqueues a task that is missing (deleted, or never enqueued)
// and re-enqueues one that is archived; a live task is left alone.
// giveUp (nil: never) ends the work of a task repaired maxRepairs times.
func (s *Reconciler) ensureTask(ctx context.Context, c *campaigns.Campaign, queue, taskID, why string, enqueue func() error, giveUp func(lastErr string) error) error {
	log := s.log.With().Str("campaign", c.ID).Str("task", taskID).Str("why", why).Logger()
	info, err := s.insp.GetTaskInfo(queue, taskID)
	switch {
	case errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound):
	case err != nil:
		return fmt.Errorf("reconcile: task %s: %w", taskID, err)
	case info.State != asynq.TaskStateArchived:
		return nil // live (or completed and kept): its handler carries on
	}
	lastErr := "deleted"
	if info != nil {
		lastErr = info.LastErr
	}
	n, err := s.store.Repairs(ctx, taskID)
	if err != nil {
		return err
	}
	if n > maxRepairs && giveUp != nil {
		log.Error().Str("last_error", lastErr).Msg("reconcile: task broke again after repairs; its batches are recorded as failed")
		if info != nil {
			_ = s.insp.DeleteTask(queue, taskID)
		}
		return giveUp(lastErr)
	}
	if info != nil {
		if err := s.insp.DeleteTask(queue, taskID); err != nil && !errors.Is(err, asynq.ErrTaskNotFound) {
			return fmt.Errorf("reconcile: delete archived %s: %w", taskID, err)
		}
	}
	log.Warn().Str("last_error", lastErr).Int64("repair", n).Msg("repair: a missing task of a campaign that is not final is enqueued again")
	s.o.Counters.TaskRepaired()
	return enqueue()
}

// failGroup records batch task k's unrecorded batches as failed.
func (s *Reconciler) failGroup(ctx context.Context, c *campaigns.Campaign, k int, lastErr string) error {
	g := s.q.o.BatchesPerTask
	r, err := s.store.BatchInfos(ctx, c.ID, k*g, g)
	if err != nil {
		return err
	}
	reason := "its batch task broke " + strconv.Itoa(maxRepairs+1) + " times: " + lastErr
	for i, b := range r.Batches {
		n := k*g + i
		if b.Done || int64(n) >= r.Status.BatchesTotal {
			continue
		}
		targets := b.Targets
		if b.Missing {
			targets = []string{fmt.Sprintf("(batch %d: its targets were lost)", n)}
		}
		failures := make([]campaigns.Failure, len(targets))
		for j, id := range targets {
			failures[j] = campaigns.Failure{Target: id, Reason: reason}
		}
		if _, err := s.record(ctx, c, n, 0, failures, 0); err != nil {
			return err
		}
	}
	return nil
}
