package testenv

import (
	"testing"
	"time"
)

// Polling pauses of WaitUntil and WaitFor: the first look after
// waitFirstPause, each later pause half as long again as the one before,
// never longer than waitMaxPause.
const (
	waitFirstPause = 10 * time.Millisecond
	waitMaxPause   = 50 * time.Millisecond
)

// WaitUntil is how a test waits for something to become true: it calls
// cond until cond reports true, pausing between calls (10 ms at first,
// growing to 50 ms), and fails tb with
//
//	timed out after <within> waiting for <what>
//
// when within passes first. cond is always called at least once, and once
// more after the deadline has passed, so a condition met just in time
// counts. A test sleeps only when real time passing is itself what it
// needs (a TTL expiring, a real-clock window going by); anything it can
// observe it waits for with WaitUntil or WaitFor, and never without a
// deadline.
//
// WaitUntil calls tb.Fatalf, so like it, it must be called from the
// goroutine running the test.
func WaitUntil(tb testing.TB, within time.Duration, what string, cond func() bool) {
	tb.Helper()
	if !poll(within, cond) {
		tb.Fatalf("timed out after %s waiting for %s", within, what)
	}
}

// WaitFor is WaitUntil for a condition that produces a value: it calls get
// until get reports true and returns the value that came with it. On the
// deadline it fails tb naming what and the last value get returned, so a
// timeout says how far things got (e.g. a count short of the one wanted).
func WaitFor[T any](tb testing.TB, within time.Duration, what string, get func() (T, bool)) T {
	tb.Helper()
	var last T
	if !poll(within, func() bool {
		v, ok := get()
		last = v
		return ok
	}) {
		tb.Fatalf("timed out after %s waiting for %s (last: %+v)", within, what, last)
	}
	return last
}

// Eventually is WaitUntil where failing the test is not allowed: on a
// goroutine other than the test's (tb.Fatalf must not be called there), or
// in a child process that has no test. It calls cond as WaitUntil does and
// reports whether cond held before within passed; the caller reports a
// timeout (t.Error, an exit code).
func Eventually(within time.Duration, cond func() bool) bool {
	return poll(within, cond)
}

// poll calls cond until it reports true (true) or within has passed
// (false), pausing between calls as WaitUntil describes.
func poll(within time.Duration, cond func() bool) bool {
	deadline := time.Now().Add(within)
	pause := waitFirstPause
	for {
		if cond() {
			return true
		}
		left := time.Until(deadline)
		if left <= 0 {
			return false
		}
		time.Sleep(min(pause, left))
		pause = min(pause*3/2, waitMaxPause)
	}
}
