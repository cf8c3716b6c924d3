package daemon

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider/easemob"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/worker"
)

// The task-window caps of these tests: 3 creations per 10 s, 2 running, a
// label task runs 3 s.
var shortWindow = pushsim.TaskWindow{MaxCreated: 3, Window: 10 * time.Second, MaxRunning: 2, LabelTaskDuration: 3 * time.Second}

func (w *world) taskConfig(t testing.TB) config.Config {
	t.Helper()
	cfg := w.config(t, config.Limits{})
	a := cfg.Apps["default"]
	a.TaskWindow = config.TaskWindow{MaxCreated: 3, Window: config.Duration(10 * time.Second), MaxRunning: 2, TaskDuration: config.Duration(3 * time.Second)}
	cfg.Apps["default"] = a
	cfg.Worker.Concurrency = 5
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

// idleGaps replays pushsim's task list against the caps: for each task,
// how long after the caps (as the provider counts them) let it go was it
// created; spacing is the calls-per-second limit of the creating call
// (push_task is 1/s). Tasks are all submitted before the first creation.
func idleGaps(tasks []pushsim.Task, tw pushsim.TaskWindow, spacing time.Duration) []time.Duration {
	return idleGapsBy(tasks, tw, func(string) time.Duration { return spacing })
}

// idleGapsBy is idleGaps with the spacing of each kind's creating call
// ("label": push_label, "broadcast": push_task), counted from the last
// creation of the same kind.
func idleGapsBy(tasks []pushsim.Task, tw pushsim.TaskWindow, spacing func(kind string) time.Duration) []time.Duration {
	sort.Slice(tasks, func(i, j int) bool { return tasks[i].CreatedAt.Before(tasks[j].CreatedAt) })
	var gaps []time.Duration
	for i, tk := range tasks {
		if i == 0 {
			continue
		}
		free := tasks[0].CreatedAt
		for j := i - 1; j >= 0; j-- {
			if tasks[j].Kind == tk.Kind {
				free = maxT(free, tasks[j].CreatedAt.Add(spacing(tk.Kind)))
				break
			}
		}
		for {
			var inWin, running []time.Time
			for _, p := range tasks[:i] {
				if free.Sub(p.CreatedAt) < tw.Window {
					inWin = append(inWin, p.CreatedAt.Add(tw.Window))
				}
				if p.EndsAt.After(free) {
					running = append(running, p.EndsAt)
				}
			}
			next := free
			if len(inWin) >= tw.MaxCreated {
				sort.Slice(inWin, func(a, b int) bool { return inWin[a].Before(inWin[b]) })
				next = maxT(next, inWin[len(inWin)-tw.MaxCreated])
			}
			if len(running) >= tw.MaxRunning {
				sort.Slice(running, func(a, b int) bool { return running[a].Before(running[b]) })
				next = maxT(next, running[len(running)-tw.MaxRunning])
			}
			if !next.After(free) {
				break
			}
			free = next
		}
		gaps = append(gaps, tk.CreatedAt.Sub(free))
	}
	return gaps
}

func maxT(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

func labelPush(id, label string, extra string) []byte {
	return []byte(fmt.Sprintf(`{"id":%q,"kind":"label_push","label":%q,"push_message":{"title":"t","content":"c"}%s}`, id, label, extra))
}

// 7 label pushes from 2 processes to a label made by label_members: 7
// tasks, none refused, the caps never exceeded.
func TestLabelPushesUnderTheTaskCaps(t *testing.T) {
	w := newWorld(t, pushsim.Config{TaskWindow: shortWindow})
	cfg := w.taskConfig(t)
	a, b := start(t, cfg), start(t, cfg)
	submitJSON(t, w, map[string]any{"id": "fans", "kind": "label_members", "action": "add", "label": "fans", "targets": ids("fan", 120)})
	a.waitFinal(t, "fans", 20*time.Second)
	for i := range 7 {
		w.publish(t, "campaigns.submit", labelPush(fmt.Sprintf("lp-%d", i), "fans", ""), "")
	}
	// A waiting one says when it will go.
	// The last in the queue (submission order is the order campaignd
	// stored them, which two processes may swap by milliseconds) says it
	// goes after two windows.
	b.waitState(t, "lp-6", campaigns.StateScheduled, 10*time.Second)
	testenv.WaitFor(t, 5*time.Second, "the last waiting label push to have start_at the time the caps let it go (~20 s ahead)", func() (time.Time, bool) {
		var latest time.Time
		for i := range 7 {
			var st campaigns.Status
			getJSON(t, b.base+fmt.Sprintf("/api/campaigns/lp-%d", i), &st)
			if st.Status == campaigns.StateScheduled && st.StartAt != nil && st.StartAt.After(latest) {
				latest = *st.StartAt
			}
		}
		return latest, time.Until(latest) > 15*time.Second
	})
	// It shows in the asynq UI, in its own queue.
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: w.redis.Addr})
	defer insp.Close()
	if info, err := insp.GetTaskInfo(worker.QueueTaskMarkers, "lp-6:task"); err != nil || info.Type != worker.TypeTaskMarker {
		t.Errorf("the waiting label push in the asynq UI: %+v %v", info, err)
	}
	for i := range 7 {
		st := a.waitFinal(t, fmt.Sprintf("lp-%d", i), 60*time.Second)
		if st.Status != campaigns.StateCompleted || len(st.ProviderTaskIDs) != 1 {
			t.Fatalf("lp-%d: %+v", i, st)
		}
	}
	if _, err := insp.GetTaskInfo(worker.QueueTaskMarkers, "lp-6:task"); !errors.Is(err, asynq.ErrTaskNotFound) {
		t.Errorf("the created label push's UI marker: %v, want it gone", err)
	}
	sim := w.sim.Sim().Stats()
	if len(sim.TaskLog) != 7 || sim.LimitExceptions != 0 || sim.Violations != 0 {
		t.Fatalf("tasks %d, LimitExceptions %d, violations %d", len(sim.TaskLog), sim.LimitExceptions, sim.Violations)
	}
	for _, tk := range sim.TaskLog {
		if tk.Kind != "label" || tk.Label != "fans" || tk.Reached != 120 && tk.Executed {
			t.Fatalf("task %+v", tk)
		}
	}
	t.Logf("idle gaps between a slot freeing and the next creation: %v", idleGaps(sim.TaskLog, shortWindow, 100*time.Millisecond))
}

// 4 broadcasts from 3 processes: the 4th is created only when the window
// lets it; none refused.
func TestBroadcastsUnderTheTaskCaps(t *testing.T) {
	tw := pushsim.TaskWindow{MaxCreated: 3, Window: 6 * time.Second, MaxRunning: 3, LabelTaskDuration: 3 * time.Second}
	w := newWorld(t, pushsim.Config{TaskWindow: tw})
	cfg := w.taskConfig(t)
	app := cfg.Apps["default"]
	app.TaskWindow = config.TaskWindow{MaxCreated: 3, Window: config.Duration(6 * time.Second), MaxRunning: 3, TaskDuration: config.Duration(3 * time.Second)}
	cfg.Apps["default"] = app
	r := start(t, cfg)
	start(t, cfg)
	start(t, cfg)
	for i := range 4 {
		w.publish(t, "campaigns.submit", []byte(fmt.Sprintf(`{"id":"bc-%d","kind":"broadcast","push_message":{"title":"t"}}`, i)), "")
	}
	for i := range 4 {
		if st := r.waitFinal(t, fmt.Sprintf("bc-%d", i), 40*time.Second); st.Status != campaigns.StateCompleted {
			t.Fatalf("bc-%d: %+v", i, st)
		}
	}
	sim := w.sim.Sim().Stats()
	if len(sim.TaskLog) != 4 || sim.LimitExceptions != 0 {
		t.Fatalf("tasks %d, LimitExceptions %d", len(sim.TaskLog), sim.LimitExceptions)
	}
	sort.Slice(sim.TaskLog, func(i, j int) bool { return sim.TaskLog[i].CreatedAt.Before(sim.TaskLog[j].CreatedAt) })
	if d := sim.TaskLog[3].CreatedAt.Sub(sim.TaskLog[0].CreatedAt); d < tw.Window {
		t.Fatalf("the 4th broadcast was created %s after the 1st, inside the %s window", d, tw.Window)
	}
	t.Logf("idle gaps: %v", idleGaps(sim.TaskLog, tw, time.Second))
}

// A LimitException the caps did not foresee (another client on the key)
// holds every process back, and the campaigns still complete; a cancelled
// waiting label push creates nothing.
func TestForeignTasksAndCancel(t *testing.T) {
	begin := time.Now()
	step := func(what string) { t.Logf("%6.2fs %s", time.Since(begin).Seconds(), what) }
	w := newWorld(t, pushsim.Config{TaskWindow: shortWindow})
	cfg := w.taskConfig(t)
	r := start(t, cfg)
	start(t, cfg)
	submitJSON(t, w, map[string]any{"id": "fans", "kind": "label_members", "action": "add", "label": "fans", "targets": ids("fan", 10)})
	r.waitFinal(t, "fans", 20*time.Second)
	step("fans final")
	// Another client fills the provider's running cap behind campaignd's back.
	other, err := easemob.New(easemob.Config{BaseURL: w.sim.URL(), Org: "org", App: "app", ClientID: "pushsim", ClientSecret: "pushsim-secret"})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	for range 2 {
		if _, err := other.PushLabel(ctx, "fans", nil, easemob.PushRequest{PushMessage: []byte(`{"title":"x"}`)}); err != nil {
			t.Fatal(err)
		}
	}
	w.publish(t, "campaigns.submit", labelPush("after-foreign", "fans", ""), "")
	w.publish(t, "campaigns.submit", labelPush("to-cancel", "fans", `,"priority":"low"`), "")
	r.waitState(t, "to-cancel", campaigns.StateScheduled, 10*time.Second)
	step("to-cancel scheduled")
	w.publish(t, "campaigns.cancel", []byte(`{"id":"to-cancel"}`), "")
	var st campaigns.Status
	st = r.waitFinal(t, "to-cancel", 10*time.Second)
	step("to-cancel final")
	if st.Status != campaigns.StateCancelled {
		t.Fatalf("to-cancel: %+v", st)
	}
	st = r.waitFinal(t, "after-foreign", 30*time.Second)
	step("after-foreign final")
	if st.Status != campaigns.StateCompleted {
		t.Fatalf("after-foreign: %+v", st)
	}
	sim := w.sim.Sim().Stats()
	if sim.LimitExceptions == 0 || sim.LimitExceptions > 2 {
		t.Fatalf("LimitExceptions %d: want the one refusal that moved the window for every process (two processes: at most 2)", sim.LimitExceptions)
	}
	if len(sim.TaskLog) != 3 {
		t.Fatalf("%d tasks at pushsim, want 2 foreign + 1 (the cancelled one creates nothing)", len(sim.TaskLog))
	}
	// A paused waiting task keeps its place and lets the ones behind it go;
	// resumed, it is created.
	w.publish(t, "campaigns.submit", labelPush("paused-one", "fans", ""), "")
	r.waitState(t, "paused-one", campaigns.StateScheduled, 10*time.Second)
	step("paused-one scheduled")
	w.publish(t, "campaigns.pause", []byte(`{"id":"paused-one"}`), "")
	r.waitState(t, "paused-one", campaigns.StatePaused, 10*time.Second)
	step("paused-one paused")
	w.publish(t, "campaigns.submit", labelPush("behind", "fans", `,"priority":"low"`), "")
	st = r.waitFinal(t, "behind", 30*time.Second)
	step("behind final")
	if st.Status != campaigns.StateCompleted {
		t.Fatalf("behind a paused task: %+v", st)
	}
	var ps campaigns.Status
	getJSON(t, r.base+"/api/campaigns/paused-one", &ps)
	if ps.Status != campaigns.StatePaused {
		t.Fatalf("the paused task: %+v", ps)
	}
	w.publish(t, "campaigns.resume", []byte(`{"id":"paused-one"}`), "")
	st = r.waitFinal(t, "paused-one", 30*time.Second)
	step("paused-one final")
	if st.Status != campaigns.StateCompleted {
		t.Fatalf("resumed: %+v", st)
	}
	// A label push to a missing label fails with the provider's reason.
	w.publish(t, "campaigns.submit", labelPush("no-label", "nope", ""), "")
	st = r.waitFinal(t, "no-label", 30*time.Second)
	step("no-label final")
	if st.Status != campaigns.StateFailed || len(st.Errors) == 0 || st.Errors[0].Field != "label" {
		t.Fatalf("no-label: %+v", st)
	}
}

// A label push schedule fired by 3 processes creates exactly one task per
// tick, within the caps.
func TestCronLabelPushFromThreeProcesses(t *testing.T) {
	w := newWorld(t, pushsim.Config{TaskWindow: shortWindow})
	cfg := w.taskConfig(t)
	cfg.Schedules = []config.Schedule{{Name: "every4s", Cron: "*/4 * * * * *",
		CampaignRaw: map[string]any{"kind": "label_push", "app": "default", "label": "fans", "push_message": map[string]any{"title": "tick"}}}}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	// The label must exist before the first tick: made straight at pushsim.
	other, err := easemob.New(easemob.Config{BaseURL: w.sim.URL(), Org: "org", App: "app", ClientID: "pushsim", ClientSecret: "pushsim-secret"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := other.CreateLabel(context.Background(), "fans", ""); err != nil {
		t.Fatal(err)
	}
	for range 3 {
		start(t, cfg)
	}
	// Three ticks of the schedule (on the real clock, 4 s apart): a
	// doubled one of the first two would show before the third is created.
	testenv.WaitFor(t, 30*time.Second, "3 tasks from the schedule", func() (int, bool) {
		n := len(w.sim.Sim().Stats().TaskLog)
		return n, n >= 3
	})
	sim := w.sim.Sim().Stats()
	byMinuteSecond := map[string]int{}
	for _, tk := range sim.TaskLog {
		byMinuteSecond[tk.CreatedAt.Truncate(4*time.Second).Format("15:04:05")]++
	}
	for tick, n := range byMinuteSecond {
		if n != 1 {
			t.Fatalf("tick %s created %d tasks (%+v)", tick, n, sim.TaskLog)
		}
	}
	if sim.LimitExceptions != 0 {
		t.Fatalf("%d LimitExceptions", sim.LimitExceptions)
	}
}

// A label push with a start_date is held by campaignd and created at its
// start, never before (no startDate goes to the provider).
func TestLabelPushStartsOnTime(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{TaskWindow: shortWindow})
	r := start(t, w.taskConfig(t))
	submitJSON(t, w, map[string]any{"id": "fans", "kind": "label_members", "action": "add", "label": "fans", "targets": ids("fan", 3)})
	r.waitFinal(t, "fans", 20*time.Second)
	at := time.Now().Add(3 * time.Second).UTC()
	w.publish(t, "campaigns.submit", labelPush("later", "fans", `,"start_date":"`+at.Format(time.RFC3339Nano)+`"`), "")
	if st := r.waitState(t, "later", campaigns.StateScheduled, 5*time.Second); st.StartAt == nil || st.StartAt.Before(at) {
		t.Fatalf("scheduled %+v", st)
	}
	if st := r.waitFinal(t, "later", 20*time.Second); st.Status != campaigns.StateCompleted {
		t.Fatalf("%+v", st)
	}
	tasks := w.sim.Sim().Stats().TaskLog
	if len(tasks) != 1 || tasks[0].CreatedAt.Before(at) || !tasks[0].StartAt.Equal(tasks[0].CreatedAt) {
		t.Fatalf("task %+v, start %s: created early, or with a provider startDate", tasks, at)
	}
	t.Logf("created %s after its start_date", tasks[0].CreatedAt.Sub(at))
}
