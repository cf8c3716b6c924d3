package provider

import (
	"context"
	"time"
)

// Gate is asked before every HTTP request a client sends — first tries,
// retries after a token refresh, token requests — so that a shared limiter
// sees every arrival the provider will count. Acquire blocks until the call
// may be sent, or returns an error (for example a rate-limit error carrying
// how long to wait, which the client returns unchanged, without sending).
type Gate interface {
	Acquire(ctx context.Context, app string, group Group) error
}

// Observer is told the outcome of every HTTP request a client sent: err is
// nil on success, else a *Error. Used for metrics and for backing off a group
// for every process when the provider still answers 429.
type Observer interface {
	Observe(app string, group Group, op string, took time.Duration, err error)
}

// Hooks bundles an optional Gate and Observer for a client. A nil field is
// skipped.
type Hooks struct {
	App      string // the config's app key, passed to Gate and Observer
	Gate     Gate
	Observer Observer
}

// Before runs the gate, if any.
func (h Hooks) Before(ctx context.Context, group Group) error {
	if h.Gate == nil {
		return nil
	}
	return h.Gate.Acquire(ctx, h.App, group)
}

// After runs the observer, if any.
func (h Hooks) After(group Group, op string, took time.Duration, err error) {
	if h.Observer != nil {
		h.Observer.Observe(h.App, group, op, took, err)
	}
}
