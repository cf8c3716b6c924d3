package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/httpapi"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/scheduler"
	"github.com/campaignd/campaignd/store"
)

// cannedSchedules is an answer of GET /api/schedules: a last campaign
// stored, one not stored, and a schedule without a last tick or a next one.
const cannedSchedules = `{"schedules":[` +
	`{"name":"weekly-digest","cron":"0 9 * * MON","timezone":"Asia/Shanghai",` +
	`"next":["2026-12-14T09:00:00+08:00","2026-12-21T09:00:00+08:00","2026-12-28T09:00:00+08:00"],` +
	`"last":{"id":"cron-weekly-digest-20261207010000","at":"2026-12-07T09:00:00+08:00","status":"completed"}},` +
	`{"name":"nightly","cron":"0 3 * * *","timezone":"UTC",` +
	`"next":["2026-12-10T03:00:00Z","2026-12-11T03:00:00Z","2026-12-12T03:00:00Z"],` +
	`"last":{"id":"cron-nightly-20261209030000","at":"2026-12-09T03:00:00Z"}},` +
	`{"name":"leap","cron":"0 0 30 2 *","timezone":"UTC","next":[]}]}`

// schedulesServer answers GET /api/schedules with code and body, behind
// basic auth admin:pw; any other path is a 404.
func schedulesServer(t *testing.T, code int, body string) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, p, ok := r.BasicAuth(); !ok || u != "admin" || p != "pw" {
			w.WriteHeader(http.StatusUnauthorized)
			fmt.Fprint(w, `{"error":"authentication required"}`)
			return
		}
		if r.URL.Path != "/api/schedules" || r.URL.RawQuery != "" {
			w.WriteHeader(http.StatusNotFound)
			fmt.Fprint(w, `{"error":"not found"}`)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(code)
		fmt.Fprint(w, body)
	}))
	t.Cleanup(srv.Close)
	return srv
}

func TestSchedulesOverHTTP(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name      string
		code      int    // the server's answer
		body      string // the server's answer
		args      []string
		noAuth    bool
		wantCode  int
		wantLines []string // stdout, line by line (table) or nil
		wantOut   string   // substring of stdout
		wantErr   string   // substring of stderr
	}{
		{name: "table", code: 200, body: cannedSchedules, args: []string{"schedules"},
			wantLines: []string{
				"NAME           CRON         ZONE           NEXT FIRE                LAST CAMPAIGN                      STATE",
				"weekly-digest  0 9 * * MON  Asia/Shanghai  Mon 2026-12-14 09:00:00  cron-weekly-digest-20261207010000  completed",
				"nightly        0 3 * * *    UTC            Thu 2026-12-10 03:00:00  cron-nightly-20261209030000        not stored",
				"leap           0 0 30 2 *   UTC            -                        -                                  -",
			}},
		{name: "json", code: 200, body: cannedSchedules, args: []string{"schedules", "--json"},
			wantOut: "\"timezone\": \"Asia/Shanghai\",\n      \"next\": [\n        \"2026-12-14T09:00:00+08:00\","},
		{name: "none", code: 200, body: `{"schedules":[]}`, args: []string{"schedules"}, wantLines: []string{}, wantErr: "no schedules (campaignd's config has none)"},
		{name: "none, json", code: 200, body: `{"schedules":[]}`, args: []string{"schedules", "--json"}, wantOut: `"schedules": []`},
		{name: "help", args: []string{"schedules", "-h"}, wantErr: "campaignctl schedules --json | jq"},
		{name: "stray argument", args: []string{"schedules", "weekly"}, wantCode: 2, wantErr: `schedules: unexpected "weekly"`},
		{name: "no password", args: []string{"schedules"}, noAuth: true, wantCode: 2, wantErr: "campaignd wants basic auth"},
		{name: "store down", code: 503, body: `{"error":"status store unavailable"}`, args: []string{"schedules"}, wantCode: 2,
			wantErr: "campaignctl: schedules API answered 503: status store unavailable"},
		{name: "older campaignd", code: 404, body: `{"error":"not found"}`, args: []string{"schedules"}, wantCode: 2,
			wantErr: "has no /api/schedules"},
		{name: "not JSON", code: 200, body: `<html>`, args: []string{"schedules"}, wantCode: 2, wantErr: "schedules API: invalid character"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			srv := schedulesServer(t, tt.code, tt.body)
			args := []string{"-api", srv.URL}
			if !tt.noAuth {
				args = append(args, "-password", "pw")
			}
			code, out, errs := runCLI(t, append(args, tt.args...)...)
			if code != tt.wantCode {
				t.Fatalf("exit %d, want %d\nstdout:\n%s\nstderr:\n%s", code, tt.wantCode, out, errs)
			}
			if tt.wantErr != "" && !strings.Contains(errs, tt.wantErr) {
				t.Errorf("stderr %q, want it to contain %q", errs, tt.wantErr)
			}
			if tt.wantOut != "" && !strings.Contains(out, tt.wantOut) {
				t.Errorf("stdout lacks %q:\n%s", tt.wantOut, out)
			}
			if tt.wantLines != nil {
				var lines []string
				if out != "" {
					lines = strings.Split(strings.TrimSuffix(out, "\n"), "\n")
				}
				if strings.Join(lines, "\n") != strings.Join(tt.wantLines, "\n") {
					t.Errorf("table:\n%s\nwant:\n%s", out, strings.Join(tt.wantLines, "\n"))
				}
			}
			if strings.Contains(strings.Join(tt.args, " "), "--json") && tt.wantCode == 0 {
				// The API's answer, indented: the same JSON.
				var got, want bytes.Buffer
				if err := json.Compact(&got, []byte(out)); err != nil {
					t.Fatalf("--json output is not JSON: %v\n%s", err, out)
				}
				_ = json.Compact(&want, []byte(tt.body))
				if got.String() != want.String() {
					t.Errorf("--json printed %s, want %s", got.String(), want.String())
				}
			}
		})
	}
}

// Against campaignd's own HTTP side (a Scheduler on a fake clock, the
// store on a real Redis): the CLI reads what the API writes. A tick fired
// by the Scheduler shows with its state.
func TestSchedulesAgainstTheHTTPAPI(t *testing.T) {
	t.Parallel()
	rd := testenv.StartRedis(t)
	st := store.New(rd.Client(t), store.Options{})
	clk := clock.NewFake(testenv.Date(2026, 12, 7, 0, 59, 59, 0)) // Monday 08:59:59 in Shanghai
	const week = 7 * 24 * time.Hour
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	sched, err := scheduler.New([]scheduler.Entry{
		{Name: "weekly-digest", Spec: "0 9 * * MON", Location: sh,
			Campaign: campaigns.Campaign{App: "default", Kind: campaigns.KindBatchPush, Targets: []string{"u1"}}},
	}, func(ctx context.Context, c *campaigns.Campaign, startAt time.Time) error {
		_, _, err := st.Create(ctx, c, startAt)
		return err
	}, scheduler.Options{Clock: clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	api, err := httpapi.New(httpapi.Options{
		Status: st, Campaigns: st, Schedules: sched.Schedules,
		RedisOpt: asynq.RedisClientOpt{Addr: rd.Addr}, Gatherer: prometheus.NewRegistry(),
		BasicAuth: httpapi.BasicAuth{User: "admin", Password: "pw"}, Logger: zerolog.Nop(),
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = api.Close() })
	srv := httptest.NewServer(api)
	t.Cleanup(srv.Close)

	tick := testenv.Date(2026, 12, 7, 1, 0, 0, 0) // Monday 09:00 in Shanghai
	row := func(next, last time.Time, status string) string {
		return fmt.Sprintf("weekly-digest  0 9 * * MON  Asia/Shanghai  %s  %s  %s",
			next.In(sh).Format("Mon 2006-01-02 15:04:05"), scheduler.TickID("weekly-digest", last), status)
	}
	steps := []struct {
		name string
		tick bool // advance the clock 2 s and fire what is due
		want string
	}{
		{"before the tick: last week's, never fired", false, row(tick, tick.Add(-week), "not stored")},
		{"after it", true, row(tick.Add(week), tick, "accepted")},
	}
	for _, step := range steps {
		if step.tick {
			clk.Advance(2 * time.Second)
			if err := sched.Tick(context.Background()); err != nil {
				t.Fatal(err)
			}
		}
		code, out, errs := runCLI(t, "-api", srv.URL, "-password", "pw", "schedules")
		lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if code != 0 || len(lines) != 2 || lines[1] != step.want {
			t.Errorf("%s: exit %d\n%s\nwant the row\n%s\nstderr: %s", step.name, code, out, step.want, errs)
		}
	}
	code, out, _ := runCLI(t, "-api", srv.URL, "-password", "pw", "schedules", "--json")
	var got scheduleListing
	if err := json.Unmarshal([]byte(out), &got); code != 0 || err != nil || len(got.Schedules) != 1 || len(got.Schedules[0].Next) != 3 ||
		got.Schedules[0].Last == nil || got.Schedules[0].Last.Status != "accepted" {
		t.Errorf("--json: exit %d, %v\n%s", code, err, out)
	}
}
