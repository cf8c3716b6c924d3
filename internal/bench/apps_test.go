package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/pushsim"
)

// appsConfig is what BenchmarkApps runs, from the environment.
type appsConfig struct {
	sizes     []int         // BENCH_APPS: numbers of apps, default 1,10,100,1000
	procs     []int         // BENCH_PROCS: campaignd processes, default 1,3
	total     float64       // BENCH_TOTAL_RATE: calls/s of all apps together, default 400
	maxRate   float64       // BENCH_APP_RATE: an app's limit when the total allows, default 10
	seconds   float64       // BENCH_APP_SECONDS: each campaign lasts this long at its app's limit, default 10
	idle      time.Duration // BENCH_IDLE_SECONDS: how long idle CPU is measured, default 10
	overrides []string      // BENCH_CAMPAIGND_YAML: extra config lines (e.g. "worker: {concurrency: 100}")
}

func intsFromEnv(name string, def []int) []int {
	v := os.Getenv(name)
	if v == "" {
		return def
	}
	var out []int
	for _, f := range strings.Split(v, ",") {
		n, err := strconv.Atoi(strings.TrimSpace(f))
		if err == nil && n > 0 {
			out = append(out, n)
		}
	}
	return out
}

func floatFromEnv(name string, def float64) float64 {
	if v, err := strconv.ParseFloat(os.Getenv(name), 64); err == nil && v > 0 {
		return v
	}
	return def
}

func appsConfigFromEnv() appsConfig {
	c := appsConfig{
		sizes:   intsFromEnv("BENCH_APPS", []int{1, 10, 100, 1000}),
		procs:   intsFromEnv("BENCH_PROCS", []int{1, 3}),
		total:   floatFromEnv("BENCH_TOTAL_RATE", 400),
		maxRate: floatFromEnv("BENCH_APP_RATE", 10),
		seconds: floatFromEnv("BENCH_APP_SECONDS", 10),
		idle:    time.Duration(floatFromEnv("BENCH_IDLE_SECONDS", 10) * float64(time.Second)),
	}
	if v := os.Getenv("BENCH_CAMPAIGND_YAML"); v != "" {
		c.overrides = strings.Split(v, "\n")
	}
	return c
}

// rate is each app's push_single limit with n apps: the total shared out,
// at most maxRate and at least 1 call/s.
func (c appsConfig) rate(n int) float64 {
	return max(1, min(c.maxRate, float64(int(c.total/float64(n)))))
}

// BenchmarkApps is `make bench-apps`: N apps on pushsim (which serves any
// org/app, each judged on its own strict sliding second), every app with
// push_single R, one batch_push campaign per app of R × 100 × seconds
// targets, all submitted at the same moment to P campaignd processes.
// Per app: the share of R its calls carried from its first call to its
// last ((calls − 1) / (span × R)), its violations and its time to first
// call; for campaignd as a whole: CPU and Redis commands per call, and the
// CPU it uses idle with the N apps configured. One row per (N, P) for
// docs/BENCHMARKS.md.
func BenchmarkApps(b *testing.B) {
	cfg := appsConfigFromEnv()
	bin := testenv.Build(b, "./cmd/campaignd", "./cmd/pushsim")
	var rows []string
	for _, n := range cfg.sizes {
		for _, p := range cfg.procs {
			b.Run(fmt.Sprintf("apps=%d/procs=%d", n, p), func(b *testing.B) {
				rows = append(rows, appsRound(b, bin, cfg, n, p))
			})
		}
	}
	fmt.Println("| apps | processes | R per app | calls | violations (apps) | share of R: median / worst | first call: median / worst | slowest campaign (ideal) | campaignd CPU per call | Redis commands per call | idle CPU (cores) |")
	fmt.Println("|---|---|---|---|---|---|---|---|---|---|---|")
	for _, r := range rows {
		fmt.Println(r)
	}
}

func appsRound(b *testing.B, bin string, cfg appsConfig, n, procs int) string {
	rate := cfg.rate(n)
	perApp := int(rate * 100 * cfg.seconds)
	simURL, sim := testenv.StartSimProc(b, bin+"/pushsim", "-limit", fmt.Sprintf("push_single=%g", rate))
	rd := testenv.StartRedis(b)
	ns := testenv.StartNATS(b)

	var yaml strings.Builder
	fmt.Fprintf(&yaml, "redis: {url: %q}\nnats: {url: %q}\n", rd.URL, ns.URL)
	for _, l := range cfg.overrides {
		fmt.Fprintln(&yaml, l)
	}
	yaml.WriteString("apps:\n")
	for i := range n {
		fmt.Fprintf(&yaml, "  a%04d: {provider: easemob, base_url: %q, org: bench, app: a%04d, client_id: pushsim, client_secret: pushsim-secret, limits: {push_single: %g}}\n",
			i, simURL, i, rate)
	}
	cfgPath := filepath.Join(b.TempDir(), "apps.yaml")
	if err := os.WriteFile(cfgPath, []byte(yaml.String()), 0o600); err != nil {
		b.Fatal(err)
	}
	var pids []int
	var names []string
	var logs []string
	for i := range procs {
		level := "warn"
		if v := os.Getenv("BENCH_LOG_LEVEL"); v != "" {
			level = v
		}
		_, p := testenv.StartCampaignd(b, bin+"/campaignd", cfgPath, level)
		pids = append(pids, p.Cmd.Process.Pid)
		logs = append(logs, p.LogPath)
		names = append(names, fmt.Sprintf("campaignd-%d", i+1))
	}

	// Idle: every app configured, nothing to do.
	time.Sleep(3 * time.Second) // they settle after their start
	idleMeter := newCPUMeter(names, pids)
	time.Sleep(cfg.idle) // the idle CPU is measured over this much real time
	idle := 0.0
	for _, name := range names {
		idle += idleMeter.of(name)
	}
	idleCores := idle / cfg.idle.Seconds()

	rc := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer rc.Close()
	ctx := context.Background()
	if err := rc.ConfigResetStat(ctx).Err(); err != nil {
		b.Fatal(err)
	}
	reset(b, simURL)
	nc, err := nats.Connect(ns.URL)
	if err != nil {
		b.Fatal(err)
	}
	defer nc.Close()
	js, _ := jetstream.New(nc)
	bodies := make([][]byte, n)
	for i := range n {
		targets := make([]string, perApp)
		for k := range targets {
			targets[k] = fmt.Sprintf("a%04d-%06d", i, k)
		}
		bodies[i], _ = json.Marshal(map[string]any{"id": fmt.Sprintf("apps-%04d", i), "app": fmt.Sprintf("a%04d", i),
			"kind": "batch_push", "targets": targets, "push_message": map[string]string{"title": "apps"}})
	}
	runMeter := newCPUMeter(names, pids)
	start := time.Now()
	var acks []jetstream.PubAckFuture
	for i := range n {
		f, err := js.PublishAsync("campaigns.submit", bodies[i], jetstream.WithMsgID(fmt.Sprintf("apps-%04d", i)))
		if err != nil {
			b.Fatal(err)
		}
		acks = append(acks, f)
	}
	for _, f := range acks {
		select {
		case <-f.Ok():
		case err := <-f.Err():
			b.Fatal(err)
		}
	}
	total := n * perApp
	deadline := start.Add(time.Duration(4*cfg.seconds*float64(time.Second)) + 2*time.Minute)
	st := testenv.WaitFor(b, time.Until(deadline), fmt.Sprintf("%d targets pushed", total), func() (pushsim.Stats, bool) {
		st := testenv.SimStats(b, simURL)
		return st, st.TotalPushes >= total
	})
	cpu := 0.0
	for _, name := range names {
		cpu += runMeter.of(name)
	}
	cmds := redisCommands(b, rc)
	_ = sim

	violByApp := map[string]int{}
	for i, v := range st.ViolationList {
		violByApp[v.App]++
		if i < 3 { // the calls of the app in the second before it
			var ts []time.Time
			for k := 0; k < perApp; k += 100 {
				ts = append(ts, testenv.SimPushes(b, simURL, fmt.Sprintf("%s-%06d", strings.TrimPrefix(v.App, "bench/"), k))...)
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
			var lines []string
			for j, t := range ts {
				if t.After(v.At.Add(-1100*time.Millisecond)) && !t.After(v.At.Add(100*time.Millisecond)) {
					lines = append(lines, fmt.Sprintf("%s +%s", t.Format("15:04:05.000000"), t.Sub(ts[max(j-1, 0)])))
				}
			}
			fmt.Printf("violation at %s on %s %s (%d in 1 s at a limit of %g):\n  %s\n", v.At.Format("15:04:05.000000"), v.App, v.Group, v.InWindow, v.Limit, strings.Join(lines, "\n  "))
		}
	}
	if p := os.Getenv("BENCH_KEEPLOG"); p != "" {
		for i, l := range logs {
			if data, err := os.ReadFile(l); err == nil {
				_ = os.WriteFile(fmt.Sprintf("%s.%d", p, i+1), data, 0o644)
			}
		}
	}
	var shares, firsts []float64
	byApp := make([]float64, n)
	slowest := 0.0
	calls := 0
	for i := range n {
		key := fmt.Sprintf("easemob/bench/a%04d/push_single", i)
		c := st.Calls[key]
		calls += c
		sp, ok := st.Spans[key]
		if !ok || c < 2 {
			b.Fatalf("app a%04d: %d calls", i, c)
		}
		byApp[i] = float64(c-1) / (sp.Last.Sub(sp.First).Seconds() * rate)
		shares = append(shares, byApp[i])
		firsts = append(firsts, sp.First.Sub(start).Seconds())
		slowest = max(slowest, sp.Last.Sub(start).Seconds())
	}
	if os.Getenv("BENCH_GAPS") != "" { // where the three worst apps' calls paused
		worst := make([]int, n)
		for i := range worst {
			worst[i] = i
		}
		sort.Slice(worst, func(a, b int) bool { return byApp[worst[a]] < byApp[worst[b]] })
		for _, i := range worst[:min(n, gapApps())] {
			var ts []time.Time
			for k := 0; k < perApp; k += 100 {
				ts = append(ts, testenv.SimPushes(b, simURL, fmt.Sprintf("a%04d-%06d", i, k))...)
			}
			sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
			var gaps []string
			for j := 1; j < len(ts); j++ {
				if g := ts[j].Sub(ts[j-1]); g > time.Duration(1.5*float64(time.Second)/rate) {
					gaps = append(gaps, fmt.Sprintf("%s at +%.2fs", g.Round(time.Millisecond), ts[j-1].Sub(start).Seconds()))
				}
			}
			fmt.Printf("app a%04d (%.1f%% of R): %d calls seen, gaps over 1.5 spacings: %s\n", i, byApp[i]*100, len(ts), strings.Join(gaps, ", "))
		}
	}
	sort.Float64s(shares)
	sort.Float64s(firsts)
	b.ReportMetric(shares[len(shares)/2], "median_share")
	b.ReportMetric(shares[0], "worst_share")
	b.ReportMetric(float64(st.Violations), "violations")
	b.ReportMetric(cpu/float64(calls)*1e6, "cpu_µs/call")
	b.ReportMetric(float64(cmds)/float64(calls), "redis_cmds/call")
	b.ReportMetric(idleCores, "idle_cores")
	return fmt.Sprintf("| %d | %d | %g | %s | %d (%d) | %.1f%% / %.1f%% | %.2f s / %.2f s | %.1f s (%.1f s) | %.0f µs | %.1f | %.3f |",
		n, procs, rate, thousands(calls), st.Violations, len(violByApp), shares[len(shares)/2]*100, shares[0]*100,
		firsts[len(firsts)/2], firsts[len(firsts)-1], slowest, float64(perApp/100-1)/rate, cpu/float64(calls)*1e6,
		float64(cmds)/float64(calls), idleCores)
}

// redisCommands is how many commands Redis has run since its stats were
// reset.
func redisCommands(b *testing.B, rc *redis.Client) int {
	b.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	_, total := parseCommandStats(info)
	return total
}

// gapApps is how many of the worst apps BENCH_GAPS prints (its value when
// it is a number, else 3).
func gapApps() int {
	if n, err := strconv.Atoi(os.Getenv("BENCH_GAPS")); err == nil && n > 0 {
		return n
	}
	return 3
}
