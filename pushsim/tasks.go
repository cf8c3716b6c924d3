package pushsim

import "time"

// Task is a push task created by a label push or a broadcast.
type Task struct {
	ID        string    `json:"id"`
	Kind      string    `json:"kind"` // "label" or "broadcast"
	Label     string    `json:"label,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	StartAt   time.Time `json:"start_at"`
	EndsAt    time.Time `json:"ends_at"`  // label: start + LabelTaskDuration; broadcast: creation + Window
	Reached   int       `json:"reached"`  // targets pushed when it ran
	Executed  bool      `json:"executed"` // pushes recorded
	app       string
	message   []byte
}

// taskCaps applies the provider's task-window caps (provider-docs 003): at
// most MaxCreated creations in any sliding Window; at most MaxRunning tasks
// counted at once — a label task from creation until its execution ends, a
// broadcast from creation until its Window is over.
type taskCaps struct {
	cfg TaskWindow
}

// check reports whether a new task may be created at now given the app's
// tasks, and why not.
func (c taskCaps) check(tasks []*Task, now time.Time) (ok bool, reason string) {
	created, running := 0, 0
	for _, t := range tasks {
		if now.Sub(t.CreatedAt) < c.cfg.Window {
			created++
		}
		if now.Before(t.EndsAt) {
			running++
		}
	}
	if created >= c.cfg.MaxCreated {
		return false, "task creations in window exceeded"
	}
	if running >= c.cfg.MaxRunning {
		return false, "running tasks exceeded"
	}
	return true, ""
}
