package worker

import (
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
var Queues = map[string]int{"high": 6, "default": 3, "low": 1}

// NewServer returns an asynq server set up for campaignd's tasks.
func NewServer(redisOpt asynq.RedisConnOpt, o ServerOptions) *asynq.Server {
	if o.ShutdownTimeout <= 0 {
		o.ShutdownTimeout = 8 * time.Second
	}
	return asynq.NewServer(redisOpt, asynq.Config{
		Concurrency:              o.Concurrency,
		Queues:                   Queues,
		StrictPriority:           true,
		IsFailure:                IsFailure,
		RetryDelayFunc:           RetryDelay,
		DelayedTaskCheckInterval: time.Second,
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
