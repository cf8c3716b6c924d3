package testenv

import (
	"encoding/json"
	"net/http"
	"net/url"
	"testing"
	"time"

	"github.com/campaignd/campaignd/pushsim"
)

// SimStats reads the stats of the pushsim process at simURL.
func SimStats(tb testing.TB, simURL string) pushsim.Stats {
	tb.Helper()
	var st pushsim.Stats
	getJSON(tb, simURL+"/_sim/stats", &st)
	return st
}

// SimPushes is when the pushsim process at simURL received each push of
// target.
func SimPushes(tb testing.TB, simURL, target string) []time.Time {
	tb.Helper()
	var out struct {
		Pushes []struct {
			At time.Time `json:"at"`
		} `json:"pushes"`
	}
	getJSON(tb, simURL+"/_sim/pushes?target="+url.QueryEscape(target), &out)
	ts := make([]time.Time, 0, len(out.Pushes))
	for _, p := range out.Pushes {
		ts = append(ts, p.At)
	}
	return ts
}

func getJSON(tb testing.TB, u string, v any) {
	tb.Helper()
	resp, err := http.Get(u)
	if err != nil {
		tb.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		tb.Fatalf("testenv: GET %s: %s", u, resp.Status)
	}
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		tb.Fatalf("testenv: GET %s: %v", u, err)
	}
}
