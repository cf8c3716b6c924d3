package worker

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
)

// flightSetup is an inFlight of n slots and a way to queue named waiters
// on it one after another (each is queued before the next starts).
type flightSetup struct {
	t   *testing.T
	f   *inFlight
	got chan string // the names of waiters that got a slot, in order
}

func setupFlight(t *testing.T, n int) *flightSetup {
	t.Helper()
	return &flightSetup{t: t, f: newInFlight(n), got: make(chan string, 100)}
}

func (s *flightSetup) queued() int {
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	n := 0
	for _, m := range s.f.waiters {
		for _, q := range m {
			n += len(q)
		}
	}
	return n
}

// wait queues a waiter of app at priority p, named name; its error, if
// any, is sent on errc.
func (s *flightSetup) wait(ctx context.Context, name, app string, p campaigns.Priority, giveUp <-chan struct{}, errc chan<- error) {
	s.t.Helper()
	before := s.queued()
	go func() {
		if err := s.f.acquire(ctx, app, p, giveUp); err != nil {
			errc <- err
			return
		}
		s.got <- name
	}()
	testenv.WaitUntil(s.t, 5*time.Second, name+" to queue", func() bool { return s.queued() == before+1 })
}

func (s *flightSetup) next() string {
	s.t.Helper()
	select {
	case name := <-s.got:
		return name
	case <-time.After(5 * time.Second):
		s.t.Fatal("no waiter got the slot")
		return ""
	}
}

// A freed slot goes to the best priority first, then to the app holding
// the fewest slots, then in arrival order: an app whose backlog holds
// every slot does not keep another app waiting behind its queue.
func TestInFlightSharesSlotsBetweenApps(t *testing.T) {
	t.Parallel()
	s := setupFlight(t, 3)
	ctx := context.Background()
	for range 3 { // app a holds every slot
		if err := s.f.acquire(ctx, "a", campaigns.PriorityNormal, nil); err != nil {
			t.Fatal(err)
		}
	}
	errc := make(chan error, 10)
	s.wait(ctx, "a1", "a", campaigns.PriorityNormal, nil, errc)
	s.wait(ctx, "a2", "a", campaigns.PriorityNormal, nil, errc)
	s.wait(ctx, "b1", "b", campaigns.PriorityNormal, nil, errc)
	s.wait(ctx, "b2", "b", campaigns.PriorityNormal, nil, errc)
	s.wait(ctx, "c1", "c", campaigns.PriorityLow, nil, errc)
	s.wait(ctx, "a-high", "a", campaigns.PriorityHigh, nil, errc)

	// Held at first: a 3. The comments give what is held after each step.
	want := []struct{ from, to string }{
		{"a", "a-high"}, // a 3: the high waiter first, whatever its app holds
		{"a", "b1"},     // a 2, b 1: b held fewer
		{"a", "a1"},     // a 2, b 1: a tie (1 each), a1 came before b2
		{"b", "b2"},     // a 2, b 1: b held fewer
		{"a", "a2"},     // a 2, b 1: a's is the last normal waiter
		{"a", "c1"},     // a 1, b 1, c 1: only the low waiter is left
	}
	for i, w := range want {
		s.f.release(w.from)
		if got := s.next(); got != w.to {
			t.Fatalf("release %d (by %s): %s got the slot, want %s", i, w.from, got, w.to)
		}
	}
	select {
	case err := <-errc:
		t.Fatalf("a waiter failed: %v", err)
	default:
	}
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.free != 0 || s.f.held["a"]+s.f.held["b"]+s.f.held["c"] != 3 {
		t.Fatalf("free %d, held %v: want 0 free and 3 held", s.f.free, s.f.held)
	}
}

// A waiter that gives up (its task comes back later) or whose context ends
// leaves the queue; the slot it would have got goes to the next waiter, and
// released slots are free again once nobody waits.
func TestInFlightWaitersThatStopLeaveTheQueue(t *testing.T) {
	t.Parallel()
	s := setupFlight(t, 1)
	bg := context.Background()
	if err := s.f.acquire(bg, "a", campaigns.PriorityNormal, nil); err != nil {
		t.Fatal(err)
	}
	giveUp := make(chan struct{})
	ctx, cancel := context.WithCancel(bg)
	errc := make(chan error, 10)
	s.wait(bg, "gives-up", "b", campaigns.PriorityNormal, giveUp, errc)
	s.wait(ctx, "cancelled", "c", campaigns.PriorityNormal, nil, errc)
	s.wait(bg, "stays", "d", campaigns.PriorityNormal, nil, errc)
	close(giveUp)
	cancel()
	for range 2 {
		select {
		case err := <-errc:
			if !errors.Is(err, errGaveUp) && !errors.Is(err, context.Canceled) {
				t.Fatalf("a stopped waiter got %v, want errGaveUp or context.Canceled", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("a stopped waiter did not return")
		}
	}
	s.f.release("a")
	if got := s.next(); got != "stays" {
		t.Fatalf("%s got the slot, want the waiter that stayed", got)
	}
	s.f.release("d")
	queued := s.queued()
	s.f.mu.Lock()
	defer s.f.mu.Unlock()
	if s.f.free != 1 || len(s.f.held) != 0 || queued != 0 {
		t.Fatalf("free %d, held %v, %d waiting: want 1 free, none held or waiting", s.f.free, s.f.held, queued)
	}
}
