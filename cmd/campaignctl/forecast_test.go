package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/intake"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/worker"
)

// waitForecasts waits until campaignd answers on campaigns.forecast (it
// subscribes as it starts running, maybe after /readyz answers).
func waitForecasts(t *testing.T, natsURL string) {
	t.Helper()
	nc, err := nats.Connect(natsURL)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	testenv.WaitFor(t, 10*time.Second, "campaignd answering forecasts", func() (error, bool) {
		_, err := nc.Request(intake.SubjectForecast, []byte(`{}`), time.Second)
		return err, err == nil
	})
}

// wantLine finds the line of out matching re, or fails.
func wantLine(t *testing.T, out, re string) []string {
	t.Helper()
	m := regexp.MustCompile(`(?m)^` + re + `$`).FindStringSubmatch(out)
	if m == nil {
		t.Errorf("no line matching %q in:\n%s", re, out)
	}
	return m
}

// notStored checks that campaignd has no campaign id.
func notStored(t *testing.T, api, id string) {
	t.Helper()
	resp, err := http.Get(api + "/api/campaigns/" + id)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNotFound {
		t.Errorf("GET /api/campaigns/%s: %d after a forecast, want 404", id, resp.StatusCode)
	}
}

// campaignctl forecast against a running campaignd: the summary for
// people, --audience counted here, --json, a rejection; nothing stored,
// nothing uploaded.
func TestForecastAgainstCampaignd(t *testing.T) {
	api, natsURL := startCampaignd(t, nil)
	waitForecasts(t, natsURL)
	pushCalls := func(targets int64) int64 {
		return worker.Calls(&campaigns.Campaign{Kind: campaigns.KindBatchPush}, "easemob", targets)["push_single"]
	}

	t.Run("inline targets", func(t *testing.T) {
		var targets []string
		for i := range 250 {
			targets = append(targets, fmt.Sprintf("u%03d", i))
		}
		targets = append(targets, "u000", "u001") // duplicates count once
		tj, _ := json.Marshal(targets)
		f := writeFile(t, "c.json", `{"id":"fc-inline","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":`+string(tj)+`}`)
		code, out, errOut := runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f)
		t.Logf("stdout:\n%s", out)
		if code != exitOK || errOut != "" {
			t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
		}
		wantLine(t, out, `campaign  fc-inline \(batch_push on default\)`)
		wantLine(t, out, `targets   250`)
		wantLine(t, out, fmt.Sprintf(`calls     push_single %d`, pushCalls(250)))
		wantLine(t, out, `starts    \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((now|in [0-9.]+s)\)`)
		wantLine(t, out, `ends      \d{4}-\d\d-\d\d \d\d:\d\d:\d\d UTC \((runs [0-9hms.]+|at its start)\)`)
		wantLine(t, out, `ahead     nothing`)
		wantLine(t, out, `dropped   0`)
		notStored(t, api, "fc-inline")
	})

	t.Run("start_date", func(t *testing.T) {
		at := time.Now().Add(3*time.Hour + 12*time.Minute).UTC().Format(time.RFC3339)
		f := writeFile(t, "c.json", `{"id":"fc-later","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["a","b"],"start_date":"`+at+`"}`)
		code, out, errOut := runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f)
		t.Logf("stdout:\n%s", out)
		if code != exitOK {
			t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
		}
		wantLine(t, out, `starts    `+regexp.QuoteMeta(strings.Replace(strings.TrimSuffix(at, "Z"), "T", " ", 1))+` UTC \(in (3h11m5\ds|3h12m)\)`)
		wantLine(t, out, `notes     - starts at .* \(start_date\)`)
		notStored(t, api, "fc-later")
	})

	t.Run("audience", func(t *testing.T) {
		// 300 distinct ids, 40 repeats, an invalid id and a blank line.
		var aud strings.Builder
		for i := range 300 {
			fmt.Fprintf(&aud, "user%04d\n", i)
			if i == 150 {
				aud.WriteString("bad/id\n\n")
			}
		}
		for i := range 40 {
			fmt.Fprintf(&aud, "user%04d\n", i*7)
		}
		a := writeFile(t, "users.txt", aud.String())
		// Its inline targets give way to the audience, as with submit.
		f := writeFile(t, "c.json", `{"id":"fc-aud","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["x"]}`)
		code, out, errOut := runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f, "--audience", a)
		t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
		if code != exitOK {
			t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
		}
		wantLine(t, out, `targets   300`)
		wantLine(t, out, fmt.Sprintf(`calls     push_single %d`, pushCalls(300)))
		if want := "counted " + a + ": 300 distinct ids from 341 lines; 40 duplicates and 1 invalid line left out\n"; errOut != want {
			t.Errorf("stderr %q, want %q", errOut, want)
		}
		notStored(t, api, "fc-aud")
		// Nothing uploaded.
		nc, err := nats.Connect(natsURL)
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		js, _ := jetstream.New(nc)
		if obs, err := js.ObjectStore(context.Background(), "audiences"); err == nil {
			if _, err := obs.GetInfo(context.Background(), "fc-aud"); !errors.Is(err, jetstream.ErrObjectNotFound) {
				t.Errorf("audiences/fc-aud after a forecast: %v", err)
			}
		} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
			t.Fatal(err)
		}
	})

	t.Run("local-time audience", func(t *testing.T) {
		// 200 ids in two zones, 50 of them again in the other zone (the
		// first wins), one line with an unknown zone.
		var aud strings.Builder
		for i := range 200 {
			fmt.Fprintf(&aud, "lt%04d,%s\n", i, []string{"Asia/Tokyo", "America/New_York"}[i%2])
		}
		for i := range 50 {
			fmt.Fprintf(&aud, "lt%04d,Europe/Paris\n", i)
		}
		aud.WriteString("lt9999,Mars/Olympus\n")
		a := writeFile(t, "zones.txt", aud.String())
		f := writeFile(t, "c.json", `{"id":"fc-lt","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"send_window":{"from":"09:00","to":"21:00","local_time":true}}`)
		code, out, errOut := runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f, "--audience", a, "--json")
		if code != exitOK {
			t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
		}
		if want := "counted " + a + ": 200 distinct ids from 251 lines; 50 duplicates and 1 invalid line left out\n"; errOut != want {
			t.Errorf("stderr %q, want %q", errOut, want)
		}
		var fc campaigns.Forecast
		if err := json.Unmarshal([]byte(out), &fc); err != nil {
			t.Fatalf("%v: %s", err, out)
		}
		if fc.TargetsTotal != 200 || !strings.Contains(strings.Join(fc.Notes, "\n"), "local time: 2 zones") {
			t.Errorf("forecast %s: want 200 targets in 2 zones", out)
		}
		notStored(t, api, "fc-lt")
	})

	t.Run("json", func(t *testing.T) {
		f := writeFile(t, "c.json", `{"id":"fc-json","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["a","b","c"]}`)
		code, out, errOut := runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f, "--json")
		if code != exitOK || errOut != "" {
			t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
		}
		var fc campaigns.Forecast
		if err := json.Unmarshal([]byte(out), &fc); err != nil {
			t.Fatalf("--json output: %v\n%s", err, out)
		}
		if fc.Status != campaigns.ForecastOK || fc.ID != "fc-json" || fc.TargetsTotal != 3 || fc.Calls["push_single"] != pushCalls(3) || fc.StartAt == nil {
			t.Errorf("--json: %+v", fc)
		}
		if !strings.Contains(out, "\n  \"targets_total\": 3,\n") {
			t.Errorf("--json is not indented:\n%s", out)
		}
		notStored(t, api, "fc-json")
	})

	t.Run("rejected", func(t *testing.T) {
		f := writeFile(t, "c.json", `{"id":"fc-bad","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["a/b"],"priority":"urgent"}`)
		code, out, errOut := runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f)
		t.Logf("stdout:\n%s\nstderr:\n%s", out, errOut)
		if code != exitRejected {
			t.Fatalf("exit %d, want %d\n%s\nstderr %q", code, exitRejected, out, errOut)
		}
		var rej campaigns.Rejection
		if err := json.Unmarshal([]byte(out), &rej); err != nil || rej.Status != campaigns.StateRejected {
			t.Fatalf("stdout is not the rejection: %v\n%s", err, out)
		}
		if !strings.Contains(errOut, "would reject fc-bad") || !strings.Contains(errOut, "error: priority:") || !strings.Contains(errOut, "error: targets[0]:") {
			t.Errorf("stderr %q: want the fields at fault", errOut)
		}
		code, out, _ = runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", f, "--json")
		if code != exitRejected || !strings.Contains(out, `"status": "rejected"`) || !strings.Contains(out, `"field": "priority"`) {
			t.Errorf("--json: exit %d\n%s", code, out)
		}
		// No id, with an audience: sent as it is, rejected as intake would.
		noID := writeFile(t, "noid.json", `{"app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"}}`)
		code, out, errOut = runCLI(t, "-nats", natsURL, "-timeout", "10s", "forecast", "-f", noID, "--audience", writeFile(t, "u.txt", "a\nb\n"))
		if code != exitRejected || !strings.Contains(errOut, "error: id: is required") {
			t.Errorf("no id: exit %d\n%s\nstderr %q", code, out, errOut)
		}
		notStored(t, api, "fc-bad")
	})
}

// Against a NATS whose responder plays campaignd: the count goes in the
// header and the audience in the campaign; campaignd's errors, no
// responder and bad arguments exit 2 with a message.
func TestForecastRequestAndErrors(t *testing.T) {
	t.Parallel()
	n := testenv.StartNATS(t)
	nc, err := nats.Connect(n.URL)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	got := make(chan *nats.Msg, 10)
	sub, err := nc.Subscribe(intake.SubjectForecast, func(m *nats.Msg) {
		got <- m
		if strings.Contains(string(m.Data), "redis-down") {
			_ = m.Respond([]byte(`{"status":"error","error":"forecast: redis: connection refused"}`))
			return
		}
		_ = m.Respond([]byte(`{"id":"x","app":"default","kind":"batch_push","status":"ok","targets_total":3,"calls":{"push_single":1},"ahead":{"campaigns":0,"calls":{}},"dropped":0,"notes":[]}`))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}

	a := writeFile(t, "users.txt", "c\na\nb\na\n\n")
	f := writeFile(t, "c.json", `{"id":"x","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["q"]}`)
	code, out, errOut := runCLI(t, "-nats", n.URL, "-timeout", "5s", "forecast", "-f", f, "--audience", a)
	if code != exitOK {
		t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
	}
	m := <-got
	if h := m.Header.Get(intake.HeaderAudienceTargets); h != "3" {
		t.Errorf("header %s = %q, want 3", intake.HeaderAudienceTargets, h)
	}
	var sent map[string]any
	if err := json.Unmarshal(m.Data, &sent); err != nil {
		t.Fatal(err)
	}
	if aud, _ := json.Marshal(sent["audience"]); string(aud) != `{"bucket":"audiences","object":"x"}` || sent["targets"] != nil {
		t.Errorf("sent %s: want the audience as submit names it, no targets", m.Data)
	}
	wantLine(t, out, `starts    unknown`)

	// Without --audience: the campaign as it is, no count.
	if code, out, errOut := runCLI(t, "-nats", n.URL, "-timeout", "5s", "forecast", "-f", f); code != exitOK {
		t.Fatalf("exit %d\n%s\nstderr %q", code, out, errOut)
	}
	if m := <-got; m.Header.Get(intake.HeaderAudienceTargets) != "" || !strings.Contains(string(m.Data), `"targets":["q"]`) {
		t.Errorf("sent %s with header %v", m.Data, m.Header)
	}

	down := writeFile(t, "down.json", `{"id":"redis-down","app":"default","kind":"batch_push","push_message":{"title":"t","content":"c"},"targets":["q"]}`)
	tests := []struct {
		name    string
		url     string
		args    []string
		wantErr string
	}{
		{"campaignd's error", n.URL, []string{"-f", down}, "campaignctl: campaignd could not forecast: redis: connection refused"},
		{"no -f", n.URL, nil, "forecast needs -f campaign.json"},
		{"missing file", n.URL, []string{"-f", f + ".nope"}, "read campaign:"},
		{"missing audience", n.URL, []string{"-f", f, "--audience", a + ".nope"}, "audience: open"},
		{"stray argument", n.URL, []string{"-f", f, "extra"}, `forecast: unexpected "extra"`},
		{"bad flag", n.URL, []string{"--nope"}, "flag provided but not defined"},
		{"no NATS", "nats://127.0.0.1:1", []string{"-f", f}, "nats nats://127.0.0.1:1"},
	}
	for _, tt := range tests {
		code, out, errOut := runCLI(t, append([]string{"-nats", tt.url, "-timeout", "5s", "forecast"}, tt.args...)...)
		if code != exitOther || !strings.Contains(errOut, tt.wantErr) {
			t.Errorf("%s: exit %d\n%s\nstderr %q, want %q", tt.name, code, out, errOut, tt.wantErr)
		}
	}

	// Nobody answers: told at once, not after -timeout.
	_ = sub.Unsubscribe()
	_ = nc.Flush()
	start := time.Now()
	code, _, errOut = runCLI(t, "-nats", n.URL, "-timeout", "20s", "forecast", "-f", f)
	if code != exitOther || !strings.Contains(errOut, "nobody answers on campaigns.forecast") || time.Since(start) > 10*time.Second {
		t.Errorf("no responder: exit %d after %s, stderr %q", code, time.Since(start), errOut)
	}

	code, out, _ = runCLI(t, "forecast", "-h")
	if code != exitOK || !strings.Contains(out, "campaignctl [flags] forecast -f") || !strings.Contains(out, "example") {
		t.Errorf("forecast -h: exit %d\n%s", code, out)
	}
}

func TestPrintForecast(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 12, 7, 21, 48, 0, 0, time.UTC)
	start := time.Date(2026, 12, 8, 1, 0, 0, 0, time.UTC)
	done := start.Add(33*time.Minute + 54*time.Second)
	var b strings.Builder
	printForecast(&b, campaigns.Forecast{ID: "spring-sale", App: "default", Kind: campaigns.KindBatchPush, Status: campaigns.ForecastOK,
		TargetsTotal: 2000000, Calls: map[string]int64{"push_single": 20000}, StartAt: &start, DoneAt: &done,
		Ahead: campaigns.Ahead{Campaigns: 2, Calls: map[string]int64{"push_single": 12000}},
		Rates: map[string]float64{"push_single": 9.852},
		Notes: []string{"shares push_single with 1 campaign of the same priority", "starts at 2026-12-08 01:00:00 UTC (start_date)"}}, now)
	want := `campaign  spring-sale (batch_push on default)
targets   2,000,000
calls     push_single 20,000
starts    2026-12-08 01:00:00 UTC (in 3h12m)
ends      2026-12-08 01:33:54 UTC (runs 33m54s)
rate      push_single 9.852 calls/s
ahead     2 campaigns, push_single 12,000 calls
dropped   0
notes     - shares push_single with 1 campaign of the same priority
          - starts at 2026-12-08 01:00:00 UTC (start_date)
`
	if b.String() != want {
		t.Errorf("got:\n%s\nwant:\n%s", b.String(), want)
	}

	// A label push: one task; expiry drops targets; paused.
	b.Reset()
	exp := now.Add(-time.Second)
	printForecast(&b, campaigns.Forecast{ID: "l", App: "a", Kind: campaigns.KindLabelPush, Status: campaigns.ForecastOK,
		Calls: map[string]int64{"push_label": 1}, StartAt: &exp, DoneAt: &exp, Dropped: 1500}, now)
	for _, re := range []string{`starts    2026-12-07 21:47:59 UTC \(now\)`, `ends      2026-12-07 21:47:59 UTC \(at its start\)`,
		`ahead     nothing`, `dropped   1,500 \(would miss expires_at\)`} {
		wantLine(t, b.String(), re)
	}
	b.Reset()
	printForecast(&b, campaigns.Forecast{ID: "p", Kind: campaigns.KindBatchPush, TargetsTotal: 5, Calls: map[string]int64{"push_single": 1},
		Notes: []string{"paused: nothing goes until it is resumed"}}, now)
	wantLine(t, b.String(), `starts    not while it is paused`)
	if strings.Contains(b.String(), "ends") {
		t.Errorf("an ends line without a start:\n%s", b.String())
	}
}

func TestDuration(t *testing.T) {
	t.Parallel()
	for d, want := range map[time.Duration]string{
		0:                                     "0s",
		1500 * time.Millisecond:               "1.5s",
		9940 * time.Millisecond:               "9.9s",
		45 * time.Second:                      "45s",
		45*time.Second + 600*time.Millisecond: "46s",
		time.Hour + 2*time.Minute + 3*time.Second: "1h2m3s",
		2 * time.Hour:                   "2h",
		time.Hour + 5*time.Second:       "1h0m5s",
		33*time.Minute + 54*time.Second: "33m54s",
		50 * time.Hour:                  "50h",
	} {
		if got := duration(d); got != want {
			t.Errorf("duration(%s) = %q, want %q", d, got, want)
		}
	}
}
