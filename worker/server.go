package worker

import (
	"cmp"
	"fmt"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"
)

// ServerOptions configure the asynq server.
type ServerOptions struct {
	Concurrency     int
	ShutdownTimeout time.Duration // default 8s
	Logger          zerolog.Logger
}

// Queues are processed in strict priority order: a high campaign overtakes
// the queued batches of normal and low ones.
var Queues = map[string]int{"high": 6, "default": 3, "low": 1, QueueTaskMarkers: 1}

// NewServer returns an asynq server set up for campaignd's tasks.
func NewServer(redisOpt asynq.RedisConnOpt, o ServerOptions) *asynq.Server {
	o.ShutdownTimeout = cmp.Or(o.ShutdownTimeout, 8*time.Second)
	if o.ShutdownTimeout < 0 || o.Concurrency < 0 {
		panic(fmt.Sprintf("worker: ServerOptions out of range: Concurrency %d, ShutdownTimeout %s", o.Concurrency, o.ShutdownTimeout))
	}
	return asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:              o.Concurrency,
		Queues:                   Queues,
		StrictPriority:           true,
		IsFailure:                IsFailure,
		RetryDelayFunc:           RetryDelay,
		DelayedTaskCheckInterval: time.Second,
		TaskCheckInterval:        100 * time.Millisecond, // an idle server looks for new work every 50–150 ms
		ShutdownTimeout:          o.ShutdownTimeout,
		Logger:                   zlog{o.Logger.With().Str("component", "asynq").Logger()},
		LogLevel:                 asynq.WarnLevel,
	})
}

// zlog adapts zerolog to asynq.Logger.
type zlog struct{ l zerolog.Logger }

func (z zlog) Debug(args ...any) { z.l.Debug().Msg(fmt.Sprint(args...)) }
func (z zlog) Info(args ...any)  { z.l.Info().Msg(fmt.Sprint(args...)) }
func (z zlog) Warn(args ...any)  { z.l.Warn().Msg(fmt.Sprint(args...)) }
func (z zlog) Error(args ...any) { z.l.Error().Msg(fmt.Sprint(args...)) }
func (z zlog) Fatal(args ...any) { z.l.Error().Msg(fmt.Sprint(args...)) }

// Servers are several asynq servers in one process sharing its
// concurrency. asynq's processor takes tasks off Redis one at a time, so one
// server tops out at one dequeue per Redis round trip; several dequeue in
// parallel.
type Servers []*asynq.Server

// NewServers splits o.Concurrency over n servers (n <= 0: one per 6
// workers, 1 to 8).
func NewServers(redisOpt asynq.RedisConnOpt, o ServerOptions, n int) Servers {
	if n <= 0 {
		n = min(max(o.Concurrency/6, 1), 8)
	}
	n = min(n, max(o.Concurrency, 1))
	out := make(Servers, 0, n)
	for i := 0; i < n; i++ {
		oi := o
		oi.Concurrency = o.Concurrency / n
		if i < o.Concurrency%n {
			oi.Concurrency++
		}
		out = append(out, NewServer(redisOpt, oi))
	}
	return out
}

// Start starts every server with mux.
func (s Servers) Start(mux *asynq.ServeMux) error {
	for i, srv := range s {
		if err := srv.Start(mux); err != nil {
			for _, started := range s[:i] {
				started.Shutdown()
			}
			return fmt.Errorf("worker: start server %d: %w", i, err)
		}
	}
	return nil
}

// Shutdown stops every server, letting in-flight tasks finish (or requeue
// them after the shutdown timeout), all at once.
func (s Servers) Shutdown() {
	done := make(chan struct{}, len(s))
	for _, srv := range s {
		go func() { srv.Shutdown(); done <- struct{}{} }()
	}
	for range s {
		<-done
	}
}
