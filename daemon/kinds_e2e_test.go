package daemon

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"maps"
	"net/http"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/config"
	"github.com/campaignd/campaignd/internal/testenv"
	"github.com/campaignd/campaignd/provider"
	"github.com/campaignd/campaignd/pushsim"
	"github.com/campaignd/campaignd/worker"
)

// withEngageLab adds an EngageLab app "tags" on the same emulator.
func (w *world) withEngageLab(t testing.TB, cfg config.Config, limits config.Limits) config.Config {
	t.Helper()
	cfg.Apps["tags"] = config.App{Provider: "engagelab", BaseURL: w.sim.URL(), AppKey: "pushsim", AppSecret: "pushsim-secret", Limits: limits}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	return cfg
}

func submitJSON(t testing.TB, w *world, v map[string]any) {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	w.publish(t, "campaigns.submit", b, fmt.Sprint(v["id"]))
}

func failures(t *testing.T, r *running, id string) []campaigns.Failure {
	t.Helper()
	resp, err := http.Get(r.base + "/api/campaigns/" + id + "/failures")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []campaigns.Failure
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		if line == "" {
			continue
		}
		var f campaigns.Failure
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("failures line %q: %v", line, err)
		}
		out = append(out, f)
	}
	return out
}

func noViolations(t *testing.T, st pushsim.Stats) {
	t.Helper()
	if st.Violations != 0 || st.RateLimited != 0 {
		t.Fatalf("limit violations %d, 429s %d: %+v", st.Violations, st.RateLimited, st.ViolationList)
	}
}

// single_push: each target alone at push_sync 1/s; the provider refuses
// one, which is listed with its reason.
func TestSinglePushEndToEnd(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupPushSync: 1}})
	r := start(t, w.config(t, config.Limits{provider.GroupPushSync: 1}))
	submitJSON(t, w, map[string]any{"id": "sp-5", "kind": "single_push", "push_message": map[string]string{"title": "t", "content": "c"},
		"targets": []string{"s1", "s2", "invalid-s3", "s4", "s5"}})
	st := r.waitFinal(t, "sp-5", 30*time.Second)
	if st.Status != campaigns.StatePartiallyFailed || st.Sent != 4 || st.Failed != 1 || st.TargetsTotal != 5 {
		t.Fatalf("status %+v", st)
	}
	fs := failures(t, r, "sp-5")
	if len(fs) != 1 || fs[0].Target != "invalid-s3" || !strings.Contains(fs[0].Reason, "FAIL") {
		t.Fatalf("failures %+v", fs)
	}
	sim := w.sim.Sim().Stats()
	noViolations(t, sim) // at 1/s the strict judge allows no two calls within 1 s
	if n := sim.CallsFor("easemob", "org/app", provider.GroupPushSync); n != 5 {
		t.Fatalf("%d push/sync calls, want 5 (%v)", n, sim.Calls)
	}
	for _, id := range []string{"s1", "s2", "s4", "s5"} {
		if w.sim.Sim().PushCount(id) != 1 {
			t.Fatalf("%s pushed %d times", id, w.sim.Sim().PushCount(id))
		}
	}
}

// label_members on an Easemob app, from two processes sharing the limits:
// add 250 to a new label (created with its description), then remove 50; at
// most 100 names per call.
func TestLabelMembersEndToEnd(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupLabel: 2, provider.GroupLabelUser: 3}})
	cfg := w.config(t, config.Limits{provider.GroupLabel: 2, provider.GroupLabelUser: 3})
	r := start(t, cfg)
	start(t, cfg)
	users := ids("lm", 250)
	submitJSON(t, w, map[string]any{"id": "lm-add", "kind": "label_members", "action": "add", "label": "e2e-label",
		"label_description": "made by the test", "targets": users})
	if st := r.waitFinal(t, "lm-add", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 250 || st.BatchesTotal != 3 {
		t.Fatalf("add: %+v", st)
	}
	submitJSON(t, w, map[string]any{"id": "lm-remove", "kind": "label_members", "action": "remove", "label": "e2e-label", "targets": users[:50]})
	if st := r.waitFinal(t, "lm-remove", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 50 {
		t.Fatalf("remove: %+v", st)
	}
	l, ok := w.sim.Sim().Label("org", "app", "e2e-label")
	if !ok || l.Description != "made by the test" {
		t.Fatalf("label %+v, found %v", l, ok)
	}
	want := append([]string(nil), users[50:]...)
	sort.Strings(want)
	if strings.Join(l.Members, ",") != strings.Join(want, ",") {
		t.Fatalf("label holds %d members, want the 200 added and not removed", len(l.Members))
	}
	sim := w.sim.Sim().Stats()
	noViolations(t, sim)
	if sim.MaxLabelUsersPerCall > 100 || sim.MaxLabelUsersPerCall == 0 {
		t.Fatalf("max usernames per call %d", sim.MaxLabelUsersPerCall)
	}

	// Removing from a missing label fails naming it, with nothing sent.
	submitJSON(t, w, map[string]any{"id": "lm-missing", "kind": "label_members", "action": "remove", "label": "nope", "targets": users[:3]})
	st := r.waitFinal(t, "lm-missing", 20*time.Second)
	if st.Status != campaigns.StateFailed || st.Sent != 0 || len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Message, `"nope"`) {
		t.Fatalf("remove from a missing label: %+v", st)
	}
}

// The app's label cap is a clear failure, not a retry loop.
func TestLabelCapFailsClearly(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{MaxLabels: 1})
	r := start(t, w.config(t, config.Limits{}))
	submitJSON(t, w, map[string]any{"id": "cap-1", "kind": "label_members", "action": "add", "label": "first", "targets": []string{"a"}})
	if st := r.waitFinal(t, "cap-1", 20*time.Second); st.Status != campaigns.StateCompleted {
		t.Fatalf("first label: %+v", st)
	}
	submitJSON(t, w, map[string]any{"id": "cap-2", "kind": "label_members", "action": "add", "label": "second", "targets": []string{"a"}})
	st := r.waitFinal(t, "cap-2", 20*time.Second)
	if st.Status != campaigns.StateFailed || len(st.Errors) == 0 || !strings.Contains(st.Errors[0].Message, "already has 100 labels") {
		t.Fatalf("over the label cap: %+v", st)
	}
	if _, ok := w.sim.Sim().Label("org", "app", "second"); ok {
		t.Fatal("the label over the cap exists")
	}
}

// label_members on an EngageLab app: tags, at most 1000 ids per call.
func TestTagMembersEndToEnd(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupTags: 2}})
	cfg := w.withEngageLab(t, w.config(t, config.Limits{}), config.Limits{provider.GroupTags: 2})
	r := start(t, cfg)
	devs := ids("rid", 2500)
	submitJSON(t, w, map[string]any{"id": "tag-add", "app": "tags", "kind": "label_members", "action": "add", "label": "e2e_tag", "targets": devs})
	if st := r.waitFinal(t, "tag-add", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 2500 || st.BatchesTotal != 3 {
		t.Fatalf("add: %+v", st)
	}
	submitJSON(t, w, map[string]any{"id": "tag-remove", "app": "tags", "kind": "label_members", "action": "remove", "label": "e2e_tag", "targets": devs[2000:]})
	if st := r.waitFinal(t, "tag-remove", 30*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 500 {
		t.Fatalf("remove: %+v", st)
	}
	members, ok := w.sim.Sim().TagMembers("pushsim", "e2e_tag")
	want := append([]string(nil), devs[:2000]...)
	sort.Strings(want)
	if !ok || strings.Join(members, ",") != strings.Join(want, ",") {
		t.Fatalf("tag holds %d ids, want the 2000 added and not removed", len(members))
	}
	sim := w.sim.Sim().Stats()
	noViolations(t, sim)
	if sim.MaxTagIDsPerCall > 1000 || sim.MaxTagIDsPerCall == 0 {
		t.Fatalf("max ids per call %d", sim.MaxTagIDsPerCall)
	}
}

// An invalid registration id is a failed target; the rest of its call is
// sent again without it. The tag cap (27014) is a permanent failure with its
// meaning spelled out.
func TestTagInvalidIDsAndCap(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{MaxDevicesPerTag: 10})
	cfg := w.withEngageLab(t, w.config(t, config.Limits{}), config.Limits{})
	r := start(t, cfg)
	submitJSON(t, w, map[string]any{"id": "tag-bad", "app": "tags", "kind": "label_members", "action": "add", "label": "t1",
		"targets": []string{"r1", "invalid-r2", "r3"}})
	st := r.waitFinal(t, "tag-bad", 20*time.Second)
	if st.Status != campaigns.StatePartiallyFailed || st.Sent != 2 || st.Failed != 1 {
		t.Fatalf("invalid id: %+v", st)
	}
	if fs := failures(t, r, "tag-bad"); len(fs) != 1 || fs[0].Target != "invalid-r2" {
		t.Fatalf("failures %+v", fs)
	}
	if m, _ := w.sim.Sim().TagMembers("pushsim", "t1"); strings.Join(m, ",") != "r1,r3" {
		t.Fatalf("tag t1 holds %v", m)
	}
	submitJSON(t, w, map[string]any{"id": "tag-full", "app": "tags", "kind": "label_members", "action": "add", "label": "t2", "targets": ids("d", 11)})
	st = r.waitFinal(t, "tag-full", 20*time.Second)
	if st.Status != campaigns.StateFailed || st.Failed != 11 {
		t.Fatalf("over the tag cap: %+v", st)
	}
	if fs := failures(t, r, "tag-full"); len(fs) == 0 || !strings.Contains(fs[0].Reason, "100,000 devices") {
		t.Fatalf("failures %+v", fs)
	}
}

// user_settings: six settings on 300 users under a small shared user
// budget; every user holds every setting. (One process: several daemons and
// pushsim in one test process on two cores let pushsim stamp an arrival
// late now and then, which its judge counts against the limit.)
func TestUserSettingsEndToEnd(t *testing.T) {
	w := newWorld(t, pushsim.Config{Limits: map[provider.Group]float64{provider.GroupUser: 50, provider.GroupNotification: 50}})
	cfg := w.config(t, config.Limits{provider.GroupUser: 50, provider.GroupNotification: 50})
	cfg.Worker.Concurrency = 5
	a := start(t, cfg)
	users := ids("us", 300)
	submitJSON(t, w, map[string]any{"id": "settings-300", "kind": "user_settings", "targets": users,
		"settings": map[string]any{"nickname": "Shop", "notification_display_style": 1, "type": "AT",
			"ignoreInterval": "21:30-08:00", "ignoreDuration": 3600000, "language": "EU"}})
	st := a.waitFinal(t, "settings-300", 90*time.Second)
	if st.Status != campaigns.StateCompleted || st.Sent != 300 || st.Failed != 0 {
		t.Fatalf("%+v", st)
	}
	for _, u := range users {
		s, ok := w.sim.Sim().UserSettings("org", "app", u)
		mode := s.Modes["user/"+u]
		if !ok || s.Nickname != "Shop" || s.DisplayStyle != 1 || s.Language != "EU" ||
			mode.Type != "AT" || mode.IgnoreInterval != "21:30-08:00" || mode.IgnoreDuration == 0 {
			t.Fatalf("%s at pushsim: %+v (found %v)", u, s, ok)
		}
	}
	sim := w.sim.Sim().Stats()
	noViolations(t, sim)
	if n := sim.CallsFor("easemob", "org/app", provider.GroupUser); n != 300 {
		t.Fatalf("%d PUT /users calls for 300 users, want one each", n)
	}
	if n := sim.CallsFor("easemob", "org/app", provider.GroupNotification); n != 600 {
		t.Fatalf("%d notification calls for 300 users, want two each", n)
	}
}

// template: created, then deleted; deleting a missing one fails clearly.
func TestTemplateEndToEnd(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.config(t, config.Limits{}))
	submitJSON(t, w, map[string]any{"id": "tpl-create", "kind": "template",
		"template": map[string]any{"name": "sale", "title_pattern": "Hi {0}", "content_pattern": "{1}"}})
	if st := r.waitFinal(t, "tpl-create", 20*time.Second); st.Status != campaigns.StateCompleted || st.Sent != 1 {
		t.Fatalf("create: %+v", st)
	}
	if tp, ok := w.sim.Sim().Template("org", "app", "sale"); !ok || tp.TitlePattern != "Hi {0}" || tp.ContentPattern != "{1}" {
		t.Fatalf("template at pushsim: %+v %v", tp, ok)
	}
	submitJSON(t, w, map[string]any{"id": "tpl-delete", "kind": "template", "template": map[string]any{"name": "sale", "delete": true}})
	if st := r.waitFinal(t, "tpl-delete", 20*time.Second); st.Status != campaigns.StateCompleted {
		t.Fatalf("delete: %+v", st)
	}
	if _, ok := w.sim.Sim().Template("org", "app", "sale"); ok {
		t.Fatal("template still there after delete")
	}
	submitJSON(t, w, map[string]any{"id": "tpl-again", "kind": "template", "template": map[string]any{"name": "sale", "delete": true}})
	st := r.waitFinal(t, "tpl-again", 20*time.Second)
	if st.Status != campaigns.StateFailed {
		t.Fatalf("delete of a missing template: %+v", st)
	}
	if fs := failures(t, r, "tpl-again"); len(fs) != 1 || fs[0].Target != "sale" || !strings.Contains(fs[0].Reason, "not exist") {
		t.Fatalf("failures %+v", fs)
	}
}

// Bad input of every kind is rejected with every problem named, and
// nothing reaches the provider.
func TestKindBadInputIsRejected(t *testing.T) {
	t.Parallel()
	w := newWorld(t, pushsim.Config{})
	r := start(t, w.withEngageLab(t, w.config(t, config.Limits{}), config.Limits{}))
	long := strings.Repeat("t", 41)
	cases := []struct {
		id, body string
		fields   []string
	}{
		{"bad-label-name", `{"kind":"label_members","action":"add","label":"no spaces!","targets":["u1"]}`, []string{"label"}},
		{"bad-action", `{"kind":"label_members","action":"move","label":"ok","targets":["u1"]}`, []string{"action"}},
		{"bad-tag", `{"app":"tags","kind":"label_members","action":"add","label":"` + long + `","targets":["r1"]}`, []string{"label"}},
		{"bad-settings", `{"kind":"user_settings","targets":["u1"],"settings":{"notification_display_style":5,"type":"LOUD","ignoreInterval":"25:00-08:00","ignoreDuration":-1}}`,
			[]string{"settings.notification_display_style", "settings.type", "settings.ignoreInterval", "settings.ignoreDuration"}},
		{"empty-settings", `{"kind":"user_settings","targets":["u1"],"settings":{}}`, []string{"settings"}},
		{"bad-template", `{"kind":"template","template":{"name":"x"}}`, []string{"template.title_pattern", "template.content_pattern"}},
		{"template-targets", `{"kind":"template","targets":["u1"],"template":{"name":"x","delete":true}}`, []string{"targets"}},
		{"push-on-engagelab", `{"app":"tags","kind":"batch_push","push_message":{"t":1},"targets":["r1"]}`, []string{"kind"}},
		{"sync-on-engagelab", `{"app":"tags","kind":"single_push","push_message":{"t":1},"targets":["r1"]}`, []string{"kind"}},
		{"settings-on-engagelab", `{"app":"tags","kind":"user_settings","targets":["r1"],"settings":{"nickname":"n"}}`, []string{"kind"}},
		{"single-no-message", `{"kind":"single_push","targets":["u1"]}`, []string{"push_message"}},
		{"label-push-bad-label", `{"kind":"label_push","label":"no spaces","push_message":{"t":1}}`, []string{"label"}},
		{"broadcast-targets", `{"kind":"broadcast","targets":["u1"],"push_message":{"t":1}}`, []string{"targets"}},
		{"broadcast-on-engagelab", `{"app":"tags","kind":"broadcast","push_message":{"t":1}}`, []string{"kind"}},
		{"window-from", `{"kind":"batch_push","push_message":{"t":1},"targets":["u1"],"send_window":{"from":"9:00","to":"21:00"}}`, []string{"send_window.from"}},
		{"window-to", `{"kind":"batch_push","push_message":{"t":1},"targets":["u1"],"send_window":{"from":"09:00","to":"09:00:00"}}`, []string{"send_window.to"}},
		{"window-zone", `{"kind":"batch_push","push_message":{"t":1},"targets":["u1"],"send_window":{"from":"09:00","to":"21:00","timezone":"Mars/Olympus"}}`, []string{"send_window.timezone"}},
		{"local-zone", `{"kind":"batch_push","push_message":{"t":1},"targets":["u1,Asia/Tokyo","u2,Mars/Olympus","u3,"],"send_window":{"from":"09:00","to":"21:00","local_time":true}}`,
			[]string{"targets[1]", "targets[2]"}},
		{"local-broadcast", `{"kind":"broadcast","push_message":{"t":1},"send_window":{"from":"09:00","to":"21:00","local_time":true}}`, []string{"send_window.local_time"}},
	}
	for _, c := range cases {
		body := `{"id":"` + c.id + `",` + strings.TrimPrefix(c.body, "{")
		w.publish(t, "campaigns.submit", []byte(body), c.id)
	}
	for _, c := range cases {
		st := testenv.WaitFor(t, 15*time.Second, "a status of "+c.id, func() (campaigns.Status, bool) {
			st := w.lastStatusOK(c.id)
			return st, st.Status != ""
		})
		if st.Status != campaigns.StateRejected {
			t.Errorf("%s: status %q, want rejected (%+v)", c.id, st.Status, st)
			continue
		}
		named := map[string]bool{}
		for _, e := range st.Errors {
			named[e.Field] = true
		}
		for _, f := range c.fields {
			if !named[f] {
				t.Errorf("%s: errors %+v do not name %s", c.id, st.Errors, f)
			}
		}
	}
	sim := w.sim.Sim().Stats()
	for k, n := range sim.Calls {
		if !strings.HasSuffix(k, "/token") && n > 0 {
			t.Errorf("bad input reached the provider: %s %d calls", k, n)
		}
	}
	_ = r
}

// lastStatusOK is lastStatus that answers the zero status while there is
// none yet.
func (w *world) lastStatusOK(id string) campaigns.Status {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	s, err := w.js.Stream(ctx, "CAMPAIGN_STATUS")
	if err != nil {
		return campaigns.Status{}
	}
	m, err := s.GetLastMsgForSubject(ctx, "campaigns.status."+id)
	if err != nil {
		return campaigns.Status{}
	}
	var st campaigns.Status
	_ = json.Unmarshal(m.Data, &st)
	return st
}

// A schedule whose campaign this campaignd cannot send stops it at start,
// naming schedules[i].campaign; the sample configs hold only what works.
func TestSchedulesAreCheckedAgainstTheKinds(t *testing.T) {
	t.Parallel()
	cfg := config.Default()
	cfg.Apps = map[string]config.App{
		"default": {Provider: "easemob", BaseURL: "http://127.0.0.1:1", Org: "o", App: "a", AppToken: "t"},
		"tags":    {Provider: "engagelab", BaseURL: "http://127.0.0.1:1", AppKey: "k", AppSecret: "s"},
	}
	if err := cfg.Validate(); err != nil {
		t.Fatal(err)
	}
	msg := map[string]any{"title": "t"}
	cases := []struct {
		name string
		c    campaigns.Campaign
		want string
	}{
		{"ok", campaigns.Campaign{Kind: campaigns.KindBatchPush, Targets: []string{"u"}, PushMessage: mustJSON(msg)}, ""},
		{"ok tags", campaigns.Campaign{App: "tags", Kind: campaigns.KindLabelMembers, Action: "add", Label: "t", Targets: []string{"r"}}, ""},
		{"weekly label push", campaigns.Campaign{Kind: campaigns.KindLabelPush, Label: "weekly", PushMessage: mustJSON(msg)}, ""},
		{"label push without a message", campaigns.Campaign{Kind: campaigns.KindLabelPush, Label: "weekly"}, "schedules[0].campaign.push_message"},
		{"push on engagelab", campaigns.Campaign{App: "tags", Kind: campaigns.KindBatchPush, Targets: []string{"r"}, PushMessage: mustJSON(msg)}, "schedules[0].campaign.kind"},
	}
	for _, c := range cases {
		cfg.Schedules = []config.Schedule{{Name: "s", Cron: "@daily", Campaign: c.c}}
		err := checkSchedules(cfg, time.Now())
		switch {
		case c.want == "" && err != nil:
			t.Errorf("%s: %v", c.name, err)
		case c.want != "" && (err == nil || !strings.HasPrefix(err.Error(), c.want)):
			t.Errorf("%s: %v, want an error naming %s", c.name, err, c.want)
		}
	}
	for _, f := range []string{"campaignd.yaml", "demo.yaml", "docker.yaml"} {
		vars := map[string]string{"CAMPAIGND_UI_PASSWORD": "pw", "EASEMOB_CLIENT_SECRET": "s", "ENGAGELAB_APP_SECRET": "s2",
			"PUSHSIM_URL": "http://127.0.0.1:9900", "CAMPAIGND_REDIS_URL": "redis://127.0.0.1:1/0",
			"CAMPAIGND_NATS_URL": "nats://127.0.0.1:2", "CAMPAIGND_HTTP_ADDR": "127.0.0.1:3"}
		loaded, err := config.Load(filepath.Join("..", "configs", f), func(k string) string { return vars[k] })
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		if err := checkSchedules(*loaded, time.Now()); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
}

func mustJSON(v any) json.RawMessage {
	b, _ := json.Marshal(v)
	return b
}

// The example campaigns in configs/examples are valid for the demo config
// and cover every kind this campaignd sends.
func TestExampleCampaignsAreValid(t *testing.T) {
	t.Parallel()
	vars := map[string]string{"PUSHSIM_URL": "http://127.0.0.1:9900", "CAMPAIGND_REDIS_URL": "redis://127.0.0.1:1/0",
		"CAMPAIGND_NATS_URL": "nats://127.0.0.1:2", "CAMPAIGND_HTTP_ADDR": "127.0.0.1:3"}
	cfg, err := config.Load(filepath.Join("..", "configs", "demo.yaml"), func(k string) string { return vars[k] })
	if err != nil {
		t.Fatal(err)
	}
	files, _ := filepath.Glob(filepath.Join("..", "configs", "examples", "*.json"))
	files = append(files, filepath.Join("..", "configs", "campaign-sample.json"))
	seen := map[campaigns.Kind]bool{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		c, errs := campaigns.Decode(b)
		if len(errs) == 0 {
			c.Normalize()
			errs = c.Validate(envFor(*cfg, time.Now()))
		}
		if len(errs) > 0 {
			t.Errorf("%s: %v", f, errs)
			continue
		}
		seen[c.Kind] = true
	}
	for k := range worker.Kinds() {
		if !seen[k] {
			t.Errorf("no example campaign of kind %s in configs/examples", k)
		}
	}

	// Intake accepts exactly the kinds the worker registers: each example
	// is refused, naming its kind, by a campaignd whose worker lacks it.
	for _, f := range files {
		b, _ := os.ReadFile(f)
		c, errs := campaigns.Decode(b)
		if len(errs) > 0 {
			continue
		}
		c.Normalize()
		env := envFor(*cfg, time.Now())
		env.Kinds = maps.Clone(env.Kinds)
		delete(env.Kinds, c.Kind)
		errs = c.Validate(env)
		if len(errs) == 0 || errs[0].Field != "kind" {
			t.Errorf("%s: a campaign of kind %s was not refused by a worker without it: %v", f, c.Kind, errs)
		}
	}
}
