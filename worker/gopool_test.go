package worker

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/campaignd/campaignd/internal/testenv"
)

// The pool runs every function once, as many at once as are given it,
// reuses its goroutines for functions given one after another, and ends
// the goroutines left idle.
func TestGoPoolRunsEachOnceAndReusesGoroutines(t *testing.T) {
	t.Parallel()
	p := newGoPool(100 * time.Millisecond)
	var ran atomic.Int64
	var wg sync.WaitGroup
	release := make(chan struct{})
	for range 50 { // all blocked at once: 50 goroutines
		wg.Add(1)
		p.run(func() { defer wg.Done(); <-release; ran.Add(1) })
	}
	close(release)
	wg.Wait()
	if ran.Load() != 50 || p.started.Load() != 50 {
		t.Fatalf("ran %d functions on %d goroutines, want 50 on 50", ran.Load(), p.started.Load())
	}
	testenv.WaitUntil(t, 5*time.Second, "idle goroutines to end", func() bool { return p.live.Load() == 0 })

	// One after another: one goroutine, taken up again each time (none
	// ends for being idle while this runs). A goroutine counts itself idle
	// just before it waits for work, so a function given in between starts
	// a second one: rare, and allowed a few times in 100.
	p = newGoPool(time.Minute)
	for range 100 {
		wg.Add(1)
		p.run(func() { defer wg.Done(); ran.Add(1) })
		wg.Wait()
		testenv.WaitUntil(t, 5*time.Second, "the goroutines to be idle", func() bool { return p.waiting.Load() == p.live.Load() })
	}
	if ran.Load() != 150 {
		t.Fatalf("ran %d functions, want 150", ran.Load())
	}
	if started := p.started.Load(); started > 3 {
		t.Fatalf("100 functions one after another started %d goroutines, want 1 (a few at most)", started)
	}
}
