package campaigns

import "testing"

func TestOutcome(t *testing.T) {
	t.Parallel()
	for _, c := range []struct {
		sent, failed, dropped int64
		want                  State
	}{
		{10, 0, 0, StateCompleted},
		{0, 0, 0, StateCompleted}, // nothing to send
		{5, 0, 5, StateExpired},
		{0, 0, 5, StateExpired},
		{0, 5, 0, StateFailed},
		{5, 5, 0, StatePartiallyFailed},
		{0, 5, 5, StatePartiallyFailed},
		{5, 5, 5, StatePartiallyFailed},
	} {
		if got := Outcome(c.sent, c.failed, c.dropped); got != c.want {
			t.Errorf("Outcome(sent %d, failed %d, dropped %d) = %s, want %s", c.sent, c.failed, c.dropped, got, c.want)
		}
	}
}
