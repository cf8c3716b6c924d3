// Package judge reads pushsim's record for the end-to-end tests: how fast
// sending came back after a fault, and the calls around a violation; and
// campaignd's status API.
package judge

import (
	"encoding/json"
	"fmt"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/pushsim"
)

// FullRateAfter returns how long after now sending took to reach perSecond
// pushes within a second (the end of the first such second, less 1 s),
// from pushsim's count sampled every 10 ms, counting from base pushes; at
// most 30 s.
func FullRateAfter(sim *pushsim.Sim, base, perSecond int) time.Duration {
	type sample struct {
		at time.Time
		n  int
	}
	start := time.Now()
	samples := []sample{{start, base}}
	for time.Since(start) < 30*time.Second {
		time.Sleep(10 * time.Millisecond)
		now := sample{time.Now(), sim.Stats().TotalPushes}
		samples = append(samples, now)
		for _, old := range samples {
			if now.at.Sub(old.at) <= time.Second {
				if now.n-old.n >= perSecond {
					return max(now.at.Sub(start)-time.Second, 0)
				}
				break
			}
		}
	}
	return 30 * time.Second
}

// CallsAround lists the push calls pushsim saw in the 1.1 s before at (and
// 100 ms after), one line each with the gap to the one before, from the
// pushes of targets (one target per call is enough to date the calls).
func CallsAround(sim *pushsim.Sim, targets []string, at time.Time) string {
	seen := map[time.Time]bool{}
	var ts []time.Time
	for _, t := range targets {
		for _, p := range sim.Pushes(t) {
			if !seen[p.At] && p.At.After(at.Add(-1100*time.Millisecond)) && !p.At.After(at.Add(100*time.Millisecond)) {
				seen[p.At] = true
				ts = append(ts, p.At)
			}
		}
	}
	sort.Slice(ts, func(i, j int) bool { return ts[i].Before(ts[j]) })
	var b strings.Builder
	for i, x := range ts {
		gap := time.Duration(0)
		if i > 0 {
			gap = x.Sub(ts[i-1])
		}
		fmt.Fprintf(&b, "%s +%s\n", x.Format("15:04:05.000000"), gap)
	}
	return b.String()
}

// CampaignStatus asks campaignd's status API at each of apis in turn for
// a campaign's status; found is false when none answered it.
func CampaignStatus(c *http.Client, apis []string, id string) (st campaigns.Status, found bool) {
	for _, api := range apis {
		resp, err := c.Get(api + "/api/campaigns/" + id)
		if err != nil {
			continue
		}
		err = json.NewDecoder(resp.Body).Decode(&st)
		resp.Body.Close()
		if err == nil && resp.StatusCode == http.StatusOK {
			return st, true
		}
	}
	return campaigns.Status{}, false
}
