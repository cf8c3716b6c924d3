package scheduler

import (
	"context"
	"encoding/json"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/clock"
	"google.golang.org/protobuf/encoding/protowire"
)

// The asynq web UI's "Schedulers" tab lists the entries asynq's own
// Scheduler writes to Redis. campaignd's cron runs beside asynq (its
// fire-once guarantee comes from the idempotent submit), so it writes the
// same records for its schedules: every process rewrites one shared entry
// list (scheduler id "campaignd", so the entries show once however many
// processes run) every uiRefresh, living uiTTL, and records each tick it
// submits in the entry's enqueue history. The records are asynq's
// protobuf messages (asynq internal/proto: SchedulerEntry,
// SchedulerEnqueueEvent), written field by field.
//
// Two clocks meet here. The entries' next and previous runs and the ticks'
// times are the Scheduler's own (Options.Clock), but the entry list's
// expiry is compared by asynq's Inspector with the wall clock of the
// process that reads it, so it is written with the wall clock (clock.Real),
// whatever clock drives the cron.

const (
	uiSchedulerID = "campaignd"
	uiRefresh     = 5 * time.Second
	uiTTL         = 3 * uiRefresh
	uiHistoryMax  = 1000 // asynq keeps as many enqueue events per entry
)

func uiEntriesKey() string          { return "asynq:schedulers:{" + uiSchedulerID + "}" }
func uiHistoryKey(id string) string { return "asynq:scheduler_history:" + id }
func uiEntryID(name string) string  { return "campaignd-cron-" + name }

// uiTaskType is what the UI shows as the entry's task type.
const uiTaskType = "campaign (cron)"

// writeEntriesScript replaces the entry list (as asynq does).
// KEYS[1] the entry list; ARGV[1] its TTL in seconds, ARGV[2..] encoded
// entries.
// Returns 1.
var writeEntriesScript = redis.NewScript(`
redis.call('DEL', KEYS[1])
for i = 2, #ARGV do redis.call('LPUSH', KEYS[1], ARGV[i]) end
redis.call('EXPIRE', KEYS[1], ARGV[1])
return 1
`)

// recordEventScript adds an enqueue event to an entry's history and trims
// it to the newest events.
// KEYS[1] an entry's history; ARGV[1] enqueue time (unix s), ARGV[2] the
// encoded event, ARGV[3] most events kept.
// Returns 1.
var recordEventScript = redis.NewScript(`
redis.call('ZADD', KEYS[1], ARGV[1], ARGV[2])
redis.call('ZREMRANGEBYRANK', KEYS[1], 0, -tonumber(ARGV[3]) - 1)
return 1
`)

// publishUI writes the entries for the asynq UI.
func (s *Scheduler) publishUI(ctx context.Context) error {
	if s.opts.Redis == nil {
		return nil
	}
	infos := s.Schedules(1)
	if len(infos) == 0 {
		return nil
	}
	args := []any{int(uiTTL.Seconds())}
	s.mu.Lock()
	templates := make(map[string][]byte, len(s.entries))
	for _, e := range s.entries {
		templates[e.Name], _ = json.Marshal(e.Campaign)
	}
	s.mu.Unlock()
	for _, in := range infos {
		payload := templates[in.Name]
		spec := in.Spec
		if in.Zone != "" && in.Zone != "UTC" {
			spec = "CRON_TZ=" + in.Zone + " " + spec
		}
		var next time.Time
		if len(in.Next) > 0 {
			next = in.Next[0]
		}
		args = append(args, encodeEntry(uiEntryID(in.Name), spec, uiTaskType, payload,
			[]string{"TaskID(" + TickID(in.Name, next) + ")"}, next, in.Last))
	}
	exp := clock.Real{}.Now().Add(uiTTL) // read by asynq against the wall clock
	if err := s.opts.Redis.ZAdd(ctx, "asynq:schedulers", redis.Z{Score: float64(exp.Unix()), Member: uiEntriesKey()}).Err(); err != nil {
		return fmt.Errorf("scheduler: publish to the asynq UI: %w", err)
	}
	if err := writeEntriesScript.Run(ctx, s.opts.Redis, []string{uiEntriesKey()}, args...).Err(); err != nil {
		return fmt.Errorf("scheduler: publish to the asynq UI: %w", err)
	}
	return nil
}

// recordUI adds a submitted tick to its entry's history in the asynq UI.
func (s *Scheduler) recordUI(ctx context.Context, name, id string, at time.Time) error {
	if s.opts.Redis == nil {
		return nil
	}
	ev := encodeEvent(id, at)
	if err := recordEventScript.Run(ctx, s.opts.Redis, []string{uiHistoryKey(uiEntryID(name))}, at.Unix(), ev, uiHistoryMax).Err(); err != nil {
		return fmt.Errorf("scheduler: record tick %s for the asynq UI: %w", id, err)
	}
	return nil
}

// encodeEntry encodes asynq's SchedulerEntry: id=1, spec=2, task_type=3,
// task_payload=4, enqueue_options=5 (repeated), next_enqueue_time=6,
// prev_enqueue_time=7 (google.protobuf.Timestamp: seconds=1, nanos=2).
func encodeEntry(id, spec, taskType string, payload []byte, opts []string, next, prev time.Time) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, id)
	b = protowire.AppendTag(b, 2, protowire.BytesType)
	b = protowire.AppendString(b, spec)
	b = protowire.AppendTag(b, 3, protowire.BytesType)
	b = protowire.AppendString(b, taskType)
	b = protowire.AppendTag(b, 4, protowire.BytesType)
	b = protowire.AppendBytes(b, payload)
	for _, o := range opts {
		b = protowire.AppendTag(b, 5, protowire.BytesType)
		b = protowire.AppendString(b, o)
	}
	b = appendTimestamp(b, 6, next)
	b = appendTimestamp(b, 7, prev)
	return b
}

// encodeEvent encodes asynq's SchedulerEnqueueEvent: task_id=1,
// enqueue_time=2.
func encodeEvent(taskID string, at time.Time) []byte {
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.BytesType)
	b = protowire.AppendString(b, taskID)
	return appendTimestamp(b, 2, at)
}

func appendTimestamp(b []byte, field protowire.Number, t time.Time) []byte {
	if t.IsZero() {
		return b
	}
	var ts []byte
	ts = protowire.AppendTag(ts, 1, protowire.VarintType)
	ts = protowire.AppendVarint(ts, uint64(t.Unix()))
	if n := t.Nanosecond(); n != 0 {
		ts = protowire.AppendTag(ts, 2, protowire.VarintType)
		ts = protowire.AppendVarint(ts, uint64(n))
	}
	b = protowire.AppendTag(b, field, protowire.BytesType)
	return protowire.AppendBytes(b, ts)
}
