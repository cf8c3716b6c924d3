// Package campaigns is the campaign domain: the campaign and status shapes of
// the public interface (docs/interface.md §4, §5), their validation, and nothing of
// transport (no NATS, asynq or HTTP types).
package campaigns

import (
	"encoding/json"
	"time"
)

// Kind is what a campaign does.
type Kind string

// The campaign kinds of docs/interface.md §4.2.
const (
	KindBatchPush    Kind = "batch_push"
	KindSinglePush   Kind = "single_push"
	KindLabelPush    Kind = "label_push"
	KindBroadcast    Kind = "broadcast"
	KindLabelMembers Kind = "label_members"
	KindUserSettings Kind = "user_settings"
	KindTemplate     Kind = "template"
)

// Kinds lists every kind, in contract order.
var Kinds = []Kind{KindBatchPush, KindSinglePush, KindLabelPush, KindBroadcast, KindLabelMembers, KindUserSettings, KindTemplate}

// Priority orders campaigns sharing one app's limits.
type Priority string

// Priorities.
const (
	PriorityHigh   Priority = "high"
	PriorityNormal Priority = "normal"
	PriorityLow    Priority = "low"
)

// Ranks is how many priority ranks there are (see Rank).
const Ranks = 3

// Rank orders priorities for everything that serves campaigns by priority
// (the limiter's queues, a process's in-flight slots): 0 high, 1 normal,
// 2 low. An unset or unknown priority ranks as normal.
func (p Priority) Rank() int {
	switch p {
	case PriorityHigh:
		return 0
	case PriorityLow:
		return 2
	}
	return 1
}

// Campaign is a campaign request as published on campaigns.submit.
type Campaign struct {
	ID               string          `json:"id"`
	App              string          `json:"app,omitempty"`
	Kind             Kind            `json:"kind"`
	StartDate        string          `json:"start_date,omitempty"`
	Strategy         *int            `json:"strategy,omitempty"`
	PushMessage      json.RawMessage `json:"push_message,omitempty"`
	Targets          []string        `json:"targets,omitempty"`
	Audience         *Audience       `json:"audience,omitempty"`
	Label            string          `json:"label,omitempty"`
	LabelDescription string          `json:"label_description,omitempty"`
	Action           string          `json:"action,omitempty"`
	Settings         *Settings       `json:"settings,omitempty"`
	Template         *Template       `json:"template,omitempty"`
	Priority         Priority        `json:"priority,omitempty"`
	RateLimit        float64         `json:"rate_limit,omitempty"`
	ExpiresAt        *time.Time      `json:"expires_at,omitempty"`
	SendWindow       *SendWindow     `json:"send_window,omitempty"`
}

// PayloadField is a campaign field that only some kinds read (each kind
// lists its own in KindRules.Fields).
type PayloadField struct {
	Name   string                 // as in the JSON
	Plural bool                   // "targets are …"
	Set    func(c *Campaign) bool // whether the campaign gives it
	// Ignored: given to a kind that does not read it, it is ignored
	// rather than refused (docs/interface.md §4.3).
	Ignored bool
}

// PayloadFields are the fields of a campaign beside the common ones (id,
// app, kind, start_date, strategy, priority, rate_limit, expires_at).
var PayloadFields = []PayloadField{
	{Name: "push_message", Set: func(c *Campaign) bool { return len(c.PushMessage) > 0 }},
	{Name: "targets", Plural: true, Set: func(c *Campaign) bool { return len(c.Targets) > 0 || c.Audience != nil }},
	{Name: "label", Set: func(c *Campaign) bool { return c.Label != "" }},
	{Name: "label_description", Ignored: true, Set: func(c *Campaign) bool { return c.LabelDescription != "" }},
	{Name: "action", Set: func(c *Campaign) bool { return c.Action != "" }},
	{Name: "settings", Set: func(c *Campaign) bool { return c.Settings != nil }},
	{Name: "template", Set: func(c *Campaign) bool { return c.Template != nil }},
}

// Audience names a NATS object store object holding target IDs, one per line.
type Audience struct {
	Bucket string `json:"bucket"`
	Object string `json:"object"`
}

// Settings are per-user push settings (kind user_settings). Nil pointers are
// left unchanged at the provider.
type Settings struct {
	Nickname                 *string `json:"nickname,omitempty"`
	NotificationDisplayStyle *int    `json:"notification_display_style,omitempty"`
	Type                     *string `json:"type,omitempty"`
	IgnoreInterval           *string `json:"ignoreInterval,omitempty"`
	IgnoreDuration           *int64  `json:"ignoreDuration,omitempty"`
	Language                 *string `json:"language,omitempty"`
}

// Template is a push template to create or delete (kind template).
type Template struct {
	Name           string `json:"name"`
	TitlePattern   string `json:"title_pattern,omitempty"`
	ContentPattern string `json:"content_pattern,omitempty"`
	Delete         bool   `json:"delete,omitempty"`
}

// State is a campaign's status value.
type State string

// States of docs/interface.md §5.2.
const (
	StateAccepted        State = "accepted"
	StateRejected        State = "rejected"
	StateDuplicate       State = "duplicate"
	StateScheduled       State = "scheduled"
	StateRunning         State = "running"
	StatePaused          State = "paused"
	StateExpired         State = "expired"
	StateCompleted       State = "completed"
	StatePartiallyFailed State = "partially_failed"
	StateFailed          State = "failed"
	StateCancelled       State = "cancelled"
)

// Final reports whether no further change follows s.
func (s State) Final() bool {
	switch s {
	case StateCompleted, StatePartiallyFailed, StateFailed, StateRejected, StateCancelled, StateExpired:
		return true
	}
	return false
}

// Status is the status JSON of docs/interface.md §5.
type Status struct {
	ID              string       `json:"id"`
	Kind            Kind         `json:"kind,omitempty"`
	Status          State        `json:"status"`
	At              time.Time    `json:"at"`
	StartAt         *time.Time   `json:"start_at,omitempty"`
	TargetsTotal    int64        `json:"targets_total"`
	BatchesTotal    int64        `json:"batches_total"`
	BatchesDone     int64        `json:"batches_done"`
	Sent            int64        `json:"sent"`
	Failed          int64        `json:"failed"`
	Dropped         int64        `json:"dropped,omitempty"`
	Duplicates      int64        `json:"duplicates,omitempty"` // repeated target ids the plan left out (each id is sent once)
	Invalid         int64        `json:"invalid,omitempty"`    // audience lines that are not valid target ids, left out
	Planned         bool         `json:"planned,omitempty"`    // every batch is stored: the totals are final
	ProviderTaskIDs []string     `json:"provider_task_ids"`
	Errors          []FieldError `json:"errors,omitempty"`
	// Throttled lists the app's limits the campaign runs below because the
	// provider refuses calls for rate (another client on the app key, or a
	// plan below the configured limits). Read when asked (GET
	// /api/campaigns/{id}), not stored.
	Throttled []Throttle `json:"throttled,omitempty"`
	// ETA is when a scheduled, running or paused campaign is expected to
	// end (its last call), from the forecast's model at the current queue
	// and limits; absent when nothing can be said (paused).
	ETA *time.Time `json:"eta,omitempty"`
	// NextOpening is, for a local-time campaign (send_window.local_time),
	// the next opening of a zone whose targets wait for their window.
	NextOpening *time.Time `json:"next_opening,omitempty"`
}

// Throttle is one endpoint group an app's campaigns run below the
// configured limit of, for every process.
type Throttle struct {
	Group   string  `json:"group"`
	Rate    float64 `json:"rate"`                // calls/s the group is booked at now
	Limit   float64 `json:"limit"`               // the configured limit
	Refused int     `json:"refused_last_minute"` // the provider's refusals for rate in the last minute
	Note    string  `json:"note"`                // the same, for people
}

// Rejection is published on campaigns.rejected for a message without a valid
// id (docs/interface.md §3.2).
type Rejection struct {
	Status  State        `json:"status"`
	GivenID *string      `json:"given_id,omitempty"`
	Seq     uint64       `json:"seq"`
	Errors  []FieldError `json:"errors"`
}

// Failure is one target the provider refused.
type Failure struct {
	Target string `json:"target"`
	Reason string `json:"reason"`
}

// StoredStates are the states a stored campaign can be in (rejected and
// duplicate are answers, never stored), in the order they are shown.
func StoredStates() []State {
	return []State{StateAccepted, StateScheduled, StateRunning, StatePaused,
		StateCompleted, StatePartiallyFailed, StateFailed, StateExpired, StateCancelled}
}
