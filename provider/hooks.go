package provider

import (
	"context"
	"crypto/tls"
	"errors"
	"net/http"
	"net/http/httptrace"
	"sync/atomic"
	"time"

	"github.com/campaignd/campaignd/internal/clock"
)

// Gate is asked before every HTTP request a client sends — first tries,
// retries after a token refresh, token requests — so that a shared limiter
// sees every arrival the provider will count. Acquire blocks until the call
// may be sent, or returns an error (for example a rate-limit error carrying
// how long to wait, which the client returns unchanged, without sending).
type Gate interface {
	Acquire(ctx context.Context, app string, group Group) error
}

// Grant is what a GrantingGate hands back for a request it let through:
// the client tells it what it saw of the request's trip (Sent), so that a
// limiter can account for a send held up after the grant and for what
// may have held it up after the write.
type Grant interface {
	Sent(s Sent)
}

// Sent is what a client saw of one request's trip.
type Sent struct {
	// Written is when the request was written to the connection in full
	// (a new connection's dial or TLS handshake, a stalled process may
	// have held it up after the grant).
	Written time.Time
	// Answered is when the first byte of the answer came (zero: none
	// came). The provider saw the request no later than that: an answer
	// slower than the usual bounds how late the provider may have read it.
	Answered time.Time
	// NewPlainConn: the request went on a plain (not TLS) connection
	// opened for it. The provider reads it only once it has accepted the
	// connection, which the client cannot see (over TLS the handshake
	// shows it did).
	NewPlainConn bool
	// Host and Group say where it went (the request's host, its limit
	// group): answers are compared with earlier ones to the same place.
	Host  string
	Group Group
}

// GrantingGate is a Gate that hands back a Grant per request; clients use
// it when the gate offers it.
type GrantingGate interface {
	Gate
	AcquireGrant(ctx context.Context, app string, group Group) (Grant, error)
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

// Before runs the gate, if any. The grant (nil if the gate gives none) is
// to be told when the request was written (Written).
func (h Hooks) Before(ctx context.Context, group Group) (Grant, error) {
	if h.Gate == nil {
		return nil, nil
	}
	if gg, ok := h.Gate.(GrantingGate); ok {
		return gg.AcquireGrant(ctx, h.App, group)
	}
	return nil, h.Gate.Acquire(ctx, h.App, group)
}

// Trace returns req (a request of group) set up to note when it is
// written and answered, and to tell grant (if any). Call Done after the
// request's round trip.
func Trace(req *http.Request, grant Grant, group Group) (*http.Request, *WriteTrace) {
	wt := &WriteTrace{grant: grant, host: req.URL.Host, group: group}
	var wall clock.Real // the limiter's grants count lateness on the wall clock
	ctx := httptrace.WithClientTrace(req.Context(), &httptrace.ClientTrace{
		GotConn: func(info httptrace.GotConnInfo) {
			_, tlsConn := info.Conn.(*tls.Conn)
			wt.newPlain.Store(!info.Reused && !tlsConn && !WarmConn(info.Conn))
		},
		WroteRequest:         func(httptrace.WroteRequestInfo) { wt.at.Store(wall.Now().UnixNano()) },
		GotFirstResponseByte: func() { wt.answered.Store(wall.Now().UnixNano()) },
	})
	return req.WithContext(ctx), wt
}

// WriteTrace carries a request's write time to its grant.
type WriteTrace struct {
	grant    Grant
	host     string
	group    Group
	at       atomic.Int64 // unix ns; 0: not written
	answered atomic.Int64 // unix ns of the answer's first byte; 0: none
	newPlain atomic.Bool  // on a plain connection opened for it
}

// Done tells the grant what was seen of the request's trip, if it was
// written.
func (w *WriteTrace) Done() {
	if w.grant == nil {
		return
	}
	at := w.at.Load()
	if at == 0 {
		return
	}
	s := Sent{Written: time.Unix(0, at), NewPlainConn: w.newPlain.Load(), Host: w.host, Group: w.group}
	if a := w.answered.Load(); a != 0 {
		s.Answered = time.Unix(0, a)
	}
	w.grant.Sent(s)
}

// Ambiguous marks err (a failed round trip) as ambiguous when the request
// had been written in full: the provider may have acted on it although no
// answer came, or not in full (a response timeout, a connection lost
// mid-answer). It
// returns err.
func (w *WriteTrace) Ambiguous(err error) error {
	var pe *Error
	if w.at.Load() != 0 && errors.As(err, &pe) && (pe.Status == 0 || pe.Status == http.StatusOK) {
		pe.Written = true
	}
	return err
}

// After runs the observer, if any.
func (h Hooks) After(group Group, op string, took time.Duration, err error) {
	if h.Observer != nil {
		h.Observer.Observe(h.App, group, op, took, err)
	}
}
