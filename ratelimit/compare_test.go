package ratelimit

import (
	"context"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-redis/redis_rate/v10"
	"github.com/redis/go-redis/v9"
	"golang.org/x/time/rate"

	"github.com/campaignd/campaignd/internal/testenv"
)

var errLate = fmt.Errorf("woke too late for the slot")

type grantFunc func(ctx context.Context) (decision time.Duration, err error)

type compareResult struct {
	name                string
	grants              int
	maxInWindow         int
	rate                float64
	redisCallsPerGrant  float64
	decisionP50, decP99 time.Duration
}

// runLimiter drives 4 clients × 50 workers through newGrant for d, and
// measures what arrives (local grant times) and what it cost.
func runLimiter(b *testing.B, name string, r *testenv.Redis, d time.Duration, newGrant func(client int, rdb *redis.Client) grantFunc) compareResult {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	defer cancel()
	admin := redis.NewClient(&redis.Options{Addr: r.Addr})
	defer admin.Close()
	before := commands(b, admin)
	var mu sync.Mutex
	var times []time.Time
	var decisions []time.Duration
	var wg sync.WaitGroup
	for c := 0; c < 4; c++ {
		rdb := redis.NewClient(&redis.Options{Addr: r.Addr, PoolSize: 64})
		defer rdb.Close()
		grant := newGrant(c, rdb)
		for w := 0; w < 50; w++ {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for ctx.Err() == nil {
					dec, err := grant(ctx)
					if err != nil {
						continue
					}
					now := time.Now()
					mu.Lock()
					times = append(times, now)
					decisions = append(decisions, dec)
					mu.Unlock()
				}
			}()
		}
	}
	wg.Wait()
	after := commands(b, admin)
	sort.Slice(times, func(i, j int) bool { return times[i].Before(times[j]) })
	sort.Slice(decisions, func(i, j int) bool { return decisions[i] < decisions[j] })
	res := compareResult{name: name, grants: len(times)}
	if len(times) > 1 {
		res.maxInWindow = maxInWindow(times, time.Second)
		res.rate = float64(len(times)-1) / times[len(times)-1].Sub(times[0]).Seconds()
		res.redisCallsPerGrant = float64(after-before) / float64(len(times))
		res.decisionP50 = decisions[len(decisions)/2]
		res.decP99 = decisions[len(decisions)*99/100]
	}
	return res
}

// commands counts the script calls (EVALSHA, EVAL) Redis has run: the
// limiters' own work, without connection setup.
func commands(b *testing.B, rdb *redis.Client) int64 {
	var total int64
	for _, c := range []string{"cmdstat_evalsha", "cmdstat_eval"} {
		v, err := testenv.RedisInfo(context.Background(), rdb, "commandstats", c)
		if err != nil {
			continue
		}
		// calls=N,usec=…
		if f, ok := strings.CutPrefix(v, "calls="); ok {
			n, _ := strconv.ParseInt(strings.SplitN(f, ",", 2)[0], 10, 64)
			total += n
		}
	}
	return total
}

// BenchmarkLimiters compares, in one run, this limiter with redis_rate
// (PerSecond(R) with burst 1, retrying after RetryAfter) and a per-process
// x/time/rate limiter, at R = 100 with 4 clients × 50 workers:
//
//	go test ./ratelimit -run '^$' -bench Limiters -benchtime 1x
func BenchmarkLimiters(b *testing.B) {
	const R = 100
	d := 5 * time.Second
	var results []compareResult
	for i := 0; i < b.N; i++ {
		results = nil
		r := testenv.StartRedis(b)
		results = append(results, runLimiter(b, "campaignd reservation GCRA", r, d, func(_ int, rdb *redis.Client) grantFunc {
			l := New(rdb, Options{MaxWait: 5 * time.Second})
			rates := []Rate{{Key: "cmp", PerSecond: R}}
			// Wait's steps, with the Redis decision timed apart from the
			// waiting: the local queue, the reservation, the sleep, and a
			// late caller moving the schedule on (or giving its slot up).
			return func(ctx context.Context) (time.Duration, error) {
				release, err := l.queue(ctx, rates)
				if err != nil {
					if rl, ok := err.(*RateLimited); ok {
						sleepCtx(ctx, rl.RetryIn)
					}
					return 0, err
				}
				defer release()
				t0 := time.Now()
				res, err := l.Reserve(ctx, l.opts.MaxWait, rates...)
				dec := time.Since(t0)
				if err != nil {
					if rl, ok := err.(*RateLimited); ok {
						sleepCtx(ctx, rl.RetryIn)
					}
					return dec, err
				}
				if w := time.Until(res.SendAt); w > 0 {
					sleepCtx(ctx, w)
				}
				if ctx.Err() != nil {
					return dec, ctx.Err()
				}
				if late := time.Since(res.SendAt); late > l.opts.MaxLate {
					if _, ok, err := l.shift(ctx, res, late, 0); err != nil || !ok {
						return dec, errLate
					}
				}
				return dec, nil
			}
		}))
		r2 := testenv.StartRedis(b)
		results = append(results, runLimiter(b, "redis_rate PerSecond, burst 1", r2, d, func(_ int, rdb *redis.Client) grantFunc {
			l := redis_rate.NewLimiter(rdb)
			return func(ctx context.Context) (time.Duration, error) {
				for ctx.Err() == nil {
					t0 := time.Now()
					res, err := l.Allow(ctx, "cmp", redis_rate.Limit{Rate: R, Period: time.Second, Burst: 1})
					dec := time.Since(t0)
					if err != nil {
						return dec, err
					}
					if res.Allowed > 0 {
						return dec, nil
					}
					sleepCtx(ctx, res.RetryAfter)
				}
				return 0, ctx.Err()
			}
		}))
		r3 := testenv.StartRedis(b)
		results = append(results, runLimiter(b, "x/time/rate per process", r3, d, func(_ int, _ *redis.Client) grantFunc {
			l := rate.NewLimiter(rate.Limit(R), 1)
			return func(ctx context.Context) (time.Duration, error) {
				t0 := time.Now()
				err := l.Wait(ctx)
				return time.Since(t0), err
			}
		}))
	}
	fmt.Printf("\nlimiter comparison, R=%d, 4 clients x 50 workers, %s each\n", R, d)
	fmt.Printf("| limiter | max calls in any 1 s window | achieved rate | Redis calls per grant | decision p50 | decision p99 |\n|---|---|---|---|---|---|\n")
	for _, r := range results {
		fmt.Printf("| %s | %d | %.1f/s (%.1f%% of R) | %.3f | %s | %s |\n", r.name, r.maxInWindow, r.rate, 100*r.rate/R, r.redisCallsPerGrant,
			r.decisionP50.Round(time.Microsecond), r.decP99.Round(time.Microsecond))
	}
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}
