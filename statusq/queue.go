// Package statusq is the ordered, bounded, retrying publisher in front of
// campaignd's status events: the worker and the intake hand it a status
// and go on; it publishes each campaign's events in order on the sink.
package statusq

import (
	"cmp"
	"container/list"
	"context"
	"errors"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/optcheck"
)

// Sink publishes a status event (campaigns.status.<id>): the JetStream
// publisher, which waits for the stream's ack.
type Sink interface {
	Publish(ctx context.Context, st campaigns.Status) error
}

// Queue is a Sink that never makes its caller wait: Publish
// queues the event and returns at once, and a few goroutines hand the
// events to the underlying sink (a JetStream publish that waits for the
// stream's ack).
//
//   - Order: the events of one campaign are published one at a time, in
//     the order they were queued, so a later status never overtakes an
//     earlier one on campaigns.status.<id> (campaigns are published in
//     parallel with each other).
//   - Coalescing: an event whose status is the same as the campaign's last
//     queued, not yet published event replaces it (only the newest counts
//     of a state matter), so a campaign holds few pending events however
//     often its progress is published.
//   - Retries: a failed publish (no stream leader, NATS reconnecting) is
//     tried again with backoff (100 ms doubling to 5 s, each attempt given
//     5 s) for up to RetryFor (2 min) from its first attempt; then it is
//     dropped with a warning, and the campaign's next event is tried.
//   - Bound: at most Capacity events wait. When it is full, the oldest
//     waiting progress event (a status repeated without a state change) is
//     dropped first, then the oldest other non-final one; a final state is
//     never dropped for room (it is kept beyond the bound: there is at most
//     one waiting per campaign, as equal statuses coalesce).
//   - Close flushes for a bounded time, then drops what is left.
//
// The events outlive the caller's context: Publish ignores it.
type Queue struct {
	sink Sink
	o    Options
	log  zerolog.Logger

	mu      sync.Mutex
	cond    *sync.Cond
	camps   map[string]*campaignEvents
	ready   list.List    // *campaignEvents with waiting events and none in flight, in turn
	byClass [3]list.List // waiting *queuedEvent by class, oldest first
	waiting int          // events queued, not yet taken
	flying  int          // events being published
	last    map[string]campaigns.State
	closed  bool // no more events taken
	stopped bool // workers end

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Options configure a Queue.
type Options struct {
	Capacity       int           // events waiting at most (finals excepted); default 10,000
	Workers        int           // campaigns published at once; default 4
	RetryFor       time.Duration // how long an event is retried from its first attempt; default 2m
	AttemptTimeout time.Duration // one publish attempt; default 5s
	MinBackoff     time.Duration // first wait after a failure; default 100ms
	MaxBackoff     time.Duration // longest wait between attempts; default 5s
	Logger         zerolog.Logger
	Counters       Counters    // optional
	Clock          clock.Clock // default the wall clock
}

// Counters receives the queue's figures for /metrics.
type Counters interface {
	StatusEventDropped(reason string) // "full", "retries", "shutdown"
	StatusEventsPending(n int)        // events waiting or in flight
}

type noCounters struct{}

func (noCounters) StatusEventDropped(string) {}
func (noCounters) StatusEventsPending(int)   {}

// Drop reasons.
const (
	DropFull     = "full"     // the queue was full: a progress (or other non-final) event made room
	DropRetries  = "retries"  // not published within RetryFor
	DropShutdown = "shutdown" // still waiting when Close's flush time ran out
)

// ErrClosed is Publish's answer after Close.
var ErrClosed = errors.New("statusq: queue closed")

type eventClass int

const (
	classProgress eventClass = iota // the same status again: newer counts
	classState                      // a state change, or an answer (accepted, duplicate)
	classFinal                      // a final state: never dropped for room
)

type queuedEvent struct {
	st    campaigns.Status
	class eventClass
	elem  *list.Element // in byClass[class]
	camp  *campaignEvents
}

type campaignEvents struct {
	id     string
	events []*queuedEvent // waiting, oldest first
	flying bool           // its head is being published
	elem   *list.Element  // in ready, or nil
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o Options) WithDefaults() Options {
	o.Capacity = cmp.Or(o.Capacity, 10_000)
	o.Workers = cmp.Or(o.Workers, 4)
	o.RetryFor = cmp.Or(o.RetryFor, 2*time.Minute)
	o.AttemptTimeout = cmp.Or(o.AttemptTimeout, 5*time.Second)
	o.MinBackoff = cmp.Or(o.MinBackoff, 100*time.Millisecond)
	o.MaxBackoff = cmp.Or(o.MaxBackoff, 5*time.Second)
	if o.Counters == nil {
		o.Counters = noCounters{}
	}
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return o
}

// validate reports the fields out of range of options whose defaults are
// filled in; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("statusq: Options")
	c.Positive(o, "Capacity", "Workers", "RetryFor", "AttemptTimeout", "MinBackoff")
	c.Check("MaxBackoff", o.MaxBackoff >= o.MinBackoff, o.MaxBackoff)
	return c.Err()
}

// New returns a queue in front of sink. Start starts its
// publishers; events queued before are kept.
func New(sink Sink, o Options) *Queue {
	o = o.WithDefaults()
	if err := o.validate(); err != nil {
		panic(err)
	}
	q := &Queue{sink: sink, o: o, log: o.Logger, camps: map[string]*campaignEvents{}, last: map[string]campaigns.State{}}
	q.cond = sync.NewCond(&q.mu)
	q.ctx, q.cancel = context.WithCancel(context.Background())
	return q
}

// Start starts the publishers.
func (q *Queue) Start() {
	for range q.o.Workers {
		q.wg.Add(1)
		go q.run()
	}
}

// Publish queues st and returns at once.
func (q *Queue) Publish(_ context.Context, st campaigns.Status) error {
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.closed {
		q.o.Counters.StatusEventDropped(DropShutdown)
		return ErrClosed
	}
	class := q.classify(st)
	c := q.camps[st.ID]
	if c == nil {
		c = &campaignEvents{id: st.ID}
		q.camps[st.ID] = c
	}
	if n := len(c.events); n > 0 && c.events[n-1].st.Status == st.Status {
		tail := c.events[n-1]
		tail.st = st // the newest counts of the same status
		if class > tail.class {
			q.byClass[tail.class].Remove(tail.elem)
			tail.class = class
			tail.elem = q.byClass[class].PushBack(tail)
		}
		return nil
	}
	if q.waiting >= q.o.Capacity && !q.makeRoom(class) {
		q.o.Counters.StatusEventDropped(DropFull)
		q.log.Warn().Str("campaign", st.ID).Str("status", string(st.Status)).Int("capacity", q.o.Capacity).
			Msg("status queue full: event dropped")
		if len(c.events) == 0 && !c.flying {
			delete(q.camps, c.id)
		}
		return nil
	}
	q.camps[st.ID] = c // again: making room may have emptied and forgotten it
	ev := &queuedEvent{st: st, class: class, camp: c}
	ev.elem = q.byClass[class].PushBack(ev)
	c.events = append(c.events, ev)
	q.waiting++
	if !c.flying && c.elem == nil {
		c.elem = q.ready.PushBack(c)
		q.cond.Signal()
	}
	q.o.Counters.StatusEventsPending(q.waiting + q.flying)
	return nil
}

// classify tells a progress event (the campaign's previous event had the
// same status) from a state change or an answer, and a final state.
func (q *Queue) classify(st campaigns.Status) eventClass {
	if st.Status.Final() {
		delete(q.last, st.ID)
		return classFinal
	}
	if st.Status == campaigns.StateDuplicate { // an answer, not a state of the campaign
		return classState
	}
	prev, seen := q.last[st.ID]
	if len(q.last) >= 100_000 {
		clear(q.last)
	}
	q.last[st.ID] = st.Status
	if seen && prev == st.Status {
		return classProgress
	}
	return classState
}

// makeRoom drops the oldest waiting progress event, or else the oldest
// waiting non-final one, for an event of class c; false if the new event
// itself is the one to drop. A final event always gets in.
func (q *Queue) makeRoom(c eventClass) bool {
	for _, victim := range []eventClass{classProgress, classState} {
		if victim > c && c != classFinal {
			break
		}
		if e := q.byClass[victim].Front(); e != nil {
			ev := e.Value.(*queuedEvent)
			q.remove(ev)
			q.o.Counters.StatusEventDropped(DropFull)
			q.log.Warn().Str("campaign", ev.st.ID).Str("status", string(ev.st.Status)).Int("capacity", q.o.Capacity).
				Msg("status queue full: an older event dropped")
			return true
		}
	}
	return c == classFinal
}

// remove takes a waiting event out of the queue (not the one in flight).
func (q *Queue) remove(ev *queuedEvent) {
	q.byClass[ev.class].Remove(ev.elem)
	c := ev.camp
	for i, e := range c.events {
		if e == ev {
			c.events = append(c.events[:i], c.events[i+1:]...)
			break
		}
	}
	q.waiting--
	if len(c.events) == 0 && !c.flying {
		if c.elem != nil {
			q.ready.Remove(c.elem)
			c.elem = nil
		}
		delete(q.camps, c.id)
	}
}

// take waits for a campaign whose turn it is and takes its oldest event.
func (q *Queue) take() (*queuedEvent, bool) {
	q.mu.Lock()
	defer q.mu.Unlock()
	for q.ready.Len() == 0 && !q.stopped {
		q.cond.Wait()
	}
	if q.stopped {
		return nil, false
	}
	c := q.ready.Remove(q.ready.Front()).(*campaignEvents)
	c.elem = nil
	ev := c.events[0]
	c.events = c.events[1:]
	q.byClass[ev.class].Remove(ev.elem)
	q.waiting--
	q.flying++
	c.flying = true
	return ev, true
}

// done ends an event's turn: its campaign's next event may go.
func (q *Queue) done(ev *queuedEvent) {
	q.mu.Lock()
	defer q.mu.Unlock()
	c := ev.camp
	c.flying = false
	q.flying--
	if len(c.events) > 0 {
		c.elem = q.ready.PushBack(c)
		q.cond.Signal()
	} else {
		delete(q.camps, c.id)
	}
	q.o.Counters.StatusEventsPending(q.waiting + q.flying)
	if q.closed {
		q.cond.Broadcast() // Close waits for the queue to empty
	}
}

func (q *Queue) run() {
	defer q.wg.Done()
	for {
		ev, ok := q.take()
		if !ok {
			return
		}
		q.send(ev)
		q.done(ev)
	}
}

// send publishes one event, retrying with backoff for up to RetryFor.
func (q *Queue) send(ev *queuedEvent) {
	first := q.o.Clock.Now()
	wait := q.o.MinBackoff
	for attempt := 1; ; attempt++ {
		actx, cancel := context.WithTimeout(q.ctx, q.o.AttemptTimeout)
		err := q.sink.Publish(actx, ev.st)
		cancel()
		if err == nil {
			if attempt > 1 {
				q.log.Info().Str("campaign", ev.st.ID).Str("status", string(ev.st.Status)).Int("attempts", attempt).
					Dur("after", q.o.Clock.Now().Sub(first)).Msg("status event published after retries")
			}
			return
		}
		log := q.log.Warn().Err(err).Str("campaign", ev.st.ID).Str("status", string(ev.st.Status)).Int("attempts", attempt)
		switch {
		case q.ctx.Err() != nil:
			q.o.Counters.StatusEventDropped(DropShutdown)
			log.Msg("status event dropped: shutting down")
			return
		case q.o.Clock.Now().Sub(first)+wait > q.o.RetryFor:
			q.o.Counters.StatusEventDropped(DropRetries)
			log.Dur("retried_for", q.o.Clock.Now().Sub(first)).Msg("status event dropped: not published in time")
			return
		case attempt == 1:
			log.Msg("status event not published yet; retrying")
		}
		t := time.NewTimer(wait)
		select {
		case <-t.C:
		case <-q.ctx.Done():
			t.Stop()
		}
		wait = min(2*wait, q.o.MaxBackoff)
	}
}

// Pending is how many events wait or are being published.
func (q *Queue) Pending() int {
	q.mu.Lock()
	defer q.mu.Unlock()
	return q.waiting + q.flying
}

// Close stops taking events, publishes what waits for up to flush, then
// stops the publishers; what is left is dropped (and logged). Safe to call
// twice.
func (q *Queue) Close(flush time.Duration) {
	q.mu.Lock()
	if q.closed {
		q.mu.Unlock()
		return
	}
	q.closed = true
	timer := time.AfterFunc(flush, func() {
		q.mu.Lock()
		q.cond.Broadcast()
		q.mu.Unlock()
	})
	deadline := q.o.Clock.Now().Add(flush)
	for q.waiting+q.flying > 0 && q.o.Clock.Now().Before(deadline) {
		q.cond.Wait()
	}
	timer.Stop()
	left := q.waiting
	q.stopped = true
	q.cond.Broadcast()
	q.mu.Unlock()
	q.cancel() // an attempt in flight ends now
	q.wg.Wait()
	if left > 0 {
		for range left {
			q.o.Counters.StatusEventDropped(DropShutdown)
		}
		q.log.Warn().Int("events", left).Dur("flush", flush).Msg("status events not published before shutdown")
	}
	q.mu.Lock()
	q.o.Counters.StatusEventsPending(0)
	q.mu.Unlock()
}
