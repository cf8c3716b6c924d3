package daemon

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/worker"
)

// windowJSON is a send_window in UTC from..to, each a moment today.
func windowJSON(from, to time.Time) string {
	return fmt.Sprintf(`,"send_window":{"from":%q,"to":%q,"timezone":"UTC"}`, from.UTC().Format("15:04:05"), to.UTC().Format("15:04:05"))
}

// A window that closes mid-campaign: no call of the campaign goes after
// the close; the campaign waits as scheduled, start_at its next opening
// (tomorrow), not final.
func TestSendWindowClosesMidCampaign(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	// From an hour ago to 3 s ahead (a window across midnight when that
	// hour spans it: the same times of day mean the same moments).
	now := time.Now().Truncate(time.Second)
	from, closes := now.Add(-time.Hour), now.Add(3*time.Second)
	targets := ids("win", 6000) // 60 calls: 6 s
	w.publish(t, "campaigns.submit", campaignJSON("win", targets, windowJSON(from, closes)), "win")
	st := r.waitState(t, "win", campaigns.StateScheduled, 15*time.Second)
	if st.StartAt == nil || st.StartAt.Sub(from.Add(24*time.Hour)).Abs() > time.Second {
		t.Fatalf("waits for %v, want its next opening %s", st.StartAt, from.Add(24*time.Hour))
	}
	var sent []time.Time
	for _, id := range targets {
		for _, p := range w.sim.Sim().Pushes(id) {
			sent = append(sent, p.At)
		}
	}
	late := 0
	for _, at := range sent {
		if at.After(closes.Add(onTheWire)) {
			late++
		}
	}
	if len(sent) == 0 || len(sent) >= len(targets) || late > 0 {
		t.Fatalf("%d targets pushed before the close (want some, not all), %d after it", len(sent), late)
	}
	time.Sleep(1500 * time.Millisecond) // nothing more goes while the window is closed
	if n := w.sim.Sim().Stats().TotalPushes; n != len(sent) {
		t.Fatalf("%d pushes after the window closed", n-len(sent))
	}
	if got := r.waitState(t, "win", campaigns.StateScheduled, time.Second); got.Status.Final() || got.Sent != int64(len(sent)) {
		t.Fatalf("%+v", got)
	}
}

// A window that opens in a few seconds: the campaign is scheduled until
// then, no call goes before the opening, the first within 1.5 s after it,
// and it completes.
func TestSendWindowOpensSoon(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	opens := time.Now().Truncate(time.Second).Add(3 * time.Second)
	targets := ids("soon", 1000)
	w.publish(t, "campaigns.submit", campaignJSON("soon", targets, windowJSON(opens, opens.Add(time.Hour))), "soon")
	st := r.waitState(t, "soon", campaigns.StateScheduled, 5*time.Second)
	if st.StartAt == nil || !st.StartAt.Equal(opens) {
		t.Fatalf("scheduled for %v, want %s", st.StartAt, opens)
	}
	if st := r.waitFinal(t, "soon", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 1000 {
		t.Fatalf("%+v", st)
	}
	first, _ := w.arrivals(t, targets)
	t.Logf("opened %s, first call %s", opens.Format("15:04:05.000"), first.Format("15:04:05.000"))
	if first.Before(opens) || first.After(opens.Add(1500*time.Millisecond)) {
		t.Fatalf("first call %s, window opened %s", first, opens)
	}
}

// A window closed 2 s a day (from 5 s ahead round midnight to 3 s
// ahead): the campaign stops at the close, runs again within 1.5 s of
// the opening, and completes; nothing goes while it is closed.
func TestSendWindowReopens(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	now := time.Now().Truncate(time.Second)
	closes, opens := now.Add(3*time.Second), now.Add(5*time.Second)
	targets := ids("again", 6000) // 60 calls: 6 s, with 2 s closed
	body := campaignJSON("again", targets, windowJSON(opens, closes))
	fc, raw := w.forecastNATS(t, body)
	if fc.DoneAt == nil || !strings.Contains(strings.Join(fc.Notes, "\n"), "its send window closes at") {
		t.Fatalf("forecast: %s", raw)
	}
	w.publish(t, "campaigns.submit", body, "again")
	if st := r.waitFinal(t, "again", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 6000 {
		t.Fatalf("%+v", st)
	}
	if _, last := w.arrivals(t, targets); fc.DoneAt.Sub(last).Abs() > 1500*time.Millisecond {
		t.Errorf("forecast the last call at %s, it went at %s", fc.DoneAt.Format("15:04:05.000"), last.Format("15:04:05.000"))
	} else {
		t.Logf("forecast the last call at %s, it went at %s", fc.DoneAt.Format("15:04:05.000"), last.Format("15:04:05.000"))
	}
	var inGap int
	var after time.Time
	for _, id := range targets {
		for _, p := range w.sim.Sim().Pushes(id) {
			switch {
			case p.At.After(closes.Add(onTheWire)) && p.At.Before(opens):
				inGap++
			case !p.At.Before(opens) && (after.IsZero() || p.At.Before(after)):
				after = p.At
			}
		}
	}
	t.Logf("closed %s to %s; first call after %s", closes.Format("15:04:05"), opens.Format("15:04:05"), after.Format("15:04:05.000"))
	if inGap > 0 || after.IsZero() || after.After(opens.Add(1500*time.Millisecond)) {
		t.Fatalf("%d targets pushed while closed; first after the opening at %s", inGap, after)
	}
}

// A label push queued while its window is open but whose task-window
// slot frees only after the window closed: its task is not created; it
// waits as scheduled for tomorrow's opening.
func TestSendWindowClosesBeforeTheTaskSlot(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{TaskWindow: shortWindow})
	r := start(t, w.taskConfig(t))
	submitJSON(t, w, map[string]any{"id": "fans", "kind": "label_members", "action": "add", "label": "fans", "targets": ids("fan", 20)})
	r.waitFinal(t, "fans", 20*time.Second)
	for i := range 3 { // the caps: 3 creations in 10 s
		w.publish(t, "campaigns.submit", labelPush(fmt.Sprintf("cap-%d", i), "fans", ""), "")
		r.waitFinal(t, fmt.Sprintf("cap-%d", i), 10*time.Second)
	}
	now := time.Now().Truncate(time.Second)
	from, closes := now.Add(-time.Hour), now.Add(2*time.Second)
	w.publish(t, "campaigns.submit", labelPush("late", "fans", windowJSON(from, closes)), "late")
	testenv.WaitFor(t, 20*time.Second, "the late label push to wait for tomorrow's opening", func() (campaigns.Status, bool) {
		var st campaigns.Status
		getJSON(t, r.base+"/api/campaigns/late", &st)
		return st, st.Status == campaigns.StateScheduled && st.StartAt != nil && st.StartAt.Sub(from.Add(24*time.Hour)).Abs() < time.Second
	})
	if n := len(w.sim.Sim().Stats().TaskLog); n != 3 {
		t.Fatalf("%d tasks created, want the 3 before it", n)
	}
	// It comes back to the task queue at the opening: its plan task waits
	// in asynq until then.
	insp := asynq.NewInspector(asynq.RedisClientOpt{Addr: w.redis.Addr})
	defer insp.Close()
	opens := from.Add(24 * time.Hour)
	info, err := insp.GetTaskInfo(worker.QueueFor(campaigns.PriorityNormal), fmt.Sprintf("late:plan@%d", opens.Unix()))
	if err != nil || info.State != asynq.TaskStateScheduled || info.NextProcessAt.After(opens) {
		t.Fatalf("its plan at the opening: %+v %v", info, err)
	}
}
