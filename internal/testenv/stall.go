package testenv

import (
	"sync"
	"time"
)

// StallWatch measures how late the test process itself wakes up: a
// goroutine sleeps stallTick at a time and keeps the worst overshoot. A
// test that measures pace across processes on this 2-core machine reads
// it to tell a stall of the whole machine (every process late, the test
// too) from a stall of the code under test.
type StallWatch struct {
	stop  chan struct{}
	done  chan struct{}
	mu    sync.Mutex
	worst time.Duration
	at    time.Time
}

const stallTick = 10 * time.Millisecond

// WatchStalls starts a StallWatch; Stop ends it.
func WatchStalls() *StallWatch {
	w := &StallWatch{stop: make(chan struct{}), done: make(chan struct{})}
	go w.run()
	return w
}

func (w *StallWatch) run() {
	defer close(w.done)
	t := time.NewTimer(stallTick)
	defer t.Stop()
	last := time.Now()
	for {
		select {
		case <-w.stop:
			return
		case now := <-t.C:
			if late := time.Since(last) - stallTick; late > 0 {
				w.mu.Lock()
				if late > w.worst {
					w.worst, w.at = late, now
				}
				w.mu.Unlock()
			}
			last = time.Now()
			t.Reset(stallTick)
		}
	}
}

// Stop ends the watch and returns the worst lateness seen and when it
// ended (zero time: none).
func (w *StallWatch) Stop() (worst time.Duration, at time.Time) {
	select {
	case <-w.stop:
	default:
		close(w.stop)
	}
	<-w.done
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.worst, w.at
}
