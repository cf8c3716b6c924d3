package daemon

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/sendwindow"
)

// The zones of the local-time tests: a window from an hour ago to an hour
// ahead (UTC times of day) is open in UTC now and closed twelve hours
// east, in Etc/GMT-12 (UTC+12), until its next opening there.
const (
	openZone   = "UTC"
	closedZone = "Etc/GMT-12"
)

// localWindow is the send_window of the local-time tests, and when it
// next opens in closedZone.
func localWindow(t *testing.T) (string, time.Time) {
	t.Helper()
	now := time.Now().Truncate(time.Second)
	from, to := now.Add(-time.Hour).UTC().Format("15:04:05"), now.Add(time.Hour).UTC().Format("15:04:05")
	east, err := time.LoadLocation(closedZone)
	if err != nil {
		t.Fatal(err)
	}
	w, _, err := sendwindow.New(from, to, east)
	if err != nil {
		t.Fatal(err)
	}
	if w.Open(now) {
		t.Fatalf("the window is open in %s", closedZone)
	}
	return fmt.Sprintf(`,"send_window":{"from":%q,"to":%q,"timezone":"UTC","local_time":true}`, from, to), w.NextOpen(now)
}

// localTargets are n targets in the open zone and n in the closed one,
// each id listed a second time with the other zone (the first wins), and
// n more without a zone (the window's, open). It returns the lines and
// the ids that may go and that must not.
func localTargets(n int) (lines, open, closed []string) {
	for i := range n {
		o, c, d := fmt.Sprintf("o%04d", i), fmt.Sprintf("c%04d", i), fmt.Sprintf("d%04d", i)
		lines = append(lines, o+","+openZone, c+","+closedZone, d)
		open, closed = append(open, o, d), append(closed, c)
	}
	for i := range n { // repeats: the first zone given wins
		lines = append(lines, fmt.Sprintf("o%04d,%s", i, closedZone), fmt.Sprintf("c%04d,%s", i, openZone))
	}
	return lines, open, closed
}

// checkLocalTime checks a local-time campaign of localTargets(n): every
// open-zone target sent once with its plain id, none of the closed
// zone's, and the campaign scheduled until the closed zone's opening,
// with that opening as next_opening.
func checkLocalTime(t *testing.T, w *world, r *running, id string, n int, lines, open, closed []string, opens time.Time) campaigns.Status {
	t.Helper()
	st := r.waitState(t, id, campaigns.StateScheduled, 30*time.Second)
	if st.StartAt == nil || !st.StartAt.Equal(opens) || st.NextOpening == nil || !st.NextOpening.Equal(opens) {
		t.Errorf("scheduled with start_at %v, next_opening %v; want both %s (%s's opening)", st.StartAt, st.NextOpening, opens, closedZone)
	}
	if st.Sent != int64(2*n) || st.Duplicates != int64(2*n) || st.TargetsTotal != int64(3*n) || st.Status.Final() {
		t.Errorf("status %+v: want %d sent, %d duplicates, %d targets, not final", st, 2*n, 2*n, 3*n)
	}
	sim := w.sim.Sim()
	for _, o := range open {
		if got := len(sim.Pushes(o)); got != 1 {
			t.Fatalf("%s pushed %d times, want once", o, got)
		}
	}
	for _, c := range closed {
		if got := len(sim.Pushes(c)); got != 0 {
			t.Fatalf("%s (in %s, closed) pushed %d times", c, closedZone, got)
		}
	}
	for _, l := range lines { // plain ids on the wire
		if strings.Contains(l, ",") && len(sim.Pushes(l)) > 0 {
			t.Fatalf("pushed with its zone: %q", l)
		}
	}
	if total := sim.Stats().TotalPushes; total != 2*n {
		t.Fatalf("%d pushes in all, want %d", total, 2*n)
	}
	time.Sleep(time.Second) // a window of real time: nothing more goes while the zone is closed
	if total := sim.Stats().TotalPushes; total != 2*n {
		t.Fatalf("%d pushes after the open zones were sent", total-2*n)
	}
	return st
}

// Local time with inline targets in two zones, one open and one closed:
// the open zone's targets (and those without a zone, in the window's)
// are sent once each, with their plain ids; none of the closed zone's.
// The campaign then waits, scheduled, for the closed zone's opening.
func TestLocalTimeTargets(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 50}))
	window, opens := localWindow(t)
	const n = 450
	lines, open, closed := localTargets(n)
	w.publish(t, "campaigns.submit", campaignJSON("local", lines, window), "local")
	checkLocalTime(t, w, r, "local", n, lines, open, closed, opens)

	// The campaigns page, and the campaign's, show the next zone's opening.
	iso := opens.UTC().Format(time.RFC3339)
	for _, page := range []string{"/campaigns/", "/campaigns/local"} {
		if body := getBody(t, r.base+page); !strings.Contains(body, "ext zone opens") || !strings.Contains(body, iso) ||
			!strings.Contains(body, "1 waiting for their window (the next opens at") {
			t.Errorf("%s does not show the next zone's opening (%s) and the zones' note:\n%s", page, iso, body)
		}
	}
	// Pause, resume and cancel work while it waits: resumed, it waits
	// again, scheduled for the closed zone's opening.
	w.publish(t, "campaigns.pause", []byte(`{"id":"local"}`), "")
	r.waitState(t, "local", campaigns.StatePaused, 10*time.Second)
	w.publish(t, "campaigns.resume", []byte(`{"id":"local"}`), "")
	if st := r.waitState(t, "local", campaigns.StateScheduled, 10*time.Second); st.StartAt == nil || !st.StartAt.Equal(opens) {
		t.Fatalf("resumed: %+v, want scheduled for %s", st, opens)
	}
	w.publish(t, "campaigns.cancel", []byte(`{"id":"local"}`), "")
	if st := r.waitFinal(t, "local", 10*time.Second); st.Status != campaigns.StateCancelled || st.NextOpening != nil {
		t.Fatalf("%+v", st)
	}
}

// The same with an audience object, which also holds a line with an
// unknown zone (left out and counted invalid).
func TestLocalTimeAudience(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 50}))
	window, opens := localWindow(t)
	const n = 450
	lines, open, closed := localTargets(n)
	body := strings.Join(append(lines, "x0001,Mars/Olympus", "x0002,"), "\n")
	if err := intake.UploadAudience(context.Background(), w.js, "audiences", "local.txt", strings.NewReader(body)); err != nil {
		t.Fatal(err)
	}
	w.publish(t, "campaigns.submit", []byte(`{"id":"local-aud","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"audiences","object":"local.txt"}`+window+`}`), "local-aud")
	st := checkLocalTime(t, w, r, "local-aud", n, lines, open, closed, opens)
	if st.Invalid != 2 {
		t.Errorf("%d invalid lines, want 2 (an unknown zone, an empty one)", st.Invalid)
	}
	for _, x := range []string{"x0001", "x0002"} {
		if len(w.sim.Sim().Pushes(x)) > 0 {
			t.Errorf("%s, of an invalid zone, pushed", x)
		}
	}
}

// A local-time campaign whose targets are all in closed zones is
// scheduled for the first opening without sending anything, and one
// whose closed zone waits past its expires_at ends expired (invalid
// zones are rejected naming the target: TestKindBadInputIsRejected).
func TestLocalTimeAllClosed(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 50}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 50}))
	window, opens := localWindow(t)
	w.publish(t, "campaigns.submit", campaignJSON("asleep", []string{"z1," + closedZone, "z2," + closedZone}, window), "asleep")
	st := r.waitState(t, "asleep", campaigns.StateScheduled, 20*time.Second)
	if st.StartAt == nil || !st.StartAt.Equal(opens) || st.Sent != 0 {
		t.Fatalf("%+v: want scheduled for %s, nothing sent", st, opens)
	}
	// expires_at still ends it: expired, its waiting targets dropped.
	expires := time.Now().Add(2 * time.Second).UTC().Format(time.RFC3339Nano)
	w.publish(t, "campaigns.submit", campaignJSON("asleep-exp", []string{"z3," + closedZone, "z4," + closedZone, "z5"},
		window+`,"expires_at":"`+expires+`"`), "asleep-exp")
	if st := r.waitFinal(t, "asleep-exp", 20*time.Second); st.Status != campaigns.StateExpired || st.Sent != 1 || st.Dropped != 2 {
		t.Fatalf("%+v: want expired, 1 sent (z5, in the window's open zone), 2 dropped", st)
	}
	if n := w.sim.Sim().Stats().TotalPushes; n != 1 || len(w.sim.Sim().Pushes("z5")) != 1 {
		t.Fatalf("%d pushes, want z5's alone", n)
	}
}

// Local time with a zone that opens in a few seconds: its targets wait
// while another zone's go, then go from its opening (the first call
// within 1.5 s after it, none before); a third zone stays closed.
func TestLocalTimeZoneOpensSoon(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 20}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 20}))
	now := time.Now().Truncate(time.Second)
	opens := now.Add(3 * time.Second)
	// From 3 s ahead to 2 h ahead, UTC times of day: open now an hour
	// east (Etc/GMT-1), opening in 3 s in UTC, closed twelve hours east.
	window := fmt.Sprintf(`,"send_window":{"from":%q,"to":%q,"timezone":"UTC","local_time":true}`,
		opens.UTC().Format("15:04:05"), now.Add(2*time.Hour).UTC().Format("15:04:05"))
	var lines, east, soon, asleep []string
	for i := range 300 {
		e, s, a := fmt.Sprintf("e%04d", i), fmt.Sprintf("s%04d", i), fmt.Sprintf("a%04d", i)
		lines = append(lines, e+",Etc/GMT-1", s+",UTC", a+","+closedZone)
		east, soon, asleep = append(east, e), append(soon, s), append(asleep, a)
	}
	body := campaignJSON("soon-zone", lines, window)
	fc, raw := w.forecastNATS(t, body)
	if fc.DoneAt == nil || !strings.Contains(strings.Join(fc.Notes, "\n"), "local time: 3 zones, 2 waiting for their window") {
		t.Fatalf("forecast: %s", raw)
	}
	w.publish(t, "campaigns.submit", body, "soon-zone")
	waitPushes(t, w, 600, 20*time.Second)
	firstEast, _ := w.arrivals(t, east)
	firstSoon, lastSoon := w.arrivals(t, soon)
	t.Logf("Etc/GMT-1 from %s; UTC opened %s, its calls %s to %s", firstEast.Format("15:04:05.000"),
		opens.Format("15:04:05.000"), firstSoon.Format("15:04:05.000"), lastSoon.Format("15:04:05.000"))
	if !firstEast.Before(opens) {
		t.Errorf("the open zone waited for the other's opening: first call %s", firstEast)
	}
	if firstSoon.Before(opens) || firstSoon.After(opens.Add(1500*time.Millisecond)) {
		t.Errorf("UTC's first call %s, its window opened %s", firstSoon, opens)
	}
	for _, a := range asleep {
		if n := len(w.sim.Sim().Pushes(a)); n > 0 {
			t.Fatalf("%s (in %s, closed) pushed", a, closedZone)
		}
	}
	st := r.waitState(t, "soon-zone", campaigns.StateScheduled, 10*time.Second)
	if st.Sent != 600 {
		t.Fatalf("%+v", st)
	}
	// The forecast's end is the closed zone's last call, tomorrow: 300
	// targets at 20/s from its opening, the last 100 ms before it ends.
	far, _ := time.LoadLocation(closedZone)
	wFar, _, _ := sendwindow.New(opens.UTC().Format("15:04:05"), now.Add(2*time.Hour).UTC().Format("15:04:05"), far)
	wantEnd := wFar.NextOpen(now).Add(100 * time.Millisecond)
	if d := fc.DoneAt.Sub(wantEnd).Abs(); d > 100*time.Millisecond {
		t.Errorf("forecast done_at %s, want %s (the closed zone's 3 calls at 20/s from its opening)", fc.DoneAt, wantEnd)
	}
	// So is the ETA of the campaign waiting for it.
	if st.ETA == nil || st.ETA.Sub(wantEnd).Abs() > time.Second {
		t.Errorf("eta %v, want about %s", st.ETA, wantEnd)
	}
}

// A local-time forecast given its audience's count by zone (HTTP
// ?audience_zones=, as campaignctl's header): each zone in its window; a
// malformed count is a 400 naming the parameter.
func TestLocalTimeForecastGivenZones(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSingle: 50}))
	window, opens := localWindow(t)
	body := []byte(`{"id":"lt-fc","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"audiences","object":"none"}` + window + `}`)
	post := func(query string) (int, campaigns.Forecast, string) {
		t.Helper()
		resp, err := http.Post(r.base+"/api/forecast?"+query, "application/json", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		raw, _ := io.ReadAll(resp.Body)
		var fc campaigns.Forecast
		_ = json.Unmarshal(raw, &fc)
		return resp.StatusCode, fc, string(raw)
	}
	zones := url.QueryEscape(`{"UTC":300,"` + closedZone + `":300}`)
	code, fc, raw := post("audience_targets=600&audience_zones=" + zones)
	if code != 200 || fc.TargetsTotal != 600 || !strings.Contains(strings.Join(fc.Notes, "\n"), "local time: 2 zones, 1 waiting for their window") {
		t.Fatalf("%d %s", code, raw)
	}
	// The closed zone's 3 calls at 50/s from its opening.
	if fc.DoneAt == nil || fc.DoneAt.Sub(opens.Add(40*time.Millisecond)).Abs() > 50*time.Millisecond {
		t.Errorf("done_at %v, want about %s", fc.DoneAt, opens.Add(40*time.Millisecond))
	}
	// Each zone's batches are its own: 150 + 150 targets are 2 + 2 calls.
	half := url.QueryEscape(`{"UTC":150,"` + closedZone + `":150}`)
	if code, fc, raw := post("audience_targets=300&audience_zones=" + half); code != 200 || fc.Calls["push_single"] != 4 {
		t.Errorf("%d %s: want 4 push_single calls", code, raw)
	}
	for _, q := range []string{"audience_zones=" + zones, "audience_targets=600&audience_zones=%7B%22UTC%22%3A-1%7D", "audience_targets=600&audience_zones=nope"} {
		if code, _, raw := post(q); code != 400 || !strings.Contains(raw, "audience_zones") {
			t.Errorf("?%s: %d %s, want 400 naming audience_zones", q, code, raw)
		}
	}
}
