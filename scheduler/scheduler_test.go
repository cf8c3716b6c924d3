package scheduler

import (
	"context"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/redis/go-redis/v9"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
)

// recorder is the pipeline as the scheduler sees it: like worker.Control's
// Submit, a campaign id already taken is refused as a duplicate and answers
// nil.
type recorder struct {
	mu    sync.Mutex
	ids   []string // created, in order
	at    []time.Time
	calls int // submits, duplicates included
	fail  error
}

func (r *recorder) submit(_ context.Context, c *campaigns.Campaign, startAt time.Time) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.calls++
	if r.fail != nil {
		return r.fail
	}
	if slices.Contains(r.ids, c.ID) {
		return nil
	}
	r.ids = append(r.ids, c.ID)
	r.at = append(r.at, startAt)
	return nil
}

func (r *recorder) got() []string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]string(nil), r.ids...)
}

func (r *recorder) setFail(fail bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.fail = nil
	if fail {
		r.fail = errors.New("redis: connection refused")
	}
}

func (r *recorder) submits() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.calls
}

func setup(t *testing.T, start time.Time, entries []Entry, processes int) (*clock.Fake, []*Scheduler, *recorder) {
	t.Helper()
	rdb := testenv.StartRedis(t).Client(t)
	clk := clock.NewFake(start)
	rec := &recorder{}
	var ss []*Scheduler
	for i := 0; i < processes; i++ {
		s, err := New(entries, rec.submit, Options{Redis: rdb, Clock: clk, Logger: zerolog.Nop()})
		if err != nil {
			t.Fatal(err)
		}
		ss = append(ss, s)
	}
	return clk, ss, rec
}

func tickAll(t *testing.T, ss []*Scheduler) {
	t.Helper()
	var wg sync.WaitGroup
	for _, s := range ss {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := s.Tick(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
}

func TestEachTickFiresOnceAcrossProcesses(t *testing.T) {
	t.Parallel()
	start := testenv.Date(2026, 12, 7, 8, 59, 0, 0)
	entries := []Entry{{Name: "digest", Spec: "0 9 * * MON", Location: time.UTC,
		Campaign: campaigns.Campaign{Kind: campaigns.KindLabelPush, Label: "weekly"}}}
	clk, ss, rec := setup(t, start, entries, 3)

	tickAll(t, ss) // 08:59: nothing due
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("fired early: %v", got)
	}
	clk.Advance(61 * time.Second) // 09:00:01 Monday
	tickAll(t, ss)
	tickAll(t, ss) // a second check in the same tick fires nothing more
	got := rec.got()
	if len(got) != 1 || got[0] != TickID("digest", testenv.Date(2026, 12, 7, 9, 0, 0, 0)) {
		t.Fatalf("fired %v, want exactly [%s]", got, TickID("digest", testenv.Date(2026, 12, 7, 9, 0, 0, 0)))
	}
	// Only one process submitted: the others saw its firing lease or its
	// mark (a second submit would publish a "duplicate" status).
	if n := rec.submits(); n != 1 {
		t.Fatalf("%d submits of one tick by 3 processes, want 1", n)
	}
	clk.Advance(7 * 24 * time.Hour)
	tickAll(t, ss)
	if got := rec.got(); len(got) != 2 || got[1] != TickID("digest", testenv.Date(2026, 12, 14, 9, 0, 0, 0)) {
		t.Fatalf("second week: %v", got)
	}
}

func TestMissedTicksAreNotBackfilled(t *testing.T) {
	t.Parallel()
	start := testenv.Date(2026, 1, 1, 0, 0, 0, 0)
	clk, ss, rec := setup(t, start, []Entry{{Name: "hourly", Spec: "@hourly"}}, 1)
	clk.Advance(5*time.Hour + 30*time.Minute) // every process was down for 5 ticks
	tickAll(t, ss)
	if got := rec.got(); len(got) != 0 {
		t.Fatalf("backfilled stale ticks: %v", got)
	}
	clk.Advance(31 * time.Minute) // 06:01
	tickAll(t, ss)
	if got := rec.got(); len(got) != 1 || got[0] != TickID("hourly", testenv.Date(2026, 1, 1, 6, 0, 0, 0)) {
		t.Fatalf("got %v", got)
	}
}

// A Tick that comes late (Redis slow to answer, the process paused) fires
// every tick still within the grace, not only the last one.
func TestLateTickFiresEveryTickWithinGrace(t *testing.T) {
	t.Parallel()
	start := testenv.Date(2026, 1, 1, 0, 0, 0, 500_000_000)
	clk := clock.NewFake(start)
	rec := &recorder{}
	s, err := New([]Entry{{Name: "s", Spec: "*/10 * * * * *"}}, rec.submit,
		Options{Redis: testenv.StartRedis(t).Client(t), Grace: 25 * time.Second, Clock: clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	clk.Advance(45 * time.Second) // 00:00:45.5: ticks :10 :20 :30 :40 passed
	if err := s.Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	want := []string{TickID("s", testenv.Date(2026, 1, 1, 0, 0, 30, 0)), TickID("s", testenv.Date(2026, 1, 1, 0, 0, 40, 0))}
	if got := rec.got(); !slices.Equal(got, want) {
		t.Fatalf("fired %v, want %v (the ticks within 25s)", got, want)
	}
}

func TestZoneAndSeconds(t *testing.T) {
	t.Parallel()
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name, spec string
		loc        *time.Location
		from, want time.Time
	}{
		{"five fields in zone", "0 9 * * *", sh, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 1, 0, 0, 0, time.UTC)},
		{"six fields with seconds", "30 * * * * *", time.UTC, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), time.Date(2026, 1, 1, 0, 0, 30, 0, time.UTC)},
		{"descriptor", "@daily", time.UTC, time.Date(2026, 1, 1, 5, 0, 0, 0, time.UTC), time.Date(2026, 1, 2, 0, 0, 0, 0, time.UTC)},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s, err := Parse(tt.spec, tt.loc)
			if err != nil {
				t.Fatal(err)
			}
			if got := s.Next(tt.from); !got.Equal(tt.want) {
				t.Errorf("Next(%s) = %s, want %s", tt.from, got, tt.want)
			}
		})
	}
	if _, err := Parse("61 * * * *", time.UTC); err == nil {
		t.Error("bad minute accepted")
	}
}

func TestFailedSubmitLeavesTheTickToOthers(t *testing.T) {
	t.Parallel()
	start := testenv.Date(2026, 1, 1, 0, 0, 59, 0)
	clk, ss, rec := setup(t, start, []Entry{{Name: "m", Spec: "* * * * *"}}, 2)
	rec.fail = errors.New("redis down")
	clk.Advance(2 * time.Second)
	if err := ss[0].Tick(context.Background()); err == nil {
		t.Fatal("want the submit error reported")
	}
	rec.fail = nil
	if err := ss[1].Tick(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := rec.got(); len(got) != 1 || got[0] != TickID("m", testenv.Date(2026, 1, 1, 0, 1, 0, 0)) {
		t.Fatalf("the other process should fire the tick: %v", got)
	}
}

// A fault after the old claim (SET NX) and before the submit — the process
// crashing, or losing Redis so that it could not release the claim — must
// not lose the tick: another process sees it due and not yet submitted, and
// fires it; the idempotent submit keeps it from being doubled.
func TestFaultBeforeSubmitLosesNoTick(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name  string
		fault func(rdb *redis.Client) error // run in place of process A's submit
	}{
		{"process crashes", func(*redis.Client) error {
			runtime.Goexit() // the goroutine of Tick stops here, as in a crash
			return nil
		}},
		{"redis connection lost", func(rdb *redis.Client) error {
			_ = rdb.Close()
			return errors.New("dial tcp: connection refused")
		}},
		{"submit fails", func(*redis.Client) error {
			return errors.New("store: create: i/o timeout")
		}},
	}
	const lease = 200 * time.Millisecond
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := testenv.StartRedis(t)
			start := testenv.Date(2026, 3, 2, 8, 59, 59, 0)
			clk := clock.NewFake(start)
			entries := []Entry{{Name: "daily", Spec: "0 9 * * *"}}
			rec := &recorder{}
			rdbA := srv.Client(t)
			a, err := New(entries, func(context.Context, *campaigns.Campaign, time.Time) error {
				return tt.fault(rdbA)
			}, Options{Redis: rdbA, Clock: clk, Logger: zerolog.Nop(), FiringLease: lease})
			if err != nil {
				t.Fatal(err)
			}
			var others []*Scheduler
			for range 2 {
				s, err := New(entries, rec.submit, Options{Redis: srv.Client(t), Clock: clk, Logger: zerolog.Nop(), FiringLease: lease})
				if err != nil {
					t.Fatal(err)
				}
				others = append(others, s)
			}
			b, c := others[0], others[1]

			clk.Advance(2 * time.Second) // 09:00:01: due
			done := make(chan error, 1)
			go func() {
				defer close(done)
				done <- a.Tick(context.Background())
			}()
			<-done // a's Tick returned an error, or its goroutine "crashed"
			// A's firing lease ends (at once when its submit failed, when it
			// expires when A died or lost Redis): its TTL runs out on Redis's
			// own clock, and Redis drops the key.
			probe := srv.Client(t)
			leaseKey := a.opts.Prefix + "firing:" + TickID("daily", testenv.Date(2026, 3, 2, 9, 0, 0, 0))
			testenv.WaitUntil(t, 5*time.Second, "A's firing lease "+leaseKey+" to end", func() bool {
				n, err := probe.Exists(context.Background(), leaseKey).Result()
				return err == nil && n == 0
			})

			clk.Advance(time.Second)
			if err := b.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := rec.got(); len(got) != 1 || got[0] != TickID("daily", testenv.Date(2026, 3, 2, 9, 0, 0, 0)) {
				t.Fatalf("after the fault in process A, process B fired %v, want [%s]", got, TickID("daily", testenv.Date(2026, 3, 2, 9, 0, 0, 0)))
			}
			// C saw the tick due too: B's mark spares it a submit.
			if err := c.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := rec.submits(); n != 1 {
				t.Fatalf("%d submits, want 1: the mark of a submitted tick was not read", n)
			}
			clk.Advance(time.Second)
			tickAll(t, others)
			if got := rec.got(); len(got) != 1 {
				t.Fatalf("fired %v, want the tick once", got)
			}
		})
	}
}

// A process whose submit fails (Redis down) retries the tick on its next
// Ticks while it is within the grace, and gives it up after that.
func TestFailedSubmitIsRetriedWithinGrace(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name     string
		downFor  time.Duration // the submit fails on every Tick until then
		wantSent bool
	}{
		{"down 1s", time.Second, true},
		{"down 25s", 25 * time.Second, true},
		{"down past the grace", 40 * time.Second, false},
	}
	const grace = 30 * time.Second
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			start := testenv.Date(2026, 1, 1, 0, 0, 59, 0)
			clk := clock.NewFake(start)
			rec := &recorder{}
			s, err := New([]Entry{{Name: "m", Spec: "*/5 * * * *"}}, rec.submit,
				Options{Redis: testenv.StartRedis(t).Client(t), Grace: grace, Clock: clk, Logger: zerolog.Nop()})
			if err != nil {
				t.Fatal(err)
			}
			tick := testenv.Date(2026, 1, 1, 0, 5, 0, 0)
			clk.Set(tick)
			for clk.Now().Sub(tick) <= time.Minute { // Run's loop: a Tick a second
				down := clk.Now().Before(tick.Add(tt.downFor))
				rec.setFail(down)
				err := s.Tick(context.Background())
				if wantErr := down && clk.Now().Sub(tick) <= grace; (err != nil) != wantErr {
					t.Fatalf("%s after the tick: Tick error %v, want one: %t", clk.Now().Sub(tick), err, wantErr)
				}
				clk.Advance(time.Second)
			}
			want := []string(nil)
			if tt.wantSent {
				want = []string{TickID("m", testenv.Date(2026, 1, 1, 0, 5, 0, 0))}
			}
			if got := rec.got(); !slices.Equal(got, want) {
				t.Fatalf("fired %v, want %v", got, want)
			}
			// The next tick fires as usual.
			clk.Set(testenv.Date(2026, 1, 1, 0, 10, 1, 0))
			if err := s.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
			if got := rec.got(); len(got) == 0 || got[len(got)-1] != TickID("m", testenv.Date(2026, 1, 1, 0, 10, 0, 0)) {
				t.Fatalf("next tick: fired %v", got)
			}
		})
	}
}
