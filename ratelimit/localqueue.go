package ratelimit

import (
	"container/heap"
	"context"
	"fmt"
	"math"
	"strings"
	"time"
)

// The local queue of one key set in one process. At most `places` callers
// hold a place (a reservation booked, or about to be) at once; the others
// wait here without asking Redis, served by priority (lower first), then
// fairly between flows of one priority (each flow — a campaign — gets its
// turn: start-time fair queueing), then in arrival order. A holder whose
// slot comes but who must not send (its check failed), or who sees a waiter
// of a better priority, hands its reservation to the best waiter instead of
// wasting it; so the decision to send is taken at the slot, not at the
// queue.

type handoff struct {
	r *Reservation // nil: a place, with nothing booked yet
}

type waiter struct {
	prio  int
	tag   uint64 // fair-queue tag within prio
	seq   uint64 // arrival order
	flow  string
	ch    chan handoff // buffered 1
	index int          // in the heap; -1 once served or gone
}

type waiterHeap []*waiter

func (h waiterHeap) Len() int { return len(h) }
func (h waiterHeap) Less(i, j int) bool {
	a, b := h[i], h[j]
	if a.prio != b.prio {
		return a.prio < b.prio
	}
	if a.tag != b.tag {
		return a.tag < b.tag
	}
	return a.seq < b.seq
}
func (h waiterHeap) Swap(i, j int) {
	h[i], h[j] = h[j], h[i]
	h[i].index, h[j].index = i, j
}
func (h *waiterHeap) Push(x any) {
	w := x.(*waiter)
	w.index = len(*h)
	*h = append(*h, w)
}
func (h *waiterHeap) Pop() any {
	old := *h
	w := old[len(old)-1]
	old[len(old)-1] = nil
	*h = old[:len(old)-1]
	w.index = -1
	return w
}

type flowState struct {
	last    uint64 // tag of its last waiter
	waiting int
}

// sleeper is a holder waiting for its booked slot. A holder of a worse
// priority whose earlier slot comes swaps slots with it: the better one
// sends now, the other waits for the later slot.
type sleeper struct {
	prio  int
	at    time.Time
	swap  chan Reservation // the earlier slot, handed in (buffered 1)
	back  chan Reservation // its own slot, handed back (buffered 1)
	taken bool             // a swap is on its way
}

type localQueue struct {
	sleepers map[*sleeper]struct{}
	places   int
	backlog  int // most callers (holders and waiters of a priority or better) before a new one is refused
	held     int
	waiters  waiterHeap
	seq      uint64
	vclock   map[int]uint64 // per priority: tag of the last one served
	flows    map[string]*flowState
}

func newLocalQueue(places, backlog int) *localQueue {
	return &localQueue{places: places, backlog: max(backlog, places), vclock: map[int]uint64{}, flows: map[string]*flowState{},
		sleepers: map[*sleeper]struct{}{}}
}

// ahead counts the holders and the waiters a caller of priority prio would
// wait behind (or beside).
func (q *localQueue) ahead(prio int) int {
	n := q.held
	for _, w := range q.waiters {
		if w.prio <= prio {
			n++
		}
	}
	return n
}

// underShare reports whether flow has fewer callers waiting than its
// share of the backlog among the flows waiting: such a caller is let in
// past the bound, as its turn comes among the first (the flows of one
// priority are served in turn), so that a campaign that comes while
// another fills the backlog gets its share at once rather than going
// back to its queue again and again.
func (q *localQueue) underShare(flow string) bool {
	if flow == "" {
		return false
	}
	n, mine := len(q.flows), 0
	if f := q.flows[flow]; f != nil {
		mine = f.waiting
	} else {
		n++
	}
	return mine*n < q.backlog-q.held
}

func (q *localQueue) push(prio int, flow string) *waiter {
	f := q.flows[flow]
	if f == nil {
		f = &flowState{}
		q.flows[flow] = f
	}
	tag := max(q.vclock[prio], f.last) + 1
	f.last = tag
	f.waiting++
	q.seq++
	w := &waiter{prio: prio, tag: tag, seq: q.seq, flow: flow, ch: make(chan handoff, 1)}
	heap.Push(&q.waiters, w)
	return w
}

func (q *localQueue) served(w *waiter) {
	if w.tag > q.vclock[w.prio] {
		q.vclock[w.prio] = w.tag
	}
	if f := q.flows[w.flow]; f != nil {
		f.waiting--
		if f.waiting <= 0 && f.last <= q.vclock[w.prio] {
			delete(q.flows, w.flow)
		}
	}
}

// remove takes a waiter that gave up out of the queue (false if it was
// served meanwhile: it holds a place then).
func (q *localQueue) remove(w *waiter) bool {
	if w.index < 0 {
		return false
	}
	heap.Remove(&q.waiters, w.index)
	w.index = -1
	q.served(w)
	return true
}

// next pops the best waiter, if any.
func (q *localQueue) next() *waiter {
	if len(q.waiters) == 0 {
		return nil
	}
	w := heap.Pop(&q.waiters).(*waiter)
	q.served(w)
	return w
}

// best returns the best waiter's priority (ok false when none waits).
func (q *localQueue) best() (int, bool) {
	if len(q.waiters) == 0 {
		return 0, false
	}
	return q.waiters[0].prio, true
}

// order is a call's place in the local queues: its priority (lower first)
// and its flow (callers of one flow are served in turn with other flows of
// the same priority).
type order struct {
	prio int
	flow string
}

type orderKey struct{}

// WithOrder gives the gated calls made with ctx a priority (lower is served
// first: 0 high, 1 normal, 2 low) and a flow (e.g. the campaign id: flows
// of one priority share the rate in turn).
func WithOrder(ctx context.Context, prio int, flow string) context.Context {
	return context.WithValue(ctx, orderKey{}, order{prio: prio, flow: flow})
}

func orderOf(ctx context.Context) order {
	o, ok := ctx.Value(orderKey{}).(order)
	if !ok {
		return order{prio: 1}
	}
	return o
}

// CheckFunc decides, when a call's slot has come, whether it may still be
// sent; an error keeps it from being sent and is returned to the caller.
type CheckFunc func(ctx context.Context) error

type checkKey struct{}

// WithCheck makes every gated call made with ctx run check right before it
// is sent (after the wait for its slot), and once before it books a slot
// if it waited for a place. A call that fails it sends nothing; its slot
// goes to the next waiter of the process.
func WithCheck(ctx context.Context, check CheckFunc) context.Context {
	return context.WithValue(ctx, checkKey{}, check)
}

func checkOf(ctx context.Context) CheckFunc {
	c, _ := ctx.Value(checkKey{}).(CheckFunc)
	return c
}

type giveUpKey struct{}

// WithGiveUp makes the gated calls made with ctx stop waiting — for a place
// or for their slot, never once granted — when giveUp is closed: they
// return a *RateLimited (RetryIn Options.Backlog.Retry) and their slot goes
// to the next waiter. A batch task closes it when one of its calls must
// come back later anyway, so that its other calls do not hold the worker.
func WithGiveUp(ctx context.Context, giveUp <-chan struct{}) context.Context {
	return context.WithValue(ctx, giveUpKey{}, giveUp)
}

func giveUpOf(ctx context.Context) <-chan struct{} {
	c, _ := ctx.Value(giveUpKey{}).(<-chan struct{})
	return c
}

// ticket is a caller's place in a local queue.
type ticket struct {
	l      *Limiter
	q      *localQueue
	o      order
	handed *Reservation // a reservation handed over with the place
	waited bool         // the caller waited for its place
	done   bool
}

// release gives the place back (to the best waiter, if any).
func (t *ticket) release() {
	if t == nil || t.q == nil || t.done {
		return
	}
	t.done = true
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	if w := t.q.next(); w != nil {
		w.ch <- handoff{}
		return
	}
	t.q.held--
}

// handOver gives the place and reservation r to the best waiter, if there
// is one; false means nobody waits (the caller still holds its place).
func (t *ticket) handOver(r Reservation) bool {
	if t == nil || t.q == nil || t.done {
		return false
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	w := t.q.next()
	if w == nil {
		return false
	}
	t.done = true
	w.ch <- handoff{r: &r}
	return true
}

// sleep registers the holder as waiting for its slot r.
func (t *ticket) sleep(r Reservation) *sleeper {
	if t == nil || t.q == nil {
		return nil
	}
	sl := &sleeper{prio: t.o.prio, at: r.SendAt, swap: make(chan Reservation, 1), back: make(chan Reservation, 1)}
	t.l.mu.Lock()
	t.q.sleepers[sl] = struct{}{}
	t.l.mu.Unlock()
	return sl
}

// wake unregisters a holder whose timer fired; swapped is true when a swap
// was on its way: the holder then takes the earlier slot from sl.swap.
func (t *ticket) wake(sl *sleeper) (swapped bool) {
	if sl == nil {
		return false
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	delete(t.q.sleepers, sl)
	return sl.taken
}

// swapDown gives slot r, which has come, to the holder of the best
// priority better than this one's that waits for a later slot, and returns
// that holder's slot (ok false when there is none).
func (t *ticket) swapDown(r Reservation) (Reservation, bool) {
	if t == nil || t.q == nil {
		return Reservation{}, false
	}
	t.l.mu.Lock()
	var best *sleeper
	for sl := range t.q.sleepers {
		if sl.taken || sl.prio >= t.o.prio || !sl.at.After(r.SendAt) {
			continue
		}
		if best == nil || sl.prio < best.prio || (sl.prio == best.prio && sl.at.Before(best.at)) {
			best = sl
		}
	}
	if best == nil {
		t.l.mu.Unlock()
		return Reservation{}, false
	}
	best.taken = true
	delete(t.q.sleepers, best)
	t.l.mu.Unlock()
	best.swap <- r
	return <-best.back, true
}

// outranked reports whether a waiter of a strictly better priority waits.
func (t *ticket) outranked() bool {
	if t == nil || t.q == nil {
		return false
	}
	t.l.mu.Lock()
	defer t.l.mu.Unlock()
	p, ok := t.q.best()
	return ok && p < t.o.prio
}

// enter takes a place in the process's queue for rates' keys (see
// Options.LocalAhead and Options.Backlog). A caller that would wait behind
// more than the backlog, or for longer than MaxWait, gets a *RateLimited.
func (l *Limiter) enter(ctx context.Context, rates []Rate) (*ticket, error) {
	var id strings.Builder
	minRate := math.Inf(1)
	for _, r := range rates {
		if r.PerSecond <= 0 || math.IsInf(r.PerSecond, 1) || math.IsNaN(r.PerSecond) {
			continue
		}
		id.WriteString(r.Key)
		id.WriteByte(0)
		minRate = min(minRate, r.PerSecond)
	}
	if id.Len() == 0 || l.opts.LocalAhead < 0 {
		return &ticket{l: l}, nil
	}
	o := orderOf(ctx)
	places := int(min(max(math.Ceil(minRate*l.opts.LocalAhead.Seconds()), 1), maxPlaces))
	backlog := math.MaxInt
	if l.opts.Backlog.Time > 0 {
		backlog = int(min(max(math.Ceil(minRate*l.opts.Backlog.Time.Seconds()), float64(places+l.opts.Backlog.Min)), math.MaxInt32))
	}
	l.mu.Lock()
	q, ok := l.queues[id.String()]
	if !ok || q.places != places {
		if len(l.queues) >= maxQueues {
			clear(l.queues) // holders still release into their own queue
		}
		q = newLocalQueue(places, backlog)
		l.queues[id.String()] = q
	}
	if q.held < q.places && len(q.waiters) == 0 {
		q.held++
		l.mu.Unlock()
		return &ticket{l: l, q: q, o: o}, nil
	}
	if ahead := q.ahead(o.prio); ahead >= q.backlog && !q.underShare(o.flow) {
		l.mu.Unlock()
		return nil, &RateLimited{Key: rates[0].Key, RetryIn: l.backlogRetry(ahead, minRate), Backlog: true}
	}
	w := q.push(o.prio, o.flow)
	l.mu.Unlock()

	t := time.NewTimer(l.opts.MaxWait)
	defer t.Stop()
	select {
	case h := <-w.ch:
		return &ticket{l: l, q: q, o: o, handed: h.r, waited: true}, nil
	case <-giveUpOf(ctx):
		if !l.leave(q, w) {
			l.taken(q, o, w).giveBack()
		}
		return nil, &RateLimited{Key: rates[0].Key, RetryIn: l.opts.Backlog.Retry, Backlog: true}
	case <-t.C:
		if !l.leave(q, w) {
			return l.taken(q, o, w), nil
		}
		return nil, &RateLimited{Key: rates[0].Key, RetryIn: l.opts.MaxWait}
	case <-ctx.Done():
		if !l.leave(q, w) {
			l.taken(q, o, w).giveBack()
		}
		return nil, fmt.Errorf("ratelimit: wait: %w", ctx.Err())
	}
}

// leave takes a waiter that gave up out of its queue; false means it was
// served meanwhile (its place, or a handed slot, is on its channel).
func (l *Limiter) leave(q *localQueue, w *waiter) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	return q.remove(w)
}

// taken is the ticket of a waiter served just as it gave up.
func (l *Limiter) taken(q *localQueue, o order, w *waiter) *ticket {
	h := <-w.ch
	return &ticket{l: l, q: q, o: o, handed: h.r, waited: true}
}

// giveBack passes a place (and a handed reservation, if any) on.
func (t *ticket) giveBack() {
	if t.handed != nil && t.handOver(*t.handed) {
		return
	}
	t.release()
}

// backlogRetry is when a caller refused for a full backlog should come
// back: when the ahead calls before it have about BacklogLead left to go,
// at least minBacklogRetry and at most BacklogRetry. With a fixed second,
// a batch task refused at a full 2 s backlog came back 1–2 s later
// (asynq forwards it up to a second late), often after the key's queue
// had run out: gaps of half a second at the end of campaigns (make
// bench-apps, BENCH_GAPS=1).
func (l *Limiter) backlogRetry(ahead int, perSecond float64) time.Duration {
	drain := time.Duration(ahead) * l.Spacing(perSecond)
	return min(max(drain-l.opts.Backlog.Lead, minBacklogRetry), l.opts.Backlog.Retry)
}

const minBacklogRetry = 100 * time.Millisecond
