// Package worker is campaignd's asynq side: Service takes a validated
// campaign (Submit), stores it and enqueues its plan task; the plan handler
// cuts the targets into batches of at most 100 and writes them to the store;
// batch handlers send each batch through the provider and record the result.
//
// Every task has a deterministic TaskID (`<id>:plan`, `<id>:g:<k>` for the
// k-th batch task, of BatchesPerTask batches), and a
// batch is recorded once (store.RecordBatch), so a crash, a redelivery or a
// re-plan never sends a batch twice after its result was recorded. A
// campaign keeps at most BatchWindow batch tasks queued: each finished batch
// enqueues the next, so a small or high-priority campaign never waits behind
// thousands of queued batches of a big one.
package worker

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
	"golang.org/x/sync/semaphore"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/optcheck"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/store"
)

// Task types.
const (
	TypePlan   = "campaign:plan"
	TypeBatch  = "campaign:batch"
	TypeExpire = "campaign:expire"
	TypeTask   = "campaign:task"
)

// Queue names by campaign priority.
var queueFor = map[campaigns.Priority]string{
	campaigns.PriorityHigh:   "high",
	campaigns.PriorityNormal: "default",
	campaigns.PriorityLow:    "low",
}

// QueueFor returns the asynq queue of a priority.
func QueueFor(p campaigns.Priority) string {
	if q, ok := queueFor[p]; ok {
		return q
	}
	return "default"
}

// TargetResult is one target's outcome at the provider.
type TargetResult struct {
	ID     string
	OK     bool
	Reason string
}

// StatusSink publishes status events (campaigns.status.<id>). The daemon
// gives the Service a statusq.Queue in front of the JetStream publisher, so
// that publishing never holds up sending.
type StatusSink interface {
	Publish(ctx context.Context, st campaigns.Status) error
}

// AudienceSource opens an audience object: target ids one per line.
type AudienceSource interface {
	Open(ctx context.Context, bucket, object string) (io.ReadCloser, error)
}

// CallContext decorates the context of a campaign's provider calls: with
// the campaign's own rate limit, its priority and its flow in the
// limiter's queue, and the hints below.
type CallContext func(ctx context.Context, c *campaigns.Campaign, h CallHints) context.Context

// CallHints tell the limiter about a batch's calls. Check runs at each
// call's slot, right before it is sent: a paused, cancelled or expired
// campaign sends nothing then, and its slot goes to the next waiter.
// GiveUp, when closed, makes calls still waiting for an in-flight slot
// stop waiting (the batch task comes back later for them); calls already
// admitted to their app's queue in the limiter are sent (giving their
// places up emptied the queue: docs/ratelimit.md, "Many apps").
type CallHints struct {
	Check  func(context.Context) error
	GiveUp <-chan struct{}
}

// DefaultBatchesPerTask is how many provider batches one batch task carries.
// Fewer, larger tasks cut asynq's per-task cost (dequeue, completion,
// continuation); each batch is still limited, sent and recorded on its own.
const DefaultBatchesPerTask = 16

// Options configure a Service.
type Options struct {
	Client         *asynq.Client
	Store          *store.Store
	Sink           StatusSink
	Audience       AudienceSource // nil: campaigns with an audience fail
	Provider       Providers      // the provider clients every kind sends through
	CallContext    CallContext
	Clock          clock.Clock
	Logger         zerolog.Logger
	Concurrency    int              // workers of this process (sizes BatchWindow)
	BatchWindow    int              // batch tasks queued per campaign; default 2×Concurrency, at least 8
	BatchesPerTask int              // provider batches (≤ 100 targets each) per batch task, sent concurrently; default DefaultBatchesPerTask
	MaxRetry       int              // transient failures tolerated per batch; default DefaultMaxRetry
	Retention      time.Duration    // completed plan tasks kept visible in the UI (and their ids reserved); default 24h
	EarlyStart     time.Duration    // plan tasks are enqueued this much early, then wait; default 3s
	ProgressGap    time.Duration    // least time between two progress events of a campaign; default 250ms
	MaxInFlight    int              // provider batches in flight at once in this process; default InFlight(Concurrency)
	Tasks          TaskQueue        // the task-window queues of label pushes and broadcasts (nil: those kinds fail)
	TaskApps       []string         // the apps whose task queue this process dispatches (RunTasks)
	Inspector      *asynq.Inspector // optional: deletes a waiting task's UI marker once it is created; needed by the reconciler
	StallAfter     time.Duration    // a campaign with no progress for this long has its missing tasks queued again (RunReconciler); default 1m
	Counters       Counters         // optional: the worker's events for /metrics
	// RecordPatience is how long a batch the provider has answered keeps
	// trying to be recorded while Redis does not answer, instead of
	// failing its task (whose retry would send it again); default 20s,
	// inside asynq's 30 s task lease.
	RecordPatience time.Duration
	// PlanMemory bounds the memory the plans of this process hold at once
	// to drop repeated ids (a plan of a bigger audience reads it in several
	// passes); default DefaultPlanMemory.
	PlanMemory int64
	// PlanSpillDir is where a plan read in several passes keeps the later
	// parts' ids while it reads the audience once (dedupe.Options.SpillDir);
	// default os.TempDir(). PlanSpillOff re-reads the audience each pass.
	PlanSpillDir string
	PlanSpillOff bool
}

// Counters receives the worker's events for /metrics.
type Counters interface {
	TaskRepaired() // the reconciler queued a missing or archived task again
}

type noCounters struct{}

func (noCounters) TaskRepaired() {}

// InFlight is the default number of provider batches a process sends at
// once for a worker concurrency: enough to keep the cores busy, few enough
// that connections are reused. The slot is taken before the limiter is
// asked, so a granted send never waits for a connection (a late send could
// crowd the provider's next second).
func InFlight(concurrency int) int { return max(4*concurrency, 8) }

// Service is the asynq side of campaignd.
type Service struct {
	o          Options
	log        zerolog.Logger
	throttle   *throttle
	cache      campaignCache
	kinds      map[campaigns.Kind]*kind
	states     *stateCache
	taskKicks  map[string]chan struct{} // per app: wake this process's dispatcher
	sends      *inFlight                // MaxInFlight slots
	batches    atomic.Int32             // batch tasks being handled in this process
	feeders    feeders                  // per app, the batch task that goes on sending while the process is busy
	senders    *goPool                  // the goroutines batches are sent on
	planMem    *semaphore.Weighted      // PlanMemory bytes, shared by the plans of this process
	results    sync.Pool                // *[]TargetResult: sent batches' results, recycled
	targetBufs sync.Pool                // *[]string: batch tasks' targets, recycled

	background sync.WaitGroup // goroutines the Service started on its own (Close waits for them)
	closing    chan struct{}  // closed by Close
	closeOnce  sync.Once
}

// Close stops the goroutines the Service started on its own (a marker's
// delayed delete) and waits for them. Call it after the asynq servers and
// RunTasks / RunReconciler have returned.
func (s *Service) Close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.background.Wait()
}

// Defaults of Options (one home each; the config leaves them unset).
const (
	DefaultConcurrency    = 50
	DefaultRecordPatience = 20 * time.Second
	DefaultStallAfter     = time.Minute
	DefaultRetention      = 24 * time.Hour
	DefaultEarlyStart     = 3 * time.Second
	DefaultProgressGap    = 250 * time.Millisecond
)

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o Options) WithDefaults() Options {
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	o.BatchWindow = cmp.Or(o.BatchWindow, max(2*o.Concurrency, 8))
	o.BatchesPerTask = cmp.Or(o.BatchesPerTask, DefaultBatchesPerTask)
	o.RecordPatience = cmp.Or(o.RecordPatience, DefaultRecordPatience)
	o.StallAfter = cmp.Or(o.StallAfter, DefaultStallAfter)
	if o.Counters == nil {
		o.Counters = noCounters{}
	}
	o.MaxRetry = cmp.Or(o.MaxRetry, DefaultMaxRetry)
	o.Retention = cmp.Or(o.Retention, DefaultRetention)
	o.EarlyStart = cmp.Or(o.EarlyStart, DefaultEarlyStart)
	o.ProgressGap = cmp.Or(o.ProgressGap, DefaultProgressGap)
	o.PlanMemory = cmp.Or(o.PlanMemory, DefaultPlanMemory)
	o.PlanSpillDir = cmp.Or(o.PlanSpillDir, os.TempDir())
	o.MaxInFlight = cmp.Or(o.MaxInFlight, InFlight(o.Concurrency))
	if o.CallContext == nil {
		o.CallContext = func(ctx context.Context, _ *campaigns.Campaign, _ CallHints) context.Context {
			return ctx
		}
	}
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("worker: Options")
	c.Positive(o, "Concurrency", "BatchWindow", "BatchesPerTask", "MaxRetry", "MaxInFlight", "PlanMemory",
		"RecordPatience", "StallAfter", "Retention", "EarlyStart", "ProgressGap")
	return c.Err()
}

// NewService returns a Service. Options out of range are a caller's bug:
// it panics on them, naming the field.
func NewService(o Options) *Service {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		panic(err)
	}
	s := &Service{o: o, log: o.Logger, throttle: newThrottle(o.ProgressGap), cache: campaignCache{m: map[string]*campaigns.Campaign{}}, kinds: indexKinds(o.Provider), states: newStateCache(o.Store, o.Clock),
		sends: newInFlight(o.MaxInFlight), senders: newGoPool(2 * time.Second), taskKicks: map[string]chan struct{}{}, planMem: semaphore.NewWeighted(o.PlanMemory),
		results: sync.Pool{New: func() any { return new([]TargetResult) }}, targetBufs: sync.Pool{New: func() any { return new([]string) }},
		closing: make(chan struct{})}
	for _, app := range o.TaskApps {
		s.taskKicks[app] = make(chan struct{}, 1)
	}
	return s
}

type planPayload struct {
	ID string `json:"id"`
}

type batchPayload struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}

func (s *Service) publish(ctx context.Context, st campaigns.Status) {
	if s.o.Sink == nil {
		return
	}
	if err := s.o.Sink.Publish(ctx, st); err != nil {
		s.log.Warn().Err(err).Str("campaign", st.ID).Str("status", string(st.Status)).Msg("status event not published")
	}
}

// Submit stores a validated, normalized campaign and enqueues its plan task
// (at its start time when startAt is in the future). It returns only once
// both are done. An id already stored yields status "duplicate" and sends
// nothing again — but its work is made sure of first: a plan task never
// enqueued (a crash between the two steps) is enqueued now, and a campaign
// that is not final has its missing or archived tasks queued again at once
// (the reconciler's repair, without waiting for StallAfter).
func (s *Service) Submit(ctx context.Context, c *campaigns.Campaign, startAt time.Time) (campaigns.Status, error) {
	created, st, err := s.o.Store.Create(ctx, c, startAt)
	if err != nil {
		return campaigns.Status{}, err
	}
	delayed := startAt.After(s.o.Clock.Now())
	if err := s.enqueuePlan(ctx, c, startAt, delayed); err != nil {
		return campaigns.Status{}, err
	}
	if err := s.enqueueExpire(ctx, c); err != nil {
		return campaigns.Status{}, err
	}
	if !created {
		if !st.Status.Final() {
			if err := s.repairNow(ctx, c.ID); err != nil {
				return campaigns.Status{}, err
			}
		}
		dup := st
		dup.Status = campaigns.StateDuplicate
		dup.At = s.o.Clock.Now().UTC()
		s.publish(ctx, dup)
		return dup, nil
	}
	s.publish(ctx, st)
	if delayed {
		if st2, changed, err := s.o.Store.Transition(ctx, c.ID, campaigns.StateScheduled, campaigns.StateAccepted); err == nil && changed {
			s.publish(ctx, st2)
		}
	}
	return st, nil
}

func (s *Service) enqueuePlan(ctx context.Context, c *campaigns.Campaign, startAt time.Time, delayed bool) error {
	payload, _ := json.Marshal(planPayload{ID: c.ID})
	opts := []asynq.Option{
		asynq.TaskID(c.ID + ":plan"), asynq.Queue(QueueFor(c.Priority)),
		asynq.MaxRetry(s.o.MaxRetry), asynq.Retention(s.o.Retention), asynq.Timeout(30 * time.Minute),
	}
	if delayed {
		opts = append(opts, asynq.ProcessAt(startAt.Add(-s.o.EarlyStart)))
	}
	_, err := s.o.Client.EnqueueContext(ctx, asynq.NewTask(TypePlan, payload), opts...)
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue plan of %s: %w", c.ID, err)
	}
	return nil
}

// enqueueExpire enqueues the task that ends a campaign at its expires_at
// (a little early: it waits out the rest), so that it is final within
// moments of it even when its batches wait in asynq's retry set.
func (s *Service) enqueueExpire(ctx context.Context, c *campaigns.Campaign) error {
	if c.ExpiresAt == nil {
		return nil
	}
	payload, _ := json.Marshal(planPayload{ID: c.ID})
	_, err := s.o.Client.EnqueueContext(ctx, asynq.NewTask(TypeExpire, payload),
		asynq.TaskID(c.ID+":expire"), asynq.Queue("high"), asynq.MaxRetry(s.o.MaxRetry),
		asynq.ProcessAt(c.ExpiresAt.Add(-s.o.EarlyStart)), asynq.Timeout(time.Minute))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue expiry of %s: %w", c.ID, err)
	}
	return nil
}

func (s *Service) enqueueBatch(ctx context.Context, c *campaigns.Campaign, n int) error {
	payload, _ := json.Marshal(batchPayload{ID: c.ID, N: n})
	_, err := s.o.Client.EnqueueContext(ctx, asynq.NewTask(TypeBatch, payload),
		asynq.TaskID(fmt.Sprintf("%s:g:%d", c.ID, n)), asynq.Queue(QueueFor(c.Priority)),
		asynq.MaxRetry(s.o.MaxRetry), asynq.Timeout(5*time.Minute))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) && !errors.Is(err, asynq.ErrDuplicateTask) {
		return fmt.Errorf("worker: enqueue batch %d of %s: %w", n, c.ID, err)
	}
	return nil
}

// Cancel stops every batch of a campaign not yet sent (a task campaign
// still waiting leaves its queue; one created already cannot be recalled).
func (s *Service) Cancel(ctx context.Context, id string) (campaigns.Status, error) {
	st, err := s.change(ctx, id, campaigns.StateCancelled)
	if err == nil && st.Status == campaigns.StateCancelled {
		s.taskControl(ctx, id, campaigns.StateCancelled)
	}
	return st, err
}

// Pause holds a campaign's batches (or its waiting task) until Resume.
func (s *Service) Pause(ctx context.Context, id string) (campaigns.Status, error) {
	st, err := s.change(ctx, id, campaigns.StatePaused, campaigns.StateAccepted, campaigns.StateScheduled, campaigns.StateRunning)
	if err == nil && st.Status == campaigns.StatePaused {
		s.taskControl(ctx, id, campaigns.StatePaused)
	}
	return st, err
}

// Resume releases a paused campaign. One whose batches were all recorded
// while it was paused (calls that were on the wire) is finished now.
func (s *Service) Resume(ctx context.Context, id string) (campaigns.Status, error) {
	if c, err := s.campaign(ctx, id); err == nil {
		if k, ok := s.kinds[c.Kind]; ok && k.task != nil { // back to its place in the task queue
			st, err := s.change(ctx, id, campaigns.StateScheduled, campaigns.StatePaused)
			if err != nil || st.Status != campaigns.StateScheduled {
				return st, err
			}
			s.taskControl(ctx, id, campaigns.StateScheduled)
			// Paused while its task was being created, which the provider
			// then did: the task is recorded, and the campaign is
			// finished now (it is in no queue any more).
			fin, finished, err := s.o.Store.FinishIfDone(ctx, id)
			if err != nil {
				return st, err
			}
			if finished {
				_ = s.o.Tasks.Remove(ctx, c.App, s.taskRef(c, k))
				s.dropMarker(id)
				s.publish(ctx, fin)
				return fin, nil
			}
			return st, nil
		}
	}
	st, err := s.change(ctx, id, campaigns.StateRunning, campaigns.StatePaused)
	if err != nil || st.Status != campaigns.StateRunning {
		return st, err
	}
	fin, finished, err := s.o.Store.FinishIfDone(ctx, id)
	if err != nil {
		return st, err
	}
	if finished {
		s.throttle.finish(id)
		s.publish(ctx, fin)
		return fin, nil
	}
	return st, nil
}

func (s *Service) change(ctx context.Context, id string, to campaigns.State, from ...campaigns.State) (campaigns.Status, error) {
	st, changed, err := s.o.Store.Transition(ctx, id, to, from...)
	if err != nil {
		return st, err
	}
	s.states.forget(id)
	if changed {
		s.publish(ctx, st)
	}
	return st, nil
}

// retryLater is a handler result that sends the task back to its queue after
// a delay without spending its retry budget.
type retryLater struct {
	in     time.Duration
	reason string
}

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
