package worker

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/sendwindow"
	"github.com/campaignd/campaignd/store"
)

// ledger keeps the campaigns' records for every part of the Worker: it
// reads campaigns (cached: they never change once stored), moves their
// states, records batch outcomes once, and publishes status events,
// progress throttled per campaign.
type ledger struct {
	store    *store.Store
	sink     StatusSink
	clock    clock.Clock
	log      zerolog.Logger
	patience time.Duration // Send.RecordPatience
	throttle *throttle
	cache    campaignCache
	states   *stateCache
	zones    *sendwindow.Zones // local-time targets' zones, loaded once
}

func newLedger(o Options) *ledger {
	return &ledger{store: o.Store, sink: o.Sink, clock: o.Clock, log: o.Logger, patience: o.Send.RecordPatience,
		throttle: newThrottle(o.Send.ProgressGap), cache: campaignCache{m: map[string]*campaigns.Campaign{}},
		states: newStateCache(o.Store, o.Clock), zones: &sendwindow.Zones{}}
}

func (l *ledger) publish(ctx context.Context, st campaigns.Status) {
	if l.sink == nil {
		return
	}
	if err := l.sink.Publish(ctx, st); err != nil {
		l.log.Warn().Err(err).Str("campaign", st.ID).Str("status", string(st.Status)).Msg("status event not published")
	}
}

// publishProgress publishes a progress event so that it can never be the
// last word after the final one: batches record concurrently (in this
// process and others), and a progress event could otherwise be published
// just after the event of the batch that finished the campaign. So after
// publishing, the stored state is read again, and if the campaign has ended
// meanwhile its final status is published once more.
func (l *ledger) publishProgress(ctx context.Context, st campaigns.Status) {
	l.publish(ctx, st)
	now, found, err := l.store.Lookup(ctx, st.ID)
	if err == nil && found && now.Status.Final() {
		l.publish(ctx, now)
	}
}

// publishFinal publishes the final status of a campaign that has just ended,
// and stops its progress events in this process.
func (l *ledger) publishFinal(ctx context.Context, st campaigns.Status) {
	l.throttle.finish(st.ID)
	l.publish(ctx, st)
}

// change moves a campaign to state to (from one of from; none: from any
// state that is not final) and publishes the change.
func (l *ledger) change(ctx context.Context, id string, to campaigns.State, from ...campaigns.State) (campaigns.Status, error) {
	st, changed, err := l.store.Transition(ctx, id, to, from...)
	if err != nil {
		return st, err
	}
	l.states.forget(id)
	if changed {
		l.publish(ctx, st)
	}
	return st, nil
}

// fail ends a campaign as failed before anything was sent, with the reason
// on its status.
func (l *ledger) fail(ctx context.Context, id string, cf *campaignFailure) error {
	st, changed, err := l.store.Fail(ctx, id, campaigns.FieldErrors{{Field: cf.field, Message: cf.message}})
	if err != nil {
		return err
	}
	if changed {
		l.publishFinal(ctx, st)
		l.log.Warn().Str("campaign", id).Str("field", cf.field).Str("reason", cf.message).Msg("campaign failed")
	}
	return nil
}

// record stores a batch's outcome (once) and publishes progress.
func (l *ledger) record(ctx context.Context, c *campaigns.Campaign, n int, sent int64, failures []campaigns.Failure, dropped int64) (campaigns.Status, error) {
	// Record even if the task's context ends now: the provider has
	// answered. A Redis that does not answer (a restart, a failover) is
	// waited for, within the task's lease, rather than failing the task:
	// its retry would send the batch again.
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), l.patience+10*time.Second)
	defer cancel()
	st, first, finished, err := l.recordPatiently(rctx, c.ID, n, sent, failures, dropped)
	if err != nil {
		return st, err
	}
	switch {
	case finished:
		l.publishFinal(rctx, st)
		l.log.Info().Str("campaign", c.ID).Str("status", string(st.Status)).Int64("sent", st.Sent).Int64("failed", st.Failed).Msg("campaign finished")
	case first && l.throttle.allow(c.ID, l.clock.Now()):
		l.publishProgress(rctx, st)
	}
	return st, nil
}

// recordPatiently records a batch, trying again while the store fails for
// up to the patience (an unknown campaign is not retried).
func (l *ledger) recordPatiently(ctx context.Context, id string, n int, sent int64, failures []campaigns.Failure, dropped int64) (campaigns.Status, bool, bool, error) {
	var giveUp time.Time
	wait := 50 * time.Millisecond
	for attempt := 0; ; attempt++ {
		actx, cancel := context.WithTimeout(ctx, 2*time.Second)
		st, first, finished, err := l.store.RecordBatch(actx, id, n, sent, failures, dropped)
		cancel()
		if err == nil || errors.Is(err, store.ErrNotFound) {
			if attempt > 0 {
				l.log.Info().Str("campaign", id).Int("batch", n).Int("attempts", attempt+1).Msg("batch recorded once the store answered again")
			}
			return st, first, finished, err
		}
		now := l.clock.Now()
		if giveUp.IsZero() {
			giveUp = now.Add(l.patience)
			l.log.Warn().Err(err).Str("campaign", id).Int("batch", n).Dur("patience", l.patience).Msg("batch sent but not recorded yet: the store does not answer; trying again")
		}
		if now.After(giveUp) || ctx.Err() != nil {
			return st, false, false, fmt.Errorf("record batch %d of %s (sent, not recorded: it may be sent again): %w", n, id, err)
		}
		if sleepCtx(ctx, wait) != nil {
			return st, false, false, fmt.Errorf("record batch %d of %s (sent, not recorded: it may be sent again): %w", n, id, err)
		}
		wait = min(2*wait, 500*time.Millisecond)
	}
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

// campaign reads a stored campaign without its targets, from the cache
// when it can.
func (l *ledger) campaign(ctx context.Context, id string) (*campaigns.Campaign, error) {
	l.cache.mu.Lock()
	c, ok := l.cache.m[id]
	l.cache.mu.Unlock()
	if ok {
		return c, nil
	}
	c, err := l.store.Campaign(ctx, id)
	if err != nil {
		return nil, err
	}
	c.Targets = nil
	l.cache.mu.Lock()
	if len(l.cache.m) >= campaignCacheSize {
		clear(l.cache.m)
	}
	l.cache.m[id] = c
	l.cache.mu.Unlock()
	return c, nil
}
