package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// The controls at the provider's real rates (10 calls/s), judged on
// pushsim's record of arrival times, not on campaignd's own view.

// arrivals returns each target's push arrival times at pushsim.
func arrivals(sim *pushsim.Sim, targets []string) map[string][]time.Time {
	out := map[string][]time.Time{}
	for _, t := range targets {
		for _, p := range sim.Pushes(t) {
			out[t] = append(out[t], p.At)
		}
	}
	return out
}

func span(a map[string][]time.Time) (first, last time.Time, n int) {
	for _, ts := range a {
		for _, t := range ts {
			if first.IsZero() || t.Before(first) {
				first = t
			}
			if t.After(last) {
				last = t
			}
			n++
		}
	}
	return first, last, n
}

func (r *running) waitState(t testing.TB, id string, want campaigns.State, within time.Duration) campaigns.Status {
	t.Helper()
	return testenv.WaitFor(t, within, fmt.Sprintf("%s to be %s", id, want), func() (campaigns.Status, bool) {
		var st campaigns.Status
		return st, getJSON(t, r.base+"/api/campaigns/"+id, &st) == 200 && st.Status == want
	})
}

const onTheWire = 10 * time.Millisecond // a request written before a decision may arrive this much after it

// waitPushes waits until pushsim has had n pushes in all.
func waitPushes(t testing.TB, w *world, n int, within time.Duration) {
	t.Helper()
	testenv.WaitFor(t, within, fmt.Sprintf("%d pushes", n), func() (int, bool) {
		got := w.sim.Sim().Stats().TotalPushes
		return got, got >= n
	})
}

func TestPauseHoldsAtTheProviderRate(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	targets := ids("p", 3000)
	w.publish(t, "campaigns.submit", campaignJSON("pause-3000", targets, ""), "pause-3000")
	r.waitState(t, "pause-3000", campaigns.StateRunning, 10*time.Second)
	waitPushes(t, w, 1200, 20*time.Second) // it sends at the provider rate for a while: 12 calls of 100
	w.publish(t, "campaigns.pause", []byte(`{"id":"pause-3000"}`), "")
	paused := r.waitState(t, "pause-3000", campaigns.StatePaused, 5*time.Second)
	time.Sleep(3 * time.Second) // longer than the backlog any process held
	var st campaigns.Status
	getJSON(t, r.base+"/api/campaigns/pause-3000", &st)
	if st.Status != campaigns.StatePaused {
		t.Fatalf("not paused 3 s after the pause: %+v", st)
	}
	a := arrivals(w.sim.Sim(), targets)
	_, last, n := span(a)
	if last.After(paused.At.Add(onTheWire)) {
		t.Fatalf("a push arrived %s after paused was stored (%d targets pushed)", last.Sub(paused.At), n)
	}
	if n == 0 || n == 3000 {
		t.Fatalf("%d targets pushed before the pause", n)
	}
	w.publish(t, "campaigns.resume", []byte(`{"id":"pause-3000"}`), "")
	st = r.waitFinal(t, "pause-3000", 60*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 3000 {
		t.Fatalf("after resume: %+v", st)
	}
	sim := w.sim.Sim().Stats()
	noViolations(t, sim)
	if sim.TargetsPushed != 3000 || sim.MaxPushesOneID != 1 {
		t.Fatalf("pushed %d distinct, at most %d per target", sim.TargetsPushed, sim.MaxPushesOneID)
	}
}

func TestHighPriorityOvertakesAtTheProviderRate(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	big := ids("big", 20000)
	w.publish(t, "campaigns.submit", campaignJSON("big-normal", big, ""), "big-normal")
	r.waitState(t, "big-normal", campaigns.StateRunning, 20*time.Second)
	waitPushes(t, w, 2000, 30*time.Second) // the big one sends at the provider rate for a while: 20 calls of 100
	high := ids("vip", 200)
	w.publish(t, "campaigns.submit", campaignJSON("small-high", high, `,"priority":"high"`), "small-high")
	st := r.waitFinal(t, "small-high", 20*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 200 {
		t.Fatalf("high: %+v", st)
	}
	w.publish(t, "campaigns.cancel", []byte(`{"id":"big-normal"}`), "")
	r.waitFinal(t, "big-normal", 20*time.Second)

	ha := arrivals(w.sim.Sim(), high)
	hFirst, hLast, hn := span(ha)
	if hn != 200 {
		t.Fatalf("%d high targets pushed", hn)
	}
	// When was the high campaign planned? Its running event.
	planned := w.firstStatus(t, "small-high", campaigns.StateRunning)
	if d := hFirst.Sub(planned.At); d > 200*time.Millisecond {
		t.Fatalf("the high campaign's first push came %s after it was planned (bound: one interval + 100 ms)", d)
	}
	// No batch of the big campaign between the high campaign's pushes.
	for id, ts := range arrivals(w.sim.Sim(), big) {
		for _, at := range ts {
			if at.After(hFirst) && at.Before(hLast) {
				t.Fatalf("big campaign's %s pushed at %s, between the high campaign's first (%s) and last (%s) push",
					id, at.Format("15:04:05.000"), hFirst.Format("15:04:05.000"), hLast.Format("15:04:05.000"))
			}
		}
	}
	noViolations(t, w.sim.Sim().Stats())
}

// firstStatus returns the first status event of id in state want.
func (w *world) firstStatus(t testing.TB, id string, want campaigns.State) campaigns.Status {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	cons, err := w.js.OrderedConsumer(ctx, "CAMPAIGN_STATUS", jetstream.OrderedConsumerConfig{FilterSubjects: []string{"campaigns.status." + id}})
	if err != nil {
		t.Fatal(err)
	}
	for {
		m, err := cons.Next(jetstream.FetchMaxWait(2 * time.Second))
		if err != nil {
			t.Fatalf("no %s event for %s: %v", want, id, err)
		}
		var st campaigns.Status
		if json.Unmarshal(m.Data(), &st) == nil && st.Status == want {
			return st
		}
	}
}

func TestExpiryHoldsAtTheProviderRate(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 5}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 5}))
	targets := ids("x", 15000)
	exp := time.Now().Add(4 * time.Second).UTC()
	w.publish(t, "campaigns.submit", campaignJSON("expiring", targets, `,"expires_at":"`+exp.Format(time.RFC3339Nano)+`"`), "expiring")
	st := r.waitFinal(t, "expiring", 20*time.Second)
	final := time.Now()
	if st.Status != campaigns.StateExpired {
		t.Fatalf("final %+v, want expired", st)
	}
	if d := final.Sub(exp); d > time.Second {
		t.Fatalf("expired %s after expires_at (bound 1 s)", d)
	}
	if st.Sent == 0 || st.Failed != 0 || st.Sent+st.Dropped != 15000 {
		t.Fatalf("sent %d + dropped %d, want 15000 (failed %d)", st.Sent, st.Dropped, st.Failed)
	}
	_, last, n := span(arrivals(w.sim.Sim(), targets))
	if last.After(exp.Add(onTheWire)) {
		t.Fatalf("a push arrived %s after expires_at", last.Sub(exp))
	}
	if int64(n) != st.Sent {
		t.Fatalf("pushsim saw %d targets pushed, the status says %d sent", n, st.Sent)
	}
	noViolations(t, w.sim.Sim().Stats())
}

func TestMissingAudienceFailsAtOnce(t *testing.T) {
	t.Parallel()
	for _, open := range []bool{false, true} {
		mk := newWorld
		if open {
			mk = newOpenWorld
		}
		t.Run(map[bool]string{false: "least privilege", true: "open"}[open], func(t *testing.T) {
			t.Parallel()
			missingAudience(t, mk(t, pushsim.Config{}), open)
		})
	}
}

// missingAudience: a campaign whose audience is missing, or in a bucket
// campaignd may not read, fails at once naming it, and sends nothing.
func missingAudience(t *testing.T, w *world, open bool) {
	r := start(t, w.config(t, config.Limits{}))
	ctx := context.Background()
	if err := intake.UploadAudience(ctx, w.js, "audiences", "there.txt", bytes.NewReader([]byte("a\nb\n"))); err != nil {
		t.Fatal(err)
	}
	cases := []struct{ id, bucket, object, why string }{
		{"no-object", "audiences", "missing.txt", "does not exist"},
	}
	if open {
		cases = append(cases, struct{ id, bucket, object, why string }{"no-bucket", "nope", "x.txt", "does not exist"})
	} else { // campaignd's permissions cover the bucket "audiences" only
		cases = append(cases, struct{ id, bucket, object, why string }{"denied", "nope", "x.txt",
			`NATS permissions do not allow publish to "$JS.API.STREAM.INFO.OBJ_nope"`})
	}
	for _, c := range cases {
		body := `{"id":"` + c.id + `","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"` + c.bucket + `","object":"` + c.object + `"}}`
		t0 := time.Now()
		w.publish(t, "campaigns.submit", []byte(body), c.id)
		st := r.waitFinal(t, c.id, 5*time.Second)
		if took := time.Since(t0); took > 2*time.Second {
			t.Errorf("%s: final after %s", c.id, took)
		}
		if st.Status != campaigns.StateFailed || len(st.Errors) == 0 || st.Errors[0].Field != "audience" ||
			!strings.Contains(st.Errors[0].Message, c.bucket) || !strings.Contains(st.Errors[0].Message, c.object) ||
			!strings.Contains(st.Errors[0].Message, c.why) {
			t.Errorf("%s: %+v", c.id, st)
		}
	}
	if n := w.sim.Sim().Stats().TotalPushes; n != 0 {
		t.Fatalf("%d pushes for campaigns without an audience", n)
	}
}
