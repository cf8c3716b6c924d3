package campaigns

import "testing"

func TestPriorityRank(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		p    Priority
		want int
	}{{PriorityHigh, 0}, {PriorityNormal, 1}, {"", 1}, {"urgent", 1}, {PriorityLow, 2}} {
		if got := c.p.Rank(); got != c.want || got >= Ranks {
			t.Errorf("%q ranks %d, want %d (of %d)", c.p, got, c.want, Ranks)
		}
	}
}
