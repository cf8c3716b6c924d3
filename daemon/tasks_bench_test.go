package daemon

import (
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/pushsim"
)

// BenchmarkTasks drives the task-window caps (`make bench-tasks`; results
// in docs/BENCHMARKS.md): 4 campaignd processes, a 10 s window with 3
// creations and 3 running, 24 label pushes and 6 broadcasts submitted
// mixed. It reports refusals, creations per window against max_created,
// and the idle gap between the caps (as pushsim counts them) letting a
// task go and its creation.
func BenchmarkTasks(b *testing.B) {
	tw := pushsim.TaskWindow{MaxCreated: 3, Window: 10 * time.Second, MaxRunning: 3, LabelTaskDuration: 3 * time.Second}
	for range b.N {
		w := newWorld(b, pushsim.Config{TaskWindow: tw})
		cfg := w.taskConfig(b)
		a := cfg.Apps["default"]
		a.TaskWindow = config.TaskWindow{MaxCreated: 3, Window: config.Duration(tw.Window), MaxRunning: 3, TaskDuration: config.Duration(tw.LabelTaskDuration)}
		cfg.Apps["default"] = a
		var rs []*running
		for range 4 {
			rs = append(rs, start(b, cfg))
		}
		submitJSON(b, w, map[string]any{"id": "fans", "kind": "label_members", "action": "add", "label": "fans", "targets": ids("fan", 500)})
		rs[0].waitFinal(b, "fans", 30*time.Second)
		var all []string
		for i := range 30 {
			id := fmt.Sprintf("task-%02d", i)
			if i%5 == 4 {
				w.publish(b, "campaigns.submit", []byte(fmt.Sprintf(`{"id":%q,"kind":"broadcast","push_message":{"title":"t"}}`, id)), "")
			} else {
				w.publish(b, "campaigns.submit", labelPush(id, "fans", ""), "")
			}
			all = append(all, id)
		}
		for _, id := range all {
			if st := rs[len(all)%4].waitFinal(b, id, 10*time.Minute); st.Status != campaigns.StateCompleted {
				b.Fatalf("%s: %+v", id, st)
			}
		}
		sim := w.sim.Sim().Stats()
		tasks := sim.TaskLog
		gaps := idleGapsBy(tasks, tw, func(kind string) time.Duration {
			if kind == "broadcast" {
				return time.Second // push_task 1/s
			}
			return 100 * time.Millisecond // push_label 10/s
		})
		sorted := append([]time.Duration(nil), gaps...)
		sort.Slice(sorted, func(i, j int) bool { return sorted[i] < sorted[j] })
		pct := func(p float64) time.Duration { return sorted[min(len(sorted)-1, int(p*float64(len(sorted))))] }
		span := tasks[len(tasks)-1].CreatedAt.Sub(tasks[0].CreatedAt)
		perWindow := float64(len(tasks)-1) / (span.Seconds() / tw.Window.Seconds())
		b.ReportMetric(float64(sim.LimitExceptions), "refusals")
		b.ReportMetric(perWindow, "creations/window")
		b.ReportMetric(float64(pct(0.99).Milliseconds()), "ms_gap_p99")
		b.Logf("%d tasks (%d label, %d broadcast) in %.1f s; refusals %d; %.2f creations per %s window (max %d); idle gap p50 %s p99 %s max %s; violations %d",
			len(tasks), 24, 6, span.Seconds(), sim.LimitExceptions, perWindow, tw.Window, tw.MaxCreated,
			pct(0.5).Round(time.Millisecond), pct(0.99).Round(time.Millisecond), sorted[len(sorted)-1].Round(time.Millisecond), sim.Violations)
	}
}
