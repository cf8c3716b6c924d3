package worker

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/store"
)

// sender runs batch tasks: it sends a task's batches through this
// process's in-flight slots and the limiter, records each batch once, and
// enqueues the task's successor in the campaign's window. One batch task
// per app feeds the app's calls while the process is busy (feeders).
type sender struct {
	*ledger
	q           *queuer
	kinds       kindSet
	call        CallContext
	insp        *asynq.Inspector // calls back a task that went back (nil: none)
	concurrency int              // the process's workers: more than half on batch tasks is busy

	sends      *inFlight    // Send.MaxInFlight slots
	batches    atomic.Int32 // batch tasks being handled in this process
	feeders    feeders      // per app, the batch task that goes on sending while the process is busy
	senders    *goPool      // the goroutines batches are sent on
	results    sync.Pool    // *[]TargetResult: sent batches' results, recycled
	targetBufs sync.Pool    // *[]string: batch tasks' targets, recycled
}

func newSender(l *ledger, q *queuer, kinds kindSet, o Options) *sender {
	return &sender{ledger: l, q: q, kinds: kinds, call: o.CallContext, insp: o.Inspector, concurrency: o.Concurrency,
		sends: newInFlight(o.Send.MaxInFlight), senders: newGoPool(2 * time.Second),
		results:    sync.Pool{New: func() any { return new([]TargetResult) }},
		targetBufs: sync.Pool{New: func() any { return new([]string) }}}
}

// handle runs one batch task: a group of BatchesPerTask consecutive batches
// of a campaign, read in one round trip, sent concurrently (each through the
// limiter), each recorded once. A retry of the task skips the batches
// already recorded.
func (s *sender) handle(ctx context.Context, t *asynq.Task) error {
	var p batchPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("batch payload: %v: %w", err, asynq.SkipRetry)
	}
	s.batches.Add(1)
	defer s.batches.Add(-1)
	g := s.q.o.BatchesPerTask
	first := p.N * g
	buf := s.targetBufs.Get().(*[]string)
	r, err := s.store.BatchInfosInto(ctx, p.ID, first, g, *buf)
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
			if s.insp != nil {
				s.feeders.callBack(s.insp, c.App)
			}
		}
	}()
	// A local-time campaign's batches each wait for their own zone's
	// window (zoneCheck); the others share the campaign's.
	zoned := c.LocalTime()
	checks := make([]func(context.Context) error, g)
	for i, b := range r.Batches {
		if zoned {
			checks[i] = s.zoneCheck(c, b.Zone)
		} else if i == 0 {
			checks[i] = s.slotCheck(c)
		} else {
			checks[i] = checks[0]
		}
	}
	for round := 0; ; round++ {
		if zoned {
			if err := s.holdClosedZones(ctx, c, first, r, todo, errs); err != nil {
				return err
			}
		}
		// The app's feeder may have ended meanwhile: this task takes over
		// (unless its campaign has its own rate_limit).
		if !feeder && s.feeders.takeFor(c) {
			feeder = true
			s.log.Debug().Str("campaign", c.ID).Int("task", p.N).Int("round", round).Msg("batch task: feeds its app")
		}
		if round > 0 && !feeder && (round >= maxSendRounds || int(s.batches.Load()) > s.concurrency/2) {
			break
		}
		// When one batch must come back later, the others stop waiting
		// for an in-flight slot.
		// (A batch whose zone's window closed does not: the others go on.)
		giveUp := make(chan struct{})
		var giveUpOnce sync.Once
		var wg sync.WaitGroup
		for i, b := range r.Batches {
			if !todo[i] {
				continue
			}
			n := first + i
			wg.Add(1)
			s.senders.run(func() {
				defer wg.Done()
				sts[i], errs[i] = s.sendBatch(ctx, c, n, b.Targets, CallHints{Check: checks[i], GiveUp: giveUp})
				if zoned && errs[i] == nil {
					s.zoneDone(ctx, c, b.Zone, len(b.Targets))
				}
				if rl, later := asRetryLater(errs[i]); later && !rl.zoned {
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
			if rl, later := asRetryLater(errs[i]); later {
				if rl.zoned { // waits for its zone's window: deferred below
					todo[i] = false
					continue
				}
				again = true
				continue
			}
			todo[i] = false
			sent = sent || errs[i] == nil
		}
		s.log.Debug().Str("campaign", c.ID).Int("task", p.N).Int("round", round).Bool("sent", sent).Bool("again", again).Msg("batch task: round over")
		if again && !sent && ctx.Err() == nil {
			// Its send window opens in a moment: wait for it here, and
			// send at the opening (asynq would bring the task back up
			// to a second late).
			if opens, soon := windowOpensSoon(errs, s.clock.Now()); soon {
				if sleepCtx(ctx, opens.Sub(s.clock.Now())) == nil {
					round-- // the wait is not a round
					continue
				}
			}
		}
		if zoned && (!again || !sent) && ctx.Err() == nil {
			// Some zones open in a moment: wait for them here and send
			// their batches at the opening.
			if opens, soon := zonesOpenSoon(errs, todo, s.clock.Now()); soon {
				if sleepCtx(ctx, opens.Sub(s.clock.Now())) == nil {
					round--
					continue
				}
			}
		}
		if !again || !sent || ctx.Err() != nil {
			break
		}
	}
	var later error
	over := false
	waits := false
	for _, err := range errs {
		if err == nil {
			continue
		}
		if errors.Is(err, errCampaignOver) {
			over = true
			continue
		}
		if rl, ok := asRetryLater(err); ok {
			if rl.zoned {
				waits = true
			} else {
				later = err
			}
			continue
		}
		return err // a real failure: spend a retry
	}
	if over {
		return nil // the campaign ended while its batches waited
	}
	var opens time.Time // the earliest opening this task's waiting batches wait for
	if waits {
		var err error
		if opens, err = s.deferZoned(ctx, c, first, errs); err != nil {
			return err
		}
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
	if !zoned {
		return s.next(ctx, c, p.N, r)
	}
	// A local-time task whose batches wait for their zones lets the
	// campaign's next task go (once, however often it comes back), and
	// comes back itself at the earliest opening.
	if first, err := s.store.Advance(ctx, c.ID, p.N); err != nil {
		return err
	} else if first {
		if err := s.next(ctx, c, p.N, r); err != nil {
			return err
		}
	}
	if !waits {
		return nil
	}
	now := s.clock.Now()
	return &retryLater{in: max(opens.Sub(now)-windowLead, 50*time.Millisecond), opens: opens, zoned: true,
		reason: "its targets' send windows are closed until " + opens.UTC().Format(time.RFC3339)}
}

// holdClosedZones, for a local-time campaign, takes out of a round the
// batches to send (todo) whose zone's window is closed and opens later
// than windowLead (errs[i] says until when: they wait for it), and notes
// that the others no longer wait (store.Undefer): they are sent now.
func (s *sender) holdClosedZones(ctx context.Context, c *campaigns.Campaign, first int, r store.BatchRange, todo []bool, errs []error) error {
	now := s.clock.Now()
	var going []int
	for i, b := range r.Batches {
		if !todo[i] {
			continue
		}
		if w, ok := s.zoneWindow(c, b.Zone); ok && !w.Open(now) {
			if opens := w.NextOpen(now); opens.Sub(now) > windowLead {
				todo[i] = false
				errs[i] = &retryLater{in: opens.Sub(now) - windowLead, opens: opens, zoned: true,
					reason: "the send window of " + b.Zone + " is closed until " + opens.UTC().Format(time.RFC3339)}
				continue
			}
		}
		going = append(going, first+i)
	}
	return s.store.Undefer(ctx, c.ID, going)
}

// zonesOpenSoon finds the batches that wait for a zone opening within
// windowLead, puts them back to send (todo: errs[i] still says why they
// wait, until a round sends them), and returns the last of those
// openings.
func zonesOpenSoon(errs []error, todo []bool, now time.Time) (time.Time, bool) {
	var last time.Time
	for i, err := range errs {
		rl, ok := asRetryLater(err)
		if !ok || !rl.zoned || rl.opens.Sub(now) > windowLead {
			continue
		}
		todo[i] = true
		if rl.opens.After(last) {
			last = rl.opens
		}
	}
	return last, !last.IsZero()
}

// deferZoned notes the batches of a local-time task that wait for their
// zone's window (store.Defer), and returns the earliest of their
// openings. When every batch the campaign has left waits, the campaign is
// scheduled until the earliest opening of all (windowClosed).
func (s *sender) deferZoned(ctx context.Context, c *campaigns.Campaign, first int, errs []error) (time.Time, error) {
	var ns []int
	var opens []time.Time
	var earliest time.Time
	for i, err := range errs {
		if rl, ok := asRetryLater(err); ok && rl.zoned {
			ns = append(ns, first+i)
			opens = append(opens, rl.opens)
			if earliest.IsZero() || rl.opens.Before(earliest) {
				earliest = rl.opens
			}
		}
	}
	all, next, err := s.store.Defer(ctx, c.ID, ns, opens)
	if err != nil {
		return earliest, err
	}
	if all {
		s.windowClosed(ctx, c.ID, next)
	}
	return earliest, nil
}

// zoneDone counts a local-time batch's targets recorded for its zone
// (the forecast's ETA reads what each zone has left). A count lost to a
// Redis error only makes the ETA think the zone has more left.
func (s *sender) zoneDone(ctx context.Context, c *campaigns.Campaign, zone string, n int) {
	if err := s.store.ZoneDone(context.WithoutCancel(ctx), c.ID, zone, int64(n)); err != nil {
		s.log.Debug().Err(err).Str("campaign", c.ID).Str("zone", zone).Msg("zone's count not kept")
	}
}

// maxSendRounds bounds the rounds of one batch task (see handle).
const maxSendRounds = 3

// sendBatch sends batch n of campaign c (unless the campaign has expired)
// and records its outcome.
func (s *sender) sendBatch(ctx context.Context, c *campaigns.Campaign, n int, targets []string, hints CallHints) (campaigns.Status, error) {
	if c.ExpiresAt != nil && !s.clock.Now().Before(*c.ExpiresAt) {
		return s.record(ctx, c, n, 0, nil, int64(len(targets)))
	}

	if err := s.sends.acquire(ctx, c.App, c.Priority, hints.GiveUp); err != nil {
		return campaigns.Status{}, fmt.Errorf("batch %d of %s: %w", n, c.ID, err)
	}
	buf := s.results.Get().(*[]TargetResult)
	results, err := s.send(s.call(ctx, c, hints), c, targets, (*buf)[:0])
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
func (s *sender) send(ctx context.Context, c *campaigns.Campaign, targets []string, buf []TargetResult) ([]TargetResult, error) {
	k, _, err := s.kinds.of(c)
	if err != nil {
		return nil, &provider.Error{Provider: "campaignd", Op: string(c.Kind), Class: provider.ClassPermanent, Description: err.Error()}
	}
	return k.send(ctx, c, targets, buf)
}

// next enqueues the batch task BatchWindow places after task k, if it
// exists. While the campaign is still being planned, task k is marked as
// finished first, and its successor is enqueued only if its batches are
// stored already; otherwise the planner enqueues it when it stores them.
func (s *sender) next(ctx context.Context, c *campaigns.Campaign, k int, r store.BatchRange) error {
	m := k + s.q.o.BatchWindow
	if r.Planned {
		if int64(m) < s.q.tasksFor(r.Status.BatchesTotal) {
			return s.q.batch(ctx, c, m)
		}
		return nil
	}
	stored, planned, err := s.store.TaskFinished(ctx, c.ID, k)
	if err != nil {
		return err
	}
	if (planned && int64(m) < s.q.tasksFor(stored)) || (!planned && int64(m+1)*int64(s.q.o.BatchesPerTask) <= stored) {
		return s.q.batch(ctx, c, m)
	}
	return nil
}

// tasksFor is how many batch tasks cover batches batches.
func (s *sender) tasksFor(batches int64) int64 {
	g := int64(s.q.o.BatchesPerTask)
	return (batches + g - 1) / g
}

// windowOpensSoon reports whether every call of a round that must come
// back later was refused for its send window, which opens within
// windowLead, and when.
func windowOpensSoon(errs []error, now time.Time) (time.Time, bool) {
	var opens time.Time
	for _, err := range errs {
		if err == nil {
			continue
		}
		rl, later := asRetryLater(err)
		if !later {
			continue
		}
		if rl.opens.IsZero() || rl.opens.Sub(now) > windowLead {
			return time.Time{}, false
		}
		opens = rl.opens
	}
	return opens, !opens.IsZero()
}
