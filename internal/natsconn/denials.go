package natsconn

import (
	"context"
	"errors"
	"fmt"
	"regexp"
	"sync"

	"github.com/nats-io/nats.go"
)

// DeniedError is the server refusing a publish or a subscription because
// the user's permissions do not allow its subject. The server says so
// asynchronously and a request would only time out; Denials turns it
// into the error of the call that caused it.
type DeniedError struct {
	Op      string // "publish" or "subscribe"
	Subject string
}

func (e *DeniedError) Error() string {
	return fmt.Sprintf("NATS permissions do not allow %s to %q", e.Op, e.Subject)
}

// Is makes a DeniedError match nats.ErrPermissionViolation.
func (e *DeniedError) Is(target error) bool { return target == nats.ErrPermissionViolation }

var violationRe = regexp.MustCompile(`(?i)permissions violation for (publish|subscription) to "([^"]+)"`)

// ParseDenied reads the server's permissions violation in err, or
// returns nil for any other error.
func ParseDenied(err error) *DeniedError {
	if err == nil || !errors.Is(err, nats.ErrPermissionViolation) {
		return nil
	}
	m := violationRe.FindStringSubmatch(err.Error())
	if m == nil {
		return &DeniedError{Op: "publish or subscribe", Subject: "?"}
	}
	op := "publish"
	if m[1] == "subscription" || m[1] == "Subscription" {
		op = "subscribe"
	}
	return &DeniedError{Op: op, Subject: m[2]}
}

// Denials hands the server's permissions violations on one connection to
// the calls waiting on them. Install Handler as the connection's error
// handler; the zero value is ready.
type Denials struct {
	mu       sync.Mutex
	watchers map[*watcher]struct{}
}

type watcher struct {
	match  func(subject string) bool
	cancel context.CancelCauseFunc
}

// Handler is a nats.ErrHandler: a permissions violation cancels the
// watches whose subjects match it; next (if any) sees every other error,
// and the violations no watch claimed (the calls that caused those report
// them).
func (d *Denials) Handler(next nats.ErrHandler) nats.ErrHandler {
	return func(nc *nats.Conn, sub *nats.Subscription, err error) {
		claimed := false
		if de := ParseDenied(err); de != nil {
			d.mu.Lock()
			for w := range d.watchers {
				if w.match == nil || w.match(de.Subject) {
					w.cancel(de)
					claimed = true
				}
			}
			d.mu.Unlock()
		}
		if next != nil && !claimed {
			next(nc, sub, err)
		}
	}
}

// Watch returns ctx cancelled, with a *DeniedError as its cause
// (context.Cause), as soon as the server refuses a subject match accepts
// (nil: any subject), until stop is called. Wrap one call in it: its
// request then fails at once instead of timing out. A nil Denials
// watches nothing.
func (d *Denials) Watch(ctx context.Context, match func(subject string) bool) (context.Context, func()) {
	wctx, cancel := context.WithCancelCause(ctx)
	if d == nil {
		return wctx, func() { cancel(nil) }
	}
	w := &watcher{match: match, cancel: cancel}
	d.mu.Lock()
	if d.watchers == nil {
		d.watchers = map[*watcher]struct{}{}
	}
	d.watchers[w] = struct{}{}
	d.mu.Unlock()
	return wctx, func() {
		d.mu.Lock()
		delete(d.watchers, w)
		d.mu.Unlock()
		cancel(nil)
	}
}

// Cause returns the *DeniedError that cancelled ctx (a context from
// Watch), or nil.
func Cause(ctx context.Context) *DeniedError {
	var de *DeniedError
	if errors.As(context.Cause(ctx), &de) {
		return de
	}
	return nil
}
