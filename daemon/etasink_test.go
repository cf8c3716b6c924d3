package daemon

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/store"
)

// recordSink keeps what it is given.
type recordSink struct {
	mu  sync.Mutex
	got []campaigns.Status
}

func (r *recordSink) Publish(_ context.Context, st campaigns.Status) error {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, st)
	return nil
}

// A status event that waited while its campaign ended (the status stream
// had no leader) is dropped rather than published after the final event:
// a reader of the last event would see the campaign running again. The
// final event, and the events of campaigns not final, go on.
func TestETASinkDropsEventsOfEndedCampaigns(t *testing.T) {
	t.Parallel()
	st := store.New(testenv.StartRedis(t).Client(t), store.Options{})
	ctx := context.Background()
	c := &campaigns.Campaign{ID: "ended", App: "default", Kind: campaigns.KindBatchPush, Targets: []string{"a"}}
	if _, _, err := st.Create(ctx, c, time.Now()); err != nil {
		t.Fatal(err)
	}
	rec := &recordSink{}
	sink := etaSink{next: rec, f: newForecaster(config.Config{}, st, nil, nil, nil, clock.Real{}), store: st}
	publish := func(id string, state campaigns.State) {
		t.Helper()
		if err := sink.Publish(ctx, campaigns.Status{ID: id, Status: state}); err != nil {
			t.Fatal(err)
		}
	}
	publish("ended", campaigns.StateRunning) // still running: published
	if _, _, err := st.Transition(ctx, "ended", campaigns.StateCancelled); err != nil {
		t.Fatal(err)
	}
	publish("ended", campaigns.StateRunning) // waited while it ended: dropped
	publish("ended", campaigns.StateCancelled)
	publish("unknown", campaigns.StateRunning) // not in the store: published
	var got []string
	for _, e := range rec.got {
		got = append(got, e.ID+" "+string(e.Status))
	}
	want := []string{"ended running", "ended cancelled", "unknown running"}
	if !slices.Equal(got, want) {
		t.Fatalf("published %q, want %q", got, want)
	}
}
