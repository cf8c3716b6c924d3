package testenv

import (
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// fatalTB records a Fatalf and ends the goroutine that called it, as
// testing.T does, without failing the test that uses it.
type fatalTB struct {
	testing.TB
	msg string
}

func (f *fatalTB) Helper() {}

func (f *fatalTB) Fatalf(format string, args ...any) {
	f.msg = fmt.Sprintf(format, args...)
	runtime.Goexit()
}

// run calls fn with a fatalTB on a goroutine of its own and returns what
// it was failed with ("" when it was not) and how long fn took.
func run(t *testing.T, fn func(tb testing.TB)) (string, time.Duration) {
	t.Helper()
	f := &fatalTB{TB: t}
	done := make(chan struct{})
	start := time.Now()
	go func() {
		defer close(done)
		fn(f)
	}()
	<-done
	return f.msg, time.Since(start)
}

func TestWaitUntilReturnsOnceTheConditionHolds(t *testing.T) {
	var calls atomic.Int32
	msg, took := run(t, func(tb testing.TB) {
		WaitUntil(tb, 5*time.Second, "the third call", func() bool { return calls.Add(1) >= 3 })
	})
	if msg != "" {
		t.Fatalf("failed: %s", msg)
	}
	if calls.Load() != 3 {
		t.Fatalf("cond called %d times, want 3", calls.Load())
	}
	if took > 2*time.Second {
		t.Fatalf("took %s for three polls", took)
	}
}

func TestWaitUntilDoesNotPauseWhenTheConditionAlreadyHolds(t *testing.T) {
	msg, took := run(t, func(tb testing.TB) {
		WaitUntil(tb, time.Minute, "true", func() bool { return true })
	})
	if msg != "" || took > time.Second {
		t.Fatalf("failed %q after %s", msg, took)
	}
}

func TestWaitUntilFailsOnTheDeadline(t *testing.T) {
	var calls atomic.Int32
	within := 200 * time.Millisecond
	msg, took := run(t, func(tb testing.TB) {
		WaitUntil(tb, within, "the impossible", func() bool { calls.Add(1); return false })
		t.Error("WaitUntil returned after its deadline")
	})
	if want := "timed out after 200ms waiting for the impossible"; msg != want {
		t.Fatalf("failed with %q, want %q", msg, want)
	}
	if took < within {
		t.Fatalf("gave up after %s, before its deadline %s", took, within)
	}
	if took > within+2*time.Second {
		t.Fatalf("gave up after %s, long after its deadline %s", took, within)
	}
	// 10 ms growing to 50 ms: at least 4 looks in 200 ms, and no busy loop.
	if n := calls.Load(); n < 4 || n > 30 {
		t.Fatalf("cond called %d times in %s", n, within)
	}
}

func TestWaitForReturnsTheValue(t *testing.T) {
	var n atomic.Int32
	var got int32
	msg, _ := run(t, func(tb testing.TB) {
		got = WaitFor(tb, 5*time.Second, "n to reach 4", func() (int32, bool) {
			v := n.Add(1)
			return v, v >= 4
		})
	})
	if msg != "" || got != 4 {
		t.Fatalf("got %d, failed %q", got, msg)
	}
}

func TestWaitForNamesTheLastValueOnTheDeadline(t *testing.T) {
	msg, _ := run(t, func(tb testing.TB) {
		WaitFor(tb, 50*time.Millisecond, "seven", func() (int, bool) { return 3, false })
	})
	if !strings.HasPrefix(msg, "timed out after 50ms waiting for seven") || !strings.Contains(msg, "last: 3") {
		t.Fatalf("failed with %q", msg)
	}
}

func TestEventuallyReportsWithoutFailing(t *testing.T) {
	var calls atomic.Int32
	if !Eventually(5*time.Second, func() bool { return calls.Add(1) >= 3 }) {
		t.Fatal("Eventually gave up on a condition that held on the third call")
	}
	start := time.Now()
	if Eventually(100*time.Millisecond, func() bool { return false }) {
		t.Fatal("Eventually reported a condition that never held")
	}
	if took := time.Since(start); took < 100*time.Millisecond || took > 2*time.Second {
		t.Fatalf("gave up after %s with a deadline of 100ms", took)
	}
}
