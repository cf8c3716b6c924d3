package ratelimit

import (
	"cmp"
	"context"
	"fmt"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/internal/clock"
)

// TaskKind tells how a provider push task holds its slots.
type TaskKind int

const (
	// TaskLabel (push/list/label) counts from creation until its execution
	// ends (start + TaskDuration), or until released.
	TaskLabel TaskKind = iota
	// TaskBroadcast (push/task) counts from creation until its window is
	// over, even before it starts; it cannot be released early.
	TaskBroadcast
)

// TaskWindowConfig are the provider's task caps.
type TaskWindowConfig struct {
	MaxCreated   int           // creations in any sliding Window
	Window       time.Duration // 5m at the provider
	MaxRunning   int           // tasks counted at once
	TaskDuration time.Duration // how long a label task runs
	Guard        time.Duration // extra hold against clock differences and transit; default 50ms
}

// TaskWindow enforces the task caps for every process sharing the Redis,
// with sorted sets updated atomically by Lua on Redis TIME.
type TaskWindow struct {
	rdb    redis.UniversalClient
	cfg    TaskWindowConfig
	prefix string
	test   clock.Clock // the limiter's test clock, nil in production (Redis TIME)
	wall   clock.Clock
}

// NewTaskWindow returns the caps of cfg on rdb; l supplies the key prefix
// and the test clock.
func (l *Limiter) NewTaskWindow(cfg TaskWindowConfig) *TaskWindow {
	cfg.Guard = cmp.Or(cfg.Guard, 50*time.Millisecond)
	if cfg.Guard < 0 {
		panic(fmt.Sprintf("ratelimit: TaskWindowConfig.Guard out of range: %s", cfg.Guard))
	}
	return &TaskWindow{rdb: l.rdb, cfg: cfg, prefix: l.opts.Prefix + "tasks:", test: l.opts.Clock, wall: l.wall}
}

// now is the test clock's time, or the wall clock's in production.
func (w *TaskWindow) now() time.Time {
	if w.test != nil {
		return w.test.Now()
	}
	return w.wall.Now()
}

// Lease is a granted task slot.
type Lease struct {
	ID      string
	Kind    TaskKind
	Expires time.Time // when the slot frees by itself (Redis clock)
}

// luaCapsWait defines capsWait(created, running, maxCreated, maxRunning,
// now, window): how long (µs) until the caps allow one more task, 0 when
// they allow it now. created is the creations' sorted set (score: when),
// running the running slots' (score: when the slot frees); now and window
// in µs. Shared by the acquire and dispatch scripts.
const luaCapsWait = `
local function capsWait(created, running, maxCreated, maxRunning, now, window)
  local wait = 0
  if redis.call('ZCARD', created) >= maxCreated then
    local oldest = redis.call('ZRANGE', created, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(oldest[2]) + window - now)
  end
  if redis.call('ZCARD', running) >= maxRunning then
    local first = redis.call('ZRANGE', running, 0, 0, 'WITHSCORES')
    wait = math.max(wait, tonumber(first[2]) - now)
  end
  return wait
end
`

// acquireScript takes a task's creation and running slots if the caps
// allow (idempotent per member).
// KEYS[1] created, KEYS[2] running; ARGV[1] now µs or -1 for Redis TIME,
// ARGV[2] window µs, ARGV[3] maxCreated, ARGV[4] maxRunning, ARGV[5]
// member, ARGV[6] hold µs (from now), ARGV[7] the keys' ttl ms.
// Returns {1, expiry µs} (taken, or held already) or {0, wait µs}.
var acquireScript = redis.NewScript(luaNow + luaCapsWait + `
local now = nowUs(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local held = redis.call('ZSCORE', KEYS[2], ARGV[5])
if held then return {1, tonumber(held)} end
if redis.call('ZSCORE', KEYS[1], ARGV[5]) then return {1, now} end
local wait = capsWait(KEYS[1], KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now, window)
if wait > 0 then return {0, wait} end
local expiry = now + tonumber(ARGV[6])
redis.call('ZADD', KEYS[1], now, ARGV[5])
redis.call('ZADD', KEYS[2], expiry, ARGV[5])
redis.call('PEXPIRE', KEYS[1], ARGV[7])
redis.call('PEXPIRE', KEYS[2], ARGV[7])
return {1, expiry}
`)

func (w *TaskWindow) keys(app string) []string {
	return []string{w.prefix + app + ":created", w.prefix + app + ":running"}
}

func member(kind TaskKind, id string) string {
	if kind == TaskBroadcast {
		return "B:" + id
	}
	return "L:" + id
}

// Acquire takes a task slot for leaseID (idempotent: the same id gets the
// same slot back), or returns *RateLimited with the exact time until the
// caps allow one. startIn is how long after creation the task starts (its
// startDate); a label task holds its running slot until startIn +
// TaskDuration, a broadcast for the whole window.
func (w *TaskWindow) Acquire(ctx context.Context, app string, kind TaskKind, leaseID string, startIn time.Duration) (Lease, error) {
	hold := w.cfg.Window + w.cfg.Guard
	if kind == TaskLabel {
		hold = max(startIn, 0) + w.cfg.TaskDuration + w.cfg.Guard
	}
	now := int64(-1)
	if w.test != nil {
		now = w.test.Now().UnixMicro()
	}
	ttl := (w.cfg.Window + hold + time.Minute).Milliseconds()
	res, err := acquireScript.Run(ctx, w.rdb, w.keys(app), now, (w.cfg.Window + w.cfg.Guard).Microseconds(),
		w.cfg.MaxCreated, w.cfg.MaxRunning, member(kind, leaseID), hold.Microseconds(), ttl).Int64Slice()
	if err != nil {
		return Lease{}, fmt.Errorf("ratelimit: task slot for %s: %w", app, err)
	}
	if res[0] == 0 {
		return Lease{}, &RateLimited{Key: "tasks:" + app, RetryIn: time.Duration(res[1]) * time.Microsecond}
	}
	return Lease{ID: leaseID, Kind: kind, Expires: time.UnixMicro(res[1])}, nil
}

// Release frees a label task's running slot when it ended early. A
// broadcast keeps its slot for the whole window; its creation always counts.
func (w *TaskWindow) Release(ctx context.Context, app string, l Lease) error {
	if l.Kind == TaskBroadcast {
		return nil
	}
	if err := w.rdb.ZRem(ctx, w.keys(app)[1], member(l.Kind, l.ID)).Err(); err != nil {
		return fmt.Errorf("ratelimit: release task slot %s: %w", l.ID, err)
	}
	return nil
}
