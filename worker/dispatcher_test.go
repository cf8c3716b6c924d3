package worker

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/testenv"
)

// memTasks is a TaskQueue that only keeps which tasks wait and which are
// held (the caps are ratelimit's, tested there); onUndo runs inside Undo,
// to put another process's pause or resume between a dispatcher's steps.
type memTasks struct {
	mu      sync.Mutex
	waiting map[TaskRef]bool
	held    map[TaskRef]bool
	onUndo  func()
}

func newMemTasks() *memTasks {
	return &memTasks{waiting: map[TaskRef]bool{}, held: map[TaskRef]bool{}}
}

func (m *memTasks) Enqueue(_ context.Context, _ string, t TaskRef, _ int, _ time.Time) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.waiting[t] = true
	return nil
}

func (m *memTasks) Remove(_ context.Context, _ string, t TaskRef) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	delete(m.waiting, t)
	delete(m.held, t)
	return nil
}

func (m *memTasks) Hold(_ context.Context, _ string, t TaskRef, hold bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if hold {
		m.held[t] = true
	} else {
		delete(m.held, t)
	}
	return nil
}

func (m *memTasks) Dispatch(context.Context, string) (TaskRef, bool, time.Duration, error) {
	return TaskRef{}, false, -1, nil
}

func (m *memTasks) Confirm(context.Context, string, TaskRef) error { return nil }

func (m *memTasks) Undo(_ context.Context, _ string, t TaskRef, requeue bool) error {
	m.mu.Lock()
	if requeue {
		m.waiting[t] = true
	}
	hook := m.onUndo
	m.onUndo = nil
	m.mu.Unlock()
	if hook != nil {
		hook()
	}
	return nil
}

func (m *memTasks) Block(context.Context, string, time.Duration) error { return nil }

func (m *memTasks) Stale(context.Context, string, time.Duration) ([]TaskRef, error) {
	return nil, nil
}

func (m *memTasks) Estimates(context.Context, string) (map[TaskRef]time.Time, error) {
	return nil, nil
}

func (m *memTasks) state(t TaskRef) (waiting, held bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.waiting[t], m.held[t]
}

// A dispatcher pops a task whose campaign is paused just then; before it
// holds the task, the campaign is resumed (or cancelled) by another
// process. The task must end up free to go (or gone), not held for good
// while its campaign waits as scheduled.
func TestPoppedPausedTaskFollowsALaterResumeOrCancel(t *testing.T) {
	tests := []struct {
		name      string
		then      func(e *env, id string) error
		wantState campaigns.State
		waiting   bool
		held      bool
	}{
		{"resumed", func(e *env, id string) error { _, err := e.svc.Control.Resume(context.Background(), id); return err },
			campaigns.StateScheduled, true, false},
		{"cancelled", func(e *env, id string) error { _, err := e.svc.Control.Cancel(context.Background(), id); return err },
			campaigns.StateCancelled, false, false},
		{"still paused", func(*env, string) error { return nil },
			campaigns.StatePaused, true, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			tasks := newMemTasks()
			e := setup(t, Options{Provider: &fakeProvider{}, Tasks: TaskOptions{Queue: tasks}})
			ctx := context.Background()
			c := &campaigns.Campaign{ID: "label-" + tt.name, App: "app", Kind: campaigns.KindLabelPush, Label: "vip", PushMessage: msg()}
			e.submit(t, c, time.Now())
			ref := TaskRef{ID: c.ID}
			testenv.WaitUntil(t, 10*time.Second, fmt.Sprintf("campaign %s to be %s", c.ID, campaigns.StateScheduled), func() bool {
				st, err := e.store.Status(context.Background(), c.ID)
				return err == nil && st.Status == campaigns.StateScheduled
			})
			// scheduled comes just before the task is queued
			testenv.WaitUntil(t, 5*time.Second, "the label push to wait in the task queue", func() bool { w, _ := tasks.state(ref); return w })
			if _, err := e.svc.Control.Pause(ctx, c.ID); err != nil {
				t.Fatal(err)
			}
			tasks.mu.Lock()
			tasks.onUndo = func() {
				if err := tt.then(e, c.ID); err != nil {
					t.Error(err)
				}
			}
			tasks.mu.Unlock()
			e.svc.Dispatcher.createTask(ctx, "app", ref) // as if Dispatch had popped it

			st, err := e.store.Status(ctx, c.ID)
			if err != nil {
				t.Fatal(err)
			}
			waiting, held := tasks.state(ref)
			if st.Status != tt.wantState || waiting != tt.waiting || held != tt.held {
				t.Fatalf("status %s, waiting %v, held %v; want %s, %v, %v", st.Status, waiting, held, tt.wantState, tt.waiting, tt.held)
			}
		})
	}
}

// A label push paused while its task is being created, which the provider
// then creates: the campaign stays paused (a paused campaign is finished by
// its resume), and the resume finishes it. It must not go back to wait in
// the task queue it has left, scheduled for good (the flaky
// TestForeignTasksAndCancel of issue 21 waited 30 s for such a campaign).
func TestTaskCreatedWhilePausedIsFinishedByItsResume(t *testing.T) {
	t.Parallel()
	tasks := newMemTasks()
	release := make(chan struct{})
	calling := make(chan struct{})
	prov := &fakeProvider{pushLabel: func(ctx context.Context) (string, error) {
		close(calling)
		<-release
		return "task-7", nil
	}}
	e := setup(t, Options{Provider: prov, Tasks: TaskOptions{Queue: tasks}})
	ctx := context.Background()
	c := &campaigns.Campaign{ID: "label-created-while-paused", App: "app", Kind: campaigns.KindLabelPush, Label: "vip", PushMessage: msg()}
	e.submit(t, c, time.Now())
	ref := TaskRef{ID: c.ID}
	testenv.WaitUntil(t, 5*time.Second, "the label push to wait in the task queue", func() bool { w, _ := tasks.state(ref); return w })
	tasks.mu.Lock()
	delete(tasks.waiting, ref) // as Dispatch pops it
	tasks.mu.Unlock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.svc.Dispatcher.createTask(ctx, "app", ref)
	}()
	<-calling
	if st, err := e.svc.Control.Pause(ctx, c.ID); err != nil || st.Status != campaigns.StatePaused {
		t.Fatalf("pause while the task is created: %+v %v", st, err)
	}
	close(release)
	<-done
	if st, err := e.store.Status(ctx, c.ID); err != nil || st.Status != campaigns.StatePaused || len(st.ProviderTaskIDs) != 1 {
		t.Fatalf("after the provider created the task: %+v %v; want paused, with its task id", st, err)
	}
	st, err := e.svc.Control.Resume(ctx, c.ID)
	if err != nil {
		t.Fatal(err)
	}
	if st.Status != campaigns.StateCompleted || st.ProviderTaskIDs[0] != "task-7" {
		t.Fatalf("resumed: %+v; want completed with task-7", st)
	}
	if waiting, held := tasks.state(ref); waiting || held {
		t.Fatalf("resumed and finished, the task is still in the queue (waiting %v, held %v)", waiting, held)
	}
}
