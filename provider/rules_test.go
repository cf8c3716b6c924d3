package provider

import (
	"errors"
	"strings"
	"testing"
	"time"
)

func TestRules(t *testing.T) {
	t.Parallel()
	sh, _ := time.LoadLocation("Asia/Shanghai")
	now := time.Date(2026, 11, 22, 12, 0, 0, 0, time.UTC) // 20:00 in Shanghai
	tests := []struct {
		name  string
		err   error
		field string // "" = valid
	}{
		{"label ok", ValidateLabelName("post-90s.v_2"), ""},
		{"label 64", ValidateLabelName(strings.Repeat("a", 64)), ""},
		{"label 65", ValidateLabelName(strings.Repeat("a", 65)), "name"},
		{"label empty", ValidateLabelName(""), "name"},
		{"label space", ValidateLabelName("a b"), "name"},
		{"label chinese", ValidateLabelName("标签"), "name"},
		{"description 255", ValidateLabelDescription(strings.Repeat("描", 255)), ""},
		{"description 256", ValidateLabelDescription(strings.Repeat("d", 256)), "description"},
		{"tag ok", ValidateTagName("vip_用户1"), ""},
		{"tag 40 bytes", ValidateTagName(strings.Repeat("t", 40)), ""},
		{"tag 41 bytes", ValidateTagName(strings.Repeat("t", 41)), "tag"},
		{"tag 14 han = 42 bytes", ValidateTagName(strings.Repeat("标", 14)), "tag"},
		{"tag dash", ValidateTagName("a-b"), "tag"},
		{"alias dot", ValidateAlias("a.b"), "alias"},
		{"target ok", ValidateTargetID("user_1@x"), ""},
		{"target empty", ValidateTargetID(""), "target"},
		{"target slash", ValidateTargetID("a/b"), "target"},
		{"target newline", ValidateTargetID("a\nb"), "target"},
		{"target long", ValidateTargetID(strings.Repeat("x", 129)), "target"},
		{"target bad utf8", ValidateTargetID("\xff"), "target"},
		{"strategy 0", ValidateStrategy(0), ""},
		{"strategy 4", ValidateStrategy(4), ""},
		{"strategy -1", ValidateStrategy(-1), "strategy"},
		{"strategy 5", ValidateStrategy(5), "strategy"},
		{"startDate 2h in zone", ValidateStartDate("2026-11-22 22:00:00", sh, now), ""},
		{"startDate 59m", ValidateStartDate("2026-11-22 20:59:00", sh, now), "startDate"},
		{"startDate 30d", ValidateStartDate("2026-12-22 20:00:00", sh, now), ""},
		{"startDate 30d+1s", ValidateStartDate("2026-12-22 20:00:01", sh, now), "startDate"},
		{"startDate format", ValidateStartDate("2026-11-22T22:00:00", sh, now), "startDate"},
		{"startDate past", ValidateStartDate("2020-01-01 00:00:00", sh, now), "startDate"},
		{"interval ok", ValidateIgnoreInterval("21:30-08:00"), ""},
		{"interval empty", ValidateIgnoreInterval(""), ""},
		{"interval 24h", ValidateIgnoreInterval("24:00-08:00"), "ignoreInterval"},
		{"interval 60m", ValidateIgnoreInterval("21:60-08:00"), "ignoreInterval"},
		{"interval short", ValidateIgnoreInterval("9:00-08:00"), "ignoreInterval"},
		{"interval no dash", ValidateIgnoreInterval("21:30 08:00"), "ignoreInterval"},
		{"duration 0", ValidateIgnoreDuration(0), ""},
		{"duration 7d", ValidateIgnoreDuration(604_800_000), ""},
		{"duration over", ValidateIgnoreDuration(604_800_001), "ignoreDuration"},
		{"duration negative", ValidateIgnoreDuration(-1), "ignoreDuration"},
		{"type AT", ValidateNotifyType("AT"), ""},
		{"type lower", ValidateNotifyType("at"), "type"},
		{"chat user", ValidateChatType("user"), ""},
		{"chat room", ValidateChatType("room"), "chattype"},
		{"nickname 100", ValidateNickname(strings.Repeat("昵", 100)), ""},
		{"nickname 101", ValidateNickname(strings.Repeat("n", 101)), "nickname"},
		{"style 1", ValidateDisplayStyle(1), ""},
		{"style 2", ValidateDisplayStyle(2), "notification_display_style"},
		{"limit 0 default", ValidateListLimit(0), ""},
		{"limit 101", ValidateListLimit(101), "limit"},
		{"count 0", ValidateCount("targets", 0, 100), "targets"},
		{"count 101", ValidateCount("targets", 101, 100), "targets"},
		{"count 100", ValidateCount("targets", 100, 100), ""},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.field == "" {
				if tt.err != nil {
					t.Fatalf("want valid, got %v", tt.err)
				}
				return
			}
			var fe FieldError
			if !errors.As(tt.err, &fe) {
				t.Fatalf("want FieldError on %s, got %v", tt.field, tt.err)
			}
			if fe.Field != tt.field || fe.Message == "" {
				t.Errorf("field %q message %q, want field %q", fe.Field, fe.Message, tt.field)
			}
		})
	}
}

func TestFieldErrors(t *testing.T) {
	t.Parallel()
	var es FieldErrors
	if es.Err() != nil {
		t.Fatal("empty list is not an error")
	}
	es.Add("a", "bad %d", 1)
	es.AddErr("targets[2]", ValidateTargetID(""))
	es.AddErr("x", errors.New("plain"))
	es.AddErr("ignored", nil)
	if len(es) != 3 || es[1].Field != "targets[2]" || es[2].Field != "x" {
		t.Fatalf("%+v", es)
	}
	if !strings.Contains(es.Error(), "a: bad 1") {
		t.Errorf("%s", es.Error())
	}
}

func TestErrorKinds(t *testing.T) {
	t.Parallel()
	err := error(&Error{Provider: "easemob", Op: "POST /push/single", Class: ClassRateLimited, Status: 429, RetryAfter: 2 * time.Second})
	wrapped := errors.Join(errors.New("context"), err)
	if d, ok := IsRateLimited(wrapped); !ok || d != 2*time.Second {
		t.Errorf("IsRateLimited = %s %v", d, ok)
	}
	if !IsRetryable(wrapped) {
		t.Error("rate limited is retryable")
	}
	if IsRetryable(&Error{Class: ClassPermanent}) || IsRetryable(errors.New("x")) {
		t.Error("permanent and foreign errors are not retryable")
	}
	if s := err.Error(); !strings.Contains(s, "rate_limited") || !strings.Contains(s, "429") {
		t.Errorf("message %q", s)
	}
}
