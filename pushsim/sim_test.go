package pushsim

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/provider"
)

var t0 = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

type env struct {
	srv   *Server
	clk   *clock.Fake
	token string
	base  string // URL + /org/app
}

func setup(t *testing.T, cfg Config) *env {
	t.Helper()
	clk := clock.NewFake(t0)
	if cfg.Clock == nil {
		cfg.Clock = clk
	}
	srv, err := Start(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	e := &env{srv: srv, clk: clk, base: srv.URL() + "/org/app"}
	e.token = e.fetchToken(t, "pushsim", "pushsim-secret", http.StatusOK)
	return e
}

func (e *env) fetchToken(t *testing.T, id, secret string, want int) string {
	t.Helper()
	body := fmt.Sprintf(`{"grant_type":"client_credentials","client_id":%q,"client_secret":%q}`, id, secret)
	code, out := do(t, http.MethodPost, e.base+"/token", "", body)
	if code != want {
		t.Fatalf("token: status %d, want %d: %s", code, want, out)
	}
	var tok struct {
		AccessToken string `json:"access_token"`
		ExpiresIn   int64  `json:"expires_in"`
	}
	_ = json.Unmarshal(out, &tok)
	return tok.AccessToken
}

func do(t *testing.T, method, url, token, body string) (int, []byte) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (e *env) call(t *testing.T, method, path, body string) (int, map[string]any) {
	t.Helper()
	code, b := do(t, method, e.base+path, e.token, body)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("%s %s: not a JSON object (%d): %s", method, path, code, b)
	}
	return code, m
}

func TestWindowCountsStrictSlidingSecond(t *testing.T) {
	t.Parallel()
	tests := []struct {
		name    string
		span    time.Duration
		offsets []time.Duration
		want    []int
	}{
		{"same instant", time.Second, []time.Duration{0, 0, 0}, []int{1, 2, 3}},
		{"exactly one second apart drops the first", time.Second, []time.Duration{0, time.Second}, []int{1, 1}},
		{"just inside a second", time.Second, []time.Duration{0, 999 * time.Millisecond}, []int{1, 2}},
		{"sliding", time.Second, []time.Duration{0, 400 * time.Millisecond, 800 * time.Millisecond, 1200 * time.Millisecond, 1300 * time.Millisecond}, []int{1, 2, 3, 3, 4}},
		{"an arrival stamped out of order is judged where it belongs", time.Second, []time.Duration{500 * time.Millisecond, 0, 1499 * time.Millisecond}, []int{1, 2, 2}},
		{"an out-of-order arrival counts in the windows of later ones", time.Second, []time.Duration{0, 900 * time.Millisecond, 1100 * time.Millisecond, 950 * time.Millisecond}, []int{1, 2, 2, 3}},
		{"two-second span", 2 * time.Second, []time.Duration{0, 1500 * time.Millisecond, 2 * time.Second, 3600 * time.Millisecond}, []int{1, 2, 2, 2}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			var w window
			for i, off := range tt.offsets {
				if got := w.arrive(t0.Add(off), tt.span); got != tt.want[i] {
					t.Errorf("arrival %d at +%s: count %d, want %d", i, off, got, tt.want[i])
				}
			}
		})
	}
}

// TestJudgeWithFakeClock drives the Sim's judge directly: which arrivals of
// a schedule are violations for a limit.
func TestJudgeWithFakeClock(t *testing.T) {
	t.Parallel()
	ms := time.Millisecond
	tests := []struct {
		name      string
		limit     float64
		offsets   []time.Duration
		violating []int // indexes of arrivals that are violations
	}{
		{"10/s evenly spaced at 100 ms", 10, []time.Duration{0, 100 * ms, 200 * ms, 300 * ms, 400 * ms, 500 * ms, 600 * ms, 700 * ms, 800 * ms, 900 * ms, 1000 * ms}, nil},
		{"10/s spaced at 99 ms: the 11th is in the window", 10, []time.Duration{0, 99 * ms, 198 * ms, 297 * ms, 396 * ms, 495 * ms, 594 * ms, 693 * ms, 792 * ms, 891 * ms, 990 * ms}, []int{10}},
		{"1/s: a second call 1 s later is fine", 1, []time.Duration{0, 1000 * ms, 1999 * ms}, []int{2}},
		{"2.5/s allows 2 in a second", 2.5, []time.Duration{0, 400 * ms, 800 * ms}, []int{2}},
		{"0.5/s allows one call in any 2 s", 0.5, []time.Duration{0, 1999 * ms, 4000 * ms, 6000 * ms}, []int{1}},
		{"refused arrivals still count", 1, []time.Duration{0, 500 * ms, 1200 * ms, 1600 * ms, 2600 * ms}, []int{1, 2, 3}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			clk := clock.NewFake(t0)
			s := New(Config{Clock: clk, Limits: map[provider.Group]float64{provider.GroupPushSingle: tt.limit}})
			var got []int
			for i, off := range tt.offsets {
				clk.Set(t0.Add(off))
				s.mu.Lock()
				ok := s.admitLocked("easemob", "o/a", provider.GroupPushSingle, s.now())
				s.mu.Unlock()
				if !ok {
					got = append(got, i)
				}
			}
			if fmt.Sprint(got) != fmt.Sprint(tt.violating) {
				t.Fatalf("violations at %v, want %v", got, tt.violating)
			}
			st := s.Stats()
			if st.Violations != len(tt.violating) || st.RateLimited != len(tt.violating) || len(st.ViolationList) != len(tt.violating) {
				t.Fatalf("stats: %d violations, %d rate limited, %d listed", st.Violations, st.RateLimited, len(st.ViolationList))
			}
			for _, v := range st.ViolationList {
				if v.Group != "push_single" || v.App != "o/a" || v.Limit != tt.limit || v.InWindow < 2 {
					t.Errorf("violation record %+v", v)
				}
			}
		})
	}
}

// TestTaskCapsTable checks the task-window rule on its own: label tasks hold
// a running slot from creation until start+LabelTaskDuration, broadcasts
// from creation until their window ends, and creations count for a window.
func TestTaskCapsTable(t *testing.T) {
	t.Parallel()
	tw := TaskWindow{MaxCreated: 3, Window: 5 * time.Minute, MaxRunning: 3, LabelTaskDuration: 5 * time.Minute}
	label := func(created, start time.Duration) *Task {
		return &Task{Kind: "label", CreatedAt: t0.Add(created), StartAt: t0.Add(start), EndsAt: t0.Add(start + tw.LabelTaskDuration)}
	}
	broadcast := func(created time.Duration) *Task {
		return &Task{Kind: "broadcast", CreatedAt: t0.Add(created), StartAt: t0.Add(created), EndsAt: t0.Add(created + tw.Window)}
	}
	tests := []struct {
		name  string
		tasks []*Task
		at    time.Duration
		ok    bool
	}{
		{"none", nil, 0, true},
		{"two label tasks", []*Task{label(0, 0), label(0, 0)}, 0, true},
		{"three creations in the window", []*Task{label(0, 0), label(time.Minute, time.Minute), broadcast(2 * time.Minute)}, 4 * time.Minute, false},
		{"first creation just left the window, its label task still runs", []*Task{label(0, 0), label(time.Minute, time.Minute), label(2*time.Minute, 2*time.Minute)}, 5 * time.Minute, true},
		{"three label tasks scheduled far ahead hold running slots after their creations left the window", []*Task{label(0, 2*time.Hour), label(0, 2*time.Hour), label(0, 2*time.Hour)}, 10 * time.Minute, false},
		{"broadcasts free their slot when their window is over", []*Task{broadcast(0), broadcast(0), broadcast(0)}, 5 * time.Minute, true},
		{"a broadcast scheduled ahead holds its slot from creation", []*Task{broadcast(0), broadcast(0), broadcast(0)}, 4*time.Minute + 59*time.Second, false},
		{"label tasks that ended free their slots", []*Task{label(0, 0), label(0, 0), label(0, 0)}, 5 * time.Minute, true},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			t.Parallel()
			ok, why := taskCaps{cfg: tw}.check(tt.tasks, t0.Add(tt.at))
			if ok != tt.ok {
				t.Fatalf("ok=%v (%s), want %v", ok, why, tt.ok)
			}
			if !ok && why == "" {
				t.Fatal("refused without a reason")
			}
		})
	}
}

func TestQPSLimitAnswers429AndCountsEveryArrival(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 2}})
	body := `{"targets":["u1"],"pushMessage":{"title":"t","content":"c"}}`
	codes := []int{}
	for i := 0; i < 4; i++ {
		c, _ := e.call(t, http.MethodPost, "/push/single", body)
		codes = append(codes, c)
	}
	if want := []int{200, 200, 429, 429}; fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("codes %v, want %v", codes, want)
	}
	// Refused calls count too: 999 ms later the window still holds 4.
	e.clk.Advance(999 * time.Millisecond)
	if c, _ := e.call(t, http.MethodPost, "/push/single", body); c != 429 {
		t.Fatalf("within the same second after refusals: %d, want 429", c)
	}
	e.clk.Advance(1001 * time.Millisecond)
	if c, _ := e.call(t, http.MethodPost, "/push/single", body); c != 200 {
		t.Fatalf("after the window: %d, want 200", c)
	}
	st := e.srv.Sim().Stats()
	if st.Violations != 3 || st.RateLimited != 3 {
		t.Errorf("violations %d rate_limited %d, want 3 and 3", st.Violations, st.RateLimited)
	}
	if got := st.CallsFor("easemob", "org/app", provider.GroupPushSingle); got != 6 {
		t.Errorf("push_single arrivals %d, want 6", got)
	}
	if st.TotalPushes != 3 {
		t.Errorf("pushes %d, want 3 (refused calls push nothing)", st.TotalPushes)
	}
}

func TestLimitsOffRecordsButServes(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true, Limits: map[provider.Group]float64{provider.GroupPushSingle: 1}})
	for i := 0; i < 3; i++ {
		if c, _ := e.call(t, http.MethodPost, "/push/single", `{"targets":["u1"],"pushMessage":{"title":"t"}}`); c != 200 {
			t.Fatalf("call %d: %d", i, c)
		}
	}
	if st := e.srv.Sim().Stats(); st.Violations != 2 || st.RateLimited != 0 {
		t.Errorf("violations %d rate_limited %d, want 2 and 0", st.Violations, st.RateLimited)
	}
}

func TestUnauthorizedCallsCountAsArrivals(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{Limits: map[provider.Group]float64{provider.GroupPushSingle: 1}})
	code, _ := do(t, http.MethodPost, e.base+"/push/single", "bogus", `{"targets":["u1"],"pushMessage":{"t":1}}`)
	if code != 401 {
		t.Fatalf("bad token: %d", code)
	}
	if c, _ := e.call(t, http.MethodPost, "/push/single", `{"targets":["u1"],"pushMessage":{"t":1}}`); c != 429 {
		t.Fatalf("second arrival in the same second after a 401: %d, want 429", c)
	}
}

func TestTokenExpiryAndCredentials(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{TokenTTL: time.Minute})
	e.fetchToken(t, "pushsim", "wrong", http.StatusUnauthorized)
	if c, _ := e.call(t, http.MethodGet, "/push/label", ""); c != 200 {
		t.Fatalf("fresh token: %d", c)
	}
	e.clk.Advance(time.Minute)
	if c, _ := e.call(t, http.MethodGet, "/push/label", ""); c != 401 {
		t.Fatalf("expired token: %d, want 401", c)
	}
	e.token = e.fetchToken(t, "pushsim", "pushsim-secret", 200)
	e.srv.Sim().ExpireTokens()
	if c, _ := e.call(t, http.MethodGet, "/push/label", ""); c != 401 {
		t.Fatalf("after ExpireTokens: %d, want 401", c)
	}
	// A token of one app is not valid for another.
	e.token = e.fetchToken(t, "pushsim", "pushsim-secret", 200)
	code, _ := do(t, http.MethodGet, e.srv.URL()+"/org/other/push/label", e.token, "")
	if code != 401 {
		t.Fatalf("token of org/app used on org/other: %d", code)
	}
}

func TestPushSingleShapeAndValidation(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	code, m := e.call(t, http.MethodPost, "/push/single", `{"targets":["a","invalid-b"],"strategy":2,"pushMessage":{"title":"t","content":"c"}}`)
	if code != 200 {
		t.Fatalf("status %d: %v", code, m)
	}
	data := m["data"].([]any)
	first, second := data[0].(map[string]any), data[1].(map[string]any)
	if first["id"] != "a" || first["pushStatus"] != "ASYNC_SUCCESS" || second["pushStatus"] != "FAIL" {
		t.Fatalf("per-target results: %v", data)
	}
	if _, ok := m["timestamp"]; !ok {
		t.Error("no timestamp")
	}
	targets := make([]string, 101)
	for i := range targets {
		targets[i] = fmt.Sprintf("u%d", i)
	}
	tb, _ := json.Marshal(targets)
	tests := []struct {
		name, body, errType string
	}{
		{"101 targets", `{"targets":` + string(tb) + `,"pushMessage":{"t":1}}`, "IllegalArgumentException"},
		{"no targets", `{"targets":[],"pushMessage":{"t":1}}`, "IllegalArgumentException"},
		{"no pushMessage", `{"targets":["a"]}`, "MessageException"},
		{"empty pushMessage", `{"targets":["a"],"pushMessage":{}}`, "MessageException"},
		{"strategy 5", `{"targets":["a"],"strategy":5,"pushMessage":{"t":1}}`, "IllegalArgumentException"},
		{"not JSON", `{`, "IllegalArgumentException"},
	}
	for _, tt := range tests {
		code, m := e.call(t, http.MethodPost, "/push/single", tt.body)
		if code != 400 || m["error"] != tt.errType {
			t.Errorf("%s: %d %v, want 400 %s", tt.name, code, m, tt.errType)
		}
	}
	st := e.srv.Sim().Stats()
	if st.MaxTargetsPerCall != 2 || st.TotalPushes != 1 || e.srv.Sim().PushCount("a") != 1 {
		t.Errorf("stats: %+v", st)
	}
}

func TestSyncAndAsyncAnswerArrays(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{})
	_, m := e.call(t, http.MethodPost, "/push/sync/u1", `{"pushMessage":{"title":"t"}}`)
	if d := m["data"].([]any)[0].(map[string]any); d["pushStatus"] != "SUCCESS" {
		t.Errorf("sync: %v", m)
	}
	e.clk.Advance(time.Second)
	_, m = e.call(t, http.MethodPost, "/push/sync/invalid-x", `{"pushMessage":{"title":"t"}}`)
	if d := m["data"].([]any)[0].(map[string]any); d["pushStatus"] != "FAIL" || d["desc"] != "appUser not exists" {
		t.Errorf("sync fail: %v", m)
	}
	_, m = e.call(t, http.MethodPost, "/push/async/u2", `{"pushMessage":{"title":"t"}}`)
	if d := m["data"].([]any)[0].(map[string]any); d["pushStatus"] != "ASYNC_SUCCESS" {
		t.Errorf("async: %v", m)
	}
}

func TestLabelsMembersAndPaging(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	if c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"post-90s","description":"born 1990-99"}`); c != 200 || m["data"].(map[string]any)["name"] != "post-90s" {
		t.Fatalf("create: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"post-90s"}`); c != 400 {
		t.Fatalf("duplicate create: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"bad name!"}`); c != 400 || m["error"] != "IllegalArgumentException" {
		t.Fatalf("bad name: %d %v", c, m)
	}
	users := make([]string, 0, 100)
	for i := 0; i < 100; i++ {
		users = append(users, fmt.Sprintf("u%03d", i))
	}
	ub, _ := json.Marshal(map[string]any{"usernames": append(users[:99:99], "invalid-z")})
	c, m := e.call(t, http.MethodPost, "/push/label/post-90s/user", string(ub))
	if c != 200 {
		t.Fatalf("add: %d %v", c, m)
	}
	data := m["data"].(map[string]any)
	if len(data["success"].([]any)) != 99 || data["fail"].(map[string]any)["invalid-z"] == nil {
		t.Fatalf("add result: %v", data)
	}
	_, m = e.call(t, http.MethodGet, "/push/label/post-90s", "")
	if m["data"].(map[string]any)["count"].(float64) != 99 {
		t.Fatalf("count: %v", m)
	}
	seen := 0
	cursor := ""
	for pages := 0; pages < 10; pages++ {
		path := "/push/label/post-90s/user?limit=40"
		if cursor != "" {
			path += "&cursor=" + cursor
		}
		_, m = e.call(t, http.MethodGet, path, "")
		seen += len(m["data"].([]any))
		next, _ := m["cursor"].(string)
		if next == "" {
			break
		}
		cursor = next
	}
	if seen != 99 {
		t.Fatalf("paged %d members, want 99", seen)
	}
	if c, _ := e.call(t, http.MethodGet, "/push/label/post-90s/user/u001", ""); c != 200 {
		t.Fatalf("get member: %d", c)
	}
	if c, m := e.call(t, http.MethodGet, "/push/label/missing", ""); c != 400 || m["error"] != "ResourceNotFoundException" {
		t.Fatalf("missing label: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodDelete, "/push/label/post-90s/user", `{"usernames":["u001","nobody"]}`); c != 200 || len(m["data"].(map[string]any)["fail"].(map[string]any)) != 1 {
		t.Fatalf("remove: %d %v", c, m)
	}
	if c, _ := e.call(t, http.MethodDelete, "/push/label/post-90s", ""); c != 200 {
		t.Fatalf("delete: %d", c)
	}
}

func TestLabelCap(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	for i := 0; i < DefaultMaxLabels; i++ {
		if c, m := e.call(t, http.MethodPost, "/push/label", fmt.Sprintf(`{"name":"l%d"}`, i)); c != 200 {
			t.Fatalf("label %d: %d %v", i, c, m)
		}
	}
	c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"one-too-many"}`)
	if c != 403 || m["error"] != "LimitException" {
		t.Fatalf("101st label: %d %v", c, m)
	}
}

func TestTaskWindowCaps(t *testing.T) {
	t.Parallel()
	tw := TaskWindow{MaxCreated: 3, Window: 10 * time.Second, MaxRunning: 2, LabelTaskDuration: 4 * time.Second}
	e := setup(t, Config{LimitsOff: true, TaskWindow: tw})
	e.call(t, http.MethodPost, "/push/label", `{"name":"l"}`)
	e.call(t, http.MethodPost, "/push/label/l/user", `{"usernames":["m1","m2"]}`)
	label := func() int {
		c, _ := e.call(t, http.MethodPost, "/push/list/label", `{"targets":["l"],"pushMessage":{"title":"t"}}`)
		return c
	}
	broadcast := func() int {
		c, _ := e.call(t, http.MethodPost, "/push/task", `{"pushMessage":{"title":"t"}}`)
		return c
	}
	steps := []struct {
		advance time.Duration
		call    func() int
		want    int
		why     string
	}{
		{0, label, 200, "1st label task"},
		{0, label, 200, "2nd label task"},
		{0, label, 403, "3rd: 2 running"},
		{4 * time.Second, label, 200, "label tasks ended: 3rd creation"},
		{0, broadcast, 403, "3 creations in the window"},
		{6 * time.Second, broadcast, 200, "first two creations left the window"},
		{0, broadcast, 200, "2 creations in window, 1 running"},
		{0, label, 403, "3 creations and 2 running"},
		{4 * time.Second, label, 403, "creations fell to 2, but both broadcasts hold their running slots"},
		{6 * time.Second, label, 200, "broadcast windows over"},
	}
	for i, st := range steps {
		e.clk.Advance(st.advance)
		if got := st.call(); got != st.want {
			t.Fatalf("step %d (%s): %d, want %d", i, st.why, got, st.want)
		}
	}
	stats := e.srv.Sim().Stats()
	if stats.LimitExceptions != 4 {
		t.Errorf("LimitExceptions %d, want 4", stats.LimitExceptions)
	}
	if e.srv.Sim().PushCount("m1") < 3 {
		t.Errorf("label members should be pushed by each label task: %d", e.srv.Sim().PushCount("m1"))
	}
}

func TestLabelTaskWithStartDateRunsLater(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	e.call(t, http.MethodPost, "/push/label", `{"name":"l"}`)
	e.call(t, http.MethodPost, "/push/label/l/user", `{"usernames":["m1"]}`)
	soon := t0.Add(30 * time.Minute).Format(startDateLayout)
	if c, m := e.call(t, http.MethodPost, "/push/list/label", `{"targets":["l"],"startDate":"`+soon+`","pushMessage":{"t":1}}`); c != 400 {
		t.Fatalf("startDate under 1 h accepted: %d %v", c, m)
	}
	later := t0.Add(2 * time.Hour).Format(startDateLayout)
	c, m := e.call(t, http.MethodPost, "/push/list/label", `{"targets":["l"],"startDate":"`+later+`","pushMessage":{"t":1}}`)
	if c != 200 {
		t.Fatalf("label push: %d %v", c, m)
	}
	if id := m["data"].(map[string]any)["taskId"]; id == nil {
		t.Fatalf("no taskId: %v", m)
	}
	if n := e.srv.Sim().PushCount("m1"); n != 0 {
		t.Fatalf("pushed before its start: %d", n)
	}
	e.clk.Advance(2 * time.Hour)
	if n := e.srv.Sim().PushCount("m1"); n != 1 {
		t.Fatalf("pushed %d times after its start, want 1", n)
	}
}

func TestUserSettingsAndTemplates(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	tests := []struct {
		method, path, body string
		want               int
	}{
		{"PUT", "/users/u1", `{"nickname":"Shop"}`, 200},
		{"PUT", "/users/u1", `{"notification_display_style":1}`, 200},
		{"PUT", "/users/u1", `{"notification_display_style":2}`, 400},
		{"PUT", "/users/u1", `{"nickname":"` + strings.Repeat("x", 101) + `"}`, 400},
		{"PUT", "/users/u1", `{"notification_no_disturbing":true,"notification_no_disturbing_start":1,"notification_no_disturbing_end":3}`, 200},
		{"PUT", "/users/u1/notification/user/u2", `{"type":"AT","ignoreInterval":"21:30-08:00","ignoreDuration":0}`, 200},
		{"PUT", "/users/u1/notification/user/u2", `{"type":"SOME"}`, 400},
		{"PUT", "/users/u1/notification/chatgroup/g1", `{"ignoreInterval":"24:00-08:00"}`, 400},
		{"PUT", "/users/u1/notification/room/g1", `{"type":"ALL"}`, 400},
		{"PUT", "/users/u1/notification/user/u2", `{"ignoreDuration":604800001}`, 400},
		{"GET", "/users/u1/notification/user/u2", ``, 200},
		{"PUT", "/users/u1/notification/language", `{"translationLanguage":"EU"}`, 200},
		{"GET", "/users/u1/notification/language", ``, 200},
		{"POST", "/notification/template", `{"name":"sale","title_pattern":"Hi {0}","content_pattern":"{1}"}`, 200},
		{"POST", "/notification/template", `{"name":"sale","title_pattern":"Hi {0}","content_pattern":"{1}"}`, 400},
		{"GET", "/notification/template/sale", ``, 200},
		{"DELETE", "/notification/template/sale", ``, 200},
		{"GET", "/notification/template/sale", ``, 400},
	}
	for i, tt := range tests {
		if c, m := e.call(t, tt.method, tt.path, tt.body); c != tt.want {
			t.Errorf("%d %s %s %s: %d %v, want %d", i, tt.method, tt.path, tt.body, c, m, tt.want)
		}
	}
	_, m := e.call(t, "GET", "/users/u1/notification/user/u2", "")
	if d := m["data"].(map[string]any); d["type"] != "AT" || d["ignoreInterval"] != "21:30-08:00" {
		t.Errorf("mode: %v", d)
	}
	_, m = e.call(t, "GET", "/users/u1/notification/language", "")
	if m["data"].(map[string]any)["language"] != "EU" {
		t.Errorf("language: %v", m)
	}
}

func TestFaultsAreSeededAndCounted(t *testing.T) {
	t.Parallel()
	run := func() []int {
		e := setup(t, Config{LimitsOff: true, Faults: Faults{ErrorRate: 0.3, Seed: 42}})
		var codes []int
		for i := 0; i < 40; i++ {
			c, _ := e.call(t, http.MethodPost, "/push/single", `{"targets":["a"],"pushMessage":{"t":1}}`)
			codes = append(codes, c)
		}
		st := e.srv.Sim().Stats()
		n5xx := 0
		for _, c := range codes {
			if c == 500 {
				n5xx++
			}
		}
		if n5xx == 0 || n5xx == 40 || st.Faulted != n5xx {
			t.Fatalf("5xx %d of 40, faulted %d", n5xx, st.Faulted)
		}
		return codes
	}
	a, b := run(), run()
	if fmt.Sprint(a) != fmt.Sprint(b) {
		t.Errorf("same seed, different faults:\n%v\n%v", a, b)
	}
}

func TestDroppedConnections(t *testing.T) {
	t.Parallel()
	srv, err := Start(Config{LimitsOff: true, Faults: Faults{DropRate: 1, Seed: 1}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	req, _ := http.NewRequest(http.MethodPost, srv.URL()+"/org/app/token", bytes.NewReader([]byte(`{"grant_type":"client_credentials","client_id":"pushsim","client_secret":"pushsim-secret"}`)))
	if resp, err := http.DefaultClient.Do(req); err == nil {
		resp.Body.Close()
		t.Fatalf("dropped connection answered %d", resp.StatusCode)
	}
	if st := srv.Sim().Stats(); st.Dropped != 1 {
		t.Errorf("dropped %d", st.Dropped)
	}
}

func TestInspectionAPI(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	e.call(t, http.MethodPost, "/push/single", `{"targets":["x1","x1"],"pushMessage":{"t":1}}`)
	code, b := do(t, http.MethodGet, e.srv.URL()+"/_sim/pushes?target=x1", "", "")
	var p struct {
		Count  int    `json:"count"`
		Pushes []Push `json:"pushes"`
	}
	if err := json.Unmarshal(b, &p); err != nil || code != 200 || p.Count != 2 || len(p.Pushes) != 2 {
		t.Fatalf("pushes: %d %s", code, b)
	}
	code, b = do(t, http.MethodGet, e.srv.URL()+"/_sim/stats", "", "")
	var st Stats
	if err := json.Unmarshal(b, &st); err != nil || code != 200 || st.MaxPushesOneID != 2 {
		t.Fatalf("stats: %d %s", code, b)
	}
	if code, _ := do(t, http.MethodPost, e.srv.URL()+"/_sim/reset", "", ""); code != 200 {
		t.Fatal("reset")
	}
	if st := e.srv.Sim().Stats(); st.TotalPushes != 0 || st.TotalCalls != 0 {
		t.Errorf("after reset: %+v", st)
	}
}

func TestEngageLab(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	el := func(method, path, body string, user, pass string) (int, []byte) {
		var rd io.Reader
		if body != "" {
			rd = strings.NewReader(body)
		}
		req, _ := http.NewRequest(method, e.srv.URL()+"/v4"+path, rd)
		if user != "" {
			req.SetBasicAuth(user, pass)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, b
	}
	ok := func(method, path, body string) (int, []byte) {
		return el(method, path, body, "pushsim", "pushsim-secret")
	}
	if c, b := el("GET", "/tags/", "", "pushsim", "wrong"); c != 401 || !strings.Contains(string(b), "27004") {
		t.Fatalf("wrong secret: %d %s", c, b)
	}
	if c, b := el("GET", "/tags/", "", "", ""); c != 401 || !strings.Contains(string(b), "27001") {
		t.Fatalf("no auth: %d %s", c, b)
	}
	tests := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"POST", "/tags/vip", `{"registration_ids":{"add":["r1","r2"]}}`, 200, ""},
		{"POST", "/tags/bad-tag", `{"registration_ids":{"add":["r1"]}}`, 400, "27002"},
		{"POST", "/tags/" + strings.Repeat("t", 41), `{"registration_ids":{"add":["r1"]}}`, 401, "27017"},
		{"POST", "/tags/vip", `{"registration_ids":{"add":["invalid-1"]}}`, 400, "27005"},
		{"GET", "/tags/vip/registration_ids/r1", ``, 200, `"result":true`},
		{"GET", "/tags/vip/registration_ids/r9", ``, 200, `"result":false`},
		{"GET", "/tags/", ``, 200, `"vip"`},
		{"GET", "/tags_count?tags=vip&tags=none&platform=android", ``, 200, `"vip":2`},
		{"POST", "/devices/r1", `{"tags":{"add":["gold"]},"alias":"alice"}`, 200, ""},
		{"GET", "/devices/r1", ``, 200, `"alias":"alice"`},
		{"POST", "/devices/r2", `{"alias":"alice"}`, 400, "27010"},
		{"GET", "/aliases/alice?platform=android", ``, 200, `"r1"`},
		{"DELETE", "/aliases/alice", ``, 200, ""},
		{"POST", "/devices/status/", `{"registration_ids":["r1","zz"]}`, 200, `"online":true`},
		{"GET", "/tags/quota-info?tags=vip&platform=android", ``, 200, `"useUidQuota":2`},
		{"DELETE", "/tags/vip?platform=android,ios", ``, 200, ""},
		{"DELETE", "/devices/r1", ``, 200, ""},
		{"GET", "/tags_count?tags=vip&platform=windows", ``, 400, "27002"},
		{"GET", "/tags_count?tags=vip", ``, 400, "27002"},
		{"POST", "/devices/r5", `{"tags":{"add":["a","b"]}}`, 200, "success"},
		{"POST", "/devices/r5", `{"tags":""}`, 200, "success"},
		{"GET", "/devices/r5", ``, 200, `{"alias":null,"tags":null}`},
		{"GET", "/devices/never-seen", ``, 200, `{"alias":null,"tags":null}`},
		{"POST", "/devices/r5", `{"tags":"x"}`, 400, "27002"},
		{"POST", "/devices/r5", `{"alias":"bad alias"}`, 400, "27002"},
		{"POST", "/devices/status/", `{"registration_ids":["r1","invalid-9"]}`, 400, `invalid_regids\":[\"invalid-9\"]`},
		{"POST", "/devices/status/", `{"registration_ids":[]}`, 400, "27002"},
		{"GET", "/aliases/nobody", ``, 200, `"registration_ids":null`},
		{"GET", "/nothing/here", ``, 404, "27002"},
	}
	for i, tt := range tests {
		c, b := ok(tt.method, tt.path, tt.body)
		if c != tt.want || !strings.Contains(string(b), tt.contains) {
			t.Errorf("%d %s %s: %d %s, want %d containing %q", i, tt.method, tt.path, c, b, tt.want, tt.contains)
		}
	}
	var many []string
	for i := 0; i < 1001; i++ {
		many = append(many, fmt.Sprintf("r%d", i))
	}
	mb, _ := json.Marshal(map[string]any{"registration_ids": map[string]any{"add": many}})
	if c, _ := ok("POST", "/tags/big", string(mb)); c != 400 {
		t.Errorf("1001 ids: %d", c)
	}
	// ≤ 100 tags per device: 27011, answered 401 as the original's table says.
	tags := make([]string, 100)
	for i := range tags {
		tags[i] = fmt.Sprintf("t%d", i)
	}
	tb, _ := json.Marshal(map[string]any{"tags": map[string]any{"add": tags}})
	if c, b := ok("POST", "/devices/full", string(tb)); c != 200 {
		t.Fatalf("100 tags: %d %s", c, b)
	}
	if c, b := ok("POST", "/tags/one_more", `{"registration_ids":{"add":["full"]}}`); c != 401 || !strings.Contains(string(b), "27011") {
		t.Errorf("101st tag via tags: %d %s", c, b)
	}
	if c, b := ok("POST", "/devices/full", `{"tags":{"add":["one_more"]}}`); c != 401 || !strings.Contains(string(b), "27011") {
		t.Errorf("101st tag via devices: %d %s", c, b)
	}
	if c, b := ok("GET", "/tags/one_more/registration_ids/full", ""); c != 200 || !strings.Contains(string(b), "false") {
		t.Errorf("refused tag was bound: %d %s", c, b)
	}
}

func TestEngageLabQPS(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{Limits: map[provider.Group]float64{provider.GroupTags: 1}})
	codes := []int{}
	for i := 0; i < 2; i++ {
		req, _ := http.NewRequest("GET", e.srv.URL()+"/v4/tags/", nil)
		req.SetBasicAuth("pushsim", "pushsim-secret")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		codes = append(codes, resp.StatusCode)
	}
	if codes[0] != 200 || codes[1] != 429 {
		t.Fatalf("codes %v, want [200 429]", codes)
	}
}

func TestConcurrentCallsAreAllCounted(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	var wg sync.WaitGroup
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			body := fmt.Sprintf(`{"targets":["c%d"],"pushMessage":{"t":1}}`, i)
			req, _ := http.NewRequest("POST", e.base+"/push/single", strings.NewReader(body))
			req.Header.Set("Authorization", "Bearer "+e.token)
			resp, err := http.DefaultClient.Do(req)
			if err == nil {
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	st := e.srv.Sim().Stats()
	if st.TargetsPushed != 20 || st.CallsFor("easemob", "org/app", provider.GroupPushSingle) != 20 {
		t.Errorf("stats %+v", st)
	}
}

func TestEasemobErrorsAndEdges(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	code, b := do(t, http.MethodGet, e.base+"/push/label", "", "")
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil || code != 401 || m["error"] != "unauthorized" || m["error_description"] == nil || m["timestamp"] == nil {
		t.Fatalf("no token: %d %s", code, b)
	}
	if c, m := e.call(t, http.MethodGet, "/no/such/path", ""); c != 404 || m["error_description"] == nil {
		t.Fatalf("unknown path: %d %v", c, m)
	}
	e.call(t, http.MethodPost, "/push/label", `{"name":"l"}`)
	if c, m := e.call(t, http.MethodGet, "/push/label/l/user/stranger", ""); c != 200 || len(m["data"].(map[string]any)) != 0 {
		t.Fatalf("non-member: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"d","description":"`+strings.Repeat("é", 256)+`"}`); c != 400 || m["error"] != "IllegalArgumentException" {
		t.Fatalf("256-character description: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"`+strings.Repeat("n", 65)+`"}`); c != 400 {
		t.Fatalf("65-character name: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodPost, "/push/list/label", `{"targets":["l","m"],"pushMessage":{"t":1}}`); c != 400 || m["error"] != "IllegalArgumentException" {
		t.Fatalf("two labels: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodPost, "/push/list/label", `{"targets":["nope"],"pushMessage":{"t":1}}`); c != 400 || m["error_description"] != "push label not exists of nope" {
		t.Fatalf("missing label push: %d %v", c, m)
	}
	for _, d := range []string{"2026-11-22 12:00", "2026/11/22 14:00:00", t0.Add(31 * 24 * time.Hour).Format(startDateLayout)} {
		if c, m := e.call(t, http.MethodPost, "/push/task", `{"startDate":"`+d+`","pushMessage":{"t":1}}`); c != 400 {
			t.Errorf("startDate %q: %d %v", d, c, m)
		}
	}
	if c, m := e.call(t, http.MethodGet, "/push/label?limit=0", ""); c != 400 {
		t.Errorf("limit 0: %d %v", c, m)
	}
	if c, m := e.call(t, http.MethodGet, "/push/label?cursor=garbage!", ""); c != 400 {
		t.Errorf("bad cursor: %d %v", c, m)
	}
	// The API's own examples send integers as strings.
	if c, m := e.call(t, http.MethodPut, "/users/s1", `{"notification_display_style":"1","notification_no_disturbing":true,"notification_no_disturbing_start":"8","notification_no_disturbing_end":"18"}`); c != 200 {
		t.Fatalf("string integers: %d %v", c, m)
	} else if ent := m["entities"].([]any)[0].(map[string]any); ent["notification_display_style"].(float64) != 1 || ent["notification_no_disturbing_end"].(float64) != 18 {
		t.Fatalf("entity: %v", ent)
	}
	if c, m := e.call(t, http.MethodPut, "/users/s1", `{"notification_no_disturbing_start":"24"}`); c != 400 {
		t.Errorf("hour 24: %d %v", c, m)
	}
}

func TestLimitExceptionShape(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true, TaskWindow: TaskWindow{MaxCreated: 1}})
	if c, m := e.call(t, http.MethodPost, "/push/task", `{"pushMessage":{"t":1}}`); c != 200 {
		t.Fatalf("first broadcast: %d %v", c, m)
	} else if _, isNum := m["data"].(float64); !isNum {
		t.Fatalf("broadcast data is not a task id number: %v", m)
	}
	c, m := e.call(t, http.MethodPost, "/push/task", `{"pushMessage":{"t":1}}`)
	if c != 403 || m["error"] != "LimitException" || m["error_description"] != "limit request" || m["exception"] == nil {
		t.Fatalf("second broadcast: %d %v", c, m)
	}
}

// TestBroadcastReachesKnownUsers: a broadcast pushes everyone the app has
// seen pushed, labelled or given settings — not users only looked up.
func TestBroadcastReachesKnownUsers(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	e.call(t, http.MethodPost, "/push/single", `{"targets":["pushed"],"pushMessage":{"t":1}}`)
	e.call(t, http.MethodPost, "/push/label", `{"name":"l"}`)
	e.call(t, http.MethodPost, "/push/label/l/user", `{"usernames":["labelled"]}`)
	e.call(t, http.MethodPut, "/users/configured", `{"nickname":"n"}`)
	e.call(t, http.MethodGet, "/users/looked-up/notification/language", "")
	e.call(t, http.MethodGet, "/users/looked-up/notification/user/x", "")
	c, m := e.call(t, http.MethodPost, "/push/task", `{"pushMessage":{"title":"all"}}`)
	if c != 200 {
		t.Fatalf("broadcast: %d %v", c, m)
	}
	sim := e.srv.Sim()
	for _, u := range []string{"pushed", "labelled", "configured"} {
		ps := sim.Pushes(u)
		if len(ps) == 0 || ps[len(ps)-1].Via != "broadcast" || ps[len(ps)-1].TaskID == "" {
			t.Errorf("%s: pushes %+v", u, ps)
		}
	}
	if n := sim.PushCount("looked-up"); n != 0 {
		t.Errorf("a user only looked up was pushed %d times", n)
	}
	st := sim.Stats()
	if len(st.Tasks) != 1 || st.Tasks[0].Reached != 3 || !st.Tasks[0].Executed {
		t.Errorf("tasks: %+v", st.Tasks)
	}
}

// engagelab calls the EngageLab API with the default credentials.
func (e *env) engagelab(t *testing.T, method, path, body string) (int, string) {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, e.srv.URL()+"/v4"+path, rd)
	if err != nil {
		t.Fatal(err)
	}
	req.SetBasicAuth("pushsim", "pushsim-secret")
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// simGet is a GET on the inspection API.
func (e *env) simGet(t *testing.T, path string) (int, string) {
	t.Helper()
	code, b := do(t, http.MethodGet, e.srv.URL()+path, "", "")
	return code, string(b)
}

func TestInspectEasemobState(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	for i, st := range []struct{ method, path, body string }{
		{"POST", "/push/label", `{"name":"vip","description":"top buyers"}`},
		{"POST", "/push/label", `{"name":"new"}`},
		{"POST", "/push/label/vip/user", `{"usernames":["b","a","invalid-x"]}`},
		{"POST", "/push/label/vip/user", `{"usernames":["c"]}`},
		{"DELETE", "/push/label/vip/user", `{"usernames":["b"]}`},
		{"PUT", "/users/u1", `{"nickname":"Shop","notification_display_style":1}`},
		{"PUT", "/users/u1", `{"notification_no_disturbing":true,"notification_no_disturbing_start":1,"notification_no_disturbing_end":3}`},
		{"PUT", "/users/u1/notification/user/u2", `{"type":"AT","ignoreInterval":"21:30-08:00","ignoreDuration":60000}`},
		{"PUT", "/users/u1/notification/chatgroup/g1", `{"type":"NONE"}`},
		{"PUT", "/users/u1/notification/language", `{"translationLanguage":"EU"}`},
		{"GET", "/users/lookedup/notification/language", ``},
		{"POST", "/notification/template", `{"name":"sale","title_pattern":"Hi {0}","content_pattern":"{1} off"}`},
		{"POST", "/notification/template", `{"name":"again","title_pattern":"t","content_pattern":"c"}`},
	} {
		if c, m := e.call(t, st.method, st.path, st.body); c != 200 {
			t.Fatalf("setup step %d %s %s: %d %v", i, st.method, st.path, c, m)
		}
	}
	sim := e.srv.Sim()
	t.Run("go", func(t *testing.T) {
		if got := sim.Labels("org", "app"); fmt.Sprint(got) != "[new vip]" {
			t.Errorf("Labels %v", got)
		}
		if got := sim.Labels("org", "other"); got == nil || len(got) != 0 {
			t.Errorf("Labels of an unknown app %#v, want empty", got)
		}
		l, ok := sim.Label("org", "app", "vip")
		want := LabelInfo{Name: "vip", Description: "top buyers", CreatedAt: t0, Members: []string{"a", "c"}, Count: 2}
		if !ok || fmt.Sprint(l) != fmt.Sprint(want) {
			t.Errorf("Label vip %+v %v, want %+v", l, ok, want)
		}
		if l, ok := sim.Label("org", "app", "new"); !ok || l.Count != 0 || l.Members == nil {
			t.Errorf("empty label %#v %v", l, ok)
		}
		for _, k := range [][3]string{{"org", "app", "nope"}, {"org", "other", "vip"}, {"org/app", "", "vip"}} {
			if _, ok := sim.Label(k[0], k[1], k[2]); ok {
				t.Errorf("Label %v found", k)
			}
		}
		u, ok := sim.UserSettings("org", "app", "u1")
		wantU := UserSettingsInfo{User: "u1", Nickname: "Shop", DisplayStyle: 1, DND: DNDInfo{Enabled: true, Start: 1, End: 3},
			Modes: map[string]NotifyMode{
				"user/u2":      {Type: "AT", IgnoreInterval: "21:30-08:00", IgnoreDuration: t0.UnixMilli() + 60000},
				"chatgroup/g1": {Type: "NONE"},
			}, Language: "EU"}
		if !ok || fmt.Sprint(u) != fmt.Sprint(wantU) {
			t.Errorf("UserSettings u1 %+v %v,\nwant %+v", u, ok, wantU)
		}
		for _, user := range []string{"a", "lookedup", "nobody"} { // labelled, only looked up, unknown
			if u, ok := sim.UserSettings("org", "app", user); ok {
				t.Errorf("UserSettings %s: %+v, want none", user, u)
			}
		}
		if got := sim.Templates("org", "app"); fmt.Sprint(got) != "[again sale]" {
			t.Errorf("Templates %v", got)
		}
		tp, ok := sim.Template("org", "app", "sale")
		if !ok || tp != (TemplateInfo{Name: "sale", TitlePattern: "Hi {0}", ContentPattern: "{1} off", CreatedAt: t0, UpdatedAt: t0}) {
			t.Errorf("Template sale %+v %v", tp, ok)
		}
		if _, ok := sim.Template("org", "app", "nope"); ok {
			t.Error("Template nope found")
		}
		// Answers are copies.
		l.Members[0] = "changed"
		u.Modes["user/u2"] = NotifyMode{}
		if l, _ := sim.Label("org", "app", "vip"); l.Members[0] != "a" {
			t.Error("Label shares its member slice")
		}
		if u, _ := sim.UserSettings("org", "app", "u1"); u.Modes["user/u2"].Type != "AT" {
			t.Error("UserSettings shares its modes")
		}
		// Looking does not create apps.
		sim.mu.Lock()
		n := len(sim.easemob)
		sim.mu.Unlock()
		if n != 1 {
			t.Errorf("%d Easemob apps after inspection, want 1", n)
		}
		if st := sim.Stats(); st.MaxLabelUsersPerCall != 3 {
			t.Errorf("max_label_users_per_call %d, want 3", st.MaxLabelUsersPerCall)
		}
	})
	t.Run("http", func(t *testing.T) {
		tests := []struct {
			path     string
			want     int
			contains []string
		}{
			{"/_sim/labels?org=org&app=app", 200, []string{`"labels":["new","vip"]`, `"org":"org"`}},
			{"/_sim/labels?org=org&app=other", 200, []string{`"labels":[]`}},
			{"/_sim/labels?org=org", 400, []string{`"error":"app query parameter required"`}},
			{"/_sim/label?org=org&app=app&name=vip", 200, []string{`"name":"vip"`, `"description":"top buyers"`, `"members":["a","c"]`, `"count":2`, `"created_at":"2026-11-22T12:00:00Z"`}},
			{"/_sim/label?org=org&app=app&name=new", 200, []string{`"members":[]`, `"count":0`}},
			{"/_sim/label?org=org&app=app&name=nope", 404, []string{`"error":"label not found"`}},
			{"/_sim/label?org=org&app=app", 400, []string{"name query parameter required"}},
			{"/_sim/user?org=org&app=app&user=u1", 200, []string{`"nickname":"Shop"`, `"notification_display_style":1`, `"dnd":{"enabled":true,"start":1,"end":3}`, `"user/u2":{"type":"AT","ignoreInterval":"21:30-08:00","ignoreDuration":`, `"language":"EU"`}},
			{"/_sim/user?org=org&app=app&user=a", 404, []string{"user settings not found"}},
			{"/_sim/user?app=app&user=u1", 400, []string{"org query parameter required"}},
			{"/_sim/templates?org=org&app=app", 200, []string{`"templates":["again","sale"]`}},
			{"/_sim/templates?app=app", 400, []string{"org query parameter required"}},
			{"/_sim/template?org=org&app=app&name=sale", 200, []string{`"title_pattern":"Hi {0}"`, `"content_pattern":"{1} off"`, `"updated_at":"2026-11-22T12:00:00Z"`}},
			{"/_sim/template?org=org&app=app&name=nope", 404, []string{"template not found"}},
			{"/_sim/stats", 200, []string{`"max_label_users_per_call":3`, `"max_tag_ids_per_call":0`}},
			{"/_sim/nothing", 404, []string{"unknown /_sim/ path"}},
		}
		for _, tt := range tests {
			code, b := e.simGet(t, tt.path)
			if code != tt.want {
				t.Errorf("GET %s: %d %s, want %d", tt.path, code, b, tt.want)
				continue
			}
			for _, c := range tt.contains {
				if !strings.Contains(b, c) {
					t.Errorf("GET %s: %s, want it to contain %s", tt.path, b, c)
				}
			}
		}
		// The HTTP answer is the Go one.
		_, b := e.simGet(t, "/_sim/label?org=org&app=app&name=vip")
		var l LabelInfo
		if err := json.Unmarshal([]byte(b), &l); err != nil {
			t.Fatal(err)
		}
		if want, _ := sim.Label("org", "app", "vip"); fmt.Sprint(l) != fmt.Sprint(want) {
			t.Errorf("HTTP label %+v, Go %+v", l, want)
		}
		if code, _ := do(t, http.MethodPost, e.srv.URL()+"/_sim/labels?org=org&app=app", "", ""); code != 404 {
			t.Errorf("POST /_sim/labels: %d, want 404", code)
		}
	})
	sim.Reset()
	if st := sim.Stats(); st.MaxLabelUsersPerCall != 0 || len(sim.Labels("org", "app")) != 0 {
		t.Errorf("after Reset: max_label_users_per_call %d, labels %v", st.MaxLabelUsersPerCall, sim.Labels("org", "app"))
	}
}

func TestInspectEngageLabTags(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	sim := e.srv.Sim()
	ids := func(prefix string, n int) string {
		out := make([]string, n)
		for i := range out {
			out[i] = fmt.Sprintf("%s%d", prefix, i)
		}
		b, _ := json.Marshal(out)
		return string(b)
	}
	steps := []struct {
		method, path, body string
		want               int
		tag                string
		members            string // fmt of TagMembers, "" for none
	}{
		{"POST", "/tags/vip", `{"registration_ids":{"add":["r2","r1"]}}`, 200, "vip", "[r1 r2]"},
		{"POST", "/devices/r3", `{"tags":{"add":["vip","gold"]}}`, 200, "vip", "[r1 r2 r3]"},
		{"POST", "/tags/vip", `{"registration_ids":{"remove":["r2"]}}`, 200, "vip", "[r1 r3]"},
		{"POST", "/devices/r3", `{"tags":{"remove":["vip"]}}`, 200, "vip", "[r1]"},
		{"POST", "/tags/vip", `{"registration_ids":{"add":["invalid-1"]}}`, 400, "vip", "[r1]"},
		// Removing from a tag that does not exist is a success and creates nothing.
		{"POST", "/tags/ghost", `{"registration_ids":{"remove":["r1"]}}`, 200, "ghost", ""},
		{"POST", "/devices/r3", `{"tags":""}`, 200, "gold", "[]"},
		{"DELETE", "/devices/r1", ``, 200, "vip", "[]"},
		{"POST", "/tags/vip", `{"registration_ids":{"add":["r5"]}}`, 200, "vip", "[r5]"},
		{"DELETE", "/tags/vip", ``, 200, "vip", ""},
		{"POST", "/tags/big", `{"registration_ids":{"add":` + ids("x", 7) + `,"remove":` + ids("y", 3) + `}}`, 200, "big", "[x0 x1 x2 x3 x4 x5 x6]"},
	}
	for i, st := range steps {
		if c, b := e.engagelab(t, st.method, st.path, st.body); c != st.want {
			t.Fatalf("step %d %s %s: %d %s, want %d", i, st.method, st.path, c, b, st.want)
		}
		got, ok := sim.TagMembers("pushsim", st.tag)
		if st.members == "" && ok || st.members != "" && (!ok || fmt.Sprint(got) != st.members) {
			t.Errorf("step %d %s %s: TagMembers(%s) %v %v, want %q", i, st.method, st.path, st.tag, got, ok, st.members)
		}
	}
	if _, ok := sim.TagMembers("other-key", "big"); ok {
		t.Error("tag found under another app key")
	}
	if st := sim.Stats(); st.MaxTagIDsPerCall != 7 {
		t.Errorf("max_tag_ids_per_call %d, want 7 (add and remove counted apart)", st.MaxTagIDsPerCall)
	}
	if c, _ := e.engagelab(t, "POST", "/tags/big", `{"registration_ids":{"remove":`+ids("x", 1001)+`}}`); c != 400 {
		t.Errorf("1001 ids: %d", c)
	}
	if st := sim.Stats(); st.MaxTagIDsPerCall != 1001 {
		t.Errorf("max_tag_ids_per_call %d after a refused 1001-id call, want 1001", st.MaxTagIDsPerCall)
	}
	tests := []struct {
		path     string
		want     int
		contains string
	}{
		{"/_sim/tag?app_key=pushsim&tag=big", 200, `{"app_key":"pushsim","count":7,"registration_ids":["x0","x1","x2","x3","x4","x5","x6"],"tag":"big"}`},
		{"/_sim/tag?app_key=pushsim&tag=gold", 200, `"registration_ids":[]`},
		{"/_sim/tag?app_key=pushsim&tag=vip", 404, `"error":"tag not found"`},
		{"/_sim/tag?app_key=nobody&tag=big", 404, `"error":"tag not found"`},
		{"/_sim/tag?tag=big", 400, "app_key query parameter required"},
		{"/_sim/tag?app_key=pushsim", 400, "tag query parameter required"},
		{"/_sim/stats", 200, `"max_tag_ids_per_call":1001`},
	}
	for _, tt := range tests {
		if code, b := e.simGet(t, tt.path); code != tt.want || !strings.Contains(b, tt.contains) {
			t.Errorf("GET %s: %d %s, want %d containing %s", tt.path, code, b, tt.want, tt.contains)
		}
	}
	sim.Reset()
	if st := sim.Stats(); st.MaxTagIDsPerCall != 0 {
		t.Errorf("after Reset: max_tag_ids_per_call %d", st.MaxTagIDsPerCall)
	}
}

// TestConfiguredCaps hits the label and tag caps set small.
func TestConfiguredCaps(t *testing.T) {
	t.Parallel()
	t.Run("labels", func(t *testing.T) {
		t.Parallel()
		e := setup(t, Config{LimitsOff: true, MaxLabels: 2})
		tests := []struct {
			body, errType, desc string
			want                int
		}{
			{`{"name":"l0"}`, "", "", 200},
			{`{"name":"l1"}`, "", "", 200},
			{`{"name":"l2"}`, "LimitException", "limit request", 403},
			{`{"name":"l0"}`, "IllegalArgumentException", "push label already exists: l0", 400}, // a duplicate at the cap is still a duplicate
		}
		for i, tt := range tests {
			c, m := e.call(t, http.MethodPost, "/push/label", tt.body)
			if c != tt.want || tt.errType != "" && (m["error"] != tt.errType || m["error_description"] != tt.desc) {
				t.Errorf("%d %s: %d %v, want %d %s %q", i, tt.body, c, m, tt.want, tt.errType, tt.desc)
			}
		}
		if c, _ := e.call(t, http.MethodDelete, "/push/label/l1", ""); c != 200 {
			t.Fatal("delete")
		}
		if c, m := e.call(t, http.MethodPost, "/push/label", `{"name":"l2"}`); c != 200 {
			t.Errorf("create after a delete freed a slot: %d %v", c, m)
		}
		if st := e.srv.Sim().Stats(); st.LimitExceptions != 1 {
			t.Errorf("limit_exceptions %d, want 1", st.LimitExceptions)
		}
	})
	t.Run("default label cap", func(t *testing.T) {
		t.Parallel()
		if s := New(Config{}); s.cfg.MaxLabels != DefaultMaxLabels || s.cfg.MaxTagsPerApp != 100_000 || s.cfg.MaxDevicesPerTag != 100_000 {
			t.Errorf("defaults %d %d %d", s.cfg.MaxLabels, s.cfg.MaxTagsPerApp, s.cfg.MaxDevicesPerTag)
		}
	})
	t.Run("tags", func(t *testing.T) {
		t.Parallel()
		e := setup(t, Config{LimitsOff: true, MaxTagsPerApp: 2, MaxDevicesPerTag: 2})
		tests := []struct {
			method, path, body string
			want               int
			contains           string
		}{
			{"POST", "/tags/a", `{"registration_ids":{"add":["r1","r2"]}}`, 200, "success"},
			{"POST", "/tags/a", `{"registration_ids":{"add":["r1","r2","r2"]}}`, 200, "success"}, // already bound: not new
			{"POST", "/tags/a", `{"registration_ids":{"add":["r3"]}}`, 401, `"code":27014`},
			{"POST", "/devices/r3", `{"tags":{"add":["a"]}}`, 401, `"code":27014`},
			{"GET", "/devices/r3", ``, 200, `"tags":null`}, // a refused call leaves no trace
			{"POST", "/tags/a", `{"registration_ids":{"add":["r3"],"remove":["r1"]}}`, 401, `"code":27014`},
			{"POST", "/tags/a", `{"registration_ids":{"remove":["r1"]}}`, 200, "success"},
			{"POST", "/tags/a", `{"registration_ids":{"add":["r3"]}}`, 200, "success"},
			{"POST", "/tags/b", `{"registration_ids":{"add":["r1"]}}`, 200, "success"},
			{"POST", "/tags/c", `{"registration_ids":{"add":["r1"]}}`, 401, `"code":27013`},
			{"POST", "/devices/r1", `{"tags":{"add":["c"]}}`, 401, `"code":27013`},
			{"POST", "/devices/r4", `{"tags":{"add":["b","d"]}}`, 401, `"code":27013`},
			{"GET", "/tags/b/registration_ids/r4", ``, 200, `"result":false`},
			{"POST", "/devices/r4", `{"tags":{"add":["b"]}}`, 200, "success"},
			{"POST", "/tags/c", `{"registration_ids":{"remove":["r1"]}}`, 200, "success"}, // removing needs no new tag
			{"GET", "/tags/", ``, 200, `{"tags":["a","b"]}`},
			{"GET", "/tags/quota-info?tags=a", ``, 200, `"totalTagQuota":2`},
			{"GET", "/tags/quota-info?tags=a", ``, 200, `"totalUidQuota":2`},
			{"DELETE", "/tags/b", ``, 200, "success"},
			{"POST", "/tags/c", `{"registration_ids":{"add":["r1"]}}`, 200, "success"},
		}
		for i, tt := range tests {
			if c, b := e.engagelab(t, tt.method, tt.path, tt.body); c != tt.want || !strings.Contains(b, tt.contains) {
				t.Errorf("%d %s %s %s: %d %s, want %d containing %s", i, tt.method, tt.path, tt.body, c, b, tt.want, tt.contains)
			}
		}
		if got, _ := e.srv.Sim().TagMembers("pushsim", "a"); fmt.Sprint(got) != "[r2 r3]" {
			t.Errorf("tag a %v", got)
		}
	})
}

// TestDocumentedErrors checks the error answers docs/pushsim.md promises
// for the non-push calls.
func TestDocumentedErrors(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	e.call(t, http.MethodPost, "/push/label", `{"name":"l"}`)
	tests := []struct {
		method, path, body string
		want               int
		errType, desc      string
	}{
		{"POST", "/push/label/nope/user", `{"usernames":["u1"]}`, 400, "ResourceNotFoundException", "push label not exists of nope"},
		{"DELETE", "/push/label/nope/user", `{"usernames":["u1"]}`, 400, "ResourceNotFoundException", "push label not exists of nope"},
		{"GET", "/push/label/nope/user", ``, 400, "ResourceNotFoundException", "push label not exists of nope"},
		{"GET", "/push/label/nope/user/u1", ``, 400, "ResourceNotFoundException", "push label not exists of nope"},
		{"GET", "/push/label/nope", ``, 400, "ResourceNotFoundException", "push label not exists of nope"},
		{"DELETE", "/push/label/nope", ``, 400, "ResourceNotFoundException", "push label not exists of nope"},
		{"POST", "/push/label", `{"name":"l"}`, 400, "IllegalArgumentException", "push label already exists: l"},
		{"DELETE", "/notification/template/nope", ``, 400, "ResourceNotFoundException", "template not exists of nope"},
		{"GET", "/notification/template/nope", ``, 400, "ResourceNotFoundException", "template not exists of nope"},
	}
	for _, tt := range tests {
		c, m := e.call(t, tt.method, tt.path, tt.body)
		if c != tt.want || m["error"] != tt.errType || m["error_description"] != tt.desc || m["exception"] == nil {
			t.Errorf("%s %s: %d %v, want %d %s %q", tt.method, tt.path, c, m, tt.want, tt.errType, tt.desc)
		}
	}
	// A failed member add of a missing label still counts its usernames.
	if st := e.srv.Sim().Stats(); st.MaxLabelUsersPerCall != 1 {
		t.Errorf("max_label_users_per_call %d", st.MaxLabelUsersPerCall)
	}
	for _, target := range []string{"invalid-x", "has space"} {
		c, m := e.call(t, http.MethodPost, "/push/sync/"+strings.ReplaceAll(target, " ", "%20"), `{"pushMessage":{"title":"t"}}`)
		if c != 200 {
			t.Fatalf("sync %q: %d %v", target, c, m)
		}
		if d := m["data"].([]any)[0].(map[string]any); d["pushStatus"] != "FAIL" || d["desc"] != "appUser not exists" {
			t.Errorf("sync %q: %v", target, m)
		}
		if n := e.srv.Sim().PushCount(target); n != 0 {
			t.Errorf("sync %q recorded %d pushes", target, n)
		}
	}
}

func TestTaskLogIsServed(t *testing.T) {
	t.Parallel()
	srv := httptest.NewServer(New(Config{}))
	defer srv.Close()
	for _, c := range []struct{ path, want string }{
		{"/_sim/tasks", "[]"},
		{"/_sim/tasks?format=text", "kind"},
	} {
		resp, err := http.Get(srv.URL + c.path)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || !strings.Contains(string(b), c.want) {
			t.Errorf("%s: %d %s", c.path, resp.StatusCode, b)
		}
	}
}
