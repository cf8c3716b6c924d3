package campaigns

// Progress is how far a campaign is, 0..1: its targets sent, failed or
// dropped of targets_total; for a campaign without targets (a label push,
// a broadcast, a template) its batches done of batches_total; with neither,
// 1 once it is final and 0 before.
func (s Status) Progress() float64 {
	var done, total int64
	switch {
	case s.TargetsTotal > 0:
		done, total = s.Sent+s.Failed+s.Dropped, s.TargetsTotal
	case s.BatchesTotal > 0:
		done, total = s.BatchesDone, s.BatchesTotal
	default:
		if s.Status.Final() {
			return 1
		}
		return 0
	}
	return min(max(float64(done)/float64(total), 0), 1)
}
