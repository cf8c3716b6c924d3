package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/store"
)

// planner runs plan tasks: at a campaign's start it reads its targets
// (inline, or an audience object within the process's plan memory), drops
// repeats and stores them as batches, starting the sending with the first
// stored batches. A task campaign is put in its app's task queue instead.
type planner struct {
	*ledger
	q     *queuer
	kinds kindSet
	tasks *Dispatcher
	call  CallContext
	o     PlanOptions
	mem   *semaphore.Weighted // Memory bytes, shared by the plans of this process
}

func newPlanner(l *ledger, q *queuer, kinds kindSet, d *Dispatcher, o Options) *planner {
	return &planner{ledger: l, q: q, kinds: kinds, tasks: d, call: o.CallContext, o: o.Plan, mem: semaphore.NewWeighted(o.Plan.Memory)}
}

func (p *planner) handle(ctx context.Context, t *asynq.Task) error {
	var pl planPayload
	if err := json.Unmarshal(t.Payload(), &pl); err != nil {
		return fmt.Errorf("plan payload: %v: %w", err, asynq.SkipRetry)
	}
	log := p.log.With().Str("campaign", pl.ID).Logger()
	c, err := p.store.Campaign(ctx, pl.ID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("plan %s: %w", pl.ID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	st, err := p.store.Status(ctx, pl.ID)
	if err != nil {
		return err
	}
	if st.Status.Final() {
		return nil
	}
	if st.Status == campaigns.StatePaused {
		return &retryLater{in: 2 * time.Second, reason: "paused"}
	}
	// Start exactly on time: the task was enqueued a little early.
	if st.StartAt != nil {
		wait := st.StartAt.Sub(p.clock.Now())
		if wait > time.Minute {
			return &retryLater{in: wait - p.q.o.EarlyStart, reason: "not started yet"}
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	planStart := p.clock.Now()
	planned, err := p.store.Planned(ctx, pl.ID)
	if err != nil {
		return err
	}
	k, unit, err := p.kinds.of(c)
	if err != nil {
		return p.fail(ctx, c.ID, &campaignFailure{field: "kind", message: err.Error()})
	}
	if k.task != nil { // one provider task, under the task-window caps
		return p.tasks.queue(ctx, c, k)
	}
	st0 := &starter{l: p.ledger, q: p.q, c: c, log: log}
	if planned { // a re-run after a crash: only the start is left
		err := st0.stored(ctx, st.BatchesTotal, true)
		if errors.Is(err, errCampaignOver) {
			return nil
		}
		return err
	}
	if k.prepare != nil {
		if err := k.prepare(p.call(ctx, c, CallHints{Check: p.slotCheck(c)}), c); err != nil {
			var cf *campaignFailure
			if errors.As(err, &cf) {
				return p.fail(ctx, c.ID, cf)
			}
			return err
		}
	}
	st, finished, err := p.plan(ctx, c, k, unit, st0)
	if errors.Is(err, errCampaignOver) {
		return nil
	}
	var cf *campaignFailure
	if errors.As(err, &cf) {
		return p.fail(ctx, c.ID, cf)
	}
	if err != nil {
		return err
	}
	log.Info().Int64("targets", st.TargetsTotal).Int64("batches", st.BatchesTotal).Dur("planned_in", p.clock.Now().Sub(planStart)).Msg("campaign planned")
	if finished { // every batch was sent while planning went on
		p.publishFinal(ctx, st)
		log.Info().Str("status", string(st.Status)).Int64("sent", st.Sent).Int64("failed", st.Failed).Msg("campaign finished")
		return nil
	}
	if !st.Status.Final() {
		p.publishProgress(ctx, st) // the running status with the final totals
	}
	return nil
}

// errCampaignOver stops planning a campaign that ended meanwhile
// (cancelled, expired).
var errCampaignOver = errors.New("campaign is over")

// starter starts a campaign's sending while it is planned: at the first
// stored batches it moves the campaign to running, and as batches are
// stored it enqueues the first BatchWindow batch tasks, then each later
// task whose predecessor (BatchWindow places before) has finished already;
// a predecessor that finishes later enqueues it itself (sender.next). So
// pushes go out while the rest of a big audience is still being read.
type starter struct {
	l        *ledger
	q        *queuer
	c        *campaigns.Campaign
	log      zerolog.Logger
	running  bool
	enqueued int64 // batch tasks 0..enqueued-1 of the first window are enqueued
	checked  int64 // later tasks below checked were enqueued or left to their predecessor
}

// stored is told that batches 0..batches-1 are stored (final: all of them).
func (r *starter) stored(ctx context.Context, batches int64, final bool) error {
	if !r.running {
		st, changed, err := r.l.store.Transition(ctx, r.c.ID, campaigns.StateRunning, campaigns.StateAccepted, campaigns.StateScheduled)
		if err != nil {
			return err
		}
		if st.Status.Final() {
			return errCampaignOver
		}
		if changed {
			r.l.publish(ctx, st)
			r.log.Info().Int64("targets_so_far", st.TargetsTotal).Msg("campaign running")
		}
		r.running = true
	}
	w := int64(r.q.o.BatchWindow)
	tasks := batches / int64(r.q.o.BatchesPerTask) // only whole tasks until the plan is complete
	if final {
		tasks = r.q.tasksFor(batches)
	}
	if upto := min(tasks, w); upto > r.enqueued {
		if err := r.q.batchRange(ctx, r.c, int(r.enqueued), int(upto)); err != nil {
			return err
		}
		r.enqueued = upto
	}
	var ks []int
	for g := max(r.checked, w); g < tasks; g++ {
		ks = append(ks, int(g-w))
	}
	if len(ks) == 0 {
		return nil
	}
	done, err := r.l.store.TasksFinished(ctx, r.c.ID, ks)
	if err != nil {
		return err
	}
	for i, k := range ks {
		if done[i] {
			if err := r.q.batch(ctx, r.c, k+int(w)); err != nil {
				return err
			}
		}
	}
	r.checked = tasks
	return nil
}
