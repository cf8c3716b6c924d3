package groupcommit

import (
	"context"
	"errors"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/testenv"
)

// counting is a script that counts its runs per key and answers
// {ARGV[1], the run's number on KEYS[1]}.
var counting = redis.NewScript(`
local n = redis.call('INCR', KEYS[1])
return {ARGV[1], n}
`)

// trips counts the round trips of scripts a client makes. The first
// single one closes holding and waits for hold (when not nil); after runs
// once it is answered.
type trips struct {
	single, pipelines, piped atomic.Int64
	hold, holding            chan struct{}
	after                    func()
	first                    atomic.Bool
}

func holdFirst() *trips { return &trips{hold: make(chan struct{}), holding: make(chan struct{})} }

func (h *trips) DialHook(next redis.DialHook) redis.DialHook { return next }
func (h *trips) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		if !isScript(cmd) {
			return next(ctx, cmd) // the connection's own set-up
		}
		first := h.first.CompareAndSwap(false, true)
		if first && h.hold != nil {
			close(h.holding)
			<-h.hold
		}
		h.single.Add(1)
		err := next(ctx, cmd)
		if first && h.after != nil {
			h.after()
		}
		return err
	}
}
func (h *trips) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		if len(cmds) > 0 && isScript(cmds[0]) {
			h.pipelines.Add(1)
			h.piped.Add(int64(len(cmds)))
		}
		return next(ctx, cmds)
	}
}

func isScript(cmd redis.Cmder) bool { return cmd.Name() == "evalsha" || cmd.Name() == "eval" }

// setup starts a Redis with the script loaded, and a Committer on a client
// that h watches; other is a client h does not see.
func setup(t *testing.T, h *trips) (c *Committer, other *redis.Client) {
	t.Helper()
	rd := testenv.StartRedis(t)
	rdb, other := rd.Client(t), rd.Client(t)
	if err := counting.Load(context.Background(), rdb).Err(); err != nil {
		t.Fatal(err)
	}
	if h != nil {
		rdb.AddHook(h)
	}
	return New(rdb, counting, Options{}), other
}

// pendingCalls is how many calls wait for the next flush.
func (c *Committer) pendingCalls() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return len(c.pending)
}

func TestEveryCallRunsOnceWithItsOwnAnswer(t *testing.T) {
	t.Parallel()
	c, other := setup(t, nil)
	ctx := context.Background()
	const callers = 300
	seen := make([]atomic.Bool, callers+1)
	var wg sync.WaitGroup
	for i := 0; i < callers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			res, err := c.Run(ctx, []string{"k"}, fmt.Sprint(i)).Slice()
			if err != nil || len(res) != 2 || res[0] != fmt.Sprint(i) {
				t.Errorf("call %d: %v, %v", i, res, err)
				return
			}
			n := res[1].(int64)
			if n < 1 || n > callers || seen[n].Swap(true) {
				t.Errorf("call %d: run number %d out of range or twice", i, n)
			}
		}()
	}
	wg.Wait()
	if n, err := other.Get(ctx, "k").Int(); err != nil || n != callers {
		t.Fatalf("script ran %d times (%v), want %d", n, err, callers)
	}
}

// Calls made while a flush is on the wire go out together in the next one.
func TestCallsDuringAFlushShareTheNext(t *testing.T) {
	t.Parallel()
	h := holdFirst()
	c, _ := setup(t, h)
	ctx := context.Background()
	const callers = 40 // under MaxBatch
	var wg sync.WaitGroup
	run := func(i int) {
		defer wg.Done()
		if _, err := c.Run(ctx, []string{"k"}, i).Slice(); err != nil {
			t.Errorf("call %d: %v", i, err)
		}
	}
	wg.Add(1)
	go run(0) // its flush is held at the hook
	<-h.holding
	for i := 1; i < callers; i++ {
		wg.Add(1)
		go run(i)
	}
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d calls pending", callers-1), func() (int, bool) {
		n := c.pendingCalls()
		return n, n == callers-1
	})
	close(h.hold)
	wg.Wait()
	if s, p, n := h.single.Load(), h.pipelines.Load(), h.piped.Load(); s != 1 || p != 1 || n != callers-1 {
		t.Fatalf("round trips: %d single, %d pipelines of %d calls; want 1, 1 of %d", s, p, n, callers-1)
	}
}

// A pipeline of calls still runs when Redis has lost its script cache (a
// restart, SCRIPT FLUSH): each is run again on its own, which loads it.
func TestCallsAfterScriptFlush(t *testing.T) {
	t.Parallel()
	h := holdFirst()
	c, other := setup(t, h)
	ctx := context.Background()
	h.after = func() { // the next flush finds the cache empty
		if err := other.ScriptFlush(ctx).Err(); err != nil {
			t.Error(err)
		}
	}
	const callers = 10
	var wg sync.WaitGroup
	call := func() {
		defer wg.Done()
		if err := c.Run(ctx, []string{"k"}, "x").Err(); err != nil {
			t.Error(err)
		}
	}
	wg.Add(1)
	go call()
	<-h.holding
	for i := 1; i < callers; i++ {
		wg.Add(1)
		go call()
	}
	testenv.WaitFor(t, 10*time.Second, fmt.Sprintf("%d calls pending", callers-1), func() (int, bool) {
		n := c.pendingCalls()
		return n, n == callers-1
	})
	close(h.hold)
	wg.Wait()
	if n, _ := other.Get(ctx, "k").Int(); n != callers {
		t.Fatalf("script ran %d times, want %d", n, callers)
	}
	if p := h.pipelines.Load(); p != 1 {
		t.Fatalf("%d pipelines, want 1", p)
	}
}

func TestAGivenUpCallAnswersWithItsContextsError(t *testing.T) {
	t.Parallel()
	h := holdFirst()
	c, _ := setup(t, h)
	defer close(h.hold)
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if err := c.Run(ctx, []string{"k"}, "x").Err(); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("err %v, want the deadline", err)
	}
}

func TestAFailedFlushFailsItsCalls(t *testing.T) {
	t.Parallel()
	ln, err := net.Listen("tcp", "127.0.0.1:0") // accepts, never answers
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	rdb := redis.NewClient(&redis.Options{Addr: ln.Addr().String(), MaxRetries: -1, ReadTimeout: 100 * time.Millisecond})
	t.Cleanup(func() { rdb.Close() })
	c := New(rdb, counting, Options{Timeout: 300 * time.Millisecond})
	var wg sync.WaitGroup
	for i := 0; i < 5; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if c.Run(context.Background(), []string{"k"}, "x").Err() == nil {
				t.Errorf("call %d answered by a server that never answers", i)
			}
		}()
	}
	wg.Wait()
}
