package bench

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/daemon"
	"github.com/campaignd/campaignd/internal/testenv"
)

// BenchmarkForecast times POST /api/forecast against a running campaignd:
// a campaign whose audience object has BENCH_TARGETS lines (BENCH_DUPS
// repeats, BENCH_ORDER), counted as a plan would count it (the goal:
// within 10 s for 10 million lines), and one with the most inline targets
// a campaign may carry (goal: within 2 s). `make bench-forecast`.
func BenchmarkForecast(b *testing.B) {
	lines := targetsFromEnv()
	order := orderFromEnv()
	n := lines - int(float64(lines)*dupsFromEnv())
	rd := testenv.StartRedis(b)
	ns := testenv.StartNATS(b)
	uploadAudience(b, ns.URL, "forecast", lines, n, order)
	cfg := config.Default()
	cfg.Redis.URL, cfg.NATS.URL, cfg.HTTP.Addr = rd.URL, ns.URL, "127.0.0.1:0"
	cfg.Apps = map[string]config.App{"default": {Provider: "easemob", BaseURL: "http://127.0.0.1:1", Org: "o", App: "a",
		ClientID: "id", ClientSecret: "secret"}}
	if err := cfg.Validate(); err != nil {
		b.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	d, err := daemon.New(ctx, cfg, daemon.Options{Logger: zerolog.Nop()})
	if err != nil {
		cancel()
		b.Fatal(err)
	}
	done := make(chan struct{})
	go func() { defer close(done); _ = d.Run(ctx) }()
	b.Cleanup(func() { cancel(); <-done })
	base := "http://" + d.Addr()
	testenv.WaitHTTP(b, base+"/readyz")

	ask := func(body []byte) (campaigns.Forecast, time.Duration) {
		t0 := time.Now()
		resp, err := http.Post(base+"/api/forecast", "application/json", bytes.NewReader(body))
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		took := time.Since(t0)
		var fc campaigns.Forecast
		if err := json.Unmarshal(raw, &fc); err != nil || resp.StatusCode != 200 {
			b.Fatalf("%d %s", resp.StatusCode, raw)
		}
		return fc, took
	}
	inline := make([]string, campaigns.MaxInlineTargets)
	for i := range inline {
		inline[i] = fmt.Sprintf("u%07d", i)
	}
	inlineBody := fmt.Sprintf(`{"id":"fi","kind":"batch_push","push_message":{"t":1},"targets":["%s"]}`, strings.Join(inline, `","`))
	audBody := []byte(`{"id":"fa","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"audiences","object":"forecast"}}`)
	fmt.Printf("audience: %d lines, %d distinct ids, %s order; inline: %d targets, %d bytes\n", lines, n, order, len(inline), len(inlineBody))
	b.ResetTimer()
	var audTotal, inlineTotal time.Duration
	for r := 0; r < b.N; r++ {
		fc, took := ask(audBody)
		if fc.TargetsTotal != int64(n) {
			b.Fatalf("counted %d distinct ids, want %d", fc.TargetsTotal, n)
		}
		audTotal += took
		fc, took2 := ask([]byte(inlineBody))
		if fc.TargetsTotal != int64(len(inline)) {
			b.Fatalf("inline: %d targets, want %d", fc.TargetsTotal, len(inline))
		}
		inlineTotal += took2
		fmt.Printf("round %d: audience of %d lines answered in %s, %d inline targets in %s\n", r+1, lines, took.Round(time.Millisecond), len(inline), took2.Round(time.Millisecond))
	}
	b.StopTimer()
	b.ReportMetric(audTotal.Seconds()/float64(b.N), "s/audience-forecast")
	b.ReportMetric(inlineTotal.Seconds()/float64(b.N), "s/inline-forecast")
}
