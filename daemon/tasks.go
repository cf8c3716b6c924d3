package daemon

import (
	"context"
	"fmt"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/ratelimit"
	"github.com/campaignd/campaignd/worker"
)

// taskQueues adapts one ratelimit.TaskWindow per Easemob app (its
// task_window config) to worker.TaskQueue.
type taskQueues struct {
	apps map[string]*ratelimit.TaskWindow
}

var _ worker.TaskQueue = (*taskQueues)(nil)

func newTaskQueues(cfg config.Config, lim *ratelimit.Limiter) *taskQueues {
	q := &taskQueues{apps: map[string]*ratelimit.TaskWindow{}}
	for name, a := range cfg.Apps {
		if a.Provider != provider.Easemob {
			continue
		}
		tw := a.TaskWindow
		q.apps[name] = lim.NewTaskWindow(ratelimit.TaskWindowConfig{
			MaxCreated: tw.MaxCreated, Window: tw.Window.D(), MaxRunning: tw.MaxRunning, TaskDuration: tw.TaskDuration.D(),
		})
	}
	return q
}

func (q *taskQueues) names() []string {
	var out []string
	for n := range q.apps {
		out = append(out, n)
	}
	return out
}

func (q *taskQueues) tw(app string) (*ratelimit.TaskWindow, error) {
	tw, ok := q.apps[app]
	if !ok {
		return nil, fmt.Errorf("tasks: app %q has no task queue (only easemob apps create push tasks)", app)
	}
	return tw, nil
}

func member(t worker.TaskRef) string {
	if t.Broadcast {
		return ratelimit.TaskMember(ratelimit.TaskBroadcast, t.ID)
	}
	return ratelimit.TaskMember(ratelimit.TaskLabel, t.ID)
}

func ref(m string) worker.TaskRef {
	k, id := ratelimit.ParseTaskMember(m)
	return worker.TaskRef{ID: id, Broadcast: k == ratelimit.TaskBroadcast}
}

// on runs f on app's task window.
func (q *taskQueues) on(app string, f func(*ratelimit.TaskWindow) error) error {
	tw, err := q.tw(app)
	if err != nil {
		return err
	}
	return f(tw)
}

func (q *taskQueues) Enqueue(ctx context.Context, app string, t worker.TaskRef, prio int, submitted time.Time) error {
	return q.on(app, func(tw *ratelimit.TaskWindow) error {
		return tw.Enqueue(ctx, app, member(t), ratelimit.TaskScore(prio, submitted))
	})
}

func (q *taskQueues) Remove(ctx context.Context, app string, t worker.TaskRef) error {
	return q.on(app, func(tw *ratelimit.TaskWindow) error { return tw.Remove(ctx, app, member(t)) })
}

func (q *taskQueues) Hold(ctx context.Context, app string, t worker.TaskRef, hold bool) error {
	return q.on(app, func(tw *ratelimit.TaskWindow) error { return tw.Hold(ctx, app, member(t), hold) })
}

func (q *taskQueues) Dispatch(ctx context.Context, app string) (worker.TaskRef, bool, time.Duration, error) {
	tw, err := q.tw(app)
	if err != nil {
		return worker.TaskRef{}, false, 0, err
	}
	m, wait, err := tw.Dispatch(ctx, app)
	if err != nil || m == "" {
		return worker.TaskRef{}, false, wait, err
	}
	return ref(m), true, 0, nil
}

func (q *taskQueues) Confirm(ctx context.Context, app string, t worker.TaskRef) error {
	return q.on(app, func(tw *ratelimit.TaskWindow) error { return tw.Confirm(ctx, app, member(t)) })
}

func (q *taskQueues) Undo(ctx context.Context, app string, t worker.TaskRef, requeue bool) error {
	return q.on(app, func(tw *ratelimit.TaskWindow) error { return tw.Undo(ctx, app, member(t), requeue) })
}

// Block holds the app's creations; by default for the soonest a task the
// provider counts (and campaignd does not know of) could end: a label
// task's duration, at most the window.
func (q *taskQueues) Block(ctx context.Context, app string, d time.Duration) error {
	tw, err := q.tw(app)
	if err != nil {
		return err
	}
	if d <= 0 {
		c := tw.Config()
		d = min(c.TaskDuration, c.Window)
	}
	return tw.Block(ctx, app, d)
}

func (q *taskQueues) Stale(ctx context.Context, app string, older time.Duration) ([]worker.TaskRef, error) {
	tw, err := q.tw(app)
	if err != nil {
		return nil, err
	}
	ms, err := tw.Stale(ctx, app, older)
	out := make([]worker.TaskRef, 0, len(ms))
	for _, m := range ms {
		out = append(out, ref(m))
	}
	return out, err
}

func (q *taskQueues) Estimates(ctx context.Context, app string) (map[worker.TaskRef]time.Time, error) {
	tw, err := q.tw(app)
	if err != nil {
		return nil, err
	}
	st, err := tw.State(ctx, app)
	if err != nil {
		return nil, err
	}
	out := map[worker.TaskRef]time.Time{}
	for m, t := range tw.Estimate(st) {
		out[ref(m)] = t
	}
	return out, nil
}

// State reads an app's task caps and queue (metrics).
func (q *taskQueues) State(ctx context.Context, app string) (ratelimit.TaskState, error) {
	tw, err := q.tw(app)
	if err != nil {
		return ratelimit.TaskState{}, err
	}
	return tw.State(ctx, app)
}

// taskCollector exposes each app's task caps in use and its waiting tasks
// (read from Redis at each scrape).
type taskCollector struct {
	q                         *taskQueues
	running, created, waiting *prometheus.Desc
}

func newTaskCollector(q *taskQueues) *taskCollector {
	return &taskCollector{q: q,
		running: prometheus.NewDesc("campaignd_task_slots_running", "Provider push tasks counted as running (task_window.max_running).", []string{"app"}, nil),
		created: prometheus.NewDesc("campaignd_task_creations_in_window", "Provider push tasks created in the sliding window (task_window.max_created).", []string{"app"}, nil),
		waiting: prometheus.NewDesc("campaignd_tasks_waiting", "Label pushes and broadcasts waiting for the task-window caps.", []string{"app"}, nil),
	}
}

func (c *taskCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.running
	ch <- c.created
	ch <- c.waiting
}

func (c *taskCollector) Collect(ch chan<- prometheus.Metric) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
	defer cancel()
	for app := range c.q.apps {
		st, err := c.q.State(ctx, app)
		if err != nil {
			continue
		}
		ch <- prometheus.MustNewConstMetric(c.running, prometheus.GaugeValue, float64(len(st.Running)), app)
		ch <- prometheus.MustNewConstMetric(c.created, prometheus.GaugeValue, float64(len(st.Created)), app)
		ch <- prometheus.MustNewConstMetric(c.waiting, prometheus.GaugeValue, float64(len(st.Waiting)), app)
	}
}
