package store

import (
	"context"
	"fmt"
	"strconv"

	"github.com/redis/go-redis/v9"
)

// PlanParams fix how a campaign's audience is de-duplicated and cut into
// batches. They are chosen by the first plan and kept, so a re-plan (after
// a crash, in any process, with any config) writes the same batches again.
type PlanParams struct {
	Seed   uint64 // keys the de-duplication hash
	Parts  int    // passes over the audience
	Lines  int64  // the audience's lines, if counted (0: not counted); sizes each pass
	Digest string // the audience object's digest when planning began ("" if unknown)
	// Sorted: the audience's ids never decrease (a repeat can only follow
	// its id), so it is de-duplicated in one pass by comparing each id with
	// the one before, without a set (dedupe.Options.Sorted).
	Sorted bool
}

// planFields are PlanParams' fields in the campaign hash, in
// parsePlanParams' order and planParamsScript's ARGV order.
var planFields = []any{"plan_seed", "plan_parts", "plan_lines", "plan_digest", "plan_sorted"}

// planParamsScript: KEYS[1] the campaign hash; ARGV[1..n] the names of
// planFields, ARGV[n+1..2n] their proposed values. The parameters are
// stored only if plan_seed (the first) is not there yet; all are written
// together. It returns {1, value…} as stored ("" for a field missing: one
// added after the plan began), or {0} when the campaign does not exist.
var planParamsScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 0 then return {0} end
local n = #ARGV / 2
if redis.call('HEXISTS', KEYS[1], ARGV[1]) == 0 then
  for i = 1, n do redis.call('HSET', KEYS[1], ARGV[i], ARGV[n + i]) end
end
local v = redis.call('HMGET', KEYS[1], unpack(ARGV, 1, n))
local out = {1}
for i = 1, n do out[i + 1] = v[i] or '' end
return out
`)

// PlanParams returns the campaign's plan parameters. The first call for a
// campaign stores what propose returns; later calls (and a concurrent
// first call that lost the race) return what was stored and do not call
// propose.
func (s *Store) PlanParams(ctx context.Context, id string, propose func() (PlanParams, error)) (PlanParams, error) {
	names := make([]string, len(planFields))
	for i, f := range planFields {
		names[i] = f.(string)
	}
	vals, err := s.rdb.HMGet(ctx, s.key(id), names...).Result()
	if err != nil {
		return PlanParams{}, fmt.Errorf("store: plan parameters of %s: %w", id, err)
	}
	if p, ok := parsePlanParams(vals); ok {
		return p, nil
	}
	p, err := propose()
	if err != nil {
		return PlanParams{}, err
	}
	sorted := "0"
	if p.Sorted {
		sorted = "1"
	}
	args := append(append([]any{}, planFields...), strconv.FormatUint(p.Seed, 10), p.Parts, p.Lines, p.Digest, sorted)
	res, err := planParamsScript.Run(ctx, s.rdb, []string{s.key(id)}, args...).Slice()
	if err != nil {
		return PlanParams{}, fmt.Errorf("store: plan parameters of %s: %w", id, err)
	}
	if ok, _ := res[0].(int64); ok != 1 || len(res) != 1+len(planFields) {
		return PlanParams{}, fmt.Errorf("store: plan parameters of %s: %w", id, ErrNotFound)
	}
	got, ok := parsePlanParams(res[1:])
	if !ok {
		return PlanParams{}, fmt.Errorf("store: plan parameters of %s: unreadable %v", id, res[1:])
	}
	return got, nil
}

func parsePlanParams(vals []any) (PlanParams, bool) {
	if len(vals) != len(planFields) {
		return PlanParams{}, false
	}
	seed, ok1 := vals[0].(string)
	parts, ok2 := vals[1].(string)
	if !ok1 || !ok2 {
		return PlanParams{}, false
	}
	var p PlanParams
	var err error
	if p.Seed, err = strconv.ParseUint(seed, 10, 64); err != nil {
		return PlanParams{}, false
	}
	if p.Parts, err = strconv.Atoi(parts); err != nil || p.Parts < 1 {
		return PlanParams{}, false
	}
	if l, ok := vals[2].(string); ok {
		p.Lines, _ = strconv.ParseInt(l, 10, 64)
	}
	p.Digest, _ = vals[3].(string)
	p.Sorted = vals[4] == "1" // missing (a plan begun before the field): not sorted
	return p, true
}

// PlanSoFar is what a plan has found up to its latest stored batch.
type PlanSoFar struct {
	Targets    int64 // distinct targets in the batches stored so far
	Duplicates int64 // repeated ids left out so far
	Invalid    int64 // lines that are not valid ids, left out so far
}

// PutJoinedBatches stores batches first..first+len(batches)-1, each its
// targets joined by "\n", and the plan's counts so far, in one round trip
// (with no batches, only the counts). The bytes are written before it
// returns: the caller may reuse them.
func (s *Store) PutJoinedBatches(ctx context.Context, id string, first int, batches [][]byte, so PlanSoFar) error {
	pipe := s.rdb.TxPipeline()
	if len(batches) > 0 {
		fields := make([]any, 0, 2*len(batches))
		for i, b := range batches {
			fields = append(fields, strconv.Itoa(first+i), b)
		}
		pipe.HSet(ctx, s.batches(id), fields...)
	}
	pipe.HSet(ctx, s.key(id), "targets_total", so.Targets, "batches_total", first+len(batches), "duplicates", so.Duplicates, "invalid", so.Invalid)
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: put batches %s from %d: %w", id, first, err)
	}
	return nil
}
