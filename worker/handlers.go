package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/store"
)

// Mux routes the task types to their handlers.
func (s *Service) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypePlan, s.handlePlan)
	mux.HandleFunc(TypeBatch, s.handleBatch)
	mux.HandleFunc(TypeExpire, s.handleExpire)
	mux.HandleFunc(TypeTask, s.handleTaskMarker)
	mux.Use(s.outlastOutage)
	return mux
}

// outlastOutage holds a failed task's answer to asynq while Redis does not
// answer (for up to RecordPatience, inside the task's lease). asynq
// v0.26 writes a failed task's retry with a context that has ended by the
// time its syncer tries again, so a task that fails while Redis is down
// stays active until its lease is recovered, a minute or two later; held
// here, the retry is written as soon as Redis is back.
func (s *Service) outlastOutage(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := next.ProcessTask(ctx, t)
		if err != nil {
			s.awaitStore(ctx)
		}
		return err
	})
}

// awaitStore returns once Redis answers, ctx ends or RecordPatience has
// passed. After an outage it also waits for asynq's own connection to
// answer, and a second more: after a Sentinel failover, the sentinels
// that asynq's pools ask may name the new master a moment later than the
// one this process's client asked.
func (s *Service) awaitStore(ctx context.Context) {
	giveUp := s.o.Clock.Now().Add(s.o.RecordPatience)
	down := false
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := s.o.Store.Ping(pctx)
		cancel()
		if err == nil && down && s.o.Client != nil {
			err = s.o.Client.Ping()
			if err == nil {
				_ = sleepCtx(ctx, time.Second)
			}
		}
		if err == nil || ctx.Err() != nil || s.o.Clock.Now().After(giveUp) {
			return
		}
		down = true
		if sleepCtx(ctx, wait) != nil {
			return
		}
	}
}

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

func (s *Service) handlePlan(ctx context.Context, t *asynq.Task) error {
	var p planPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("plan payload: %v: %w", err, asynq.SkipRetry)
	}
	log := s.log.With().Str("campaign", p.ID).Logger()
	c, err := s.o.Store.Campaign(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("plan %s: %w", p.ID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	st, err := s.o.Store.Status(ctx, p.ID)
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
		wait := st.StartAt.Sub(s.o.Clock.Now())
		if wait > time.Minute {
			return &retryLater{in: wait - s.o.EarlyStart, reason: "not started yet"}
		}
		if err := sleepCtx(ctx, wait); err != nil {
			return err
		}
	}
	planStart := s.o.Clock.Now()
	planned, err := s.o.Store.Planned(ctx, p.ID)
	if err != nil {
		return err
	}
	k, unit, err := s.kindOf(c)
	if err != nil {
		return s.fail(ctx, c.ID, &campaignFailure{field: "kind", message: err.Error()})
	}
	if k.task != nil { // one provider task, under the task-window caps
		return s.queueTask(ctx, c, k)
	}
	st0 := &starter{s: s, c: c, log: log}
	if planned { // a re-run after a crash: only the start is left
		err := st0.stored(ctx, st.BatchesTotal, true)
		if errors.Is(err, errCampaignOver) {
			return nil
		}
		return err
	}
	if k.prepare != nil {
		if err := k.prepare(s.o.CallContext(ctx, c, CallHints{Check: s.slotCheck(c)}), c); err != nil {
			var cf *campaignFailure
			if errors.As(err, &cf) {
				return s.fail(ctx, c.ID, cf)
			}
			return err
		}
	}
	st, finished, err := s.plan(ctx, c, k, unit, st0)
	if errors.Is(err, errCampaignOver) {
		return nil
	}
	var cf *campaignFailure
	if errors.As(err, &cf) {
		return s.fail(ctx, c.ID, cf)
	}
	if err != nil {
		return err
	}
	log.Info().Int64("targets", st.TargetsTotal).Int64("batches", st.BatchesTotal).Dur("planned_in", s.o.Clock.Now().Sub(planStart)).Msg("campaign planned")
	if finished { // every batch was sent while planning went on
		s.throttle.finish(c.ID)
		s.publish(ctx, st)
		log.Info().Str("status", string(st.Status)).Int64("sent", st.Sent).Int64("failed", st.Failed).Msg("campaign finished")
		return nil
	}
	if !st.Status.Final() {
		s.publishProgress(ctx, st) // the running status with the final totals
	}
	return nil
}

// handleExpire ends a campaign at its expires_at exactly (the task comes a
// little early and waits): what was not sent is dropped, and the final
// state is published.
func (s *Service) handleExpire(ctx context.Context, t *asynq.Task) error {
	var p planPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("expire payload: %v: %w", err, asynq.SkipRetry)
	}
	c, err := s.campaign(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) {
		return nil
	}
	if err != nil || c.ExpiresAt == nil {
		return err
	}
	wait := c.ExpiresAt.Sub(s.o.Clock.Now())
	if wait > time.Minute {
		return &retryLater{in: wait - s.o.EarlyStart, reason: "not expired yet"}
	}
	if err := sleepCtx(ctx, wait); err != nil {
		return err
	}
	st, finished, err := s.o.Store.Expire(ctx, p.ID)
	if err != nil {
		return err
	}
	s.states.forget(p.ID)
	if finished {
		s.throttle.finish(p.ID)
		s.publish(ctx, st)
		s.log.Info().Str("campaign", p.ID).Str("status", string(st.Status)).Int64("sent", st.Sent).Int64("dropped", st.Dropped).Msg("campaign expired")
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
// a predecessor that finishes later enqueues it itself (see next). So
// pushes go out while the rest of a big audience is still being read.
type starter struct {
	s        *Service
	c        *campaigns.Campaign
	log      zerolog.Logger
	running  bool
	enqueued int64 // batch tasks 0..enqueued-1 of the first window are enqueued
	checked  int64 // later tasks below checked were enqueued or left to their predecessor
}

// stored is told that batches 0..batches-1 are stored (final: all of them).
func (r *starter) stored(ctx context.Context, batches int64, final bool) error {
	if !r.running {
		st, changed, err := r.s.o.Store.Transition(ctx, r.c.ID, campaigns.StateRunning, campaigns.StateAccepted, campaigns.StateScheduled)
		if err != nil {
			return err
		}
		if st.Status.Final() {
			return errCampaignOver
		}
		if changed {
			r.s.publish(ctx, st)
			r.log.Info().Int64("targets_so_far", st.TargetsTotal).Msg("campaign running")
		}
		r.running = true
	}
	w := int64(r.s.o.BatchWindow)
	tasks := batches / int64(r.s.o.BatchesPerTask) // only whole tasks until the plan is complete
	if final {
		tasks = r.s.tasksFor(batches)
	}
	if upto := min(tasks, w); upto > r.enqueued {
		if err := r.s.enqueueRange(ctx, r.c, int(r.enqueued), int(upto)); err != nil {
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
	done, err := r.s.o.Store.TasksFinished(ctx, r.c.ID, ks)
	if err != nil {
		return err
	}
	for i, k := range ks {
		if done[i] {
			if err := r.s.enqueueBatch(ctx, r.c, k+int(w)); err != nil {
				return err
			}
		}
	}
	r.checked = tasks
	return nil
}

// enqueueRange enqueues batch tasks from..to-1 from a few goroutines (asynq
// has no batch enqueue).
func (s *Service) enqueueRange(ctx context.Context, c *campaigns.Campaign, from, to int) error {
	parallel := min(8, to-from)
	errs := make(chan error, parallel)
	for w := 0; w < parallel; w++ {
		go func() {
			var err error
			for i := from + w; i < to && err == nil; i += parallel {
				err = s.enqueueBatch(ctx, c, i)
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

// handleBatch runs one batch task: a group of BatchesPerTask consecutive batches
// of a campaign, read in one round trip, sent concurrently (each through the
// limiter), each recorded once. A retry of the task skips the batches
// already recorded.
func (s *Service) handleBatch(ctx context.Context, t *asynq.Task) error {
	var p batchPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("batch payload: %v: %w", err, asynq.SkipRetry)
	}
	s.batches.Add(1)
	defer s.batches.Add(-1)
	g := s.o.BatchesPerTask
	first := p.N * g
	buf := s.targetBufs.Get().(*[]string)
	r, err := s.o.Store.BatchInfosInto(ctx, p.ID, first, g, *buf)
	defer func() { // every send below is over (wg.Wait): nothing holds the targets
		if cap(r.Storage) > 0 && cap(r.Storage) <= maxPooledTargets {
			clear(r.Storage)
			*buf = r.Storage[:0]
		}
		s.targetBufs.Put(buf)
	}()
	if errors.Is(err, store.ErrNotFound) {
		return fmt.Errorf("batch task %d of %s: %w", p.N, p.ID, asynq.SkipRetry)
	}
	if err != nil {
		return err
	}
	st := r.Status
	switch {
	case st.Status.Final():
		return nil // cancelled, or already finished
	case st.Status == campaigns.StatePaused:
		return &retryLater{in: 2 * time.Second, reason: "campaign paused"}
	}
	c, err := s.campaign(ctx, p.ID)
	if err != nil {
		return err
	}
	errs := make([]error, g)
	sts := make([]campaigns.Status, g)
	todo := make([]bool, g)
	var unplanned bool
	for i, b := range r.Batches {
		n := first + i
		switch {
		case b.Done || (r.Planned && int64(n) >= st.BatchesTotal):
			continue // recorded already, or past the last batch
		case b.Missing && !r.Planned:
			unplanned = true // sending overtook planning: come back for it
			continue
		case b.Missing:
			errs[i] = fmt.Errorf("batch %d of %s: not stored: %w", n, p.ID, asynq.SkipRetry)
			continue
		}
		todo[i] = true
	}
	// A round sends every batch still to send. Calls its app's queue
	// refused for now (about 2 s of that app's calls wait already) are
	// tried again in the next round, once this round's calls went out:
	// the task goes on feeding its app rather than coming back through
	// asynq after the app's queue ran dry (asynq forwards it up to a
	// second late: make bench-apps saw each campaign's last calls come
	// 0.7–1.4 s late). A round that sent nothing ends it. The app's feeder
	// (one task per app and process, see feeders) goes on until its
	// batches are sent; another task stops after maxSendRounds, or at
	// once in a busy process (more than half its workers handle batch
	// tasks), and goes back to the queue, where other apps' tasks wait
	// (100 apps on 50 workers: the last apps' first calls came 24 s late
	// when every task went on).
	feeder := false
	defer func() {
		if feeder {
			s.log.Debug().Str("campaign", c.ID).Int("task", p.N).Msg("batch task: feeder ends")
			s.feeders.give(c.App)
			if s.o.Inspector != nil {
				s.feeders.callBack(s.o.Inspector, c.App)
			}
		}
	}()
	for round := 0; ; round++ {
		// The app's feeder may have ended meanwhile: this task takes over
		// (unless its campaign has its own rate_limit).
		if !feeder && s.feeders.takeFor(c) {
			feeder = true
			s.log.Debug().Str("campaign", c.ID).Int("task", p.N).Int("round", round).Msg("batch task: feeds its app")
		}
		if round > 0 && !feeder && (round >= maxSendRounds || int(s.batches.Load()) > s.o.Concurrency/2) {
			break
		}
		// When one batch must come back later, the others stop waiting
		// for an in-flight slot.
		giveUp := make(chan struct{})
		var giveUpOnce sync.Once
		hints := CallHints{Check: s.slotCheck(c), GiveUp: giveUp}
		var wg sync.WaitGroup
		for i, b := range r.Batches {
			if !todo[i] {
				continue
			}
			n := first + i
			wg.Add(1)
			s.senders.run(func() {
				defer wg.Done()
				sts[i], errs[i] = s.sendBatch(ctx, c, n, b.Targets, hints)
				if _, later := asRetryLater(errs[i]); later {
					giveUpOnce.Do(func() { close(giveUp) })
				}
			})
		}
		wg.Wait()
		sent, again := false, false
		for i := range todo {
			if !todo[i] {
				continue
			}
			if _, later := asRetryLater(errs[i]); later {
				again = true
				continue
			}
			todo[i] = false
			sent = sent || errs[i] == nil
		}
		s.log.Debug().Str("campaign", c.ID).Int("task", p.N).Int("round", round).Bool("sent", sent).Bool("again", again).Msg("batch task: round over")
		if !again || !sent || ctx.Err() != nil {
			break
		}
	}
	var later error
	over := false
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, errCampaignOver) {
			over = true
			continue
		}
		if _, ok := asRetryLater(err); ok {
			later = err
			continue
		}
		return err // a real failure: spend a retry
	}
	if over {
		return nil // the campaign ended while its batches waited
	}
	if later != nil {
		s.log.Debug().Str("campaign", c.ID).Int("task", p.N).Err(later).Msg("batch task: goes back")
		s.feeders.wentBack(ctx, c.App)
		return later
	}
	if unplanned {
		return &retryLater{in: 200 * time.Millisecond, reason: "batches not planned yet"}
	}
	for _, done := range sts {
		if done.Status.Final() {
			return nil
		}
	}
	return s.next(ctx, c, p.N, r)
}

// maxSendRounds bounds the rounds of one batch task (see handleBatch).
const maxSendRounds = 3

// sendBatch sends batch n of campaign c (unless the campaign has expired)
// and records its outcome.
func (s *Service) sendBatch(ctx context.Context, c *campaigns.Campaign, n int, targets []string, hints CallHints) (campaigns.Status, error) {
	if c.ExpiresAt != nil && !s.o.Clock.Now().Before(*c.ExpiresAt) {
		return s.record(ctx, c, n, 0, nil, int64(len(targets)))
	}

	if err := s.sends.acquire(ctx, c.App, c.Priority, hints.GiveUp); err != nil {
		return campaigns.Status{}, fmt.Errorf("batch %d of %s: %w", n, c.ID, err)
	}
	buf := s.results.Get().(*[]TargetResult)
	results, err := s.send(s.o.CallContext(ctx, c, hints), c, targets, (*buf)[:0])
	defer func() { // tally copies what it keeps
		if cap(results) > 0 && cap(results) <= maxPooledResults {
			clear(results)
			*buf = results[:0] // the storage send used, for the next batch
		}
		s.results.Put(buf)
	}()
	s.sends.release(c.App)
	switch {
	case errors.Is(err, errExpired): // its slot came after expires_at: nothing was sent
		return s.record(ctx, c, n, 0, nil, int64(len(targets)))
	case errors.Is(err, errCampaignOver): // cancelled while it waited
		return campaigns.Status{}, err
	}
	if err != nil {
		if _, later := asRetryLater(err); later {
			return campaigns.Status{}, err
		}
		retried, _ := asynq.GetRetryCount(ctx)
		maxRetry, _ := asynq.GetMaxRetry(ctx)
		if !isPermanent(err) && retried < maxRetry {
			return campaigns.Status{}, err // asynq retries with backoff
		}
		reason := err.Error()
		failures := make([]campaigns.Failure, len(targets))
		for i, id := range targets {
			failures[i] = campaigns.Failure{Target: id, Reason: reason}
		}
		s.log.Warn().Err(err).Str("campaign", c.ID).Int("batch", n).Msg("batch failed; targets recorded as failed")
		return s.record(ctx, c, n, 0, failures, 0)
	}
	sent, failures := tally(targets, results)
	return s.record(ctx, c, n, sent, failures, 0)
}

// maxPooledResults is the largest results buffer kept for the next batch,
// maxPooledTargets the largest buffer of a task's targets kept for the next
// task.
const (
	maxPooledResults = 1000
	maxPooledTargets = 1 << 14
)

// tally counts a batch's sent targets and lists its failures: those the
// provider refused, and those it gave no result for. A result for an id
// not in the batch, or a second one for the same id, counts for nothing.
func tally(targets []string, results []TargetResult) (sent int64, failures []campaigns.Failure) {
	count := func(r TargetResult) {
		if r.OK {
			sent++
			return
		}
		reason := r.Reason
		if reason == "" {
			reason = "refused by the provider"
		}
		failures = append(failures, campaigns.Failure{Target: r.ID, Reason: reason})
	}
	// Results usually come one per target, in order: then no set of the
	// targets is needed.
	inOrder := len(results) == len(targets)
	for i := 0; inOrder && i < len(targets); i++ {
		inOrder = results[i].ID == targets[i]
	}
	if inOrder {
		for _, r := range results {
			count(r)
		}
		return sent, failures
	}
	pending := make(map[string]bool, len(targets))
	for _, id := range targets {
		pending[id] = true
	}
	for _, r := range results {
		if pending[r.ID] {
			delete(pending, r.ID)
			count(r)
		}
	}
	for _, id := range targets {
		if pending[id] {
			delete(pending, id)
			failures = append(failures, campaigns.Failure{Target: id, Reason: "no result from the provider"})
		}
	}
	return sent, failures
}

// send sends one unit of campaign c the way its kind does.
func (s *Service) send(ctx context.Context, c *campaigns.Campaign, targets []string, buf []TargetResult) ([]TargetResult, error) {
	k, _, err := s.kindOf(c)
	if err != nil {
		return nil, &provider.Error{Provider: "campaignd", Op: string(c.Kind), Class: provider.ClassPermanent, Description: err.Error()}
	}
	return k.send(ctx, c, targets, buf)
}

// fail ends a campaign as failed before anything was sent, with the reason
// on its status.
func (s *Service) fail(ctx context.Context, id string, cf *campaignFailure) error {
	st, changed, err := s.o.Store.Fail(ctx, id, campaigns.FieldErrors{{Field: cf.field, Message: cf.message}})
	if err != nil {
		return err
	}
	if changed {
		s.throttle.finish(id)
		s.publish(ctx, st)
		s.log.Warn().Str("campaign", id).Str("field", cf.field).Str("reason", cf.message).Msg("campaign failed")
	}
	return nil
}

// record stores a batch's outcome (once) and publishes progress.
func (s *Service) record(ctx context.Context, c *campaigns.Campaign, n int, sent int64, failures []campaigns.Failure, dropped int64) (campaigns.Status, error) {
	// Record even if the task's context ends now: the provider has
	// answered. A Redis that does not answer (a restart, a failover) is
	// waited for, within the task's lease, rather than failing the task:
	// its retry would send the batch again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.o.RecordPatience+10*time.Second)
	defer cancel()
	st, first, finished, err := s.recordPatiently(rctx, c.ID, n, sent, failures, dropped)
	if err != nil {
		return st, err
	}
	switch {
	case finished:
		s.throttle.finish(c.ID)
		s.publish(rctx, st)
		s.log.Info().Str("campaign", c.ID).Str("status", string(st.Status)).Int64("sent", st.Sent).Int64("failed", st.Failed).Msg("campaign finished")
	case first && s.throttle.allow(c.ID, s.o.Clock.Now()):
		s.publishProgress(rctx, st)
	}
	return st, nil
}

// recordPatiently records a batch, trying again while the store fails for
// up to RecordPatience (an unknown campaign is not retried).
func (s *Service) recordPatiently(ctx context.Context, id string, n int, sent int64, failures []campaigns.Failure, dropped int64) (campaigns.Status, bool, bool, error) {
	var giveUp time.Time
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, first, finished, err := s.o.Store.RecordBatch(actx, id, n, sent, failures, dropped)
		cancel()
		if err == nil || errors.Is(err, store.ErrNotFound) {
			if attempt > 0 {
				s.log.Info().Str("campaign", id).Int("batch", n).Int("attempts", attempt+1).Msg("batch recorded once the store answered again")
			}
			return st, first, finished, err
		}
		now := s.o.Clock.Now()
		if giveUp.IsZero() {
			giveUp = now.Add(s.o.RecordPatience)
			s.log.Warn().Err(err).Str("campaign", id).Int("batch", n).Dur("patience", s.o.RecordPatience).Msg("batch sent but not recorded yet: the store does not answer; trying again")
		}
		if now.After(giveUp) || ctx.Err() != nil {
			return st, false, false, fmt.Errorf("record batch %d of %s (sent, not recorded: it may be sent again): %w", n, id, err)
		}
		select {
		case <-ctx.Done():
		case <-time.After(wait):
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
}

// publishProgress publishes a progress event so that it can never be the
// last word after the final one: batches record concurrently (in this
// process and others), and a progress event could otherwise be published
// just after the event of the batch that finished the campaign. So after
// publishing, the stored state is read again, and if the campaign has ended
// meanwhile its final status is published once more.
func (s *Service) publishProgress(ctx context.Context, st campaigns.Status) {
	s.publish(ctx, st)
	now, found, err := s.o.Store.Lookup(ctx, st.ID)
	if err == nil && found && now.Status.Final() {
		s.publish(ctx, now)
	}
}

// next enqueues the batch task BatchWindow places after task k, if it
// exists. While the campaign is still being planned, task k is marked as
// finished first, and its successor is enqueued only if its batches are
// stored already; otherwise the planner enqueues it when it stores them.
func (s *Service) next(ctx context.Context, c *campaigns.Campaign, k int, r store.BatchRange) error {
	m := k + s.o.BatchWindow
	if r.Planned {
		if int64(m) < s.tasksFor(r.Status.BatchesTotal) {
			return s.enqueueBatch(ctx, c, m)
		}
		return nil
	}
	stored, planned, err := s.o.Store.TaskFinished(ctx, c.ID, k)
	if err != nil {
		return err
	}
	if (planned && int64(m) < s.tasksFor(stored)) || (!planned && int64(m+1)*int64(s.o.BatchesPerTask) <= stored) {
		return s.enqueueBatch(ctx, c, m)
	}
	return nil
}

// tasksFor is how many batch tasks cover batches batches.
func (s *Service) tasksFor(batches int64) int64 {
	g := int64(s.o.BatchesPerTask)
	return (batches + g - 1) / g
}

// throttle limits progress events per campaign in this process.
type throttle struct {
	gap  time.Duration
	mu   sync.Mutex
	last map[string]time.Time
	done map[string]bool
}

func newThrottle(gap time.Duration) *throttle {
	return &throttle{gap: gap, last: map[string]time.Time{}, done: map[string]bool{}}
}

func (t *throttle) allow(id string, now time.Time) bool {
	t.mu.Lock()
	defer t.mu.Unlock()
	if t.done[id] || now.Sub(t.last[id]) < t.gap {
		return false
	}
	t.last[id] = now
	return true
}

// finish stops progress events of a finished campaign in this process.
func (t *throttle) finish(id string) {
	t.mu.Lock()
	delete(t.last, id)
	if len(t.done) > 10_000 {
		clear(t.done)
	}
	t.done[id] = true
	t.mu.Unlock()
}

// campaignCache keeps submitted campaigns (immutable once stored) without
// their target lists, so batch handlers need not decode them every time.
type campaignCache struct {
	mu sync.Mutex
	m  map[string]*campaigns.Campaign
}

const campaignCacheSize = 1024

func (s *Service) campaign(ctx context.Context, id string) (*campaigns.Campaign, error) {
	s.cache.mu.Lock()
	c, ok := s.cache.m[id]
	s.cache.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := s.o.Store.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	c.Targets = nil
	s.cache.mu.Lock()
	if len(s.cache.m) >= campaignCacheSize {
		clear(s.cache.m)
	}
	s.cache.m[id] = c
	s.cache.mu.Unlock()
	return c, nil
}
