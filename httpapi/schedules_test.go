package httpapi

import (
	"context"
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/scheduler"
)

// schedulesAt is a real Scheduler of three entries, its clock at now
// (Wednesday 9 December 2026, 12:00 UTC): a weekly one in Shanghai, a
// nightly one in UTC, and one that never fires.
func schedulesAt(t *testing.T) func(int) []scheduler.ScheduleInfo {
	t.Helper()
	sh, err := time.LoadLocation("Asia/Shanghai")
	if err != nil {
		t.Fatal(err)
	}
	now := time.Date(2026, 12, 9, 12, 0, 0, 0, time.UTC)
	s, err := scheduler.New([]scheduler.Entry{
		{Name: "weekly-digest", Spec: "0 9 * * MON", Location: sh},
		{Name: "nightly", Spec: "0 3 * * *"},
		{Name: "never", Spec: "0 0 30 2 *", Location: time.UTC},
	}, func(context.Context, *campaigns.Campaign, time.Time) error { return nil },
		scheduler.Options{Clock: clock.NewFake(now), Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	return s.Schedules
}

// The weekly schedule's last tick, Monday 7 December 09:00 in Shanghai.
const weeklyTick = "cron-weekly-digest-20261207010000"

// failingStatus is a store that does not answer for cron campaigns.
type failingStatus struct{ StatusReader }

func (f failingStatus) Lookup(ctx context.Context, id string) (campaigns.Status, bool, error) {
	if strings.HasPrefix(id, "cron-") {
		return campaigns.Status{}, false, errors.New("dial tcp 127.0.0.1:6379: connect: connection refused")
	}
	return f.StatusReader.Lookup(ctx, id)
}

func TestSchedulesAPI(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t, func(o *Options) { o.Schedules = schedulesAt(t) })
	cs.create(t, batchPush(weeklyTick, 2), true)
	cs.move(t, weeklyTick, campaigns.StateRunning)

	code, body := cs.get(t, "/api/schedules")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	// The exact answer: times in each schedule's zone, "last" absent
	// without a tick, "status" absent when its campaign is not stored.
	want := `{"schedules":[` +
		`{"name":"weekly-digest","cron":"0 9 * * MON","timezone":"Asia/Shanghai",` +
		`"next":["2026-12-14T09:00:00+08:00","2026-12-21T09:00:00+08:00","2026-12-28T09:00:00+08:00"],` +
		`"last":{"id":"cron-weekly-digest-20261207010000","at":"2026-12-07T09:00:00+08:00","status":"running"}},` +
		`{"name":"nightly","cron":"0 3 * * *","timezone":"UTC",` +
		`"next":["2026-12-10T03:00:00Z","2026-12-11T03:00:00Z","2026-12-12T03:00:00Z"],` +
		`"last":{"id":"cron-nightly-20261209030000","at":"2026-12-09T03:00:00Z"}},` +
		`{"name":"never","cron":"0 0 30 2 *","timezone":"UTC","next":[]}]}`
	if strings.TrimSpace(body) != want {
		t.Errorf("GET /api/schedules:\n%s\nwant\n%s", body, want)
	}

	tests := []struct {
		name     string
		server   *campaignServer
		path     string
		auth     bool
		wantCode int
		wantBody string // a substring
	}{
		{"no auth", cs, "/api/schedules", false, http.StatusUnauthorized, "authentication required"},
		{"a parameter", cs, "/api/schedules?name=nightly", true, http.StatusBadRequest, `{"error":"name: unknown parameter (this path takes none)"}`},
		{"without a scheduler", newCampaignServer(t), "/api/schedules", true, http.StatusNotFound, "not found"},
		{"store down", newCampaignServer(t, func(o *Options) {
			o.Schedules = schedulesAt(t)
			o.Status = failingStatus{o.Status}
		}), "/api/schedules", true, http.StatusServiceUnavailable, `{"error":"status store unavailable"}`},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var code int
			var body string
			if tt.auth {
				code, body = tt.server.get(t, tt.path)
			} else {
				resp, err := http.Get(tt.server.url + tt.path)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				code, body = resp.StatusCode, string(b)
			}
			if code != tt.wantCode || !strings.Contains(body, tt.wantBody) {
				t.Errorf("GET %s: %d %s, want %d and %s", tt.path, code, body, tt.wantCode, tt.wantBody)
			}
			if strings.Contains(body, "weekly") && code != http.StatusOK {
				t.Errorf("GET %s: %d tells a schedule: %s", tt.path, code, body)
			}
		})
	}
}

var scheduleRowRE = regexp.MustCompile(`(?s)<tr class="schedule" data-name="([^"]*)">(.*?)</tr>`)

// scheduleRows returns the schedules section's rows, by name.
func scheduleRowsOf(body string) (names []string, rows map[string]string) {
	rows = map[string]string{}
	for _, m := range scheduleRowRE.FindAllStringSubmatch(body, -1) {
		names = append(names, m[1])
		rows[m[1]] = m[2]
	}
	return names, rows
}

func TestSchedulesOnTheCampaignsPage(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t, func(o *Options) { o.Schedules = schedulesAt(t) })
	cs.create(t, batchPush(weeklyTick, 2), true)
	cs.move(t, weeklyTick, campaigns.StateCompleted)
	cs.create(t, batchPush("other", 1), true)
	cs.move(t, "other", campaigns.StateCompleted)

	code, body := cs.get(t, "/campaigns/")
	if code != http.StatusOK {
		t.Fatalf("%d %s", code, body)
	}
	names, rows := scheduleRowsOf(body)
	if strings.Join(names, ",") != "weekly-digest,nightly,never" {
		t.Fatalf("schedule rows %v, want weekly-digest, nightly, never", names)
	}
	tests := []struct {
		schedule string
		want     []string
	}{
		{"weekly-digest", []string{
			`<td data-label="Cron"><code class="spec">0 9 * * MON</code></td>`,
			`<td data-label="Zone">Asia/Shanghai</td>`,
			`<time datetime="2026-12-14T09:00:00&#43;08:00">Mon 2026-12-14 09:00:00</time><br>` +
				`<time datetime="2026-12-21T09:00:00&#43;08:00">Mon 2026-12-21 09:00:00</time><br>` +
				`<time datetime="2026-12-28T09:00:00&#43;08:00">Mon 2026-12-28 09:00:00</time></span></td>`,
			`<a href="/campaigns/cron-weekly-digest-20261207010000"><code>cron-weekly-digest-20261207010000</code></a>`,
			`<time datetime="2026-12-07T09:00:00&#43;08:00">Mon 2026-12-07 09:00:00</time>`,
			`<span class="state s-completed">completed</span>`,
		}},
		{"nightly", []string{
			`<td data-label="Zone">UTC</td>`,
			`<time datetime="2026-12-10T03:00:00Z">Thu 2026-12-10 03:00:00</time>`,
			`<code>cron-nightly-20261209030000</code><br>`,
			`not stored (never fired, or expired)`,
		}},
		{"never", []string{`none within five years`, `<td data-label="Last fired"><span class="muted">—</span></td>`}},
	}
	for _, tt := range tests {
		for _, want := range tt.want {
			if !strings.Contains(rows[tt.schedule], want) {
				t.Errorf("row %s lacks %s:\n%s", tt.schedule, want, rows[tt.schedule])
			}
		}
	}
	if strings.Contains(rows["nightly"], "<a ") {
		t.Errorf("nightly links a campaign that is not stored:\n%s", rows["nightly"])
	}
	for _, want := range []string{`<h2 id="schedules">Schedules</h2>`, `<a href="/campaigns/#schedules">Schedules</a>`, `<a href="/api/schedules">`} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	if refreshRE.MatchString(body) {
		t.Error("the page refreshes, but every campaign on it is final")
	}

	// A schedule whose last campaign is running refreshes the page.
	cs.create(t, batchPush("cron-nightly-20261209030000", 1), true)
	cs.move(t, "cron-nightly-20261209030000", campaigns.StateRunning)
	_, body = cs.get(t, "/campaigns/?status=completed")
	if _, rows := scheduleRowsOf(body); !strings.Contains(rows["nightly"], `<span class="state s-running">running</span>`) || !refreshRE.MatchString(body) {
		t.Errorf("running last campaign: refresh %v, row:\n%s", refreshRE.MatchString(body), rows["nightly"])
	}

	// Later pages of the list do not repeat the schedules.
	_, body = cs.get(t, "/campaigns/?limit=1")
	m := nextRE.FindStringSubmatch(body)
	if m == nil {
		t.Fatal("no next page")
	}
	_, body = cs.get(t, strings.ReplaceAll(m[1], "&amp;", "&"))
	if names, _ := scheduleRowsOf(body); len(names) != 0 || strings.Contains(body, `id="schedules"`) {
		t.Errorf("a later page lists the schedules %v", names)
	}
}

func TestSchedulesSectionEscapesAndCopes(t *testing.T) {
	t.Parallel()
	at := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	hostile := []scheduler.ScheduleInfo{{
		Name: `x"><script>alert(1)</script>`, Spec: `<b>0 9 * * *</b>`, Zone: `Europe/<i>Nowhere</i>`,
		Next: []time.Time{at.Add(24 * time.Hour)}, Last: at, LastID: `cron-"><img src=x onerror=alert(2)>`,
	}}
	tests := []struct {
		name     string
		status   func(StatusReader) StatusReader
		schedule []scheduler.ScheduleInfo
		want     []string
		bad      []string
	}{
		{name: "escaped", schedule: hostile,
			want: []string{
				`data-name="x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;"`,
				`<code>x&#34;&gt;&lt;script&gt;alert(1)&lt;/script&gt;</code>`,
				`<code class="spec">&lt;b&gt;0 9 * * *&lt;/b&gt;</code>`,
				`Europe/&lt;i&gt;Nowhere&lt;/i&gt;`,
				`<code>cron-&#34;&gt;&lt;img src=x onerror=alert(2)&gt;</code>`,
			},
			bad: []string{"<script", "<img", "<b>0", "<i>"}},
		{name: "store down", schedule: schedulesAt(t)(3), status: func(s StatusReader) StatusReader { return failingStatus{s} },
			want: []string{`id="schedules-error"`, `<span class="muted">unknown</span>`},
			bad:  []string{"not stored"}},
		{name: "no schedules", schedule: []scheduler.ScheduleInfo{},
			want: []string{`<p class="muted" id="no-schedules">No schedules: campaignd's config has no <code>schedules</code>.</p>`}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			cs := newCampaignServer(t, func(o *Options) {
				o.Schedules = func(int) []scheduler.ScheduleInfo { return tt.schedule }
				if tt.status != nil {
					o.Status = tt.status(o.Status)
				}
			})
			code, body := cs.get(t, "/campaigns/")
			if code != http.StatusOK {
				t.Fatalf("%d %s", code, body)
			}
			for _, want := range tt.want {
				if !strings.Contains(body, want) {
					t.Errorf("page lacks %s", want)
				}
			}
			for _, bad := range tt.bad {
				if strings.Contains(body, bad) {
					t.Errorf("page holds %s", bad)
				}
			}
			// The API escapes nothing but says the same, as JSON.
			code, api := cs.get(t, "/api/schedules")
			if tt.status == nil {
				var got schedulesBody
				if err := json.Unmarshal([]byte(api), &got); code != http.StatusOK || err != nil || len(got.Schedules) != len(tt.schedule) {
					t.Fatalf("GET /api/schedules: %d %v %s", code, err, api)
				}
				for i, sc := range got.Schedules {
					if sc.Name != tt.schedule[i].Name || sc.Cron != tt.schedule[i].Spec || sc.Timezone != tt.schedule[i].Zone {
						t.Errorf("schedule %d: %+v, want %+v", i, sc, tt.schedule[i])
					}
				}
			}
		})
	}
}
