package campaigns_test

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	. "github.com/campaignd/campaignd/campaigns"
	"github.com/campaignd/campaignd/worker"
)

var now = time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)

func testEnv() Env {
	sh, _ := time.LoadLocation("Asia/Shanghai")
	return Env{Now: now, Kinds: worker.Kinds(), Apps: map[string]AppInfo{
		"default": {Provider: "easemob", Location: sh},
		"el":      {Provider: "engagelab", Location: time.UTC},
	}}
}

func fields(errs FieldErrors) []string {
	var out []string
	for _, e := range errs {
		out = append(out, e.Field)
	}
	return out
}

func has(errs FieldErrors, field string) bool {
	for _, e := range errs {
		if e.Field == field {
			return true
		}
	}
	return false
}

func check(t *testing.T, js string) FieldErrors {
	t.Helper()
	c, errs := Decode([]byte(js))
	if len(errs) > 0 {
		return errs
	}
	c.Normalize()
	return c.Validate(testEnv())
}

func TestValidCampaigns(t *testing.T) {
	t.Parallel()
	for _, js := range []string{
		`{"id":"spring-sale_2026","kind":"batch_push","push_message":{"title":"Sale"},"targets":["u1","u2"],"strategy":2,"priority":"high","rate_limit":5}`,
		`{"id":"a","kind":"batch_push","push_message":{"title":"x"},"audience":{"bucket":"audiences","object":"spring.txt"}}`,
		`{"id":"b","kind":"single_push","push_message":{"title":"x"},"targets":["u1"]}`,
		`{"id":"c","kind":"label_push","label":"post-90s","push_message":{"title":"x"},"start_date":"2026-12-01 09:00:00"}`,
		`{"id":"d","kind":"broadcast","push_message":{"title":"x"},"start_date":"2026-12-01T09:00:00+08:00","expires_at":"2026-12-02T00:00:00Z"}`,
		`{"id":"e","kind":"label_members","label":"post-90s","label_description":"born 1990-99","action":"add","targets":["u1"]}`,
		`{"id":"f","app":"el","kind":"label_members","label":"vip用户","action":"remove","targets":["r1"]}`,
		`{"id":"g","kind":"user_settings","targets":["u1"],"settings":{"nickname":"Shop","notification_display_style":1,"type":"AT","ignoreInterval":"21:30-08:00","ignoreDuration":0,"language":"EU"}}`,
		`{"id":"h","kind":"template","template":{"name":"sale","title_pattern":"Hi {0}","content_pattern":"{1}"}}`,
		`{"id":"i","kind":"template","template":{"name":"sale","delete":true}}`,
		`{"id":"j","kind":"batch_push","push_message":{"title":"x"},"targets":["u1"],"label_description":"ignored here"}`,
	} {
		if errs := check(t, js); len(errs) > 0 {
			t.Errorf("%s: %v", js, errs)
		}
	}
}

func TestEveryBadInputNamesItsField(t *testing.T) {
	t.Parallel()
	many := make([]string, MaxInlineTargets+1)
	for i := range many {
		many[i] = fmt.Sprintf("u%d", i)
	}
	manyJS, _ := json.Marshal(many)
	tests := []struct {
		name, js, field string
	}{
		{"not JSON", `{"id":`, ""},
		{"array", `[1,2]`, ""},
		{"trailing data", `{"id":"a","kind":"template","template":{"name":"t","delete":true}} {}`, ""},
		{"unknown field", `{"id":"a","kind":"batch_push","targetz":["u"]}`, "targetz"},
		{"unknown settings field", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{"nick":"x"}}`, "settings.nick"},
		{"unknown audience field", `{"id":"a","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"b","object":"o","owner":"me"}}`, "audience.owner"},
		{"duplicate key", `{"id":"a","id":"b","kind":"batch_push","push_message":{"t":1},"targets":["u"]}`, "id"},
		{"duplicate nested key", `{"id":"a","kind":"template","template":{"name":"x","name":"y","delete":true}}`, "template.name"},
		{"invalid UTF-8 target", "{\"id\":\"a\",\"kind\":\"batch_push\",\"push_message\":{\"t\":1},\"targets\":[\"ok\",\"u\xff\"]}", "targets[1]"},
		{"rate_limit zero", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"rate_limit":0}`, "rate_limit"},
		{"id wrong type", `{"id":5,"kind":"batch_push"}`, "id"},
		{"missing id", `{"kind":"batch_push","push_message":{"t":1},"targets":["u"]}`, "id"},
		{"bad id chars", `{"id":"a b","kind":"batch_push","push_message":{"t":1},"targets":["u"]}`, "id"},
		{"id too long", `{"id":"` + strings.Repeat("a", 129) + `","kind":"batch_push","push_message":{"t":1},"targets":["u"]}`, "id"},
		{"missing kind", `{"id":"a"}`, "kind"},
		{"unknown kind", `{"id":"a","kind":"sms"}`, "kind"},
		{"unknown app", `{"id":"a","app":"nope","kind":"batch_push","push_message":{"t":1},"targets":["u"]}`, "app"},
		{"push kind on engagelab", `{"id":"a","app":"el","kind":"batch_push","push_message":{"t":1},"targets":["u"]}`, "kind"},
		{"missing push_message", `{"id":"a","kind":"batch_push","targets":["u"]}`, "push_message"},
		{"push_message not object", `{"id":"a","kind":"batch_push","push_message":"hi","targets":["u"]}`, "push_message"},
		{"empty push_message", `{"id":"a","kind":"broadcast","push_message":{}}`, "push_message"},
		{"no targets", `{"id":"a","kind":"batch_push","push_message":{"t":1}}`, "targets"},
		{"targets and audience", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"audience":{"bucket":"b","object":"o"}}`, "targets"},
		{"audience without object", `{"id":"a","kind":"batch_push","push_message":{"t":1},"audience":{"bucket":"b"}}`, "audience.object"},
		{"bad target", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["ok","has space"]}`, "targets[1]"},
		{"targets not strings", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":[1]}`, "targets"},
		{"too many inline targets", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":` + string(manyJS) + `}`, "targets"},
		{"single_push over 1000", `{"id":"a","kind":"single_push","push_message":{"t":1},"targets":` + string(manyJS[:0]) + `null}`, "targets"},
		{"broadcast with targets", `{"id":"a","kind":"broadcast","push_message":{"t":1},"targets":["u"]}`, "targets"},
		{"bad label", `{"id":"a","kind":"label_push","label":"bad label!","push_message":{"t":1}}`, "label"},
		{"label too long", `{"id":"a","kind":"label_push","label":"` + strings.Repeat("l", 65) + `","push_message":{"t":1}}`, "label"},
		{"engagelab tag rule", `{"id":"a","app":"el","kind":"label_members","label":"a-b","action":"add","targets":["r"]}`, "label"},
		{"missing label", `{"id":"a","kind":"label_push","push_message":{"t":1}}`, "label"},
		{"description too long", `{"id":"a","kind":"label_members","label":"l","action":"add","targets":["u"],"label_description":"` + strings.Repeat("d", 256) + `"}`, "label_description"},
		{"bad action", `{"id":"a","kind":"label_members","label":"l","action":"move","targets":["u"]}`, "action"},
		{"bad start_date", `{"id":"a","kind":"broadcast","push_message":{"t":1},"start_date":"tomorrow"}`, "start_date"},
		{"start_date no zone RFC", `{"id":"a","kind":"broadcast","push_message":{"t":1},"start_date":"2026-12-01T09:00:00"}`, "start_date"},
		{"strategy out of range", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"strategy":7}`, "strategy"},
		{"strategy negative", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"strategy":-1}`, "strategy"},
		{"strategy not a number", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"strategy":"2"}`, "strategy"},
		{"bad priority", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"priority":"urgent"}`, "priority"},
		{"negative rate_limit", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"rate_limit":-1}`, "rate_limit"},
		{"expires in the past", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"expires_at":"2020-01-01T00:00:00Z"}`, "expires_at"},
		{"expires not a time", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"expires_at":"soon"}`, "expires_at"},
		{"expires before start", `{"id":"a","kind":"broadcast","push_message":{"t":1},"start_date":"2026-12-01T09:00:00Z","expires_at":"2026-11-30T00:00:00Z"}`, "expires_at"},
		{"settings missing", `{"id":"a","kind":"user_settings","targets":["u"]}`, "settings"},
		{"settings empty", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{}}`, "settings"},
		{"settings bad interval", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{"ignoreInterval":"25:00-01:00"}}`, "settings.ignoreInterval"},
		{"settings bad duration", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{"ignoreDuration":604800001}}`, "settings.ignoreDuration"},
		{"settings bad type", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{"type":"SOME"}}`, "settings.type"},
		{"settings bad style", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{"notification_display_style":3}}`, "settings.notification_display_style"},
		{"settings long nickname", `{"id":"a","kind":"user_settings","targets":["u"],"settings":{"nickname":"` + strings.Repeat("n", 101) + `"}}`, "settings.nickname"},
		{"template missing", `{"id":"a","kind":"template"}`, "template"},
		{"template no patterns", `{"id":"a","kind":"template","template":{"name":"t"}}`, "template.title_pattern"},
		{"template name with a newline", `{"id":"a","kind":"template","template":{"name":"a\nb","delete":true}}`, "template.name"},
		{"template no name", `{"id":"a","kind":"template","template":{"delete":true}}`, "template.name"},
		{"push_message on label_members", `{"id":"a","kind":"label_members","label":"l","action":"add","targets":["u"],"push_message":{"t":1}}`, "push_message"},
		{"label on batch_push", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"label":"l"}`, "label"},
		{"action on label_push", `{"id":"a","kind":"label_push","label":"l","push_message":{"t":1},"action":"add"}`, "action"},
		{"settings on batch_push", `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"settings":{"language":"EU"}}`, "settings"},
		{"template on broadcast", `{"id":"a","kind":"broadcast","push_message":{"t":1},"template":{"name":"t","delete":true}}`, "template"},
		{"audience on template", `{"id":"a","kind":"template","template":{"name":"t","delete":true},"audience":{"bucket":"b","object":"o"}}`, "targets"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			errs := check(t, tt.js)
			if !has(errs, tt.field) {
				t.Errorf("errors %v (fields %v) do not name %q", errs, fields(errs), tt.field)
			}
			for _, e := range errs {
				if e.Message == "" {
					t.Errorf("empty message for %q", e.Field)
				}
			}
		})
	}
}

func TestSinglePushLimit(t *testing.T) {
	t.Parallel()
	ids := make([]string, worker.MaxSinglePushTargets+1)
	for i := range ids {
		ids[i] = fmt.Sprintf("u%d", i)
	}
	c := Campaign{ID: "a", Kind: KindSinglePush, PushMessage: json.RawMessage(`{"t":1}`), Targets: ids}
	c.Normalize()
	if errs := c.Validate(testEnv()); !has(errs, "targets") {
		t.Fatalf("1001 single_push targets accepted: %v", errs)
	}
}

func TestEveryProblemIsListed(t *testing.T) {
	t.Parallel()
	errs := check(t, `{"id":"bad id","app":"nope","kind":"batch_push","strategy":9,"priority":"x","targets":[""]}`)
	for _, f := range []string{"id", "app", "strategy", "priority", "push_message", "targets[0]"} {
		if !has(errs, f) {
			t.Errorf("missing %q in %v", f, fields(errs))
		}
	}
}

func TestPeekID(t *testing.T) {
	t.Parallel()
	tests := []struct {
		in      string
		given   string
		hasGiv  bool
		invalid bool
	}{
		{`{"id":"ok-1"}`, "ok-1", true, false},
		{`{"id":"no good"}`, "no good", true, true},
		{`{"id":7}`, "", false, true},
		{`{"kind":"x"}`, "", false, true},
		{`not json`, "", false, true},
		{`"string"`, "", false, true},
	}
	for _, tt := range tests {
		g, errs := PeekID([]byte(tt.in))
		if (g != nil) != tt.hasGiv || (g != nil && *g != tt.given) || (len(errs) > 0) != tt.invalid {
			t.Errorf("PeekID(%s) = %v %v", tt.in, g, errs)
		}
	}
}

func TestStartTime(t *testing.T) {
	t.Parallel()
	sh, _ := time.LoadLocation("Asia/Shanghai")
	tests := []struct {
		in      string
		want    time.Time
		delayed bool
	}{
		{"", now, false},
		{"2026-12-01 09:00:00", time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC), true},
		{"2026-12-01T09:00:00+08:00", time.Date(2026, 12, 1, 1, 0, 0, 0, time.UTC), true},
		{"2020-01-01 00:00:00", now, false},
	}
	for _, tt := range tests {
		c := Campaign{StartDate: tt.in}
		got, delayed, err := c.StartTime(sh, now)
		if err != nil || !got.Equal(tt.want) || delayed != tt.delayed {
			t.Errorf("%q: %s %v %v", tt.in, got, delayed, err)
		}
	}
}

func TestDedup(t *testing.T) {
	t.Parallel()
	got := Dedup([]string{"b", "a", "b", "c", "a"})
	if strings.Join(got, ",") != "b,a,c" {
		t.Fatalf("%v", got)
	}
}

func FuzzDecode(f *testing.F) {
	f.Add([]byte(`{"id":"a","kind":"batch_push","push_message":{"title":"x"},"targets":["u1","u2"]}`))
	f.Add([]byte(`{"id":"b","kind":"user_settings","targets":["u"],"settings":{"ignoreDuration":5}}`))
	f.Add([]byte(`{"id":"c","kind":"label_push","label":"l","start_date":"2026-12-01 09:00:00","push_message":{"a":1},"expires_at":"2027-01-01T00:00:00Z"}`))
	f.Add([]byte(`{"id":1}`))
	f.Add([]byte(`[]`))
	env := testEnv()
	f.Fuzz(func(t *testing.T, data []byte) {
		PeekID(data)
		c, errs := Decode(data)
		if len(errs) > 0 {
			if c != nil {
				t.Fatal("campaign returned with decode errors")
			}
			return
		}
		c.Normalize()
		if verrs := c.Validate(env); len(verrs) > 0 {
			return
		}
		again, err := json.Marshal(c)
		if err != nil {
			t.Fatalf("re-encode: %v", err)
		}
		c2, errs := Decode(again)
		if len(errs) > 0 {
			t.Fatalf("re-decode of a valid campaign: %v\n%s", errs, again)
		}
		c2.Normalize()
		if verrs := c2.Validate(env); len(verrs) > 0 {
			t.Fatalf("re-decoded campaign invalid: %v", verrs)
		}
	})
}

func ExampleCampaign_Validate() {
	c, _ := Decode([]byte(`{"id":"spring sale","kind":"batch_push","targets":["u1"],"strategy":9}`))
	c.Normalize()
	for _, e := range c.Validate(Env{Now: time.Now(), Kinds: worker.Kinds(), Apps: map[string]AppInfo{"default": {Provider: "easemob"}}}) {
		fmt.Printf("%s: %s\n", e.Field, e.Message)
	}
	// Output:
	// id: must match [A-Za-z0-9_-]{1,128}
	// strategy: must be 0..4, got 9
	// push_message: is required for batch_push
}

func TestUnsupportedKindsAreRejected(t *testing.T) {
	t.Parallel()
	env := testEnv()
	env.Kinds = map[Kind]KindRules{KindBatchPush: worker.Kinds()[KindBatchPush]}
	c, _ := Decode([]byte(`{"id":"a","kind":"broadcast","push_message":{"t":1}}`))
	c.Normalize()
	if errs := c.Validate(env); !has(errs, "kind") {
		t.Fatalf("a kind this campaignd cannot send was accepted: %v", errs)
	}
	c, _ = Decode([]byte(`{"id":"b","kind":"batch_push","push_message":{"t":1},"targets":["u"]}`))
	c.Normalize()
	if errs := c.Validate(env); len(errs) > 0 {
		t.Fatalf("%v", errs)
	}
}

// A payload field a kind does not read is refused, naming the field and
// the kinds that read it.
func TestUnusedFieldsNameTheirKinds(t *testing.T) {
	t.Parallel()
	errs := check(t, `{"id":"a","kind":"batch_push","push_message":{"t":1},"targets":["u"],"action":"add","label":"l"}`)
	want := map[string]string{"action": "is only used by label_members", "label": "is not used by batch_push"}
	for _, e := range errs {
		if w, ok := want[e.Field]; ok && e.Message == w {
			delete(want, e.Field)
		}
	}
	if len(want) > 0 {
		t.Fatalf("errors %v lack %v", errs, want)
	}
	errs = check(t, `{"id":"a","app":"el","kind":"broadcast","push_message":{"t":1}}`)
	if len(errs) != 1 || errs[0].Field != "kind" || !strings.Contains(errs[0].Message, "engagelab apps (they run label_members)") {
		t.Fatalf("broadcast on an engagelab app: %v", errs)
	}
}

// Every payload field is read by some kind, and every field a kind
// declares is a payload field: the two lists cannot drift apart.
func TestKindsDeclarePayloadFields(t *testing.T) {
	t.Parallel()
	read := map[string]bool{}
	for k, r := range worker.Kinds() {
		for _, f := range r.Fields {
			known := false
			for _, pf := range PayloadFields {
				known = known || pf.Name == f
			}
			if !known {
				t.Errorf("%s reads %q, which is not a payload field", k, f)
			}
			read[f] = true
		}
	}
	for _, pf := range PayloadFields {
		if !read[pf.Name] {
			t.Errorf("payload field %q is read by no kind", pf.Name)
		}
	}
}

// send_window is checked field by field, and moves a campaign's start to
// its next opening (in the app's zone when it names none).
func TestSendWindow(t *testing.T) {
	t.Parallel()
	const push = `{"id":"w","kind":"batch_push","push_message":{"t":1},"targets":["u1"],"send_window":%s}`
	for _, tc := range []struct {
		window, field string // field "": valid
	}{
		{`{"from":"09:00","to":"21:00"}`, ""},
		{`{"from":"21:00:30","to":"08:00","timezone":"Europe/Paris"}`, ""},
		{`{"from":"09:00","to":"21:00","local_time":false}`, ""},
		{`{"to":"21:00"}`, "send_window.from"},
		{`{"from":"09:00"}`, "send_window.to"},
		{`{"from":"9:00","to":"21:00"}`, "send_window.from"},
		{`{"from":"09:00","to":"25:00"}`, "send_window.to"},
		{`{"from":"09:00","to":"09:00"}`, "send_window.to"},
		{`{"from":"09:00","to":"21:00","timezone":"Mars/Olympus"}`, "send_window.timezone"},
		{`{"from":"09:00","to":"21:00","local_time":true}`, ""},
		{`{"from":"09:00","to":"21:00","colour":"red"}`, "send_window.colour"},
	} {
		errs := check(t, fmt.Sprintf(push, tc.window))
		if tc.field == "" && len(errs) > 0 || tc.field != "" && !has(errs, tc.field) {
			t.Errorf("%s: %v, want %q", tc.window, errs, tc.field)
		}
	}
	if errs := check(t, `{"id":"w","kind":"broadcast","push_message":{"t":1},"send_window":{"from":"09:00","to":"21:00"}}`); len(errs) > 0 {
		t.Errorf("a broadcast with a window: %v", errs)
	}
	if errs := check(t, `{"id":"w","kind":"broadcast","push_message":{"t":1},"send_window":{"from":"09:00","to":"21:00","local_time":true}}`); !has(errs, "send_window.local_time") {
		t.Errorf("a broadcast in its targets' zones: %v", errs)
	}

	if errs := check(t, `{"id":"w","kind":"template","send_window":{"from":"09:00","to":"21:00","local_time":true}}`); !has(errs, "send_window.local_time") {
		t.Errorf("a template in its targets' zones: %v", errs)
	}

	sh, _ := time.LoadLocation("Asia/Shanghai")
	c, _ := Decode([]byte(fmt.Sprintf(push, `{"from":"21:00","to":"08:00"}`)))
	noon := time.Date(2026, 12, 8, 12, 0, 0, 0, sh)
	if got, want := c.FirstOpening(sh, noon), time.Date(2026, 12, 8, 21, 0, 0, 0, sh); !got.Equal(want) {
		t.Errorf("FirstOpening at noon = %s, want %s", got, want)
	}
	if c.SendWindow.Timezone != "Asia/Shanghai" {
		t.Errorf("the window's zone is not the app's: %q", c.SendWindow.Timezone)
	}
	if at := time.Date(2026, 12, 8, 23, 0, 0, 0, sh); !c.FirstOpening(sh, at).Equal(at) {
		t.Errorf("inside the window the start moved")
	}
}

// Local-time targets: "id,Zone" is checked as an id and a zone, each
// problem named by the target's place; without local_time the comma is
// part of the id.
func TestLocalTimeTargets(t *testing.T) {
	t.Parallel()
	const local = `{"id":"w","kind":"batch_push","push_message":{"t":1},"targets":%s,"send_window":{"from":"09:00","to":"21:00","local_time":true}}`
	for _, tc := range []struct {
		targets string
		fields  []string // the fields named; none: valid
	}{
		{`["u1,Asia/Tokyo","u2,Europe/Paris","u3","u1,America/New_York"]`, nil},
		{`["u1,UTC","a,b,Asia/Tokyo"]`, nil}, // the zone follows the last comma
		{`["u1,Mars/Olympus"]`, []string{"targets[0]"}},
		{`["u1,Asia/Tokyo","u2,"]`, []string{"targets[1]"}},
		{`["u1,Local"]`, []string{"targets[0]"}},
		{`["u1,asia/tokyo "]`, []string{"targets[0]"}},
		{`["a,b"]`, []string{"targets[0]"}}, // an id with a comma gives its zone
		{`[" ,Asia/Tokyo","u2,../../etc/passwd"]`, []string{"targets[0]", "targets[1]"}},
	} {
		errs := check(t, fmt.Sprintf(local, tc.targets))
		if len(tc.fields) == 0 && len(errs) > 0 {
			t.Errorf("%s: %v, want none", tc.targets, errs)
		}
		for _, f := range tc.fields {
			if !has(errs, f) {
				t.Errorf("%s: %v, want %s named", tc.targets, errs, f)
			}
		}
	}
	// Without local_time, "u1,UTC" is an id like any other.
	if errs := check(t, `{"id":"w","kind":"batch_push","push_message":{"t":1},"targets":["u1,UTC"]}`); len(errs) > 0 {
		t.Errorf("a comma in a plain id: %v", errs)
	}
	if errs := check(t, fmt.Sprintf(local, `["u1,Mars/Olympus"]`)); len(errs) == 0 || !strings.Contains(errs[0].Message, `"Mars/Olympus"`) {
		t.Errorf("the unknown zone is not quoted: %v", errs)
	}
}

func TestSplitZone(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		in, id, zone string
		given        bool
	}{
		{"u1", "u1", "", false},
		{"u1,Asia/Tokyo", "u1", "Asia/Tokyo", true},
		{"a,b,UTC", "a,b", "UTC", true},
		{"u1,", "u1", "", true},
	} {
		id, zone, given := SplitZone(tc.in)
		bid, bzone, bgiven := SplitZoneBytes([]byte(tc.in))
		if id != tc.id || zone != tc.zone || given != tc.given || string(bid) != id || string(bzone) != zone || bgiven != given {
			t.Errorf("SplitZone(%q) = %q, %q, %v (bytes %q, %q, %v), want %q, %q, %v", tc.in, id, zone, given, bid, bzone, bgiven, tc.id, tc.zone, tc.given)
		}
	}
}
