package store

import (
	"context"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"
)

// A batch of a local-time campaign (send_window.local_time) holds targets
// of one zone, the one that decides their window. Its stored form starts
// with a line naming the zone, "zone Asia/Tokyo", which no target can be
// (an id has no space); BatchInfos gives it as BatchSlot.Zone.
const zoneLine = "zone "

// AppendZoneLine appends the line that opens a batch of zone's targets
// (the batcher writes it before the batch's first target).
func AppendZoneLine(dst []byte, zone string) []byte {
	dst = append(dst, zoneLine...)
	dst = append(dst, zone...)
	return append(dst, '\n')
}

// cutZone splits a stored batch into its zone ("" for a batch without
// one) and its targets.
func cutZone(v string) (zone, targets string) {
	if !strings.HasPrefix(v, zoneLine) {
		return "", v
	}
	line, rest, _ := strings.Cut(v[len(zoneLine):], "\n")
	return line, rest
}

// later(id) is the sorted set of a local-time campaign's batches that wait
// for their zone's window: member batch n, score its opening (unix ms).
func (s *Store) later(id string) string { return s.key(id) + ":later" }

// deferScript notes batches that wait for their window.
// KEYS[1] hash, KEYS[2] later; ARGV pairs: batch n, opening (unix ms).
// Sets the hash's next_opening to the earliest opening waited for and
// returns {all, earliest}: all is 1 when the plan is complete and every
// batch not recorded waits (the campaign has nothing it may send now);
// {-1, 0} for an unknown id, {0, 0} for a final campaign (nothing noted:
// its keys are expiring).
var deferScript = redis.NewScript(luaFinal + `
local state = redis.call('HGET', KEYS[1], 'state')
if not state then return {-1, 0} end
if isFinal(state) then return {0, 0} end
for i = 1, #ARGV, 2 do redis.call('ZADD', KEYS[2], ARGV[i+1], ARGV[i]) end
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then return {0, 0} end
redis.call('HSET', KEYS[1], 'next_opening', first[2])
local f = redis.call('HMGET', KEYS[1], 'planned', 'batches_total', 'batches_done')
local all = 0
if f[1] == '1' and redis.call('ZCARD', KEYS[2]) >= tonumber(f[2] or '0') - tonumber(f[3] or '0') then all = 1 end
return {all, tonumber(first[2])}
`)

// undeferScript notes batches that no longer wait (they are being sent).
// KEYS[1] hash, KEYS[2] later; ARGV the batch numbers.
// Sets next_opening to the earliest opening still waited for, or removes
// it. Returns how many batches still wait.
var undeferScript = redis.NewScript(`
redis.call('ZREM', KEYS[2], unpack(ARGV))
local first = redis.call('ZRANGE', KEYS[2], 0, 0, 'WITHSCORES')
if #first == 0 then
  redis.call('HDEL', KEYS[1], 'next_opening')
  return 0
end
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('HSET', KEYS[1], 'next_opening', first[2]) end
return redis.call('ZCARD', KEYS[2])
`)

// Defer notes that batches wait for their zone's window, which opens at
// opens[i] for batches[i]. all is true when the plan is complete and every
// batch not recorded waits: the campaign has nothing to send before
// earliest (the caller makes it scheduled until then).
//
// With no batches it only tells (the plan, once complete, asks: every task
// may have deferred its batches before).
func (s *Store) Defer(ctx context.Context, id string, batches []int, opens []time.Time) (all bool, earliest time.Time, err error) {
	args := make([]any, 0, 2*len(batches))
	for i, n := range batches {
		args = append(args, n, opens[i].UnixMilli())
	}
	res, err := deferScript.Run(ctx, s.rdb, []string{s.key(id), s.later(id)}, args...).Int64Slice()
	if err != nil {
		return false, time.Time{}, fmt.Errorf("store: defer batches of %s: %w", id, err)
	}
	if len(res) != 2 || res[0] < 0 {
		return false, time.Time{}, fmt.Errorf("store: defer batches of %s: %w", id, ErrNotFound)
	}
	if res[1] == 0 {
		return false, time.Time{}, nil
	}
	return res[0] == 1, time.UnixMilli(res[1]), nil
}

// Undefer notes that batches no longer wait for their window (they are
// about to be sent).
func (s *Store) Undefer(ctx context.Context, id string, batches []int) error {
	if len(batches) == 0 {
		return nil
	}
	args := make([]any, len(batches))
	for i, n := range batches {
		args[i] = strconv.Itoa(n)
	}
	if err := undeferScript.Run(ctx, s.rdb, []string{s.key(id), s.later(id)}, args...).Err(); err != nil {
		return fmt.Errorf("store: undefer batches of %s: %w", id, err)
	}
	return nil
}

// advanced(id) is the bitmap of a local-time campaign's batch tasks that
// let their successor go (Advance).
func (s *Store) advanced(id string) string { return s.key(id) + ":advanced" }

// Advance notes that batch task k of a local-time campaign lets its
// successor go; first is true the first time only. A task whose batches
// wait for their zones comes back (maybe many times): its successor goes
// once.
func (s *Store) Advance(ctx context.Context, id string, k int) (first bool, err error) {
	old, err := s.rdb.SetBit(ctx, s.advanced(id), int64(k), 1).Result()
	if err != nil {
		return false, fmt.Errorf("store: advance task %d of %s: %w", k, id, err)
	}
	return old == 0, nil
}

// Waiting is how many batches of a campaign wait for their window, and
// the earliest opening among them (zero without any).
func (s *Store) Waiting(ctx context.Context, id string) (int64, time.Time, error) {
	pipe := s.rdb.Pipeline()
	card := pipe.ZCard(ctx, s.later(id))
	first := pipe.ZRangeWithScores(ctx, s.later(id), 0, 0)
	if _, err := pipe.Exec(ctx); err != nil {
		return 0, time.Time{}, fmt.Errorf("store: waiting batches of %s: %w", id, err)
	}
	if z := first.Val(); len(z) > 0 {
		return card.Val(), time.UnixMilli(int64(z[0].Score)), nil
	}
	return 0, time.Time{}, nil
}

// zones(id) is a local-time campaign's targets by zone: "p:" + zone →
// planned, "d:" + zone → recorded (sent, failed or dropped), for the
// forecast's ETA of each zone's part.
func (s *Store) zones(id string) string { return s.key(id) + ":zones" }

// PutZonePlan stores how many targets each zone of a local-time campaign
// has (its plan's count; a plan made again writes the same).
func (s *Store) PutZonePlan(ctx context.Context, id string, planned map[string]int64) error {
	if len(planned) == 0 {
		return nil
	}
	fields := make([]any, 0, 2*len(planned))
	for z, n := range planned {
		fields = append(fields, "p:"+z, n)
	}
	if err := s.rdb.HSet(ctx, s.zones(id), fields...).Err(); err != nil {
		return fmt.Errorf("store: zones of %s: %w", id, err)
	}
	return nil
}

// ZoneDone counts n targets of zone recorded (a batch's).
func (s *Store) ZoneDone(ctx context.Context, id, zone string, n int64) error {
	if err := s.rdb.HIncrBy(ctx, s.zones(id), "d:"+zone, n).Err(); err != nil {
		return fmt.Errorf("store: zone %s of %s: %w", zone, id, err)
	}
	return nil
}

// ZonesLeft is how many targets each zone of a local-time campaign has
// left (planned less recorded, never below 0); empty before its plan is
// complete.
func (s *Store) ZonesLeft(ctx context.Context, id string) (map[string]int64, error) {
	m, err := s.rdb.HGetAll(ctx, s.zones(id)).Result()
	if err != nil {
		return nil, fmt.Errorf("store: zones of %s: %w", id, err)
	}
	out := map[string]int64{}
	for f, v := range m {
		zone, planned := strings.CutPrefix(f, "p:")
		if !planned {
			continue
		}
		p, _ := strconv.ParseInt(v, 10, 64)
		d, _ := strconv.ParseInt(m["d:"+zone], 10, 64)
		out[zone] = max(p-d, 0)
	}
	return out, nil
}
