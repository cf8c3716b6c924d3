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

// Task campaigns (label_push, broadcast) each create one provider push
// task, and the provider caps tasks: at most max_created creations in any
// sliding window and max_running counted at once (docs/interface.md §2.2
// task_window). Such a campaign does not plan batches: its plan task puts
// it in its app's task queue (shared by every process, in priority then
// submission order) and ends, so nothing holds an asynq worker while it
// waits. Every process runs a dispatcher per app that sleeps until the
// caps free next (read from Redis, so whichever process freed or took a
// slot) and then pops the first waiting task with its slots taken in one
// atomic step: one process creates it, at most the caps allow, none
// refused. While it waits the campaign is `scheduled` with `start_at` the
// time the caps let it go, updated as the queue moves.

// TaskCreator creates provider push tasks and returns their ids.
type TaskCreator interface {
	PushLabel(ctx context.Context, app, label string, strategy *int, msg json.RawMessage) (string, error)
	PushTask(ctx context.Context, app string, strategy *int, msg json.RawMessage) (string, error)
}

// TaskRef names a task campaign in its app's queue.
type TaskRef struct {
	ID        string
	Broadcast bool
}

// TaskQueue is the task-window queue of each app, shared by every process
// (ratelimit.TaskWindow).
type TaskQueue interface {
	// Enqueue adds a task (again: it keeps its place); prio 0 high, 1
	// normal, 2 low, then by submission.
	Enqueue(ctx context.Context, app string, t TaskRef, prio int, submitted time.Time) error
	Remove(ctx context.Context, app string, t TaskRef) error
	// Hold keeps a waiting task in its place but lets the ones behind it
	// go (paused).
	Hold(ctx context.Context, app string, t TaskRef, hold bool) error
	// Dispatch pops the next task the caps allow now, its slots taken
	// (ok); otherwise wait tells when the caps free next (< 0: none waits).
	Dispatch(ctx context.Context, app string) (t TaskRef, ok bool, wait time.Duration, err error)
	// Confirm: the provider created the popped task.
	Confirm(ctx context.Context, app string, t TaskRef) error
	// Undo: the provider did not create it; its slots are given back and,
	// with requeue, it goes back to its place.
	Undo(ctx context.Context, app string, t TaskRef, requeue bool) error
	// Block holds the app's creations in every process (the provider
	// refused a task the caps allowed); d <= 0: the app's default, the
	// soonest a task the provider counts could end.
	Block(ctx context.Context, app string, d time.Duration) error
	// Stale returns popped tasks never confirmed nor undone for older
	// (their process died creating them), once.
	Stale(ctx context.Context, app string, older time.Duration) ([]TaskRef, error)
	// Estimates tells when each waiting task will be created if nothing
	// changes.
	Estimates(ctx context.Context, app string) (map[TaskRef]time.Time, error)
}

// taskPoll is the longest a dispatcher sleeps before it looks at its app's
// queue again while tasks wait (other processes take slots).
const taskPoll = 100 * time.Millisecond

// taskIdlePoll is how long a dispatcher whose app has nothing queued
// sleeps: a task this process queues (or resumes) wakes it at once, and
// one another process queues is that process's to create, so an idle app
// costs next to nothing (100 idle apps polled every 100 ms took a tenth
// of a core: make bench-apps).
const taskIdlePoll = 2 * time.Second

// staleCreating is how long a popped task may stay unconfirmed before its
// process is taken for dead.
const staleCreating = 2 * time.Minute

// Dispatcher creates the provider tasks of task campaigns: it keeps each
// waiting campaign's place in its app's queue (and a marker of it in the
// asynq UI), and runs one dispatch loop per app of TaskOptions.Apps.
type Dispatcher struct {
	*ledger
	kinds  kindSet
	q      *queuer // a task whose send window closed comes back at its opening
	call   CallContext
	client *asynq.Client    // enqueues the UI markers
	insp   *asynq.Inspector // deletes them (nil: left to their next run)
	o      TaskOptions
	kicks  map[string]chan struct{} // per app: wake this process's dispatch loop

	background sync.WaitGroup // goroutines started on their own (close waits for them)
	closing    chan struct{}  // closed by close
	closeOnce  sync.Once
}

func newDispatcher(l *ledger, kinds kindSet, q *queuer, o Options) *Dispatcher {
	d := &Dispatcher{ledger: l, kinds: kinds, q: q, call: o.CallContext, client: o.Client, insp: o.Inspector, o: o.Tasks,
		kicks: map[string]chan struct{}{}, closing: make(chan struct{})}
	for _, app := range o.Tasks.Apps {
		d.kicks[app] = make(chan struct{}, 1)
	}
	return d
}

// close stops the goroutines the Dispatcher started on its own (a
// marker's delayed delete) and waits for them.
func (s *Dispatcher) close() {
	s.closeOnce.Do(func() { close(s.closing) })
	s.background.Wait()
}

func taskRef(c *campaigns.Campaign, k *kind) TaskRef {
	return TaskRef{ID: c.ID, Broadcast: k.task.broadcast}
}

// forget takes a task campaign that has ended out of its app's queue and
// the UI.
func (s *Dispatcher) forget(ctx context.Context, c *campaigns.Campaign, k *kind) {
	if s.o.Queue != nil {
		_ = s.o.Queue.Remove(ctx, c.App, taskRef(c, k))
	}
	s.dropMarker(c.ID)
}

// queue puts a task campaign that has reached its start in its app's
// queue, scheduled, and tells the dispatchers.
func (s *Dispatcher) queue(ctx context.Context, c *campaigns.Campaign, k *kind) error {
	if s.o.Queue == nil {
		return s.fail(ctx, c.ID, &campaignFailure{field: "kind", message: "this campaignd has no task queue for " + string(c.Kind)})
	}
	st, err := s.store.Status(ctx, c.ID)
	if err != nil {
		return err
	}
	switch st.Status {
	case campaigns.StateAccepted:
		st2, changed, err := s.store.Transition(ctx, c.ID, campaigns.StateScheduled, campaigns.StateAccepted)
		if err != nil {
			return err
		}
		if changed {
			s.publish(ctx, st2)
		}
	case campaigns.StateScheduled:
	default:
		return nil // being created, or over
	}
	submitted, err := s.store.CreatedAt(ctx, c.ID)
	if err != nil {
		return err
	}
	if err := s.o.Queue.Enqueue(ctx, c.App, taskRef(c, k), c.Priority.Rank(), submitted); err != nil {
		return err
	}
	s.log.Info().Str("campaign", c.ID).Str("app", c.App).Str("kind", string(c.Kind)).Msg("task waiting for the task-window caps")
	s.enqueueMarker(ctx, c)
	s.kick(c.App)
	s.updateEstimates(ctx, c.App)
	return nil
}

func (s *Dispatcher) kick(app string) {
	if ch, ok := s.kicks[app]; ok {
		select {
		case ch <- struct{}{}:
		default:
		}
	}
}

// Run runs this process's dispatch loops, one per app in TaskOptions.Apps,
// until ctx ends; it returns nil then.
func (s *Dispatcher) Run(ctx context.Context) error {
	if s.o.Queue == nil {
		return nil
	}
	var wg sync.WaitGroup
	for _, app := range s.o.Apps {
		wg.Go(func() { s.dispatchLoop(ctx, app) })
	}
	wg.Wait()
	return nil
}

func (s *Dispatcher) dispatchLoop(ctx context.Context, app string) {
	log := s.log.With().Str("app", app).Logger()
	kick := s.kicks[app]
	lastStale := s.clock.Now()
	for ctx.Err() == nil {
		if now := s.clock.Now(); now.Sub(lastStale) > 10*time.Second {
			lastStale = now
			s.reapStale(ctx, app)
		}
		ref, ok, wait, err := s.o.Queue.Dispatch(ctx, app)
		if err != nil {
			log.Warn().Err(err).Msg("task dispatch")
			_ = sleepCtx(ctx, 500*time.Millisecond)
			continue
		}
		if ok {
			s.createTask(ctx, app, ref)
			continue
		}
		d := taskPoll
		switch {
		case wait < 0:
			d = taskIdlePoll
		case wait < d:
			d = wait
		}
		t := time.NewTimer(d)
		select {
		case <-t.C:
		case <-kick:
		case <-ctx.Done():
		}
		t.Stop()
	}
}

// createTask creates the provider task of a popped campaign.
func (s *Dispatcher) createTask(ctx context.Context, app string, ref TaskRef) {
	log := s.log.With().Str("campaign", ref.ID).Str("app", app).Logger()
	defer s.updateEstimates(ctx, app)
	c, err := s.campaign(ctx, ref.ID)
	if err != nil {
		log.Warn().Err(err).Msg("task campaign unreadable; its slot is given back")
		_ = s.o.Queue.Undo(ctx, app, ref, !errors.Is(err, store.ErrNotFound))
		return
	}
	k, _, err := s.kinds.of(c)
	if err != nil || k.task == nil {
		_ = s.o.Queue.Undo(ctx, app, ref, false)
		return
	}
	if w, ok := c.Window(time.UTC); ok && !w.Open(s.clock.Now()) {
		s.outsideWindow(ctx, app, ref, c, w.NextOpen(s.clock.Now()), log)
		return
	}
	st, changed, err := s.store.Transition(ctx, c.ID, campaigns.StateRunning, campaigns.StateScheduled, campaigns.StateAccepted)
	if err != nil {
		_ = s.o.Queue.Undo(ctx, app, ref, true)
		return
	}
	if !changed { // cancelled or paused just now
		_ = s.o.Queue.Undo(ctx, app, ref, st.Status == campaigns.StatePaused)
		if st.Status == campaigns.StatePaused {
			s.holdPaused(ctx, app, ref, log)
		}
		return
	}
	s.states.forget(c.ID)
	s.publish(ctx, st)
	// The call is not cut short by a shutdown: an aborted request could
	// leave a task created that nobody knows of.
	cctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 30*time.Second)
	defer cancel()
	ctx = cctx
	taskID, err := k.task.create(s.call(ctx, c, CallHints{}), c)
	if err == nil {
		s.taskCreated(ctx, app, ref, c, taskID)
		return
	}
	requeue := func(block time.Duration, why string) {
		_ = s.o.Queue.Undo(ctx, app, ref, true)
		_ = s.o.Queue.Block(ctx, app, block)
		if st, changed, err := s.store.Transition(ctx, c.ID, campaigns.StateScheduled, campaigns.StateRunning); err == nil && changed {
			s.publish(ctx, st)
		}
		log.Warn().Err(err).Msg(why)
	}
	switch {
	case isRefusedTask(err):
		requeue(0, "the provider refused the task over its caps (another client on the app key?): every process waits, the campaign stays queued")
	case isPermanent(err):
		_ = s.o.Queue.Undo(ctx, app, ref, false)
		field := "push_message"
		var pe *provider.Error
		if errors.As(err, &pe) {
			switch pe.Type {
			case "ResourceNotFoundException":
				field = "label"
			case "ServiceNotOpenException":
				field = "app"
			}
		}
		msg := err.Error()
		if pe != nil && pe.Description != "" {
			msg = pe.Type + ": " + pe.Description
		}
		_ = s.fail(ctx, c.ID, &campaignFailure{field: field, message: msg})
		s.dropMarker(c.ID)
	default:
		requeue(time.Second, "task not created (transient); it keeps its place")
	}
}

// outsideWindow puts back a task popped while its send window is closed:
// its plan task comes back at the opening and queues it again then (first,
// so that a process dying here leaves it to the stale reaper: popped
// again, put back again), the campaign waits as scheduled with start_at the
// opening, and the task leaves the queue and gives back its slot.
func (s *Dispatcher) outsideWindow(ctx context.Context, app string, ref TaskRef, c *campaigns.Campaign, opens time.Time, log zerolog.Logger) {
	if err := s.q.planAgain(ctx, c, opens); err != nil {
		log.Warn().Err(err).Msg("task outside its send window: its return not queued; it keeps its place")
		_ = s.o.Queue.Undo(ctx, app, ref, true)
		return
	}
	if st, moved, err := s.store.SetStartAt(ctx, c.ID, opens, 0); err == nil && moved {
		s.publish(ctx, st)
	}
	_ = s.o.Queue.Undo(ctx, app, ref, false)
	log.Info().Time("opens", opens).Msg("send window closed: the task is created after it opens")
}

// holdPaused holds a popped task whose campaign was found paused, then
// reads the status again: a resume (or cancel) between the first read and
// the hold has already applied its own Hold(false) (or Remove), which this
// hold would otherwise undo, leaving the task skipped for good. The hold
// comes before the second read, so either that read sees the resume, or
// the resume's Hold(false) comes after the hold.
func (s *Dispatcher) holdPaused(ctx context.Context, app string, ref TaskRef, log zerolog.Logger) {
	if err := s.o.Queue.Hold(ctx, app, ref, true); err != nil {
		log.Warn().Err(err).Msg("paused task campaign not held")
	}
	st, err := s.store.Status(ctx, ref.ID)
	switch {
	case err != nil:
		log.Warn().Err(err).Msg("paused task campaign's status unreadable after holding it")
	case st.Status.Final():
		_ = s.o.Queue.Remove(ctx, app, ref)
	case st.Status != campaigns.StatePaused:
		_ = s.o.Queue.Hold(ctx, app, ref, false)
		s.kick(app)
	}
}

// isRefusedTask reports a provider refusal over its limits (403
// LimitException, 429, or the limiter's own "not now").
func isRefusedTask(err error) bool {
	if _, ok := provider.IsRateLimited(err); ok {
		return true
	}
	_, later := asRetryLater(err)
	return later
}

// taskCreated records a created task: its id on the status, and the
// campaign completed ("created at the provider": the API gives no
// delivery report).
func (s *Dispatcher) taskCreated(ctx context.Context, app string, ref TaskRef, c *campaigns.Campaign, taskID string) {
	rctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
	defer cancel()
	_ = s.o.Queue.Confirm(rctx, app, ref)
	if err := s.store.AddTaskID(rctx, c.ID, taskID); err != nil {
		s.log.Warn().Err(err).Str("campaign", c.ID).Msg("task id not recorded")
	}
	if _, _, err := s.store.SetPlanned(rctx, c.ID, 1, 1); err != nil {
		s.log.Warn().Err(err).Str("campaign", c.ID).Msg("task campaign not finished")
		return
	}
	if _, err := s.record(rctx, c, 0, 1, nil, 0); err != nil {
		s.log.Warn().Err(err).Str("campaign", c.ID).Msg("task campaign not finished")
	}
	s.dropMarker(c.ID)
	s.log.Info().Str("campaign", c.ID).Str("task_id", taskID).Msg("provider task created")
}

// reapStale fails the task campaigns whose process died between taking
// their slot and recording the provider's answer: the task may or may not
// exist at the provider, and creating it again could push twice.
func (s *Dispatcher) reapStale(ctx context.Context, app string) {
	refs, err := s.o.Queue.Stale(ctx, app, staleCreating)
	if err != nil {
		return
	}
	for _, ref := range refs {
		st, err := s.store.Status(ctx, ref.ID)
		if err != nil || st.Status.Final() {
			continue
		}
		_ = s.fail(ctx, ref.ID, &campaignFailure{field: "", message: "campaignd stopped while creating the provider task: it may or may not exist at the provider, and is not created again (that could push twice)"})
	}
}

// updateEstimates sets start_at of the app's waiting task campaigns to
// when the caps let each go, and publishes the ones that moved.
func (s *Dispatcher) updateEstimates(ctx context.Context, app string) {
	est, err := s.o.Queue.Estimates(ctx, app)
	if err != nil {
		return
	}
	for ref, at := range est {
		st, changed, err := s.store.SetStartAt(ctx, ref.ID, at, 200*time.Millisecond)
		if err == nil && changed {
			s.publish(ctx, st)
		}
	}
}

// control applies pause, resume and cancel to a task campaign's place
// in its queue; false for other kinds.
func (s *Dispatcher) control(ctx context.Context, id string, to campaigns.State) bool {
	c, err := s.campaign(ctx, id)
	if err != nil || s.o.Queue == nil {
		return false
	}
	k := s.kinds.task(c)
	if k == nil {
		return false
	}
	ref := taskRef(c, k)
	switch to {
	case campaigns.StateCancelled:
		s.forget(ctx, c, k)
	case campaigns.StatePaused:
		_ = s.o.Queue.Hold(ctx, c.App, ref, true)
	case campaigns.StateScheduled:
		_ = s.o.Queue.Hold(ctx, c.App, ref, false)
		s.kick(c.App)
	}
	s.updateEstimates(ctx, c.App)
	return true
}

// QueueTaskMarkers is the asynq queue where each waiting label push or broadcast
// shows in the UI, as a `campaign:task` task (TaskID `<id>:task`) whose
// last error says it waits for the task-window caps. It is deleted once
// the provider task is created (or the campaign ends); if it runs first,
// it only wakes this process's dispatcher.
const QueueTaskMarkers = "provider_tasks"

type markerPayload struct {
	ID    string `json:"id"`
	App   string `json:"app"`
	Kind  string `json:"kind"`
	Label string `json:"label,omitempty"`
}

func (s *Dispatcher) enqueueMarker(ctx context.Context, c *campaigns.Campaign) {
	payload, _ := json.Marshal(markerPayload{ID: c.ID, App: c.App, Kind: string(c.Kind), Label: c.Label})
	_, err := s.client.EnqueueContext(ctx, asynq.NewTask(TypeTaskMarker, payload), asynq.TaskID(c.ID+":task"),
		asynq.Queue(QueueTaskMarkers), asynq.MaxRetry(1), asynq.ProcessIn(markerRecheck))
	if err != nil && !errors.Is(err, asynq.ErrTaskIDConflict) {
		s.log.Debug().Err(err).Str("campaign", c.ID).Msg("task marker not enqueued")
	}
}

// markerRecheck is how often a waiting task's marker wakes the dispatcher.
const markerRecheck = 30 * time.Second

// dropMarker deletes a task campaign's UI marker. asynq refuses to delete
// a task while its handler runs; the marker's handler returns within
// milliseconds, so a refused delete is tried again in the background for a
// few seconds (bounded) rather than leaving the marker to its next run.
func (s *Dispatcher) dropMarker(id string) {
	if s.insp == nil {
		return
	}
	gone := func() bool {
		err := s.insp.DeleteTask(QueueTaskMarkers, id+":task")
		return err == nil || errors.Is(err, asynq.ErrTaskNotFound) || errors.Is(err, asynq.ErrQueueNotFound)
	}
	if gone() {
		return
	}
	s.background.Add(1)
	go func() {
		defer s.background.Done()
		for range markerDropTries {
			select {
			case <-s.closing:
				return // its next run finds the campaign done and ends it
			case <-time.After(markerDropEvery):
			}
			if gone() {
				return
			}
		}
		s.log.Debug().Str("campaign", id).Msg("task marker not deleted; its next run finds the campaign done and ends it")
	}()
}

const (
	markerDropTries = 50
	markerDropEvery = 100 * time.Millisecond
)

// handleMarker keeps a waiting task visible; the dispatchers create it.
func (s *Dispatcher) handleMarker(ctx context.Context, t *asynq.Task) error {
	var p markerPayload
	if err := json.Unmarshal(t.Payload(), &p); err != nil {
		return fmt.Errorf("task marker payload: %v: %w", err, asynq.SkipRetry)
	}
	st, err := s.store.Status(ctx, p.ID)
	if errors.Is(err, store.ErrNotFound) || (err == nil && (st.Status.Final() || st.Status == campaigns.StateRunning)) {
		return nil
	}
	if err != nil {
		return err
	}
	s.kick(p.App)
	msg := "waiting for the task-window caps"
	if st.StartAt != nil {
		msg += " (expected " + st.StartAt.UTC().Format(time.RFC3339) + ")"
	}
	if st.Status == campaigns.StatePaused {
		msg = "paused, keeping its place in the task queue"
	}
	// The task may have been created while this ran (its delete of this
	// marker is then retried until this run ends): end now if so.
	if st, err := s.store.Status(ctx, p.ID); err == nil && (st.Status.Final() || st.Status == campaigns.StateRunning) {
		return nil
	}
	return &retryLater{in: markerRecheck, reason: msg}
}
