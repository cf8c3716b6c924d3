package daemon

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
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
