package store

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
)

// Bounds of ListQuery.Limit.
const (
	DefaultListLimit = 50
	MaxListLimit     = 500
)

// ErrBadCursor is returned (wrapped) by List for a cursor it did not make.
var ErrBadCursor = errors.New("bad cursor")

// ErrUnknownState is returned (wrapped) by List for a state no stored
// campaign can be in.
var ErrUnknownState = errors.New("not a stored state")

// ListQuery selects a page of campaigns.
type ListQuery struct {
	Status campaigns.State // only campaigns in this state; "" for all
	Limit  int             // page size; 0 for DefaultListLimit, at most MaxListLimit
	Cursor string          // where the page starts: "" for the newest, else a next from List
}

// listScript: KEYS[1] an index set; ARGV[1] the cursor's score ("" for
// the first page), ARGV[2] its member, ARGV[3] how many to return. The set
// is read newest first: score descending, then member descending (Redis
// orders equal scores by member, bytewise). It returns, WITHSCORES, the
// entries after the cursor's place in that order, whether the cursor's
// member is still in the set or not: the ranks above the cursor's score are
// counted, and the entries of equal score (ties) are binary-searched for
// the first member below the cursor's. O(log n · log ties + count).
//
// Members are compared byte by byte: Lua's < follows the server's collation
// locale, which need not be bytewise.
var listScript = redis.NewScript(`
local function below(a, b)
  local n = math.min(#a, #b)
  for i = 1, n do
    local x, y = string.byte(a, i), string.byte(b, i)
    if x ~= y then return x < y end
  end
  return #a < #b
end
local start = 0
if ARGV[1] ~= '' then
  local lo = redis.call('ZCOUNT', KEYS[1], '(' .. ARGV[1], '+inf')
  local hi = lo + redis.call('ZCOUNT', KEYS[1], ARGV[1], ARGV[1])
  while lo < hi do
    local mid = math.floor((lo + hi) / 2)
    local m = redis.call('ZREVRANGE', KEYS[1], mid, mid)[1]
    if below(m, ARGV[2]) then hi = mid else lo = mid + 1 end
  end
  start = lo
end
return redis.call('ZREVRANGE', KEYS[1], start, start + tonumber(ARGV[3]) - 1, 'WITHSCORES')
`)

// List returns a page of stored campaigns, newest submission first (equal
// submission times by id, descending), and the cursor of the next page
// ("" on the last one). Paging with the cursors yields every campaign that
// stays in the selection exactly once, whatever else is submitted,
// changes state or expires meanwhile; a campaign submitted after the first
// page is not in later pages. A campaign whose keys expired between the
// index read and the status read is left out. Each page costs O(log n +
// limit) and one round trip for the statuses.
func (s *Store) List(ctx context.Context, q ListQuery) ([]campaigns.Status, string, error) {
	key := s.idx()
	if q.Status != "" {
		if !slices.Contains(campaigns.StoredStates(), q.Status) {
			return nil, "", fmt.Errorf("store: list: %q: %w", q.Status, ErrUnknownState)
		}
		key = s.idxState(string(q.Status))
	}
	limit := q.Limit
	if limit <= 0 {
		limit = DefaultListLimit
	}
	limit = min(limit, MaxListLimit)
	score, member := "", ""
	if q.Cursor != "" {
		ms, id, err := decodeCursor(q.Cursor)
		if err != nil {
			return nil, "", fmt.Errorf("store: list: %w", err)
		}
		score, member = strconv.FormatInt(ms, 10), id
	}
	if err := s.prune(ctx); err != nil {
		return nil, "", err
	}
	// One more than the page: whether a next page exists.
	raw, err := listScript.Run(ctx, s.rdb, []string{key}, score, member, limit+1).StringSlice()
	if err != nil {
		return nil, "", fmt.Errorf("store: list %s: %w", key, err)
	}
	if len(raw)%2 != 0 {
		return nil, "", fmt.Errorf("store: list %s: odd answer of %d items", key, len(raw))
	}
	type entry struct {
		id string
		ms int64
	}
	entries := make([]entry, 0, len(raw)/2)
	for i := 0; i < len(raw); i += 2 {
		f, err := strconv.ParseFloat(raw[i+1], 64)
		if err != nil {
			return nil, "", fmt.Errorf("store: list %s: score of %s: %w", key, raw[i], err)
		}
		entries = append(entries, entry{id: raw[i], ms: int64(f)})
	}
	next := ""
	if len(entries) > limit {
		entries = entries[:limit]
		last := entries[limit-1]
		next = encodeCursor(last.ms, last.id)
	}
	if len(entries) == 0 {
		return []campaigns.Status{}, "", nil
	}
	pipe := s.rdb.Pipeline()
	cmds := make([]*redis.SliceCmd, len(entries))
	for i, e := range entries {
		cmds[i] = pipe.HMGet(ctx, s.key(e.id), statusFields...)
	}
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, "", fmt.Errorf("store: list %s: statuses: %w", key, err)
	}
	page := make([]campaigns.Status, 0, len(entries))
	for i, e := range entries {
		if st, found := parseStatus(e.id, cmds[i].Val()); found {
			page = append(page, st)
		}
	}
	return page, next, nil
}

// A cursor is the place of the last entry of a page, opaque to clients:
// base64url of "<submission unix ms>:<id>".
func encodeCursor(ms int64, id string) string {
	return base64.RawURLEncoding.EncodeToString([]byte(strconv.FormatInt(ms, 10) + ":" + id))
}

func decodeCursor(c string) (int64, string, error) {
	b, err := base64.RawURLEncoding.DecodeString(c)
	if err != nil {
		return 0, "", fmt.Errorf("cursor %q: %w", c, ErrBadCursor)
	}
	msText, id, ok := strings.Cut(string(b), ":")
	if !ok || !campaigns.ValidID(id) {
		return 0, "", fmt.Errorf("cursor %q: %w", c, ErrBadCursor)
	}
	ms, err := strconv.ParseInt(msText, 10, 64)
	if err != nil || ms < 0 {
		return 0, "", fmt.Errorf("cursor %q: %w", c, ErrBadCursor)
	}
	return ms, id, nil
}

// FailurePage returns the refused targets offset..offset+limit-1 of a
// campaign, in the order they were recorded, and how many it has in all;
// found is false for an unknown campaign. The list only grows while the
// campaign runs, so offsets page it stably.
func (s *Store) FailurePage(ctx context.Context, id string, offset, limit int64) (page []campaigns.Failure, total int64, found bool, err error) {
	if offset < 0 || limit <= 0 {
		return nil, 0, false, fmt.Errorf("store: failures of %s: offset %d, limit %d: want offset ≥ 0 and limit > 0", id, offset, limit)
	}
	pipe := s.rdb.Pipeline()
	exists := pipe.Exists(ctx, s.key(id))
	n := pipe.LLen(ctx, s.failures(id))
	vals := pipe.LRange(ctx, s.failures(id), offset, offset+limit-1)
	if _, err := pipe.Exec(ctx); err != nil {
		return nil, 0, false, fmt.Errorf("store: failures of %s from %d: %w", id, offset, err)
	}
	if exists.Val() == 0 {
		return nil, 0, false, nil
	}
	page = make([]campaigns.Failure, 0, len(vals.Val()))
	for _, v := range vals.Val() {
		var f campaigns.Failure
		if err := json.Unmarshal([]byte(v), &f); err != nil {
			continue
		}
		page = append(page, f)
	}
	return page, n.Val(), true, nil
}
