// Package chaos drives real campaignd processes (the built binary) through
// the failures a deployment meets: Redis stopped and SIGKILLed mid-campaign,
// NATS restarted while campaigns are submitted, a provider outage, a slow
// provider, a SIGTERM hand-over, an archived task, a lost cron tick and
// short-lived tokens. Redis is a real redis-server, NATS an embedded server
// and the provider pushsim (both in the test process, which does nothing
// else that competes with the judge's clock).
//
// Each scenario asserts: every target delivered at least once, duplicates
// within the scenario's bound, 0 limit violations on pushsim's strict
// sliding window, the right final state, and /healthz and /readyz of every
// live process answering (any status) within 1 s throughout. It prints one
// line of figures; the suite ends with the table docs/RELIABILITY.md keeps.
//
// Run it with `make chaos` (CHAOS=1; about 4 minutes).
package chaos

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/judge"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// opts shape one scenario's world.
type opts struct {
	procs       int
	rate        float64 // push_single calls/s, for pushsim and campaignd
	concurrency int
	appendFsync string        // redis AOF; "" none
	tokenTTL    time.Duration // pushsim's token lifetime; 0 → 2h
	stallAfter  string        // worker.stall_after
	schedules   string        // YAML list under schedules:
	redisYAML   string        // the redis: line instead of a redis-server of the world's own (HA)
	natsYAML    string        // the nats: line instead of a NATS server of the world's own (HA)
	natsURL     string        // where the test's own NATS client connects, with natsYAML
	together    bool          // start the processes at the same moment, then wait for each
}

type world struct {
	t      *testing.T
	bin    string
	o      opts
	rd     *testenv.Redis
	ns     *testenv.NATS
	sim    *pushsim.Server
	cfg    string
	mu     sync.Mutex
	procs  []*proc
	health *healthWatch

	submitted []string // some targets of every campaign submitted
}

type proc struct {
	p   *testenv.Proc
	api string
}

func newWorld(t *testing.T, bin string, o opts) *world {
	t.Helper()
	if o.concurrency == 0 {
		o.concurrency = 20
	}
	if o.stallAfter == "" {
		o.stallAfter = "1m"
	}
	w := &world{t: t, bin: bin, o: o}
	if o.redisYAML == "" {
		w.rd = testenv.StartRedisWith(t, testenv.RedisOptions{AppendFsync: o.appendFsync})
		o.redisYAML = fmt.Sprintf("redis: {url: %q}", w.rd.URL)
	}
	if o.natsYAML == "" {
		w.ns = testenv.StartNATS(t)
		o.natsURL = w.ns.URL
		o.natsYAML = fmt.Sprintf("nats: {url: %q}", w.ns.URL)
	}
	w.o = o
	var err error
	w.sim, err = pushsim.Start(pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: o.rate}, TokenTTL: o.tokenTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = w.sim.Close() })
	yaml := fmt.Sprintf(`%s
%s
worker: {concurrency: %d, stall_after: %s}
apps:
  default:
    provider: easemob
    base_url: %q
    org: chaos
    app: chaos
    client_id: pushsim
    client_secret: pushsim-secret
    limits: {push_single: %g}
`, o.redisYAML, o.natsYAML, o.concurrency, o.stallAfter, w.sim.URL(), o.rate)
	if o.schedules != "" {
		yaml += "schedules:\n" + o.schedules
	}
	w.cfg = filepath.Join(t.TempDir(), "chaos.yaml")
	if err := os.WriteFile(w.cfg, []byte(yaml), 0o600); err != nil {
		t.Fatal(err)
	}
	w.health = watchHealth(t, w)
	if o.together {
		var launched []*proc
		for range o.procs {
			launched = append(launched, w.launch())
		}
		for _, p := range launched {
			w.ready(p)
		}
		return w
	}
	for range o.procs {
		w.start()
	}
	return w
}

// start starts one more campaignd process and waits until it is ready.
func (w *world) start() *proc {
	w.t.Helper()
	p := w.launch()
	w.ready(p)
	return p
}

// launch starts one more campaignd process.
func (w *world) launch() *proc {
	w.t.Helper()
	port := testenv.FreePort(w.t)
	api := fmt.Sprintf("http://127.0.0.1:%d", port)
	level := "warn"
	if v := os.Getenv("CHAOS_LOG_LEVEL"); v != "" {
		level = v
	}
	p := testenv.StartProc(w.t, w.bin+"/campaignd", []string{"-config", w.cfg, "-log-level", level},
		[]string{fmt.Sprintf("CAMPAIGND_HTTP_ADDR=127.0.0.1:%d", port)})
	return &proc{p: p, api: api}
}

// ready waits until a launched process is ready and counts it live. One
// that exited first fails the test with its log.
func (w *world) ready(pr *proc) {
	w.t.Helper()
	testenv.WaitFor(w.t, time.Minute, "campaignd to be ready (its log last)", func() (string, bool) {
		if resp, err := httpc.Get(pr.api + "/readyz"); err == nil {
			resp.Body.Close()
			if resp.StatusCode == http.StatusOK {
				return "", true
			}
		}
		if pr.p.Exited() {
			w.t.Fatalf("campaignd exited at start:\n%s", pr.p.Log())
		}
		return "\n" + pr.p.Log(), false
	})
	w.mu.Lock()
	w.procs = append(w.procs, pr)
	w.mu.Unlock()
}

func (w *world) live() []*proc {
	w.mu.Lock()
	defer w.mu.Unlock()
	var out []*proc
	for _, p := range w.procs {
		if !p.p.Exited() {
			out = append(out, p)
		}
	}
	return out
}

var httpc = &http.Client{Timeout: 2 * time.Second}

// status asks any live process for a campaign's status.
func (w *world) status(id string) (campaigns.Status, bool) {
	var apis []string
	for _, p := range w.live() {
		apis = append(apis, p.api)
	}
	return judge.CampaignStatus(httpc, apis, id)
}

// waitCompleted waits for campaigns fmt.Sprintf(idFormat, 0..count-1) to
// end and tells how many completed with all each targets sent (an error
// unless all did), and the last one's status.
func (w *world) waitCompleted(idFormat string, count, each int) (last campaigns.Status, completed int) {
	w.t.Helper()
	for i := range count {
		last = w.waitFinal(fmt.Sprintf(idFormat, i), 3*time.Minute)
		if last.Status == campaigns.StateCompleted && last.Sent == int64(each) {
			completed++
		}
	}
	if completed != count {
		w.t.Errorf("%d of %d campaigns completed with every target sent", completed, count)
	}
	return last, completed
}

func (w *world) waitFinal(id string, within time.Duration) campaigns.Status {
	w.t.Helper()
	return testenv.WaitFor(w.t, within, id+" to be final", func() (campaigns.Status, bool) {
		st, ok := w.status(id)
		return st, ok && st.Status.Final()
	})
}

func (w *world) js() jetstream.JetStream {
	w.t.Helper()
	nc, err := nats.Connect(w.o.natsURL, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
	if err != nil {
		w.t.Fatal(err)
	}
	w.t.Cleanup(nc.Close)
	js, err := jetstream.New(nc)
	if err != nil {
		w.t.Fatal(err)
	}
	return js
}

// submit publishes a batch_push campaign of targets prefix-0..n-1, trying
// again (same message id) until JetStream takes it.
func (w *world) submit(js jetstream.JetStream, id, prefix string, n int) {
	w.t.Helper()
	var aud bytes.Buffer
	for i := range n {
		fmt.Fprintf(&aud, "%s-%06d\n", prefix, i)
		if i%100 == 0 { // one target per call is enough to date the calls
			w.submitted = append(w.submitted, fmt.Sprintf("%s-%06d", prefix, i))
		}
	}
	body, _ := json.Marshal(map[string]any{"id": id, "kind": "batch_push",
		"audience":     map[string]string{"bucket": "audiences", "object": id},
		"push_message": map[string]string{"title": "chaos", "content": id}})
	testenv.WaitFor(w.t, time.Minute, "JetStream to take campaign "+id, func() (error, bool) {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := intake.UploadAudience(ctx, js, "audiences", id, bytes.NewReader(aud.Bytes()))
		if err == nil {
			_, err = js.Publish(ctx, "campaigns.submit", body, jetstream.WithMsgID(id))
		}
		cancel()
		return err, err == nil
	})
}

func (w *world) waitPushes(n int) {
	w.t.Helper()
	reached := false
	defer func() { // on the timeout too (Fatal runs it): the logs tell why
		if !reached {
			for _, p := range w.live() {
				w.t.Logf("log of %s:\n%s", p.api, p.p.Log())
			}
		}
	}()
	testenv.WaitFor(w.t, 20*time.Second, fmt.Sprintf("%d pushes", n), func() (int, bool) {
		got := w.sim.Sim().Stats().TotalPushes
		return got, got >= n
	})
	reached = true
}

// healthWatch probes /healthz and /readyz of every live process every
// 200 ms and counts probes not answered within 1 s.
type healthWatch struct {
	probes, unanswered atomic.Int64
	slowest            atomic.Int64 // ns
	stop               chan struct{}
	done               chan struct{}
}

func watchHealth(t *testing.T, w *world) *healthWatch {
	h := &healthWatch{stop: make(chan struct{}), done: make(chan struct{})}
	c := &http.Client{Timeout: time.Second}
	go func() {
		defer close(h.done)
		for {
			select {
			case <-h.stop:
				return
			case <-time.After(200 * time.Millisecond):
			}
			for _, p := range w.live() {
				for _, path := range []string{"/healthz", "/readyz"} {
					start := time.Now()
					resp, err := c.Get(p.api + path)
					if p.p.Exited() {
						continue // it ended meanwhile (a kill, a hand-over)
					}
					h.probes.Add(1)
					if err != nil {
						h.unanswered.Add(1)
						continue
					}
					resp.Body.Close()
					if d := time.Since(start); int64(d) > h.slowest.Load() {
						h.slowest.Store(int64(d))
					}
				}
			}
		}
	}()
	t.Cleanup(h.end)
	return h
}

func (h *healthWatch) end() {
	select {
	case <-h.stop:
	default:
		close(h.stop)
	}
	<-h.done
}

// row is one scenario's figures.
type row struct {
	name                         string
	targets, pushes, dups, viols int
	failed                       int64
	final                        campaigns.State
	took                         time.Duration
	probes, unanswered           int64
	slowest                      time.Duration
	extra                        string
}

var (
	rowsMu   sync.Mutex
	rows     []row
	scenario string // the one running (they run one at a time)
)

// finish checks what every scenario promises and records its figures:
// every one of targets delivered, duplicates ≤ maxDups, no violation,
// health answering throughout.
func (w *world) finish(name string, start time.Time, targets, maxDups int, st campaigns.Status, wantFinal campaigns.State, extra string) {
	w.t.Helper()
	w.health.end()
	s := w.sim.Sim().Stats()
	r := row{name: name, targets: s.TargetsPushed, pushes: s.TotalPushes, dups: s.TotalPushes - s.TargetsPushed,
		viols: s.Violations, failed: st.Failed, final: st.Status, took: time.Since(start).Round(100 * time.Millisecond),
		probes: w.health.probes.Load(), unanswered: w.health.unanswered.Load(), slowest: time.Duration(w.health.slowest.Load()).Round(time.Millisecond), extra: extra}
	rowsMu.Lock()
	rows = append(rows, r)
	rowsMu.Unlock()
	w.t.Logf("chaos: %s: %d targets delivered of %d, %d pushes, %d duplicates, %d violations, final %s (failed %d), %s, health %d probes (%d unanswered, slowest %s) %s",
		name, r.targets, targets, r.pushes, r.dups, r.viols, r.final, r.failed, r.took, r.probes, r.unanswered, r.slowest, extra)
	for _, v := range s.ViolationList {
		w.t.Errorf("violation %+v", v)
		w.t.Logf("push calls around it:\n%s", judge.CallsAround(w.sim.Sim(), w.submitted, v.At))
	}
	switch {
	case r.targets != targets:
		w.t.Errorf("%d targets delivered, want %d", r.targets, targets)
	case r.dups > maxDups:
		w.t.Errorf("%d duplicates, want at most %d", r.dups, maxDups)
	case wantFinal != "" && st.Status != wantFinal:
		w.t.Errorf("final %s, want %s: %+v", st.Status, wantFinal, st)
	case r.unanswered > 0:
		w.t.Errorf("%d health probes unanswered within 1 s", r.unanswered)
	}
}

func TestChaos(t *testing.T) {
	if os.Getenv("CHAOS") == "" {
		t.Skip("drives real processes through failures for minutes: run it with `make chaos` (CHAOS=1)")
	}
	bin := os.Getenv("CHAOS_BIN") // a directory holding a campaignd built already
	if bin == "" {
		bin = testenv.Build(t, "./cmd/campaignd")
	}
	for _, sc := range []struct {
		name string
		run  func(t *testing.T, bin string)
	}{
		{"redis stopped 3 s", redisOutage(false)},
		{"redis SIGKILLed (appendfsync always)", redisOutage(true)},
		{"nats restarted during submits", natsRestart},
		{"provider outage 8 s", providerOutage},
		{"slow provider (400 ms)", slowProvider},
		{"SIGTERM hand-over", handOver},
		{"archived batch task", archivedTask},
		{"lost cron tick", lostCronTick},
		{"3 processes, 4 s tokens", shortTokens},
	} {
		scenario = sc.name
		t.Run(sc.name, func(t *testing.T) { sc.run(t, bin) })
	}
	var b strings.Builder
	fmt.Fprintf(&b, "\n| scenario | delivered | pushes | duplicates | violations | final | failed | took | health probes (unanswered, slowest) | notes |\n|---|---|---|---|---|---|---|---|---|---|\n")
	for _, r := range rows {
		fmt.Fprintf(&b, "| %s | %d | %d | %d | %d | %s | %d | %s | %d (%d, %s) | %s |\n",
			r.name, r.targets, r.pushes, r.dups, r.viols, r.final, r.failed, r.took, r.probes, r.unanswered, r.slowest, r.extra)
	}
	t.Log(b.String())
}

const n = 40_000 // targets of the one-campaign scenarios: 400 calls, 4 s at 100/s

func redisOutage(kill bool) func(t *testing.T, bin string) {
	return func(t *testing.T, bin string) {
		fsync := "everysec"
		if kill {
			fsync = "always"
		}
		w := newWorld(t, bin, opts{procs: 2, rate: 100, appendFsync: fsync})
		start := time.Now()
		w.submit(w.js(), "redis", "r", n)
		w.waitPushes(10_000)
		if kill {
			w.rd.Stop()
		} else {
			w.rd.Shutdown()
		}
		time.Sleep(3 * time.Second) // the outage lasts 3 s of real time
		w.rd.Restart(t)
		st := w.waitFinal("redis", 3*time.Minute)
		w.finish(scenario, start, n, 0, st, campaigns.StateCompleted, "")
	}
}

func natsRestart(t *testing.T, bin string) {
	w := newWorld(t, bin, opts{procs: 2, rate: 100})
	js := w.js()
	start := time.Now()
	const count, each = 40, 500
	pace := time.NewTicker(100 * time.Millisecond) // paces the submits: some go while NATS is down
	defer pace.Stop()
	for i := range count {
		if i == 15 {
			w.ns.Stop()
			go func() { time.Sleep(2 * time.Second); w.ns.Restart(t) }() // NATS is down for 2 s of real time
		}
		w.submit(js, fmt.Sprintf("nats-%02d", i), fmt.Sprintf("n%02d", i), each)
		<-pace.C
	}
	last, completed := w.waitCompleted("nats-%02d", count, each)
	w.finish(scenario, start, count*each, 0, last, campaigns.StateCompleted, fmt.Sprintf("%d/%d campaigns completed once", completed, count))
}

func providerOutage(t *testing.T, bin string) {
	w := newWorld(t, bin, opts{procs: 2, rate: 100})
	start := time.Now()
	w.submit(w.js(), "outage", "o", n)
	w.waitPushes(5_000)
	sim := w.sim.Sim()
	sim.SetFaults(pushsim.Faults{ErrorRate: 1})
	time.Sleep(8 * time.Second) // the provider outage lasts 8 s of real time
	before := sim.Stats().TotalPushes
	sim.SetFaults(pushsim.Faults{})
	back := judge.FullRateAfter(sim, before, 80*100)
	st := w.waitFinal("outage", 3*time.Minute)
	w.finish(scenario, start, n, 0, st, campaigns.StateCompleted, fmt.Sprintf("80%% of the limit %s after recovery; %d answered 500", back.Round(10*time.Millisecond), sim.Stats().Faulted))
}

func slowProvider(t *testing.T, bin string) {
	w := newWorld(t, bin, opts{procs: 2, rate: 100})
	w.sim.Sim().SetFaults(pushsim.Faults{Latency: 400 * time.Millisecond})
	start := time.Now()
	const m = 20_000
	w.submit(w.js(), "slow", "s", m)
	st := w.waitFinal("slow", 3*time.Minute)
	w.finish(scenario, start, m, 0, st, campaigns.StateCompleted, fmt.Sprintf("%.1f calls/s of 100", float64(m/100)/time.Since(start).Seconds()))
}

func handOver(t *testing.T, bin string) {
	w := newWorld(t, bin, opts{procs: 1, rate: 100})
	start := time.Now()
	w.submit(w.js(), "handover", "h", n)
	w.waitPushes(10_000)
	old := w.live()[0]
	w.start()
	code, took, ok := old.p.Terminate(15 * time.Second)
	if !ok || code != 0 || took > 10*time.Second {
		t.Errorf("the old process after SIGTERM: exit %d after %s (ended %v), want 0 within the 8 s shutdown timeout", code, took, ok)
	}
	st := w.waitFinal("handover", 3*time.Minute)
	w.finish(scenario, start, n, 0, st, campaigns.StateCompleted, fmt.Sprintf("old process exit %d after %s", code, took.Round(10*time.Millisecond)))
}

func archivedTask(t *testing.T, bin string) {
	w := newWorld(t, bin, opts{procs: 1, rate: 100, concurrency: 2, stallAfter: "2s"})
	start := time.Now()
	w.submit(w.js(), "arch", "a", n)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: w.rd.Addr})
	defer insp.Close()
	archived := ""
	testenv.WaitUntil(t, 10*time.Second, "a waiting batch task to archive", func() bool {
		for _, id := range []string{"arch:g:7", "arch:g:6", "arch:g:5"} {
			if err := insp.ArchiveTask("default", id); err == nil {
				archived = id
				return true
			}
		}
		return false
	})
	st := w.waitFinal("arch", 3*time.Minute)
	w.finish(scenario, start, n, 0, st, campaigns.StateCompleted, "archived "+archived)
}

// Two processes fire a schedule every 2 s; one is SIGKILLed and Redis
// hangs (SIGSTOP) for 1.5 s around ticks: every tick in the run still
// fires exactly once.
func lostCronTick(t *testing.T, bin string) {
	w := newWorld(t, bin, opts{procs: 2, rate: 100, schedules: `  - name: tick
    cron: "*/2 * * * * *"
    campaign: {kind: batch_push, app: default, targets: [c1, c2], push_message: {title: Tick, content: tock}}
`})
	nc, err := nats.Connect(w.o.natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	var dupMu sync.Mutex
	dupEvents := 0
	sub, err := nc.Subscribe("campaigns.status.>", func(m *nats.Msg) {
		var st campaigns.Status
		if json.Unmarshal(m.Data, &st) == nil && st.Status == campaigns.StateDuplicate {
			dupMu.Lock()
			dupEvents++
			dupMu.Unlock()
		}
	})
	if err != nil {
		t.Fatal(err)
	}
	defer sub.Unsubscribe()
	start := time.Now()
	first := start.Truncate(2 * time.Second).Add(4 * time.Second)
	// The faults are timed on the real clock, as the ticks are: at offsets
	// from the first tick (not one after the other, which would drift).
	sleepUntil := func(offset time.Duration) { time.Sleep(time.Until(first.Add(offset))) }
	sleepUntil(3900 * time.Millisecond) // just before a tick
	w.live()[0].p.Kill()
	sleepUntil(5900 * time.Millisecond) // a tick with one process fewer; now just before the next
	pid := w.rd.Pid()
	_ = sigstop(pid)
	sleepUntil(7400 * time.Millisecond) // Redis hangs for 1.5 s of real time, over the tick at first + 6 s
	_ = sigcont(pid)
	// Three more ticks: the third is fired (the ticks before it are judged).
	third := first.Add(12 * time.Second)
	testenv.WaitUntil(t, 30*time.Second, "the tick at "+third.UTC().Format(time.TimeOnly)+" to fire", func() bool {
		_, ok := w.status("cron-tick-" + third.UTC().Format("20060102150405"))
		return ok
	})
	last := time.Now().Truncate(2 * time.Second).Add(-2 * time.Second)
	missing, fired := 0, 0
	var st campaigns.Status
	for tick := first; !tick.After(last); tick = tick.Add(2 * time.Second) {
		id := "cron-tick-" + tick.UTC().Format("20060102150405")
		s, ok := w.status(id)
		if !ok {
			missing++
			t.Errorf("tick %s never fired", id)
			continue
		}
		fired++
		st = w.waitFinal(id, time.Minute)
		_ = s
	}
	dupMu.Lock()
	dups := dupEvents
	dupMu.Unlock()
	if dups != 0 {
		t.Errorf("%d duplicate submits of a tick", dups)
	}
	w.finish(scenario, start, 2, 2*(fired+3), st, campaigns.StateCompleted, fmt.Sprintf("%d ticks fired, %d lost, %d submitted twice", fired, missing, dups))
}

// Three processes at push_single 20/s with tokens that live 4 s.
func shortTokens(t *testing.T, bin string) {
	const rate = 20
	w := newWorld(t, bin, opts{procs: 3, rate: rate, tokenTTL: 4 * time.Second})
	start := time.Now()
	const m = 40_000 // 400 calls: 20 s
	w.submit(w.js(), "tokens", "k", m)
	st := w.waitFinal("tokens", 3*time.Minute)
	s := w.sim.Sim().Stats()
	pushCalls := s.Calls["easemob/chaos/chaos/push_single"]
	fetches := s.Calls["easemob/chaos/chaos/token"]
	took := time.Since(start).Seconds()
	share := float64(m/100) / (rate * took)
	if s.Statuses[401] != 0 {
		t.Errorf("%d answers 401, want 0", s.Statuses[401])
	}
	// One fetch per process at start and per refresh (80% of 4 s).
	if limit := 3 * (int(took/3.2) + 2); fetches > limit {
		t.Errorf("%d token fetches in %.0f s by 3 processes, want at most %d", fetches, took, limit)
	}
	w.finish(scenario, start, m, 0, st, campaigns.StateCompleted,
		fmt.Sprintf("%d push calls, %d answered 401, %d token fetches, %.1f%% of the limit carried pushes (whole run, start-up included)", pushCalls, s.Statuses[401], fetches, 100*share))
}

func sigstop(pid int) error { return syscall.Kill(pid, syscall.SIGSTOP) }
func sigcont(pid int) error { return syscall.Kill(pid, syscall.SIGCONT) }
