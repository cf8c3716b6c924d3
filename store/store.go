// Package store keeps campaigns in Redis: the campaign as submitted, its
// status counters, its planned batches of targets, which batches are done,
// and the targets the provider refused. Every change that must not happen
// twice (create, recording a batch, a state change) is one Lua script, so
// any number of campaignd processes can share it.
//
// Keys, for campaign ID (prefix "campaignd:"):
//
//	c:{ID}           hash: campaign JSON, kind, app, state, times, counters
//	c:{ID}:batches   hash: batch number → targets, newline-joined
//	c:{ID}:done      bitmap: bit n set once batch n is recorded
//	c:{ID}:failures  list: JSON {target, reason}
//	c:{ID}:later     sorted set: a local-time campaign's batches waiting
//	                 for their zone's window, by opening (later.go)
//	c:{ID}:advanced  bitmap: a local-time campaign's batch tasks that let
//	                 their successor go (later.go)
//	c:{ID}:zones     hash: a local-time campaign's targets by zone,
//	                 planned and recorded (later.go)
//	idx, idx:{state}, idx:expiry
//	                 sorted sets: the campaign index (see index.go)
package store

import (
	"cmp"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/groupcommit"
	"github.com/campaignd/campaignd/internal/optcheck"
)

// ErrNotFound is returned for an unknown campaign id.
var ErrNotFound = errors.New("campaign not found")

// Options tune a Store.
type Options struct {
	Prefix      string        // default "campaignd:"
	BatchTTL    time.Duration // keep a finished campaign's batches this long (default 1h)
	FinishedTTL time.Duration // keep a finished campaign's status and failures (default 7 days)
	Clock       clock.Clock
}

// Store is safe for concurrent use.
type Store struct {
	rdb  redis.UniversalClient
	opts Options
	rec  *groupcommit.Committer // RecordBatch's script, group-committed
}

// WithDefaults returns a copy of o with every zero field set to its
// default (see each field).
func (o Options) WithDefaults() Options {
	o.Prefix = cmp.Or(o.Prefix, "campaignd:")
	o.BatchTTL = cmp.Or(o.BatchTTL, time.Hour)
	o.FinishedTTL = cmp.Or(o.FinishedTTL, 7*24*time.Hour)
	if o.Clock == nil {
		o.Clock = clock.Real{}
	}
	return o
}

// validate reports the fields out of range; it changes nothing.
func (o Options) validate() error {
	c := optcheck.New("store: Options")
	c.Positive(o, "BatchTTL", "FinishedTTL")
	return c.Err()
}

// New returns a store on rdb. Options out of range are a caller's bug: New
// panics on them, naming the field.
func New(rdb redis.UniversalClient, opts Options) *Store {
	opts = opts.WithDefaults()
	if err := opts.validate(); err != nil {
		panic(err)
	}
	return &Store{rdb: rdb, opts: opts, rec: groupcommit.New(rdb, recordScript, groupcommit.Options{})}
}

func (s *Store) key(id string) string           { return s.opts.Prefix + "c:" + id }
func (s *Store) batches(id string) string       { return s.key(id) + ":batches" }
func (s *Store) done(id string) string          { return s.key(id) + ":done" }
func (s *Store) failures(id string) string      { return s.key(id) + ":failures" }
func (s *Store) finishedTasks(id string) string { return s.key(id) + ":groups" }

func (s *Store) now() string { return s.opts.Clock.Now().UTC().Format(time.RFC3339Nano) }

// createScript stores a new campaign hash and indexes it.
// KEYS[1] hash, KEYS[2] idx; ARGV[1] state, ARGV[2] submission (unix ms,
// the index score), ARGV[3..] field/value pairs.
// Returns 1 when created, 0 when the id exists (nothing changes).
var createScript = redis.NewScript(luaIndex + `
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
redis.call('HSET', KEYS[1], unpack(ARGV, 3))
redis.call('ZADD', KEYS[2], ARGV[2], string.sub(KEYS[1], #KEYS[2]))
indexMove(KEYS[2], KEYS[1], false, ARGV[1])
return 1
`)

// Create stores a new campaign in state accepted. An existing id is left
// as it is: created is false and st is its current status.
func (s *Store) Create(ctx context.Context, c *campaigns.Campaign, startAt time.Time) (bool, campaigns.Status, error) {
	raw, err := json.Marshal(c)
	if err != nil {
		return false, campaigns.Status{}, fmt.Errorf("store: encode campaign %s: %w", c.ID, err)
	}
	at := s.opts.Clock.Now()
	now := at.UTC().Format(time.RFC3339Nano)
	args := []any{string(campaigns.StateAccepted), at.UnixMilli(),
		"campaign", raw, "kind", string(c.Kind), "app", c.App, "state", string(campaigns.StateAccepted),
		"at", now, "created_at", now, "start_at", startAt.UTC().Format(time.RFC3339Nano),
		"targets_total", len(c.Targets), "batches_total", 0, "batches_done", 0,
		"sent", 0, "failed", 0, "dropped", 0, "planned", 0}
	n, err := createScript.Run(ctx, s.rdb, []string{s.key(c.ID), s.idx()}, args...).Int()
	if err != nil {
		return false, campaigns.Status{}, fmt.Errorf("store: create %s: %w", c.ID, err)
	}
	st, _, err := s.Lookup(ctx, c.ID)
	if err != nil {
		return false, campaigns.Status{}, err
	}
	return n == 1, st, nil
}

// Campaign returns the campaign as submitted.
func (s *Store) Campaign(ctx context.Context, id string) (*campaigns.Campaign, error) {
	raw, err := s.rdb.HGet(ctx, s.key(id), "campaign").Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: campaign %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("store: campaign %s: %w", id, err)
	}
	var c campaigns.Campaign
	if err := json.Unmarshal(raw, &c); err != nil {
		return nil, fmt.Errorf("store: decode campaign %s: %w", id, err)
	}
	return &c, nil
}

// State returns a campaign's state alone (one HGET: the limiter's check at
// each call's slot).
func (s *Store) State(ctx context.Context, id string) (campaigns.State, error) {
	v, err := s.rdb.HGet(ctx, s.key(id), "state").Result()
	if errors.Is(err, redis.Nil) {
		return "", fmt.Errorf("store: %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return "", fmt.Errorf("store: state %s: %w", id, err)
	}
	return campaigns.State(v), nil
}

// CreatedAt returns when a campaign was stored (its submission).
func (s *Store) CreatedAt(ctx context.Context, id string) (time.Time, error) {
	v, err := s.rdb.HGet(ctx, s.key(id), "created_at").Result()
	if errors.Is(err, redis.Nil) {
		return time.Time{}, fmt.Errorf("store: %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return time.Time{}, fmt.Errorf("store: created_at %s: %w", id, err)
	}
	t, err := time.Parse(time.RFC3339Nano, v)
	if err != nil {
		return time.Time{}, fmt.Errorf("store: created_at %s: %w", id, err)
	}
	return t, nil
}

// Planned reports whether the campaign's batches are written.
func (s *Store) Planned(ctx context.Context, id string) (bool, error) {
	v, err := s.rdb.HGet(ctx, s.key(id), "planned").Result()
	if errors.Is(err, redis.Nil) {
		return false, fmt.Errorf("store: %s: %w", id, ErrNotFound)
	}
	if err != nil {
		return false, fmt.Errorf("store: planned %s: %w", id, err)
	}
	return v == "1", nil
}

// The campaign hash's fields a status is read from, by their place in
// statusFields.
const (
	fKind = iota
	fState
	fAt
	fStartAt
	fTargetsTotal
	fBatchesTotal
	fBatchesDone
	fSent
	fFailed
	fDropped
	fTaskIDs
	fErrors
	fDuplicates
	fInvalid
	fPlanned
	fNextOpening
	nStatusFields
)

// statusFields are the campaign hash's fields a status is read from
// (HMGET), each at its f* place; the Lua scripts get the same list
// (luaStatusFields).
var statusFields = func() []string {
	f := [nStatusFields]string{
		fKind: "kind", fState: "state", fAt: "at", fStartAt: "start_at",
		fTargetsTotal: "targets_total", fBatchesTotal: "batches_total", fBatchesDone: "batches_done",
		fSent: "sent", fFailed: "failed", fDropped: "dropped", fTaskIDs: "task_ids", fErrors: "errors",
		fDuplicates: "duplicates", fInvalid: "invalid", fPlanned: "planned",
		fNextOpening: "next_opening",
	}
	return f[:]
}()

// luaStatusFields defines the local fields, statusFields for a script's
// HMGET(KEYS[1], unpack(fields)).
var luaStatusFields = func() string {
	q := make([]string, len(statusFields))
	for i, f := range statusFields {
		q[i] = "'" + f + "'"
	}
	return "local fields = {" + strings.Join(q, ", ") + "}\n"
}()

// Lookup returns the status of a campaign; found is false for an unknown id.
func (s *Store) Lookup(ctx context.Context, id string) (campaigns.Status, bool, error) {
	vals, err := s.rdb.HMGet(ctx, s.key(id), statusFields...).Result()
	if err != nil {
		return campaigns.Status{}, false, fmt.Errorf("store: status %s: %w", id, err)
	}
	st, found := parseStatus(id, vals)
	return st, found, nil
}

func parseStatus(id string, vals []any) (campaigns.Status, bool) {
	if len(vals) < nStatusFields || vals[fState] == nil {
		return campaigns.Status{}, false
	}
	str := func(i int) string {
		switch v := vals[i].(type) {
		case string:
			return v
		case int64:
			return strconv.FormatInt(v, 10)
		}
		return ""
	}
	num := func(i int) int64 {
		n, _ := strconv.ParseInt(str(i), 10, 64)
		return n
	}
	st := campaigns.Status{
		ID: id, Kind: campaigns.Kind(str(fKind)), Status: campaigns.State(str(fState)),
		TargetsTotal: num(fTargetsTotal), BatchesTotal: num(fBatchesTotal), BatchesDone: num(fBatchesDone),
		Sent: num(fSent), Failed: num(fFailed), Dropped: num(fDropped), ProviderTaskIDs: []string{},
		Duplicates: num(fDuplicates), Invalid: num(fInvalid), Planned: str(fPlanned) == "1",
	}
	if t, err := time.Parse(time.RFC3339Nano, str(fAt)); err == nil {
		st.At = t
	}
	if t, err := time.Parse(time.RFC3339Nano, str(fStartAt)); err == nil {
		st.StartAt = &t
	}
	if ms := num(fNextOpening); ms > 0 && !st.Status.Final() { // a final campaign waits for nothing
		t := time.UnixMilli(ms).UTC()
		st.NextOpening = &t
	}
	if v := str(fTaskIDs); v != "" {
		_ = json.Unmarshal([]byte(v), &st.ProviderTaskIDs)
	}
	if v := str(fErrors); v != "" {
		_ = json.Unmarshal([]byte(v), &st.Errors)
	}
	return st, true
}

// BatchRange is what a batch task needs about consecutive batches
// first..first+len(Batches)-1 of a campaign, read in one round trip.
type BatchRange struct {
	Status campaigns.Status
	// Planned: every batch is stored and Status has the final totals. Until
	// then a missing batch may still come.
	Planned bool
	Batches []BatchSlot
	// Storage holds every batch's Targets (BatchInfosInto's buffer, or a
	// new one), for the caller to recycle once done with them.
	Storage []string
}

// BatchSlot is one batch of a BatchRange. Missing means the batch is not
// stored (past the last batch, or cleaned up after the campaign ended).
type BatchSlot struct {
	Done    bool
	Missing bool
	Targets []string
	Zone    string // a local-time batch's zone (AppendZoneLine); "" for others
}

// BatchInfos reads a campaign's status and, for batches first..first+count-1,
// whether each is recorded and its targets, in one round trip.
func (s *Store) BatchInfos(ctx context.Context, id string, first, count int) (BatchRange, error) {
	return s.BatchInfosInto(ctx, id, first, count, nil)
}

// BatchInfosInto is BatchInfos with the targets of every batch put in
// buf's storage (buf[:0]) when it has room: a caller reading many ranges
// recycles one buffer (BatchRange.Storage) instead of a slice per batch.
func (s *Store) BatchInfosInto(ctx context.Context, id string, first, count int, buf []string) (BatchRange, error) {
	pipe := s.rdb.Pipeline()
	hm := pipe.HMGet(ctx, s.key(id), statusFields...)
	planned := pipe.HGet(ctx, s.key(id), "planned")
	fields := make([]string, count)
	bits := make([]*redis.IntCmd, count)
	for i := range count {
		fields[i] = strconv.Itoa(first + i)
		bits[i] = pipe.GetBit(ctx, s.done(id), int64(first+i))
	}
	batches := pipe.HMGet(ctx, s.batches(id), fields...)
	if _, err := pipe.Exec(ctx); err != nil && !errors.Is(err, redis.Nil) {
		return BatchRange{}, fmt.Errorf("store: batches %d..%d of %s: %w", first, first+count-1, id, err)
	}
	st, found := parseStatus(id, hm.Val())
	if !found {
		return BatchRange{}, fmt.Errorf("store: %s: %w", id, ErrNotFound)
	}
	out := BatchRange{Status: st, Planned: planned.Val() == "1", Batches: make([]BatchSlot, count)}
	vals := batches.Val()
	total := 0
	for _, v := range vals {
		if v, ok := v.(string); ok && v != "" {
			total += strings.Count(v, "\n") + 1
		}
	}
	all := buf[:0]
	if cap(all) < total {
		all = make([]string, 0, total)
	}
	for i := range count {
		b := &out.Batches[i]
		b.Done = bits[i].Val() == 1
		if i < len(vals) {
			if v, ok := vals[i].(string); ok && v != "" {
				b.Zone, v = cutZone(v)
				start := len(all)
				all = splitLines(all, v)
				b.Targets = all[start:len(all):len(all)]
				continue
			}
		}
		b.Missing = true
	}
	out.Storage = all
	return out, nil
}

// splitLines appends the lines of s (split at every "\n", as strings.Split
// does) to dst.
func splitLines(dst []string, s string) []string {
	for {
		i := strings.IndexByte(s, '\n')
		if i < 0 {
			return append(dst, s)
		}
		dst = append(dst, s[:i])
		s = s[i+1:]
	}
}

// Status is Lookup with ErrNotFound for an unknown id.
func (s *Store) Status(ctx context.Context, id string) (campaigns.Status, error) {
	st, found, err := s.Lookup(ctx, id)
	if err != nil {
		return st, err
	}
	if !found {
		return st, fmt.Errorf("store: %s: %w", id, ErrNotFound)
	}
	return st, nil
}

// transitionScript moves a campaign to another state if it is allowed.
// KEYS[1] hash, KEYS[2] idx; ARGV[1] to, ARGV[2] now, ARGV[3..] allowed
// from states (none = any non-final).
// Returns {-1, ""} for an unknown id, {0, current} when not allowed (or
// already there), {1, previous} when moved.
var transitionScript = redis.NewScript(luaFinal + luaIndex + `
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, ''} end
local ok = false
if #ARGV > 2 then
  for i = 3, #ARGV do if ARGV[i] == cur then ok = true end end
else
  ok = not isFinal(cur)
end
if not ok or cur == ARGV[1] then return {0, cur} end
redis.call('HSET', KEYS[1], 'state', ARGV[1], 'at', ARGV[2])
indexMove(KEYS[2], KEYS[1], cur, ARGV[1])
return {1, cur}
`)

// Transition moves a campaign to state to if its current state is one of
// allowedFrom (any non-final state when none is given). changed is false
// when it was not allowed (or already there).
func (s *Store) Transition(ctx context.Context, id string, to campaigns.State, allowedFrom ...campaigns.State) (campaigns.Status, bool, error) {
	args := []any{string(to), s.now()}
	for _, f := range allowedFrom {
		args = append(args, string(f))
	}
	res, err := transitionScript.Run(ctx, s.rdb, []string{s.key(id), s.idx()}, args...).Slice()
	if err != nil {
		return campaigns.Status{}, false, fmt.Errorf("store: transition %s to %s: %w", id, to, err)
	}
	code, _ := res[0].(int64)
	if code == -1 {
		return campaigns.Status{}, false, fmt.Errorf("store: transition %s: %w", id, ErrNotFound)
	}
	st, err := s.Status(ctx, id)
	if err != nil {
		return st, false, err
	}
	if code == 1 && to.Final() {
		s.expireFinished(ctx, id)
	}
	return st, code == 1, nil
}

// failScript moves a campaign that is not final to failed with the errors
// on its status.
// KEYS[1] hash, KEYS[2] idx; ARGV[1] now, ARGV[2] errors JSON.
// Returns -1 for an unknown id, 0 if it was final, 1 if changed.
var failScript = redis.NewScript(luaFinal + luaIndex + `
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return -1 end
if isFinal(cur) then return 0 end
redis.call('HSET', KEYS[1], 'state', 'failed', 'at', ARGV[1], 'errors', ARGV[2])
indexMove(KEYS[2], KEYS[1], cur, 'failed')
return 1
`)

// Fail ends a campaign that is not final as failed, with errs on its
// status (a missing label, a missing audience: nothing can be sent).
// changed is false when it had ended already.
func (s *Store) Fail(ctx context.Context, id string, errs campaigns.FieldErrors) (campaigns.Status, bool, error) {
	raw, err := json.Marshal(errs)
	if err != nil {
		return campaigns.Status{}, false, fmt.Errorf("store: fail %s: encode errors: %w", id, err)
	}
	code, err := failScript.Run(ctx, s.rdb, []string{s.key(id), s.idx()}, s.now(), string(raw)).Int()
	if err != nil {
		return campaigns.Status{}, false, fmt.Errorf("store: fail %s: %w", id, err)
	}
	if code == -1 {
		return campaigns.Status{}, false, fmt.Errorf("store: fail %s: %w", id, ErrNotFound)
	}
	st, err := s.Status(ctx, id)
	if err != nil {
		return st, false, err
	}
	if code == 1 {
		s.expireFinished(ctx, id)
	}
	return st, code == 1, nil
}

// PutBatches writes batches first..first+len(batches)-1 and, in the same
// transaction, the totals planned so far (targets and batches: the status
// shows them growing while a big campaign is planned). Batch tasks may
// send the stored batches before planning ends.
func (s *Store) PutBatches(ctx context.Context, id string, first int, batches [][]string, targetsSoFar int64) error {
	joined := make([][]byte, len(batches))
	for i, b := range batches {
		joined[i] = []byte(strings.Join(b, "\n"))
	}
	return s.PutJoinedBatches(ctx, id, first, joined, PlanSoFar{Targets: targetsSoFar})
}

// TaskFinished marks batch task k of a campaign as finished and then reads how
// many batches are stored so far and whether the plan is complete, in one
// round trip. With TasksFinished this is the hand-over between a batch task
// and the planner while a campaign is still being planned: the task
// enqueues its successor if its batches are stored already, and the
// planner, after storing batches, enqueues every new task whose
// predecessor is marked — so each is enqueued at least once.
func (s *Store) TaskFinished(ctx context.Context, id string, k int) (storedBatches int64, planned bool, err error) {
	pipe := s.rdb.Pipeline()
	pipe.SetBit(ctx, s.finishedTasks(id), int64(k), 1)
	hm := pipe.HMGet(ctx, s.key(id), "batches_total", "planned")
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, false, fmt.Errorf("store: task %d of %s done: %w", k, id, err)
	}
	vals := hm.Val()
	if len(vals) == 2 {
		if v, ok := vals[0].(string); ok {
			storedBatches, _ = strconv.ParseInt(v, 10, 64)
		}
		planned = vals[1] == "1"
	}
	return storedBatches, planned, nil
}

// TasksFinished reports, for each batch task in ks, whether TaskFinished marked
// it, in one round trip.
func (s *Store) TasksFinished(ctx context.Context, id string, ks []int) ([]bool, error) {
	if len(ks) == 0 {
		return nil, nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(ks))
	for i, k := range ks {
		cmds[i] = pipe.GetBit(ctx, s.finishedTasks(id), int64(k))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: tasks done of %s: %w", id, err)
	}
	out := make([]bool, len(ks))
	for i, c := range cmds {
		out[i] = c.Val() == 1
	}
	return out, nil
}

// luaFinish defines finish(hash, idx, now), which ends the record,
// set-planned and finish-if-done scripts: it moves the campaign of hash
// (indexed in idx), if it is planned, fully recorded, not final and not
// paused, to its final state outcome(sent, failed, dropped)
// (campaigns.OutcomeRules) at now, and returns {1, 1, status}; otherwise
// it changes nothing and returns {1, 0, status}. status is the hash's
// statusFields. A paused campaign is finished by Resume (FinishIfDone).
// It needs luaFinal, luaOutcome, luaIndex and luaStatusFields before it.
const luaFinish = `
local function finish(hash, idx, now)
  local f = redis.call('HMGET', hash, 'planned', 'batches_total', 'state', 'sent', 'failed', 'dropped', 'batches_done')
  local cur = f[3]
  if f[1] ~= '1' or tonumber(f[7] or '0') < tonumber(f[2]) or isFinal(cur) or cur == 'paused' then
    return {1, 0, redis.call('HMGET', hash, unpack(fields))}
  end
  local to = outcome(tonumber(f[4]), tonumber(f[5]), tonumber(f[6]))
  redis.call('HSET', hash, 'state', to, 'at', now)
  indexMove(idx, hash, cur, to)
  return {1, 1, redis.call('HMGET', hash, unpack(fields))}
end
`

// luaFinishing is what every script that may finish a campaign starts with.
var luaFinishing = luaFinal + luaOutcome + luaIndex + luaStatusFields + luaFinish

// setPlannedScript marks the plan complete and, if every batch is already
// recorded (they are sent while planning goes on), finishes the campaign:
// exactly one of it and the last record does.
// KEYS[1] hash, KEYS[2] done bitmap, KEYS[3] failures, KEYS[4] idx (as
// recordScript); ARGV[1] targets, ARGV[2] batches, ARGV[3] now (RFC 3339).
// Returns {-1, 0, {}} for an unknown id, else finish's answer.
var setPlannedScript = redis.NewScript(luaFinishing + `
if not redis.call('HGET', KEYS[1], 'state') then return {-1, 0, {}} end
redis.call('HSET', KEYS[1], 'targets_total', ARGV[1], 'batches_total', ARGV[2], 'planned', 1)
return finish(KEYS[1], KEYS[4], ARGV[3])
`)

// finishIfDoneScript finishes a planned, fully recorded campaign that is
// not paused (after a resume).
// KEYS as recordScript; ARGV[1] now (RFC 3339).
// Returns {-1, 0, {}} for an unknown id, else finish's answer.
var finishIfDoneScript = redis.NewScript(luaFinishing + `
if not redis.call('HGET', KEYS[1], 'state') then return {-1, 0, {}} end
return finish(KEYS[1], KEYS[4], ARGV[1])
`)

// FinishIfDone finishes a campaign whose batches were all recorded while
// it was paused (Resume calls it): finished is true, with the final status,
// when it did.
func (s *Store) FinishIfDone(ctx context.Context, id string) (st campaigns.Status, finished bool, err error) {
	return s.finishWith(ctx, id, "finish", finishIfDoneScript, s.now())
}

// expireScript ends a campaign that is not final as expired (whatever it
// still had to send is past expires_at): dropped becomes what was neither
// sent nor failed of the targets planned so far, and the state is
// outcome(sent, failed, at least 1 dropped): expired, or partially_failed
// when something failed. Batches recorded afterwards (calls that were on
// the wire) move their counts out of dropped (see recordScript).
// KEYS as recordScript; ARGV[1] now (RFC 3339).
// Returns {-1, 0, {}} for an unknown id, {1, 0, status} when it was final
// already, {1, 1, status} when it ended it (status: statusFields).
var expireScript = redis.NewScript(luaFinal + luaOutcome + luaIndex + `
local cur = redis.call('HGET', KEYS[1], 'state')
if not cur then return {-1, 0, {}} end
` + luaStatusFields + `
if isFinal(cur) then
  return {1, 0, redis.call('HMGET', KEYS[1], unpack(fields))}
end
local f = redis.call('HMGET', KEYS[1], 'targets_total', 'sent', 'failed')
local dropped = math.max(tonumber(f[1] or '0') - tonumber(f[2] or '0') - tonumber(f[3] or '0'), 0)
local to = outcome(tonumber(f[2] or '0'), tonumber(f[3] or '0'), math.max(dropped, 1))
redis.call('HSET', KEYS[1], 'state', to, 'at', ARGV[1], 'dropped', dropped)
indexMove(KEYS[4], KEYS[1], cur, to)
return {1, 1, redis.call('HMGET', KEYS[1], unpack(fields))}
`)

// Expire ends a campaign at its expires_at: whatever was not sent is
// dropped. finished is true, with the final status, when it did (it had
// not ended already).
func (s *Store) Expire(ctx context.Context, id string) (st campaigns.Status, finished bool, err error) {
	return s.finishWith(ctx, id, "expire", expireScript, s.now())
}

func (s *Store) finishWith(ctx context.Context, id, what string, script *redis.Script, args ...any) (st campaigns.Status, finished bool, err error) {
	res, err := script.Run(ctx, s.rdb, []string{s.key(id), s.done(id), s.failures(id), s.idx()}, args...).Slice()
	if err != nil {
		return st, false, fmt.Errorf("store: %s %s: %w", what, id, err)
	}
	if len(res) != 3 {
		return st, false, fmt.Errorf("store: %s %s: unexpected answer", what, id)
	}
	if ok, _ := res[0].(int64); ok != 1 {
		return st, false, fmt.Errorf("store: %s %s: %w", what, id, ErrNotFound)
	}
	finN, _ := res[1].(int64)
	vals, _ := res[2].([]any)
	st, _ = parseStatus(id, vals)
	if finN == 1 {
		s.expireFinished(ctx, id)
	}
	return st, finN == 1, nil
}

// SetPlanned records that every batch is written, with the final totals.
// If the batches were all recorded already, it finishes the campaign and
// returns finished=true with the final status (publish it).
func (s *Store) SetPlanned(ctx context.Context, id string, targetsTotal, batchesTotal int64) (st campaigns.Status, finished bool, err error) {
	return s.finishWith(ctx, id, "set planned", setPlannedScript, targetsTotal, batchesTotal, s.now())
}

// recordScript records batch n's outcome once and finishes the campaign
// when it was the last batch.
// KEYS[1] the campaign hash, KEYS[2] the done bitmap (bit n: batch n
// recorded), KEYS[3] the failures list, KEYS[4] idx; ARGV[1] n, ARGV[2]
// sent, ARGV[3] failed, ARGV[4] dropped, ARGV[5] now (RFC 3339), ARGV[6..]
// one failure JSON each.
// Returns {0, 0, status} when batch n was recorded already (nothing
// changes), else finish's answer: {1, 1, status} when this record
// finished the campaign, {1, 0, status} otherwise.
var recordScript = redis.NewScript(luaFinishing + `
if redis.call('SETBIT', KEYS[2], tonumber(ARGV[1]), 1) == 1 then
  return {0, 0, redis.call('HMGET', KEYS[1], unpack(fields))}
end
redis.call('HINCRBY', KEYS[1], 'sent', ARGV[2])
redis.call('HINCRBY', KEYS[1], 'failed', ARGV[3])
if redis.call('HGET', KEYS[1], 'state') == 'expired' then
  -- a call that was on the wire at expiry: its targets were counted dropped
  local d = tonumber(redis.call('HGET', KEYS[1], 'dropped') or '0')
  local back = math.min(d, tonumber(ARGV[2]) + tonumber(ARGV[3]))
  redis.call('HINCRBY', KEYS[1], 'dropped', -back)
else
  redis.call('HINCRBY', KEYS[1], 'dropped', ARGV[4])
end
redis.call('HINCRBY', KEYS[1], 'batches_done', 1)
if #ARGV > 5 then redis.call('RPUSH', KEYS[3], unpack(ARGV, 6)) end
return finish(KEYS[1], KEYS[4], ARGV[5])
`)

// RecordBatch records batch n's outcome once: sent targets, refused ones
// with their reason, and targets dropped (expired). The caller that records
// the last batch gets finished=true and the final status; a second record of
// the same batch changes nothing (first=false). Concurrent records share
// round trips (groupcommit).
func (s *Store) RecordBatch(ctx context.Context, id string, n int, sent int64, failures []campaigns.Failure, dropped int64) (st campaigns.Status, first, finished bool, err error) {
	args := make([]any, 0, 5+len(failures))
	args = append(args, n, sent, len(failures), dropped, s.now())
	for _, f := range failures {
		b, _ := json.Marshal(f)
		args = append(args, string(b))
	}
	res, err := s.rec.Run(ctx, []string{s.key(id), s.done(id), s.failures(id), s.idx()}, args...).Slice()
	if err != nil {
		return st, false, false, fmt.Errorf("store: record batch %d of %s: %w", n, id, err)
	}
	if len(res) != 3 {
		return st, false, false, fmt.Errorf("store: record batch %d of %s: unexpected answer", n, id)
	}
	firstN, _ := res[0].(int64)
	finN, _ := res[1].(int64)
	vals, _ := res[2].([]any)
	st, _ = parseStatus(id, vals)
	if finN == 1 {
		s.expireFinished(ctx, id)
	}
	return st, firstN == 1, finN == 1, nil
}

// expireFinished lets a finished campaign's data go after a while.
func (s *Store) expireFinished(ctx context.Context, id string) {
	pipe := s.rdb.TxPipeline()
	pipe.ZAdd(ctx, s.idxExpiry(), redis.Z{Score: float64(s.opts.Clock.Now().Add(s.opts.FinishedTTL).UnixMilli()), Member: id})
	pipe.Expire(ctx, s.batches(id), s.opts.BatchTTL)
	pipe.Expire(ctx, s.done(id), s.opts.FinishedTTL)
	pipe.Expire(ctx, s.failures(id), s.opts.FinishedTTL)
	pipe.Expire(ctx, s.finishedTasks(id), s.opts.BatchTTL)
	pipe.Expire(ctx, s.later(id), s.opts.BatchTTL)
	pipe.Expire(ctx, s.advanced(id), s.opts.BatchTTL)
	pipe.Expire(ctx, s.zones(id), s.opts.BatchTTL)
	pipe.Expire(ctx, s.key(id), s.opts.FinishedTTL)
	_, _ = pipe.Exec(ctx)
}

// AddTaskID records a provider task id on the campaign.
func (s *Store) AddTaskID(ctx context.Context, id, taskID string) error {
	st, err := s.Status(ctx, id)
	if err != nil {
		return err
	}
	ids := append(st.ProviderTaskIDs, taskID)
	b, _ := json.Marshal(ids)
	if err := s.rdb.HSet(ctx, s.key(id), "task_ids", b).Err(); err != nil {
		return fmt.Errorf("store: task id of %s: %w", id, err)
	}
	return nil
}

// setStartScript sets start_at of a scheduled campaign when it moves by
// at least the least change.
// KEYS[1] hash; ARGV[1] start_at (RFC 3339), ARGV[2] its unix µs, ARGV[3]
// least change µs.
// Returns 1 if it set it, 0 if not.
var setStartScript = redis.NewScript(`
if redis.call('HGET', KEYS[1], 'state') ~= 'scheduled' then return 0 end
local cur = tonumber(redis.call('HGET', KEYS[1], 'start_us') or '-1')
if cur >= 0 and math.abs(cur - tonumber(ARGV[2])) < tonumber(ARGV[3]) then return 0 end
redis.call('HSET', KEYS[1], 'start_at', ARGV[1], 'start_us', ARGV[2])
return 1
`)

// SetStartAt sets when a scheduled campaign is now expected to start (a
// task waiting for the provider's task-window caps) if that moved by at
// least least; changed tells whether it did (publish the status then).
func (s *Store) SetStartAt(ctx context.Context, id string, at time.Time, least time.Duration) (campaigns.Status, bool, error) {
	n, err := setStartScript.Run(ctx, s.rdb, []string{s.key(id)}, at.UTC().Format(time.RFC3339Nano), at.UnixMicro(), least.Microseconds()).Int()
	if err != nil {
		return campaigns.Status{}, false, fmt.Errorf("store: start of %s: %w", id, err)
	}
	if n != 1 {
		return campaigns.Status{}, false, nil
	}
	st, err := s.Status(ctx, id)
	return st, err == nil, err
}

// EachFailure streams the refused targets of a campaign, in pages.
func (s *Store) EachFailure(ctx context.Context, id string, fn func(campaigns.Failure) error) (bool, error) {
	if n, err := s.rdb.Exists(ctx, s.key(id)).Result(); err != nil {
		return false, fmt.Errorf("store: failures of %s: %w", id, err)
	} else if n == 0 {
		return false, nil
	}
	const page = 500
	for start := int64(0); ; start += page {
		vals, err := s.rdb.LRange(ctx, s.failures(id), start, start+page-1).Result()
		if err != nil {
			return true, fmt.Errorf("store: failures of %s: %w", id, err)
		}
		for _, v := range vals {
			var f campaigns.Failure
			if err := json.Unmarshal([]byte(v), &f); err != nil {
				continue
			}
			if err := fn(f); err != nil {
				return true, err
			}
		}
		if len(vals) < page {
			return true, nil
		}
	}
}
