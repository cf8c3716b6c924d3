package store

import (
	"context"
	"sync"
	"time"

	"github.com/redis/go-redis/v9"
)

// recorder group-commits batch records. Every batch is still recorded by
// its own call of recordScript, atomically and once (the script's done
// bit); only the round trip is shared: records that arrive while one
// flush is on the wire go out together in the next, as one pipeline. A
// process sends many batches at once and their answers come close
// together, so this saves a Redis round trip (and its syscalls, pool
// checkout and health check) per batch.
//
// A flush runs on its own goroutine, started when a record finds none
// running and ending when nothing is left; it is bounded by flushTimeout,
// not by the callers' contexts (a caller that gives up still has its
// record written or failed, and a record written twice changes nothing).
type recorder struct {
	rdb redis.UniversalClient

	mu      sync.Mutex
	pending []*recordCall
	running bool
}

// recordCall is one batch's record: the script's keys and arguments, and
// its answer once done is closed.
type recordCall struct {
	keys []string
	args []any
	res  []any
	err  error
	done chan struct{}
}

// flushTimeout bounds one flush's round trip.
const flushTimeout = 5 * time.Second

// maxFlush bounds the records in one pipeline.
const maxFlush = 64

// do records one batch and waits for its answer (or ctx).
func (r *recorder) do(ctx context.Context, keys []string, args []any) ([]any, error) {
	c := &recordCall{keys: keys, args: args, done: make(chan struct{})}
	r.mu.Lock()
	r.pending = append(r.pending, c)
	start := !r.running
	r.running = true
	r.mu.Unlock()
	if start {
		go r.loop()
	}
	select {
	case <-c.done:
		return c.res, c.err
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// loop flushes until nothing is pending.
func (r *recorder) loop() {
	for {
		r.mu.Lock()
		n := min(len(r.pending), maxFlush)
		if n == 0 {
			r.running = false
			r.mu.Unlock()
			return
		}
		batch := append([]*recordCall(nil), r.pending[:n]...)
		r.pending = append(r.pending[:0], r.pending[n:]...)
		r.mu.Unlock()
		r.flush(batch)
	}
}

// flush sends calls in one pipeline. A call whose script the server does
// not have cached (NOSCRIPT: a restarted or flushed Redis) is run again on
// its own, which loads the script.
func (r *recorder) flush(calls []*recordCall) {
	ctx, cancel := context.WithTimeout(context.Background(), flushTimeout)
	defer cancel()
	if len(calls) == 1 {
		c := calls[0]
		c.res, c.err = recordScript.Run(ctx, r.rdb, c.keys, c.args...).Slice()
		close(c.done)
		return
	}
	pipe := r.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, c := range calls {
		cmds[i] = recordScript.EvalSha(ctx, pipe, c.keys, c.args...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, c := range calls {
		c.res, c.err = cmds[i].Slice()
		if c.err != nil && redis.HasErrorPrefix(c.err, "NOSCRIPT") {
			c.res, c.err = recordScript.Run(ctx, r.rdb, c.keys, c.args...).Slice()
		}
		close(c.done)
	}
}
