package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/natsconn"
)

// RedisLogger adapts zerolog to go-redis's logger (redis.SetLogger): its
// lines (a failed dial, once per retry) become warnings, at most one per
// every, with how many were left out.
func RedisLogger(log zerolog.Logger, every time.Duration) interface {
	Printf(ctx context.Context, format string, v ...any)
} {
	return &redisLogger{log: log.With().Str("component", "go-redis").Logger(), every: every, clk: clock.Real{}}
}

type redisLogger struct {
	log   zerolog.Logger
	every time.Duration
	clk   clock.Clock

	mu      sync.Mutex
	last    time.Time
	dropped int
}

func (l *redisLogger) Printf(_ context.Context, format string, v ...any) {
	l.mu.Lock()
	now := l.clk.Now()
	if now.Sub(l.last) < l.every {
		l.dropped++
		l.mu.Unlock()
		return
	}
	dropped := l.dropped
	l.last, l.dropped = now, 0
	l.mu.Unlock()
	ev := l.log.Warn()
	if dropped > 0 {
		ev = ev.Int("similar_lines_left_out", dropped)
	}
	ev.Msg(strings.TrimSpace(fmt.Sprintf(format, v...)))
}

// waitFor calls try until it succeeds or ctx ends (SIGTERM). While it
// fails, one line says what campaignd waits for and why, at the first
// failure and then every logEvery. Each try gets perTry, or no deadline
// of its own when perTry is 0 (a try whose calls each have theirs).
func waitFor(ctx context.Context, clk clock.Clock, log zerolog.Logger, what string, perTry time.Duration, try func(ctx context.Context) error) error {
	const retry, logEvery = 500 * time.Millisecond, 10 * time.Second
	var lastLog time.Time
	for {
		tctx, cancel := ctx, context.CancelFunc(func() {})
		if perTry > 0 {
			tctx, cancel = context.WithTimeout(ctx, perTry)
		}
		err := try(tctx)
		cancel()
		if err == nil {
			if !lastLog.IsZero() {
				log.Info().Msg(what + ": connected")
			}
			return nil
		}
		if ctx.Err() != nil {
			return fmt.Errorf("%s: %w", what, err)
		}
		var pe *permanentError
		if errors.As(err, &pe) { // no retry mends it: say why once, and stop
			log.Error().Msg(what + ": " + pe.why)
			return fmt.Errorf("%s: %s", what, pe.why)
		}
		if now := clk.Now(); now.Sub(lastLog) >= logEvery {
			log.Warn().Msg("waiting for " + what + ": " + oneLine(err))
			lastLog = now
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("%s: %w", what, err)
		case <-time.After(retry):
		}
	}
}

// permanentError stops waitFor at once, saying why: wrong credentials, a
// certificate that cannot be trusted.
type permanentError struct {
	why string
	err error
}

func (e *permanentError) Error() string { return e.why }
func (e *permanentError) Unwrap() error { return e.err }

// oneLine keeps the tail of a network error, the part a person acts on
// ("connection refused", "no such host"), without the address repeated.
func oneLine(err error) string {
	msg := err.Error()
	if strings.Contains(msg, "dial tcp ") {
		if j := strings.LastIndex(msg, ": "); j >= 0 {
			return msg[j+2:]
		}
	}
	return msg
}

// permitted runs step (a JetStream call campaignd makes at start) so that
// the server refusing one of its subjects fails it at once, as a
// permanent error naming the subject: the user's permissions lack a line
// of configs/nats/campaignd-account.conf, and no retry mends that.
func (d *Daemon) permitted(auth natsconn.Auth, step func(context.Context) error) func(context.Context) error {
	return func(ctx context.Context) error {
		wctx, stop := d.denials.Watch(ctx, nil)
		defer stop()
		err := step(wctx)
		if de := natsconn.Cause(wctx); de != nil {
			return &permanentError{why: fmt.Sprintf("%s, as %s: grant it (configs/nats/campaignd-account.conf has every subject campaignd needs)",
				de.Error(), auth.Who()), err: de}
		}
		return err
	}
}

// natsErrorLogger logs the NATS connection's asynchronous errors: a
// permissions violation as an error naming the subject, anything else (a
// slow consumer) as a warning; each at most once a minute.
func natsErrorLogger(log zerolog.Logger, clk clock.Clock) nats.ErrHandler {
	var (
		mu   sync.Mutex
		last = map[string]time.Time{}
	)
	return func(_ *nats.Conn, sub *nats.Subscription, err error) {
		if de := natsconn.ParseDenied(err); de != nil {
			mu.Lock()
			now := clk.Now()
			quiet := now.Sub(last[de.Subject]) < time.Minute
			if !quiet {
				if len(last) >= 1000 { // one subject per campaign, say: forget them
					clear(last)
				}
				last[de.Subject] = now
			}
			mu.Unlock()
			if !quiet {
				log.Error().Str("subject", de.Subject).Str("op", de.Op).
					Msg(de.Error() + ": grant it (configs/nats/campaignd-account.conf has every subject campaignd needs)")
			}
			return
		}
		key := err.Error()
		if sub != nil {
			key += " on " + sub.Subject
		}
		mu.Lock()
		now := clk.Now()
		quiet := now.Sub(last[key]) < time.Minute // a slow consumer says so at every message
		if !quiet {
			if len(last) >= 1000 {
				clear(last)
			}
			last[key] = now
		}
		mu.Unlock()
		if quiet {
			return
		}
		ev := log.Warn().Err(err)
		if sub != nil {
			ev = ev.Str("subject", sub.Subject)
		}
		ev.Msg("nats: asynchronous error (said at most once a minute)")
	}
}
