package store

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
)

// Progress is what the reconciler reads of a campaign.
type Progress struct {
	State        campaigns.State
	Kind         campaigns.Kind
	Planned      bool
	BatchesTotal int64
	BatchesDone  int64
	StartAt      time.Time
}

// Progress reads a campaign's progress fields.
func (s *Store) Progress(ctx context.Context, id string) (Progress, error) {
	v, err := s.rdb.HMGet(ctx, s.key(id), "state", "kind", "planned", "batches_total", "batches_done", "start_at").Result()
	if err != nil {
		return Progress{}, fmt.Errorf("store: progress %s: %w", id, err)
	}
	str := func(i int) string { x, _ := v[i].(string); return x }
	if str(0) == "" {
		return Progress{}, fmt.Errorf("store: progress %s: %w", id, ErrNotFound)
	}
	total, _ := strconv.ParseInt(str(3), 10, 64)
	done, _ := strconv.ParseInt(str(4), 10, 64)
	start, _ := time.Parse(time.RFC3339Nano, str(5))
	return Progress{State: campaigns.State(str(0)), Kind: campaigns.Kind(str(1)), Planned: str(2) == "1",
		BatchesTotal: total, BatchesDone: done, StartAt: start}, nil
}

// DoneBatches returns the bitmap of recorded batches (bit n, most
// significant bit first, as Redis SETBIT stores it).
func (s *Store) DoneBatches(ctx context.Context, id string) (Bits, error) {
	b, err := s.rdb.Get(ctx, s.done(id)).Bytes()
	if err != nil && !errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("store: done batches of %s: %w", id, err)
	}
	return Bits(b), nil
}

// Bits is a Redis bitmap.
type Bits []byte

// Has reports whether bit n is set.
func (b Bits) Has(n int64) bool {
	i := n / 8
	return i < int64(len(b)) && b[i]&(0x80>>(n%8)) != 0
}

func (s *Store) reconcileKey() string { return s.opts.Prefix + "reconcile" }

// markScript: KEYS[1] the reconcile hash; ARGV[1] id, ARGV[2] progress
// fingerprint, ARGV[3] now (unix ms). Stores "fingerprint|now" for id
// unless the fingerprint is unchanged. Returns the unix ms since which the
// fingerprint has been what it is.
var markScript = redis.NewScript(`
local cur = redis.call('HGET', KEYS[1], ARGV[1])
if cur then
  local sep = string.find(cur, '|', 1, true)
  if sep and string.sub(cur, 1, sep - 1) == ARGV[2] then return tonumber(string.sub(cur, sep + 1)) end
end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2] .. '|' .. ARGV[3])
return tonumber(ARGV[3])
`)

// Unchanged records a campaign's progress fingerprint and returns since
// when (by any process's record) it has not changed.
func (s *Store) Unchanged(ctx context.Context, id, fingerprint string) (time.Time, error) {
	now := s.opts.Clock.Now()
	ms, err := markScript.Run(ctx, s.rdb, []string{s.reconcileKey()}, id, fingerprint, now.UnixMilli()).Int64()
	if err != nil {
		return now, fmt.Errorf("store: progress mark of %s: %w", id, err)
	}
	return time.UnixMilli(ms), nil
}

// Repairs counts a repair of one task of a campaign (taskID starts with
// the campaign id and ':') and returns how many there were.
func (s *Store) Repairs(ctx context.Context, taskID string) (int64, error) {
	n, err := s.rdb.HIncrBy(ctx, s.reconcileKey()+":repairs", taskID, 1).Result()
	if err != nil {
		return 0, fmt.Errorf("store: repairs of %s: %w", taskID, err)
	}
	return n, nil
}

// ForgetReconcile drops the reconciler's records of campaigns not in keep.
func (s *Store) ForgetReconcile(ctx context.Context, keep map[string]bool) error {
	for _, key := range []string{s.reconcileKey(), s.reconcileKey() + ":repairs"} {
		fields, err := s.rdb.HKeys(ctx, key).Result()
		if err != nil {
			return fmt.Errorf("store: reconcile records: %w", err)
		}
		var drop []string
		for _, f := range fields {
			id, _, _ := strings.Cut(f, ":")
			if !keep[id] {
				drop = append(drop, f)
			}
		}
		if len(drop) > 0 {
			if err := s.rdb.HDel(ctx, key, drop...).Err(); err != nil {
				return fmt.Errorf("store: reconcile records: %w", err)
			}
		}
	}
	return nil
}

// Lock takes a lock shared by every process for d (one reconcile round);
// false if another holds it.
func (s *Store) Lock(ctx context.Context, name string, d time.Duration) (bool, error) {
	ok, err := s.rdb.SetNX(ctx, s.opts.Prefix+"lock:"+name, s.opts.Clock.Now().UnixMilli(), d).Result()
	if err != nil {
		return false, fmt.Errorf("store: lock %s: %w", name, err)
	}
	return ok, nil
}

// Ping reports whether Redis answers.
func (s *Store) Ping(ctx context.Context) error {
	if err := s.rdb.Ping(ctx).Err(); err != nil {
		return fmt.Errorf("store: ping: %w", err)
	}
	return nil
}
