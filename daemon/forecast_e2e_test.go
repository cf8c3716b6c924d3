package daemon

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

// forecastNATS asks campaigns.forecast, as the world's publisher.
func (w *world) forecastNATS(t *testing.T, body []byte) (campaigns.Forecast, []byte) {
	t.Helper()
	m, err := w.js.Conn().RequestMsg(&nats.Msg{Subject: intake.SubjectForecast, Data: body}, 15*time.Second)
	if err != nil {
		t.Fatalf("forecast request: %v", err)
	}
	var fc campaigns.Forecast
	if err := json.Unmarshal(m.Data, &fc); err != nil {
		t.Fatalf("forecast answer %s: %v", m.Data, err)
	}
	return fc, m.Data
}

// forecastHTTP asks POST /api/forecast.
func (r *running) forecastHTTP(t *testing.T, body []byte) (int, campaigns.Forecast, []byte) {
	t.Helper()
	resp, err := http.Post(r.base+"/api/forecast", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var fc campaigns.Forecast
	if err := json.Unmarshal(raw, &fc); err != nil {
		t.Fatalf("forecast answer %s: %v", raw, err)
	}
	return resp.StatusCode, fc, raw
}

// arrivals is the first and last arrival at pushsim of the targets.
func (w *world) arrivals(t *testing.T, targets []string) (first, last time.Time) {
	t.Helper()
	for _, id := range targets {
		ps := w.sim.Sim().Pushes(id)
		if len(ps) == 0 {
			t.Fatalf("%s never pushed", id)
		}
		at := ps[0].At
		if first.IsZero() || at.Before(first) {
			first = at
		}
		if at.After(last) {
			last = at
		}
	}
	return first, last
}

// within reports whether got is within frac of want or abs of it.
func within(got, want time.Duration, frac float64, abs time.Duration) bool {
	d := math.Abs(float64(got - want))
	return d <= frac*float64(want) || d <= float64(abs)
}

// A forecast answers on NATS and HTTP alike, stores nothing, and rejects
// what intake would reject with intake's errors.
func TestForecastAnswersAndRejects(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	// A fixed start: both answers are the same to the millisecond.
	at := time.Now().Add(48 * time.Hour).In(time.FixedZone("CST", 8*3600)).Format("2006-01-02 15:04:05")
	body := campaignJSON("fc-1", ids("fc", 1000), `,"start_date":"`+at+`"`)
	nfc, nraw := w.forecastNATS(t, body)
	code, hfc, hraw := r.forecastHTTP(t, body)
	if code != 200 || nfc.Status != campaigns.ForecastOK || !bytes.Equal(bytes.TrimSpace(nraw), bytes.TrimSpace(hraw)) {
		t.Fatalf("NATS and HTTP differ (HTTP %d):\n%s\n%s", code, nraw, hraw)
	}
	if hfc.TargetsTotal != 1000 || hfc.Calls["push_single"] != 10 || hfc.StartAt == nil || hfc.DoneAt == nil {
		t.Fatalf("%s", hraw)
	}
	if want := 9 * time.Second * 1015 / 1000 / 10; !within(hfc.DoneAt.Sub(*hfc.StartAt), want, 0, 5*time.Millisecond) {
		t.Errorf("10 calls at 10/s with the margin: %s from first to last, want %s", hfc.DoneAt.Sub(*hfc.StartAt), want)
	}
	if !strings.Contains(strings.Join(hfc.Notes, "\n"), "start_date") {
		t.Errorf("notes %q say nothing of the start", hfc.Notes)
	}
	var st campaigns.Status
	if c := getJSON(t, r.base+"/api/campaigns/fc-1", &st); c != 404 {
		t.Fatalf("a forecast stored its campaign: %d %+v", c, st)
	}

	bad := []byte(`{"id":"fc-2","kind":"batch_push","push_message":{"t":1},"targets":["a b"],"priority":"urgent"}`)
	nfc, nraw = w.forecastNATS(t, bad)
	code, _, hraw = r.forecastHTTP(t, bad)
	if code != 400 || nfc.Status != "rejected" || !bytes.Equal(bytes.TrimSpace(nraw), bytes.TrimSpace(hraw)) {
		t.Fatalf("rejected differently (HTTP %d):\n%s\n%s", code, nraw, hraw)
	}
	fields := map[string]bool{}
	for _, e := range nfc.Errors {
		fields[e.Field] = true
	}
	if !fields["priority"] || !fields["targets[0]"] {
		t.Fatalf("want intake's errors on priority and targets[0]: %s", nraw)
	}
	if n := w.sim.Sim().Stats().TotalCalls; n != 0 {
		t.Fatalf("a forecast called the provider %d times", n)
	}
}

// A lone batch_push of 6,000 targets at 10/s: the predicted time from the
// first call to the last is within 10% or 1 s of pushsim's arrivals.
func TestForecastLoneBatchPush(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	targets := ids("lone", 6000)
	body := campaignJSON("lone", targets, "")
	fc, raw := w.forecastNATS(t, body)
	if fc.Status != campaigns.ForecastOK || fc.StartAt == nil || fc.DoneAt == nil || fc.Calls["push_single"] != 60 {
		t.Fatalf("%s", raw)
	}
	asked := time.Now()
	w.publish(t, "campaigns.submit", body, "lone")
	if st := r.waitFinal(t, "lone", 30*time.Second); st.Status != campaigns.StateCompleted {
		t.Fatalf("%+v", st)
	}
	first, last := w.arrivals(t, targets)
	pred, real := fc.DoneAt.Sub(*fc.StartAt), last.Sub(first)
	t.Logf("predicted %s (start %s after asking), pushsim %s (first call %s after submitting)", pred, fc.StartAt.Sub(asked).Round(time.Millisecond), real, first.Sub(asked).Round(time.Millisecond))
	if !within(pred, real, 0.10, time.Second) {
		t.Fatalf("predicted %s from first to last call, pushsim saw %s", pred, real)
	}
}

// A 2,000-target campaign forecast while a big one of the same priority
// sends: it gets half the rate, and the prediction is within 20% or
// 1.5 s of pushsim's arrivals.
func TestForecastBesideABigCampaign(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	w.publish(t, "campaigns.submit", campaignJSON("big", ids("big", 12000), ""), "big")
	r.waitState(t, "big", campaigns.StateRunning, 10*time.Second)
	waitPushes(t, w, 500, 10*time.Second)

	targets := ids("small", 2000)
	body := campaignJSON("small", targets, "")
	fc, raw := w.forecastNATS(t, body)
	if fc.Status != campaigns.ForecastOK || fc.StartAt == nil || fc.DoneAt == nil || fc.Ahead.Campaigns != 1 || fc.Ahead.Calls["push_single"] <= 0 {
		t.Fatalf("%s", raw)
	}
	if !strings.Contains(strings.Join(fc.Notes, "\n"), "shares push_single with 1 campaign of the same priority") {
		t.Errorf("notes %q", fc.Notes)
	}
	w.publish(t, "campaigns.submit", body, "small")
	if st := r.waitFinal(t, "small", 30*time.Second); st.Status != campaigns.StateCompleted {
		t.Fatalf("%+v", st)
	}
	first, last := w.arrivals(t, targets)
	pred, real := fc.DoneAt.Sub(*fc.StartAt), last.Sub(first)
	t.Logf("predicted %s at %.2f/s, pushsim %s", pred, fc.Rates["push_single"], real)
	if !within(pred, real, 0.20, 1500*time.Millisecond) {
		t.Fatalf("predicted %s from first to last call, pushsim saw %s", pred, real)
	}
}

// expires_at too close: the predicted drop is within 5% of the real one.
func TestForecastDropsAtExpiry(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	targets := ids("exp", 20000) // 200 calls: 20 s, half of them after expires_at
	expires := time.Now().Add(10 * time.Second).UTC().Format(time.RFC3339Nano)
	body := campaignJSON("exp", targets, fmt.Sprintf(`,"expires_at":%q`, expires))
	fc, raw := w.forecastNATS(t, body)
	if fc.Status != campaigns.ForecastOK || fc.Dropped <= 0 {
		t.Fatalf("%s", raw)
	}
	w.publish(t, "campaigns.submit", body, "exp")
	st := r.waitFinal(t, "exp", 30*time.Second)
	if st.Status != campaigns.StateExpired {
		t.Fatalf("%+v", st)
	}
	t.Logf("predicted %d dropped, really %d (sent %d)", fc.Dropped, st.Dropped, st.Sent)
	if d := math.Abs(float64(fc.Dropped - st.Dropped)); d > 0.05*float64(st.Dropped) {
		t.Fatalf("predicted %d dropped, really %d", fc.Dropped, st.Dropped)
	}
}

// A running campaign carries its ETA in GET /api/campaigns/{id}, in its
// status events, on the campaigns page and in
// campaignd_campaign_eta_seconds; the ETA is within 1.5 s of its last
// call; paused, it has none.
func TestETAOfARunningCampaign(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 10}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 10}))
	targets := ids("eta", 4000)
	w.publish(t, "campaigns.submit", campaignJSON("eta", targets, ""), "eta")
	r.waitState(t, "eta", campaigns.StateRunning, 10*time.Second)
	waitPushes(t, w, 500, 10*time.Second)
	var st campaigns.Status
	if getJSON(t, r.base+"/api/campaigns/eta", &st) != 200 || st.ETA == nil {
		t.Fatalf("no eta in %+v", st)
	}
	eta := *st.ETA
	ev := testenv.WaitFor(t, 10*time.Second, "a running status event of eta with targets sent", func() (campaigns.Status, bool) {
		st := w.lastStatusOK("eta")
		return st, st.Status == campaigns.StateRunning && st.Sent > 0
	})
	if ev.ETA == nil {
		t.Fatalf("no eta in the running event %+v", ev)
	}
	metricsBody := getBody(t, r.base+"/metrics")
	if !strings.Contains(metricsBody, `campaignd_campaign_eta_seconds{app="default",campaign="eta"}`) {
		t.Errorf("no campaignd_campaign_eta_seconds for eta in /metrics")
	}
	if page := getBody(t, r.base+"/campaigns/"); !strings.Contains(page, `<td data-label="ETA" class="eta"><time datetime="`) {
		t.Errorf("no ETA on the campaigns page")
	} else if !strings.Contains(page, `<small class="muted pace">`) {
		t.Errorf("no rate or reason on the campaigns page")
	}
	if page := getBody(t, r.base+"/campaigns/eta"); !strings.Contains(page, `<dd id="eta"><time datetime="`) || !strings.Contains(page, `<dd id="rates">push_single `) {
		t.Errorf("no ETA or rate on the campaign's page:\n%s", page)
	}
	if st := r.waitFinal(t, "eta", 30*time.Second); st.Status != campaigns.StateCompleted || st.ETA != nil {
		t.Fatalf("final: %+v", st)
	}
	_, last := w.arrivals(t, targets)
	t.Logf("ETA %s, last call %s", eta.Format("15:04:05.000"), last.Format("15:04:05.000"))
	if d := eta.Sub(last); d < -1500*time.Millisecond || d > 1500*time.Millisecond {
		t.Fatalf("ETA %s, last call %s: %s apart", eta, last, d)
	}

	// Paused: nothing can be said.
	w.publish(t, "campaigns.submit", campaignJSON("eta-p", ids("etap", 3000), ""), "eta-p")
	r.waitState(t, "eta-p", campaigns.StateRunning, 10*time.Second)
	w.publish(t, "campaigns.pause", []byte(`{"id":"eta-p"}`), "")
	r.waitState(t, "eta-p", campaigns.StatePaused, 10*time.Second)
	var paused campaigns.Status
	if getJSON(t, r.base+"/api/campaigns/eta-p", &paused) != 200 || paused.ETA != nil {
		t.Fatalf("paused with an eta: %+v", paused)
	}
}

func getBody(t *testing.T, url string) string {
	t.Helper()
	resp, err := http.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// A label push forecast while the task caps are full (3 created in the
// window, 2 running): its predicted creation is within 1 s of the task
// pushsim saw created, and the note says it waits for a slot.
func TestForecastLabelPushWhileCapsFull(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{TaskWindow: shortWindow})
	r := start(t, w.taskConfig(t))
	submitJSON(t, w, map[string]any{"id": "fans", "kind": "label_members", "action": "add", "label": "fans", "targets": ids("fan", 20)})
	r.waitFinal(t, "fans", 20*time.Second)
	for i := range 3 {
		w.publish(t, "campaigns.submit", labelPush(fmt.Sprintf("full-%d", i), "fans", ""), "")
		r.waitFinal(t, fmt.Sprintf("full-%d", i), 10*time.Second) // created: it holds its caps
	}
	body := labelPush("next", "fans", "")
	fc, raw := w.forecastNATS(t, body)
	if fc.Status != campaigns.ForecastOK || fc.StartAt == nil || time.Until(*fc.StartAt) < 2*time.Second ||
		!strings.Contains(strings.Join(fc.Notes, "\n"), "waits for a task slot") {
		t.Fatalf("%s", raw)
	}
	w.publish(t, "campaigns.submit", body, "next")
	if st := r.waitFinal(t, "next", 40*time.Second); st.Status != campaigns.StateCompleted || len(st.ProviderTaskIDs) != 1 {
		t.Fatalf("%+v", st)
	}
	var created time.Time
	for _, tk := range w.sim.Sim().Stats().TaskLog {
		if tk.CreatedAt.After(created) {
			created = tk.CreatedAt
		}
	}
	t.Logf("predicted creation %s, pushsim %s", fc.StartAt.Format("15:04:05.000"), created.Format("15:04:05.000"))
	if d := fc.StartAt.Sub(created); d < -time.Second || d > time.Second {
		t.Fatalf("predicted the task's creation at %s, pushsim created it at %s", fc.StartAt, created)
	}
}
