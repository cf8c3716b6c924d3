package store

import (
	"context"
	"testing"

	"github.com/redis/go-redis/v9"

	"github.com/campaignd/campaignd/campaigns"
)

// The final-state rule is written once (campaigns.OutcomeRules); the Lua
// the scripts run gives the same state as Go for every mix of counts.
func TestOutcomeIsTheSameInGoAndLua(t *testing.T) {
	t.Parallel()
	s := setup(t)
	script := redis.NewScript(luaOutcome + `return outcome(tonumber(ARGV[1]), tonumber(ARGV[2]), tonumber(ARGV[3]))`)
	counts := []int64{0, 1, 7}
	seen := map[campaigns.State]bool{}
	for _, sent := range counts {
		for _, failed := range counts {
			for _, dropped := range counts {
				got, err := script.Run(context.Background(), s.rdb, nil, sent, failed, dropped).Text()
				if err != nil {
					t.Fatal(err)
				}
				want := campaigns.Outcome(sent, failed, dropped)
				if campaigns.State(got) != want {
					t.Errorf("sent %d failed %d dropped %d: Lua says %s, Go %s", sent, failed, dropped, got, want)
				}
				seen[want] = true
			}
		}
	}
	for _, st := range []campaigns.State{campaigns.StateCompleted, campaigns.StateExpired, campaigns.StateFailed, campaigns.StatePartiallyFailed} {
		if !seen[st] {
			t.Errorf("no mix of counts ends %s", st)
		}
	}
}
