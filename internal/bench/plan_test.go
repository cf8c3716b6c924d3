package bench

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strconv"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/store"
	"github.com/campaignd/campaignd/worker"
)

// BenchmarkPlan times planning on its own: a campaign whose audience (as
// BenchmarkPipeline's: BENCH_TARGETS lines, BENCH_DUPS repeats, in
// BENCH_ORDER) is read from a real NATS object store, de-duplicated and
// written to a real Redis in batches, with nothing sending them. Each
// round plans a new campaign of the same audience. BENCH_PLAN_MEMORY sets
// worker.plan_memory in bytes (default worker.DefaultPlanMemory).
func BenchmarkPlan(b *testing.B) {
	lines := targetsFromEnv()
	order := orderFromEnv()
	n := lines - int(float64(lines)*dupsFromEnv())
	rd := testenv.StartRedis(b)
	ns := testenv.StartNATS(b)
	js := uploadAudience(b, ns.URL, "plan", lines, n, order)
	ctx := context.Background()
	client := asynq.NewClient(asynq.RedisClientOpt{Addr: rd.Addr})
	defer client.Close()
	rc := rd.Client(b)
	st := store.New(rc, store.Options{})
	var planMem int64
	if v, err := strconv.ParseInt(os.Getenv("BENCH_PLAN_MEMORY"), 10, 64); err == nil && v > 0 {
		planMem = v
	}
	svc := worker.New(worker.Options{Client: client, Store: st, Logger: zerolog.Nop(), Provider: easemobApp{},
		Plan: worker.PlanOptions{Audience: intake.NewAudienceStore(js, intake.AudienceOptions{}), Memory: planMem}})
	mux := svc.Mux()
	fmt.Printf("audience: %d lines, %d distinct ids, %s order\n", lines, n, order)
	b.ResetTimer()
	var total time.Duration
	var parts int
	var redisPer float64
	for r := 0; r < b.N; r++ {
		id := fmt.Sprintf("plan-%d", r)
		c := &campaigns.Campaign{ID: id, Kind: campaigns.KindBatchPush, PushMessage: json.RawMessage(`{"title":"t","content":"c"}`),
			Audience: &campaigns.Audience{Bucket: "audiences", Object: "plan"}}
		if zonesFromEnv() > 0 { // grouped by zone (send_window.local_time)
			c.SendWindow = &campaigns.SendWindow{From: "09:00", To: "21:00", Timezone: "UTC", LocalTime: true}
		}
		c.Normalize()
		// Submit enqueues the plan task (no server takes it); it is run here.
		if _, err := svc.Control.Submit(ctx, c, time.Now()); err != nil {
			b.Fatal(err)
		}
		payload, _ := json.Marshal(map[string]string{"id": id})
		before := usedMemory(b, rc)
		t0 := time.Now()
		if err := mux.ProcessTask(ctx, asynq.NewTask(worker.TypePlan, payload)); err != nil {
			b.Fatal(err)
		}
		took := time.Since(t0)
		total += took
		s, err := st.Status(ctx, id)
		if err != nil {
			b.Fatal(err)
		}
		if s.TargetsTotal != int64(n) || s.Duplicates != int64(lines-n) {
			b.Fatalf("planned %d targets and %d duplicates, want %d and %d", s.TargetsTotal, s.Duplicates, n, lines-n)
		}
		p, err := st.PlanParams(ctx, id, func() (store.PlanParams, error) { return store.PlanParams{}, fmt.Errorf("no plan parameters") })
		if err != nil {
			b.Fatal(err)
		}
		parts = p.Parts
		redisPer = float64(usedMemory(b, rc)-before) / float64(n)
		fmt.Printf("round %d: planned %d lines (%d distinct, %d zones) in %s: %.0f lines/s, %d passes; Redis +%.1f B/target; %d batches; peak RSS so far %d MiB\n",
			r+1, lines, n, zonesFromEnv(), took.Round(time.Millisecond), float64(lines)/took.Seconds(), p.Parts, redisPer, s.BatchesTotal, peakRSS(os.Getpid())>>20)
	}
	b.StopTimer()
	b.ReportMetric(float64(lines)*float64(b.N)/total.Seconds(), "lines/s")
	b.ReportMetric(float64(parts), "passes")
	// one row of docs/BENCHMARKS.md's plan table (scripts/bench-scale.sh)
	fmt.Printf("row: | %s | %s | %d | %.2f s | %s | %.1f B |\n", thousands(lines), order, parts, (total / time.Duration(b.N)).Seconds(),
		thousands(int(float64(lines)*float64(b.N)/total.Seconds())), redisPer)
}

// easemobApp names every app an Easemob one; nothing is sent.
type easemobApp struct{ worker.Providers }

func (easemobApp) ProviderOf(string) string { return "easemob" }
