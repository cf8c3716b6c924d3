// Package manyapps tests one campaignd deployment serving many apps at
// once, end to end: campaignd processes built from ./cmd/campaignd, a real
// Redis and NATS, and pushsim judging every app on its own strict sliding
// second (issue 22; make bench-apps measures the same at larger sizes).
//
// MANYAPPS_LOG_LEVEL sets campaignd's log level (default warn; debug shows
// each batch task's rounds and the limiter's moves), and MANYAPPS_KEEPLOG=
// PATH keeps process i's log as PATH.i.
package manyapps

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
)

// env is a deployment: pushsim, Redis, NATS and campaignd processes
// serving apps a00..a<n-1>, each with push_single at rate.
type env struct {
	simURL string
	js     jetstream.JetStream
	rate   float64
}

func setup(t *testing.T, apps int, rate float64, procs int) *env {
	t.Helper()
	bin := testenv.Build(t, "./cmd/campaignd", "./cmd/pushsim")
	e := &env{rate: rate}
	e.simURL, _ = testenv.StartSimProc(t, bin+"/pushsim", "-limit", fmt.Sprintf("push_single=%g", rate))
	rd := testenv.StartRedis(t)
	ns := testenv.StartNATS(t)
	_, e.js = ns.Connect(t)

	var yaml strings.Builder
	fmt.Fprintf(&yaml, "redis: {url: %q}\nnats: {url: %q}\napps:\n", rd.URL, ns.URL)
	for i := range apps {
		fmt.Fprintf(&yaml, "  a%02d: {provider: easemob, base_url: %q, org: many, app: a%02d, client_id: pushsim, client_secret: pushsim-secret, limits: {push_single: %g}}\n",
			i, e.simURL, i, rate)
	}
	cfg := filepath.Join(t.TempDir(), "apps.yaml")
	if err := os.WriteFile(cfg, []byte(yaml.String()), 0o600); err != nil {
		t.Fatal(err)
	}
	level := cmp.Or(os.Getenv("MANYAPPS_LOG_LEVEL"), "warn")
	for i := range procs {
		_, p := testenv.StartCampaignd(t, bin+"/campaignd", cfg, level)
		if keep := os.Getenv("MANYAPPS_KEEPLOG"); keep != "" {
			t.Cleanup(func() { // the log so far (cleanups run last first: the process still runs)
				if data, err := os.ReadFile(p.LogPath); err == nil {
					_ = os.WriteFile(fmt.Sprintf("%s.%d", keep, i+1), data, 0o644)
				}
			})
		}
	}
	return e
}

// submit publishes a batch_push campaign of app to campaigns.submit;
// audience, when set, names an object in the audiences bucket instead of
// inline targets.
func (e *env) submit(t *testing.T, id, app string, targets []string, audience string) {
	t.Helper()
	c := map[string]any{"id": id, "app": app, "kind": "batch_push", "push_message": map[string]string{"title": id}}
	if audience != "" {
		c["audience"] = map[string]string{"bucket": "audiences", "object": audience}
	} else {
		c["targets"] = targets
	}
	body, err := json.Marshal(c)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.js.Publish(context.Background(), "campaigns.submit", body, jetstream.WithMsgID(id)); err != nil {
		t.Fatalf("submit %s: %v", id, err)
	}
}

// span is app's push_single calls as pushsim counted them: how many, and
// its first and last arrival.
func (e *env) span(st pushsim.Stats, app string) (calls int, sp pushsim.Span, ok bool) {
	key := "easemob/many/" + app + "/push_single"
	sp, ok = st.Spans[key]
	return st.Calls[key], sp, ok
}

// waitPushes waits until pushsim has n pushes in all, for at most within.
func (e *env) waitPushes(t *testing.T, n int, within time.Duration) pushsim.Stats {
	t.Helper()
	return testenv.WaitFor(t, within, fmt.Sprintf("%d pushes", n), func() (pushsim.Stats, bool) {
		st := testenv.SimStats(t, e.simURL)
		return st, st.TotalPushes >= n
	})
}

func ids(prefix string, n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("%s-%06d", prefix, i)
	}
	return out
}

// noViolations fails t with pushsim's violations, if any.
func noViolations(t *testing.T, st pushsim.Stats) {
	t.Helper()
	if st.Violations != 0 {
		t.Errorf("%d violations of the strict sliding second: %+v", st.Violations, st.ViolationList)
	}
	if st.MaxPushesOneID > 1 {
		t.Errorf("a target was pushed %d times", st.MaxPushesOneID)
	}
}

// Twenty apps, each with push_single at 10/s and a campaign of 10 s of
// it, all submitted at once to three processes: no app's strict second is
// ever broken, no target is pushed twice, and every app's calls carry its
// limit from its first call to its last: the median app at least 97%
// and the worst at least 95% (the goals). The test logs where the
// worst app's calls paused. On the 2-core machine, over 20 runs with the
// in-flight slots shared out by app, the worst app got 96.2–98.4%, also
// with a busy loop taking one core; before, one such run gave 91.4% (an
// app's calls paused 845 ms waiting for in-flight slots held by others).
//
// The measure is of campaignd, so a stall of the whole machine (the test
// process itself woke up late by machineStall or more: another job on
// the machine, not campaignd) excuses one failed run, and the test runs
// once more on a fresh deployment; the second run must pass.
func TestTwentyAppsAtTheirLimitsOnThreeProcesses(t *testing.T) {
	for attempt := 1; ; attempt++ {
		var r twentyAppsRun
		t.Run(fmt.Sprintf("run%d", attempt), func(t *testing.T) { r = twentyApps(t) })
		if t.Failed() || r.good() {
			return
		}
		if attempt == 1 && r.stall >= machineStall {
			t.Logf("run %d: median %.1f%%, worst %.1f%%, but the test process itself woke up %s late at %s: the machine stalled; once more",
				attempt, 100*r.median, 100*r.worst, r.stall.Round(time.Millisecond), r.stallAt.Format("15:04:05.000"))
			continue
		}
		t.Errorf("share of the limit: median %.1f%% (want at least 97%%), worst %.1f%% (want at least 95%%); the test process was at most %s late",
			100*r.median, 100*r.worst, r.stall.Round(time.Millisecond))
		return
	}
}

// machineStall is how late the test process must wake up for a run to
// count as one on a stalled machine: with both cores kept busy by two
// other loops it was at most 26 ms late in 5 runs (6 ms on an idle
// machine).
const machineStall = 150 * time.Millisecond

// twentyAppsRun is one run's measure: the median and worst app's share
// of its limit, and how late the test process itself woke up.
type twentyAppsRun struct {
	median, worst float64
	stall         time.Duration
	stallAt       time.Time
}

func (r twentyAppsRun) good() bool { return r.median >= 0.97 && r.worst >= 0.95 }

func twentyApps(t *testing.T) twentyAppsRun {
	const apps, rate, procs, seconds = 20, 10.0, 3, 10
	e := setup(t, apps, rate, procs)
	perApp := int(rate * 100 * seconds)
	watch := testenv.WatchStalls()
	start := time.Now()
	for i := range apps {
		app := fmt.Sprintf("a%02d", i)
		e.submit(t, "many-"+app, app, ids(app, perApp), "")
	}
	st := e.waitPushes(t, apps*perApp, 2*time.Minute)
	var r twentyAppsRun
	r.stall, r.stallAt = watch.Stop()
	noViolations(t, st)
	var shares []float64
	worstApp, worst := "", 2.0
	for i := range apps {
		app := fmt.Sprintf("a%02d", i)
		calls, sp, ok := e.span(st, app)
		if !ok || calls != perApp/100 {
			t.Fatalf("app %s: %d push_single calls, want %d", app, calls, perApp/100)
		}
		share := float64(calls-1) / (sp.Last.Sub(sp.First).Seconds() * rate)
		shares = append(shares, share)
		if share < worst {
			worstApp, worst = app, share
		}
		t.Logf("app %s: first call %.2fs after the submit, share of its limit %.1f%%", app, sp.First.Sub(start).Seconds(), 100*share)
	}
	slices.Sort(shares)
	r.median, r.worst = shares[len(shares)/2], worst
	t.Logf("share of the limit: median %.1f%%, worst %.1f%% (app %s, paused: %s); the test process was at most %s late",
		100*r.median, 100*worst, worstApp, e.pauses(t, worstApp, perApp/100, time.Duration(1.5*float64(time.Second)/rate)),
		r.stall.Round(time.Millisecond))
	return r
}

// pauses lists where app's calls (its batches' first targets, ids of
// ids(app, …)) were further apart than gap.
func (e *env) pauses(t *testing.T, app string, calls int, gap time.Duration) string {
	t.Helper()
	var at []time.Time
	for k := range calls {
		at = append(at, testenv.SimPushes(t, e.simURL, fmt.Sprintf("%s-%06d", app, 100*k))...)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	var out []string
	for i := 1; i < len(at); i++ {
		if d := at[i].Sub(at[i-1]); d > gap {
			out = append(out, fmt.Sprintf("%s at +%.2fs (%s)", d.Round(time.Millisecond), at[i-1].Sub(at[0]).Seconds(), at[i-1].Format("15:04:05.000")))
		}
	}
	if len(out) == 0 {
		return "nowhere"
	}
	return strings.Join(out, ", ")
}

// One app's backlog of 100,000 targets (100 s of its limit) does not hold
// up another app's small campaign: the small one's first call comes as
// soon after its submit as it does on an idle deployment (within one of
// its intervals, plus the jitter of asynq's polling), and its calls follow
// at its rate.
func TestOneAppsBacklogDoesNotDelayAnotherApp(t *testing.T) {
	const rate = 10.0
	e := setup(t, 2, rate, 1)
	interval := time.Duration(float64(time.Second) / rate)

	// The small campaign alone first: its latency on an idle deployment.
	idle := e.smallCampaign(t, "alone", 0)

	pr, pw := io.Pipe()
	go func() {
		for _, id := range ids("big", 100_000) {
			fmt.Fprintln(pw, id)
		}
		pw.Close()
	}()
	if err := intake.UploadAudience(context.Background(), e.js, "audiences", "big.txt", pr); err != nil {
		t.Fatal(err)
	}
	e.submit(t, "big", "a00", nil, "big.txt")
	// The big campaign is sending, its batches queued.
	testenv.WaitFor(t, time.Minute, "the big campaign to make 20 calls", func() (int, bool) {
		calls, _, _ := e.span(testenv.SimStats(t, e.simURL), "a00")
		return calls, calls >= 20
	})
	busy := e.smallCampaign(t, "beside", 4)
	t.Logf("the small campaign's first call: %s after its submit alone, %s beside the backlog", idle, busy)
	if busy > idle+interval+300*time.Millisecond {
		t.Errorf("beside the backlog the small campaign's first call came %s after its submit, alone %s: delayed by more than one interval (%s) and polling jitter", busy, idle, interval)
	}
	st := testenv.SimStats(t, e.simURL)
	noViolations(t, st)
	if calls, _, _ := e.span(st, "a00"); calls >= 1000 {
		t.Fatalf("the big campaign finished (%d calls): there was no backlog", calls)
	}
}

// smallCampaign submits 400 targets (4 calls) to app a01 and waits for
// them; it returns the time from the submit to the first call, and checks
// the calls follow at the app's rate. before is a01's calls so far.
func (e *env) smallCampaign(t *testing.T, id string, before int) time.Duration {
	t.Helper()
	start := time.Now()
	e.submit(t, "small-"+id, "a01", ids("small-"+id, 400), "")
	testenv.WaitFor(t, time.Until(start.Add(30*time.Second)), fmt.Sprintf("the 4 calls of small campaign %s (calls of a01 so far)", id), func() (int, bool) {
		calls, _, _ := e.span(testenv.SimStats(t, e.simURL), "a01")
		return calls, calls >= before+4
	})
	var at []time.Time
	for _, target := range []string{"000000", "000100", "000200", "000300"} {
		at = append(at, testenv.SimPushes(t, e.simURL, "small-"+id+"-"+target)...)
	}
	slices.SortFunc(at, func(a, b time.Time) int { return a.Compare(b) })
	if len(at) != 4 {
		t.Fatalf("small campaign %s: %d first-of-batch pushes, want 4", id, len(at))
	}
	spacing := time.Duration(float64(time.Second) / e.rate)
	if took := at[3].Sub(at[0]); took > 3*spacing+300*time.Millisecond {
		t.Errorf("small campaign %s: its 4 calls took %s, want about %s", id, took, 3*spacing)
	}
	return at[0].Sub(start)
}
