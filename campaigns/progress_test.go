package campaigns

import "testing"

func TestProgress(t *testing.T) {
	tests := []struct {
		name string
		st   Status
		want float64
	}{
		{"targets", Status{Status: StateRunning, TargetsTotal: 200, Sent: 40, Failed: 5, Dropped: 5, BatchesTotal: 2}, 0.25},
		{"batches without targets", Status{Status: StateRunning, BatchesTotal: 4, BatchesDone: 1}, 0.25},
		{"nothing to count, running", Status{Status: StateScheduled}, 0},
		{"nothing to count, final", Status{Status: StateCompleted}, 1},
		{"counts past the total", Status{Status: StateRunning, TargetsTotal: 10, Sent: 12}, 1},
		{"none yet", Status{Status: StateAccepted, TargetsTotal: 10}, 0},
	}
	for _, tt := range tests {
		if got := tt.st.Progress(); got != tt.want {
			t.Errorf("%s: Progress() = %v, want %v", tt.name, got, tt.want)
		}
	}
}
