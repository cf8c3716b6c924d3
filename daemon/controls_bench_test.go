package daemon

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// BenchmarkControls measures, on pushsim's arrival times, how fast priority
// and pause act at the provider's rate (`make bench-controls`; results in
// docs/BENCHMARKS.md): a normal campaign of 10 s of the push_single rate is
// sending when a high campaign of 200 targets comes — the time from the
// high campaign being planned to its first push, and whether a batch of the
// big one went between its pushes; then the big one is paused — the calls
// that arrived after `paused` was stored, and the last one's lateness.
func BenchmarkControls(b *testing.B) {
	for _, rate := range []float64{10, 100} {
		for _, procs := range []int{1, 3} {
			b.Run(fmt.Sprintf("R=%g/procs=%d", rate, procs), func(b *testing.B) {
				for range b.N {
					benchControls(b, rate, procs)
				}
			})
		}
	}
}

func benchControls(b *testing.B, rate float64, procs int) {
	w := newWorld(b, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: rate}})
	cfg := w.config(b, config.Limits{provider.GroupPushSingle: rate})
	cfg.Worker.Concurrency = 20
	var rs []*running
	for range procs {
		rs = append(rs, start(b, cfg))
	}
	r := rs[0]
	big := ids("big", int(rate*100*10))
	if err := intake.UploadAudience(context.Background(), w.js, "audiences", "big.txt", strings.NewReader(strings.Join(big, "\n"))); err != nil {
		b.Fatal(err)
	}
	w.publish(b, "campaigns.submit", []byte(`{"id":"big","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"audiences","object":"big.txt"}}`), "big")
	r.waitState(b, "big", campaigns.StateRunning, 30*time.Second)
	// The big one sends at the provider rate for a while: 1.5 s of calls
	// (100 targets each).
	waitPushes(b, w, int(rate*1.5)*100, time.Minute)
	high := ids("vip", 200)
	w.publish(b, "campaigns.submit", campaignJSON("high", high, `,"priority":"high"`), "high")
	r.waitFinal(b, "high", 30*time.Second)
	planned := w.firstStatus(b, "high", campaigns.StateRunning)
	hFirst, hLast, _ := span(arrivals(w.sim.Sim(), high))
	between := 0
	for _, ts := range arrivals(w.sim.Sim(), big) {
		for _, at := range ts {
			if at.After(hFirst) && at.Before(hLast) {
				between++
			}
		}
	}
	// The big one alone again for a while before the pause: 0.5 s of calls.
	waitPushes(b, w, w.sim.Sim().Stats().TotalPushes+int(rate*0.5)*100, time.Minute)
	w.publish(b, "campaigns.pause", []byte(`{"id":"big"}`), "")
	paused := r.waitState(b, "big", campaigns.StatePaused, 10*time.Second)
	time.Sleep(3 * time.Second) // a window after the pause: longer than any backlog a process held
	after, lastAfter := 0, time.Duration(0)
	for _, ts := range arrivals(w.sim.Sim(), big) {
		for _, at := range ts {
			if d := at.Sub(paused.At); d > 0 {
				after++
				lastAfter = max(lastAfter, d)
			}
		}
	}
	w.publish(b, "campaigns.cancel", []byte(`{"id":"big"}`), "")
	r.waitFinal(b, "big", 30*time.Second)
	sim := w.sim.Sim().Stats()
	first := hFirst.Sub(planned.At)
	b.ReportMetric(float64(first.Milliseconds()), "ms_high_first_push")
	b.ReportMetric(float64(hLast.Sub(planned.At).Milliseconds()), "ms_high_done")
	b.ReportMetric(float64(after), "calls_after_pause")
	b.Logf("R=%g procs=%d: high first push %s after planned, last %s; %d big batches between them; pause: %d calls arrived after paused was stored (last +%s); violations %d %+v",
		rate, procs, first.Round(time.Millisecond), hLast.Sub(planned.At).Round(time.Millisecond), between, after, lastAfter.Round(100*time.Microsecond), sim.Violations, sim.ViolationList)
}
