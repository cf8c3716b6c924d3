package statusq

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
)

// gateSink is a Sink of this test: it records what it publishes,
// fails while failing is set (counting the attempts it refused), waits
// while its gate is shut, and takes a random moment per event when jitter
// is set.
type gateSink struct {
	mu      sync.Mutex
	events  []campaigns.Status
	gate    chan struct{} // nil: open
	failing bool
	refused int
	jitter  time.Duration
}

var errUnavailable = errors.New("gateSink: stream unavailable")

func (g *gateSink) Publish(ctx context.Context, st campaigns.Status) error {
	g.mu.Lock()
	gate, failing, jitter := g.gate, g.failing, g.jitter
	g.mu.Unlock()
	if gate != nil {
		select {
		case <-gate:
		case <-ctx.Done():
			return ctx.Err()
		}
	}
	if failing {
		g.mu.Lock()
		g.refused++
		g.mu.Unlock()
		return errUnavailable
	}
	if jitter > 0 {
		time.Sleep(rand.N(jitter)) // a slow stream: the time a publish takes, not a wait of the test
	}
	g.mu.Lock()
	g.events = append(g.events, st)
	g.mu.Unlock()
	return nil
}

func (g *gateSink) refusals() int {
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.refused
}

func (g *gateSink) of(id string) []campaigns.Status {
	g.mu.Lock()
	defer g.mu.Unlock()
	var out []campaigns.Status
	for _, e := range g.events {
		if e.ID == id {
			out = append(out, e)
		}
	}
	return out
}

type countDrops struct {
	mu      sync.Mutex
	dropped map[string]int
	pending int
}

func (c *countDrops) StatusEventDropped(reason string) {
	c.mu.Lock()
	c.dropped[reason]++
	c.mu.Unlock()
}

func (c *countDrops) StatusEventsPending(n int) {
	c.mu.Lock()
	c.pending = n
	c.mu.Unlock()
}

func (c *countDrops) get(reason string) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.dropped[reason]
}

func ev(id string, state campaigns.State, sent int64) campaigns.Status {
	return campaigns.Status{ID: id, Status: state, Sent: sent, At: time.Now().UTC()}
}

// inOrder fails unless evs is an ordered subsequence of the campaign's
// story: accepted, running with sent rising, then completed with sent n,
// and the first and final events are there.
func inOrder(t *testing.T, id string, evs []campaigns.Status, n int64) {
	t.Helper()
	if len(evs) < 2 || evs[0].Status != campaigns.StateAccepted || evs[len(evs)-1].Status != campaigns.StateCompleted || evs[len(evs)-1].Sent != n {
		t.Fatalf("%s: events %v", id, evs)
	}
	rank := map[campaigns.State]int{campaigns.StateAccepted: 0, campaigns.StateRunning: 1, campaigns.StateCompleted: 2}
	for i := 1; i < len(evs); i++ {
		a, b := evs[i-1], evs[i]
		if rank[b.Status] < rank[a.Status] || b.Sent < a.Sent {
			t.Fatalf("%s: event %d (%s, sent %d) after (%s, sent %d): a later status overtook an earlier one", id, i, b.Status, b.Sent, a.Status, a.Sent)
		}
	}
}

// Events of one campaign go out in order, while campaigns are published in
// parallel; Publish never waits for the sink.
func TestStatusQueueKeepsEachCampaignInOrder(t *testing.T) {
	t.Parallel()
	sk := &gateSink{jitter: 2 * time.Millisecond}
	q := New(sk, Options{Logger: zerolog.Nop()})
	q.Start()
	defer q.Close(time.Second)
	const camps, steps = 8, 200
	var wg sync.WaitGroup
	for c := range camps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("c%d", c)
			_ = q.Publish(context.Background(), ev(id, campaigns.StateAccepted, 0))
			for i := range steps {
				_ = q.Publish(context.Background(), ev(id, campaigns.StateRunning, int64(i)))
				if i%50 == 0 {
					// Every 50 steps the campaign's progress goes out before
					// it goes on (the other campaigns meanwhile do not wait):
					// the sink sees several of its running events, not only
					// the newest.
					if !testenv.Eventually(10*time.Second, func() bool {
						evs := sk.of(id)
						last := len(evs) - 1
						return last >= 0 && evs[last].Status == campaigns.StateRunning && evs[last].Sent >= int64(i)
					}) {
						t.Errorf("%s: running %d not published within 10 s", id, i)
						return
					}
				}
			}
			_ = q.Publish(context.Background(), ev(id, campaigns.StateCompleted, steps))
		}()
	}
	wg.Wait()
	testenv.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return q.Pending() == 0 })
	for c := range camps {
		id := fmt.Sprintf("c%d", c)
		evs := sk.of(id)
		inOrder(t, id, evs, steps)
		if len(evs) > steps/2 {
			t.Logf("%s: %d events published of %d (few coalesced)", id, len(evs), steps+2)
		}
	}
}

// A full queue drops what is not final to make room, never a final state
// (finals are kept beyond the bound): every campaign's final status is
// published once the sink answers again.
func TestStatusQueueFullDropsProgressNotFinals(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	sk := &gateSink{gate: gate}
	cnt := &countDrops{dropped: map[string]int{}}
	q := New(sk, Options{Capacity: 10, Workers: 1, Logger: zerolog.Nop(), Counters: cnt})
	q.Start()
	defer q.Close(time.Second)
	ctx := context.Background()
	// The worker holds "hold"'s first event at the shut gate.
	_ = q.Publish(ctx, ev("hold", campaigns.StateAccepted, 0))
	testenv.WaitUntil(t, time.Second, "first event taken", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.flying == 1 })
	const camps = 30
	for c := range camps {
		id := fmt.Sprintf("f%02d", c)
		_ = q.Publish(ctx, ev(id, campaigns.StateAccepted, 0))
		_ = q.Publish(ctx, ev(id, campaigns.StateRunning, 1))
		_ = q.Publish(ctx, ev(id, campaigns.StatePaused, 2))
		_ = q.Publish(ctx, ev(id, campaigns.StateRunning, 3))
		_ = q.Publish(ctx, ev(id, campaigns.StateCompleted, 4))
	}
	if n := q.Pending(); n != camps+1 {
		t.Fatalf("%d events pending, want the %d finals and the one in flight", n, camps)
	}
	if cnt.get(DropFull) == 0 {
		t.Fatal("nothing dropped from a full queue")
	}
	close(gate)
	testenv.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return q.Pending() == 0 })
	for c := range camps {
		id := fmt.Sprintf("f%02d", c)
		evs := sk.of(id)
		if len(evs) == 0 || evs[len(evs)-1].Status != campaigns.StateCompleted || evs[len(evs)-1].Sent != 4 {
			t.Fatalf("%s: the final status was lost: %v", id, evs)
		}
	}
	if cnt.get(DropRetries) != 0 || cnt.get(DropShutdown) != 0 {
		t.Fatalf("drops %v", cnt.dropped)
	}
	t.Logf("dropped for room: %d of %d events", cnt.get(DropFull), 5*camps)
}

// A full queue makes room by dropping the oldest waiting progress event
// (the same status again, newer counts) before any state change; a new
// progress event finding no progress to drop is dropped itself; a final
// state always gets in, in the place of the oldest state change.
func TestStatusQueueDropsProgressBeforeStateChanges(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	sk := &gateSink{gate: gate}
	cnt := &countDrops{dropped: map[string]int{}}
	q := New(sk, Options{Capacity: 3, Workers: 1, Logger: zerolog.Nop(), Counters: cnt})
	q.Start()
	defer q.Close(time.Second)
	ctx := context.Background()
	_ = q.Publish(ctx, ev("hold", campaigns.StateRunning, 1)) // taken, held at the gate
	testenv.WaitUntil(t, time.Second, "first event taken", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.flying == 1 })
	_ = q.Publish(ctx, ev("hold", campaigns.StateRunning, 2)) // progress
	_ = q.Publish(ctx, ev("a", campaigns.StateRunning, 1))
	_ = q.Publish(ctx, ev("a", campaigns.StateRunning, 2))    // coalesced into a's running
	_ = q.Publish(ctx, ev("b", campaigns.StateRunning, 1))    // the queue is full (3)
	_ = q.Publish(ctx, ev("c", campaigns.StateRunning, 1))    // drops hold's progress, not a state change
	_ = q.Publish(ctx, ev("hold", campaigns.StateRunning, 3)) // progress, nothing to drop for it: dropped
	_ = q.Publish(ctx, ev("d", campaigns.StateCompleted, 1))  // drops the oldest state change (a's)
	if n := cnt.get(DropFull); n != 3 {
		t.Fatalf("%d events dropped for room, want 3", n)
	}
	close(gate)
	testenv.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return q.Pending() == 0 })
	got := fmt.Sprint(states(sk.of("hold")), states(sk.of("a")), states(sk.of("b")), states(sk.of("c")), states(sk.of("d")))
	if want := "[running] [] [running] [running] [completed]"; got != want {
		t.Fatalf("published %s, want %s", got, want)
	}
	if evs := sk.of("hold"); evs[0].Sent != 1 {
		t.Fatalf("hold published sent %d, want 1 (its later progress was dropped)", evs[0].Sent)
	}
}

// Equal statuses waiting in a row coalesce: only the newest counts go out.
func TestStatusQueueCoalescesEqualStatuses(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	sk := &gateSink{gate: gate}
	q := New(sk, Options{Workers: 1, Logger: zerolog.Nop()})
	q.Start()
	defer q.Close(time.Second)
	ctx := context.Background()
	_ = q.Publish(ctx, ev("hold", campaigns.StateAccepted, 0))
	testenv.WaitUntil(t, time.Second, "first event taken", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.flying == 1 })
	for i := range 100 {
		_ = q.Publish(ctx, ev("hold", campaigns.StateRunning, int64(i)))
	}
	_ = q.Publish(ctx, ev("hold", campaigns.StateCompleted, 100))
	_ = q.Publish(ctx, ev("hold", campaigns.StateCompleted, 100)) // a final published twice
	if n := q.Pending(); n != 3 {
		t.Fatalf("%d events pending, want 3 (accepted in flight, running, completed)", n)
	}
	close(gate)
	testenv.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return q.Pending() == 0 })
	evs := sk.of("hold")
	if got := fmt.Sprint(states(evs)); got != "[accepted running completed]" || evs[1].Sent != 99 {
		t.Fatalf("published %s (running sent %d)", got, evs[1].Sent)
	}
}

func states(evs []campaigns.Status) []campaigns.State {
	out := make([]campaigns.State, len(evs))
	for i, e := range evs {
		out[i] = e.Status
	}
	return out
}

// A failing sink is retried; an event not published within RetryFor is
// dropped and counted, and the campaign's next event goes.
func TestStatusQueueRetriesThenGivesUp(t *testing.T) {
	t.Parallel()
	sk := &gateSink{failing: true}
	cnt := &countDrops{dropped: map[string]int{}}
	q := New(sk, Options{RetryFor: 300 * time.Millisecond, MinBackoff: 10 * time.Millisecond, MaxBackoff: 50 * time.Millisecond,
		Logger: zerolog.Nop(), Counters: cnt})
	q.Start()
	defer q.Close(time.Second)
	ctx := context.Background()
	_ = q.Publish(ctx, ev("r", campaigns.StateAccepted, 0))
	testenv.WaitFor(t, 2*time.Second, "the accepted event to be refused twice (retried)", func() (int, bool) {
		n := sk.refusals()
		return n, n >= 2
	})
	sk.mu.Lock()
	sk.failing = false // the stream is back within RetryFor
	sk.mu.Unlock()
	testenv.WaitUntil(t, 2*time.Second, "accepted published after retries", func() bool { return len(sk.of("r")) == 1 })
	sk.mu.Lock()
	sk.failing = true
	sk.mu.Unlock()
	_ = q.Publish(ctx, ev("r", campaigns.StateRunning, 1))
	testenv.WaitUntil(t, 2*time.Second, "running given up", func() bool { return cnt.get(DropRetries) == 1 })
	sk.mu.Lock()
	sk.failing = false
	sk.mu.Unlock()
	_ = q.Publish(ctx, ev("r", campaigns.StateCompleted, 2))
	testenv.WaitUntil(t, 2*time.Second, "completed published", func() bool { return len(sk.of("r")) == 2 })
	if got := fmt.Sprint(states(sk.of("r"))); got != "[accepted completed]" {
		t.Fatalf("published %s", got)
	}
}

// Close publishes what waits, for at most its flush time.
func TestStatusQueueCloseFlushesForABoundedTime(t *testing.T) {
	t.Parallel()
	sk := &gateSink{jitter: time.Millisecond}
	q := New(sk, Options{Workers: 1, Logger: zerolog.Nop()})
	q.Start()
	for i := range 50 {
		_ = q.Publish(context.Background(), ev(fmt.Sprintf("s%d", i), campaigns.StateCompleted, 1))
	}
	q.Close(5 * time.Second)
	for i := range 50 {
		if len(sk.of(fmt.Sprintf("s%d", i))) != 1 {
			t.Fatalf("s%d not flushed at Close", i)
		}
	}
	if err := q.Publish(context.Background(), ev("late", campaigns.StateCompleted, 1)); !errors.Is(err, ErrClosed) {
		t.Fatalf("Publish after Close: %v", err)
	}

	stuck := &gateSink{gate: make(chan struct{})}
	cnt := &countDrops{dropped: map[string]int{}}
	q = New(stuck, Options{Workers: 1, Logger: zerolog.Nop(), Counters: cnt})
	q.Start()
	for i := range 5 {
		_ = q.Publish(context.Background(), ev(fmt.Sprintf("s%d", i), campaigns.StateCompleted, 1))
	}
	t0 := time.Now()
	q.Close(300 * time.Millisecond)
	if took := time.Since(t0); took > time.Second {
		t.Fatalf("Close took %s with a flush time of 300ms", took)
	}
	if n := cnt.get(DropShutdown); n != 5 {
		t.Fatalf("%d events counted as dropped at shutdown, want 5", n)
	}
}

// natsStatus is a real NATS server with campaignd's streams, and the
// status queue in front of intake's publisher.
type natsStatus struct {
	n   *testenv.NATS
	js  jetstream.JetStream
	q   *Queue
	pub *failCount
}

// failCount is a Sink counting the publishes of the Sink it wraps that
// failed.
type failCount struct {
	Sink
	failed atomic.Int64
}

func (f *failCount) Publish(ctx context.Context, st campaigns.Status) error {
	err := f.Sink.Publish(ctx, st)
	if err != nil {
		f.failed.Add(1)
	}
	return err
}

func startNATSStatus(t *testing.T, o Options) *natsStatus {
	t.Helper()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL, nats.MaxReconnects(-1), nats.ReconnectWait(50*time.Millisecond),
		nats.ErrorHandler(func(*nats.Conn, *nats.Subscription, error) {})) // no "broken pipe" lines while the server is down
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := intake.EnsureStreams(ctx, js, intake.StreamOptions{}); err != nil {
		t.Fatal(err)
	}
	o.Logger = zerolog.Nop()
	pub := &failCount{Sink: intake.NewPublisher(js, zerolog.Nop())}
	q := New(pub, o)
	q.Start()
	t.Cleanup(func() { q.Close(time.Second) })
	return &natsStatus{n: n, js: js, q: q, pub: pub}
}

// read returns every status event of id in the stream, in stream order.
func (s *natsStatus) read(t *testing.T, id string) []campaigns.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := s.js.OrderedConsumer(ctx, intake.StreamStatus, jetstream.OrderedConsumerConfig{FilterSubjects: []string{intake.StatusSubject(id)}})
	if err != nil {
		t.Fatal(err)
	}
	var out []campaigns.Status
	for {
		batch, err := cons.FetchNoWait(500)
		if err != nil {
			t.Fatal(err)
		}
		n := 0
		for m := range batch.Messages() {
			var st campaigns.Status
			if err := json.Unmarshal(m.Data(), &st); err != nil {
				t.Fatal(err)
			}
			out = append(out, st)
			n++
		}
		if n == 0 {
			return out
		}
	}
}

// (real NATS) Events of one campaign arrive on campaigns.status.<id> in
// order.
func TestStatusQueueOrderOnNATS(t *testing.T) {
	t.Parallel()
	s := startNATSStatus(t, Options{})
	const camps, steps = 4, 300
	var wg sync.WaitGroup
	for c := range camps {
		wg.Add(1)
		go func() {
			defer wg.Done()
			id := fmt.Sprintf("ord-%d", c)
			_ = s.q.Publish(context.Background(), ev(id, campaigns.StateAccepted, 0))
			// One step every 200 µs (about a publish's round trip): many
			// of them go out, not only the newest.
			pace := time.NewTicker(200 * time.Microsecond)
			defer pace.Stop()
			for i := range steps {
				_ = s.q.Publish(context.Background(), ev(id, campaigns.StateRunning, int64(i)))
				<-pace.C
			}
			_ = s.q.Publish(context.Background(), ev(id, campaigns.StateCompleted, steps))
		}()
	}
	wg.Wait()
	testenv.WaitUntil(t, 10*time.Second, "queue drained", func() bool { return s.q.Pending() == 0 })
	for c := range camps {
		id := fmt.Sprintf("ord-%d", c)
		evs := s.read(t, id)
		inOrder(t, id, evs, steps)
		t.Logf("%s: %d events on NATS of %d published", id, len(evs), steps+2)
	}
}

// (real NATS) The NATS server is down: Publish still returns at once (the
// sending never waits), the queue fills up and drops progress, and once
// the server is back every campaign's final status arrives, after its
// earlier events.
func TestStatusQueueOutlastsANATSOutage(t *testing.T) {
	t.Parallel()
	cnt := &countDrops{dropped: map[string]int{}}
	s := startNATSStatus(t, Options{Capacity: 30, AttemptTimeout: 500 * time.Millisecond,
		MinBackoff: 20 * time.Millisecond, MaxBackoff: 200 * time.Millisecond, Counters: cnt})
	ctx := context.Background()
	const camps = 20
	for c := range camps {
		_ = s.q.Publish(ctx, ev(fmt.Sprintf("out-%02d", c), campaigns.StateAccepted, 0))
	}
	testenv.WaitUntil(t, 5*time.Second, "accepted events published", func() bool { return s.q.Pending() == 0 })

	s.n.Stop()
	down := time.Now()
	var slowest time.Duration
	for i := range 50 { // progress of every campaign while NATS is down
		for c := range camps {
			t0 := time.Now()
			_ = s.q.Publish(ctx, ev(fmt.Sprintf("out-%02d", c), campaigns.StateRunning, int64(i)))
			slowest = max(slowest, time.Since(t0))
		}
	}
	for c := range camps {
		t0 := time.Now()
		_ = s.q.Publish(ctx, ev(fmt.Sprintf("out-%02d", c), campaigns.StateCompleted, 50))
		slowest = max(slowest, time.Since(t0))
	}
	if slowest > 50*time.Millisecond {
		t.Fatalf("a Publish took %s while NATS was down", slowest)
	}
	if p := s.q.Pending(); p < camps {
		t.Fatalf("%d events pending while NATS is down, want at least the %d finals", p, camps)
	}
	// The queue keeps trying the stopped server: every publish attempt
	// times out (AttemptTimeout), and is tried again after a backoff.
	failedAtStop := s.pub.failed.Load()
	testenv.WaitFor(t, 20*time.Second, "8 publish attempts to fail against the stopped server (4 workers, twice each)", func() (int64, bool) {
		n := s.pub.failed.Load() - failedAtStop
		return n, n >= 8
	})
	pending := s.q.Pending()
	s.n.Restart(t)
	t.Logf("NATS down for %s; %d events pending, %d dropped for room", time.Since(down).Round(time.Millisecond), pending, cnt.get(DropFull))
	testenv.WaitUntil(t, 20*time.Second, "queue drained after NATS is back", func() bool { return s.q.Pending() == 0 })
	for c := range camps {
		id := fmt.Sprintf("out-%02d", c)
		inOrder(t, id, s.read(t, id), 50)
	}
	if cnt.get(DropRetries) != 0 {
		t.Fatalf("%d events given up (RetryFor is 2 minutes)", cnt.get(DropRetries))
	}
	if cnt.get(DropFull) == 0 {
		t.Fatal("the full queue dropped nothing")
	}
}

// Room made by dropping a campaign's only waiting event keeps one queue
// for that campaign (two would publish its events side by side).
func TestStatusQueueMakingRoomKeepsOneQueuePerCampaign(t *testing.T) {
	t.Parallel()
	gate := make(chan struct{})
	sk := &gateSink{gate: gate}
	q := New(sk, Options{Capacity: 1, Workers: 2, Logger: zerolog.Nop()})
	q.Start()
	defer q.Close(time.Second)
	ctx := context.Background()
	_ = q.Publish(ctx, ev("hold", campaigns.StateRunning, 1))
	testenv.WaitUntil(t, time.Second, "one taken", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.flying == 1 })
	_ = q.Publish(ctx, ev("hold2", campaigns.StateRunning, 1))
	testenv.WaitUntil(t, time.Second, "both taken", func() bool { q.mu.Lock(); defer q.mu.Unlock(); return q.flying == 2 })
	_ = q.Publish(ctx, ev("a", campaigns.StateRunning, 1))
	_ = q.Publish(ctx, ev("a", campaigns.StatePaused, 2)) // drops a's running, its only event
	_ = q.Publish(ctx, ev("a", campaigns.StateRunning, 3))
	q.mu.Lock()
	c := q.camps["a"]
	ok := c != nil && q.ready.Len() == 1 && q.ready.Front().Value == c && len(c.events) == 1 && c.events[0].st.Sent == 3
	q.mu.Unlock()
	if !ok {
		t.Fatal("the campaign's queue was lost or doubled while making room")
	}
	close(gate)
	testenv.WaitUntil(t, 5*time.Second, "queue drained", func() bool { return q.Pending() == 0 })
	if evs := sk.of("a"); len(evs) != 1 || evs[0].Sent != 3 {
		t.Fatalf("a published %v", evs)
	}
}
