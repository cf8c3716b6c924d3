package daemon

import (
	"errors"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// A batch task archived mid-campaign (from the asynq UI, or by asynq after
// a SkipRetry) breaks its campaign's chain: its batches and its successors
// are never sent. The reconciler finds the stalled campaign and queues the
// missing task again; every target is sent once.
func TestArchivedBatchTaskIsRepaired(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	cfg := w.config(t, config.Limits{PushSingle: 50})
	cfg.Worker.Concurrency = 2 // a window of 8 batch tasks, 2 at work: the rest wait in the queue
	cfg.Worker.StallAfter = config.Duration(time.Second)
	r := start(t, cfg)
	targets := ids("arch", 20000) // 200 batches, 13 batch tasks
	w.publish(t, "campaigns.submit", campaignJSON("arch", targets, ""), "arch")
	r.waitState(t, "arch", campaigns.StateRunning, 10*time.Second)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: w.redis.Addr})
	defer insp.Close()
	archived := ""
	deadline := time.Now().Add(5 * time.Second)
	for archived == "" {
		for _, id := range []string{"arch:g:7", "arch:g:6", "arch:g:5"} {
			if err := insp.ArchiveTask("default", id); err == nil {
				archived = id
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatal("no waiting batch task to archive")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if info, err := insp.GetTaskInfo("default", archived); err != nil || info.State != asynq.TaskStateArchived {
		t.Fatalf("%s: %+v %v", archived, info, err)
	}
	st := r.waitFinal(t, "arch", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 20000 {
		t.Fatalf("status %+v", st)
	}
	sim := w.sim.Sim().Stats()
	if sim.TargetsPushed != 20000 || sim.MaxPushesOneID != 1 || sim.Violations != 0 {
		t.Fatalf("pushed %d, max per target %d, violations %d", sim.TargetsPushed, sim.MaxPushesOneID, sim.Violations)
	}
	if _, err := insp.GetTaskInfo("default", archived); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("the repaired task is still there: %v", err)
	}
	t.Logf("archived %s; repaired and completed", archived)
}

// Redis stopped for 3 s mid-campaign (gracefully, and SIGKILLed with
// appendfsync always), then started again: batches the provider answered
// during the outage are recorded once Redis is back, not sent again.
func TestShortRedisOutageResendsNothing(t *testing.T) {
	for _, tc := range []struct {
		name string
		stop func(*testenv.Redis)
	}{
		{"graceful", (*testenv.Redis).Shutdown},
		{"sigkill", (*testenv.Redis).Stop},
	} {
		t.Run(tc.name, func(t *testing.T) {
			rd := testenv.StartRedisWith(t, testenv.RedisOptions{AppendFsync: "always"})
			w := newWorldWith(t, rd, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
			r := start(t, w.config(t, config.Limits{PushSingle: 50}))
			targets := ids("out", 20000) // 200 batches at 50/s: 4 s of sending
			w.publish(t, "campaigns.submit", campaignJSON("outage", targets, ""), "outage")
			for w.sim.Sim().Stats().TotalPushes < 5000 {
				time.Sleep(5 * time.Millisecond)
			}
			tc.stop(rd)
			down := time.Now()
			time.Sleep(3 * time.Second)
			rd.Restart(t)
			t.Logf("Redis down for %s, at %d pushes", time.Since(down).Round(time.Millisecond), w.sim.Sim().Stats().TotalPushes)
			st := r.waitFinal(t, "outage", 3*time.Minute)
			sim := w.sim.Sim().Stats()
			t.Logf("final %s %s after the outage: %d targets, %d pushes, violations %d", st.Status, time.Since(down).Round(time.Millisecond), sim.TargetsPushed, sim.TotalPushes, sim.Violations)
			if st.Status != campaigns.StateCompleted || st.Sent != 20000 {
				t.Fatalf("status %+v", st)
			}
			for _, v := range sim.ViolationList {
				t.Logf("violation %+v", v)
				dumpWindow(t, w.sim.Sim(), targets, v.At)
			}
			if sim.TargetsPushed != 20000 || sim.TotalPushes != 20000 || sim.Violations != 0 {
				t.Fatalf("pushed %d targets in %d pushes (want each once), violations %d", sim.TargetsPushed, sim.TotalPushes, sim.Violations)
			}
		})
	}
}
