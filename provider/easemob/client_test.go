package easemob

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/rs/zerolog"

	"github.com/campaignd/campaignd/internal/clock"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
)

const secret = "pushsim-secret"

var msg = json.RawMessage(`{"title":"Hi","content":"Hello"}`)

// countingGate records every request the client asks to send, by group,
// and how many of its grants were told their request was written.
type countingGate struct {
	mu       sync.Mutex
	groups   []provider.Group
	written  []time.Time
	answered []time.Time
	newConn  []bool // per written request: on a plain connection opened for it
}

func (g *countingGate) Acquire(_ context.Context, _ string, group provider.Group) error {
	g.mu.Lock()
	g.groups = append(g.groups, group)
	g.mu.Unlock()
	return nil
}

func (g *countingGate) AcquireGrant(ctx context.Context, app string, group provider.Group) (provider.Grant, error) {
	return countingGrant{g}, g.Acquire(ctx, app, group)
}

type countingGrant struct{ g *countingGate }

func (c countingGrant) Sent(s provider.Sent) {
	c.g.mu.Lock()
	c.g.written = append(c.g.written, s.Written)
	c.g.answered = append(c.g.answered, s.Answered)
	c.g.newConn = append(c.g.newConn, s.NewPlainConn)
	c.g.mu.Unlock()
}

func (g *countingGate) count(group provider.Group) int {
	g.mu.Lock()
	defer g.mu.Unlock()
	n := 0
	for _, x := range g.groups {
		if x == group {
			n++
		}
	}
	return n
}

type env struct {
	sim  *pushsim.Server
	c    *Client
	gate *countingGate
	logs *bytes.Buffer
	clk  *clock.Fake
}

func setup(t *testing.T, sc pushsim.Config) *env {
	t.Helper()
	clk := clock.NewFake(time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC))
	if sc.Clock == nil {
		sc.Clock = clk
	}
	srv, err := pushsim.Start(sc)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	gate := &countingGate{}
	logs := &bytes.Buffer{}
	c, err := New(Config{
		BaseURL: srv.URL(), Org: "org", App: "app",
		ClientID: "pushsim", ClientSecret: secret,
		Hooks: provider.Hooks{App: "default", Gate: gate},
		Clock: clk, Logger: zerolog.New(logs).Level(zerolog.DebugLevel),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &env{sim: srv, c: c, gate: gate, logs: logs, clk: clk}
}

func kindOf(t *testing.T, err error) provider.Class {
	t.Helper()
	k, ok := provider.ClassOf(err)
	if !ok {
		t.Fatalf("not a provider error: %v", err)
	}
	return k
}

func TestPushCalls(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	ctx := context.Background()
	strategy := 3
	res, err := e.c.PushSingle(ctx, []string{"u1", "invalid-u2"}, PushRequest{Strategy: &strategy, PushMessage: msg})
	if err != nil {
		t.Fatal(err)
	}
	if len(res) != 2 || !res[0].OK() || res[1].OK() || res[1].Desc == "" {
		t.Fatalf("results %+v", res)
	}
	// PushSingleInto gives the same results in the buffer it is given.
	buf := make([]TargetResult, 1, 100)
	buf[0] = TargetResult{ID: "stale"}
	into, err := e.c.PushSingleInto(ctx, []string{"u5", "invalid-u6"}, PushRequest{PushMessage: msg}, buf)
	if err != nil {
		t.Fatal(err)
	}
	if len(into) != 2 || into[0].ID != "u5" || !into[0].OK() || into[1].ID != "invalid-u6" || into[1].OK() || into[1].Desc != res[1].Desc {
		t.Fatalf("results into a buffer %+v", into)
	}
	if &into[0] != &buf[:1][0] {
		t.Error("PushSingleInto did not use the buffer's storage")
	}
	r, err := e.c.PushSync(ctx, "u3", PushRequest{PushMessage: msg})
	if err != nil || !r.OK() || r.ID != "u3" {
		t.Fatalf("sync %+v %v", r, err)
	}
	r, err = e.c.PushAsync(ctx, "u4", PushRequest{PushMessage: msg})
	if err != nil || r.PushStatus != "ASYNC_SUCCESS" {
		t.Fatalf("async %+v %v", r, err)
	}
	for _, u := range []string{"u1", "u3", "u4", "u5"} {
		if n := e.sim.Sim().PushCount(u); n != 1 {
			t.Errorf("%s pushed %d times", u, n)
		}
	}
	if _, err := e.c.CreateLabel(ctx, "post-90s", "born 1990-99"); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.AddLabelUsers(ctx, "post-90s", []string{"m1", "m2"}); err != nil {
		t.Fatal(err)
	}
	id, err := e.c.PushLabel(ctx, "post-90s", nil, PushRequest{PushMessage: msg})
	if err != nil || id == "" {
		t.Fatalf("label push: %q %v", id, err)
	}
	if !strings.HasPrefix(id, "9000000000000000") {
		t.Errorf("task id %q lost precision", id)
	}
	later := e.clk.Now().Add(2 * time.Hour)
	bid, err := e.c.PushTask(ctx, &later, PushRequest{PushMessage: msg})
	if err != nil || bid == "" || bid == id {
		t.Fatalf("broadcast: %q %v", bid, err)
	}
	if n := e.sim.Sim().PushCount("m1"); n != 1 {
		t.Errorf("label member pushed %d times", n)
	}
}

func TestLabelCalls(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	ctx := context.Background()
	l, err := e.c.CreateLabel(ctx, "vip", "very important")
	if err != nil || l.Name != "vip" || l.CreatedAt == 0 {
		t.Fatalf("create %+v %v", l, err)
	}
	users := make([]string, 100)
	for i := range users {
		users[i] = fmt.Sprintf("u%03d", i)
	}
	mr, err := e.c.AddLabelUsers(ctx, "vip", users)
	if err != nil || len(mr.Success) != 100 {
		t.Fatalf("add %+v %v", mr, err)
	}
	got, err := e.c.GetLabel(ctx, "vip")
	if err != nil || got.Count != 100 {
		t.Fatalf("get %+v %v", got, err)
	}
	var all []LabelUser
	cursor := ""
	for i := 0; i < 10; i++ {
		page, next, err := e.c.ListLabelUsers(ctx, "vip", 30, cursor)
		if err != nil {
			t.Fatal(err)
		}
		all = append(all, page...)
		if next == "" {
			break
		}
		cursor = next
	}
	if len(all) != 100 {
		t.Fatalf("listed %d members", len(all))
	}
	if u, err := e.c.GetLabelUser(ctx, "vip", "u005"); err != nil || u.Username != "u005" {
		t.Fatalf("get member %+v %v", u, err)
	}
	mr, err = e.c.RemoveLabelUsers(ctx, "vip", []string{"u001", "nobody"})
	if err != nil || len(mr.Success) != 1 || mr.Fail["nobody"] == "" {
		t.Fatalf("remove %+v %v", mr, err)
	}
	if _, err := e.c.CreateLabel(ctx, "other", ""); err != nil {
		t.Fatal(err)
	}
	ls, next, err := e.c.ListLabels(ctx, 1, "")
	if err != nil || len(ls) != 1 || next == "" {
		t.Fatalf("list labels page 1: %+v %q %v", ls, next, err)
	}
	ls2, _, err := e.c.ListLabels(ctx, 1, next)
	if err != nil || len(ls2) != 1 || ls2[0].Name == ls[0].Name {
		t.Fatalf("list labels page 2: %+v %v", ls2, err)
	}
	if err := e.c.DeleteLabel(ctx, "vip"); err != nil {
		t.Fatal(err)
	}
	_, err = e.c.GetLabel(ctx, "vip")
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassPermanent || pe.Type != "ResourceNotFoundException" {
		t.Fatalf("missing label: %v", err)
	}
}

func TestUserAndTemplateCalls(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	ctx := context.Background()
	if err := e.c.SetNickname(ctx, "u1", "Shop"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.SetDisplayStyle(ctx, "u1", 1); err != nil {
		t.Fatal(err)
	}
	if err := e.c.SetDND(ctx, "u1", true, 22, 7); err != nil {
		t.Fatal(err)
	}
	iv, dur := "21:30-08:00", int64(86_400_000)
	m, err := e.c.SetNotificationMode(ctx, "u1", "user", "u1", NotificationMode{Type: "AT", IgnoreInterval: &iv, IgnoreDuration: &dur})
	if err != nil || m.Type != "AT" {
		t.Fatalf("set mode %+v %v", m, err)
	}
	m, err = e.c.GetNotificationMode(ctx, "u1", "user", "u1")
	if err != nil || m.Type != "AT" || m.IgnoreInterval == nil || *m.IgnoreInterval != iv {
		t.Fatalf("get mode %+v %v", m, err)
	}
	if err := e.c.SetLanguage(ctx, "u1", "EU"); err != nil {
		t.Fatal(err)
	}
	if l, err := e.c.GetLanguage(ctx, "u1"); err != nil || l != "EU" {
		t.Fatalf("language %q %v", l, err)
	}
	tpl, err := e.c.CreateTemplate(ctx, Template{Name: "sale", TitlePattern: "Hi {0}", ContentPattern: "{1}"})
	if err != nil || tpl.Name != "sale" {
		t.Fatalf("template %+v %v", tpl, err)
	}
	if tpl, err = e.c.GetTemplate(ctx, "sale"); err != nil || tpl.TitlePattern != "Hi {0}" {
		t.Fatalf("get template %+v %v", tpl, err)
	}
	if err := e.c.DeleteTemplate(ctx, "sale"); err != nil {
		t.Fatal(err)
	}
	for _, g := range []provider.Group{provider.GroupUser, provider.GroupNotification, provider.GroupTemplate} {
		if e.gate.count(g) == 0 {
			t.Errorf("gate never asked for %s", g)
		}
	}
}

func TestValidationBeforeAnyCall(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{})
	ctx := context.Background()
	many := make([]string, 101)
	for i := range many {
		many[i] = fmt.Sprintf("u%d", i)
	}
	bad := 5
	soon := e.clk.Now().Add(30 * time.Minute)
	far := e.clk.Now().Add(31 * 24 * time.Hour)
	badIv, badDur := "25:00-08:00", int64(604_800_001)
	tests := []struct {
		name  string
		call  func() error
		field string
	}{
		{"101 targets", func() error { _, err := e.c.PushSingle(ctx, many, PushRequest{PushMessage: msg}); return err }, "targets"},
		{"no targets", func() error { _, err := e.c.PushSingle(ctx, nil, PushRequest{PushMessage: msg}); return err }, "targets"},
		{"empty target id", func() error {
			_, err := e.c.PushSingle(ctx, []string{"a", ""}, PushRequest{PushMessage: msg})
			return err
		}, "targets[1]"},
		{"target with slash", func() error { _, err := e.c.PushSync(ctx, "a/b", PushRequest{PushMessage: msg}); return err }, "target"},
		{"strategy 5", func() error {
			_, err := e.c.PushSingle(ctx, []string{"a"}, PushRequest{Strategy: &bad, PushMessage: msg})
			return err
		}, "strategy"},
		{"no pushMessage", func() error { _, err := e.c.PushSingle(ctx, []string{"a"}, PushRequest{}); return err }, "pushMessage"},
		{"pushMessage not an object", func() error {
			_, err := e.c.PushAsync(ctx, "a", PushRequest{PushMessage: json.RawMessage(`"x"`)})
			return err
		}, "pushMessage"},
		{"label name chars", func() error { _, err := e.c.CreateLabel(ctx, "bad label", ""); return err }, "name"},
		{"label name 65", func() error { _, err := e.c.CreateLabel(ctx, strings.Repeat("a", 65), ""); return err }, "name"},
		{"description 256", func() error { _, err := e.c.CreateLabel(ctx, "ok", strings.Repeat("d", 256)); return err }, "description"},
		{"startDate under 1 h", func() error { _, err := e.c.PushLabel(ctx, "l", &soon, PushRequest{PushMessage: msg}); return err }, "startDate"},
		{"startDate over 30 d", func() error { _, err := e.c.PushTask(ctx, &far, PushRequest{PushMessage: msg}); return err }, "startDate"},
		{"101 usernames", func() error { _, err := e.c.AddLabelUsers(ctx, "l", many); return err }, "usernames"},
		{"list limit 101", func() error { _, _, err := e.c.ListLabels(ctx, 101, ""); return err }, "limit"},
		{"nickname 101", func() error { return e.c.SetNickname(ctx, "u", strings.Repeat("n", 101)) }, "nickname"},
		{"display style 2", func() error { return e.c.SetDisplayStyle(ctx, "u", 2) }, "notification_display_style"},
		{"dnd hour 24", func() error { return e.c.SetDND(ctx, "u", true, 24, 1) }, "notification_no_disturbing_start"},
		{"mode type", func() error {
			_, err := e.c.SetNotificationMode(ctx, "u", "user", "u", NotificationMode{Type: "SOME"})
			return err
		}, "type"},
		{"ignoreInterval", func() error {
			_, err := e.c.SetNotificationMode(ctx, "u", "user", "u", NotificationMode{IgnoreInterval: &badIv})
			return err
		}, "ignoreInterval"},
		{"ignoreDuration", func() error {
			_, err := e.c.SetNotificationMode(ctx, "u", "user", "u", NotificationMode{IgnoreDuration: &badDur})
			return err
		}, "ignoreDuration"},
		{"chat type", func() error {
			_, err := e.c.SetNotificationMode(ctx, "u", "room", "g", NotificationMode{Type: "ALL"})
			return err
		}, "chattype"},
		{"template without patterns", func() error { _, err := e.c.CreateTemplate(ctx, Template{Name: "t"}); return err }, "title_pattern"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := tt.call()
			var fes provider.FieldErrors
			if !errors.As(err, &fes) {
				t.Fatalf("want FieldErrors, got %v", err)
			}
			found := false
			for _, fe := range fes {
				found = found || fe.Field == tt.field
			}
			if !found {
				t.Errorf("errors %v do not name %q", fes, tt.field)
			}
		})
	}
	if st := e.sim.Sim().Stats(); st.TotalCalls != 0 {
		t.Errorf("invalid input reached the provider: %d calls", st.TotalCalls)
	}
}

func TestRateLimitedAnswers(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{
		Limits:     map[provider.Group]float64{provider.GroupPushSingle: 1},
		TaskWindow: pushsim.TaskWindow{MaxCreated: 1, Window: time.Minute, MaxRunning: 3, LabelTaskDuration: time.Second},
	})
	ctx := context.Background()
	if _, err := e.c.PushSingle(ctx, []string{"a"}, PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	_, err := e.c.PushSingle(ctx, []string{"a"}, PushRequest{PushMessage: msg})
	if d, ok := provider.IsRateLimited(err); !ok || d != time.Second {
		t.Fatalf("429: %v (retry after %s)", err, d)
	}
	if _, err := e.c.CreateLabel(ctx, "l", ""); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.PushLabel(ctx, "l", nil, PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	e.clk.Advance(2 * time.Second)
	_, err = e.c.PushLabel(ctx, "l", nil, PushRequest{PushMessage: msg})
	var pe *provider.Error
	if !errors.As(err, &pe) || pe.Class != provider.ClassRateLimited || pe.Type != "LimitException" {
		t.Fatalf("LimitException: %v", err)
	}
}

func TestUnauthorizedRefreshesOnceAndRetriesThroughTheGate(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	ctx := context.Background()
	if _, err := e.c.PushSingle(ctx, []string{"a"}, PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	e.sim.Sim().ExpireTokens()
	if _, err := e.c.PushSingle(ctx, []string{"b"}, PushRequest{PushMessage: msg}); err != nil {
		t.Fatalf("after expiry: %v", err)
	}
	if got := e.gate.count(provider.GroupToken); got != 2 {
		t.Errorf("token fetches %d, want 2", got)
	}
	if got := e.gate.count(provider.GroupPushSingle); got != 3 {
		t.Errorf("push/single requests through the gate %d, want 3 (the retry after 401 included)", got)
	}
	st := e.sim.Sim().Stats()
	if st.Statuses[401] != 1 || st.TotalPushes != 2 {
		t.Errorf("stats: 401s %d pushes %d", st.Statuses[401], st.TotalPushes)
	}
}

func TestTokenRefreshedBeforeExpiry(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true, TokenTTL: 100 * time.Second})
	ctx := context.Background()
	call := func() {
		t.Helper()
		if _, err := e.c.PushAsync(ctx, "a", PushRequest{PushMessage: msg}); err != nil {
			t.Fatal(err)
		}
	}
	call()
	e.clk.Advance(79 * time.Second)
	call()
	if got := e.gate.count(provider.GroupToken); got != 1 {
		t.Fatalf("token fetched %d times before 80%% of its life", got)
	}
	e.clk.Advance(2 * time.Second)
	call() // sent with the still-valid token; its successor is fetched in the background
	testenv.WaitUntil(t, 5*time.Second, "the background refresh after 80% of the token's life", func() bool { return e.gate.count(provider.GroupToken) == 2 })
	call()
	if got := e.gate.count(provider.GroupToken); got != 2 {
		t.Fatalf("token fetched %d times after 80%% of its life, want 2", got)
	}
	if st := e.sim.Sim().Stats(); st.Statuses[401] != 0 {
		t.Errorf("a refreshed token should avoid every 401, got %d", st.Statuses[401])
	}
}

// slowGate holds every push/single request for a while, as the shared
// limiter does when the budget is spent; the fake clock moves meanwhile.
type slowGate struct {
	countingGate
	clk  *clock.Fake
	hold time.Duration
}

func (g *slowGate) AcquireGrant(ctx context.Context, app string, group provider.Group) (provider.Grant, error) {
	if group == provider.GroupPushSingle {
		g.clk.Advance(g.hold)
	}
	return g.countingGate.AcquireGrant(ctx, app, group)
}

// A request that waits for its slot longer than its token lives sends the
// token current at the slot, not the one current when it started waiting.
func TestTokenIsTakenAtTheSlot(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true, TokenTTL: 100 * time.Second})
	gate := &slowGate{clk: e.clk, hold: 150 * time.Second}
	c, err := New(Config{BaseURL: e.sim.URL(), Org: "org", App: "app", ClientID: "pushsim", ClientSecret: secret,
		Hooks: provider.Hooks{App: "default", Gate: gate}, Clock: e.clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	for i := range 3 {
		if _, err := c.PushSingle(context.Background(), []string{fmt.Sprint("u", i)}, PushRequest{PushMessage: msg}); err != nil {
			t.Fatal(err)
		}
	}
	st := e.sim.Sim().Stats()
	if st.Statuses[401] != 0 || st.TotalPushes != 3 {
		t.Errorf("401s %d (want 0: every token sent was valid at its slot), pushes %d", st.Statuses[401], st.TotalPushes)
	}
	if got := gate.count(provider.GroupPushSingle); got != 3 {
		t.Errorf("push requests %d, want 3 (no retry)", got)
	}
}

// A 401 for a token that another request has already replaced uses the
// replacement: one fetch per refused token, not one per refused request.
func TestLate401UsesTheTokenAlreadyReplaced(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	// A proxy that holds the answers to user "slow" until "fast" has been
	// answered 200. The first request of "fast" and of "slow" wait for each
	// other there, and the token is revoked before they go on: both are in
	// flight with it; "slow"'s 401 comes back only after "fast" got its own,
	// replaced the token and was sent again with the new one.
	var (
		firstMu  sync.Mutex
		first    = map[string]bool{}
		arrived  sync.WaitGroup
		revoke   sync.Once
		revoking = false
		fastDone = make(chan struct{})
		fastOnce sync.Once
	)
	arrived.Add(2)
	proxy := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		for _, u := range []string{"fast", "slow"} {
			if !revoking || !bytes.Contains(body, []byte(`"`+u+`"`)) {
				continue
			}
			firstMu.Lock()
			seen := first[u]
			first[u] = true
			firstMu.Unlock()
			if !seen {
				arrived.Done()
				arrived.Wait()
				revoke.Do(e.sim.Sim().ExpireTokens)
			}
		}
		out, err := http.NewRequest(r.Method, e.sim.URL()+r.URL.RequestURI(), bytes.NewReader(body))
		if err != nil {
			t.Error(err)
			return
		}
		out.Header = r.Header.Clone()
		resp, err := http.DefaultClient.Do(out)
		if err != nil {
			t.Error(err)
			return
		}
		defer resp.Body.Close()
		switch {
		case bytes.Contains(body, []byte(`"fast"`)) && resp.StatusCode == http.StatusOK:
			fastOnce.Do(func() { close(fastDone) })
		case bytes.Contains(body, []byte(`"slow"`)):
			// A slow answer: its request is still out while the other's is
			// answered (and retried with the replaced token).
			deadline := time.NewTimer(10 * time.Second)
			defer deadline.Stop()
			select {
			case <-fastDone:
			case <-deadline.C:
				t.Error(`"fast" not answered 200 within 10 s of "slow"'s answer being held`)
			}
		}
		w.WriteHeader(resp.StatusCode)
		_, _ = io.Copy(w, resp.Body)
	}))
	t.Cleanup(proxy.Close)
	gate := &countingGate{}
	c, err := New(Config{BaseURL: proxy.URL, Org: "org", App: "app", ClientID: "pushsim", ClientSecret: secret,
		Hooks: provider.Hooks{App: "default", Gate: gate}, Clock: e.clk, Logger: zerolog.Nop()})
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	if _, err := c.PushSingle(ctx, []string{"first"}, PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	revoking = true // from now on, the proxy revokes the token (see above)
	var wg sync.WaitGroup
	for _, u := range []string{"fast", "slow"} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := c.PushSingle(ctx, []string{u}, PushRequest{PushMessage: msg}); err != nil {
				t.Errorf("%s: %v", u, err)
			}
		}()
	}
	wg.Wait()
	if got := gate.count(provider.GroupToken); got != 2 {
		t.Errorf("token fetches %d, want 2 (the first, and one replacement of the revoked token)", got)
	}
	if st := e.sim.Sim().Stats(); st.Statuses[401] != 2 || st.TotalPushes != 3 {
		t.Errorf("401s %d (want 2: one per request in flight at the revocation), pushes %d", st.Statuses[401], st.TotalPushes)
	}
}

func TestConcurrentCallersShareOneTokenFetch(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true, Faults: pushsim.Faults{Latency: 20 * time.Millisecond}})
	var wg sync.WaitGroup
	var failed atomic.Int32
	for i := 0; i < 20; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := e.c.PushAsync(context.Background(), fmt.Sprintf("u%d", i), PushRequest{PushMessage: msg}); err != nil {
				failed.Add(1)
			}
		}()
	}
	wg.Wait()
	if failed.Load() != 0 {
		t.Fatalf("%d calls failed", failed.Load())
	}
	if got := e.gate.count(provider.GroupToken); got != 1 {
		t.Errorf("token fetched %d times by 20 concurrent callers", got)
	}
}

func TestServerErrorsAreTransient(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	// The token first, then every call faults.
	if _, err := e.c.PushAsync(context.Background(), "a", PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	e2 := setup(t, pushsim.Config{LimitsOff: true, Faults: pushsim.Faults{ErrorRate: 1}})
	_, err := e2.c.PushSingle(context.Background(), []string{"a"}, PushRequest{PushMessage: msg})
	if k := kindOf(t, err); k != provider.ClassTransient {
		t.Fatalf("5xx kind %s: %v", k, err)
	}
	e3 := setup(t, pushsim.Config{LimitsOff: true, Faults: pushsim.Faults{DropRate: 1}})
	_, err = e3.c.PushSingle(context.Background(), []string{"a"}, PushRequest{PushMessage: msg})
	if k := kindOf(t, err); k != provider.ClassTransient {
		t.Fatalf("dropped connection kind %s: %v", k, err)
	}
}

func TestErrorMapping(t *testing.T) {
	t.Parallel()
	tests := []struct {
		status     int
		body       string
		retryAfter string
		want       provider.Class
		wantType   string
		wantRetry  time.Duration
	}{
		{429, `{"error":"TooManyRequests"}`, "3", provider.ClassRateLimited, "TooManyRequests", 3 * time.Second},
		{403, `{"error":"LimitException","error_description":"limit request"}`, "", provider.ClassRateLimited, "LimitException", 0},
		{403, `{"error":"ServiceNotOpenException","error_description":"push service not open"}`, "", provider.ClassPermanent, "ServiceNotOpenException", 0},
		{400, `{"error":"MessageException","error_description":"bad_request"}`, "", provider.ClassPermanent, "MessageException", 0},
		{404, `url is invalid`, "", provider.ClassPermanent, "", 0},
		{503, `<html>busy</html>`, "", provider.ClassTransient, "", 0},
	}
	for _, tt := range tests {
		t.Run(fmt.Sprint(tt.status, tt.wantType), func(t *testing.T) {
			srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if tt.retryAfter != "" {
					w.Header().Set("Retry-After", tt.retryAfter)
				}
				w.WriteHeader(tt.status)
				_, _ = w.Write([]byte(tt.body))
			}))
			defer srv.Close()
			c, err := New(Config{BaseURL: srv.URL, Org: "o", App: "a", AppToken: "fixed-token-value"})
			if err != nil {
				t.Fatal(err)
			}
			_, err = c.PushSingle(context.Background(), []string{"x"}, PushRequest{PushMessage: msg})
			var pe *provider.Error
			if !errors.As(err, &pe) {
				t.Fatalf("not a provider error: %v", err)
			}
			if pe.Class != tt.want || pe.Type != tt.wantType || pe.RetryAfter != tt.wantRetry || pe.Status != tt.status {
				t.Errorf("got kind %s type %q retry %s status %d, want %s %q %s", pe.Class, pe.Type, pe.RetryAfter, pe.Status, tt.want, tt.wantType, tt.wantRetry)
			}
		})
	}
}

func TestSecretsNeverInErrorsOrLogs(t *testing.T) {
	t.Parallel()
	// Wrong client secret: the token fetch fails.
	srv, err := pushsim.Start(pushsim.Config{Credentials: pushsim.Credentials{EasemobClientSecret: "the-real-one"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = srv.Close() })
	logs := &bytes.Buffer{}
	const wrongSecret = "s3cr3t-client-secret"
	c, err := New(Config{BaseURL: srv.URL(), Org: "o", App: "a", ClientID: "pushsim", ClientSecret: wrongSecret,
		Logger: zerolog.New(logs).Level(zerolog.DebugLevel)})
	if err != nil {
		t.Fatal(err)
	}
	_, err = c.PushSingle(context.Background(), []string{"x"}, PushRequest{PushMessage: msg})
	if k := kindOf(t, err); k != provider.ClassAuth {
		t.Fatalf("kind %s: %v", k, err)
	}
	// A fixed token refused with 401.
	const fixed = "YWMtFixedAppTokenValue"
	c2, _ := New(Config{BaseURL: srv.URL(), Org: "o", App: "a", AppToken: fixed, Logger: zerolog.New(logs)})
	_, err2 := c2.PushSingle(context.Background(), []string{"x"}, PushRequest{PushMessage: msg})
	if k := kindOf(t, err2); k != provider.ClassAuth {
		t.Fatalf("kind %s: %v", k, err2)
	}
	// A valid token, expired, then refreshed: the token must not be logged.
	e := setup(t, pushsim.Config{LimitsOff: true})
	_, _ = e.c.PushAsync(context.Background(), "a", PushRequest{PushMessage: msg})
	e.sim.Sim().ExpireTokens()
	_, _ = e.c.PushAsync(context.Background(), "a", PushRequest{PushMessage: msg})
	e.c.mu.Lock()
	tok := e.c.token
	e.c.mu.Unlock()
	for _, s := range []string{err.Error(), err2.Error(), fmt.Sprintf("%+v", err), logs.String(), e.logs.String()} {
		for _, secret := range []string{wrongSecret, fixed, tok, secret} {
			if secret != "" && strings.Contains(s, secret) {
				t.Errorf("secret %q leaked into %q", secret, s)
			}
		}
	}
}

func TestConfigErrorsNameTheField(t *testing.T) {
	t.Parallel()
	_, err := New(Config{BaseURL: "ftp://x", App: "a"})
	for _, f := range []string{"base_url", "org", "client_id"} {
		if err == nil || !strings.Contains(err.Error(), f) {
			t.Errorf("config error %v does not name %s", err, f)
		}
	}
}

func TestOpNamesHideIDs(t *testing.T) {
	t.Parallel()
	tests := map[string]string{
		"/push/sync/alice":                "/push/sync/{target}",
		"/push/label/vip/user?limit=3":    "/push/label/{label}/user",
		"/push/label/vip/user/bob":        "/push/label/{label}/user/{username}",
		"/users/bob/notification/user/al": "/users/{username}/notification/user/{key}",
		"/notification/template/sale":     "/notification/template/{name}",
		"/push/single":                    "/push/single",
	}
	for in, want := range tests {
		if got := opName(in); got != want {
			t.Errorf("opName(%q) = %q, want %q", in, got, want)
		}
	}
}

// Every granted request tells its grant when it was written and answered:
// the limiter accounts for a send held up after the grant, and for an
// answer slower than the usual.
func TestGrantsAreToldWhenWritten(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	before := time.Now()
	if _, err := e.c.PushSingle(context.Background(), []string{"u1", "u2"}, PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	e.gate.mu.Lock()
	defer e.gate.mu.Unlock()
	if len(e.gate.written) != len(e.gate.groups) || len(e.gate.groups) != 2 { // token + push
		t.Fatalf("%d requests granted (%v), %d told written", len(e.gate.groups), e.gate.groups, len(e.gate.written))
	}
	for i, at := range e.gate.written {
		if at.Before(before) || at.After(time.Now()) {
			t.Fatalf("written at %s, outside the call", at)
		}
		if a := e.gate.answered[i]; a.Before(at) || a.After(time.Now()) {
			t.Fatalf("answered at %s, written at %s: not between the write and now", a, at)
		}
	}
	// The token request opened the plain connection, the push reused it.
	if !e.gate.newConn[0] || e.gate.newConn[1] {
		t.Fatalf("on a new plain connection: %v, want [true false]", e.gate.newConn)
	}
}

// A client with no token fetches one before its call waits for its slot,
// not at the slot (callOp): a token request there would wait for its own
// slot and the call would go out late, moving its app's schedule on.
func TestTheFirstTokenComesBeforeTheWait(t *testing.T) {
	t.Parallel()
	e := setup(t, pushsim.Config{LimitsOff: true})
	if _, err := e.c.PushSingle(context.Background(), []string{"u1"}, PushRequest{PushMessage: msg}); err != nil {
		t.Fatal(err)
	}
	e.gate.mu.Lock()
	defer e.gate.mu.Unlock()
	if len(e.gate.groups) != 2 || e.gate.groups[0] != provider.GroupToken || e.gate.groups[1] != provider.GroupPushSingle {
		t.Fatalf("gate asked for %v, want [token push_single]", e.gate.groups)
	}
}
