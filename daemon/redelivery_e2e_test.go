package daemon

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/nats-io/nats.go/jetstream"
	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/store"
)

// A campaign that is running but whose work is not queued any more (its
// plan task completed, its batch tasks deleted from asynq) is published
// again under its id, as a redelivery would be: before it is answered
// duplicate its missing tasks are queued again — at once, the reconciler's
// stall_after being an hour — and it completes with every target pushed
// once.
func TestRedeliveredIDQueuesTheWorkOfAStuckCampaign(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	cfg := w.config(t, config.Limits{provider.GroupPushSingle: 50})
	cfg.Worker.Concurrency = 2 // a window of 8 batch tasks, 2 at work
	cfg.Worker.StallAfter = config.Duration(time.Hour)
	r := start(t, cfg)
	targets := ids("stk", 20000) // 200 batches, 13 batch tasks, 4 s at 50/s
	w.publish(t, "campaigns.submit", campaignJSON("stuck", targets, ""), "stuck")
	r.waitState(t, "stuck", campaigns.StateRunning, 10*time.Second)
	testenv.WaitFor(t, time.Minute, "1000 pushes", func() (int, bool) {
		n := w.sim.Sim().Stats().TotalPushes
		return n, n >= 1000
	})
	// Paused, its batch tasks come back only seconds later (retry), so
	// none is active and all can be deleted; then it is running again,
	// straight in the store (not a resume), with nothing queued.
	w.publish(t, "campaigns.pause", []byte(`{"id":"stuck"}`), "")
	r.waitState(t, "stuck", campaigns.StatePaused, 10*time.Second)
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: w.redis.Addr})
	defer insp.Close()
	deleted := 0
	quiet := 0
	testenv.WaitUntil(t, 30*time.Second, "the campaign's tasks to stop", func() bool {
		n := 0
		for _, list := range []func(string, ...asynq.ListOption) ([]*asynq.TaskInfo, error){insp.ListPendingTasks, insp.ListScheduledTasks, insp.ListRetryTasks} {
			tasks, _ := list("default")
			for _, ti := range tasks {
				if ti.Type == "campaign:batch" && insp.DeleteTask("default", ti.ID) == nil {
					deleted++
					n++
				}
			}
		}
		active, _ := insp.ListActiveTasks("default")
		if n == 0 && len(active) == 0 {
			quiet++
		} else {
			quiet = 0
		}
		return quiet >= 10
	})
	rc := redis.NewClient(&redis.Options{Addr: w.redis.Addr})
	defer rc.Close()
	if _, changed, err := store.New(rc, store.Options{}).Transition(context.Background(), "stuck", campaigns.StateRunning, campaigns.StatePaused); err != nil || !changed {
		t.Fatalf("back to running: %v %v", changed, err)
	}
	stuckAt := w.sim.Sim().Stats().TotalPushes
	time.Sleep(time.Second) // a window in which a stuck campaign must send nothing
	var st campaigns.Status
	getJSON(t, r.base+"/api/campaigns/stuck", &st)
	if now := w.sim.Sim().Stats().TotalPushes; now != stuckAt || st.Status != campaigns.StateRunning || st.Sent >= 20000 {
		t.Fatalf("the campaign is not stuck: %d → %d pushes, %+v", stuckAt, now, st)
	}
	if info, err := insp.GetTaskInfo("default", "stuck:plan"); err != nil || info.State != asynq.TaskStateCompleted {
		t.Fatalf("plan task: %+v %v, want completed (kept)", info, err)
	}
	t.Logf("%d batch tasks deleted; stuck at %d of 20000 targets", deleted, st.Sent)

	// Listen first: the duplicate answer is soon followed by the running
	// campaign's progress, so it is looked for among the events, not as
	// the last one.
	cons, err := w.js.OrderedConsumer(context.Background(), intake.StreamStatus, jetstream.OrderedConsumerConfig{
		FilterSubjects: []string{intake.StatusSubject("stuck")}, DeliverPolicy: jetstream.DeliverNewPolicy})
	if err != nil {
		t.Fatal(err)
	}
	w.publish(t, "campaigns.submit", campaignJSON("stuck", targets, ""), "") // a new message: the id again
	var seen []campaigns.State
	for deadline := time.Now().Add(10 * time.Second); ; {
		if time.Now().After(deadline) {
			t.Fatalf("no duplicate answer: events %v", seen)
		}
		m, err := cons.Next(jetstream.FetchMaxWait(time.Second))
		if err != nil {
			continue
		}
		var ev campaigns.Status
		_ = json.Unmarshal(m.Data(), &ev)
		if seen = append(seen, ev.Status); ev.Status == campaigns.StateDuplicate {
			break
		}
	}
	final := r.waitFinal(t, "stuck", 60*time.Second)
	if final.Status != campaigns.StateCompleted || final.Sent != 20000 {
		t.Fatalf("final %+v", final)
	}
	sim := w.sim.Sim().Stats()
	if sim.TargetsPushed != 20000 || sim.MaxPushesOneID != 1 || sim.Violations != 0 {
		t.Fatalf("pushed %d, max per target %d, violations %d", sim.TargetsPushed, sim.MaxPushesOneID, sim.Violations)
	}
	if ns := w.waitLastStatus(t, "stuck", campaigns.StateCompleted, 5*time.Second); ns.Status != campaigns.StateCompleted {
		t.Fatalf("last status event %+v, want completed", ns)
	}
}
