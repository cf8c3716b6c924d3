package campaigns

// Count is what an outcome rule asks of one of a campaign's counts.
type Count int8

// What a rule asks of a count.
const (
	Any     Count = iota // whatever it is
	Zero                 // it is 0
	NonZero              // it is more than 0
)

func (c Count) holds(n int64) bool {
	switch c {
	case Zero:
		return n == 0
	case NonZero:
		return n > 0
	}
	return true
}

// OutcomeRule is one row of the final-state rule: when every count matches,
// the campaign ends in To.
type OutcomeRule struct {
	Sent, Failed, Dropped Count
	To                    State
}

// OutcomeRules is the rule a campaign's final state follows once every
// batch is recorded; the first row that matches wins. It is written once,
// here: Outcome reads it in Go and the store turns it into its Lua scripts'
// outcome(sent, failed, dropped).
//
//   - completed: nothing failed or was dropped;
//   - expired: nothing failed, something was dropped (past expires_at);
//   - failed: everything failed (nothing sent or dropped);
//   - partially_failed: some failed, and some were sent or dropped.
//
// An expiry counts as a drop even when nothing was left to drop, so an
// expired campaign ends expired or partially_failed.
func OutcomeRules() []OutcomeRule {
	return []OutcomeRule{
		{Failed: Zero, Dropped: Zero, To: StateCompleted},
		{Failed: Zero, To: StateExpired},
		{Sent: Zero, Dropped: Zero, To: StateFailed},
		{To: StatePartiallyFailed},
	}
}

// Outcome is the final state of a campaign whose batches are all recorded
// with these counts (OutcomeRules).
func Outcome(sent, failed, dropped int64) State {
	for _, r := range OutcomeRules() {
		if r.Sent.holds(sent) && r.Failed.holds(failed) && r.Dropped.holds(dropped) {
			return r.To
		}
	}
	return StatePartiallyFailed // the last rule matches anything
}
