// Package groupcommit shares Redis round trips between concurrent calls of
// one Lua script. Every call is still its own script run, atomic and
// separate; only the trip is shared: calls that arrive while one flush is
// on the wire go out together in the next, as one pipeline. A process that
// makes many such calls at once (a batch record, a rate reservation per
// provider call) saves a round trip — its syscalls, pool checkout and
// health check — for all but one call of each flush.
//
// A flush runs on its own goroutine, started when a call finds none running
// and ending when nothing is left. It is bounded by Options.Timeout, not by
// the callers' contexts: a caller that gives up may still have its call
// run.
package groupcommit

import (
	"cmp"
	"context"
	"sync"
	"time"

	"github.com/campaignd/campaignd/internal/optcheck"
	"github.com/redis/go-redis/v9"
)

// Options tune a Committer.
type Options struct {
	Timeout  time.Duration // bounds one flush's round trip; default 5s
	MaxBatch int           // most calls in one pipeline; default 64
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o Options) WithDefaults() Options {
	o.Timeout = cmp.Or(o.Timeout, 5*time.Second)
	o.MaxBatch = cmp.Or(o.MaxBatch, 64)
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("groupcommit: Options")
	c.Positive(o, "Timeout", "MaxBatch")
	return c.Err()
}

// Committer runs one script for many concurrent callers.
type Committer struct {
	rdb    redis.UniversalClient
	script *redis.Script
	opts   Options

	mu      sync.Mutex
	pending []*call
	running bool
}

// call is one caller's script run: its keys and arguments, and its answer
// once done is closed.
type call struct {
	keys []string
	args []any
	cmd  *redis.Cmd
	done chan struct{}
}

// New returns a Committer running script on rdb.
func New(rdb redis.UniversalClient, script *redis.Script, opts Options) *Committer {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		panic(err)
	}
	return &Committer{rdb: rdb, script: script, opts: opts}
}

// Run runs the script with keys and args in the next flush and waits for
// its answer, or for ctx (the answer then carries ctx's error).
func (c *Committer) Run(ctx context.Context, keys []string, args ...any) *redis.Cmd {
	cl := &call{keys: keys, args: args, done: make(chan struct{})}
	c.mu.Lock()
	c.pending = append(c.pending, cl)
	start := !c.running
	c.running = true
	c.mu.Unlock()
	if start {
		go c.loop()
	}
	select {
	case <-cl.done:
		return cl.cmd
	case <-ctx.Done():
		cmd := redis.NewCmd(ctx)
		cmd.SetErr(ctx.Err())
		return cmd
	}
}

// loop flushes until nothing is pending.
func (c *Committer) loop() {
	for {
		c.mu.Lock()
		n := min(len(c.pending), c.opts.MaxBatch)
		if n == 0 {
			c.running = false
			c.mu.Unlock()
			return
		}
		batch := append([]*call(nil), c.pending[:n]...)
		c.pending = append(c.pending[:0], c.pending[n:]...)
		c.mu.Unlock()
		c.flush(batch)
	}
}

// flush sends calls in one pipeline. A call whose script the server does
// not have cached (NOSCRIPT: a restarted or flushed Redis) is run again on
// its own, which loads the script.
func (c *Committer) flush(calls []*call) {
	ctx, cancel := context.WithTimeout(context.Background(), c.opts.Timeout)
	defer cancel()
	if len(calls) == 1 {
		cl := calls[0]
		cl.cmd = c.script.Run(ctx, c.rdb, cl.keys, cl.args...)
		close(cl.done)
		return
	}
	pipe := c.rdb.Pipeline()
	cmds := make([]*redis.Cmd, len(calls))
	for i, cl := range calls {
		cmds[i] = c.script.EvalSha(ctx, pipe, cl.keys, cl.args...)
	}
	_, _ = pipe.Exec(ctx) // each command carries its own error
	for i, cl := range calls {
		cl.cmd = cmds[i]
		if err := cl.cmd.Err(); err != nil && redis.HasErrorPrefix(err, "NOSCRIPT") {
			cl.cmd = c.script.Run(ctx, c.rdb, cl.keys, cl.args...)
		}
		close(cl.done)
	}
}
