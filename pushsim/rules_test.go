package pushsim

import (
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/campaignd/campaignd/provider"
)

// TestRules checks each documented rule on a valid and an invalid example,
// and that a broken rule names its field first, as the answers do.
func TestRules(t *testing.T) {
	t.Parallel()
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC)
	startDate := func(s string) error {
		_, err := parseStartDate(s, time.UTC, now)
		return err
	}
	listLimit := func(s string) error {
		_, err := parseListLimit(s)
		return err
	}
	lang := "EU"
	tests := []struct {
		rule         string
		valid, wrong func() error
		field        string // the field the error names; "" for a pushMessage
	}{
		// 003
		{"strategy", func() error { return checkStrategy(4) }, func() error { return checkStrategy(5) }, "strategy"},
		{"strategy negative", func() error { return checkStrategy(0) }, func() error { return checkStrategy(-1) }, "strategy"},
		{"push targets", func() error { return checkPushTargets(100) }, func() error { return checkPushTargets(101) }, "targets"},
		{"push targets none", func() error { return checkPushTargets(1) }, func() error { return checkPushTargets(0) }, "targets"},
		{"label push targets", func() error { return checkLabelPushTargets(1) }, func() error { return checkLabelPushTargets(2) }, "targets"},
		{"startDate format", func() error { return startDate("2026-11-22 14:00:00") }, func() error { return startDate("2026-11-22T14:00:00") }, "startDate"},
		{"startDate two-digit hour", func() error { return startDate("2026-11-23 09:00:00") }, func() error { return startDate("2026-11-23 9:00:00") }, "startDate"},
		{"startDate no fraction", func() error { return startDate("2026-11-22 14:00:00") }, func() error { return startDate("2026-11-22 14:00:00.5") }, "startDate"},
		{"startDate real date", func() error { return startDate("2026-11-30 14:00:00") }, func() error { return startDate("2026-11-31 14:00:00") }, "startDate"},
		{"startDate 1 h ahead", func() error { return startDate("2026-11-22 13:00:00") }, func() error { return startDate("2026-11-22 12:59:59") }, "startDate"},
		{"startDate 30 d ahead", func() error { return startDate("2026-12-22 12:00:00") }, func() error { return startDate("2026-12-22 12:00:01") }, "startDate"},
		// 000
		{"label name charset", func() error { return checkLabelName("post-90s_A.b") }, func() error { return checkLabelName("post 90s") }, "name"},
		{"label name length", func() error { return checkLabelName(strings.Repeat("n", 64)) }, func() error { return checkLabelName(strings.Repeat("n", 65)) }, "name"},
		{"label name empty", func() error { return checkLabelName("l") }, func() error { return checkLabelName("") }, "name"},
		{"label name Chinese", func() error { return checkLabelName("l") }, func() error { return checkLabelName("标签") }, "name"},
		{"label description", func() error { return checkLabelDescription(strings.Repeat("é", 255)) }, func() error { return checkLabelDescription(strings.Repeat("é", 256)) }, "description"},
		{"label usernames", func() error { return checkLabelUsers(100) }, func() error { return checkLabelUsers(101) }, "usernames"},
		{"list limit", func() error { return listLimit("100") }, func() error { return listLimit("101") }, "limit"},
		{"list limit zero", func() error { return listLimit("") }, func() error { return listLimit("0") }, "limit"},
		// 001
		{"nickname", func() error { return checkNickname(strings.Repeat("名", 100)) }, func() error { return checkNickname(strings.Repeat("名", 101)) }, "nickname"},
		{"display style", func() error { return checkDisplayStyle(1) }, func() error { return checkDisplayStyle(2) }, "notification_display_style"},
		{"DND hour", func() error { return checkDNDHour("notification_no_disturbing_start", 23) }, func() error { return checkDNDHour("notification_no_disturbing_start", 24) }, "notification_no_disturbing_start"},
		{"chattype", func() error { return checkChatType("chatgroup") }, func() error { return checkChatType("group") }, "chattype"},
		{"notify type", func() error { return checkNotifyType("AT") }, func() error { return checkNotifyType("at") }, "type"},
		{"ignoreInterval", func() error { return checkIgnoreInterval("21:30-08:00") }, func() error { return checkIgnoreInterval("24:00-08:00") }, "ignoreInterval"},
		{"ignoreInterval minutes", func() error { return checkIgnoreInterval("") }, func() error { return checkIgnoreInterval("08:60-09:00") }, "ignoreInterval"},
		{"ignoreInterval shape", func() error { return checkIgnoreInterval("00:00-23:59") }, func() error { return checkIgnoreInterval("8:30-10:00") }, "ignoreInterval"},
		{"ignoreDuration", func() error { return checkIgnoreDuration(604_800_000) }, func() error { return checkIgnoreDuration(604_800_001) }, "ignoreDuration"},
		{"translationLanguage", func() error { return checkTranslationLanguage(&lang) }, func() error { return checkTranslationLanguage(nil) }, "translationLanguage"},
		{"template", func() error { return checkTemplate("t", "{0}", "{1}") }, func() error { return checkTemplate("t", "", "{1}") }, "title_pattern"},
		// 004
		{"tag charset", func() error { return checkTag("vip_标签_2") }, func() error { return checkTag("vip-2") }, "tag"},
		{"tag bytes", func() error { return checkTag(strings.Repeat("t", 40)) }, func() error { return checkTag(strings.Repeat("t", 41)) }, "tag"},
		{"tag Chinese bytes", func() error { return checkTag(strings.Repeat("标", 13)) }, func() error { return checkTag(strings.Repeat("标", 14)) }, "tag"},
		{"tag UTF-8", func() error { return checkTag("a") }, func() error { return checkTag("\xff") }, "tag"},
		{"alias", func() error { return checkAlias("alice_1") }, func() error { return checkAlias("alice 1") }, "alias"},
		{"alias bytes", func() error { return checkAlias(strings.Repeat("a", 40)) }, func() error { return checkAlias(strings.Repeat("a", 41)) }, "alias"},
		{"tag ids", func() error { return checkTagIDs(1000, 1000) }, func() error { return checkTagIDs(1001, 0) }, "registration_ids"},
		{"tag ids none", func() error { return checkTagIDs(0, 1) }, func() error { return checkTagIDs(0, 0) }, "registration_ids"},
		{"status ids", func() error { return checkStatusIDs(1000) }, func() error { return checkStatusIDs(1001) }, "registration_ids"},
		{"query tags", func() error { return checkQueryTags(1000) }, func() error { return checkQueryTags(1001) }, "tags"},
		{"platform", func() error { return checkPlatform("android,ios,hmos") }, func() error { return checkPlatform("android,windows") }, "platform"},
		{"required platform", func() error { return checkRequiredPlatform("hmos") }, func() error { return checkRequiredPlatform("") }, "platform"},
	}
	for _, tt := range tests {
		if err := tt.valid(); err != nil {
			t.Errorf("%s: valid example refused: %v", tt.rule, err)
		}
		err := tt.wrong()
		if err == nil {
			t.Errorf("%s: invalid example taken", tt.rule)
			continue
		}
		var re *ruleError
		if !errors.As(err, &re) || re.field != tt.field || !strings.HasPrefix(err.Error(), tt.field+": ") {
			t.Errorf("%s: error %q does not name field %s", tt.rule, err, tt.field)
		}
	}
}

func TestPushMessageRule(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		raw   string
		valid bool
	}{
		{`{"title":"t"}`, true},
		{``, false},
		{`{}`, false},
		{`[1]`, false},
		{`"text"`, false},
		{`null`, false},
	} {
		err := checkPushMessage(json.RawMessage(tt.raw))
		if (err == nil) != tt.valid {
			t.Errorf("%q: %v, want valid %v", tt.raw, err, tt.valid)
		}
		var me *messageError
		if err != nil && (!errors.As(err, &me) || !strings.Contains(err.Error(), "pushMessage")) {
			t.Errorf("%q: %v is not a messageError naming pushMessage", tt.raw, err)
		}
	}
}

func TestIDRules(t *testing.T) {
	t.Parallel()
	for _, tt := range []struct {
		id           string
		valid, known bool
	}{
		{"u1", true, true},
		{"用户", true, true},
		{"a.b-c_d@e", true, true},
		{strings.Repeat("x", 128), true, true},
		{"invalid-x", true, false},
		{"", false, false},
		{strings.Repeat("x", 129), false, false},
		{"a b", false, false},
		{"a\tb", false, false},
		{"a/b", false, false},
		{"a\x7fb", false, false},
		{"a\u00a0b", false, false}, // no-break space
		{"a\u0085b", false, false}, // next line, a control character
		{"a\u3000b", false, false}, // ideographic space
		{"\xff", false, false},
	} {
		if got := validID(tt.id); got != tt.valid {
			t.Errorf("validID(%q) = %v, want %v", tt.id, got, tt.valid)
		}
		if got := knownID(tt.id); got != tt.known {
			t.Errorf("knownID(%q) = %v, want %v", tt.id, got, tt.known)
		}
	}
}

// TestDefaultLimitsCoverEveryGroup: every group the client budgets has a
// documented (or kept) default in pushsim, so none is left unjudged.
func TestDefaultLimitsCoverEveryGroup(t *testing.T) {
	t.Parallel()
	lim := defaultLimits()
	for _, g := range provider.Groups {
		if r, ok := lim[g]; !ok || r <= 0 {
			t.Errorf("group %s has no default limit (%v)", g, r)
		}
	}
	if len(lim) != len(provider.Groups) {
		t.Errorf("%d defaults for %d groups", len(lim), len(provider.Groups))
	}
	lim[provider.GroupPushSync] = 99 // a fresh map every call
	if defaultLimits()[provider.GroupPushSync] != 1 {
		t.Error("defaultLimits shares its map")
	}
}

// TestRoutingEdges pins how paths reach their routes: trailing slashes do
// not count, escaped and dot segments are one segment each, HEAD and
// unknown methods are not routed, and an empty segment is an empty value.
func TestRoutingEdges(t *testing.T) {
	t.Parallel()
	e := setup(t, Config{LimitsOff: true})
	tests := []struct {
		method, path, body string
		want               int
		contains           string
	}{
		{"POST", "/push/label/", `{"name":"."}`, 200, `"name":"."`},
		{"GET", "/push/label/.", ``, 200, `"name":"."`},
		{"GET", "/push/label/%2E", ``, 200, `"name":"."`},
		{"GET", "/push/label/..", ``, 400, "push label not exists of .."},
		{"GET", "/push/label/a%2Fb", ``, 400, "push label not exists of a/b"},
		{"GET", "/push/label//user", ``, 400, "push label not exists of \""},
		{"HEAD", "/push/label", ``, 404, ""},
		{"PATCH", "/push/label", ``, 404, "url is invalid"},
		{"POST", "/push//single", `{"targets":["a"],"pushMessage":{"t":1}}`, 404, "url is invalid"},
		{"PUT", "/users//notification/language", `{"translationLanguage":"EU"}`, 200, `"language":"EU"`},
		{"POST", "/push/async/a%2Fb", `{"pushMessage":{"t":1}}`, 200, `"appUser not exists"`},
	}
	for i, tt := range tests {
		c, b := do(t, tt.method, e.base+tt.path, e.token, tt.body)
		if c != tt.want || !strings.Contains(string(b), tt.contains) {
			t.Errorf("%d %s %s: %d %s, want %d containing %s", i, tt.method, tt.path, c, b, tt.want, tt.contains)
		}
	}
	if _, ok := e.srv.Sim().UserSettings("org", "app", ""); !ok {
		t.Error("the user of an empty path segment got no settings")
	}
	for _, tt := range []struct {
		method, path string
		want         int
		contains     string
	}{
		{"GET", "/tags", 200, `"tags"`},
		{"GET", "/tags/", 200, `"tags"`},
		{"HEAD", "/tags/", 404, ""},
		{"GET", "/devices/status", 200, `"alias":null`},
		{"GET", "/tags//registration_ids/r1", 200, `"result":false`},
		{"GET", "/nothing?platform=windows", 400, "27002"},
		{"GET", "/", 404, "unknown path"},
	} {
		if c, b := e.engagelab(t, tt.method, tt.path, ""); c != tt.want || !strings.Contains(b, tt.contains) {
			t.Errorf("%s /v4%s: %d %s, want %d containing %s", tt.method, tt.path, c, b, tt.want, tt.contains)
		}
	}
}
