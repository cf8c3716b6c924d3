package ratelimit

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// The task queue of one app: provider push tasks (label pushes and
// broadcasts) waiting for the task-window caps, shared by every process.
// Waiting tasks are a sorted set (score: priority, then submission), held
// (paused) ones are kept in place but skipped, and one Lua script pops the
// first eligible task and takes its slot in the same step, so that any
// number of dispatching processes create at most the caps allow, in order,
// and never the same task twice.
//
// Keys, per app (prefix + "tasks:" + app + ":"): created, running (the
// TaskWindow's), waiting (zset member → score), held (set), blocked (the
// time until which nothing is created, µs: after the provider still
// refused), creating (hash member → "taken µs:score": popped, not yet
// confirmed; a process killed there leaves it to Stale).

func (w *TaskWindow) qkey(app, name string) string { return w.prefix + app + ":" + name }

func (w *TaskWindow) qkeys(app string) []string {
	return []string{w.qkey(app, "created"), w.qkey(app, "running"), w.qkey(app, "waiting"),
		w.qkey(app, "held"), w.qkey(app, "blocked"), w.qkey(app, "creating")}
}

// TaskMember is the queue member of a task campaign: its kind and id.
func TaskMember(kind TaskKind, id string) string { return member(kind, id) }

// ParseTaskMember splits a queue member into its kind and id.
func ParseTaskMember(m string) (TaskKind, string) {
	if id, ok := strings.CutPrefix(m, "B:"); ok {
		return TaskBroadcast, id
	}
	return TaskLabel, strings.TrimPrefix(m, "L:")
}

// TaskScore orders waiting tasks: priority rank first (0 high, 1 normal,
// 2 low), then submission time.
func TaskScore(prio int, submitted time.Time) float64 {
	return float64(prio)*1e13 + float64(submitted.UnixMilli())
}

// Enqueue adds a task to the app's waiting queue (again: it keeps its
// place).
func (w *TaskWindow) Enqueue(ctx context.Context, app, member string, score float64) error {
	if err := w.rdb.ZAddNX(ctx, w.qkey(app, "waiting"), redis.Z{Score: score, Member: member}).Err(); err != nil {
		return fmt.Errorf("ratelimit: enqueue task %s: %w", member, err)
	}
	return nil
}

// Remove takes a task out of the queue (cancelled).
func (w *TaskWindow) Remove(ctx context.Context, app, member string) error {
	pipe := w.rdb.TxPipeline()
	pipe.ZRem(ctx, w.qkey(app, "waiting"), member)
	pipe.SRem(ctx, w.qkey(app, "held"), member)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("ratelimit: remove task %s: %w", member, err)
	}
	return nil
}

// Hold keeps a waiting task in its place but lets the ones behind it go
// (paused); Unhold releases it.
func (w *TaskWindow) Hold(ctx context.Context, app, member string, hold bool) error {
	var err error
	if hold {
		err = w.rdb.SAdd(ctx, w.qkey(app, "held"), member).Err()
	} else {
		err = w.rdb.SRem(ctx, w.qkey(app, "held"), member).Err()
	}
	if err != nil {
		return fmt.Errorf("ratelimit: hold task %s: %w", member, err)
	}
	return nil
}

// dispatchScript pops the first waiting task that is not held and takes
// its slots if the caps allow now.
// KEYS[1] created, KEYS[2] running, KEYS[3] waiting, KEYS[4] held,
// KEYS[5] blocked, KEYS[6] creating; ARGV[1] now µs or -1 for Redis TIME,
// ARGV[2] window µs, ARGV[3] maxCreated, ARGV[4] maxRunning, ARGV[5] label
// hold µs, ARGV[6] broadcast hold µs, ARGV[7] the keys' ttl ms.
// Returns {1, member, expiry µs}, {0, wait µs} (the caps or a block free
// in wait), or {0, -1} (nothing to create).
var dispatchScript = redis.NewScript(luaNow + luaCapsWait + `
local now = nowUs(ARGV[1])
local window = tonumber(ARGV[2])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - window)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', now)
local blocked = tonumber(redis.call('GET', KEYS[5]) or '0')
if blocked > now then return {0, blocked - now} end
local pick, score
local cands = redis.call('ZRANGE', KEYS[3], 0, 255, 'WITHSCORES')
for i = 1, #cands, 2 do
  if redis.call('SISMEMBER', KEYS[4], cands[i]) == 0 then pick, score = cands[i], cands[i + 1]; break end
end
if not pick then return {0, -1} end
local wait = capsWait(KEYS[1], KEYS[2], tonumber(ARGV[3]), tonumber(ARGV[4]), now, window)
if wait > 0 then return {0, wait} end
local hold = tonumber(ARGV[5])
if string.sub(pick, 1, 2) == 'B:' then hold = tonumber(ARGV[6]) end
local expiry = now + hold
redis.call('ZADD', KEYS[1], now, pick)
redis.call('ZADD', KEYS[2], expiry, pick)
redis.call('ZREM', KEYS[3], pick)
redis.call('HSET', KEYS[6], pick, string.format('%.0f:%s', now, score))
for i = 1, 2 do redis.call('PEXPIRE', KEYS[i], ARGV[7]) end
return {1, pick, expiry}
`)

// Dispatch pops the next task the caps allow now, with its slots taken:
// member is "" when none may be created yet, and wait tells when the caps
// (or a block) free next (-1: nothing waits).
func (w *TaskWindow) Dispatch(ctx context.Context, app string) (member string, wait time.Duration, err error) {
	ttl := (2*w.cfg.Window + w.cfg.TaskDuration + time.Minute).Milliseconds()
	res, err := dispatchScript.Run(ctx, w.rdb, w.qkeys(app), w.nowArg(), (w.cfg.Window + w.cfg.Guard).Microseconds(),
		w.cfg.MaxCreated, w.cfg.MaxRunning, (w.cfg.TaskDuration + w.cfg.Guard).Microseconds(),
		(w.cfg.Window + w.cfg.Guard).Microseconds(), ttl).Slice()
	if err != nil {
		return "", 0, fmt.Errorf("ratelimit: dispatch tasks of %s: %w", app, err)
	}
	if len(res) < 2 {
		return "", 0, fmt.Errorf("ratelimit: dispatch tasks of %s: unexpected answer %v", app, res)
	}
	if ok, _ := res[0].(int64); ok == 1 {
		m, _ := res[1].(string)
		return m, 0, nil
	}
	us, _ := res[1].(int64)
	if us < 0 {
		return "", -1, nil
	}
	return "", time.Duration(us) * time.Microsecond, nil
}

func (w *TaskWindow) nowArg() int64 {
	if w.test == nil {
		return -1
	}
	return w.test.Now().UnixMicro()
}

// confirmScript: the provider created the task: its creation is counted
// from now (after the answer, so never before the provider's own stamp,
// however long the call waited for its calls-per-second slot) and it holds
// its running slot from now.
// KEYS[1] created, KEYS[2] running, KEYS[3] creating; ARGV[1] now µs or
// -1 for Redis TIME, ARGV[2] member, ARGV[3] hold µs.
// Returns 1.
var confirmScript = redis.NewScript(luaNow + `
local now = nowUs(ARGV[1])
redis.call('HDEL', KEYS[3], ARGV[2])
if redis.call('ZSCORE', KEYS[1], ARGV[2]) then redis.call('ZADD', KEYS[1], 'XX', now, ARGV[2]) end
if redis.call('ZSCORE', KEYS[2], ARGV[2]) then redis.call('ZADD', KEYS[2], 'XX', now + tonumber(ARGV[3]), ARGV[2]) end
return 1
`)

// Confirm ends a popped task's creating state: the provider accepted it.
func (w *TaskWindow) Confirm(ctx context.Context, app, member string) error {
	hold := w.cfg.TaskDuration + w.cfg.Guard
	if k, _ := ParseTaskMember(member); k == TaskBroadcast {
		hold = w.cfg.Window + w.cfg.Guard
	}
	k := w.qkeys(app)
	if err := confirmScript.Run(ctx, w.rdb, []string{k[0], k[1], k[5]}, w.nowArg(), member, hold.Microseconds()).Err(); err != nil {
		return fmt.Errorf("ratelimit: confirm task %s: %w", member, err)
	}
	return nil
}

// undoScript: a popped task the provider did not create gives its slots
// back and, with requeue, goes back to its place in the queue.
// KEYS[1] created, KEYS[2] running, KEYS[3] waiting, KEYS[4] creating;
// ARGV[1] member, ARGV[2] requeue (0|1).
// Returns 1.
var undoScript = redis.NewScript(`
local v = redis.call('HGET', KEYS[4], ARGV[1])
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('HDEL', KEYS[4], ARGV[1])
if ARGV[2] == '1' and v then
  local score = string.match(v, ':(.*)$')
  redis.call('ZADD', KEYS[3], 'NX', tonumber(score), ARGV[1])
end
return 1
`)

// Undo gives a popped task's slots back (the provider did not create it)
// and, when requeue is set, puts it back in its place in the queue.
func (w *TaskWindow) Undo(ctx context.Context, app, member string, requeue bool) error {
	rq := "0"
	if requeue {
		rq = "1"
	}
	k := w.qkeys(app)
	if err := undoScript.Run(ctx, w.rdb, []string{k[0], k[1], k[2], k[5]}, member, rq).Err(); err != nil {
		return fmt.Errorf("ratelimit: undo task %s: %w", member, err)
	}
	return nil
}

// Block holds every process's creations for the app for d (the provider
// refused a task although the caps allowed it: another client on the key,
// or its own clock).
func (w *TaskWindow) Block(ctx context.Context, app string, d time.Duration) error {
	until := w.now().Add(d)
	if err := w.rdb.Set(ctx, w.qkey(app, "blocked"), until.UnixMicro(), d+time.Minute).Err(); err != nil {
		return fmt.Errorf("ratelimit: block tasks of %s: %w", app, err)
	}
	return nil
}

// Stale returns the tasks popped longer than older ago and never
// confirmed or undone (their process died while creating them), and
// forgets them.
func (w *TaskWindow) Stale(ctx context.Context, app string, older time.Duration) ([]string, error) {
	all, err := w.rdb.HGetAll(ctx, w.qkey(app, "creating")).Result()
	if err != nil {
		return nil, fmt.Errorf("ratelimit: creating tasks of %s: %w", app, err)
	}
	now := w.now()
	var out []string
	for m, v := range all {
		at, _, _ := strings.Cut(v, ":")
		us, _ := strconv.ParseInt(at, 10, 64)
		if now.Sub(time.UnixMicro(us)) < older {
			continue
		}
		n, err := w.rdb.HDel(ctx, w.qkey(app, "creating"), m).Result()
		if err == nil && n == 1 { // one process reports it
			out = append(out, m)
		}
	}
	sort.Strings(out)
	return out, nil
}

// TaskState is a snapshot of an app's task caps and queue.
type TaskState struct {
	Now     time.Time
	Created []time.Time // creations still in the window
	Running []time.Time // when each counted task frees its running slot
	Waiting []string    // in order
	Scores  []float64   // Waiting's scores (TaskScore)
	Held    map[string]bool
	Blocked time.Time
}

// State reads an app's task caps and queue in one round trip.
func (w *TaskWindow) State(ctx context.Context, app string) (TaskState, error) {
	k := w.qkeys(app)
	pipe := w.rdb.Pipeline()
	tm := pipe.Time(ctx)
	created := pipe.ZRangeWithScores(ctx, k[0], 0, -1)
	running := pipe.ZRangeWithScores(ctx, k[1], 0, -1)
	waiting := pipe.ZRangeWithScores(ctx, k[2], 0, -1)
	held := pipe.SMembers(ctx, k[3])
	blocked := pipe.Get(ctx, k[4])
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return TaskState{}, fmt.Errorf("ratelimit: task state of %s: %w", app, err)
	}
	st := TaskState{Now: tm.Val(), Held: map[string]bool{}}
	for _, z := range waiting.Val() {
		st.Waiting = append(st.Waiting, fmt.Sprint(z.Member))
		st.Scores = append(st.Scores, z.Score)
	}
	if w.test != nil {
		st.Now = w.test.Now()
	}
	win := w.cfg.Window + w.cfg.Guard
	for _, z := range created.Val() {
		if t := time.UnixMicro(int64(z.Score)); st.Now.Sub(t) < win {
			st.Created = append(st.Created, t)
		}
	}
	for _, z := range running.Val() {
		if t := time.UnixMicro(int64(z.Score)); t.After(st.Now) {
			st.Running = append(st.Running, t)
		}
	}
	for _, m := range held.Val() {
		st.Held[m] = true
	}
	if us, err := strconv.ParseInt(blocked.Val(), 10, 64); err == nil {
		st.Blocked = time.UnixMicro(us)
	}
	return st, nil
}

// Estimate tells when each waiting task that is not held will be created
// if nothing changes: the caps applied in queue order.
func (w *TaskWindow) Estimate(st TaskState) map[string]time.Time {
	created := append([]time.Time(nil), st.Created...)
	running := append([]time.Time(nil), st.Running...)
	win := w.cfg.Window + w.cfg.Guard
	out := map[string]time.Time{}
	t := st.Now
	if st.Blocked.After(t) {
		t = st.Blocked
	}
	for _, m := range st.Waiting {
		if st.Held[m] {
			continue
		}
		for {
			var inWin, run []time.Time
			for _, c := range created {
				if t.Sub(c) < win {
					inWin = append(inWin, c)
				}
			}
			for _, r := range running {
				if r.After(t) {
					run = append(run, r)
				}
			}
			next := t
			if len(inWin) >= w.cfg.MaxCreated {
				sort.Slice(inWin, func(i, j int) bool { return inWin[i].Before(inWin[j]) })
				next = maxTime(next, inWin[len(inWin)-w.cfg.MaxCreated].Add(win))
			}
			if len(run) >= w.cfg.MaxRunning {
				sort.Slice(run, func(i, j int) bool { return run[i].Before(run[j]) })
				next = maxTime(next, run[len(run)-w.cfg.MaxRunning])
			}
			if !next.After(t) {
				break
			}
			t = next
		}
		out[m] = t
		created = append(created, t)
		hold := w.cfg.TaskDuration + w.cfg.Guard
		if k, _ := ParseTaskMember(m); k == TaskBroadcast {
			hold = win
		}
		running = append(running, t.Add(hold))
	}
	return out
}

// EstimateNew tells when a task not yet queued would be created if it
// were queued now with score (TaskScore): after every waiting task of a
// better or equal score, as Enqueue would place it.
func (w *TaskWindow) EstimateNew(st TaskState, member string, score float64) time.Time {
	i := sort.Search(len(st.Scores), func(i int) bool { return st.Scores[i] > score })
	if len(st.Scores) != len(st.Waiting) { // a state made without scores: last
		i = len(st.Waiting)
	}
	st.Waiting = append(append(append([]string(nil), st.Waiting[:i]...), member), st.Waiting[i:]...)
	return w.Estimate(st)[member]
}

func maxTime(a, b time.Time) time.Time {
	if b.After(a) {
		return b
	}
	return a
}

// Config returns the caps.
func (w *TaskWindow) Config() TaskWindowConfig { return w.cfg }
