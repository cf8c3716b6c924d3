package httpapi

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/hibiken/asynq"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/store"
)

const (
	testUser = "admin"
	testPass = "pw"
)

// campaignServer is the HTTP side on a real Redis, with basic auth.
type campaignServer struct {
	url   string
	store *store.Store
	clock *clock.Fake
}

// newCampaignServer starts it; each change, if any, edits the Options
// first.
func newCampaignServer(t *testing.T, changes ...func(*Options)) *campaignServer {
	t.Helper()
	rd := testenv.StartRedis(t)
	fake := clock.NewFake(testenv.Date(2026, 12, 1, 1, 0, 0, 0))
	st := store.New(rd.Client(t), store.Options{Clock: fake})
	o := Options{
		Status:    st,
		Campaigns: st,
		QueueFor: func(p campaigns.Priority) string {
			if p == campaigns.PriorityHigh {
				return "high"
			}
			return "default"
		},
		RedisOpt:  asynq.RedisClientOpt{Addr: rd.Addr},
		Gatherer:  prometheus.NewRegistry(),
		BasicAuth: BasicAuth{User: testUser, Password: testPass},
		Logger:    zerolog.Nop(),
	}
	for _, change := range changes {
		change(&o)
	}
	s, err := New(o)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = s.Close() })
	srv := httptest.NewServer(s)
	t.Cleanup(srv.Close)
	return &campaignServer{url: srv.URL, store: st, clock: fake}
}

// get fetches path with basic auth: status code and body.
func (cs *campaignServer) get(t *testing.T, path string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, cs.url+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth(testUser, testPass)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatalf("GET %s: %v", path, err)
	}
	return resp.StatusCode, string(b)
}

// create stores a campaign with n targets, moving the clock 1 ms after
// it when tick is true (otherwise the next one shares its millisecond).
func (cs *campaignServer) create(t *testing.T, c *campaigns.Campaign, tick bool) {
	t.Helper()
	if _, _, err := cs.store.Create(context.Background(), c, cs.clock.Now()); err != nil {
		t.Fatal(err)
	}
	if tick {
		cs.clock.Advance(time.Millisecond)
	}
}

func batchPush(id string, targets int) *campaigns.Campaign {
	c := &campaigns.Campaign{ID: id, App: "default", Kind: campaigns.KindBatchPush}
	for i := range targets {
		c.Targets = append(c.Targets, fmt.Sprintf("%s-u%d", id, i))
	}
	return c
}

func (cs *campaignServer) move(t *testing.T, id string, to campaigns.State) {
	t.Helper()
	if _, changed, err := cs.store.Transition(context.Background(), id, to); err != nil || !changed {
		t.Fatalf("move %s to %s: changed %v, %v", id, to, changed, err)
	}
}

// seedList stores 120 campaigns, two per millisecond, the ids' order the
// reverse of their number within a millisecond; every third is running,
// every fifth (not running) completed. It returns the ids newest first
// and those of each state.
func (cs *campaignServer) seedList(t *testing.T) ([]string, map[campaigns.State][]string) {
	t.Helper()
	var newest []string
	byState := map[campaigns.State][]string{}
	for i := range 120 {
		id := fmt.Sprintf("camp-%03d", i)
		cs.create(t, batchPush(id, 3), i%2 == 1)
		newest = append(newest, id)
	}
	slices.Reverse(newest) // same ms: ids descending; later ms first
	for _, id := range newest {
		var n int
		fmt.Sscanf(id, "camp-%d", &n)
		st := campaigns.StateAccepted
		switch {
		case n%3 == 0:
			st = campaigns.StateRunning
		case n%5 == 0:
			st = campaigns.StateCompleted
		}
		if st != campaigns.StateAccepted {
			cs.move(t, id, st)
		}
		byState[st] = append(byState[st], id)
	}
	return newest, byState
}

// pageAPI pages /api/campaigns with query (limit 7) and returns the ids
// in order, checking that every page but the last has a next and the
// last none.
func (cs *campaignServer) pageAPI(t *testing.T, query string) []string {
	t.Helper()
	var got []string
	cursor := ""
	for pages := 0; pages < 100; pages++ {
		path := "/api/campaigns?limit=7" + query
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		code, body := cs.get(t, path)
		if code != http.StatusOK {
			t.Fatalf("GET %s: %d %s", path, code, body)
		}
		var raw map[string]json.RawMessage
		if err := json.Unmarshal([]byte(body), &raw); err != nil {
			t.Fatalf("GET %s: %v: %s", path, err, body)
		}
		var page []campaigns.Status
		if err := json.Unmarshal(raw["campaigns"], &page); err != nil || page == nil {
			t.Fatalf("GET %s: campaigns %s: %v", path, raw["campaigns"], err)
		}
		for _, st := range page {
			got = append(got, st.ID)
		}
		next, hasNext := raw["next"]
		if !hasNext {
			return got
		}
		if len(page) != 7 {
			t.Fatalf("GET %s: %d campaigns and a next", path, len(page))
		}
		if err := json.Unmarshal(next, &cursor); err != nil || cursor == "" {
			t.Fatalf("GET %s: next %s", path, next)
		}
	}
	t.Fatal("paging does not end")
	return nil
}

func TestListAPIPagesAndFilters(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t)
	newest, byState := cs.seedList(t)
	tests := []struct {
		name, query string
		want        []string
	}{
		{"all", "", newest},
		{"running", "&status=running", byState[campaigns.StateRunning]},
		{"completed", "&status=completed", byState[campaigns.StateCompleted]},
		{"accepted", "&status=accepted", byState[campaigns.StateAccepted]},
		{"none paused", "&status=paused", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if got := cs.pageAPI(t, tt.query); !slices.Equal(got, tt.want) {
				t.Fatalf("listed %d:\n%v\nwant %d:\n%v", len(got), got, len(tt.want), tt.want)
			}
		})
	}
	// The default page: 50, each as the status JSON of /api/campaigns/{id}.
	code, body := cs.get(t, "/api/campaigns")
	var page listBody
	if err := json.Unmarshal([]byte(body), &page); code != 200 || err != nil || len(page.Campaigns) != 50 || page.Next == "" {
		t.Fatalf("default page: %d, %d campaigns, next %q, %v", code, len(page.Campaigns), page.Next, err)
	}
	_, one := cs.get(t, "/api/campaigns/"+newest[0])
	first, _ := json.Marshal(page.Campaigns[0])
	if strings.TrimSpace(one) != string(first) {
		t.Fatalf("listed status %s, want the status JSON %s", first, one)
	}
	// An empty page is an empty list, not null, and no next.
	if code, body := cs.get(t, "/api/campaigns?status=paused"); code != 200 || strings.TrimSpace(body) != `{"campaigns":[]}` {
		t.Fatalf("empty page: %d %s", code, body)
	}
}

func TestListAPIRejectsBadParameters(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t)
	cs.create(t, batchPush("one", 1), true)
	tests := []struct {
		query, want string
	}{
		{"limit=0", "limit: must be 1..500"},
		{"limit=501", "limit: must be 1..500"},
		{"limit=-3", "limit: must be 1..500"},
		{"limit=ten", "limit: must be 1..500"},
		{"limit=", ""}, // empty: the default
		{"status=sleeping", "status: must be one of accepted, scheduled, running, paused, completed, partially_failed, failed, expired, cancelled"},
		{"status=rejected", "status: must be one of accepted, scheduled, running, paused, completed, partially_failed, failed, expired, cancelled"},
		{"status=running&status=paused", "status: given more than once"},
		{"cursor=%21%21%21", "cursor: not a cursor from this API (start again without one)"},
		{"cursor=bm90LWEtY3Vyc29y", "cursor: not a cursor from this API (start again without one)"},
		{"state=running", "state: unknown parameter (known: status, limit, cursor)"},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			code, body := cs.get(t, "/api/campaigns?"+tt.query)
			if tt.want == "" {
				if code != http.StatusOK {
					t.Fatalf("%d %s, want 200", code, body)
				}
				return
			}
			var got map[string]string
			if err := json.Unmarshal([]byte(body), &got); err != nil || code != http.StatusBadRequest || got["error"] != tt.want {
				t.Fatalf("%d %s, want 400 {\"error\": %q}", code, body, tt.want)
			}
		})
	}
}

func TestCampaignPathsNeedAuth(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t)
	cs.create(t, batchPush("one", 1), true)
	for _, path := range []string{"/api/campaigns", "/api/campaigns?status=running", "/campaigns/", "/campaigns/one", "/campaigns"} {
		for _, auth := range []struct {
			name     string
			user, pw string
		}{{"none", "", ""}, {"wrong password", testUser, "nope"}, {"wrong user", "root", testPass}} {
			req, _ := http.NewRequest(http.MethodGet, cs.url+path, nil)
			if auth.user != "" {
				req.SetBasicAuth(auth.user, auth.pw)
			}
			resp, err := http.DefaultClient.Do(req)
			if err != nil {
				t.Fatal(err)
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != http.StatusUnauthorized || resp.Header.Get("WWW-Authenticate") == "" || strings.Contains(string(body), "one") {
				t.Errorf("%s, auth %s: %d %s, want 401 and nothing of the campaign", path, auth.name, resp.StatusCode, body)
			}
		}
		if code, _ := cs.get(t, path); code != http.StatusOK {
			t.Errorf("%s with auth: %d", path, code)
		}
	}
}

var (
	rowRE     = regexp.MustCompile(`<tr class="campaign" data-id="([^"]+)" data-state="([^"]+)">`)
	refreshRE = regexp.MustCompile(`<meta http-equiv="refresh" content="3">`)
	nextRE    = regexp.MustCompile(`<a href="(/campaigns/\?[^"]+)" rel="next">`)
)

func listedRows(body string) (ids []string, states []string) {
	for _, m := range rowRE.FindAllStringSubmatch(body, -1) {
		ids = append(ids, m[1])
		states = append(states, m[2])
	}
	return ids, states
}

func TestCampaignsPage(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t)
	newest, byState := cs.seedList(t)
	ctx := context.Background()
	// camp-119 (accepted): one batch of its 3 targets recorded, 1 refused.
	if _, _, _, err := cs.store.RecordBatch(ctx, "camp-119", 0, 1, []campaigns.Failure{{Target: "camp-119-u1", Reason: "no such user"}}, 0); err != nil {
		t.Fatal(err)
	}
	if err := cs.store.AddTaskID(ctx, "camp-119", "task-77"); err != nil {
		t.Fatal(err)
	}

	t0 := testenv.Date(2026, 12, 1, 1, 0, 0, 0) // the store's fake clock
	t.Run("all, first page", func(t *testing.T) {
		code, body := cs.get(t, "/campaigns/")
		ids, _ := listedRows(body)
		if code != 200 || !slices.Equal(ids, newest[:50]) {
			t.Fatalf("%d, rows %v, want %v", code, ids, newest[:50])
		}
		for _, want := range []string{
			`<meta name="viewport" content="width=device-width, initial-scale=1">`,
			`<a href="/monitoring/">`,
			`<a href="/campaigns/?status=running">running (40)</a>`,
			`class="current" aria-current="page">all (120)</a>`,
			`<a href="/campaigns/camp-119"><code>camp-119</code></a>`,
			`<progress max="100" value="66"`, // 2 of 3 targets done
			`<code>task-77</code>`,
			fmt.Sprintf(`<time datetime="%s">%s</time>`, t0.Format(time.RFC3339), t0.Format("2006-01-02 15:04:05 MST")),
		} {
			if !strings.Contains(body, want) {
				t.Errorf("page lacks %s", want)
			}
		}
		if !refreshRE.MatchString(body) {
			t.Error("no refresh while campaigns are running")
		}
		if strings.Contains(body, "<script") {
			t.Error("the page has a script")
		}
		if regexp.MustCompile(`(src|href)="(https?:)?//`).MatchString(body) {
			t.Error("the page fetches or links outside")
		}
	})

	t.Run("paging", func(t *testing.T) {
		var got []string
		path := "/campaigns/?limit=7"
		for range 100 {
			code, body := cs.get(t, path)
			if code != 200 {
				t.Fatalf("%s: %d", path, code)
			}
			ids, _ := listedRows(body)
			got = append(got, ids...)
			m := nextRE.FindStringSubmatch(body)
			if m == nil {
				break
			}
			if !strings.Contains(body, `rel="first"`) && path != "/campaigns/?limit=7" {
				t.Fatalf("%s: no link back to the newest", path)
			}
			path = strings.ReplaceAll(m[1], "&amp;", "&")
		}
		if !slices.Equal(got, newest) {
			t.Fatalf("paged %v, want %v", got, newest)
		}
	})

	t.Run("filter by state", func(t *testing.T) {
		for _, st := range []campaigns.State{campaigns.StateRunning, campaigns.StateCompleted} {
			code, body := cs.get(t, "/campaigns/?limit=500&status="+string(st))
			ids, states := listedRows(body)
			if code != 200 || !slices.Equal(ids, byState[st]) {
				t.Fatalf("%s: %d, rows %v, want %v", st, code, ids, byState[st])
			}
			for _, got := range states {
				if got != string(st) {
					t.Fatalf("%s: a row in state %s", st, got)
				}
			}
			if !strings.Contains(body, `class="current" aria-current="page">`+string(st)) {
				t.Errorf("%s: the filter is not marked current", st)
			}
			// Only while something listed is not final.
			if want := st == campaigns.StateRunning; refreshRE.MatchString(body) != want {
				t.Errorf("%s: refresh %v, want %v", st, !want, want)
			}
		}
		if code, body := cs.get(t, "/campaigns/?status=paused"); code != 200 || !strings.Contains(body, "No campaigns in state paused.") || refreshRE.MatchString(body) {
			t.Errorf("no paused campaigns: %d %s", code, body)
		}
	})

	t.Run("bad parameters", func(t *testing.T) {
		for query, want := range map[string]string{
			"limit=0":         "limit: must be 1..500",
			"status=sleeping": "status: must be one of",
			"cursor=xyz":      "cursor: not a cursor",
		} {
			code, body := cs.get(t, "/campaigns/?"+query)
			if code != http.StatusBadRequest || !strings.Contains(body, want) || !strings.Contains(body, "<!DOCTYPE html>") {
				t.Errorf("%s: %d, want 400 and a page saying %q:\n%s", query, code, want, body)
			}
		}
	})
}

func TestCampaignDetailPage(t *testing.T) {
	t.Parallel()
	cs := newCampaignServer(t)
	ctx := context.Background()
	hostile := `"><script>alert('x')</script><a href="/campaigns/evil">`
	c := batchPush("camp-hi", 300)
	c.Priority = campaigns.PriorityHigh
	cs.create(t, c, true)
	if err := cs.store.PutBatches(ctx, "camp-hi", 0, [][]string{c.Targets[:100], c.Targets[100:200], c.Targets[200:]}, 300); err != nil {
		t.Fatal(err)
	}
	cs.move(t, "camp-hi", campaigns.StateRunning)
	var fails []campaigns.Failure
	for i := range 250 {
		fails = append(fails, campaigns.Failure{Target: fmt.Sprintf("u%03d", i), Reason: "FAIL: appUser not exists"})
	}
	fails[3] = campaigns.Failure{Target: `u003<img src=x onerror=alert(1)>`, Reason: hostile}
	if _, _, _, err := cs.store.RecordBatch(ctx, "camp-hi", 0, 40, fails, 0); err != nil {
		t.Fatal(err)
	}
	if err := cs.store.AddTaskID(ctx, "camp-hi", `<b>task</b>`); err != nil {
		t.Fatal(err)
	}

	code, body := cs.get(t, "/campaigns/camp-hi")
	if code != 200 {
		t.Fatalf("%d %s", code, body)
	}
	for _, want := range []string{
		`<dd id="targets">300</dd>`,
		`<dd id="batches">1 of 3 done</dd>`,
		`<dd id="sent">40</dd>`,
		`<dd id="failed">250</dd>`,
		`<progress max="100" value="96"`,
		`<a id="queue-link" href="/monitoring/queues/high">`,
		`<code>camp-hi:plan</code>`,
		`<a id="plan-link" href="/monitoring/queues/high/tasks/camp-hi:plan">`,
		`1–100 of 250`,
		`<a href="/api/campaigns/camp-hi/failures">`,
		`<a href="/campaigns/camp-hi?failures=100" rel="next">`,
		`<code>u000</code></td><td data-label="Reason">FAIL: appUser not exists</td>`,
		// escaped, never markup
		`&#34;&gt;&lt;script&gt;alert(&#39;x&#39;)&lt;/script&gt;&lt;a href=&#34;/campaigns/evil&#34;&gt;`,
		`<code>u003&lt;img src=x onerror=alert(1)&gt;</code>`,
		`<code>&lt;b&gt;task&lt;/b&gt;</code>`,
	} {
		if !strings.Contains(body, want) {
			t.Errorf("page lacks %s", want)
		}
	}
	for _, bad := range []string{"<script", "<img", `href="/campaigns/evil"`, "<b>task"} {
		if strings.Contains(body, bad) {
			t.Errorf("page holds unescaped %s", bad)
		}
	}
	if !refreshRE.MatchString(body) {
		t.Error("a running campaign's page does not refresh")
	}

	// The last page of failures: 201–250, a link back, none further.
	_, body = cs.get(t, "/campaigns/camp-hi?failures=200")
	if !strings.Contains(body, "201–250 of 250") || !strings.Contains(body, `<a href="/campaigns/camp-hi?failures=100" rel="prev">`) || strings.Contains(body, `rel="next"`) {
		t.Errorf("last failures page:\n%s", body)
	}
	_, body = cs.get(t, "/campaigns/camp-hi?failures=100")
	if !strings.Contains(body, `<a href="/campaigns/camp-hi" rel="prev">`) {
		t.Errorf("second failures page has no link to the first")
	}

	// Finished: no refresh; a normal priority links the default queue; its
	// errors are shown, escaped.
	cs.create(t, batchPush("camp-done", 2), true)
	if _, _, err := cs.store.Fail(ctx, "camp-done", campaigns.FieldErrors{{Field: "audience", Message: "object <gone> missing"}}); err != nil {
		t.Fatal(err)
	}
	_, body = cs.get(t, "/campaigns/camp-done")
	if refreshRE.MatchString(body) {
		t.Error("a finished campaign's page refreshes")
	}
	for _, want := range []string{`href="/monitoring/queues/default"`, `<li><code>audience</code>: object &lt;gone&gt; missing</li>`, "The provider refused none of its targets.", `id="state">failed</span>`} {
		if !strings.Contains(body, want) {
			t.Errorf("finished page lacks %s", want)
		}
	}

	for path, want := range map[string]int{
		"/campaigns/nobody":             http.StatusNotFound,
		"/campaigns/bad%20id":           http.StatusBadRequest,
		"/campaigns/camp-hi?failures=x": http.StatusBadRequest,
		"/campaigns/a/b":                http.StatusNotFound,
	} {
		if code, body := cs.get(t, path); code != want {
			t.Errorf("%s: %d, want %d: %s", path, code, want, body)
		}
	}
}
