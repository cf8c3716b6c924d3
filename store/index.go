package store

import (
	"context"
	"fmt"
	"strings"
	"time"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
)

// The campaign index (prefix "campaignd:"):
//
//	idx           sorted set: every stored campaign, scored by its
//	              submission (unix ms)
//	idx:{state}   sorted set: the campaigns in that state, same scores
//	idx:expiry    sorted set: finished campaigns, scored by when their
//	              keys expire (unix ms)
//
// Every state change moves the campaign from one state set to the next in
// the same script that changes the state, so the sets are always true. A
// finished campaign's keys expire FinishedTTL after it ended; prune (run
// before every read of the index) takes expired campaigns out of the sets.
// Each costs O(log n) per campaign and nothing scans keys.
func (s *Store) idx() string               { return s.opts.Prefix + "idx" }
func (s *Store) idxState(st string) string { return s.idx() + ":" + st }
func (s *Store) idxExpiry() string         { return s.idx() + ":expiry" }

// luaFinal defines isFinal(state) from campaigns.State.Final (one list for
// Go and Lua).
var luaFinal = func() string {
	var conds []string
	for _, st := range append(campaigns.StoredStates(), campaigns.StateRejected, campaigns.StateDuplicate) {
		if st.Final() {
			conds = append(conds, "s == '"+string(st)+"'")
		}
	}
	return "local function isFinal(s) return " + strings.Join(conds, " or ") + " end\n"
}()

// luaOutcome defines outcome(sent, failed, dropped), the final state of a
// campaign whose batches are all recorded, from campaigns.OutcomeRules
// (one rule for Go and Lua; TestOutcomeIsTheSameInGoAndLua holds them to
// the same answers).
var luaOutcome = func() string {
	var b strings.Builder
	b.WriteString("local function outcome(sent, failed, dropped)\n")
	last := false
	for _, r := range campaigns.OutcomeRules() {
		var conds []string
		for _, c := range []struct {
			name string
			want campaigns.Count
		}{{"sent", r.Sent}, {"failed", r.Failed}, {"dropped", r.Dropped}} {
			switch c.want {
			case campaigns.Zero:
				conds = append(conds, c.name+" == 0")
			case campaigns.NonZero:
				conds = append(conds, c.name+" > 0")
			}
		}
		if len(conds) == 0 { // matches anything: the rows after it never do
			b.WriteString("  return '" + string(r.To) + "'\n")
			last = true
			break
		}
		b.WriteString("  if " + strings.Join(conds, " and ") + " then return '" + string(r.To) + "' end\n")
	}
	if !last {
		b.WriteString("  return '" + string(campaigns.Outcome(-1, -1, -1)) + "'\n")
	}
	b.WriteString("end\n")
	return b.String()
}()

// luaIndex defines indexMove(idx, hash, from, to): the campaign whose hash
// key is hash leaves the state set idx..':'..from (none when from is
// false) and joins idx..':'..to, with its submission score from idx. The
// id is the hash key's tail: idx is prefix.."idx" and hash prefix.."c:"..id,
// so the id starts at position #idx of hash.
const luaIndex = `
local function indexMove(idx, hash, from, to)
  local id = string.sub(hash, #idx)
  local score = redis.call('ZSCORE', idx, id) or '0'
  if from then redis.call('ZREM', idx .. ':' .. from, id) end
  redis.call('ZADD', idx .. ':' .. to, score, id)
end
`

// pruneScript: KEYS[1] idx; ARGV[1] now (unix ms), ARGV[2] most to look
// at, ARGV[3] the campaign hash key prefix (prefix.."c:"), ARGV[4..] every
// stored state. Each finished campaign due in idx:expiry whose hash is gone
// leaves every set; one still there (its expiry was pushed back) is
// re-scored by its PTTL. Returns how many left.
var pruneScript = redis.NewScript(`
local due = redis.call('ZRANGEBYSCORE', KEYS[1] .. ':expiry', '-inf', ARGV[1], 'LIMIT', 0, tonumber(ARGV[2]))
local gone = 0
for _, id in ipairs(due) do
  local ttl = redis.call('PTTL', ARGV[3] .. id)
  if ttl == -2 then
    redis.call('ZREM', KEYS[1], id)
    for i = 4, #ARGV do redis.call('ZREM', KEYS[1] .. ':' .. ARGV[i], id) end
    redis.call('ZREM', KEYS[1] .. ':expiry', id)
    gone = gone + 1
  elseif ttl == -1 then
    redis.call('ZREM', KEYS[1] .. ':expiry', id)
  else
    redis.call('ZADD', KEYS[1] .. ':expiry', tonumber(ARGV[1]) + ttl, id)
  end
end
return gone
`)

// prune takes campaigns whose keys expired out of the index, at most a
// few thousand per call (the rest on the next read).
func (s *Store) prune(ctx context.Context) error {
	args := []any{s.opts.Clock.Now().UnixMilli(), 5000, s.opts.Prefix + "c:"}
	for _, st := range campaigns.StoredStates() {
		args = append(args, string(st))
	}
	if err := pruneScript.Run(ctx, s.rdb, []string{s.idx()}, args...).Err(); err != nil {
		return fmt.Errorf("store: prune the campaign index: %w", err)
	}
	return nil
}

// CountByState returns how many stored campaigns are in each state (every
// state, zeros included), after taking expired ones out of the index.
func (s *Store) CountByState(ctx context.Context) (map[campaigns.State]int64, error) {
	if err := s.prune(ctx); err != nil {
		return nil, err
	}
	states := campaigns.StoredStates()
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.IntCmd, len(states))
	for i, st := range states {
		cmds[i] = pipe.ZCard(ctx, s.idxState(string(st)))
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, fmt.Errorf("store: count by state: %w", err)
	}
	out := make(map[campaigns.State]int64, len(states))
	for i, st := range states {
		out[st] = cmds[i].Val()
	}
	return out, nil
}

// InState returns up to n ids of campaigns in state st, oldest submission
// first (the reconciler's worklist).
func (s *Store) InState(ctx context.Context, st campaigns.State, n int) ([]string, error) {
	ids, err := s.rdb.ZRange(ctx, s.idxState(string(st)), 0, int64(n)-1).Result()
	if err != nil {
		return nil, fmt.Errorf("store: campaigns %s: %w", st, err)
	}
	return ids, nil
}

// indexVersion marks a Redis whose campaigns are all in the index.
const indexVersion = "idx:v1"

// Migrate indexes the campaigns stored by a campaignd older than the index
// (once per Redis: a marker key says it was done). It scans the campaign
// keys, in pages; every process may run it at start, concurrently.
func (s *Store) Migrate(ctx context.Context) error {
	marker := s.opts.Prefix + indexVersion
	if n, err := s.rdb.Exists(ctx, marker).Result(); err != nil {
		return fmt.Errorf("store: index migration: %w", err)
	} else if n == 1 {
		return nil
	}
	base := s.opts.Prefix + "c:"
	var cursor uint64
	for {
		keys, next, err := s.rdb.Scan(ctx, cursor, base+"*", 1000).Result()
		if err != nil {
			return fmt.Errorf("store: index migration: %w", err)
		}
		for _, k := range keys {
			id := strings.TrimPrefix(k, base)
			if strings.Contains(id, ":") {
				continue // a campaign's batches, done bits, failures, groups
			}
			if err := s.indexOne(ctx, id); err != nil {
				return err
			}
		}
		if cursor = next; cursor == 0 {
			break
		}
	}
	pipe := s.rdb.TxPipeline()
	pipe.Set(ctx, marker, s.opts.Clock.Now().UTC().Format(time.RFC3339), 0)
	pipe.Del(ctx, s.opts.Prefix+"states") // the counters the index replaces
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: index migration: %w", err)
	}
	return nil
}

func (s *Store) indexOne(ctx context.Context, id string) error {
	vals, err := s.rdb.HMGet(ctx, s.key(id), "state", "created_at").Result()
	if err != nil {
		return fmt.Errorf("store: index %s: %w", id, err)
	}
	st, _ := vals[0].(string)
	if st == "" {
		return nil
	}
	created, _ := vals[1].(string)
	t, _ := time.Parse(time.RFC3339Nano, created)
	score := float64(t.UnixMilli())
	pipe := s.rdb.TxPipeline()
	pipe.ZAdd(ctx, s.idx(), redis.Z{Score: score, Member: id})
	pipe.ZAdd(ctx, s.idxState(st), redis.Z{Score: score, Member: id})
	ttl := pipe.PTTL(ctx, s.key(id))
	if _, err := pipe.Exec(ctx); err != nil {
		return fmt.Errorf("store: index %s: %w", id, err)
	}
	if d := ttl.Val(); d > 0 {
		at := s.opts.Clock.Now().Add(d).UnixMilli()
		if err := s.rdb.ZAdd(ctx, s.idxExpiry(), redis.Z{Score: float64(at), Member: id}).Err(); err != nil {
			return fmt.Errorf("store: index %s: %w", id, err)
		}
	}
	return nil
}
