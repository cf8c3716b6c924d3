// Package worker is campaignd's asynq side, a Worker made of small parts:
// Control takes a validated campaign (Submit), stores it and enqueues its
// plan task; the planner cuts the targets into batches of at most 100 and
// writes them to the store; the sender sends each batch through the
// provider and records the result; the Dispatcher creates provider tasks
// under the task-window caps; the Reconciler repairs stalled campaigns.
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
	"io"
	"os"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/optcheck"
	"github.com/campaignd/campaignd/store"
)

// asynq task types. "Task" alone in this package means a provider push
// task (label_push, broadcast: TaskCreator, TaskQueue, the Dispatcher);
// asynq's are "asynq tasks", and a waiting provider task shows in the UI
// as a marker (TypeTaskMarker).
const (
	TypePlan       = "campaign:plan"
	TypeBatch      = "campaign:batch"
	TypeExpire     = "campaign:expire"
	TypeTaskMarker = "campaign:task"
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
// gives the Worker a statusq.Queue in front of the JetStream publisher, so
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

// Options configure a Worker: what its parts share, then each part's own
// options.
type Options struct {
	Client      *asynq.Client
	Store       *store.Store
	Sink        StatusSink
	Provider    Providers // the provider clients the kinds send through
	CallContext CallContext
	Clock       clock.Clock
	Logger      zerolog.Logger
	// Inspector deletes a waiting task's UI marker once it is created,
	// calls back a batch task that went back, and lets the reconciler
	// look at tasks; nil: none of the three (tests).
	Inspector   *asynq.Inspector
	Concurrency int // workers of this process (sizes Queue.BatchWindow and Send.MaxInFlight)

	Queue     QueueOptions
	Plan      PlanOptions
	Send      SendOptions
	Tasks     TaskOptions
	Reconcile ReconcileOptions
}

// QueueOptions shape a campaign's asynq tasks (the queuer).
type QueueOptions struct {
	BatchWindow    int           // batch tasks queued per campaign; default 2×Concurrency, at least 8
	BatchesPerTask int           // provider batches (≤ 100 targets each) per batch task, sent concurrently; default DefaultBatchesPerTask
	MaxRetry       int           // transient failures tolerated per batch; default DefaultMaxRetry
	Retention      time.Duration // completed plan tasks kept visible in the UI (and their ids reserved); default 24h
	EarlyStart     time.Duration // plan and expiry tasks are enqueued this much early, then wait; default 3s
}

// PlanOptions configure the planner.
type PlanOptions struct {
	Audience AudienceSource // nil: campaigns with an audience fail
	// Memory bounds the memory the plans of this process hold at once to
	// drop repeated ids (a plan of a bigger audience reads it in several
	// passes); default DefaultPlanMemory.
	Memory int64
	// SpillDir is where a plan read in several passes keeps the later
	// parts' ids while it reads the audience once (dedupe.Options.SpillDir);
	// default os.TempDir(). SpillOff re-reads the audience each pass.
	SpillDir string
	SpillOff bool
}

// SendOptions configure the sender and how outcomes are recorded.
type SendOptions struct {
	MaxInFlight int // provider batches in flight at once in this process; default InFlight(Concurrency)
	// RecordPatience is how long a batch the provider has answered keeps
	// trying to be recorded while Redis does not answer, instead of
	// failing its task (whose retry would send it again); default 20s,
	// inside asynq's 30 s task lease.
	RecordPatience time.Duration
	ProgressGap    time.Duration // least time between two progress events of a campaign; default 250ms
}

// TaskOptions configure the task dispatcher.
type TaskOptions struct {
	Queue TaskQueue // the task-window queues of label pushes and broadcasts (nil: those kinds fail)
	Apps  []string  // the apps whose task queue this process dispatches (Dispatcher.Run)
}

// ReconcileOptions configure the reconciler.
type ReconcileOptions struct {
	StallAfter time.Duration // a campaign with no progress for this long has its missing tasks queued again; default 1m
	Counters   Counters      // optional: repairs for /metrics
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
	if o.CallContext == nil {
		o.CallContext = func(ctx context.Context, _ *campaigns.Campaign, _ CallHints) context.Context {
			return ctx
		}
	}
	o.Concurrency = cmp.Or(o.Concurrency, DefaultConcurrency)
	q := &o.Queue
	q.BatchWindow = cmp.Or(q.BatchWindow, max(2*o.Concurrency, 8))
	q.BatchesPerTask = cmp.Or(q.BatchesPerTask, DefaultBatchesPerTask)
	q.MaxRetry = cmp.Or(q.MaxRetry, DefaultMaxRetry)
	q.Retention = cmp.Or(q.Retention, DefaultRetention)
	q.EarlyStart = cmp.Or(q.EarlyStart, DefaultEarlyStart)
	o.Plan.Memory = cmp.Or(o.Plan.Memory, DefaultPlanMemory)
	o.Plan.SpillDir = cmp.Or(o.Plan.SpillDir, os.TempDir())
	o.Send.MaxInFlight = cmp.Or(o.Send.MaxInFlight, InFlight(o.Concurrency))
	o.Send.RecordPatience = cmp.Or(o.Send.RecordPatience, DefaultRecordPatience)
	o.Send.ProgressGap = cmp.Or(o.Send.ProgressGap, DefaultProgressGap)
	o.Reconcile.StallAfter = cmp.Or(o.Reconcile.StallAfter, DefaultStallAfter)
	if o.Reconcile.Counters == nil {
		o.Reconcile.Counters = noCounters{}
	}
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("worker: Options")
	c.Positive(o, "Concurrency")
	q := optcheck.New("worker: Options.Queue")
	q.Positive(o.Queue, "BatchWindow", "BatchesPerTask", "MaxRetry", "Retention", "EarlyStart")
	c.Add(q.Err())
	p := optcheck.New("worker: Options.Plan")
	p.Positive(o.Plan, "Memory")
	c.Add(p.Err())
	s := optcheck.New("worker: Options.Send")
	s.Positive(o.Send, "MaxInFlight", "RecordPatience", "ProgressGap")
	c.Add(s.Err())
	r := optcheck.New("worker: Options.Reconcile")
	r.Positive(o.Reconcile, "StallAfter")
	c.Add(r.Err())
	return c.Err()
}

// Worker is the asynq side of campaignd, made of small parts that share
// the ledger (the campaigns' records) and the queuer (their asynq tasks):
//   - Control takes campaigns and commands (submit, pause, resume, cancel)
//     and ends a campaign at its expiry;
//   - the planner cuts a campaign's targets into stored batches;
//   - the sender sends a batch task's batches through the limiter and
//     records each once;
//   - Dispatcher creates the provider tasks of label pushes and
//     broadcasts under the task-window caps;
//   - Reconciler queues again the work of a campaign that stalled.
//
// Mux routes asynq's tasks to the planner, the sender, Control and the
// Dispatcher; Dispatcher.Run and Reconciler.Run are the daemon's to run.
type Worker struct {
	Control    *Control
	Dispatcher *Dispatcher
	Reconciler *Reconciler
	planner    *planner
	sender     *sender
	ledger     *ledger
	client     *asynq.Client
}

// New returns a Worker. Options out of range are a caller's bug: it
// panics on them, naming the field.
func New(o Options) *Worker {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		panic(err)
	}
	l := newLedger(o)
	q := &queuer{client: o.Client, o: o.Queue}
	kinds := newKindSet(o.Provider)
	d := newDispatcher(l, kinds, q, o)
	r := &Reconciler{ledger: l, q: q, kinds: kinds, insp: o.Inspector, o: o.Reconcile}
	return &Worker{
		Control:    &Control{ledger: l, q: q, kinds: kinds, tasks: d, rec: r},
		Dispatcher: d,
		Reconciler: r,
		planner:    newPlanner(l, q, kinds, d, o),
		sender:     newSender(l, q, kinds, o),
		ledger:     l,
		client:     o.Client,
	}
}

// Close stops the goroutines the Worker started on its own (a marker's
// delayed delete) and waits for them. Call it after the asynq servers,
// Dispatcher.Run and Reconciler.Run have returned.
func (w *Worker) Close() { w.Dispatcher.close() }

// Mux routes the task types to their parts.
func (w *Worker) Mux() *asynq.ServeMux {
	mux := asynq.NewServeMux()
	mux.HandleFunc(TypePlan, w.planner.handle)
	mux.HandleFunc(TypeBatch, w.sender.handle)
	mux.HandleFunc(TypeExpire, w.Control.handleExpire)
	mux.HandleFunc(TypeTaskMarker, w.Dispatcher.handleMarker)
	mux.Use(w.outlastOutage)
	return mux
}

// outlastOutage holds a failed task's answer to asynq while Redis does not
// answer (for up to Send.RecordPatience, inside the task's lease). asynq
// v0.26 writes a failed task's retry with a context that has ended by the
// time its syncer tries again, so a task that fails while Redis is down
// stays active until its lease is recovered, a minute or two later; held
// here, the retry is written as soon as Redis is back.
func (w *Worker) outlastOutage(next asynq.Handler) asynq.Handler {
	return asynq.HandlerFunc(func(ctx context.Context, t *asynq.Task) error {
		err := next.ProcessTask(ctx, t)
		if err != nil {
			w.awaitStore(ctx)
		}
		return err
	})
}

// awaitStore returns once Redis answers, ctx ends or Send.RecordPatience
// has passed. After an outage it also waits for asynq's own connection to
// answer, and a second more: after a Sentinel failover, the sentinels
// that asynq's pools ask may name the new master a moment later than the
// one this process's client asked.
func (w *Worker) awaitStore(ctx context.Context) {
	l := w.ledger
	giveUp := l.clock.Now().Add(l.patience)
	down := false
	for wait := 50 * time.Millisecond; ; wait = min(2*wait, 500*time.Millisecond) {
		pctx, cancel := context.WithTimeout(ctx, time.Second)
		err := l.store.Ping(pctx)
		cancel()
		if err == nil && down && w.client != nil {
			err = w.client.Ping()
			if err == nil {
				_ = sleepCtx(ctx, time.Second)
			}
		}
		if err == nil || ctx.Err() != nil || l.clock.Now().After(giveUp) {
			return
		}
		down = true
		if sleepCtx(ctx, wait) != nil {
			return
		}
	}
}

type planPayload struct {
	ID string `json:"id"`
}

type batchPayload struct {
	ID string `json:"id"`
	N  int    `json:"n"`
}
