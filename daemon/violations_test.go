package daemon

// dumpWindow logs the push arrivals pushsim saw around a violation (a test
// that fails on one shows the crowded window).

import (
	"sort"
	"testing"
	"time"

	"github.com/campaignd/campaignd/pushsim"
)

func dumpWindow(t *testing.T, sim *pushsim.Sim, targets []string, at time.Time) {
	seen := map[time.Time]bool{}
	var ts []time.Time
	for _, id := range targets {
		for _, p := range sim.Pushes(id) {
			if !seen[p.At] {
				seen[p.At] = true
				ts = append(ts, p.At)
			}
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	for i, x := range ts {
		if x.After(at.Add(-1100*time.Millisecond)) && !x.After(at.Add(100*time.Millisecond)) {
			gap := time.Duration(0)
			if i > 0 {
				gap = x.Sub(ts[i-1])
			}
			t.Logf("%s +%s", x.Format("15:04:05.000000"), gap)
		}
	}
}
