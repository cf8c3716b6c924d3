package ratelimit_test

import (
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"time"

	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/ratelimit"
)

// Consecutive calls on a key are spaced by 1/R plus the margin (1.5% by
// default); a rate of 1/s or more counts its whole calls only.
func ExampleLimiter_Spacing() {
	l := ratelimit.New(nil, ratelimit.Options{}) // Spacing needs no Redis
	for _, perSecond := range []float64{10, 4, 2.5, 0.5} {
		fmt.Printf("%g/s: %s\n", perSecond, l.Spacing(perSecond))
	}
	// Output:
	// 10/s: 101.5ms
	// 4/s: 253.75ms
	// 2.5/s: 507.5ms
	// 0.5/s: 2.03s
}

// Two limiters on one Redis, as two campaignd processes, book an app's
// push_single group at 1 call per second: each call gets the next slot of
// the shared schedule, and a call whose slot lies further ahead than its
// maxWait books nothing and gets a *RateLimited instead.
func ExampleLimiter_Reserve() {
	rdb, stop := testenv.RedisForExample()
	defer stop()
	ctx := context.Background()
	procs := []struct {
		name string
		l    *ratelimit.Limiter
	}{{"A", ratelimit.New(rdb, ratelimit.Options{})}, {"B", ratelimit.New(rdb, ratelimit.Options{})}}
	push := ratelimit.Rate{Key: ratelimit.GroupKey("default", provider.GroupPushSingle), PerSecond: 1}
	spacing := procs[0].l.Spacing(push.PerSecond)

	var first time.Time
	for i := range 6 {
		p := procs[i%2]
		r, err := p.l.Reserve(ctx, 4500*time.Millisecond, push)
		var limited *ratelimit.RateLimited
		switch {
		case errors.As(err, &limited):
			fmt.Printf("call %d (process %s): rate limited on %s\n", i, p.name, limited.Key)
		case err != nil:
			fmt.Println(err)
		default:
			// The caller would now sleep until r.SendAt (Wait does both).
			// Its slot's place in the shared schedule, in spacings:
			if i == 0 {
				first = r.SendAt
			}
			fmt.Printf("call %d (process %s): slot %.0f\n", i, p.name, math.Round(float64(r.SendAt.Sub(first))/float64(spacing)))
		}
	}
	// Output:
	// call 0 (process A): slot 0
	// call 1 (process B): slot 1
	// call 2 (process A): slot 2
	// call 3 (process B): slot 3
	// call 4 (process A): slot 4
	// call 5 (process B): rate limited on app:default:push_single
}

// A Gate is the provider.Gate the provider clients ask before every HTTP
// request: it waits for the app's group slot at the rate RatesFunc tells,
// and for any extra rate in the call's context (a campaign's own
// rate_limit). A group RatesFunc calls unlimited books nothing.
func ExampleGate() {
	rdb, stop := testenv.RedisForExample()
	defer stop()
	l := ratelimit.New(rdb, ratelimit.Options{})
	rates := func(app string, g provider.Group) (float64, bool) {
		if g == provider.GroupToken {
			return 0, false
		}
		return provider.DefaultLimits[g], true
	}
	var gate provider.Gate = l.Gate(rates)

	ctx := ratelimit.WithExtraRate(context.Background(), ratelimit.Rate{Key: "campaign:spring-sale", PerSecond: 5})
	for range 3 {
		if err := gate.Acquire(ctx, "default", provider.GroupPushSingle); err != nil {
			fmt.Println(err)
		}
	}
	if err := gate.Acquire(ctx, "default", provider.GroupToken); err != nil {
		fmt.Println(err)
	}

	keys, _ := rdb.Keys(ctx, "campaignd:rl:*").Result()
	slices.Sort(keys)
	fmt.Println("keys booked:", keys)
	// Output:
	// keys booked: [campaignd:rl:app:default:push_single campaignd:rl:campaign:spring-sale]
}

// A TaskWindow holds the provider's caps on push tasks (here 2 creations
// in any 5 minutes) for every process. Task campaigns wait in their app's
// queue, by priority then submission; Dispatch pops the next one the caps
// allow, and tells how long until the caps free when none may be created.
func ExampleTaskWindow() {
	rdb, stop := testenv.RedisForExample()
	defer stop()
	ctx := context.Background()
	l := ratelimit.New(rdb, ratelimit.Options{})
	tw := l.NewTaskWindow(ratelimit.TaskWindowConfig{MaxCreated: 2, Window: 5 * time.Minute, MaxRunning: 10, TaskDuration: time.Minute})

	submitted := time.Date(2026, 3, 1, 9, 0, 0, 0, time.UTC) // only the order of submissions counts
	waiting := []struct {
		kind ratelimit.TaskKind
		id   string
		prio int // 0 high, 1 normal, 2 low
	}{
		{ratelimit.TaskLabel, "newsletter", 1},
		{ratelimit.TaskLabel, "reminder", 1},
		{ratelimit.TaskBroadcast, "outage-notice", 0},
	}
	for i, t := range waiting {
		score := ratelimit.TaskScore(t.prio, submitted.Add(time.Duration(i)*time.Second))
		if err := tw.Enqueue(ctx, "default", ratelimit.TaskMember(t.kind, t.id), score); err != nil {
			fmt.Println(err)
			return
		}
	}
	for {
		member, wait, err := tw.Dispatch(ctx, "default")
		if err != nil {
			fmt.Println(err)
			return
		}
		if member == "" {
			fmt.Println("the next waits for the 5-minute window:", wait > 4*time.Minute)
			break
		}
		kind, id := ratelimit.ParseTaskMember(member)
		fmt.Println("create", id, "broadcast:", kind == ratelimit.TaskBroadcast)
		_ = tw.Confirm(ctx, "default", member) // the provider created it
	}
	// Output:
	// create outage-notice broadcast: true
	// create newsletter broadcast: false
	// the next waits for the 5-minute window: true
}
