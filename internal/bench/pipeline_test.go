// Package bench holds the end-to-end throughput benchmark of campaignd
// against a plain asynq baseline. Run it with `make bench` (or
// `go test ./internal/bench -run '^$' -bench Pipeline -benchtime 1x`).
package bench

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"os"
	"path/filepath"
	"runtime/pprof"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
)

func targetsFromEnv() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_TARGETS")); err == nil && v > 0 {
		return v
	}
	return 100_000
}

// dupsFromEnv is the share of the audience's lines that repeat an id
// listed before (BENCH_DUPS, default 0.1).
func dupsFromEnv() float64 {
	if v, err := strconv.ParseFloat(os.Getenv("BENCH_DUPS"), 64); err == nil && v >= 0 && v < 1 {
		return v
	}
	return 0.1
}

// orderFromEnv is the audience's order (BENCH_ORDER): random (default)
// or sorted (each repeat next to its id).
func orderFromEnv() string {
	if os.Getenv("BENCH_ORDER") == "sorted" {
		return "sorted"
	}
	return "random"
}

// uploadAudience connects to NATS at url (closed when b ends) and stores
// audience(lines, unique, order) as audiences/object, streamed.
func uploadAudience(b *testing.B, url, object string, lines, unique int, order string) jetstream.JetStream {
	b.Helper()
	nc, err := nats.Connect(url)
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(nc.Close)
	js, _ := jetstream.New(nc)
	pr, pw := io.Pipe()
	go func() { audience(pw, lines, unique, order); pw.Close() }()
	if err := intake.UploadAudience(context.Background(), js, "audiences", object, pr); err != nil {
		b.Fatal(err)
	}
	return js
}

// audience writes lines ids: unique distinct ones, the rest repeats of
// random ones, shuffled or sorted, one per line.
func audience(w io.Writer, lines, unique int, order string) {
	r := rand.New(rand.NewPCG(1, 2))
	ids := make([]uint32, 0, lines)
	for i := 0; i < unique; i++ {
		ids = append(ids, uint32(i))
	}
	for len(ids) < lines {
		ids = append(ids, uint32(r.IntN(unique)))
	}
	if order == "sorted" {
		slices.Sort(ids)
	} else {
		r.Shuffle(len(ids), func(i, j int) { ids[i], ids[j] = ids[j], ids[i] })
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	zones := benchZones[:zonesFromEnv()]
	for _, id := range ids {
		if len(zones) > 0 { // local time: each id in its zone, repeats too
			fmt.Fprintf(bw, "user%08d,%s\n", id, zones[int(id)%len(zones)])
			continue
		}
		fmt.Fprintf(bw, "user%08d\n", id)
	}
	_ = bw.Flush()
}

// benchZones are the zones of a local-time audience (BENCH_ZONES of
// them).
var benchZones = []string{
	"UTC", "Europe/London", "Europe/Paris", "Europe/Berlin", "Europe/Madrid", "Europe/Moscow", "Africa/Cairo", "Africa/Lagos",
	"Asia/Dubai", "Asia/Kolkata", "Asia/Dhaka", "Asia/Bangkok", "Asia/Shanghai", "Asia/Tokyo", "Asia/Seoul", "Asia/Jakarta",
	"Asia/Manila", "Australia/Sydney", "Australia/Adelaide", "Pacific/Auckland", "America/Sao_Paulo", "America/Argentina/Buenos_Aires",
	"America/Mexico_City", "America/Bogota", "America/New_York", "America/Chicago", "America/Denver", "America/Los_Angeles",
	"America/Anchorage", "Pacific/Honolulu", "Atlantic/Reykjavik", "Asia/Kathmandu", "Asia/Tehran", "Asia/Karachi", "Europe/Istanbul",
	"Asia/Singapore", "Asia/Hong_Kong", "America/Toronto", "America/Lima", "Africa/Johannesburg",
}

// zonesFromEnv is how many zones a local-time audience spreads its ids
// over (BENCH_ZONES, at most len(benchZones)); 0 (default): no zones.
func zonesFromEnv() int {
	n, err := strconv.Atoi(os.Getenv("BENCH_ZONES"))
	if err != nil || n < 0 {
		return 0
	}
	return min(n, len(benchZones))
}

func peakRSS(pid int) int64 {
	f, err := os.Open(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return -1
	}
	defer f.Close()
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		if v, ok := strings.CutPrefix(sc.Text(), "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return -1
}

// printCommandStats prints the commands Redis has run since its stats were
// reset, per 1,000 targets, busiest first.
func printCommandStats(b *testing.B, rc *redis.Client, n int) {
	b.Helper()
	info, err := rc.Info(context.Background(), "commandstats").Result()
	if err != nil {
		b.Fatal(err)
	}
	stats, total := parseCommandStats(info)
	sort.Slice(stats, func(i, j int) bool { return stats[i].calls > stats[j].calls })
	parts := make([]string, 0, len(stats))
	for _, st := range stats {
		parts = append(parts, fmt.Sprintf("%s %d", st.name, st.calls))
	}
	fmt.Printf("  Redis commands: %d (%.1f per 1,000 targets): %s\n", total, float64(total)*1000/float64(n), strings.Join(parts, ", "))
}

type commandStat struct {
	name  string
	calls int
}

// parseCommandStats reads INFO commandstats: each command's calls, and
// their total.
func parseCommandStats(info string) ([]commandStat, int) {
	var stats []commandStat
	total := 0
	for _, line := range strings.Split(info, "\n") {
		name, rest, ok := strings.Cut(strings.TrimSpace(line), ":calls=")
		if !ok {
			continue
		}
		calls, _ := strconv.Atoi(strings.SplitN(rest, ",", 2)[0])
		stats = append(stats, commandStat{strings.TrimPrefix(name, "cmdstat_"), calls})
		total += calls
	}
	return stats, total
}

// syscallCounts is how many read and write system calls a process has
// made so far (/proc/PID/io's syscr and syscw).
func syscallCounts(pid int) (reads, writes int64) {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/io", pid))
	if err != nil {
		return 0, 0
	}
	for _, line := range strings.Split(string(data), "\n") {
		k, v, _ := strings.Cut(line, ": ")
		n, _ := strconv.ParseInt(strings.TrimSpace(v), 10, 64)
		switch k {
		case "syscr":
			reads = n
		case "syscw":
			writes = n
		}
	}
	return reads, writes
}

// cpuSeconds is the user+system CPU time a process has used so far.
func cpuSeconds(pid int) float64 {
	data, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	// Fields after the command name (which may hold spaces): utime is the
	// 12th and stime the 13th of them, in clock ticks (100 per second).
	rest := string(data[bytes.LastIndexByte(data, ')')+2:])
	f := strings.Fields(rest)
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseFloat(f[11], 64)
	st, _ := strconv.ParseFloat(f[12], 64)
	return (u + st) / 100
}

// cpuMeter measures the CPU time named processes use during a phase.
type cpuMeter struct {
	names []string
	pids  []int
	start []float64
}

func newCPUMeter(names []string, pids []int) *cpuMeter {
	m := &cpuMeter{names: names, pids: pids}
	for _, p := range pids {
		m.start = append(m.start, cpuSeconds(p))
	}
	return m
}

// of is the CPU seconds process name has used since the meter started.
func (m *cpuMeter) of(name string) float64 {
	for i, n := range m.names {
		if n == name {
			return cpuSeconds(m.pids[i]) - m.start[i]
		}
	}
	return 0
}

func (m *cpuMeter) String() string {
	var parts []string
	total := 0.0
	for i, p := range m.pids {
		d := cpuSeconds(p) - m.start[i]
		total += d
		parts = append(parts, fmt.Sprintf("%s %.2fs", m.names[i], d))
	}
	return fmt.Sprintf("CPU %s (total %.2fs)", strings.Join(parts, ", "), total)
}

// BenchmarkPipeline sends one campaign whose audience has BENCH_TARGETS
// (default 100,000) lines, BENCH_DUPS of them repeats, in BENCH_ORDER,
// through a campaignd process to pushsim with limits off, then drains the
// same number of distinct targets in 100-target tasks through a plain
// asynq server whose handler only POSTs the batch to pushsim, and reports
// both rates, the plan's own rate, campaignd's peak RSS and Redis's memory
// per target after planning.
func BenchmarkPipeline(b *testing.B) {
	lines := targetsFromEnv()
	order := orderFromEnv()
	n := lines - int(float64(lines)*dupsFromEnv()) // distinct targets: what is sent
	bin := testenv.Build(b, "./cmd/campaignd", "./cmd/pushsim")
	simPort := testenv.FreePort(b)
	simURL := fmt.Sprintf("http://127.0.0.1:%d", simPort)
	simPid := testenv.StartProc(b, bin+"/pushsim", []string{"-addr", fmt.Sprintf("127.0.0.1:%d", simPort), "-limits-off"}, nil).Cmd.Process.Pid
	testenv.WaitHTTP(b, simURL+"/_sim/stats")

	// --- campaignd ---
	rd := testenv.StartRedis(b)
	ns := testenv.StartNATS(b)
	httpPort := testenv.FreePort(b)
	cfgPath := filepath.Join(b.TempDir(), "bench.yaml")
	cfg := fmt.Sprintf(`redis: {url: %q}
nats: {url: %q}
http: {addr: "127.0.0.1:%d"}
worker: {concurrency: 50}
apps:
  default:
    provider: easemob
    base_url: %q
    org: bench
    app: bench
    client_id: pushsim
    client_secret: pushsim-secret
    limits: {push_single: 1000000}
`, rd.URL, ns.URL, httpPort, simURL)
	if err := os.WriteFile(cfgPath, []byte(cfg), 0o600); err != nil {
		b.Fatal(err)
	}
	args := []string{"-config", cfgPath, "-log-level", "info", "-log-json"}
	if p := os.Getenv("BENCH_CPUPROFILE"); p != "" {
		args = append(args, "-cpuprofile", p) // written when campaignd stops
	}
	if p := os.Getenv("BENCH_MEMPROFILE"); p != "" {
		args = append(args, "-memprofile", p) // the heap at its peak
	}
	if p := os.Getenv("BENCH_ALLOCPROFILE"); p != "" {
		args = append(args, "-allocprofile", p) // every allocation of the run
	}
	// BENCH_ENV: extra environment for campaignd (e.g. GODEBUG=gctrace=1)
	cdp := testenv.StartProc(b, bin+"/campaignd", args, strings.Fields(os.Getenv("BENCH_ENV")))
	cd := cdp.Cmd
	api := fmt.Sprintf("http://127.0.0.1:%d", httpPort)
	testenv.WaitHTTP(b, api+"/readyz")

	js := uploadAudience(b, ns.URL, "bench", lines, n, order)
	ctx := context.Background()
	rc := redis.NewClient(&redis.Options{Addr: rd.Addr})
	defer rc.Close()
	fmt.Printf("audience: %d lines, %d distinct ids, %s order\n", lines, n, order)
	rounds := roundsFromEnv()
	redisStats := os.Getenv("BENCH_REDIS_STATS") != "" // campaignd's Redis commands per round
	var results []round
	var redisAfterPlan int64
	b.ResetTimer()
	for r := 0; r < rounds; r++ {
		reset(b, simURL)
		before := usedMemory(b, rc)
		if redisStats {
			rc.ConfigResetStat(ctx)
		}
		res := campaignRound(b, ctx, js, fmt.Sprintf("bench-%d", r), n, []int{cd.Process.Pid, simPid, rd.Pid(), os.Getpid()},
			func() { res0 := usedMemory(b, rc); redisAfterPlan = res0 - before }, cdp.LogPath)
		res.redisPerTarget = float64(redisAfterPlan) / float64(n)
		if redisStats {
			printCommandStats(b, rc, n)
		}
		// plain asynq baseline, on a fresh Redis and an emptied pushsim
		reset(b, simURL)
		rd2 := testenv.StartRedis(b)
		tok := token(b, simURL) // a reset forgets the tokens
		// campaignd is stopped meanwhile: idle, its asynq servers still poll
		// Redis and its timers tick, and on two cores that would slow the
		// plain asynq drain and raise the handler's CPU per target.
		if err := cd.Process.Signal(syscall.SIGSTOP); err != nil {
			b.Fatal(err)
		}
		res.base = baseline(b, rd2.Addr, simURL, tok, n, []int{simPid, rd2.Pid(), os.Getpid()})
		if err := cd.Process.Signal(syscall.SIGCONT); err != nil {
			b.Fatal(err)
		}
		time.Sleep(time.Second) // its timers catch up before the next round
		rd2.Stop()
		results = append(results, res)
		fmt.Printf("round %d: campaignd %d targets, running after %s, planned in %s (%.0f lines/s, %d passes), completed in %s: %.0f targets/s; Redis +%.1f B/target after planning; %s\n",
			r+1, n, res.running.Round(time.Millisecond), res.planned.Round(time.Millisecond), float64(lines)/res.planned.Seconds(), res.passes,
			res.finished.Round(time.Millisecond), res.rate(n), res.redisPerTarget, res.cpu)
		fmt.Printf("  plain asynq: enqueue %d tasks in %s, drain in %s: %.0f targets/s (%.0f tasks/s), enqueue+drain %.0f targets/s; %s\n",
			(n+99)/100, res.base.enqueue.Round(time.Millisecond), res.base.drained.Round(time.Millisecond), res.base.drain, res.base.drain/100, res.base.total, res.base.cpu)
		fmt.Printf("  campaignd / plain asynq drain = %.2f; / enqueue+drain = %.2f; CPU per target %.2f µs / the handler's %.2f µs = %.2f; / enqueue+handler %.2f µs = %.2f\n",
			res.rate(n)/res.base.drain, res.rate(n)/res.base.total, res.cpuCampaignd/float64(n)*1e6, res.base.cpuAsynq/float64(n)*1e6, res.cpuCampaignd/res.base.cpuAsynq,
			(res.base.cpuAsynq+res.base.cpuEnqueue)/float64(n)*1e6, res.cpuCampaignd/(res.base.cpuAsynq+res.base.cpuEnqueue))
	}
	b.StopTimer()
	rss := peakRSS(cd.Process.Pid)
	if p := os.Getenv("BENCH_KEEPLOG"); p != "" { // campaignd's log, e.g. with BENCH_ENV=GODEBUG=gctrace=1
		if data, err := os.ReadFile(cdp.LogPath); err == nil {
			_ = os.WriteFile(p, data, 0o644)
		}
	}
	med := func(f func(round) float64) float64 {
		v := make([]float64, len(results))
		for i, r := range results {
			v[i] = f(r)
		}
		sort.Float64s(v)
		return v[len(v)/2]
	}
	rate := med(func(r round) float64 { return r.rate(n) })
	ratio := med(func(r round) float64 { return r.rate(n) / r.base.drain })
	ratioTotal := med(func(r round) float64 { return r.rate(n) / r.base.total })
	running := med(func(r round) float64 { return r.running.Seconds() })
	planRate := med(func(r round) float64 { return float64(lines) / r.planned.Seconds() })
	redisPer := med(func(r round) float64 { return r.redisPerTarget })
	b.ReportMetric(running, "running_s")
	b.ReportMetric(planRate, "plan_lines/s")
	b.ReportMetric(redisPer, "redis_B/target")
	b.ReportMetric(rate, "targets/s")
	b.ReportMetric(float64(rss)/(1<<20), "peak_rss_MiB")
	b.ReportMetric(med(func(r round) float64 { return r.base.drain }), "baseline_drain_targets/s")
	b.ReportMetric(ratio, "ratio_to_drain")
	b.ReportMetric(ratioTotal, "ratio_to_enqueue+drain")
	cpuRatio := med(func(r round) float64 { return r.cpuCampaignd / r.base.cpuAsynq })
	cpuRatioJob := med(func(r round) float64 { return r.cpuCampaignd / (r.base.cpuAsynq + r.base.cpuEnqueue) })
	b.ReportMetric(cpuRatio, "cpu_ratio_to_handler")
	b.ReportMetric(cpuRatioJob, "cpu_ratio_to_enqueue+handler")
	fmt.Printf("median of %d rounds: campaignd %.0f targets/s, running after %.0f ms, plan %.0f lines/s, peak RSS %.1f MiB, Redis %.1f B/target after planning; campaignd / plain asynq drain = %.2f; / enqueue+drain = %.2f; CPU per target / the handler's = %.2f, / enqueue+handler = %.2f\n",
		rounds, rate, running*1000, planRate, float64(rss)/(1<<20), redisPer, ratio, ratioTotal, cpuRatio, cpuRatioJob)
	// one row of docs/BENCHMARKS.md's scaling table (scripts/bench-scale.sh)
	fmt.Printf("row: | %s | %s | %.2f s | %s | %s | %.2f | %.0f MiB | %.1f B | %.2f / %.2f µs (%.2f) | %.2f |\n", thousands(lines), order,
		medDur(results, func(r round) time.Duration { return r.planned }).Seconds(), thousands(int(rate)),
		thousands(int(med(func(r round) float64 { return r.base.drain }))), ratio, float64(rss)/(1<<20), redisPer,
		med(func(r round) float64 { return r.cpuCampaignd / float64(n) * 1e6 }), med(func(r round) float64 { return r.base.cpuAsynq / float64(n) * 1e6 }), cpuRatio, cpuRatioJob)
}

// thousands writes n with commas: 1,000,000.
func thousands(n int) string {
	s := strconv.Itoa(n)
	for i := len(s) - 3; i > 0; i -= 3 {
		s = s[:i] + "," + s[i:]
	}
	return s
}

func roundsFromEnv() int {
	if v, err := strconv.Atoi(os.Getenv("BENCH_ROUNDS")); err == nil && v > 0 {
		return v
	}
	return 3
}

// round is one campaign and one baseline run.
type round struct {
	running, planned, finished time.Duration
	passes                     int
	redisPerTarget             float64 // Redis used_memory added by the plan, per distinct target
	cpu                        string
	cpuCampaignd               float64
	base                       baseResult
}

func medDur(rs []round, f func(round) time.Duration) time.Duration {
	v := make([]time.Duration, len(rs))
	for i, r := range rs {
		v[i] = f(r)
	}
	slices.Sort(v)
	return v[len(v)/2]
}

func usedMemory(b *testing.B, rc *redis.Client) int64 {
	b.Helper()
	v, err := testenv.RedisInfo(context.Background(), rc, "memory", "used_memory")
	if err != nil {
		b.Fatal(err)
	}
	n, _ := strconv.ParseInt(v, 10, 64)
	return n
}

// planLog is campaignd's "campaign planned" log line of a campaign, once
// it is written: how long the plan took, and the audience's passes.
func planLog(logPath, id string) (planned time.Duration, passes int, ok bool) {
	data, err := os.ReadFile(logPath)
	if err != nil {
		return 0, 0, false
	}
	for _, line := range bytes.Split(data, []byte("\n")) {
		var l struct {
			Campaign  string  `json:"campaign"`
			Message   string  `json:"message"`
			PlannedIn float64 `json:"planned_in"` // ms
			Passes    int     `json:"passes"`
		}
		if json.Unmarshal(line, &l) != nil || l.Campaign != id {
			continue
		}
		switch l.Message {
		case "audience read":
			passes = l.Passes
		case "campaign planned":
			return time.Duration(l.PlannedIn * float64(time.Millisecond)), passes, true
		}
	}
	return 0, 0, false
}

func (r round) rate(n int) float64 { return float64(n) / r.finished.Seconds() }

func reset(b *testing.B, simURL string) {
	b.Helper()
	resp, err := http.Post(simURL+"/_sim/reset", "application/json", nil)
	if err != nil {
		b.Fatal(err)
	}
	resp.Body.Close()
}

// campaignRound publishes one audience campaign and times it from publish
// to its final status event; afterPlan runs once the plan is logged.
func campaignRound(b *testing.B, ctx context.Context, js jetstream.JetStream, id string, n int, pids []int, afterPlan func(), logPath string) round {
	b.Helper()
	cons, err := js.OrderedConsumer(ctx, intake.StreamStatus, jetstream.OrderedConsumerConfig{FilterSubjects: []string{intake.StatusSubject(id)}})
	if err != nil {
		b.Fatal(err)
	}
	it, err := cons.Messages()
	if err != nil {
		b.Fatal(err)
	}
	defer it.Stop()
	cpu := newCPUMeter([]string{"campaignd", "pushsim", "redis", "bench+nats"}, pids)
	sysr0, sysw0 := syscallCounts(pids[0])
	t0 := time.Now()
	body := fmt.Sprintf(`{"id":%q,"kind":"batch_push","push_message":{"title":"t","content":"c"},"audience":{"bucket":"audiences","object":"bench"}}`, id)
	if _, err := js.Publish(ctx, intake.SubjectSubmit, []byte(body)); err != nil {
		b.Fatal(err)
	}
	var res round
	var final campaigns.Status
	planned := make(chan struct{})
	go func() { // on a goroutine of its own (no Fatal there): the status events are read meanwhile
		defer close(planned)
		testenv.Eventually(10*time.Minute, func() bool {
			d, passes, ok := planLog(logPath, id)
			if ok {
				res.planned, res.passes = d, passes
				afterPlan()
			}
			return ok
		})
	}()
	for final.Status == "" || !final.Status.Final() {
		m, err := it.Next()
		if err != nil {
			b.Fatal(err)
		}
		var st campaigns.Status
		_ = json.Unmarshal(m.Data(), &st)
		if st.Status == campaigns.StateRunning && res.running == 0 {
			res.running = time.Since(t0)
		}
		final = st
	}
	res.finished = time.Since(t0)
	sysr, sysw := syscallCounts(pids[0])
	res.cpu = cpu.String() + fmt.Sprintf("; campaignd's read and write syscalls per 100 targets %.1f, %.1f", float64(sysr-sysr0)*100/float64(n), float64(sysw-sysw0)*100/float64(n))
	res.cpuCampaignd = cpu.of("campaignd")
	<-planned
	if final.Status != campaigns.StateCompleted || final.Sent != int64(n) {
		b.Fatalf("campaign %s ended %+v", id, final)
	}
	return res
}

func token(b *testing.B, simURL string) string {
	b.Helper()
	resp, err := http.Post(simURL+"/base/line/token", "application/json",
		strings.NewReader(`{"grant_type":"client_credentials","client_id":"pushsim","client_secret":"pushsim-secret"}`))
	if err != nil {
		b.Fatal(err)
	}
	defer resp.Body.Close()
	var t struct {
		AccessToken string `json:"access_token"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&t)
	return t.AccessToken
}

func baseline(b *testing.B, redisAddr, simURL, tok string, n int, pids []int) baseResult {
	b.Helper()
	opt := asynq.RedisClientOpt{Addr: redisAddr}
	client := asynq.NewClient(opt)
	defer client.Close()
	tasks := (n + 99) / 100
	httpc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 100}, Timeout: 10 * time.Second}
	var done atomic.Int64
	finished := make(chan struct{})
	srv := asynq.NewServer(opt, asynq.Config{Concurrency: 50, LogLevel: asynq.ErrorLevel})
	mux := asynq.NewServeMux()
	mux.HandleFunc("batch", func(ctx context.Context, t *asynq.Task) error {
		req, _ := http.NewRequestWithContext(ctx, http.MethodPost, simURL+"/base/line/push/single", bytes.NewReader(t.Payload()))
		req.Header.Set("Authorization", "Bearer "+tok)
		req.Header.Set("Content-Type", "application/json")
		resp, err := httpc.Do(req)
		if err != nil {
			return err
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			return fmt.Errorf("status %d", resp.StatusCode)
		}
		if done.Add(1) == int64(tasks) {
			close(finished)
		}
		return nil
	})
	// Enqueue every task (8 goroutines, as campaignd's planner enqueues its
	// first window), then time the drain alone.
	enqCPU := newCPUMeter([]string{"asynq"}, []int{os.Getpid()}) // this process enqueues
	t0 := time.Now()
	errs := make(chan error, 8)
	for w := 0; w < 8; w++ {
		go func() {
			for i := w; i < tasks; i += 8 {
				ids := make([]string, 0, 100)
				for j := 0; j < 100 && i*100+j < n; j++ {
					ids = append(ids, fmt.Sprintf("base%07d", i*100+j))
				}
				payload, _ := json.Marshal(map[string]any{"targets": ids, "pushMessage": map[string]string{"title": "t", "content": "c"}})
				if _, err := client.Enqueue(asynq.NewTask("batch", payload)); err != nil {
					errs <- err
					return
				}
			}
			errs <- nil
		}()
	}
	for w := 0; w < 8; w++ {
		if err := <-errs; err != nil {
			b.Fatal(err)
		}
	}
	enqueued := time.Since(t0)
	cpuEnqueue := enqCPU.of("asynq")
	t1 := time.Now()
	cpu := newCPUMeter([]string{"pushsim", "redis", "asynq"}, pids)
	if p := os.Getenv("BENCH_BASE_CPUPROFILE"); p != "" { // the drain, in this process
		f, err := os.Create(p)
		if err != nil {
			b.Fatal(err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			b.Fatal(err)
		}
		defer pprof.StopCPUProfile()
	}
	if err := srv.Start(mux); err != nil {
		b.Fatal(err)
	}
	select {
	case <-finished:
	case <-time.After(2 * time.Minute):
		b.Fatal("baseline did not drain")
	}
	drained := time.Since(t1)
	cpuUse, cpuAsynq := cpu.String(), cpu.of("asynq")
	srv.Shutdown()
	return baseResult{cpu: cpuUse, cpuAsynq: cpuAsynq, cpuEnqueue: cpuEnqueue, drain: float64(n) / drained.Seconds(), total: float64(n) / (enqueued + drained).Seconds(), enqueue: enqueued, drained: drained}
}

type baseResult struct {
	drain, total     float64 // targets/s: drain alone; enqueue + drain
	enqueue, drained time.Duration
	cpu              string
	cpuAsynq         float64 // the asynq process's CPU seconds during the drain
	cpuEnqueue       float64 // and during the enqueueing
}
